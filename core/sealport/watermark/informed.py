"""Informed forensic tier: read a mark with the original mesh at hand (server side).

Why a second tier: the blind reader must rebuild its bins from the leaked mesh
alone, so anything that moves the bin edges (cropping, simplification, noise on
the edge vertices) scrambles it. The server keeps the original asset, so it can
undo the attacker's geometry changes instead of hoping they were small:

1. **Register** the leaked mesh to the original: similarity alignment from the
   area-weighted moments (centre, RMS radius, principal axes, four proper sign
   choices, plus the identity), refined by trimmed point-to-point ICP with a
   ``scipy.spatial.cKDTree`` on the original's vertices (Umeyama similarity per
   step). The candidate with the smallest residual wins.
2. **Correspond**: for every welded vertex ``o_i`` of the original, the nearest
   aligned leaked vertex ``l_j`` and its area-weighted normal ``n_j`` give the
   signed point-to-plane offset ``d_i = (l_j - o_i) . n_j``; the mark moved
   ``o_i`` along the ray ``u_i`` from the centre, which shows up in ``d_i`` as
   ``r_i (u_i . n_j)``, so ``y_i = d_i (u_i . n_j)`` estimates it whatever the
   leaked sampling. Original vertices farther than ``CROP_FACTOR`` x the median
   correspondence distance from any leaked vertex (cropped away) are dropped.
3. **Per-bin statistic** on the *original's* keyed partition (so attacks cannot
   move the bins): ``z_b`` = weighted mean of ``y_i`` in bin ``b`` (weight
   ``x(1-x)``, the shape of the ``x -> x**k`` displacement), minus a quadratic
   trend in the bin radius (absorbs residual scale error and the shrinkage of
   smoothing), scaled by ``sqrt(n_b)``.
4. **Detection of a known payload**: the expected sign ``s_b`` of bin ``b`` is the
   code bit XOR the keyed whitening bit, i.i.d. uniform over keys and
   independent of the mesh and of ``z`` (the bins come from the key's edge
   draw, the whitening from a separate draw). Hence, conditioned on the mesh,
   under "not this delivery": ``P(sum s_b z_b >= T) <= exp(-T^2 / (2 sum z_b^2))``
   (Hoeffding) and ``P(#{sign z_b = s_b} >= a) = BinomTail(n, a)``. We take the
   smaller p-value times 2 (union of the two tests) and accept when it is
   ``<= INFORMED_FPR = 1e-9``. Independently, the hard bits go through the RS +
   keyed-tag decoder, which yields the payload itself when few enough bits flip.

The embedder guarantees every bin moves in its bit's direction (see
``mark.embed``), which is what makes the informed signs reliable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .codec import decode_bits, encode_bits
from .geometry import Welded, area_centre, weld
from .keys import layout
from .mark import _frame, binomial_tail, capacity_bits

INFORMED_FPR = 1e-9
"""Accept a delivery when P(an unrelated mesh scores this well) <= this."""
CROP_FACTOR = 4.0
"""Original vertices farther than this x median correspondence distance are 'missing'."""
MIN_INFORMED_BIN = 3
"""A bin needs this many corresponding vertices to vote."""
_ICP_POINTS = 4000
_ICP_STEPS = 40


@dataclass
class Correspondence:
    """Key-independent part of an informed read: the leaked geometry on the original."""

    original: Welded
    y: np.ndarray
    """(M,) radial-offset estimate per welded original point (0 where missing)."""
    a: np.ndarray
    """(M,) (u . n)^2 per point: how much of a radial move the offset can see."""
    valid: np.ndarray
    """(M,) bool: the point has a leaked counterpart."""
    rms: float
    """Registration residual relative to the original's bbox diagonal."""
    coverage: float
    """Share of the original's used points with a counterpart."""


@dataclass(frozen=True)
class InformedResult:
    status: Literal["verified", "not_found"]
    p_value: float
    """min(Hoeffding, binomial) x 2: P(an unrelated mesh scores this well)."""
    agree: int
    bins: int
    decoded: bytes | None
    """Payload from the RS decoder of the informed hard bits (None if it failed)."""
    coverage: float
    rms: float


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


def _vertex_normals(w: Welded) -> np.ndarray:
    p, t = w.points, w.tris
    fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])  # area-weighted
    n = np.zeros_like(p)
    for k in range(3):
        for c in range(3):
            n[:, c] += np.bincount(t[:, k], weights=fn[:, c], minlength=len(p))
    norm = np.linalg.norm(n, axis=1)
    return n / np.where(norm > 0, norm, 1.0)[:, None]


def _umbrella(w: Welded):
    """Row-normalised vertex adjacency (umbrella operator) of a welded mesh."""
    import scipy.sparse as sp

    t = w.tris
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    n = len(w.points)
    adj = sp.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(1)).ravel()
    return sp.diags(1.0 / np.maximum(deg, 1)) @ adj


def _remove_attack_space(
    orig: Welded, y: np.ndarray, a: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project out what smoothing-like attacks do to the original (informed).

    Smoothing and simplification move each vertex along its normal by an amount
    driven by the local curvature, which the server can compute on the original:
    the normal components of (umbrella-smoothed original - original) after 1, 4
    and 16 steps span most of it. Least squares over the valid vertices removes
    that span from ``y``; the keyed mark is nearly orthogonal to it (its sign
    changes from bin to bin at random), so little of the mark is lost.
    """
    if valid.sum() < 50 or len(orig.tris) == 0:
        return y, a
    op = _umbrella(orig)
    normals = _vertex_normals(orig)
    centre = area_centre(orig.points, orig.tris)
    u = orig.points - centre
    u /= np.maximum(np.linalg.norm(u, axis=1), 1e-300)[:, None]
    un = np.einsum("ij,ij->i", u, normals)
    cols = []
    p = orig.points.copy()
    for step in range(1, 17):
        p = p + 0.5 * (op @ p - p)
        if step in (1, 4, 16):
            cols.append(np.einsum("ij,ij->i", p - orig.points, normals) * un)
    basis = np.stack(cols, axis=1)[valid]
    coef, *_ = np.linalg.lstsq(basis, y[valid], rcond=None)
    out = y.copy()
    out[valid] -= basis @ coef
    return out, a


def register(leak: Welded, original: Welded) -> tuple[np.ndarray, float]:
    """Leaked points aligned onto the original (similarity ICP); (points, rms / diag)."""
    from scipy.spatial import cKDTree

    o_pts = original.points[original.used]
    l_pts = leak.points[leak.used]
    diag = float(np.linalg.norm(o_pts.max(0) - o_pts.min(0))) or 1.0
    tree = cKDTree(o_pts)
    rng = np.random.default_rng(0)
    sub = l_pts if len(l_pts) <= _ICP_POINTS else l_pts[rng.choice(len(l_pts), _ICP_POINTS, False)]
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

    def icp(s: float, rot: np.ndarray, t: np.ndarray, steps: int):
        for _ in range(steps):
            dist, j = tree.query(s * sub @ rot.T + t)
            keep = dist <= np.quantile(dist, 0.9) + 1e-12
            s2, r2, t2 = _umeyama(sub[keep], o_pts[j[keep]])
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
        cand = icp(s, rot, t, 8)
        if best is None or cand[0] < best[0]:
            best = cand
    assert best is not None
    best = icp(best[1], best[2], best[3], _ICP_STEPS)
    assert best is not None
    rms, s, rot, t = best
    return s * leak.points @ rot.T + t, rms


SAME_VERTEX = 0.25
"""Nearest leaked vertex closer than this x the median edge: the original survived."""
_MAX_VALENCE = 12
"""Triangles around the nearest leaked vertex tested as the closest face."""


def _surface_offsets(
    pts: np.ndarray, leak: Welded, nearest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Signed offset of each point to the leaked surface, and that face's normal.

    Among the triangles around the nearest leaked vertex, the one whose plane
    projection of the point lies most inside it (barycentric test) is the closest
    face; the offset is the point-to-plane distance to it. Why not the nearest
    vertex's plane: after simplification that vertex sits a tangential step away
    and its plane carries the curvature and the mark of another place.
    """
    p, t = leak.points, leak.tris
    order = np.argsort(t.ravel(), kind="stable")
    owner = t.ravel()[order]
    start = np.searchsorted(owner, np.arange(len(p)))
    count = np.searchsorted(owner, np.arange(len(p)), side="right") - start
    slot = np.arange(_MAX_VALENCE)
    cnt = count[nearest]
    idx = start[nearest][:, None] + np.minimum(slot[None, :], np.maximum(cnt - 1, 0)[:, None])
    faces = order[np.clip(idx, 0, len(order) - 1)] // 3  # (m, V)
    a, b, c = p[t[faces, 0]], p[t[faces, 1]], p[t[faces, 2]]  # (m, V, 3)
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
    n = nrm[rows, best]
    d = -np.einsum("ij,ij->i", q[rows, best], n)  # leaked surface minus point, along n
    return d, n


def correspond(
    leak_vertices: np.ndarray,
    leak_faces: np.ndarray,
    orig_vertices: np.ndarray,
    orig_faces: np.ndarray,
) -> Correspondence:
    """Register the leaked mesh to the original and sample it at the original's points."""
    from scipy.spatial import cKDTree

    orig = weld(np.asarray(orig_vertices), orig_faces)
    leak = weld(np.asarray(leak_vertices), leak_faces)
    m = len(orig.points)
    if int(leak.used.sum()) < 4 or int(orig.used.sum()) < 4:
        z = np.zeros(m)
        return Correspondence(orig, z, z.copy(), np.zeros(m, bool), 1.0, 0.0)
    aligned, rms = register(leak, orig)
    al = Welded(aligned, leak.inverse, leak.tris, leak.used)
    used_l = np.flatnonzero(leak.used)
    tree = cKDTree(aligned[used_l])
    dist, j = tree.query(orig.points)
    j = used_l[j]
    centre = area_centre(orig.points, orig.tris)
    u = orig.points - centre
    u /= np.maximum(np.linalg.norm(u, axis=1), 1e-300)[:, None]
    d, n = _surface_offsets(orig.points, al, j)
    # Where the original vertex itself survived (nearest leaked vertex far closer
    # than an edge: noise, smoothing, quantisation, cropping), its own offset along
    # its normal is the sharper reading; the closest face serves simplified leaks.
    lt = leak.tris
    edge = float(np.median(np.linalg.norm(aligned[lt[:, 0]] - aligned[lt[:, 1]], axis=1)))
    same = dist < SAME_VERTEX * edge
    vn = _vertex_normals(al)[j]
    d = np.where(same, np.einsum("ij,ij->i", aligned[j] - orig.points, vn), d)
    n = np.where(same[:, None], vn, n)
    un = np.einsum("ij,ij->i", u, n)
    dist = dist[:, None]
    d0 = dist[:, 0]
    med = float(np.median(d0[orig.used])) if orig.used.any() else 0.0
    valid = orig.used & (d0 <= max(CROP_FACTOR * med, edge) + 1e-12)
    y = np.where(valid, d * un, 0.0)
    a = np.where(valid, un * un, 0.0)
    y, a = _remove_attack_space(orig, y, a, valid)
    cov = float(valid.sum()) / max(1, int(orig.used.sum()))
    return Correspondence(orig, y, a, valid, rms, cov)


def bin_scores(c: Correspondence, key: bytes, payload_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(z_b, voting mask) per bin of the original's keyed partition."""
    n_bins = capacity_bits(payload_bits)
    f = _frame(c.original, layout(key, n_bins).edges)
    if f is None:
        return np.zeros(n_bins), np.zeros(n_bins, bool)
    ok = c.valid[f.idx]
    b = f.bins[ok]
    g = (f.x * (1.0 - f.x))[ok] + 1e-3
    y, a = c.y[f.idx][ok], c.a[f.idx][ok]
    num = np.bincount(b, weights=g * y, minlength=n_bins)
    den = np.bincount(b, weights=g * a, minlength=n_bins)
    cnt = np.bincount(b, minlength=n_bins)
    vote = (cnt >= MIN_INFORMED_BIN) & (den > 0)
    est = np.where(vote, num / np.where(den > 0, den, 1.0), 0.0)
    if vote.sum() > 6:  # remove a smooth trend in the bin radius (scale error, shrinkage)
        r = 0.5 * (f.edge_values[:-1] + f.edge_values[1:])
        r = (r - r.mean()) / (r.std() or 1.0)
        basis = np.stack([np.ones_like(r), r, r * r], axis=1)
        sw = np.sqrt(cnt * vote)
        coef, *_ = np.linalg.lstsq(basis * sw[:, None], est * sw, rcond=None)
        est = np.where(vote, est - basis @ coef, 0.0)
    return est * np.sqrt(cnt), vote


def _hoeffding(t: float, sq: float) -> float:
    if t <= 0 or sq <= 0:
        return 1.0
    return math.exp(-t * t / (2.0 * sq))


def informed_verify(
    c: Correspondence, key: bytes, expected_payload: bytes, *, fpr: float = INFORMED_FPR
) -> InformedResult:
    """Does the corresponded leak carry ``expected_payload`` under ``key``? (module doc)"""
    pb = 8 * len(expected_payload)
    n_bins = capacity_bits(pb)
    lay = layout(key, n_bins)
    z, vote = bin_scores(c, key, pb)
    bin_bit = np.empty(n_bins, np.uint8)
    bin_bit[lay.perm] = encode_bits(expected_payload, key)
    sign = (bin_bit ^ lay.whiten).astype(np.float64) * 2.0 - 1.0
    zv = z[vote]
    n = int(vote.sum())
    agree = int(np.count_nonzero(np.sign(zv) == sign[vote]))
    p = min(
        1.0, 2.0 * min(_hoeffding(float(sign[vote] @ zv), float(zv @ zv)), binomial_tail(n, agree))
    )
    hard = (z > 0).astype(np.uint8) ^ lay.whiten
    dec, _ = decode_bits(hard[lay.perm], np.abs(z)[lay.perm], vote[lay.perm], key, pb // 8)
    status: Literal["verified", "not_found"] = "verified" if p <= fpr and n > 0 else "not_found"
    return InformedResult(status, p, agree, n, dec.payload if dec else None, c.coverage, c.rms)
