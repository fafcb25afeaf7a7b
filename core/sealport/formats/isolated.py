"""Run a format check in a child Python process.

Native readers that are not memory-safe enough for the caller's process run
here: usd-core (a corrupt usdc can abort the process) and the ufbx second
opinion of the FBX check (the ufbx 0.0.5 binding corrupts memory: segfaults,
attributes vanishing from unrelated objects later in the same process). A
crash in the child is a refusal, not a dead host. Inside a DCC whose
``sys.executable`` is not Python (Blender, Maya) there is no child: USD falls
back to the in-process reader, and FBX relies on the pure-Python node-tree
check alone (:mod:`.fbx`); ufbx never runs in a DCC's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..errors import UnsafeAsset
from .report import FormatReport, refuse

TIMEOUT = 120
CRASH_RETRIES = 8
"""ufbx 0.0.5 segfaulted at random on valid files (measured in the past: 11 of 30
loads of the demo chair; always under ``PYTHONMALLOC=debug``, see docs/FBX.md). A
crash is retried in a new child; a file that crashes the reader every time is
refused. The structural node-tree check has already passed the file by then."""


def python_available() -> bool:
    return Path(sys.executable).name.lower().startswith("python")


def check_in_child(path: Path, fmt: str, max_bytes: int) -> FormatReport:
    # Only ufbx crashes at random; a usd-core abort is deterministic: one try is enough.
    for _ in range(CRASH_RETRIES if fmt == "fbx" else 1):
        proc = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore",
                "-m",
                "sealport.formats.isolated",
                fmt,
                str(path),
                str(max_bytes),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            # Inside a DCC the core comes from the host's extension folders, not from
            # site-packages: hand the child the parent's import path.
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        if proc.returncode >= 0:  # negative: killed by a signal (reader crash)
            break
    if proc.returncode != 0 or not proc.stdout.strip():
        raise refuse(
            path,
            fmt,
            "the safety check crashed while reading it",
            f"child exit {proc.returncode}: {proc.stderr[-2000:]}",
        )
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    if "refused" in reply:
        raise UnsafeAsset(reply["refused"]["message"], reply["refused"]["detail"])
    r = reply["report"]
    return FormatReport(r["format"], r["size"], r["summary"], tuple(r["warnings"]))


CHILD_MEMORY_MIN = 2 * 1024**3
CHILD_MEMORY_PER_BYTE = 8
"""Heap budget of the child (RLIMIT_DATA): 8 x the file size, at least 2 GiB. An 8 KB
usdc found by tests/fuzz/fuzz_usd.py made usd-core allocate > 1.7 GB; capped, the
allocation fails inside pxr and the file is refused (tests/fuzz/regress_native/pxr-oom.usd).
File-backed read-only maps (pxr/numpy memory-map the asset) do not count against it."""


def _limit_memory(path: str) -> None:
    """Cap the child's heap so a hostile file cannot exhaust the workstation's memory."""
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the size cap (max_bytes) still applies
        return
    budget = max(CHILD_MEMORY_MIN, CHILD_MEMORY_PER_BYTE * os.path.getsize(path))
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        budget = min(budget, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (budget, hard))


def _child(fmt: str, path: str, max_bytes: str) -> None:
    from . import _checker

    _limit_memory(path)
    if fmt == "fbx":  # the child is the ufbx stage of the FBX check, not the whole check
        from .fbx import check_fbx_ufbx as checker
    else:
        checker = _checker(fmt)
    try:
        rep = checker(Path(path), max_bytes=int(max_bytes))
        out = {
            "report": {
                "format": rep.format,
                "size": rep.size,
                "summary": rep.summary,
                "warnings": list(rep.warnings),
            }
        }
    except UnsafeAsset as exc:
        out = {"refused": {"message": exc.message, "detail": exc.detail}}
    except MemoryError:
        err = refuse(path, fmt, "it needs more memory than a safe check allows")
        out = {"refused": {"message": err.message, "detail": err.detail}}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    _child(*sys.argv[1:4])
