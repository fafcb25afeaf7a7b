"""Fuzz the USD and USDZ checks (Sdf layer parse, asset-path policy, stage count).

An input starting with ``PK`` is checked as a USDZ package (zip checks, stored
layout, member references), anything else as a standalone layer (usda text or
usdc crate: the staged copy is named ``asset.usd`` and pxr sniffs the format).
The parsers themselves are Pixar's C++ (usd-core, not instrumented); the
feedback comes from our policy code and the crash/hang detection covers pxr.
"""

from __future__ import annotations

from _format import checker_target
from _harness import fuzz

_usd = checker_target("usd", "asset.usd")
_usdz = checker_target("usdz", "asset.usdz")


def one(data: bytes) -> None:
    (_usdz if data.startswith(b"PK") else _usd)(data)


if __name__ == "__main__":
    fuzz(one)
