"""Reading a mesh whose coordinates were rounded to a coarse grid.

Why: quantising a leak's coordinates to 7 or 8 bits per axis (an attack of the
watermarking benchmark, and what some compressors do) moves every norm by up to
several bin widths: at 7 bits on a 130k-vertex mesh the grid step is ~2.7 mean
bin widths of the 160 keyed bins. The mark is still there *on average* (rounding
of a vertex is unbiased over where it sits in its grid cell, so a bin's mean norm
keeps its push), but the reader sorts each vertex into a bin by its own rounded
norm, and vertices from neighbouring bins trade places: with the vertices sorted
by their norms *before* the attack, the blind reader's code-bit error rate at 7
bits falls from ~0.49 to ~0.14-0.23 (one-off diagnostic, 2026-12-06). The blind
reader cannot know those norms, but it can estimate them: neighbouring vertices
were rounded independently, so a few steps of umbrella smoothing, each followed
by clamping every vertex back into its own grid cell (where the vertex must have
been), bring the estimate closer to the surface (projection onto the cells, as in
dequantisation of images). The bin of a vertex is then taken from the estimate,
its value in the bin still from its rounded norm, whose error averages out.

When: only when the vertices sit on an axis-aligned grid (:func:`axis_grid`, float32
storage included) and the grid step is coarse
against the bins (:func:`smoothing_steps` > 0). A marked file as delivered is
never on such a grid (the mark moves ~98 % of its vertices off it), so the import
check and every finer rounding read exactly as before. A grid rotated after the
rounding is not detected (the plain reading then applies).
"""

from __future__ import annotations

import numpy as np

LATTICE_TOL = 1e-3
"""How far from a whole multiple of the grid step a gap may be and still count as on
the grid: float32 storage of a 7-bit grid errs by ~1e-5 step."""
MAX_LEVELS = 1024
"""Grids with more values per axis are never coarse enough to need this (10 bits: the
step is ~0.3 mean bin widths on the benchmark mesh, where the plain reading is best)."""
_SAMPLE = 4096
"""Coordinates looked at before the full check (keeps the cost off unquantised meshes)."""
SMOOTHING_PER_WIDTH2 = 0.5
"""Smoothing steps per (grid step / mean bin width)**2, rounded: one-off tuning on the
130k-vertex benchmark mesh (6 keys), best at 1 step for 8 bits (step 1.3 bin widths)
and 4 for 7 bits (2.7); a diffusion's reach grows with the square root of its steps."""
_LAMBDA = 0.5


def axis_grid(values: np.ndarray) -> tuple[float, float] | None:
    """(step, phase) when 1-D coordinates sit on a regular grid (quantised), else None.

    At least 99 % of the gaps between distinct values must be whole multiples of the
    smallest (to 1e-3), and there must be at most a third as many values as points.
    Shared by the blind reader (:func:`lattice_steps`) and the informed tier's
    quantisation model (``attack_model._lattice``)."""
    uniq = np.unique(values)
    if len(uniq) < 4 or len(uniq) > len(values) // 3:
        return None
    d = np.diff(uniq)
    d = d[d > 1e-9 * (uniq[-1] - uniq[0])]
    if not len(d):
        return None
    ratio = d / float(d.min())
    if np.mean(np.abs(ratio - np.round(ratio)) < LATTICE_TOL) < 0.99:
        return None
    n = np.round((uniq - uniq[0]) / float(d.min()))
    q = float(np.polyfit(n, uniq, 1)[0])
    return q, float(np.median(uniq - n * q))


def lattice_steps(points: np.ndarray) -> np.ndarray | None:
    """Per-axis grid step when the points lie on an axis-aligned grid (:func:`axis_grid`
    on every axis) of at most MAX_LEVELS values per axis, else None."""
    n = len(points)
    if n < 2:
        return None
    pick = points if n <= _SAMPLE else points[np.linspace(0, n - 1, _SAMPLE).astype(np.intp)]
    for axis in range(3):
        if len(np.unique(pick[:, axis])) > min(MAX_LEVELS, len(pick) // 2):
            return None  # cheap refusal: most meshes stop here
    steps = np.empty(3)
    for axis in range(3):
        col = np.asarray(points[:, axis], np.float64)
        g = axis_grid(col)
        if g is None or len(np.unique(col)) > MAX_LEVELS:
            return None
        steps[axis] = g[0]
    return steps


def smoothing_steps(steps: np.ndarray, bin_width: float) -> int:
    """Smoothing steps for a grid of ``steps`` read in bins of mean width ``bin_width``
    (0: the grid is fine enough for the plain reading)."""
    if not bin_width > 0:
        return 0
    ratio2 = float(np.mean(steps**2)) / bin_width**2
    return int(round(SMOOTHING_PER_WIDTH2 * ratio2))


def smoothed(points: np.ndarray, tris: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """``k`` umbrella smoothing steps (each vertex moves half-way to the mean of its
    edge neighbours), each followed by clamping every vertex into its grid cell.

    ``tris`` index ``points``; a vertex without neighbours stays where it is.
    """
    p = np.asarray(points, np.float64)
    n = len(p)
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e = e[e[:, 0] != e[:, 1]]
    src = np.concatenate([e[:, 0], e[:, 1]])
    dst = np.concatenate([e[:, 1], e[:, 0]])
    deg = np.bincount(src, minlength=n).astype(np.float64)
    has = deg > 0
    lo, hi = p - steps / 2, p + steps / 2
    s = p.copy()
    for _ in range(k):
        mean = np.empty_like(s)
        for axis in range(3):
            mean[:, axis] = np.bincount(src, weights=s[dst, axis], minlength=n)
        mean[has] /= deg[has, None]
        mean[~has] = s[~has]
        s += _LAMBDA * (mean - s)
        np.clip(s, lo, hi, out=s)
    return s
