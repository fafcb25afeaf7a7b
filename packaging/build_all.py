"""One command for every per-host artifact: ``python packaging/build_all.py``.

Writes into dist/: the Blender extension zip (build_blender.py) and the
Houdini package and Maya module zips (build_hosts.py), each carrying the core
and its dependencies as Python 3.11 wheels for Linux, Windows and macOS.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_blender  # noqa: E402
import build_hosts  # noqa: E402


def main() -> int:
    status = build_blender.main([])
    return status or build_hosts.main([])


if __name__ == "__main__":
    sys.exit(main())
