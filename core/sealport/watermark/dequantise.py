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

When: only when 99 % of the vertices sit on an axis-aligned grid
(:func:`lattice_steps`, float32 storage included) and the grid step is coarse
against the bins (:func:`smoothing_steps` > 0). A marked file as delivered is not on
such a grid (the mark moves ~98 % of its vertices off it), so the import check and
every finer rounding read exactly as before. (The one exception found in review: a
unit-size mesh stored in float32 some 4e4 units from the origin, where float32
itself is a grid that coarse; there the mark does not survive storage either.) A
grid rotated after the rounding is not detected (the plain reading then applies).
"""

from __future__ import annotations

import math

import numpy as np

LATTICE_TOL = 1e-3
"""How far (in grid steps) a value may sit from the grid and still count as on it:
float32 storage of a 7-bit grid errs by ~1e-5 step."""
MAX_LEVELS = 1024
"""Grids with more values per axis are never coarse enough to need this (10 bits: the
step is ~0.3 mean bin widths on the benchmark mesh, where the plain reading is best)."""
_SAMPLE = 4096
"""Coordinates looked at before the full check (keeps the cost off unquantised meshes)."""
SMOOTHING_PER_WIDTH2 = 0.5
"""Smoothing steps per (grid step / mean bin width)**2, rounded (a diffusion's reach
grows with the square root of its steps). One-off sweeps on the 130k-vertex benchmark
mesh (4-6 keys): best at 1 step for 8 bits (step 1.3 bin widths), 3-4 for 7 bits
(2.7); the rule gives 1 and 3."""
_LAMBDA = 0.5
_ON_GRID = 0.99
"""Share of the points (and of the sampled levels) that must sit on the grid."""


def axis_grid(values: np.ndarray) -> tuple[float, float] | None:
    """(step, phase) when 1-D coordinates sit on a regular grid (quantised), else None.

    At least 99 % of the gaps between distinct values must be whole multiples of the
    smallest (to 1e-3), and there must be at most a third as many values as points.
    The informed tier's quantisation model uses it on a whole indexed leak
    (``attack_model._lattice``); the blind reader's :func:`lattice_steps` fits a sample
    instead (no sort of every coordinate, and a stray value does not break it)."""
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
    """Per-axis grid step when at least 99 % of the points lie on an axis-aligned grid
    (to LATTICE_TOL of its step) of at most MAX_LEVELS values per axis, else None.

    Cost: the grid is fitted to an evenly strided sample of ``_SAMPLE`` points (most
    meshes stop there: their sampled coordinates are nearly all distinct), then every
    point is checked against it in one pass per axis (no sort: a 10M-vertex grid
    is checked in well under a second). Why 99 %, not all: one stray coordinate must
    not switch the reading off (found in review: one nudged vertex took the 7-bit
    reading from 0.31 back to 0.48 code BER), while a delivered mark moves ~98 % of
    the vertices off any grid.
    """
    n = len(points)
    if n < 8:
        return None
    pick = points if n <= _SAMPLE else points[np.linspace(0, n - 1, _SAMPLE).astype(np.intp)]
    fits = []
    for axis in range(3):
        levels = np.unique(np.asarray(pick[:, axis], np.float64))
        if len(levels) > min(MAX_LEVELS, len(pick) // 2):
            return None  # cheap refusal: most meshes stop here
        fit = _fit_levels(levels)
        if fit is None:
            return None
        fits.append(fit)
    for axis, (step, phase) in enumerate(fits):
        r = (np.asarray(points[:, axis], np.float64) - phase) / step
        r -= np.round(r)
        if np.count_nonzero(np.abs(r) <= LATTICE_TOL) < _ON_GRID * n:
            return None
    return np.array([step for step, _ in fits])


def _fit_levels(levels: np.ndarray) -> tuple[float, float] | None:
    """(step, phase) of the grid most of ``levels`` (sorted, distinct) lie on: the
    median gap as a first step (a stray value adds two odd gaps, a sparse region a
    few wide ones), then a least-squares fit of the levels on it."""
    if len(levels) < 4 or not np.all(np.isfinite(levels)):
        return None
    step0 = float(np.median(np.diff(levels)))
    if not step0 > 0:
        return None
    # The phase as a circular mean (levels at half steps from 0, as a grid symmetric
    # about the origin has, would split a plain median of residuals between -1/2 and
    # +1/2 step).
    angle = 2.0 * np.pi * (levels - levels[0]) / step0
    phase0 = float(levels[0]) + step0 * math.atan2(np.sin(angle).mean(), np.cos(angle).mean()) / (
        2.0 * np.pi
    )
    idx = np.round((levels - phase0) / step0)
    on = np.abs((levels - phase0) / step0 - idx) <= LATTICE_TOL
    if np.count_nonzero(on) < max(4, _ON_GRID * len(levels)):
        return None
    a = np.vstack([idx[on], np.ones(int(on.sum()))]).T
    (step, phase), *_ = np.linalg.lstsq(a, levels[on], rcond=None)
    return (float(step), float(phase)) if step > 0 else None


def smoothing_steps(steps: np.ndarray, bin_width: float) -> int:
    """Smoothing steps for a grid of ``steps`` read in bins of mean width ``bin_width``
    (0: the grid is fine enough for the plain reading)."""
    if not bin_width > 0:
        return 0
    ratio2 = float(np.mean(steps**2)) / bin_width**2
    return int(round(SMOOTHING_PER_WIDTH2 * ratio2))


def smoothed(points: np.ndarray, tris: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """``k`` umbrella smoothing steps (each vertex moves half-way to the mean of its
    neighbours over its triangles), each followed by clamping every vertex into its
    grid cell.

    ``tris``: proper triangles (no repeated index) into ``points``; a vertex without
    triangles stays where it is. Each corner adds its triangle's two other vertices
    (an interior edge counts once from each side, so every neighbour weighs the same).
    The axes are independent, so each is smoothed on its own, and the sums run per
    corner slot: the extra memory is a few arrays of one value per vertex or triangle
    (found in review: an edge list cost 6 GiB on 10M vertices).
    """
    p = np.asarray(points)
    n = len(p)
    t = np.asarray(tris)
    deg = 2.0 * np.bincount(t.ravel(), minlength=n)
    has = deg > 0
    out = np.empty((n, 3))
    acc = np.empty(n)
    for axis in range(3):
        q = np.asarray(p[:, axis], np.float64)
        half = steps[axis] / 2
        lo, hi = q - half, q + half
        col = q.copy()
        for _ in range(k):
            acc[:] = 0.0
            for j in range(3):
                w = col[t[:, (j + 1) % 3]]
                w += col[t[:, (j + 2) % 3]]
                acc += np.bincount(t[:, j], weights=w, minlength=n)
            np.divide(acc, deg, out=acc, where=has)
            acc[~has] = col[~has]
            col += _LAMBDA * (acc - col)
            np.clip(col, lo, hi, out=col)
        out[:, axis] = col
    return out
