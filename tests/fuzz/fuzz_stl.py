"""Fuzz the STL (binary size rule + numpy memmap, strict ASCII state machine) reader."""

from __future__ import annotations

from _format import checker_target
from _harness import fuzz

one = checker_target("stl", "asset.stl")

if __name__ == "__main__":
    fuzz(one)
