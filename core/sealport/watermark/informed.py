"""Informed forensic tier: read a mark with the original mesh at hand (server side).

Why a second tier: the blind reader must rebuild its bins from the leaked mesh
alone, so anything that moves the bin edges (cropping, simplification, noise on
the edge vertices) scrambles it. The server keeps the original asset and every
delivery key, so it knows, for each candidate delivery, where every original
vertex was moved and by how much. It reads the leak as a *matched filter* of
that known displacement field, after modelling what the attacker did to the
original.

1. **Correspond** (key-independent, once per leak and original):
   :func:`sealport.watermark.attack_model.correspond` registers the leak, picks an
   attack model on the original (quantisation grid, inverted Laplacian smoothing
   or noise for a leak that kept the vertex order; surviving vertices plus
   projection onto the original surface otherwise; see that module) and returns,
   per original vertex, ``g_v = sum_obs w c_v y`` and ``a_v = sum_obs w c_v^2``
   (back-projected, inverse-variance weighted radial evidence and its
   information), or the quantisation grid model.
2. **Per-bin log-likelihood ratio** on the *original's* keyed partition
   (:func:`bin_scores`): for each bin the server computes both moves the
   embedder would have made, ``D+`` (bit +1) and ``D-`` (bit -1), per vertex
   (``x -> x**k`` with the embedder's goal rule, :func:`_profiles`), and
   ``Z_b = sum_{v in b} g_v (D+_v - D-_v) - a_v (D+_v^2 - D-_v^2) / 2`` (lattice:
   the sum of the per-vertex cell LLRs). ``Z_b`` depends on the mesh, the leak and
   the key's *bin edges*, never on the bin's expected sign.
3. **Detection of a known payload**: the expected sign ``s_b`` of bin ``b`` is the
   code bit XOR the keyed whitening bit, i.i.d. uniform over keys and
   independent of the mesh, of the bin edges (a separate key draw) and hence of
   ``Z``. Conditioned on everything but the signs, under "not this delivery"
   (an unmarked mesh *or another delivery's leak*, whose mark has the same
   shape), the signs are fair coins; :mod:`sealport.watermark.sign_test` turns
   that into the most powerful test there is given ``Z`` (``Z_b`` is the log-
   likelihood ratio of the bin's two signs; the likelihood ratio of ``s``
   against random signs orders sign vectors as the ``|Z|``-weighted
   disagreement does) and computes its p-value exactly (up to a rounding that
   only raises it), not a Chernoff bound: about one decade stronger at 1e-9.
   For the surface model (other connectivity), whose per-bin weights lean on a
   robust but rough noise scale, the unweighted count of agreeing signs
   (binomial tail) is tried too and the smaller p-value is doubled; the choice
   of test depends on the attack model only, never on the signs. We accept
   when the p-value is ``<= INFORMED_FPR = 1e-9``. Every choice before
   (attack model, ``k``, ``tau``, weights, registration, profiles) uses the leak,
   the original and at most the key's bin edges, never the expected signs, so
   the bound holds whatever they pick. Independently, the hard bits ``sign Z_b``
   go through the RS + keyed-tag decoder, which yields the payload itself when
   few enough bits flip.

Limits: at a fixed mark energy ``E`` (sum of squared displacements) and white
noise ``sigma`` per coordinate no reader beats a matched filter's
``z = sqrt(E) / sigma``; even knowing the noise law, accepting at 1e-9 needs
``z >= 6.0`` (an ideal reader identifies with probability ``Phi(z - 6)``). For
uniform noise of 0.3 % / 0.5 % of the bbox diagonal ``z`` is 7.3 / 4.4 (bunny),
6.7 / 4.0 (fandisk), 5.9 / 3.5 (suzanne x4), 14.1 / 8.5 (blob 41k) at the
default strength (2 keys each): noise of 0.5 % on the three small meshes and 0.3 %
on suzanne (z < 6) are beyond any reader at this distortion. A bound that must
hold against another delivery's leak (its mark has the same shape, and bins near
the ends of the partition partly line up across keys) can use the keyed signs only, and
a bin's sign is one bit whatever its energy: the most powerful sign test gains
on average the binary channel's information per bin (about ``kappa_b / 8`` nats
for a bin of sign-LLR SNR ``kappa_b``, never more than ``log 2``;
:func:`bin_information`, :func:`sealport.watermark.sign_test.sign_capacity`)
where the matched filter gains ``z^2 / 2``. The embedder pushes lumpy bins far
harder (two of 160 bins hold 20-45 % of ``sum kappa`` on the small meshes) and
about a third of the mark's energy moves both sign hypotheses alike, so at 0.3 %
noise the sign capacity is 12-13 nats (bunny), ~10 (fandisk), ~9 (suzanne)
where 1e-9 needs ~18-20, and an ideal keyed-sign reader would identify 11-14 %,
4-5 %, 1-2 % of such leaks (blob 41k at 0.5 %: 24.5 nats, 88 %; this reader
8/10): beyond any reader whose bound holds against other deliveries, whatever
``z`` says. Measured on the same leaks, an embedder whose moves were
antisymmetric (``D- = -D+``) and spread evenly over the bins would raise that
ceiling at equal energy to ~80 % (bunny) / ~45 % (fandisk) / ~37 % (suzanne).
(These figures predate the unbiased same-order alignment,
``attack_model._leak_to_original``, which took a coherent radial bias out of
noisy leaks; the benchmark's noise rows after it: docs/BENCHMARKS.md.)
Quantisation is not white noise to the reader (rounding is a known function of
the original). The smoothing model is the umbrella operator with ``lambda`` in ``SMOOTH_LAMBDAS``: another
smoother (cotangent weights, Taubin, lambda > 0.5) is only approximated by it,
and heavy smoothing at lambda = 0.5 (30 steps) leaves nothing to invert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .attack_model import Correspondence, Lattice, _log_cell, correspond, correspond_frames
from .codec import decode_bits, encode_bits
from .geometry import CentreKind, even_bins, frame_centre, norms
from .keys import layout
from .mark import (
    _MAX_GOAL,
    DEFAULT_STRENGTH,
    EVEN_MIN_COUNT,
    _alpha_b,
    _end_ranks,
    _Frame,
    _newton_table,
    _solve_k,
    binomial_tail,
    capacity_bits,
    even_edges,
    quantile_ranks,
)
from .sign_test import weighted_sign_tail

INFORMED_FPR = 1e-9
"""Accept a delivery when P(an unrelated mesh scores this well) <= this."""
MIN_INFORMED_BIN = 3
"""A bin needs this many observed vertices to vote."""
_LLR_CLIP = 5.0
"""Per-vertex lattice LLR clip (nats): one misregistered vertex cannot carry a bin."""

__all__ = [
    "INFORMED_FPR",
    "Correspondence",
    "InformedResult",
    "bin_scores",
    "correspond",
    "correspond_frames",
    "bin_information",
    "informed_verify",
]


@dataclass(frozen=True)
class InformedResult:
    status: Literal["verified", "not_found"]
    p_value: float
    """P(an unrelated mesh scores this well): exact weighted sign test (module doc)."""
    agree: int
    bins: int
    decoded: bytes | None
    """Payload from the RS decoder of the informed hard bits (None if it failed)."""
    coverage: float
    rms: float


@dataclass(frozen=True)
class _ByNorm:
    """The original's face-referenced points sorted by norm about its frame's centre, and
    the correspondence's evidence in that order. Key-independent: built once per
    :class:`Correspondence` (its ``by_norm`` cache), so checking a key costs slices and
    the two profiles, not a partition and a search over every point (a trace checks
    every delivery of the asset on one correspondence)."""

    centre: np.ndarray
    idx: np.ndarray  # welded point index, by increasing norm
    r: np.ndarray  # their norms, increasing
    g: np.ndarray
    a: np.ndarray
    valid: np.ndarray


def _by_norm(c: Correspondence) -> _ByNorm:
    if c.by_norm is None:
        w = c.original
        if c.frame == "area" and w.centre is not None:  # weld() computed it already
            centre = w.centre
        else:
            centre = frame_centre(w.points, w.tris, c.frame)
        used = np.flatnonzero(w.used)
        r = norms(w.points[used], centre)
        order = np.argsort(r, kind="stable")
        idx = used[order]
        c.by_norm = _ByNorm(centre, idx, r[order], c.g[idx], c.a[idx], c.valid[idx])
    by_norm: _ByNorm = c.by_norm
    return by_norm


@dataclass(frozen=True)
class _SortedFrame:
    """One key's partition of a :class:`_ByNorm`: points ``lo:hi`` of it are binned."""

    frame: _Frame
    lo: int
    hi: int


def _even_runs(r: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(edges, run starts) of scheme v3's even bins over the sorted norms ``r`` (None if
    the edges coincide); ``mark._partition`` takes them when every run holds at least
    EVEN_MIN_COUNT points (same rule, same counts)."""
    ends = _end_ranks(len(r))
    ev = even_edges(float(r[ends[0]]), float(r[ends[1]]), levels)
    if not np.all(np.diff(ev) > 0):
        return None
    return ev, np.searchsorted(r, ev, side="left")


def _emptiest(runs: tuple[np.ndarray, np.ndarray] | None) -> int:
    return -1 if runs is None else int(np.diff(runs[1]).min())


def _sorted_frame(
    s: _ByNorm, levels: np.ndarray, frame: CentreKind = "corner-even", other: bool = False
) -> _SortedFrame | None:
    """The blind reader's keyed partition of the original (``mark._frame``: the same
    points, bins and ``x``, tested), in norm order: bins are runs. ``frame``: the
    deliveries' reading frame (v3 tries even bins: ``mark._partition``); ``other``:
    in v3's frame, the partition the rule did not pick (:func:`_partitions`)."""
    n_bins = len(levels) - 1
    m = len(s.r)
    if m < 2:
        return None
    even = _even_runs(s.r, levels) if even_bins(frame) else None
    use_even = _emptiest(even) >= EVEN_MIN_COUNT
    if other:
        if not even_bins(frame) or even is None:
            return None
        use_even = not use_even
    if use_even and even is not None:
        edge_values, pos = even
    else:
        ranks = quantile_ranks(levels, m)
        if len(ranks) != n_bins + 1:
            return None
        edge_values = s.r[ranks]
        if not np.all(np.diff(edge_values) > 0):
            return None
        pos = np.searchsorted(s.r, edge_values, side="left")
    lo, hi = int(pos[0]), int(pos[-1])
    counts = np.diff(pos)
    bins = np.repeat(np.arange(n_bins), counts)
    r = s.r[lo:hi]
    base = edge_values[bins]
    x = np.clip((r - base) / (edge_values[bins + 1] - base), 0.0, 1.0)
    kept = _Frame(s.centre, s.idx[lo:hi], edge_values, bins, x, counts)
    return _SortedFrame(kept, lo, hi)


def _partitions(s: _ByNorm, levels: np.ndarray, frame: CentreKind) -> list[_SortedFrame]:
    """The original's keyed partitions a delivery's mark may be in.

    Why two, near the threshold (v3 only): the rule looks at the *original's* emptiest
    even bin, but the mark is where the embedder's read-back put it, and the moves of
    one partition carry vertices across the other's edges (and the centre moves a
    little), so a count of 15 on the original can read 17 on the marked mesh, which
    the read-back then marks in even bins (found in review: ~8 % of the keys whose
    emptiest even bin held 12-20). Within a factor 2 of EVEN_MIN_COUNT both are
    scored, and the p-value pays for the second (x2, :func:`informed_verify`); a few
    vertices' moves cannot carry a count from outside that band across it."""
    first = _sorted_frame(s, levels, frame)
    out = [] if first is None else [first]
    if even_bins(frame):
        n = _emptiest(_even_runs(s.r, levels))
        if EVEN_MIN_COUNT // 2 <= n < 2 * EVEN_MIN_COUNT:
            second = _sorted_frame(s, levels, frame, other=True)
            out += [] if second is None else [second]
    return out


def _profiles(f: _Frame, n_bins: int, alpha: float = DEFAULT_STRENGTH):
    """Radial move of every frame point if its bin carried +1 / -1 (the embedder's rule).

    The embedder pushes bin ``b``'s mean of ``x`` to ``1/2 + s_b goal_b`` with
    ``x -> x**k_b``; ``goal`` follows ``mark._apply`` (first pass, uncapped:
    the repair rounds raise the caps of short bins, and the uncapped goal matched
    the real move best, correlation 0.95-0.99 on the benchmark meshes). Depends on
    the mesh and the key's bin edges only, never on the expected sign.
    """
    # Points in norm order: x is non-decreasing within each bin's run (the fast table).
    tx, tw, tb = _newton_table(f.x, None, None, n_bins, lens=f.counts)
    means = np.bincount(f.bins, weights=f.x, minlength=n_bins) / np.maximum(f.counts, 1)
    ab = _alpha_b(alpha, f.edge_values)
    width = np.diff(f.edge_values)[f.bins]
    out = []
    for s in (1.0, -1.0):
        margin = (means - 0.5) * s
        goal = np.maximum(ab, np.minimum(margin + 0.5 * ab, _MAX_GOAL))
        goal = np.maximum(goal, np.minimum(margin, 0.5))
        k = _solve_k(tx, tw, tb, f.counts, 0.5 + s * goal)
        out.append((f.x ** k[f.bins] - f.x) * width)
    return out[0], out[1]


def _lattice_llr(lat: Lattice, idx: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Per-point log-likelihood ratio of the observed grid cells, moved up vs down."""
    o, u, obs = lat.o[idx], lat.u[idx], lat.obs[idx]
    # The fitted tau also absorbed the mark itself: take its expected share out.
    mark_var = lat.scale**2 * float(np.mean((0.5 * (up - down)) ** 2)) / 3.0
    out = np.zeros(len(idx))
    for k in range(3):
        q = float(lat.q[k])
        tau = math.sqrt(max((lat.tau * q) ** 2 - mark_var, (0.01 * q) ** 2))
        lo, hi = obs[:, k] - 0.5 * q, obs[:, k] + 0.5 * q
        mu_p = o[:, k] + lat.scale * up * u[:, k]
        mu_m = o[:, k] + lat.scale * down * u[:, k]
        out += _log_cell((lo - mu_p) / tau, (hi - mu_p) / tau)
        out -= _log_cell((lo - mu_m) / tau, (hi - mu_m) / tau)
    return np.clip(out, -_LLR_CLIP, _LLR_CLIP)


def bin_scores(c: Correspondence, key: bytes, payload_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(Z_b, voting mask) per bin of the original's keyed partition (module doc, step 2)."""
    n_bins = capacity_bits(payload_bits)
    s = _by_norm(c)
    return _scores_in(c, s, _sorted_frame(s, layout(key, n_bins).edges, c.frame), n_bins)


def _scores_in(
    c: Correspondence, s: _ByNorm, sf: _SortedFrame | None, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bin_scores` in one given partition of the original."""
    if sf is None:
        return np.zeros(n_bins), np.zeros(n_bins, bool)
    f = sf.frame
    up, down = _profiles(f, n_bins)
    ok = s.valid[sf.lo : sf.hi]
    if c.lattice is not None:
        per = _lattice_llr(c.lattice, f.idx, up, down)
    else:
        g, a = s.g[sf.lo : sf.hi], s.a[sf.lo : sf.hi]
        per = g * (up - down) - 0.5 * a * (up * up - down * down)
    z = np.bincount(f.bins, weights=np.where(ok, per, 0.0), minlength=n_bins)
    vote = np.bincount(f.bins, weights=ok.astype(np.float64), minlength=n_bins) >= MIN_INFORMED_BIN
    return np.where(vote, z, 0.0), vote


def bin_information(c: Correspondence, key: bytes, payload_bits: int) -> np.ndarray:
    """Per-bin SNR ``kappa_b`` of the sign LLR under the reader's own noise model.

    ``kappa_b = sum_{v in b} a_v (D+_v - D-_v)^2``: for Gaussian noise of the
    modelled variance, ``s_b Z_b ~ N(kappa_b / 2, kappa_b)``. Only for the noise
    and smoothing models (the lattice has no single variance); used by the
    benchmark to state the keyed-sign ceiling (module doc, limits).
    """
    n_bins = capacity_bits(payload_bits)
    s = _by_norm(c)
    sf = _sorted_frame(s, layout(key, n_bins).edges, c.frame)
    if sf is None or c.lattice is not None:
        return np.zeros(n_bins)
    f = sf.frame
    up, down = _profiles(f, n_bins)
    a = np.where(s.valid[sf.lo : sf.hi], s.a[sf.lo : sf.hi], 0.0)
    return np.bincount(f.bins, weights=a * (up - down) ** 2, minlength=n_bins)


def informed_verify(
    c: Correspondence, key: bytes, expected_payload: bytes, *, fpr: float = INFORMED_FPR
) -> InformedResult:
    """Does the corresponded leak carry ``expected_payload`` under ``key``? (module doc)"""
    pb = 8 * len(expected_payload)
    n_bins = capacity_bits(pb)
    lay = layout(key, n_bins)
    bin_bit = np.empty(n_bins, np.uint8)
    bin_bit[lay.perm] = encode_bits(expected_payload, key)
    sign = (bin_bit ^ lay.whiten).astype(np.float64) * 2.0 - 1.0
    s = _by_norm(c)
    parts: list[_SortedFrame | None] = [*_partitions(s, lay.edges, c.frame)] or [None]
    best: tuple[float, int, int, np.ndarray, np.ndarray] | None = None
    for sf in parts:
        z, vote = _scores_in(c, s, sf, n_bins)
        zv = z[vote]
        n = int(vote.sum())
        agree = int(np.count_nonzero(np.sign(zv) == sign[vote]))
        p = weighted_sign_tail(zv, np.sign(zv) == sign[vote])
        if c.model == "surface":  # rough weights: the plain sign count too (module doc)
            p = min(1.0, 2.0 * min(p, binomial_tail(n, agree)))
        if best is None or p < best[0]:
            best = (p, agree, n, z, vote)
    assert best is not None
    p, agree, n, z, vote = best
    p = min(1.0, p * len(parts))  # union over the partitions scored (_partitions)
    hard = (z > 0).astype(np.uint8) ^ lay.whiten
    dec, _ = decode_bits(hard[lay.perm], np.abs(z)[lay.perm], vote[lay.perm], key, pb // 8)
    status: Literal["verified", "not_found"] = "verified" if p <= fpr and n > 0 else "not_found"
    return InformedResult(status, p, agree, n, dec.payload if dec else None, c.coverage, c.rms)
