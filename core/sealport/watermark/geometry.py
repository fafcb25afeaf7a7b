"""Geometry the mark is read from: welded vertices, area-weighted centre, norms.

Why welding: exporters split vertices at UV seams and hard edges, which would
count a position twice and bias the norm histogram. Why an area-weighted centre:
the plain vertex mean moves when a tool simplifies or splits vertices; the
surface centroid does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_WELD_BITS = 2.0**-30
"""Welding grid, relative to the bounding-box diagonal: merges coincident positions only."""


@dataclass
class Welded:
    points: np.ndarray
    """(M, 3) float64 unique positions."""
    inverse: np.ndarray
    """(N,) index into ``points`` for every input vertex."""
    tris: np.ndarray
    """(T, 3) triangles indexing ``points``."""
    used: np.ndarray
    """(M,) bool: position referenced by at least one triangle."""


def as_triangles(faces: np.ndarray) -> np.ndarray:
    """Fan-triangulate an (F, k) polygon array (k >= 3) into (F*(k-2), 3)."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] < 3:
        raise ValueError(f"faces must be (F, k>=3), got {f.shape}")
    if f.shape[1] == 3:
        return f.astype(np.int64, copy=False)
    parts = [f[:, [0, i, i + 1]] for i in range(1, f.shape[1] - 1)]
    return np.concatenate(parts).astype(np.int64, copy=False)


def weld(vertices: np.ndarray, faces: np.ndarray) -> Welded:
    """Merge coincident vertices (hash of a fine grid) and remap the triangles."""
    v = np.asarray(vertices, dtype=np.float64)
    tris = as_triangles(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (N, 3), got {v.shape}")
    if tris.size and (tris.min() < 0 or tris.max() >= len(v)):
        raise ValueError("faces index outside the vertex array")
    if len(v) == 0:
        return Welded(v, np.zeros(0, np.int64), tris, np.zeros(0, bool))
    lo = v.min(axis=0)
    diag = float(np.linalg.norm(v.max(axis=0) - lo)) or 1.0
    q = np.floor((v - lo) / (diag * _WELD_BITS)).astype(np.int64)
    # 3 x 21-bit cells would be exact for a grid of 2**21; the grid here is finer,
    # so hash instead. A collision only merges two far-apart vertices' statistics
    # (never their positions, see embed), with probability ~N**2 / 2**64.
    h = (
        q[:, 0] * np.int64(-7046029254386353131)
        ^ q[:, 1] * np.int64(0x2545F4914F6CDD1D)
        ^ q[:, 2] * np.int64(0x5851F42D4C957F2D)
    )
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    points = v[first]
    t = inverse[tris] if tris.size else tris
    used = np.zeros(len(points), bool)
    used[t.ravel()] = True
    return Welded(points, inverse.ravel(), t, used)


def area_centre(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Surface centroid (area-weighted triangle centroids); vertex mean if degenerate."""
    if len(tris):
        a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
        area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
        total = area.sum()
        if total > 0:
            return np.asarray(((a + b + c) * area[:, None]).sum(axis=0) / (3.0 * total))
    return np.asarray(points.mean(axis=0))
