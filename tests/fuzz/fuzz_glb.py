"""Fuzz the GLB (own container parser + JSON + accessor/index bounds) reader."""

from __future__ import annotations

from _format import checker_target
from _harness import fuzz

one = checker_target("glb", "crate.glb")

if __name__ == "__main__":
    fuzz(one)
