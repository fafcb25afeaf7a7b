"""Stress FBX readers for crashes: many loads per process, optionally under a debug allocator.

Not a test. Reproduces the figures in docs/FBX.md:

    python tests/bench/bench_fbx_readers.py --reader tree ufbx [--loads 100] [--debug]
    python tests/bench/bench_fbx_readers.py --reader pyufbx --python /path/venv/bin/python

Readers: ``tree`` (our node-tree reader, formats/fbxtree.py), ``ufbx`` (the
PyPI ``ufbx`` binding the FBX check's child uses), ``pyufbx`` / ``pufbx``
(other ufbx bindings; sdists, so install them into a separate venv with a C
compiler and pass that venv's ``--python``: pyufbx also imports as ``ufbx``).
Files: the demo chair, the texture fixtures and every ``*.fbx`` under
``--extra`` (e.g. files exported by real Blender). Each file gets one process
that loads it ``--loads`` times (scene, every mesh's positions and indices,
textures, then the scene is dropped and collected); ``--debug`` sets
``PYTHONMALLOC=debug``, which turns silent heap corruption into a crash.
Prints crashed processes per reader and file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = [
    ROOT / "core/sealport/demo_assets/chair.fbx",
    *sorted((ROOT / "tests/formats").glob("*.fbx")),
]

LOADERS = {
    "tree": """
from pathlib import Path
from sealport.watermark.fbxmesh import load
from sealport.formats.fbx import _tree_media
def once(path):
    tree, meshes = load(Path(path))
    _tree_media(tree)
    return sum(len(m.vertices) for m in meshes)
""",
    "ufbx": """
import numpy as np, ufbx
def once(path):
    sc = ufbx.load_file(path, load_external_files=False, strict=True)
    n = 0
    for m in list(sc.meshes):
        n += len(np.array([[p.x, p.y, p.z] for p in m.vertices]))
        list(m.vertex_indices); [(f.index_begin, f.num_indices) for f in m.faces]
    [(t.absolute_filename, t.relative_filename) for t in list(sc.textures)]
    sc.free()
    return n
""",
    "pyufbx": """
import numpy as np, ufbx
def once(path):
    with ufbx.load_file(path) as s:
        n = 0
        for m in s.meshes:
            n += len(np.array(m.vertex_positions)); np.array(m.indices); list(m.faces)
        [t.absolute_filename for t in s.textures]
    return n
""",
    "pufbx": """
import pufbx
def once(path):
    s = pufbx.load_fbx(path)
    n = sum(m.num_vertices for m in s.meshes)
    s.num_textures
    return n
""",
}
LOOP = """
import gc, sys
for i in range(int(sys.argv[2])):
    n = once(sys.argv[1])
    gc.collect()
    print(i, n, flush=True)
"""


def run(python: str, reader: str, path: Path, loads: int, debug: bool) -> tuple[int, int]:
    """(exit code, loads completed) of one process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "core")}
    if debug:
        env["PYTHONMALLOC"] = "debug"
    proc = subprocess.run(
        [python, "-c", LOADERS[reader] + LOOP, str(path), str(loads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    return proc.returncode, sum(1 for line in proc.stdout.splitlines() if line[:1].isdigit())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", nargs="+", choices=sorted(LOADERS), default=["tree", "ufbx"])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--loads", type=int, default=100)
    ap.add_argument("--debug", action="store_true", help="PYTHONMALLOC=debug")
    ap.add_argument("--extra", type=Path, help="folder with more .fbx files")
    args = ap.parse_args()
    files = FILES + (sorted(args.extra.glob("*.fbx")) if args.extra else [])
    for reader in args.reader:
        crashed = 0
        for f in files:
            rc, done = run(args.python, reader, f, args.loads, args.debug)
            crashed += rc != 0
            print(f"{reader:7} {f.name:28} exit {rc:4}  loads completed {done}/{args.loads}")
        alloc = "PYTHONMALLOC=debug" if args.debug else "system allocator"
        print(f"{reader}: {crashed} of {len(files)} processes crashed ({alloc})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
