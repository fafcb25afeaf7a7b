"""Blind embed / extract / verify on one mesh (numpy, vectorised).

See the package docstring for the maths; this module is the implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .codec import decode_bits, encode_bits, max_attempts
from .errors import WatermarkCapacityError
from .geometry import Welded, area_centre, weld
from .keys import NSYM, TAG_BYTES, WIDTH_JITTER, code_bytes, layout

DEFAULT_STRENGTH = 0.05
"""alpha: the bin mean of the normalised norm is pushed to 1/2 +- alpha."""
MIN_BIN_VERTICES = 8
"""A bin with fewer welded vertices carries no bit (it is an erasure)."""
EMBED_MAX_ERASED_BYTES = NSYM // 2
"""Embed refuses a mesh whose sparse bins already erase more than this many bytes."""
VERIFY_FPR = 1e-9
"""Correlation-verify threshold: accept when P(random mesh agrees this well) <= this."""
_MAX_PASSES = 6
_MAX_GOAL = 0.3
_MAX_SHIFT = 3.0
"""First per-bin cap on the push, in units of alpha_b (doubled for bins that miss)."""
_CAP_ROUNDS = 7
_SAFE_MARGIN = 0.25
"""A bin counts as read back safely when its mean is this x alpha_b past 1/2."""
_MAX_WRONG_BYTES = 0
"""Code bytes embed may leave wrong: none (benign copies must read back with 0 bit errors)."""
"""Largest pushed bin-mean offset from 1/2 (mean x at most 0.8 or at least 0.2)."""
_NEWTON_STEPS = 30


@dataclass(frozen=True)
class ExtractResult:
    status: Literal["found", "not_found", "too_small"]
    payload: bytes | None
    confidence: float
    """1 - false_positive_bound when found, else 0."""
    bit_errors_corrected: int
    false_positive_bound: float
    """Probability that an unmarked mesh (or a wrong key) passes this check."""
    usable_bits: int = 0
    """Code bits whose bin held enough vertices to be read."""
    total_bits: int = 0


@dataclass(frozen=True)
class VerifyResult:
    status: Literal["verified", "mismatch", "too_small", "not_found"]
    payload: bytes | None
    confidence: float
    false_positive_bound: float
    bit_errors: int
    method: Literal["decode", "correlation", "none"]
    detail: str = ""


def capacity_bits(payload_bits: int) -> int:
    """Code bits (= bins) needed for a payload of ``payload_bits``."""
    return 8 * code_bytes(_payload_bytes(payload_bits))


def min_vertices(payload_bits: int = 64) -> int:
    """Hard floor: welded, face-referenced vertices below which a mesh is too small.

    Bins hold equal shares (up to the keyed +-WIDTH_JITTER) of the vertices between
    the Q_LO and Q_HI norm quantiles, so every bin gets MIN_BIN_VERTICES once the
    mesh has n_bits * MIN_BIN_VERTICES / ((Q_HI - Q_LO) * (1 - WIDTH_JITTER)).
    """
    need = capacity_bits(payload_bits) * MIN_BIN_VERTICES / ((Q_HI - Q_LO) * (1 - WIDTH_JITTER))
    return int(math.ceil(need))


def _payload_bytes(payload_bits: int) -> int:
    if payload_bits <= 0 or payload_bits % 8:
        raise ValueError("payload_bits must be a positive multiple of 8")
    return payload_bits // 8


Q_LO, Q_HI = 0.01, 0.99
"""Norm quantiles spanned by the bins; the extreme 1 % on each side is left alone."""


@dataclass
class _Frame:
    """Norms of the welded mesh, split into the keyed quantile bins."""

    centre: np.ndarray
    rho: np.ndarray  # (M,) norms of all welded points
    idx: np.ndarray  # indices of the points inside the binned range
    edge_values: np.ndarray  # (n_bins + 1,) norm at each bin edge
    bins: np.ndarray  # (len(idx),) bin per point
    x: np.ndarray  # (len(idx),) position inside its bin, in [0, 1]
    counts: np.ndarray  # (n_bins,)


def _frame(w: Welded, levels: np.ndarray) -> _Frame | None:
    """Bin edges are the norms of the vertices at keyed quantile ranks.

    The vertex sitting at an edge has x = 0 in its bin and x**k keeps 0 fixed, so
    embedding never moves an edge and the extractor finds the same partition.
    """
    n_bins = len(levels) - 1
    centre = w.centre if w.centre is not None else area_centre(w.points, w.tris)
    d = w.points - centre
    rho = np.sqrt(np.einsum("ij,ij->i", d, d))
    used = np.flatnonzero(w.used)
    m = len(used)
    if m < 2:
        return None
    r_used = rho[used]
    ranks = np.unique(np.round((Q_LO + (Q_HI - Q_LO) * levels) * (m - 1)).astype(np.int64))
    if len(ranks) != n_bins + 1:
        return None
    edge_values = np.partition(r_used, ranks)[ranks]
    if not np.all(np.diff(edge_values) > 0):
        return None
    inside = (r_used >= edge_values[0]) & (r_used < edge_values[-1])
    idx = used[inside]
    r = r_used[inside]
    bins = np.clip(np.searchsorted(edge_values, r, side="right") - 1, 0, n_bins - 1)
    lo = edge_values[bins]
    x = np.clip((r - lo) / (edge_values[bins + 1] - lo), 0.0, 1.0)
    counts = np.bincount(bins, minlength=n_bins)
    return _Frame(centre, rho, idx, edge_values, bins, x, counts)


def _bin_means(f: _Frame, n_bins: int) -> np.ndarray:
    sums = np.bincount(f.bins, weights=f.x, minlength=n_bins)
    return sums / np.maximum(f.counts, 1)


def _solve_k(x: np.ndarray, bins: np.ndarray, counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-bin k with mean(x**k) = target (Newton on a convex decreasing function)."""
    n_bins = len(counts)
    lx = np.log(np.maximum(x, 1e-12))
    k = np.ones(n_bins)
    inv_n = 1.0 / np.maximum(counts, 1)
    for _ in range(_NEWTON_STEPS):
        e = np.exp(k[bins] * lx)
        f = np.bincount(bins, weights=e, minlength=n_bins) * inv_n - target
        if np.max(np.abs(f)) < 1e-7:
            break
        fp = np.bincount(bins, weights=e * lx, minlength=n_bins) * inv_n
        step = np.where(fp < 0, f / np.minimum(fp, -1e-12), 0.0)
        k = np.clip(k - step, 1e-3, 1e3)
    return k


def embed(
    vertices: np.ndarray,
    faces: np.ndarray,
    payload: bytes,
    key: bytes,
    *,
    strength: float | None = None,
) -> np.ndarray:
    """Return marked vertices (same order, shape and dtype); faces are unchanged.

    Raises WatermarkCapacityError when the mesh cannot carry the payload.
    """
    alpha = DEFAULT_STRENGTH if strength is None else float(strength)
    if not 0.0 < alpha < 0.25:
        raise ValueError("strength must be in (0, 0.25)")
    if not payload:
        raise ValueError("payload must not be empty")
    src = np.asarray(vertices)
    n_code = 8 * code_bytes(len(payload))
    lay = layout(key, n_code)
    code = encode_bits(payload, key)
    bin_bit = np.empty(n_code, np.uint8)
    bin_bit[lay.perm] = code
    bin_bit ^= lay.whiten
    sign = bin_bit.astype(np.float64) * 2.0 - 1.0

    w = weld(src, faces)
    need = min_vertices(8 * len(payload))
    if int(w.used.sum()) < need:
        raise WatermarkCapacityError(
            "This mesh is too small to carry a watermark.",
            f"{int(w.used.sum())} welded vertices, need at least {need}",
        )
    cap = np.full(n_code, _MAX_SHIFT)
    best: tuple[int, np.ndarray] | None = None
    for _ in range(_CAP_ROUNDS):
        pts, wrong = _embed_run(w, lay.edges, lay.perm, sign, alpha, cap)
        wrong_bytes = int(wrong[lay.perm].reshape(-1, 8).any(axis=1).sum())
        if best is None or wrong_bytes < best[0]:
            best = (wrong_bytes, pts)
        if wrong_bytes <= _MAX_WRONG_BYTES:
            break
        # Lumpy bins (few vertices, CAD-like shapes) need a bigger push to reach
        # their side: raise the cap of the bins that missed, only those. The round
        # with the fewest wrong bytes wins (a big push can move the partition).
        cap = np.where(wrong, cap * 2.0, cap)
    assert best is not None
    pts = best[1]
    base = w.points
    # Apply the welded displacement to every original vertex: copies stay identical.
    out = src.astype(np.float64) + (pts - base)[w.inverse]
    return out.astype(src.dtype if np.issubdtype(src.dtype, np.floating) else np.float64)


def _embed_run(
    w: Welded,
    edges: np.ndarray,
    perm: np.ndarray,
    sign: np.ndarray,
    alpha: float,
    cap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One embedding (<= _MAX_PASSES passes); (welded points, bins left on the wrong side)."""
    n_code = len(sign)
    base = w.points  # original welded positions (never written)
    pts = base
    goal: np.ndarray | None = None
    wrong = np.zeros(n_code, bool)
    for _ in range(_MAX_PASSES):
        f = _frame(w if pts is base else Welded(pts, w.inverse, w.tris, w.used), edges)
        if f is None:
            raise WatermarkCapacityError("This mesh is degenerate.", "all vertices coincide")
        usable = f.counts >= MIN_BIN_VERTICES
        erased = (~usable[perm]).reshape(-1, 8).any(axis=1).sum()
        if erased > EMBED_MAX_ERASED_BYTES:
            raise WatermarkCapacityError(
                "This mesh is too small to carry a watermark.",
                f"{int(erased)} of {n_code // 8} code bytes fall in bins with fewer than "
                f"{MIN_BIN_VERTICES} vertices (limit {EMBED_MAX_ERASED_BYTES})",
            )
        # Wide (sparse-tail) bins get a proportionally smaller push, which caps the
        # absolute displacement at about alpha x the mean bin width.
        width = np.diff(f.edge_values)
        alpha_b = alpha * np.minimum(1.0, width.mean() / width)
        margin = (_bin_means(f, n_code) - 0.5) * sign
        # "Wrong" includes bins barely on their side: float32 writers (USD, GLB,
        # STL) round the norms by ~1e-7 relative, which must not flip a bit.
        wrong = usable & (margin < _SAFE_MARGIN * alpha_b)
        if goal is None:
            # Every bin moves towards its bit by at least alpha_b / 2, also a bin whose
            # natural mean is already past 1/2 + alpha_b: the informed trace reads the
            # direction of the move, so no bin may stand still or move backwards.
            # Capped below 1/2: a bin already bunched at one end has nowhere to go,
            # and forcing it would throw its vertices across the whole (wide) bin.
            goal = np.maximum(alpha_b, np.minimum(margin + 0.5 * alpha_b, _MAX_GOAL))
            goal = np.maximum(goal, np.minimum(margin, 0.5))
            # A bin far on the wrong side (lopsided bins of small or CAD-like meshes)
            # moves at most cap x alpha_b towards its bit: distortion stays bounded;
            # embed raises the cap of the bins that stay wrong (see embed).
            goal = np.minimum(goal, margin + cap * alpha_b)
        if np.all(margin[usable] >= goal[usable] - 0.05 * alpha_b[usable]):
            break
        target = 0.5 + sign * goal
        k = _solve_k(f.x, f.bins, f.counts, target)
        k = np.where(usable, k, 1.0)
        xn = np.exp(k[f.bins] * np.log(np.maximum(f.x, 1e-300)))
        xn = np.where(f.x > 0, xn, 0.0)
        lo = f.edge_values[f.bins]
        rho_new = lo + xn * (f.edge_values[f.bins + 1] - lo)
        scale = np.ones(len(pts))
        scale[f.idx] = rho_new / f.rho[f.idx]
        pts = f.centre + (pts - f.centre) * scale[:, None]
    else:  # passes used up: judge the final points, as the reader will see them
        f = _frame(Welded(pts, w.inverse, w.tris, w.used), edges)
        if f is None:
            return pts, np.ones(n_code, bool)
        width = np.diff(f.edge_values)
        alpha_b = alpha * np.minimum(1.0, width.mean() / width)
        margin = (_bin_means(f, n_code) - 0.5) * sign
        wrong = (f.counts >= MIN_BIN_VERTICES) & (margin < _SAFE_MARGIN * alpha_b)
    return pts, wrong


def _read(vertices: np.ndarray, faces: np.ndarray, key: bytes, payload_bits: int):
    """Common front end of extract/verify: (bits, reliability, usable, n_code) or None."""
    n_code = capacity_bits(payload_bits)
    lay = layout(key, n_code)
    w = weld(np.asarray(vertices), faces)
    if int(w.used.sum()) < min_vertices(payload_bits):
        return None
    f = _frame(w, lay.edges)
    if f is None:
        return None
    means = _bin_means(f, n_code)
    usable_bin = f.counts >= MIN_BIN_VERTICES
    soft_bin = (means - 0.5) * np.sqrt(np.maximum(f.counts, 1))  # z-like reliability
    hard_bin = (means > 0.5).astype(np.uint8) ^ lay.whiten
    bits = hard_bin[lay.perm]
    rel = np.abs(soft_bin)[lay.perm]
    usable = usable_bin[lay.perm]
    if (~usable).reshape(-1, 8).any(axis=1).sum() > NSYM:
        return None
    return bits, rel, usable, n_code


def _fp_decode(payload_bits: int) -> float:
    return max_attempts(payload_bits // 8) * 2.0 ** (-8 * TAG_BYTES)


def extract(
    vertices: np.ndarray, faces: np.ndarray, key: bytes, *, payload_bits: int = 64
) -> ExtractResult:
    """Blind extraction: decode the payload with the key alone."""
    pb = _payload_bytes(payload_bits)
    fpb = _fp_decode(payload_bits)
    read = _read(vertices, faces, key, payload_bits)
    if read is None:
        return ExtractResult("too_small", None, 0.0, 0, fpb, 0, capacity_bits(payload_bits))
    bits, rel, usable, n_code = read
    dec, _ = decode_bits(bits, rel, usable, key, pb)
    n_usable = int(usable.sum())
    if dec is None:
        return ExtractResult("not_found", None, 0.0, 0, fpb, n_usable, n_code)
    return ExtractResult("found", dec.payload, 1.0 - fpb, dec.bit_errors, fpb, n_usable, n_code)


def binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) >= k), exact."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return math.fsum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def verify(
    vertices: np.ndarray, faces: np.ndarray, key: bytes, expected_payload: bytes
) -> VerifyResult:
    """Check that the mesh carries ``expected_payload`` under ``key``.

    First a blind decode; if that fails, a correlation test against the expected
    code bits (accepted when a random mesh would agree this well with probability
    <= VERIFY_FPR). A too-small mesh is reported as such, never as verified.
    """
    payload_bits = 8 * len(expected_payload)
    r = extract(vertices, faces, key, payload_bits=payload_bits)
    if r.status == "too_small":
        return VerifyResult(
            "too_small", None, 0.0, r.false_positive_bound, 0, "none", "mesh too small"
        )
    if r.status == "found":
        ok = r.payload == expected_payload
        return VerifyResult(
            "verified" if ok else "mismatch",
            r.payload,
            r.confidence,
            r.false_positive_bound,
            r.bit_errors_corrected,
            "decode",
            "" if ok else "the mesh carries another payload under this key",
        )
    read = _read(vertices, faces, key, payload_bits)
    assert read is not None
    bits, _, usable, _ = read
    expected = encode_bits(expected_payload, key)
    n = int(usable.sum())
    agree = int(np.count_nonzero((bits == expected) & usable))
    p = binomial_tail(n, agree)
    if p <= VERIFY_FPR:
        return VerifyResult("verified", expected_payload, 1.0 - p, p, n - agree, "correlation")
    return VerifyResult(
        "not_found", None, 0.0, VERIFY_FPR, n - agree, "none", f"{agree}/{n} code bits agree"
    )
