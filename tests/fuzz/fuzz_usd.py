"""Fuzz the USD and USDZ checks (Sdf layer parse, asset-path policy, stage count).

An input starting with ``PK`` is checked as a USDZ package (zip checks, stored
layout, member references), anything else as a standalone layer (usda text or
usdc crate: the staged copy is named ``asset.usd`` and pxr sniffs the format).
The parsers themselves are Pixar's C++ (usd-core, not instrumented); the
feedback comes from our policy code and the crash/hang detection covers pxr.
"""

from __future__ import annotations

import resource

from _format import checker_target
from _harness import fuzz

_usd = checker_target("usd", "asset.usd")
_usdz = checker_target("usdz", "asset.usdz")

# Production runs the USD check in a child whose heap is capped (formats/isolated.py);
# cap this process below libFuzzer's -rss_limit_mb the same way, so a hostile file that
# makes pxr allocate without bound fails inside pxr (and is refused) as it would there.
resource.setrlimit(resource.RLIMIT_DATA, (768 * 1024**2, resource.RLIM_INFINITY))


def one(data: bytes) -> None:
    try:
        (_usdz if data.startswith(b"PK") else _usd)(data)
    except MemoryError:
        pass  # check_file and the isolated child turn this into UnsafeAsset ("more memory")


if __name__ == "__main__":
    fuzz(one)
