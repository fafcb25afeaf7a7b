"""Run a format check in a child Python process.

ufbx 0.0.5's Python binding corrupts memory in some sequences (seen here:
segfaults, and attributes vanishing from unrelated objects later in the same
process). A DCC must never crash on a hostile file, so where a plain Python
interpreter is available the FBX check runs in a child process; a crash there
is a refusal, not a dead host. Inside a DCC whose ``sys.executable`` is not
Python (Blender, Maya), it falls back to the in-process reader.
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
"""ufbx 0.0.5 segfaults at random on valid files (measured here: 11 of 30 loads of
the demo chair). A crash is retried in a new child; a file that crashes the
reader every time is refused. A bounded structural FBX reader would remove
this; it is listed as open work in the README."""


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


def _child(fmt: str, path: str, max_bytes: str) -> None:
    from . import _checker

    try:
        rep = _checker(fmt)(Path(path), max_bytes=int(max_bytes))
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
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    _child(*sys.argv[1:4])
