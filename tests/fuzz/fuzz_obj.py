"""Fuzz the OBJ (line reader, references, index bounds) reader."""

from __future__ import annotations

from _format import checker_target
from _harness import fuzz

one = checker_target("obj", "asset.obj")

if __name__ == "__main__":
    fuzz(one)
