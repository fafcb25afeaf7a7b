"""Peak memory of the watermark/format readers on the security review's hostile files.

Not a test. Reproduces the figures in docs/SERVER_SECURITY.md ("Parser memory"):

    python tests/bench/bench_parse_memory.py [--only glb-shared fbx-props fbx-zlib]

Each case builds its file in a temporary folder, then reads it in a fresh child
process under ``/usr/bin/time -f %M`` (peak resident set, KiB) and prints the
peak, the peak minus a child that only imports the same modules, and how the
read ended (ok / the typed error it raised). Cases:

- ``glb-shared``: ~7 MB GLB, 100 primitives sharing one POSITION and one u32
  index accessor (review finding 2a); read with ``sealport.watermark.glb.read``.
- ``fbx-props``: 4 MB FBX, one node with 2,000,000 one-byte properties (2b);
  ``sealport.formats.fbxtree.parse``.
- ``fbx-zlib``: FBX of 8 geometries whose Vertices/PolygonVertexIndex hold
  3,000,000 zlib-compressed zeros each (2b); ``sealport.watermark.fbxmesh.prepare``
  (what the server caches).
- ``fbx-props-fit`` / ``fbx-zlib-fit``: the worst such files the limits still
  accept (4 MB with 650,000 properties plus a 2.7 MB blob; one zlib geometry of
  999,999 values, just under the 64 MiB floor of the array budget).
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.watermark.hostile import (  # noqa: E402
    FbxNode,
    fbx_bytes,
    fbx_many_properties,
    fbx_zlib_geometries,
    glb_shared_indices,
)

IMPORTS = (
    "import numpy, sealport.watermark.glb, sealport.watermark.fbxmesh, sealport.formats.fbxtree\n"
)
READERS = {
    "glb-shared": "from sealport.watermark.glb import read as run\n",
    "fbx-props": "from sealport.formats.fbxtree import parse\n"
    "def run(p): return parse(p.read_bytes())\n",
    "fbx-zlib": "from sealport.watermark.fbxmesh import prepare as run\n",
}
READERS["fbx-props-fit"] = READERS["fbx-props"]
READERS["fbx-zlib-fit"] = READERS["fbx-zlib"]
RUN = """
import sys
from pathlib import Path
try:
    run(Path(sys.argv[1]))
    print("ok")
except Exception as exc:
    print(type(exc).__name__, str(getattr(exc, "detail", "") or exc)[:120])
"""


def build(case: str, folder: Path) -> Path:
    if case == "glb-shared":
        import numpy as np

        rng = np.random.default_rng(1)
        v = rng.normal(size=(65_000, 3)).astype(np.float32)
        f = rng.integers(0, len(v), size=(520_000, 3))  # 6.2 MB of u32 indices
        path, data = folder / "shared.glb", glb_shared_indices(v, f, 100)
    elif case == "fbx-props":
        path, data = folder / "props.fbx", fbx_many_properties(2_000_000)
    elif case == "fbx-props-fit":
        data = fbx_bytes(
            [
                FbxNode(b"P", [b"C\x01"] * 650_000),
                FbxNode(b"Blob", [b"R" + struct.pack("<I", 2_700_000) + bytes(2_700_000)]),
            ]
        )
        path = folder / "props-fit.fbx"
    elif case == "fbx-zlib-fit":
        path, data = folder / "zlib-fit.fbx", fbx_zlib_geometries(1, 999_999)
    else:
        path, data = folder / "zlib.fbx", fbx_zlib_geometries(8, 3_000_000)
    path.write_bytes(data)
    return path


def peak_kib(code: str, *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(proc.stderr.strip().splitlines()[-1]), proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(READERS))
    args = ap.parse_args()
    base, _ = peak_kib(IMPORTS)
    print(f"baseline (imports only): {base / 1024:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.only:
            path = build(case, Path(tmp))
            peak, out = peak_kib(IMPORTS + READERS[case] + RUN, str(path))
            size = path.stat().st_size / 1024**2
            print(
                f"{case}: file {size:.1f} MiB, peak {peak / 1024:.0f} MiB "
                f"(+{(peak - base) / 1024:.0f} MiB over baseline): {out}"
            )


if __name__ == "__main__":
    main()
