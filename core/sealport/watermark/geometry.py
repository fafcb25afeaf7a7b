"""Geometry the mark is read from: welded vertices, the reading frame's centre, norms.

Why welding: exporters split vertices at UV seams and hard edges, which would
count a position twice and bias the norm histogram.

Why the centre is the mean of the triangle corners (schemes v2, v3, :func:`corner_centre`):
every vertex counts once per triangle that uses it, so the exporter's copies of a
seam vertex together count what the one vertex counted (no shift from splits), and
an attack that moves each vertex a little (noise, rounding to a grid, smoothing)
moves the centre by the mean of those moves, ~sigma / sqrt(N). The area-weighted
centroid of scheme v1 (:func:`area_centre`) does not move under simplification, but
rounding and noise change the triangles' areas systematically (a staircase of a
fine mesh on a coarse grid), and it moved 100-200x more: on the 130k-vertex bunny
0.17 % of the diagonal under 8-bit rounding (corner mean: 0.0007 %), 0.06 % under
MESHBEN noise 0.5 % (0.0004 %). The blind reader does not survive simplification
either way (bit error rate ~0.45 with the area centre), so its robustness bought
nothing the reader could use. The measurement is the "centre" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

CentreKind = Literal["corner", "area", "corner-even"]
"""A scheme's reading frame: the centre its norms are read about and how they are
binned. ``area`` (v1): area-weighted centre; ``corner`` (v2): mean of the triangle
corners; both bin by keyed quantiles (equal vertex shares). ``corner-even`` (v3): the
corner mean, and keyed bins of about equal width in norm wherever every such bin holds
enough vertices (else the quantile bins): see ``mark._partition``."""


def centre_of(kind: CentreKind) -> Literal["corner", "area"]:
    """The centre a reading frame uses (ValueError for an unknown frame)."""
    if kind in ("corner", "corner-even"):
        return "corner"
    if kind == "area":
        return "area"
    raise ValueError(f"unknown centre kind {kind!r}")


def even_bins(kind: CentreKind) -> bool:
    """Does this frame try bins of even width in norm (scheme v3)?"""
    return kind == "corner-even"


_WELD_BITS = 2.0**-30
"""Welding grid, relative to the bounding-box diagonal: merges coincident positions only."""


class Welded:
    """A mesh with coincident vertices merged.

    ``tris`` (triangles indexing ``points``) is built on first use only: the
    blind reader never needs it (its centre comes from the input triangles, which
    give the same surface), which saves 24 bytes per triangle on huge meshes.
    """

    def __init__(
        self,
        points: np.ndarray,
        inverse: np.ndarray,
        tris: np.ndarray | None,
        used: np.ndarray,
        *,
        src_tris: np.ndarray | None = None,
        centre: np.ndarray | None = None,
    ) -> None:
        self.points = points
        """(M, 3) float64 unique positions."""
        self.inverse = inverse
        """(N,) index into ``points`` for every input vertex."""
        self.used = used
        """(M,) bool: position referenced by at least one triangle."""
        self.centre = centre
        """Area-weighted centre of ``points`` if already known, else None (the
        registration's moments use it; the reading frame is :func:`frame_centre`)."""
        self._tris = tris
        self._src_tris = src_tris

    @property
    def tris(self) -> np.ndarray:
        """(T, 3) triangles indexing ``points``."""
        if self._tris is None:
            src = self._src_tris if self._src_tris is not None else np.zeros((0, 3), np.int64)
            self._tris = self.inverse[src] if src.size else src
        return self._tris


def as_triangles(faces: np.ndarray) -> np.ndarray:
    """Fan-triangulate an (F, k) polygon array (k >= 3) into (F*(k-2), 3)."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] < 3:
        raise ValueError(f"faces must be (F, k>=3), got {f.shape}")
    if f.shape[1] == 3:
        return f if np.issubdtype(f.dtype, np.integer) else f.astype(np.int64)
    parts = [f[:, [0, i, i + 1]] for i in range(1, f.shape[1] - 1)]
    return np.concatenate(parts).astype(np.int64, copy=False)


def weld(vertices: np.ndarray, faces: np.ndarray) -> Welded:
    """Merge coincident vertices (hash of a fine grid); triangles are remapped lazily.

    One quicksort of the 64-bit cell hashes does the grouping (``np.unique`` with
    ``return_index`` would use a slower stable sort); which copy represents a group
    does not matter because copies lie within 2**-30 of the diagonal of each other.
    """
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
    cell = 1.0 / (diag * _WELD_BITS)
    # 3 x 21-bit cells would be exact for a grid of 2**21; the grid here is finer,
    # so hash instead. A collision only merges two far-apart vertices' statistics
    # (never their positions, see embed), with probability ~N**2 / 2**64.
    h = np.floor((v[:, 0] - lo[0]) * cell).astype(np.int64) * np.int64(-7046029254386353131)
    h ^= np.floor((v[:, 1] - lo[1]) * cell).astype(np.int64) * np.int64(0x2545F4914F6CDD1D)
    h ^= np.floor((v[:, 2] - lo[2]) * cell).astype(np.int64) * np.int64(0x5851F42D4C957F2D)
    order = np.argsort(h)
    hs = h[order]
    del h
    start = np.empty(len(hs), bool)
    start[0] = True
    np.not_equal(hs[1:], hs[:-1], out=start[1:])
    del hs
    group = np.cumsum(start) - 1
    inverse = np.empty(len(v), np.int64)
    inverse[order] = group
    first = order[start]  # one representative per group, groups in hash order
    del order, group, start
    # Renumber the groups in input order (O(N), no second sort): welded points keep
    # the file's vertex order, so triangle gathers stay cache friendly.
    is_first = np.zeros(len(v), bool)
    is_first[first] = True
    rank = np.cumsum(is_first) - 1
    inverse = rank[first][inverse]
    del rank, first
    points = v[is_first]
    ref = np.bincount(tris.ravel(), minlength=len(v)) > 0 if tris.size else np.zeros(len(v), bool)
    used = np.zeros(len(points), bool)
    used[inverse[ref]] = True
    centre = area_centre(v, tris)  # same surface as the welded one, no remap needed
    return Welded(points, inverse, None, used, src_tris=tris, centre=centre)


_CENTRE_CHUNK = 1 << 16
"""Triangles per block in the area-centre sum: small blocks stay in cache (~2x faster)."""


def block_sums(
    xyz: list[np.ndarray], i0: np.ndarray, i1: np.ndarray, i2: np.ndarray
) -> tuple[float, float, float, float]:
    """One block of triangles: (sum of doubled areas, and per axis the sum of the
    corner-coordinate sums weighted by them). Shared by :func:`area_centre` and the
    threaded reader (``parallel.referenced_and_centre``), which must agree bit for bit.
    """
    a = [c[i0] for c in xyz]
    b = [c[i1] for c in xyz]
    c3 = [c[i2] for c in xyz]
    e1 = [b[k] - a[k] for k in range(3)]
    e2 = [c3[k] - a[k] for k in range(3)]
    cx = e1[1] * e2[2] - e1[2] * e2[1]
    cy = e1[2] * e2[0] - e1[0] * e2[2]
    cz = e1[0] * e2[1] - e1[1] * e2[0]
    cx *= cx
    cy *= cy
    cz *= cz
    cx += cy
    cx += cz
    area = np.sqrt(cx, out=cx).astype(np.float64)
    weighted = []
    for k in range(3):
        g = a[k] + b[k]
        g += c3[k]
        # einsum, not ``@``: BLAS would wake its thread pool for every block.
        weighted.append(float(np.einsum("i,i->", g, area, dtype=np.float64)))
    return float(area.sum()), weighted[0], weighted[1], weighted[2]


_CORNER_CHUNK = 1 << 20
"""Vertices per block of the corner-centre sums (bounds the float64 temporaries)."""


_GENERIC = np.array([1.0, math.sqrt(2.0), math.sqrt(3.0)]) / math.sqrt(6.0)
"""Unit direction (1, sqrt 2, sqrt 3) / sqrt 6 of the frame's offset: on no coordinate
plane or diagonal, and no rational combination of its components vanishes, so two
distinct points of a rational grid (a subdivided box) never get equal norms from
it. (A first choice, (1, phi, phi**2), tied such points: phi**2 = phi + 1.)"""
GENERIC_OFFSET = 2.0**-20
"""Offset of the corner-mean frame, relative to the bounding-box diagonal (~1e-6)."""


_COUNT_CHUNK = 1 << 24
"""Corners per ``bincount`` when the triangles are not native-size integers."""


def proper_mask(tris: np.ndarray) -> np.ndarray:
    """(T,) bool: the triangle has three distinct vertex indices (see :func:`corner_counts`)."""
    return (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])


def corner_counts(n: int, tris: np.ndarray) -> np.ndarray:
    """(n,) int64: corners of proper triangles at each vertex (0: unreferenced).

    A triangle that repeats a vertex index (``(i, i, j)``, ``(i, i, i)``) has no
    area and is left out: otherwise a few dozen of them at one far vertex, invisible
    in any viewer, moved the corner mean enough to defeat the blind reader (found in
    review; tested). Zero-area triangles over *distinct* indices (a vertex and its
    exact copies) still count; the reader's norms count each position once.

    ``bincount`` casts its input to native-size integers: for the int32 triangles a
    file gives, one call on 20 M triangles held a 0.45 GiB copy (the 10 M-vertex
    extract's peak went from 0.59 to 0.90 GiB), so the corners are counted in blocks
    of ``_COUNT_CHUNK`` (a 128 MiB copy at most; integer sums, same result).
    """
    t = np.asarray(tris)
    if not t.size:
        return np.zeros(n, np.int64)
    if t.ndim == 2 and t.shape[1] == 3:
        proper = proper_mask(t)
        if not proper.all():
            t = t[proper]
    # order="K": a view of C- or F-ordered triangles (a column-major array is not
    # copied; ~40 ms per 17 M corners saved).
    flat = np.ravel(t, order="K")
    if len(flat) <= _COUNT_CHUNK:
        return np.bincount(flat.astype(np.intp, copy=False), minlength=n)
    counts = np.zeros(n, np.int64)
    for s in range(0, len(flat), _COUNT_CHUNK):
        counts += np.bincount(flat[s : s + _COUNT_CHUNK].astype(np.intp, copy=False), minlength=n)
    return counts


def corner_centre(
    points: np.ndarray, tris: np.ndarray, counts: np.ndarray | None = None
) -> np.ndarray:
    """The v2 frame's centre: the mean of the triangle corners (= unweighted mean of
    the proper triangles' centroids; vertex mean if there is none; see the module
    docstring for why), moved by ``GENERIC_OFFSET`` of the referenced vertices'
    bounding-box diagonal along a fixed direction.

    Why the offset: on a mirror-symmetric model (a Mirror modifier, CAD parts) the
    exact corner mean lies on the mirror plane to the last bit, so every mirrored
    pair of vertices has bitwise equal norms. The reader handles that (equal norms
    of distinct positions count each), but on a slower path: embed on a symmetric
    2.9 M-vertex torus ran at 0.97 M vertices/s against 4.5 with unequal norms
    (one-off check, 2026-12-06). Off the plane by ~1e-6 of the diagonal, mirrored
    norms differ by ~1e-7 relative, far above float64 rounding; the frame is
    otherwise the same (a rotation of the model turns the offset against it by at
    most ~1e-6 of the diagonal, 7x less than the centre moves under 10-bit rounding).

    Only referenced vertices enter the sums (an unreferenced vertex may hold NaN or
    lie anywhere). ``counts``: :func:`corner_counts` if the caller has it. Sums are
    float64, relative to the first referenced vertex, in fixed blocks and order, so
    the same input gives the same bits in the embedder's read-back and in the reader.
    """
    pts = np.asarray(points)
    c = corner_counts(len(pts), tris) if counts is None else counts
    total = int(c.sum()) if len(c) else 0
    if not (total and len(pts)):
        return np.asarray(pts.mean(axis=0), dtype=np.float64)
    origin = pts[int(np.flatnonzero(c)[0])].astype(np.float64)
    acc = np.zeros(3)
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for s in range(0, len(pts), _CORNER_CHUNK):
        w = c[s : s + _CORNER_CHUNK].astype(np.float64)
        block = pts[s : s + _CORNER_CHUNK]
        used = w > 0
        if not used.all():
            block, w = block[used], w[used]
        if not len(w):
            continue
        for k in range(3):
            col = block[:, k].astype(np.float64) - origin[k]
            acc[k] += float(np.einsum("i,i->", w, col, dtype=np.float64))
            # per column: a (n, 3) reduce along axis 0 is ~7x slower
            lo[k] = min(lo[k], float(col.min()))
            hi[k] = max(hi[k], float(col.max()))
    size = float(np.linalg.norm(hi - lo))
    return origin + acc / float(total) + (GENERIC_OFFSET * size) * _GENERIC


def frame_centre(points: np.ndarray, tris: np.ndarray, kind: CentreKind) -> np.ndarray:
    """The centre a scheme reads norms about (``kind``: see :data:`CentreKind`)."""
    kind = centre_of(kind)
    if kind == "corner":
        return corner_centre(points, tris)
    if kind == "area":
        return area_centre(points, tris)
    raise ValueError(f"unknown centre kind {kind!r}")


def area_centre(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Surface centroid (area-weighted triangle centroids); vertex mean if degenerate.

    Why float32 gathers: the triangle gathers are the cost (memory bound); the
    coordinates are taken relative to the first vertex, so float32 keeps ~1e-7
    of the mesh size, and the sums are accumulated in float64. The centre then
    agrees with a float64 computation to ~1e-9 of the diagonal, far below what
    a float32 file round trip does to the norms anyway.
    """
    pts = np.asarray(points)
    if len(tris) and len(pts):
        origin = pts[0].astype(np.float64)
        xyz = [(pts[:, i] - origin[i]).astype(np.float32) for i in range(3)]
        acc = np.zeros(3)
        total = 0.0
        for s in range(0, len(tris), _CENTRE_CHUNK):
            tt = tris[s : s + _CENTRE_CHUNK]
            sums = block_sums(xyz, tt[:, 0], tt[:, 1], tt[:, 2])
            total += sums[0]
            for k in range(3):
                acc[k] += sums[1 + k]
        if total > 0:
            return origin + acc / (3.0 * total)
    return np.asarray(pts.mean(axis=0), dtype=np.float64)


def referenced(n: int, tris: np.ndarray) -> np.ndarray:
    """(n,) bool: vertex referenced by at least one triangle."""
    used = np.zeros(n, bool)
    if tris.size:
        used[tris] = True  # 2-D fancy index: no copy for column-major arrays
    return used


_HASH_MUL = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0x2545F4914F6CDD1D),
    np.uint64(0x5851F42D4C957F2D),
)


def position_hash(points: np.ndarray) -> np.ndarray:
    """(N,) float64 hash of each position's exact bits (an integer below 2**52).

    Equal positions give equal hashes (-0.0 is folded onto 0.0); distinct ones
    collide with probability ~2**-52 per pair. Used with the norm to merge the
    copies exporters make at seams (coincident = bitwise equal after the
    file's own float rounding, which is what exporters write).
    """
    p = np.asarray(points)
    if p.dtype == np.float32:
        u = [(p[:, i] + np.float32(0.0)).view(np.uint32).astype(np.uint64) for i in range(3)]
    else:
        p = p.astype(np.float64, copy=False)
        u = [np.ascontiguousarray(p[:, i] + 0.0).view(np.uint64) for i in range(3)]
    h = u[0] * _HASH_MUL[0]
    h ^= u[1] * _HASH_MUL[1]
    h ^= u[2] * _HASH_MUL[2]
    h ^= h >> np.uint64(29)
    h *= _HASH_MUL[1]
    return (h >> np.uint64(12)).astype(np.float64)


_NORMS_CHUNK = 1 << 15
"""Rows per block in :func:`norms`: the block's temporaries stay in cache (~2.5x faster)."""


def norms(points: np.ndarray, centre: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """Float64 distances |p - centre| (of ``points[idx]`` if given), column by column.

    Always ``sqrt(((x - cx)**2 + (y - cy)**2) + (z - cz)**2)`` in float64, in that
    order (callers rely on the exact bits: the embedder's read-back predicts the
    reader), computed on blocks of rows so the temporaries stay in cache.
    """
    p = np.asarray(points)
    n = len(p) if idx is None else len(idx)
    out = np.empty(n)
    for s0 in range(0, n, _NORMS_CHUNK):
        s1 = min(s0 + _NORMS_CHUNK, n)
        pb = p[s0:s1] if idx is None else p[idx[s0:s1]]
        acc = out[s0:s1]
        np.subtract(pb[:, 0], centre[0], out=acc, dtype=np.float64)
        acc *= acc  # == 0.0 + d * d, the first term
        d = np.empty(s1 - s0)
        for i in (1, 2):
            np.subtract(pb[:, i], centre[i], out=d, dtype=np.float64)
            d *= d
            acc += d
        np.sqrt(acc, out=acc)
    return out
