"""Key-independent half of the informed trace: register a leak, model the attack.

Used by :mod:`sealport.watermark.informed` (which scores candidate deliveries);
``correspond`` runs once per leaked mesh and original, whatever the number of
deliveries tested against it. Nothing here looks at a key, so the informed
false-positive bound holds whatever these fits pick.

* *Same connectivity* (the leak has the original's vertex count and triangle
  array: noise, smoothing, quantisation and rigid motion keep the file's vertex
  order): vertex ``i`` of the leak is vertex ``i`` of the original; a Umeyama
  similarity on all pairs aligns them. Three attack models, chosen by a least-
  squares fit on the *original* (never on a key):

  - *Quantisation*: every leaked coordinate axis sits on a regular grid
    ``phase + n q``. The original's points and rays are mapped into the leak's
    frame by a similarity fitted with EM (Umeyama onto each rounded point's
    expected true position given its cell, ``LATTICE_ROUNDS``); the remaining
    error is a Gaussian of width ``tau`` (maximum likelihood of the unmarked
    original under the grid, less the mark's own share). A vertex
    then votes with the log-likelihood ratio of its observed grid cell under
    "moved up" vs "moved down" (``informed._lattice_llr``): vertices whose move
    cannot cross a cell boundary say nothing, the others say it almost
    noise-free, far beyond what treating rounding as noise allows.
  - *Laplacian smoothing*: ``k`` umbrella steps of ``lambda`` in
    ``SMOOTH_LAMBDAS`` (0.1 is the benchmark's operator; ``lambda, k`` by least
    squares of the similarity-aligned leak against the smoothed original,
    ``k <= 200``). Smoothing is
    linear, so ``leak - S^k original = S^k mark``; ``S^-k`` (one sparse LU of
    the step, ``k`` solves) recovers the mark, read along ``u`` (a plain
    correlation with ``S^k`` of the expected move leaves the bins mixed: each
    smoothed bin leaks into its neighbours). ``k > 0`` is taken only when it
    halves the squared residual of ``k = 0``.
  - Otherwise (``k = 0``): additive noise; ``y_i = (l_i - o_i) . u_i`` (the
    full 3-D residual along the original's ray ``u_i``, not a normal
    projection: the mark moved ``o_i`` along ``u_i``).

* *Other connectivity* (simplification, cropping, re-export, reordering):
  similarity ICP (moments + trimmed point-to-point ICP with a cKDTree), then
  a refit on the 15 % of leaked vertices closest to original vertices (those
  that survived; ICP alone left registration errors of the size of the mark
  on simplified meshes). A leaked vertex near an original vertex and on its
  ray (``SAME_VERTEX``, ``SAME_TANGENT``) is that vertex moved by the mark and
  reads its radial residual; every other
  leaked vertex is projected onto the *original* surface (closest face among
  those around the nearest original vertex): its signed offset ``h`` along the
  face normal ``n`` observes ``sum_v beta_v delta_v (u_v . n)`` (barycentric
  ``beta``), since a simplifier places its vertices on the marked surface.
  Both kinds are weighted by their inverse noise variance (tangential residual;
  robust MAD of ``h``, clipped at 2 sigma).

The result per original vertex: ``g_v = sum_obs w c_v y`` and
``a_v = sum_obs w c_v^2`` (back-projected evidence and its information), or the
quantisation grid model (:class:`Lattice`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .dequantise import axis_grid
from .geometry import (
    CentreKind,
    Welded,
    area_centre,
    as_triangles,
    centre_of,
    frame_centre,
    weld,
)
from .renumber import tri_keys, walk_pairs

SAME_VERTEX = 0.1
"""A leaked vertex closer than this x the median original edge to an original vertex..."""
SAME_TANGENT = 0.002
"""... and off its ray by less than this x the edge is that vertex, moved by the mark.

The mark moves a vertex along its ray only; a simplifier's new vertex sits off it.
Measured (fandisk, keep 30 % of the faces): distance alone at 0.05 / 0.02 edge
gave p = 1e-15 / 1e-8 (2 trials) against 1e-29 / 1e-31 with the ray test."""
SMOOTH_LAMBDAS = (0.1, 0.3, 0.5)
"""Steps of the modelled umbrella smoothing (0.1: the benchmark's attack; <= 0.5 keeps
every step invertible). Measured with 0.1 alone, a leak smoothed with lambda 0.5 x 10
steps read at p = 1e-4 (bunny) / 1e-1 (fandisk)."""
SMOOTH_MAX_STEPS = 200
_SMOOTH_PATIENCE = 20
"""Stop the k search after this many steps without a better fit."""
_FIT_POINTS = 50_000
"""Points the similarity / attack-model fits use (evenly strided; all on smaller meshes)."""
_SMOOTH_GAIN = 0.5
"""k > 0 only when it halves the squared residual of k = 0 (else: noise model)."""
_ROBUST_CLIP = 2.0
"""Surface offsets are clipped at this x their robust sigma (creases, QEM outliers)."""
LATTICE_ROUNDS = 60
"""EM alignment rounds of the quantisation model (fandisk, 7 bits: registration error
0.016-0.069 q per axis after plain Umeyama on the rounded points, 0.007-0.011 q after
60 rounds, against a mark of 0.025 q; p-value 1e-9..1e-16 -> 1e-13..1e-25)."""
_REFINE_ROUNDS = 8
_REFINE_SHARE = 0.15
_ICP_POINTS = 4000
_ICP_STEPS = 40
_COARSE_POINTS = 50_000
"""Original points the short ICP runs from every start align to (a fixed random subset
on larger meshes). Why: a KD-tree query from a badly aligned start costs ~40x one
from near the surface, and four of the five starts are bad: on a 2M-vertex original
those runs took 50 of correspond's 80 s. The full run from the best start still
aligns to every original point."""


@dataclass
class Lattice:
    """Quantisation model of an indexed leak, in the leak's own frame."""

    q: np.ndarray
    """(3,) grid step per axis."""
    tau: float
    """Alignment error, in grid steps (maximum likelihood, unmarked original)."""
    scale: float
    """Original -> leak similarity scale (radial moves scale with it)."""
    o: np.ndarray
    """(M, 3) original points in the leak frame."""
    u: np.ndarray
    """(M, 3) original rays in the leak frame."""
    obs: np.ndarray
    """(M, 3) leaked position of each original point."""


@dataclass
class Correspondence:
    """Key-independent part of an informed read: the leak's evidence on the original."""

    original: Welded
    g: np.ndarray
    """(M,) back-projected, noise-weighted radial evidence per welded original point."""
    a: np.ndarray
    """(M,) information of ``g`` (sum of weighted squared coefficients); 0 = unseen."""
    valid: np.ndarray
    """(M,) bool: the point is observed by the leak."""
    rms: float
    """Registration residual relative to the original's bbox diagonal."""
    coverage: float
    """Share of the original's used points with a counterpart."""
    model: str = "none"
    """Attack model the leak was read with (noise / smoothing k=.. / quantisation / surface)."""
    lattice: Lattice | None = None
    frame: CentreKind = "corner-even"
    """The reading frame of the deliveries this is checked against (set by correspond)."""
    by_norm: Any = field(default=None, repr=False, compare=False)
    """Cache of ``informed._ByNorm`` (the original's points sorted by norm), filled on
    the first key checked: a trace checks hundreds of keys on one correspondence."""


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var = (a * a).sum() / len(src)
    s = float((sig * d).sum() / var) if var > 0 else 1.0
    return s, rot, md - s * rot @ ms


def _leak_to_original(
    leak: np.ndarray, original: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) with ``s R leak + t ~ original`` for a leak that kept the
    vertex order, fitted the way that stays unbiased under noise.

    Why not ``_umeyama(leak, original)``: least squares in that direction divides by
    the leak's spread, which noise inflates (by 3 sigma^2 per point), so the scale
    comes out short and the aligned leak shrinks: every point then reads a radial
    residual of about -3 sigma^2 / spread x its norm. That bias is coherent within a
    bin (one norm) and the mark's two moves differ in their mean there, so it added
    a sign-independent term to every bin's log-likelihood ratio, so the scores
    varied more than the noise model says and the trace missed deliveries it
    should name (``bench_watermark.py --cho-scale``, noise of 0.5 % of the
    diagonal: 3/5 in the 2026-12-05 run, 5/5 after this fit). Fitting original ->
    leak puts the noise on the target side only, where it averages out; the
    inverse of that map is returned (tests/test_watermark.py checks the bias).
    """
    sc, rot, t = _umeyama(original, leak)
    inv = 1.0 / sc
    return inv, rot.T, -inv * (rot.T @ t)


def _moments(w: Welded) -> tuple[np.ndarray, float, np.ndarray]:
    """Area-weighted centre, RMS radius and principal axes (columns) of a surface."""
    p, t = w.points, w.tris
    c = area_centre(p, t)
    a, b, cc = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    area = np.linalg.norm(np.cross(b - a, cc - a), axis=1)
    g = (a + b + cc) / 3.0 - c
    wsum = area.sum() or 1.0
    cov = (g * area[:, None]).T @ g / wsum
    radius = math.sqrt(max(float(np.trace(cov)), 1e-300))
    _, vec = np.linalg.eigh(cov)
    return c, radius, vec


def _adjacency(w: Welded):
    """Sparse (n, n) 0/1 vertex adjacency of a welded mesh (CSR: ``indptr`` /
    ``indices`` list every vertex's distinct neighbours)."""
    import scipy.sparse as sp

    t = w.tris
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    n = len(w.points)
    adj = sp.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    adj.data[:] = 1.0
    return adj


def _umbrella(w: Welded):
    """Row-normalised vertex adjacency (umbrella operator) of a welded mesh."""
    import scipy.sparse as sp

    adj = _adjacency(w)
    deg = np.asarray(adj.sum(1)).ravel()
    return sp.diags(1.0 / np.maximum(deg, 1)) @ adj


def _tree(points: np.ndarray):
    from scipy.spatial import cKDTree

    return cKDTree(points)


def register(leak: Welded, original: Welded, tree=None) -> tuple[np.ndarray, float]:
    """Leaked points aligned onto the original (similarity ICP); (points, rms / diag).
    ``tree``: a KD-tree of the original's used points, if the caller has one."""
    o_pts = original.points[original.used]
    l_pts = leak.points[leak.used]
    diag = float(np.linalg.norm(o_pts.max(0) - o_pts.min(0))) or 1.0
    full = tree if tree is not None else _tree(o_pts)
    rng = np.random.default_rng(0)
    sub = l_pts if len(l_pts) <= _ICP_POINTS else l_pts[rng.choice(len(l_pts), _ICP_POINTS, False)]
    if len(o_pts) <= _COARSE_POINTS:
        coarse, c_pts = full, o_pts
    else:
        c_pts = o_pts[rng.choice(len(o_pts), _COARSE_POINTS, False)]
        coarse = _tree(c_pts)
    co, ro, eo = _moments(original)
    cl, rl, el = _moments(leak)
    inits = [(1.0, np.eye(3), np.zeros(3))]
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        flip = np.diag([sx, sy, sx * sy * np.linalg.det(eo) * np.linalg.det(el)])
        rot = eo @ flip @ el.T
        s = ro / rl
        inits.append((s, rot, co - s * rot @ cl))
    s0 = ro / rl
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None

    def icp(s: float, rot: np.ndarray, t: np.ndarray, steps: int, tree=full, pts=o_pts):
        for _ in range(steps):
            dist, j = tree.query(s * sub @ rot.T + t)
            keep = dist <= np.quantile(dist, 0.9) + 1e-12
            s2, r2, t2 = _umeyama(sub[keep], pts[j[keep]])
            # Point-to-point similarity ICP can shrink towards a point; the moment
            # ratio bounds the scale (cropping changes it by far less than 2x).
            s2 = float(np.clip(s2, 0.5 * s0, 2.0 * s0))
            done = abs(s2 - s) < 1e-9 * s and float(np.abs(r2 - rot).max()) < 1e-9
            s, rot, t = s2, r2, t2
            if done:
                break
        dist, _ = tree.query(s * sub @ rot.T + t)
        rms = float(np.sqrt(np.mean(np.minimum(dist, np.quantile(dist, 0.9)) ** 2))) / diag
        return rms, s, rot, t

    # Short runs from every start, then a full run from the best one.
    for s, rot, t in inits:
        cand = icp(s, rot, t, 8, coarse, c_pts)
        if best is None or cand[0] < best[0]:
            best = cand
    assert best is not None
    best = icp(best[1], best[2], best[3], _ICP_STEPS)
    assert best is not None
    rms, s, rot, t = best
    return s * leak.points @ rot.T + t, rms


def _refine(aligned: np.ndarray, leak: Welded, original: Welded, tree=None) -> np.ndarray:
    """Similarity refit on the leaked vertices nearest to original vertices.

    After simplification most kept vertices still sit on an original vertex (up to
    the mark), the rest lie between them; ICP against all of them leaves an error
    of the order of the mark. Refitting on the closest share, a few rounds,
    locks onto the survivors. Larger leaks refit on an even stride of
    ``_FIT_POINTS`` of their vertices (all of them cost a 2M-vertex leak ~6 s for
    a 7-parameter fit).
    """
    used_l = np.flatnonzero(leak.used)
    if len(used_l) > _FIT_POINTS:  # a 7-parameter fit: 15 % of 50k points is plenty
        used_l = used_l[:: -(-len(used_l) // _FIT_POINTS)]
    oidx = np.flatnonzero(original.used)
    tree = tree if tree is not None else _tree(original.points[oidx])
    src = leak.points[used_l]
    cur = aligned[used_l]
    fit = None
    for _ in range(_REFINE_ROUNDS):
        dist, i = tree.query(cur, workers=-1)
        keep = dist <= np.quantile(dist, _REFINE_SHARE) + 1e-300
        if keep.sum() < 10:
            break
        fit = _umeyama(src[keep], original.points[oidx[i[keep]]])
        cur = fit[0] * src @ fit[1].T + fit[2]
    if fit is None:
        return aligned
    s, rot, t = fit
    return s * leak.points @ rot.T + t


_PLANE_ROUNDS = 6
_PLANE_TRIM = 3.0
"""Point-to-plane refit: rounds, and residuals beyond this x their robust sigma are left out."""


def _refine_planes(
    aligned: np.ndarray, leak: Welded, original: Welded, tree, fans=None
) -> np.ndarray:
    """Point-to-plane similarity refit (Chen & Medioni) of the leak onto the original surface.

    Why: the point-to-point fits above assume most leaked vertices sit on original
    vertices. A leak with *added* vertices on the same surface (a subdivision, a
    tool that splits edges) breaks that: after Blender's simple subdivision three of
    four vertices are new, each half an edge from the nearest original vertex, and
    both fits stopped ~0.3 edge off (bench_watermark --blender-modifiers). Every
    such vertex still lies on the original surface (up to the mark), so distances
    to the surface's planes pin the similarity whatever the sampling. Linearised
    (small rotation, translation, scale) least squares on the signed plane offsets
    of up to ``_FIT_POINTS`` vertices, a few rounds; the mark is radial with keyed
    random signs, so it adds noise, not a bias, to the fit.
    """
    from scipy.spatial.transform import Rotation

    used_l = np.flatnonzero(leak.used)
    if len(used_l) > _FIT_POINTS:
        used_l = used_l[:: -(-len(used_l) // _FIT_POINTS)]
    oidx = np.flatnonzero(original.used)
    cur = aligned[used_l]
    moved = False
    for _ in range(_PLANE_ROUNDS):
        _, near = tree.query(cur, workers=-1)
        _, _, h, n = _closest_faces(cur, original, oidx[near], fans=fans)
        sig = 1.4826 * float(np.median(np.abs(h)))
        if not sig > 0:
            break
        keep = np.abs(h) <= _PLANE_TRIM * sig
        if keep.sum() < 20:
            break
        c0 = cur.mean(0)
        p = cur - c0
        rows = np.column_stack([np.cross(p, n), n, np.einsum("ij,ij->i", n, p)])
        x = np.linalg.lstsq(rows[keep], -h[keep], rcond=None)[0]
        rot = Rotation.from_rotvec(x[:3]).as_matrix()
        cur = c0 + (1.0 + x[6]) * (p @ rot.T) + x[3:6]
        moved = True
        step = float(np.abs(x[:3]).max() + np.abs(x[6]) + np.abs(x[3:6]).max() / _diag(cur))
        if step < 1e-9:
            break
    if not moved:
        return aligned
    s, r, t = _umeyama(leak.points[used_l], cur)
    return s * leak.points @ r.T + t


def _index_pairs(
    lv: np.ndarray, lf: np.ndarray, ov: np.ndarray, of: np.ndarray, orig: Welded, leak: Welded
) -> np.ndarray | None:
    """Leak point of every original point when the leak kept the file's vertex order."""
    if len(lv) != len(ov):
        return None
    lt, ot = as_triangles(lf), as_triangles(of)
    if lt.shape != ot.shape or not np.array_equal(lt, ot):
        return None
    first = np.empty(len(orig.points), np.int64)
    first[orig.inverse[::-1]] = np.arange(len(ov))[::-1]
    return leak.inverse[first]


def _log_cell(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails."""
    from scipy.special import log_ndtr

    flip = lo > 0
    a, b = np.where(flip, -hi, lo), np.where(flip, -lo, hi)
    lb = log_ndtr(b)
    return lb + np.log1p(-np.exp(np.minimum(log_ndtr(a) - lb, -1e-300)))


def _lattice(orig: Welded, obs: np.ndarray, sel: np.ndarray, u: np.ndarray) -> Lattice | None:
    """Quantisation model of an indexed leak (module doc), or None if not quantised."""
    grids = [axis_grid(obs[sel, k]) for k in range(3)]
    if any(g is None for g in grids):
        return None
    q = np.array([g[0] for g in grids if g is not None])
    fit = _sample(sel, _FIT_POINTS)  # 7 similarity parameters: a sample pins them
    src, dst = orig.points[fit], obs[fit]
    target = dst
    tau = 1.0
    for i in range(LATTICE_ROUNDS):
        s, rot, t = _umeyama(src, target)  # original -> leak frame
        o = s * src @ rot.T + t
        if i % 20 == 0 or i == LATTICE_ROUNDS - 1:
            tau = _fit_tau(o, dst, q)
        # EM step: the rounded points' expected true positions given their cells.
        target = _cell_mean(o, dst, q, tau)
    return Lattice(q, tau, s, s * orig.points @ rot.T + t, u @ rot.T, obs)


def _sample(sel: np.ndarray, most: int) -> np.ndarray:
    """Indices of at most ``most`` selected points, evenly strided (deterministic)."""
    idx = np.flatnonzero(sel)
    return idx[:: max(1, len(idx) // most)]


def _fit_tau(o: np.ndarray, obs: np.ndarray, q: np.ndarray) -> float:
    """Maximum-likelihood alignment error (in grid steps) of unmarked points."""
    best = (-np.inf, 1.0)
    for tau in np.geomspace(1e-3, 1.0, 31):
        ll = 0.0
        for k in range(3):
            r = (obs[:, k] - o[:, k]) / (tau * q[k])
            ll += float(_log_cell(r - 0.5 / tau, r + 0.5 / tau).sum())
        if ll > best[0]:
            best = (ll, float(tau))
    return best[1]


def _cell_mean(o: np.ndarray, obs: np.ndarray, q: np.ndarray, tau: float) -> np.ndarray:
    """E[x | x in the observed cell], x ~ N(o, (tau q)^2) per axis (truncated normal)."""
    out = np.empty_like(o)
    for k in range(3):
        sd = tau * q[k]
        lo = (obs[:, k] - 0.5 * q[k] - o[:, k]) / sd
        hi = (obs[:, k] + 0.5 * q[k] - o[:, k]) / sd
        logz = _log_cell(lo, hi)
        dens = np.exp(-0.5 * lo * lo - logz) - np.exp(-0.5 * hi * hi - logz)
        out[:, k] = o[:, k] + sd * dens / math.sqrt(2.0 * math.pi)
    return out


def _fit_smoothing(
    orig: Welded, obs: np.ndarray, sel: np.ndarray
) -> tuple[float, int, np.ndarray, np.ndarray]:
    """(lambda, k, aligned leak, S^k original): the umbrella smoothing that best explains
    the leak (k = 0: none). Other step sizes are tried only when ``SMOOTH_LAMBDAS[0]``
    already found smoothing."""
    op = _umbrella(orig)
    fit = _sample(sel, _FIT_POINTS)
    best: tuple[float, float, int, tuple, np.ndarray] | None = None
    res0, sim0 = math.inf, (1.0, np.eye(3), np.zeros(3))
    for lam in SMOOTH_LAMBDAS:
        p = orig.points.copy()
        top: tuple[float, int] = (math.inf, 0)
        for k in range(0 if best is None else 1, SMOOTH_MAX_STEPS + 1):
            if k:
                p = p + lam * (op @ p - p)
            sim = _leak_to_original(obs[fit], p[fit])
            res = float(((sim[0] * obs[fit] @ sim[1].T + sim[2] - p[fit]) ** 2).sum())
            if k == 0:
                res0, sim0 = res, sim
            if res < top[0]:
                top = (res, k)
                if best is None or res < best[0]:
                    best = (res, lam, k, sim, p.copy())
            elif k > top[1] + _SMOOTH_PATIENCE:
                break
        assert best is not None
        if best[2] == 0 or best[0] > _SMOOTH_GAIN * res0:
            break  # noise alone can favour k = 1..2 a little: not smoothing
    assert best is not None
    if best[2] == 0 or best[0] > _SMOOTH_GAIN * res0:
        best = (res0, 0.0, 0, sim0, orig.points)
    s, rot, t = best[3]
    return best[1], best[2], s * obs @ rot.T + t, best[4]


def _deconvolve(orig: Welded, lam: float, k: int, resid: np.ndarray) -> np.ndarray:
    """``S^-k resid`` (module doc): k solves with one sparse LU of the smoothing step.

    Exact inversion is affordable and, measured, better than a damped solve: a
    step's eigenvalues lie in [1 - 2 lambda, 1], so 50 steps amplify the highest
    frequencies at most 0.8^-50 ~ 7e4 x, which leaves float32 rounding of the leak
    (6e-8 relative) below the mark; Tikhonov damping (mu = 1e-2) lost 3-20 decades
    of p-value on the bunny after 50 steps.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    n = len(orig.points)
    step = (1.0 - lam) * sp.identity(n) + lam * _umbrella(orig)
    lu = splu(sp.csc_matrix(step))
    x = resid
    for _ in range(k):
        x = lu.solve(x)
    return np.asarray(x)


def _fans(surf: Welded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangle corners sorted by vertex, first corner of each vertex, corners per
    vertex): the triangle fan of every vertex. Built once per correspondence (a sort
    of every corner: ~0.5 s on a 2M-vertex original)."""
    t = surf.tris
    order = np.argsort(t.ravel(), kind="stable")
    owner = t.ravel()[order]
    start = np.searchsorted(owner, np.arange(len(surf.points)))
    count = np.searchsorted(owner, np.arange(len(surf.points)), side="right") - start
    return order, start, count


def _closest_faces(
    pts: np.ndarray,
    surf: Welded,
    nearest: np.ndarray,
    max_valence: int = 12,
    fans: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(face, barycentrics, signed offset, unit normal) of each point on ``surf``.

    Among the triangles around the nearest surface vertex, the one whose plane
    projection of the point lies most inside it (barycentric test) is the closest
    face; the offset is the point-to-plane distance to it.
    """
    p, t = surf.points, surf.tris
    order, start, count = fans if fans is not None else _fans(surf)
    if len(pts) <= _FACE_CHUNK:
        return _closest_in_fans(pts, p, t, order, start[nearest], count[nearest], max_valence)
    parts = [
        _closest_in_fans(
            pts[i : i + _FACE_CHUNK],
            p,
            t,
            order,
            start[nearest[i : i + _FACE_CHUNK]],
            count[nearest[i : i + _FACE_CHUNK]],
            max_valence,
        )
        for i in range(0, len(pts), _FACE_CHUNK)
    ]
    face, bary, off, n = (np.concatenate(x) for x in zip(*parts, strict=True))
    return face, bary, off, n


_FACE_CHUNK = 1 << 15
"""Points per block in :func:`_closest_faces`: its (points, valence, 3) temporaries
stay ~10 MB instead of ~0.5 GB each on a 2M-vertex leak."""


def _closest_in_fans(
    pts: np.ndarray,
    p: np.ndarray,
    t: np.ndarray,
    order: np.ndarray,
    fan_start: np.ndarray,
    cnt: np.ndarray,
    max_valence: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_closest_faces` for one block: ``fan_start``/``cnt`` locate the triangles
    around each point's nearest vertex in ``order``."""
    slot = np.arange(max_valence)
    idx = fan_start[:, None] + np.minimum(slot[None, :], np.maximum(cnt - 1, 0)[:, None])
    faces = order[np.clip(idx, 0, len(order) - 1)] // 3  # (m, V)
    a, b, c = p[t[faces, 0]], p[t[faces, 1]], p[t[faces, 2]]
    e1, e2 = b - a, c - a
    nrm = np.cross(e1, e2)
    nn = np.linalg.norm(nrm, axis=2, keepdims=True)
    nrm = nrm / np.where(nn > 0, nn, 1.0)
    q = pts[:, None, :] - a
    d00 = np.einsum("mvc,mvc->mv", e1, e1)
    d01 = np.einsum("mvc,mvc->mv", e1, e2)
    d11 = np.einsum("mvc,mvc->mv", e2, e2)
    d20 = np.einsum("mvc,mvc->mv", q, e1)
    d21 = np.einsum("mvc,mvc->mv", q, e2)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) > 0, den, 1.0)
    bv = (d11 * d20 - d01 * d21) / den
    bw = (d00 * d21 - d01 * d20) / den
    inside = np.minimum(np.minimum(bv, bw), 1.0 - bv - bw)  # >= 0 inside the triangle
    inside = np.where((nn[..., 0] > 0) & (slot[None, :] < cnt[:, None]), inside, -np.inf)
    best = np.argmax(inside, axis=1)
    rows = np.arange(len(pts))
    bary = np.stack([1.0 - bv[rows, best] - bw[rows, best], bv[rows, best], bw[rows, best]], 1)
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-300)
    n = nrm[rows, best]
    return faces[rows, best], bary, np.einsum("ij,ij->i", q[rows, best], n), n


def _rays(orig: Welded, frame: CentreKind) -> np.ndarray:
    """Unit rays from the frame's centre: the directions the embedder moved along."""
    u = orig.points - frame_centre(orig.points, orig.tris, frame)
    return u / np.maximum(np.linalg.norm(u, axis=1), 1e-300)[:, None]


def median_edge(w: Welded) -> float:
    """Median length of a welded mesh's first triangle sides (a scale for tolerances)."""
    t = w.tris
    return float(np.median(np.linalg.norm(w.points[t[:, 0]] - w.points[t[:, 1]], axis=1)))


def _diag(points: np.ndarray) -> float:
    return float(np.linalg.norm(points.max(0) - points.min(0))) or 1.0


def _indexed(orig: Welded, leak: Welded, pairs: np.ndarray, frame: CentreKind) -> Correspondence:
    """Same connectivity: quantisation, smoothing or noise model (module doc)."""
    sel = orig.used.copy()
    u = _rays(orig, frame)
    obs = leak.points[pairs]
    cov = 1.0
    lat = _lattice(orig, obs, sel, u)
    zero = np.zeros(len(orig.points))
    if lat is not None:
        rms = float(np.sqrt(np.mean((lat.obs[sel] - lat.o[sel]) ** 2))) / _diag(lat.o[sel])
        return Correspondence(orig, zero, zero.copy(), sel, rms, cov, "quantisation", lat)
    lam, k, al, pk = _fit_smoothing(orig, obs, sel)
    resid = np.where(sel[:, None], al - pk, 0.0)
    rms = float(np.sqrt(np.mean(resid[sel] ** 2))) / _diag(orig.points[sel])
    if k == 0:
        model = "noise"
    else:
        resid = _deconvolve(orig, lam, k, resid)
        model = f"smoothing k={k} lambda={lam}"
    y = np.einsum("ij,ij->i", resid, u)
    # Noise variance from the tangential part (the mark is radial): inverse-variance units.
    var = float(np.mean(np.einsum("ij,ij->i", resid, resid)[sel] - y[sel] ** 2)) / 2.0
    var = max(var, 1e-30 * _diag(orig.points[sel]) ** 2)
    g = np.where(sel, y / var, 0.0)
    return Correspondence(orig, g, sel / var, sel, rms, cov, model)


_RENUMBER_ROUNDS = 12
"""Connectivity repair rounds of :func:`_renumbered_pairs`."""


def _expand(start: np.ndarray, nbr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, neighbour) pairs of every ``rows`` entry, by CSR."""
    counts = start[rows + 1] - start[rows]
    owner = np.repeat(np.arange(len(rows)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, nbr[np.repeat(start[rows], counts) + offset]


def _renumbered_pairs(
    orig: Welded, leak: Welded, aligned: np.ndarray, tree, oidx: np.ndarray
) -> np.ndarray | None:
    """Leak point of every original point when the leak is the original's mesh with its
    vertices renumbered (an exporter's order, a tool's reorder), else None.

    Why: the same-order models (noise, smoothing, quantisation) read a leak far
    better than the surface model, but need each original vertex's counterpart;
    after noise of a sizeable share of an edge, the nearest registered vertex is
    the wrong one for some vertices. Start from the nearest original point of each
    registered leak point, then repair by connectivity: a vertex whose triangles do
    not map onto original triangles takes the original vertex adjacent to the most
    images of its neighbours. Accepted only as a bijection under which *every* leak
    triangle is an original triangle (leak and original only, never the key).
    """
    n = len(orig.points)
    if len(leak.points) != n or len(leak.tris) != len(orig.tris) or n >= 1 << 21:
        return None
    if int(leak.used.sum()) != len(oidx):
        return None
    lidx = np.flatnonzero(leak.used)
    _, near = tree.query(aligned, workers=-1)
    pi = oidx[near]  # leak point -> original point (only used points count)
    o_adj, l_adj = _adjacency(orig), _adjacency(leak)
    o_start, o_nbr = o_adj.indptr, o_adj.indices
    l_start, l_nbr = l_adj.indptr, l_adj.indices
    orig_keys = np.sort(tri_keys(orig.tris, n))
    for _ in range(_RENUMBER_ROUNDS):
        keys = tri_keys(pi[leak.tris], n)
        at = np.minimum(np.searchsorted(orig_keys, keys), len(orig_keys) - 1)
        bad = orig_keys[at] != keys
        dup = np.zeros(n, bool)
        dup[lidx] = np.bincount(pi[lidx], minlength=n)[pi[lidx]] > 1
        if not bad.any() and not dup.any():
            pairs = np.empty(n, np.int64)
            pairs[pi[lidx]] = lidx
            pairs[np.flatnonzero(~orig.used)] = np.flatnonzero(~leak.used)  # unread
            return pairs
        suspect = np.unique(np.concatenate([leak.tris[bad].ravel(), np.flatnonzero(dup)]))
        owner, j = _expand(l_start, l_nbr, suspect)  # suspect -> its leak neighbours
        owner2, c = _expand(o_start, o_nbr, pi[j])  # -> originals next to their images
        vote = np.unique(owner[owner2].astype(np.int64) * n + c, return_counts=True)
        who, cand = vote[0] // n, vote[0] % n
        best = np.zeros(len(suspect), np.int64)
        top = np.zeros(len(suspect), np.int64)
        order = np.lexsort((vote[1], who))  # per suspect, the most voted candidate last
        last = np.r_[who[order][1:] != who[order][:-1], True]
        best[who[order][last]] = cand[order][last]
        top[who[order][last]] = vote[1][order][last]
        change = top > 0
        pi[suspect[change]] = best[change]
    return None


def _unindexed(
    orig: Welded,
    leak: Welded,
    tree=None,
    aligned: np.ndarray | None = None,
    frame: CentreKind = "corner-even",
    shared: _Shared | None = None,
) -> Correspondence:
    """Other connectivity: survivors read radially, the rest on the original surface.
    ``tree``, ``aligned``: the original's KD-tree and the registered leak, if known;
    ``shared``: the frame-independent work on ``aligned`` (:func:`_share`), if known."""
    m = len(orig.points)
    oidx = np.flatnonzero(orig.used)
    if tree is None:
        tree = _tree(orig.points[oidx])  # one KD-tree for registration, refit and reading
    if aligned is None:
        assert shared is None, "shared work belongs to a given alignment"
        aligned, _ = register(leak, orig, tree)
        aligned = _refine(aligned, leak, orig, tree)
    if shared is None:
        shared = _share(aligned, leak, orig, tree)
    u = _rays(orig, frame)
    edge = shared.edge

    def survivors(al: np.ndarray, name: str):
        """(dist, nearest original point, is-a-surviving-vertex) of the used leak points."""
        if name not in shared.queries:
            pts = al[leak.used]
            dist, near = tree.query(pts, workers=-1)
            shared.queries[name] = (pts, dist, oidx[near])
        pts, dist, near = shared.queries[name]
        off = pts - orig.points[near]
        rad = np.einsum("ij,ij->i", off, u[near])
        tan = np.sqrt(np.maximum(np.einsum("ij,ij->i", off, off) - rad * rad, 0.0))
        return pts, dist, near, (dist < SAME_VERTEX * edge) & (tan < SAME_TANGENT * edge)

    # The point-to-plane refit is for leaks whose vertices mostly are new (subdivided);
    # where the point fits locked onto surviving vertices (simplified, cropped) it can
    # drift off them. Keep whichever alignment finds more survivors: leak and original
    # only, never the key, so the false-positive bound is untouched.
    found = survivors(aligned, "aligned")
    fans, planar = shared.fans, shared.planar
    if planar is not aligned:
        other = survivors(planar, "planar")
        if other[3].sum() > found[3].sum():
            aligned, found = planar, other
    pts, dist, near, same = found
    g, a = np.zeros(m), np.zeros(m)
    if same.any():
        i = near[same]
        r = pts[same] - orig.points[i]
        y = np.einsum("ij,ij->i", r, u[i])
        var = max(float(np.mean(np.einsum("ij,ij->i", r, r) - y * y)) / 2.0, 1e-300)
        g += np.bincount(i, weights=y / var, minlength=m)
        a += np.bincount(i, minlength=m) / var
    if (~same).any():
        face, bary, h, n = _closest_faces(pts[~same], orig, near[~same], fans=fans)
        sig = 1.4826 * float(np.median(np.abs(h)))
        if sig > 0:
            h = np.clip(h, -_ROBUST_CLIP * sig, _ROBUST_CLIP * sig)
            tv = orig.tris[face]
            coef = bary * np.einsum("mkc,mc->mk", u[tv], n)
            g += np.bincount(tv.ravel(), weights=(coef * h[:, None]).ravel(), minlength=m) / sig**2
            a += np.bincount(tv.ravel(), weights=(coef * coef).ravel(), minlength=m) / sig**2
    valid = orig.used & (a > 0)
    rms = float(np.sqrt(np.mean(np.minimum(dist, np.quantile(dist, 0.9)) ** 2))) / _diag(
        orig.points[oidx]
    )
    cov = float(np.count_nonzero(valid)) / max(1, len(oidx))
    return Correspondence(orig, g, a, valid, rms, cov, "surface")


@dataclass
class _Shared:
    """The surface model's frame-independent work on one alignment (see :func:`_share`)."""

    fans: Any
    """:func:`_fans` of the original."""
    planar: np.ndarray
    """The point-to-plane refit of the alignment (the same array if it did not move)."""
    edge: float
    """:func:`median_edge` of the original."""
    queries: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Per alignment ("aligned" / "planar"): the used leak points, their distance to
    and index of the nearest original point (KD-tree queries, ~1 s each on 2M points)."""


def _share(
    aligned: np.ndarray, leak: Welded, orig: Welded, tree, edge: float | None = None
) -> _Shared:
    """Work of :func:`_unindexed` that no frame changes, done once for all frames."""
    fans = _fans(orig)
    planar = _refine_planes(aligned, leak, orig, tree, fans)
    return _Shared(fans, planar, median_edge(orig) if edge is None else edge)


def correspond(
    leak_vertices: np.ndarray,
    leak_faces: np.ndarray,
    orig_vertices: np.ndarray,
    orig_faces: np.ndarray,
    *,
    frame: CentreKind = "corner-even",
) -> Correspondence:
    """Register the leak to the original and model the attack (module doc, step 1).
    ``frame``: the delivery scheme's centre (the rays the embedder moved along)."""
    return correspond_frames(leak_vertices, leak_faces, orig_vertices, orig_faces, (frame,))[frame]


def correspond_frames(
    leak_vertices: np.ndarray,
    leak_faces: np.ndarray,
    orig_vertices: np.ndarray,
    orig_faces: np.ndarray,
    frames: Sequence[CentreKind],
) -> dict[CentreKind, Correspondence]:
    """:func:`correspond` in each of ``frames``, registering the leak once.

    Why: a ledger holds deliveries of both schemes for years (v1's stay readable), and
    a trace checks a leak against all of them. The registration (similarity ICP, the
    refits, the renumbering walk) does not depend on the frame, only the rays the
    evidence is read along do; it is ~all of the cost on a cropped or simplified leak.
    Each result equals ``correspond(..., frame=f)`` (tested).
    """
    if isinstance(frames, str):
        raise TypeError("frames: a sequence of frames, e.g. ['corner', 'area']")
    # Frames with one centre (v2's and v3's) have the same rays, so the same evidence:
    # read once per centre; each frame gets its own result object (its bins differ).
    first: dict[str, CentreKind] = {}  # the first frame asked for of each centre
    for f in frames:
        first.setdefault(centre_of(f), f)
    got = _correspond_frames(
        leak_vertices, leak_faces, orig_vertices, orig_faces, list(first.values())
    )
    return {f: replace(got[first[centre_of(f)]], frame=f, by_norm=None) for f in frames}


def _correspond_frames(
    leak_vertices: np.ndarray,
    leak_faces: np.ndarray,
    orig_vertices: np.ndarray,
    orig_faces: np.ndarray,
    wanted: list[CentreKind],
) -> dict[CentreKind, Correspondence]:
    """:func:`correspond_frames` for frames of distinct centres (the caller sets each
    result's ``frame``)."""
    orig = weld(np.asarray(orig_vertices), orig_faces)
    leak = weld(np.asarray(leak_vertices), leak_faces)
    if int(leak.used.sum()) < 4 or int(orig.used.sum()) < 4:
        return {f: _unread(orig) for f in wanted}
    pairs = _index_pairs(
        np.asarray(leak_vertices), leak_faces, np.asarray(orig_vertices), orig_faces, orig, leak
    )
    if pairs is not None:
        return {f: _indexed(orig, leak, pairs, f) for f in wanted}
    oidx = np.flatnonzero(orig.used)
    tree = _tree(orig.points[oidx])
    aligned, _ = register(leak, orig, tree)
    aligned = _refine(aligned, leak, orig, tree)
    # Same mesh, other vertex order? The walk over the connectivity first (any noise;
    # ~0.5 s on 41k vertices), the neighbour vote where the walk cannot cross (e.g. a
    # mesh whose edges are mostly non-manifold).
    edge = median_edge(orig)
    pairs = walk_pairs(orig, leak, aligned, tree, oidx, edge)
    if pairs is None:
        pairs = _renumbered_pairs(orig, leak, aligned, tree, oidx)
    if pairs is not None:  # same mesh, other vertex order: the same-order models
        return {f: _indexed(orig, leak, pairs, f) for f in wanted}
    shared = _share(aligned, leak, orig, tree, edge)
    return {f: _unindexed(orig, leak, tree, aligned, f, shared) for f in wanted}


def _unread(orig: Welded) -> Correspondence:
    """Nothing to read: a leak or original with fewer than 4 points."""
    m = len(orig.points)
    z = np.zeros(m)
    return Correspondence(orig, z, z.copy(), np.zeros(m, bool), 1.0, 0.0)
