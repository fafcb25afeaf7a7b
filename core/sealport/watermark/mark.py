"""Blind embed / extract / verify on one mesh (numpy, vectorised).

See the package docstring for the maths; this module is the implementation.

Per-asset plan, per-delivery apply
----------------------------------
Embedding splits into a key-independent part that depends only on the asset's
geometry and a cheap keyed part, so a server that marks every delivery of the
same asset version can cache the first:

``plan = plan_embed(vertices, faces)`` (:class:`EmbedPlan`): merge coincident
positions, the frame's centre (corner mean; scheme v1: area-weighted), the sorted
distinct vertex norms and, for every input vertex, its slot in that order (and
one vertex per slot). Cost: one argsort
of the norms (as int64 bit patterns) plus one pass over the triangles; ~16 bytes
per vertex. ``plan.to_bytes()`` / ``EmbedPlan.from_bytes(data)`` serialise it
(numpy ``.npz``, no pickle; ValueError if invalid). A plan is valid only for the
vertex array it was made from (``apply_plan`` re-measures 64 vertices and raises
ValueError otherwise).

``apply_plan(plan, vertices, payload, key, *, strength=None, faces=None)`` ->
marked vertices (same shape/dtype as ``vertices``): the keyed bins are contiguous
slices of the sorted norms, so without ``faces`` it is O(N) arithmetic with no
sort and no triangle pass; every bin is on its side about the plan's centre, but
the reader's centre moves a little with the mark, so verify the written file (a
lumpy mesh can come out a byte short). With ``faces`` it reads the result back
exactly as the extractor will (one area-centre pass; the edges and bins from the
nearly sorted new norms, ``_near_sorted_bins``) and repairs short bins
(``_embed_rounds``; a repair pass re-plans from the read-back, ``_replan``).
``embed(vertices, faces, payload, key)`` is
``apply_plan(plan_embed(vertices, faces), vertices, payload, key, faces=faces)``.
WatermarkCapacityError in both when the mesh cannot carry the payload.

Speed work keeps the mark bit for bit (``tests/test_watermark_embed_pin.py`` pins
the marked output of seeded meshes as it was before): every shortcut computes the
same float operations in the same order, or provably the same values.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import dequantise, parallel
from .codec import decode_bits, encode_bits, max_attempts
from .errors import WatermarkCapacityError, WatermarkFormatError
from .geometry import (
    CentreKind,
    as_triangles,
    centre_of,
    corner_counts,
    even_bins,
    frame_centre,
    norms,
    position_hash,
    proper_mask,
    referenced,
)
from .keys import NSYM, TAG_BYTES, WIDTH_JITTER, Layout, code_bytes, layout

DEFAULT_STRENGTH = 0.05
"""alpha: the bin mean of the normalised norm is pushed to 1/2 +- alpha."""
MIN_BIN_VERTICES = 8
"""A bin with fewer distinct vertices carries no bit (it is an erasure)."""
EMBED_MAX_ERASED_BYTES = NSYM // 2
"""Embed refuses a mesh whose sparse bins already erase more than this many bytes."""
VERIFY_FPR = 1e-9
"""Known-payload detector threshold: accept when P(random mesh scores this well) <= this."""
_MAX_GOAL = 0.3
_MAX_SHIFT = 3.0
"""First per-bin cap on the push, in units of alpha_b (doubled for bins that miss)."""
_CAP_ROUNDS = 7
_MAX_PASSES = 6
_INNER_ROUNDS = 1
_MAX_MRMS = 0.0025
"""Repair rounds stop before the RMS displacement passes 0.25 % of the bbox diagonal."""
"""Cap doublings predicted inside one apply (1 = none: the read-back rounds decide)."""
_SAFE_MARGIN = 0.25
"""A bin counts as read back safely when its mean is this x alpha_b past 1/2."""
_NEWTON_STEPS = 40
_SUB = 256
"""Newton for k runs on a (bin, sub-bin) table of x means: exact to ~1e-6 in the mean."""
_PLAN_VERSION = 2
"""2: the plan records its frame (``EmbedPlan.frame``). Version-1 plans (cached before
scheme v2, so in v1's frame) are refused: applied, they would mark in a frame the
manifest no longer names."""
_CHECK_POINTS = 64
"""Vertices re-measured by apply_plan to catch a plan used with other vertices."""

Q_LO, Q_HI = 0.01, 0.99
"""Norm quantiles spanned by the bins; the extreme 1 % on each side is left alone."""
_FRAMES: dict[str, CentreKind] = {"corner-even": "corner-even", "corner": "corner", "area": "area"}
"""Every reading frame a plan may record (``geometry.CentreKind``)."""
EVEN_MIN_COUNT = 2 * MIN_BIN_VERTICES
"""Scheme v3 bins by even width in norm only when every such bin holds at least this many
distinct vertices (else by quantiles, as v2): see :func:`_partition`."""


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
    reader: ReaderHint | None = None
    """The reader's centre and "all vertices referenced" for this mesh (what the server
    signs into the manifest after its read-back; None: fewer than 2 referenced)."""


@dataclass(frozen=True)
class ReaderHint:
    """What the reader's triangle pass yields for one mesh: its centre (in the scheme's
    frame) and whether every vertex is referenced by a triangle.

    Why: the server reads every marked file back with the reader before it seals
    it, so it can sign these into the manifest (``"reader"`` in the watermark
    entry); the client, whose file is hash-pinned to that manifest, then skips its
    most expensive stage (:func:`_read_norms` with ``hint``). Given the true
    values, the result is bit for bit the same as without (tested). A wrong hint
    only moves the frame the norms are read in: the keyed bins then read noise
    and the check fails; passing still needs the key and payload, which the same
    signed manifest states anyway (see :mod:`sealport.watermark_check`).
    """

    centre: tuple[float, float, float]
    all_referenced: bool


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


# --- sorted distinct norms: the reader's (and the plan's) view of a mesh -------------
@dataclass
class _Norms:
    """Distinct norms of the face-referenced, distinct positions, sorted.

    ``rho`` is strictly increasing; ``weight[g]`` is how many distinct positions
    share norm ``rho[g]`` (None: one each). ``m`` = number of distinct positions.
    """

    centre: np.ndarray
    rho: np.ndarray
    weight: np.ndarray | None
    m: int
    all_referenced: bool = False
    """Every vertex is referenced by a triangle (set by :func:`_read_norms`)."""
    values: np.ndarray | None = None
    """Norm to average per group when it is not ``rho`` itself: the rounded norms of a
    dequantised reading, whose groups are sorted by estimated norms
    (:func:`_dequantised`); None: ``rho``."""

    def cum(self) -> np.ndarray:
        """(G + 1,) number of distinct positions before group g."""
        if self.weight is None:
            return np.arange(len(self.rho) + 1)
        return np.concatenate([[0], np.cumsum(self.weight)])


def _mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (N, 3), got {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    tris = as_triangles(faces)
    if tris.size and (tris.min() < 0 or tris.max() >= len(v)):
        raise ValueError("faces index outside the vertex array")
    return v, tris


def _read_norms(
    v: np.ndarray,
    tris: np.ndarray,
    threads: int | None = None,
    hint: ReaderHint | None = None,
    frame: CentreKind = "corner-even",
) -> _Norms | None:
    """Reader front end: sorted distinct norms and how many distinct positions share each.

    Why not one sort of (norm, position hash) pairs: a complex128 sort of 2.8 M keys
    took ~0.37 s, a sort of the norms' bits as int64 ~0.21 s (for non-negative finite
    floats the bit patterns order as the values). Positions only need telling apart
    where a norm occurs more than once (exporter copies at seams, symmetric parts), so
    only those vertices get the hash and the pair sort. Same result as
    :func:`_read_norms_pairs` (tested), which remains for non-finite norms.

    ``threads`` (default: :func:`.parallel.threads_for`): the triangle pass, the
    norms and the sort run in that many threads (:mod:`.parallel`); the result is
    the same bit for bit (tested). The triangle pass is one fused loop (referenced
    vertices + area centre, ~10 % less CPU than the two passes) also on one thread.

    ``hint`` (the server's signed :class:`ReaderHint` for this mesh): when it says
    every vertex is referenced, its centre is taken and the triangle pass is
    skipped; otherwise (or None) the full pass runs. ``all_referenced`` of the
    result says what the pass found (or the hint claimed). ``frame``: the scheme's
    centre (:data:`~.geometry.CentreKind`).
    """
    n_threads = parallel.threads_for(len(tris), threads)
    if hint is not None and hint.all_referenced:
        centre = np.array(hint.centre, dtype=np.float64)
        idx = None
    else:
        used, centre = parallel.referenced_and_centre(v, tris, n_threads, frame)
        idx = None if used.all() else np.flatnonzero(used)
    nm = _norms_about(v, idx, centre, n_threads)
    if nm is not None:
        nm.all_referenced = idx is None
    return nm


def _norms_about(
    v: np.ndarray, idx: np.ndarray | None, centre: np.ndarray, n_threads: int
) -> _Norms | None:
    """:func:`_read_norms` after the triangle pass: ``idx`` the referenced vertices
    (None: all), ``centre`` the frame's centre."""
    n_used = len(v) if idx is None else len(idx)
    if n_used < 2:
        return None
    pts = v if idx is None else v[idx]
    r = norms(pts, centre) if n_threads == 1 else parallel.norms(pts, centre, n_threads)
    if not np.isfinite(r).all() or _mostly_copies(pts):
        return _read_norms_pairs(centre, pts, r)
    keys = r.view(np.int64)
    srt = (np.sort(keys) if n_threads == 1 else parallel.sort_keys(keys, n_threads)).view(
        np.float64
    )
    new = np.empty(n_used, bool)
    new[0] = True
    np.not_equal(srt[1:], srt[:-1], out=new[1:])
    if new.all():
        return _Norms(centre, srt, None, n_used)
    starts = np.flatnonzero(new)
    rho = srt[starts]
    del srt, new
    shared = np.diff(np.append(starts, n_used)) > 1
    tied = rho[shared]
    at = np.minimum(np.searchsorted(tied, r), len(tied) - 1)
    sub = np.flatnonzero(tied[at] == r)
    del at
    key = np.empty(len(sub), np.complex128)
    key.real = r[sub]
    key.imag = position_hash(pts[sub])
    key.sort()
    distinct = np.empty(len(key), bool)
    distinct[0] = True
    np.not_equal(key[1:], key[:-1], out=distinct[1:])
    per_tied = np.bincount(np.searchsorted(tied, key.real[distinct]), minlength=len(tied))
    weight = np.ones(len(rho), np.int64)
    weight[shared] = per_tied
    m = int(weight.sum())
    return _Norms(centre, rho, None if m == len(rho) else weight, m)


_COPIES_WINDOW = 1 << 15


def _mostly_copies(pts: np.ndarray) -> bool:
    """Does a leading window of the positions repeat itself a lot (a triangle soup such
    as STL, where every corner is stored per triangle)? There the tie handling of
    :func:`_read_norms` would redo the pair sort for nearly all vertices, so the
    single pair sort is cheaper. Speed only: both paths give the same result."""
    window = pts[:_COPIES_WINDOW]
    return len(np.unique(position_hash(window))) < 0.75 * len(window)


def _read_norms_pairs(centre: np.ndarray, pts: np.ndarray, r: np.ndarray) -> _Norms:
    """The reference front end: one complex sort of (norm, position hash) pairs."""
    key = np.empty(len(r), np.complex128)
    key.real = r
    key.imag = position_hash(pts)
    key.sort()
    distinct = np.empty(len(r), bool)
    distinct[0] = True
    np.not_equal(key[1:], key[:-1], out=distinct[1:])
    rr = key.real[distinct]
    del key, distinct
    new = np.empty(len(rr), bool)
    new[0] = True
    np.not_equal(rr[1:], rr[:-1], out=new[1:])
    if new.all():
        return _Norms(centre, rr, None, len(rr))
    starts = np.flatnonzero(new)
    weight = np.diff(np.append(starts, len(rr)))
    return _Norms(centre, rr[starts], weight, len(rr))


@dataclass
class _Part:
    """The keyed bins as contiguous slices ``pos[b]:pos[b+1]`` of the sorted norms."""

    pos: np.ndarray  # (B + 1,) group index of each edge
    edge_values: np.ndarray  # (B + 1,)
    counts: np.ndarray  # (B,) distinct positions per bin
    even: bool = False
    """Scheme v3's even bins (else keyed quantile bins)."""


def _end_ranks(m: int) -> np.ndarray:
    """Ranks of the lowest and highest binned norm among ``m`` (the Q_LO / Q_HI quantiles)."""
    return np.round(np.array([Q_LO, Q_HI]) * (m - 1)).astype(np.int64)


def even_edges(r_lo: float, r_hi: float, levels: np.ndarray) -> np.ndarray:
    """Scheme v3's bin edges: the keyed levels spread evenly over [r_lo, r_hi]."""
    ev = r_lo + levels * (r_hi - r_lo)
    ev[0], ev[-1] = r_lo, r_hi
    return ev


def _partition(nm: _Norms, levels: np.ndarray, frame: CentreKind = "corner-even") -> _Part | None:
    """Bin edges are the norms at keyed quantile ranks (see the package docstring), or,
    in scheme v3's frame, even in norm when every such bin is full enough.

    The vertex at an edge has x = 0 in its bin and x**k keeps 0 fixed, so
    embedding never moves an edge and the extractor finds the same partition.
    Even bins (v3): their edges are fixed by the two end norms (the vertices at the
    Q_LO / Q_HI ranks, each at an edge, so never moved) and the keyed levels, and
    x**k keeps every vertex inside its bin, so nothing changes rank or bin either.

    Why even bins: with quantile bins, dense norm ranges get narrow bins (on the
    benchmark's 130k-vertex bunny a quarter of the bins are under 0.56x the mean
    width) and noise or rounding of a given size crosses their edges far more often:
    under MESHBEN's 0.3 % noise, the narrowest quarter of the bins had 4.5x the
    bit errors of the widest (one-off diagnostic, 4 keys). Even bins give every bin
    the mean width. But sparse norm ranges then get few vertices, and a small mesh
    would lose bins to erasures (8k-vertex bunny: 12 % of the bins under 8
    vertices), hence the fallback, which the reader applies by the same rule on
    the same counts (embedding moves no vertex across a bin edge).
    """
    if even_bins(frame):
        part = _even_partition(nm, levels)
        if part is not None and int(part.counts.min()) >= EVEN_MIN_COUNT:
            return part
    return _quantile_partition(nm, levels)


def _other_partition(nm: _Norms, levels: np.ndarray) -> _Part | None:
    """In v3's frame, the bins :func:`_partition`'s rule did *not* pick (the reader's
    second try, for a mesh whose emptiest even bin an attack moved across the
    threshold): quantile bins if it picked even ones, else the even ones."""
    even = _even_partition(nm, levels)
    if even is not None and int(even.counts.min()) >= EVEN_MIN_COUNT:
        return _quantile_partition(nm, levels)
    return even


def quantile_ranks(levels: np.ndarray, m: int) -> np.ndarray:
    """Ranks (among ``m`` sorted norms) of the keyed quantile edges, duplicates merged: a
    partition needs ``len(levels)`` distinct ones."""
    return np.unique(np.round((Q_LO + (Q_HI - Q_LO) * levels) * (m - 1)).astype(np.int64))


def _quantile_partition(nm: _Norms, levels: np.ndarray) -> _Part | None:
    """Edges at the norms of keyed quantile ranks (schemes v1, v2; v3's fallback)."""
    n_bins = len(levels) - 1
    ranks = quantile_ranks(levels, nm.m)
    if len(ranks) != n_bins + 1:
        return None
    cum = nm.cum()
    pos = ranks if nm.weight is None else np.searchsorted(cum, ranks, side="right") - 1
    edge_values = nm.rho[pos]
    if not np.all(np.diff(edge_values) > 0):
        return None
    return _Part(pos, edge_values, np.diff(cum[pos]))


def _end_norms(nm: _Norms) -> tuple[float, float]:
    """The norms at the Q_LO and Q_HI ranks of the distinct positions (v3's even range)."""
    ends = _end_ranks(nm.m)
    pos = ends if nm.weight is None else np.searchsorted(nm.cum(), ends, side="right") - 1
    return float(nm.rho[pos[0]]), float(nm.rho[pos[1]])


def _even_partition(nm: _Norms, levels: np.ndarray) -> _Part | None:
    """Bins of even width (up to the keyed jitter) between the Q_LO and Q_HI norms."""
    cum = nm.cum()
    edge_values = even_edges(*_end_norms(nm), levels)
    if not np.all(np.diff(edge_values) > 0):
        return None
    pos = np.searchsorted(nm.rho, edge_values, side="left")
    return _Part(pos, edge_values, np.diff(cum[pos]), even=True)


def _bin_sums(nm: _Norms, part: _Part, x: np.ndarray) -> np.ndarray:
    """Per-bin sum of x (x given on the groups pos[0]:pos[-1]), weighted by positions."""
    if nm.weight is not None:
        x = x * nm.weight[part.pos[0] : part.pos[-1]]
    lens = np.diff(part.pos)
    if lens.min() > 0:
        return np.add.reduceat(x, part.pos[:-1] - part.pos[0])
    # An empty bin (only v3's second try reads even bins that may be empty):
    # reduceat would return the next element for it.
    return np.bincount(np.repeat(np.arange(len(lens)), lens), weights=x, minlength=len(lens))


def _bin_means_sorted(nm: _Norms, part: _Part) -> np.ndarray:
    """Mean of x per bin without forming x: (sum rho / n - lower edge) / width."""
    r = (nm.rho if nm.values is None else nm.values)[part.pos[0] : part.pos[-1]]
    s = _bin_sums(nm, part, r)
    lo = part.edge_values[:-1]
    # max(.., 1): an empty bin (v3's second try only) reads as unusable, not NaN
    return (s / np.maximum(part.counts, 1) - lo) / np.diff(part.edge_values)


def _alpha_b(alpha: float, edge_values: np.ndarray) -> np.ndarray:
    """Wide (sparse-tail) bins get a proportionally smaller push: the absolute
    displacement stays about alpha x the mean bin width."""
    width = np.diff(edge_values)
    return alpha * np.minimum(1.0, width.mean() / width)


# --- the informed tier's view of the original's partition ------------------------------
@dataclass
class _Frame:
    """The keyed bins of the original, per welded point (built by ``informed``)."""

    centre: np.ndarray
    idx: np.ndarray  # welded point index of the points inside the binned range
    edge_values: np.ndarray  # (n_bins + 1,) norm at each bin edge
    bins: np.ndarray  # (len(idx),) bin per point
    x: np.ndarray  # (len(idx),) position inside its bin, in [0, 1]
    counts: np.ndarray  # (n_bins,)


# --- per-asset plan ---------------------------------------------------------------------
@dataclass(frozen=True)
class EmbedPlan:
    """Key-independent embedding data of one mesh (see the module docstring).

    Cache it per asset version; it is only valid for the exact vertex array it
    was made from (``apply_plan`` re-measures a few vertices and refuses others).
    """

    n_vertices: int
    centre: np.ndarray
    """(3,) centre of the unmarked mesh in the reader's frame (``frame``)."""
    rho: np.ndarray
    """(G,) strictly increasing distinct norms of the face-referenced positions."""
    weight: np.ndarray | None
    """(G,) distinct positions per norm, or None when every norm is one position."""
    m: int
    """Distinct face-referenced positions."""
    slot: np.ndarray
    """(N,) group of every input vertex in ``rho``; G for unreferenced vertices."""
    rep: np.ndarray
    """(G,) one input vertex of each group (exact read-back without a sort)."""
    frame: CentreKind = "corner-even"
    """Which centre ``centre`` is (the scheme's reading frame)."""

    def norms(self) -> _Norms:
        return _Norms(self.centre, self.rho, self.weight, self.m)

    def to_bytes(self) -> bytes:
        """Serialise (numpy .npz, no pickle): cache this per asset version."""
        buf = io.BytesIO()
        np.savez(
            buf,
            version=np.int64(_PLAN_VERSION),
            n_vertices=np.int64(self.n_vertices),
            centre=self.centre,
            rho=self.rho,
            weight=self.weight if self.weight is not None else np.zeros(0, np.int64),
            m=np.int64(self.m),
            slot=self.slot,
            rep=self.rep,
            frame=np.str_(self.frame),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> EmbedPlan:
        """Inverse of ``to_bytes``; ValueError if the data is not a valid plan."""
        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with loaded as z:
                version = int(z["version"])
                if version != _PLAN_VERSION:  # 1: scheme v1's frame, never written now
                    raise ValueError(f"plan version {version}: make a new plan")
                frame = str(z["frame"])
                if frame not in _FRAMES:
                    raise ValueError(f"unknown frame {frame!r}")
                n, m = int(z["n_vertices"]), int(z["m"])
                centre, rho = np.asarray(z["centre"], np.float64), np.asarray(z["rho"], np.float64)
                weight = np.asarray(z["weight"], np.int64)
                slot = np.asarray(z["slot"])
                rep = np.asarray(z["rep"])
        except (KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not an embed plan: {exc!r}") from exc
        g = len(rho)
        ok = (
            centre.shape == (3,)
            and slot.shape == (n,)
            and np.issubdtype(slot.dtype, np.integer)
            and (len(weight) in (0, g))
            and (n == 0 or (int(slot.min()) >= 0 and int(slot.max()) <= g))
            and rep.shape == (g,)
            and np.issubdtype(rep.dtype, np.integer)
            and (g == 0 or (int(rep.min()) >= 0 and int(rep.max()) < n))
            and (g == 0 or bool(np.all(np.diff(rho) > 0)))
            and m == (int(weight.sum()) if len(weight) else g)
        )
        if not ok:
            raise ValueError("inconsistent embed plan")
        return cls(n, centre, rho, weight if len(weight) else None, m, slot, rep, _FRAMES[frame])


def plan_embed(
    vertices: np.ndarray, faces: np.ndarray, *, frame: CentreKind = "corner-even"
) -> EmbedPlan:
    """The per-asset part of embedding (module docstring): no key involved.
    ``frame``: the scheme's centre (default: the current scheme's)."""
    v, tris = _mesh(vertices, faces)
    if not np.isfinite(v).all():  # flat: ``.all(axis=1)`` first costs 8x as much
        bad = int((~np.isfinite(v).all(axis=1)).sum())
        raise WatermarkFormatError(
            "This mesh has vertex positions that are not numbers (NaN or infinite), "
            "so it cannot carry a watermark.",
            f"{bad} of {len(v)} vertices are not finite",
        )
    n = len(v)
    # Both at once, as the reader does (bit for bit equal to referenced() +
    # frame_centre(), in the reader's configured threads).
    used, centre = parallel.referenced_and_centre(
        v, tris, parallel.threads_for(len(tris), None), frame
    )
    idx = None if used.all() else np.flatnonzero(used)
    # All norms, then a 1-D gather (element-wise, so the same bits as norms of the
    # gathered rows, ~2x cheaper); unreferenced vertices may be far out: no warning.
    with np.errstate(over="ignore", invalid="ignore"):
        r_all = norms(v, centre)
    r = r_all if idx is None else np.take(r_all, idx)
    # Non-negative float64 values sort like their bit patterns as int64, and the
    # integer argsort is ~1.6x faster than the float one.
    order = _argsort_keys(r.view(np.int64))
    rs = r[order]
    del r
    if idx is not None:
        order = idx[order]  # input vertex of each sorted position
    new = np.empty(len(rs), bool)
    if len(rs):
        new[0] = True
    np.not_equal(rs[1:], rs[:-1], out=new[1:])
    weight: np.ndarray | None = None
    dt = np.int32 if n < 2**31 - 1 else np.int64
    if new.all():  # no equal norms (smooth organic meshes): groups are the sorted vertices
        rho = rs
        m = len(rho)
        slot = np.full(n, len(rho), dt)  # G: unreferenced
        slot[order] = np.arange(len(rho), dtype=dt)
        rep = order.astype(dt)
    else:
        group = np.cumsum(new) - 1
        rho = rs[new]
        m = len(rho)
        # Equal norms: copies of one position (exporter seams) count once, distinct
        # positions that happen to share a norm (symmetric CAD parts) count each.
        weight = _tie_weights(v, order, new, group, len(rho))
        if weight is not None:
            m = int(weight.sum())
        slot = np.full(n, len(rho), dt)  # G: unreferenced
        slot[order] = group
        rep = order[new].astype(dt)
    if idx is not None and len(rho):
        # An unreferenced copy of a referenced position must move with it (files
        # keep coincident vertices coincident); the scale depends on the norm only.
        loose = np.flatnonzero(~used)
        rl = r_all[loose]
        g = np.minimum(np.searchsorted(rho, rl), len(rho) - 1)
        hit = rho[g] == rl
        slot[loose[hit]] = g[hit]
    return EmbedPlan(n, centre, rho, weight, m, slot, rep, frame)


_RUN_SAMPLES, _RUN_WINDOW, _RUN_MIN = 16, 4096, 16


def _argsort_keys(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys)``, by timsort when the keys come in long monotone runs.

    Why: in files whose vertex order follows the surface (grids, scan lines, most
    exporters) the norms rise and fall smoothly along the array, and timsort
    (``kind="stable"``) merges those runs ~30 % faster than quicksort sorts them;
    on incoherent orders (subdivided spheres, shuffled files) it is ~20 % slower.
    A sample of windows decides (< 1 ms). Either order is sorted, and tied keys
    share one plan group, so the plan's groups and the mark do not depend on it
    (only which copy is a group's ``rep``).
    """
    n = len(keys)
    if n < 4 * _RUN_WINDOW:
        return np.argsort(keys)
    covered = 0
    for s0 in np.linspace(0, n - _RUN_WINDOW, _RUN_SAMPLES).astype(np.int64).tolist():
        sgn = np.sign(np.diff(keys[s0 : s0 + _RUN_WINDOW]))
        turns = np.flatnonzero(sgn[1:] != sgn[:-1])
        runs = np.diff(np.concatenate([[-1], turns, [len(sgn) - 1]]))
        covered += int(runs[runs >= _RUN_MIN].sum())
    coherent = covered >= 0.5 * _RUN_SAMPLES * (_RUN_WINDOW - 1)
    return np.argsort(keys, kind="stable" if coherent else "quicksort")


def _rows(v: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``v[ids]`` for an (N, 3) array: one 24- (or 12-) byte item per row when ``v`` is
    C-contiguous (a row gather through fancy indexing was ~3x slower)."""
    if not v.flags.c_contiguous:
        return v[ids]
    item = np.dtype((np.void, 3 * v.dtype.itemsize))
    return np.take(v.view(item).ravel(), ids).view(v.dtype).reshape(-1, 3)


def _tie_weights(
    v: np.ndarray, order: np.ndarray, new: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray | None:
    """Distinct positions per norm group, or None if every group is one position.

    Groups of equal norms are runs of ``new == False`` after a True in the sorted
    order. Most such runs are copies of one position (exporter seams): a run whose
    members all equal their neighbour is one position (no gather, no hash), and only
    runs with a member that differs (symmetric CAD parts) need the count of distinct
    positions, by (group, position hash) pairs as the reader counts them.
    """
    tie = ~new
    tie[:-1] |= ~new[1:]
    members = np.flatnonzero(tie)  # runs of two or more equal norms, in sorted order
    pos = _rows(v, order[members])
    head = new[members]  # the first member of each run
    # Member i (not a run head) differs from member i - 1 of its run; == per column
    # (-0.0 == 0.0, as the hash folds them; float equality is transitive here).
    step = pos[1:, 0] != pos[:-1, 0]
    step |= pos[1:, 1] != pos[:-1, 1]
    step |= pos[1:, 2] != pos[:-1, 2]
    step &= ~head[1:]
    if not step.any():
        return None
    run = np.cumsum(head) - 1
    mixed = np.zeros(int(run[-1]) + 1, bool)
    mixed[run[1:][step]] = True
    sel = mixed[run]
    pairs = np.unique(group[members[sel]] + 1j * position_hash(pos[sel]))
    gid = pairs.real.astype(np.int64)  # sorted: count each group's distinct hashes
    start = np.flatnonzero(np.append(True, gid[1:] != gid[:-1]))
    cnt = np.diff(np.append(start, len(gid)))
    if not np.any(cnt > 1):
        return None
    weight = np.ones(n_groups, np.int64)
    weight[gid[start]] = cnt
    return weight


# --- per-delivery apply -------------------------------------------------------------------
def _keyed_signs(payload: bytes, key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels, perm, +-1 sign per bin) for this key and payload."""
    n_code = 8 * code_bytes(len(payload))
    lay = layout(key, n_code)
    bin_bit = np.empty(n_code, np.uint8)
    bin_bit[lay.perm] = encode_bits(payload, key)
    bin_bit ^= lay.whiten
    return lay.edges, lay.perm, bin_bit.astype(np.float64) * 2.0 - 1.0


def _newton_table(
    x: np.ndarray,
    wts: np.ndarray | None,
    bins: np.ndarray | None,
    n_bins: int,
    lens: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell mean x, cell weight, cell bin) on a (bin, sub-bin) grid of _SUB cells.

    ``lens`` (instead of ``bins``): the bins are consecutive runs of these lengths
    and x is non-decreasing within each (the embedder's sorted norms); the cells
    are then runs too, found by binary search instead of arithmetic on every x.
    Either way a cell sums its x in array order: the same table bit for bit.
    """
    size = n_bins * _SUB
    if lens is None:
        assert bins is not None
        cell = (x * _SUB).astype(np.int64)
        np.minimum(cell, _SUB - 1, out=cell)
        cell += bins * _SUB
    else:
        cell, per_cell = _sorted_cells(x, lens)
    if lens is not None and wts is None:
        cw = per_cell  # the counts bincount would return (int64)
    else:
        cw = np.bincount(cell, weights=wts, minlength=size)
    cx = np.bincount(cell, weights=x if wts is None else x * wts, minlength=size)
    keep = cw > 0
    return cx[keep] / cw[keep], cw[keep], np.flatnonzero(keep) // _SUB


_CELL_EDGES = np.arange(1, _SUB) / _SUB
"""x >= j / _SUB (exact) is the cell index floor(x * _SUB) >= j: x * _SUB is exact."""


def _sorted_cells(x: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cell of every x, count per cell) for x non-decreasing within runs ``lens``
    (bin b = run b): ``min(floor(x * _SUB), _SUB - 1) + b * _SUB`` as in
    :func:`_newton_table`, from _SUB - 1 binary searches per bin."""
    ends = np.cumsum(lens)
    starts = ends - lens
    at = np.empty((len(lens), _SUB + 1), np.int64)
    at[:, 0], at[:, -1] = starts, ends
    for b in range(len(lens)):
        s0, s1 = int(starts[b]), int(ends[b])
        at[b, 1:-1] = np.searchsorted(x[s0:s1], _CELL_EDGES, side="left") + s0
    per_cell = np.diff(at, axis=1).ravel()
    return np.repeat(np.arange(len(per_cell)), per_cell), per_cell


def _solve_k(
    tx: np.ndarray, tw: np.ndarray, tb: np.ndarray, counts: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """Per-bin k with mean(x**k) = target (Newton on a convex decreasing function)."""
    n_bins = len(counts)
    lx = np.log(np.maximum(tx, 1e-12))
    k = np.ones(n_bins)
    inv_n = 1.0 / np.maximum(counts, 1)
    for _ in range(_NEWTON_STEPS):
        e = np.exp(k[tb] * lx) * tw
        f = np.bincount(tb, weights=e, minlength=n_bins) * inv_n - target
        if np.max(np.abs(f)) < 1e-9:
            break
        fp = np.bincount(tb, weights=e * lx, minlength=n_bins) * inv_n
        step = np.where(fp < 0, f / np.minimum(fp, -1e-12), 0.0)
        k = np.clip(k - step, 1e-3, 1e3)
    return k


def _table_means(
    k: np.ndarray, tx: np.ndarray, tw: np.ndarray, tb: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    e = np.exp(k[tb] * np.log(np.maximum(tx, 1e-300))) * tw
    e = np.where(tx > 0, e, 0.0)
    return np.bincount(tb, weights=e, minlength=len(counts)) / np.maximum(counts, 1)


@dataclass
class _Applied:
    points: np.ndarray
    margin: np.ndarray  # (B,) signed margin of each bin after the move (plan centre)
    alpha_b: np.ndarray
    usable: np.ndarray
    part: _Part
    margin0: np.ndarray  # (B,) natural margins before the move
    goal0: np.ndarray  # (B,) uncapped goals
    cap: np.ndarray  # (B,) caps the first pass ended with
    moved: tuple[int, np.ndarray]
    """(p0, new norms about the plan centre of groups p0:p0 + len): see _near_sorted_bins."""


def _goal0(margin: np.ndarray, alpha_b: np.ndarray) -> np.ndarray:
    """Uncapped goal of every bin from its natural margin.

    Every bin moves towards its bit by at least alpha_b / 2, also a bin whose
    natural mean is already past 1/2 + alpha_b: the informed trace reads the
    direction of the move, so no bin may stand still or move backwards. Capped
    below 1/2: a bin already bunched at one end has nowhere to go.
    """
    goal0 = np.maximum(alpha_b, np.minimum(margin + 0.5 * alpha_b, _MAX_GOAL))
    return np.maximum(goal0, np.minimum(margin, 0.5))


def _capped_goal(
    goal0: np.ndarray, margin: np.ndarray, alpha_b: np.ndarray, cap: np.ndarray
) -> np.ndarray:
    """A bin far on the wrong side moves at most ``cap`` x alpha_b towards its goal."""
    return np.minimum(goal0, margin + cap * alpha_b)


def _goal_in_other(
    plan: EmbedPlan, levels: np.ndarray, sign: np.ndarray, alpha: float, cap: np.ndarray
) -> np.ndarray | None:
    """Capped goals for the bins of v3's *other* partition of the original (None: it has
    none), for a marked mesh the reader's rule reads in that partition.

    Why: near EVEN_MIN_COUNT the embedder's moves in the rule's bins can carry the
    emptiest even bin's count across it (15 -> 17 in the case review found); the
    read-back then re-marks in the other bins. Goals computed for the first bins,
    bit by bit, fit the other bins' natural margins badly: some bins were pushed far
    past their goal (more distortion), others pulled back against the direction the
    informed trace reads. These goals are the other bins' own, from the original.
    """
    nm = plan.norms()
    part = _other_partition(nm, levels)
    if part is None:
        return None
    alpha_b = _alpha_b(alpha, part.edge_values)
    margin = (_bin_means_sorted(nm, part) - 0.5) * sign
    return _capped_goal(_goal0(margin, alpha_b), margin, alpha_b, cap)


def _apply(
    plan: EmbedPlan,
    v: np.ndarray,
    levels: np.ndarray,
    perm: np.ndarray,
    sign: np.ndarray,
    alpha: float,
    cap: np.ndarray,
    goal: np.ndarray | None = None,
) -> _Applied:
    """Push every bin mean to its goal (x -> x**k per bin) about the plan's centre.

    ``goal`` None: goals from the natural margins (first pass); given: a
    refinement pass that moves already-marked points (re-planned in the reader's
    frame) to those goals.
    """
    n_code = len(sign)
    nm = plan.norms()
    part = _partition(nm, levels, plan.frame)
    if part is None:
        raise WatermarkCapacityError("This mesh is degenerate.", "bin edges coincide")
    usable = part.counts >= MIN_BIN_VERTICES
    erased = (~usable[perm]).reshape(-1, 8).any(axis=1).sum()
    if erased > EMBED_MAX_ERASED_BYTES:
        raise WatermarkCapacityError(
            "This mesh is too small to carry a watermark.",
            f"{int(erased)} of {n_code // 8} code bytes fall in bins with fewer than "
            f"{MIN_BIN_VERTICES} vertices (limit {EMBED_MAX_ERASED_BYTES})",
        )
    p0, p1 = int(part.pos[0]), int(part.pos[-1])
    lens = np.diff(part.pos)  # bin b is the run of groups pos[b]:pos[b+1]
    ev = part.edge_values
    width = np.diff(ev)
    r = plan.rho[p0:p1]
    lo = np.repeat(ev[:-1], lens)
    wd = np.repeat(width, lens)
    x = r - lo
    x /= wd
    np.clip(x, 0.0, 1.0, out=x)  # non-decreasing within each bin (r is sorted)
    wts = None if plan.weight is None else plan.weight[p0:p1].astype(np.float64)
    tx, tw, tb = _newton_table(x, wts, None, n_code, lens)
    means = np.bincount(tb, weights=tx * tw, minlength=n_code) / np.maximum(part.counts, 1)
    alpha_b = _alpha_b(alpha, ev)
    margin = (means - 0.5) * sign
    goal0 = _goal0(margin, alpha_b)
    cap = cap.copy()
    fixed = goal is not None
    for _ in range(1 if fixed else _INNER_ROUNDS):
        if fixed:
            k = _solve_k(tx, tw, tb, part.counts, 0.5 + sign * goal)
            break
        # A bin far on the wrong side (lopsided bins of small or CAD-like meshes)
        # moves at most cap x alpha_b towards its bit; bins that stay short of a
        # safe margin get their cap doubled (bounded distortion elsewhere).
        goal = _capped_goal(goal0, margin, alpha_b, cap)
        k = _solve_k(tx, tw, tb, part.counts, 0.5 + sign * goal)
        k = np.where(usable, k, 1.0)
        got = (_table_means(k, tx, tw, tb, part.counts) - 0.5) * sign
        short = usable & (got < _SAFE_MARGIN * alpha_b)
        if not short.any():
            break
        cap = np.where(short, cap * 2.0, cap)
    # x**k = exp(k log x), in place (x = 0 stays 0): few full-size temporaries.
    xn = np.maximum(x, 1e-300)
    np.log(xn, out=xn)
    xn *= np.repeat(k, lens)
    np.exp(xn, out=xn)
    xn[x <= 0] = 0.0
    margin_new = (_bin_sums(nm, part, xn) / np.maximum(part.counts, 1) - 0.5) * sign
    xn *= wd
    xn += lo
    # New / old norm per group (the groups outside the bins keep their norm: x / x);
    # slot G (unreferenced vertices) and zero norms keep scale 1.
    g = len(plan.rho)
    scale = np.empty(g + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(plan.rho[:p0], plan.rho[:p0], out=scale[:p0])
        np.divide(xn, r, out=scale[p0:p1])
        np.divide(plan.rho[p1:], plan.rho[p1:], out=scale[p1:g])
    scale[g] = 1.0
    scale[: int(np.searchsorted(plan.rho, 0.0, side="right"))] = 1.0  # rho sorted, >= 0
    pts = _scaled(v, plan, scale)
    return _Applied(pts, margin_new, alpha_b, usable, part, margin, goal0, cap, (p0, xn))


_SCALE_CHUNK = 1 << 14
"""Vertices per block in :func:`_scaled`: the block's temporaries stay in L1/L2."""


def _scaled(v: np.ndarray, plan: EmbedPlan, scale: np.ndarray) -> np.ndarray:
    """(N, 3) float64 ``centre + (v - centre) * scale[slot]``, the same float64
    operations in the same order per element as the broadcast expression, but column
    by column on cache-sized blocks: the (N, 3) broadcast ran an inner loop of 3
    elements per row and gathered with int32 indices (converted to a full intp copy
    first); this is ~2.5x faster and bit for bit equal.
    """
    n = len(v)
    c = plan.centre
    out = np.empty((n, 3))
    for s0 in range(0, n, _SCALE_CHUNK):
        s1 = min(s0 + _SCALE_CHUNK, n)
        sc = np.take(scale, plan.slot[s0:s1])
        vb, ob = v[s0:s1], out[s0:s1]
        for i in range(3):
            d = np.subtract(vb[:, i], c[i], dtype=np.float64)
            d *= sc
            d += c[i]
            ob[:, i] = d
    return out


@dataclass
class _Seen:
    """A read-back: per bin as the extractor will read the points, and the frame."""

    margin: np.ndarray
    usable: np.ndarray
    alpha_b: np.ndarray
    centre: np.ndarray | None
    """The reader's centre (None: read by the full reader, weighted plans)."""
    norms: np.ndarray | None
    """(N,) every vertex's norm about ``centre`` (None with ``centre``)."""
    even: bool = False
    """Read in scheme v3's even bins (else keyed quantile bins)."""


def _read_back(
    plan: EmbedPlan,
    out: np.ndarray,
    tris: np.ndarray,
    levels: np.ndarray,
    sign: np.ndarray,
    alpha: float,
    moved: tuple[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(margin, usable, alpha_b): :func:`_look`'s read-back without the frame."""
    seen = _look(plan, out, tris, levels, sign, alpha, moved)
    return None if seen is None else (seen.margin, seen.usable, seen.alpha_b)


def _look(
    plan: EmbedPlan,
    out: np.ndarray,
    tris: np.ndarray,
    levels: np.ndarray,
    sign: np.ndarray,
    alpha: float,
    moved: tuple[int, np.ndarray] | None = None,
) -> _Seen | None:
    """(margin, usable, alpha_b) per bin as the extractor will read ``out`` (its
    arithmetic exactly), with the reader's centre and norms; None if the partition
    is degenerate.

    The plan's groups are the reader's distinct positions (copies move together),
    so the read-back needs no sort: one centre pass, the norms of one vertex per
    group, and a partition for the keyed quantile edges (v3's even bins: two order
    statistics and a binary search, :func:`_look_even`). Plans whose equal norms
    hold distinct positions (symmetric CAD parts) use the full reader.
    ``moved``: ``_Applied.moved`` when ``out`` is that apply's result for this
    plan; the edges and bins then come from :func:`_near_sorted_bins` (same values,
    no partition or binary search over all norms).
    """
    n_code = len(sign)
    c2: np.ndarray | None = None
    r_all: np.ndarray | None = None
    if plan.weight is not None:
        nm = _read_norms(out, tris, frame=plan.frame)
        part = _partition(nm, levels, plan.frame) if nm is not None else None
        if nm is None or part is None:
            return None
        means, counts, ev = _bin_means_sorted(nm, part), part.counts, part.edge_values
        read_even = part.even
    else:
        c2 = frame_centre(out, tris, plan.frame)
        # One distinct position per vertex (no copies, all referenced): no gather.
        # Else all norms, then a gather of one per group (element-wise, so the same
        # bits as gathering the rows first; a 1-D gather is ~5x cheaper than rows).
        r = r_all = norms(out, c2)
        if len(plan.rho) != plan.n_vertices:
            r = np.take(r, plan.rep)
        even = _look_even(r, levels, n_code) if even_bins(plan.frame) else None
        ranks = quantile_ranks(levels, len(r))
        if even is None and len(ranks) != n_code + 1:
            return None
        near = None
        if even is None and moved is not None:
            near = _near_sorted_bins(plan, moved, r, ranks, c2, n_code)
        read_even = even is not None
        if even is not None:
            ev, counts, sums = even
        elif near is None:
            ev = np.partition(r, ranks)[ranks]
            if not np.all(np.diff(ev) > 0):
                return None
            rr = r[(r >= ev[0]) & (r < ev[-1])]
            b = np.searchsorted(ev, rr, side="right") - 1
            counts = np.bincount(b, minlength=n_code)
            sums = np.bincount(b, weights=rr, minlength=n_code)
        else:
            # Bin n_code collects the norms outside the binned range; every bin
            # sums the same norms in the same (r) order as above: the same bits.
            ev, b_all, counts = near
            if not np.all(np.diff(ev) > 0):
                return None
            sums = np.bincount(b_all, weights=r, minlength=n_code + 1)[:n_code]
        means = (sums / np.maximum(counts, 1) - ev[:-1]) / np.diff(ev)
    margin = (means - 0.5) * sign
    return _Seen(margin, counts >= MIN_BIN_VERTICES, _alpha_b(alpha, ev), c2, r_all, read_even)


def _look_even(
    r: np.ndarray, levels: np.ndarray, n_code: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(edges, counts, norm sums) of scheme v3's even bins over one norm per distinct
    position (``r``, unsorted), exactly as :func:`_partition` finds them on the sorted
    norms; None when it would fall back to the quantile bins."""
    ends = _end_ranks(len(r))
    lo_hi = np.partition(r, ends)[ends]
    ev = even_edges(float(lo_hi[0]), float(lo_hi[1]), levels)
    if not np.all(np.diff(ev) > 0):
        return None
    rr = r[(r >= ev[0]) & (r < ev[-1])]
    b = np.searchsorted(ev, rr, side="right") - 1
    counts = np.bincount(b, minlength=n_code)
    if int(counts.min()) < EVEN_MIN_COUNT:
        return None
    return ev, counts, np.bincount(b, weights=rr, minlength=n_code)


def _replan(plan: EmbedPlan, pts: np.ndarray, seen: _Seen, loose: np.ndarray) -> EmbedPlan | None:
    """``plan_embed(pts, tris)`` for points ``_apply`` made with ``plan``, from the
    read-back of ``pts`` (no triangle pass, no sort of scattered norms); None when
    the shortcut does not apply (call plan_embed). ``loose``: unreferenced vertices.

    Why it is the same plan: with ``plan.weight`` None every group is one position
    (its copies moved together and are still bitwise equal), so the new groups are
    the old ones ordered by their new norm, the norms the read-back took about the
    same centre plan_embed computes (``seen``). Those are nearly in the old
    order, so the sort is a cheap timsort. If two groups now share a norm, the
    distinct positions need counting again: None. Unreferenced vertices are matched
    to a group by norm exactly as plan_embed does.
    """
    if plan.weight is not None or seen.centre is None or seen.norms is None or not len(plan.rho):
        return None
    rg = np.take(seen.norms, plan.rep)  # one norm per group
    perm = np.argsort(rg.view(np.int64), kind="stable")  # nearly sorted already
    rho = rg[perm]
    if not np.all(rho[1:] > rho[:-1]):
        return None
    g = len(rho)
    dt = plan.slot.dtype
    where = np.empty(g + 1, dt)
    where[perm] = np.arange(g, dtype=dt)
    where[g] = g
    slot = np.take(where, plan.slot)
    if len(loose):
        slot[loose] = g
        rl = seen.norms[loose]
        at = np.minimum(np.searchsorted(rho, rl), g - 1)
        hit = rho[at] == rl
        slot[loose[hit]] = at[hit]
    return EmbedPlan(plan.n_vertices, seen.centre, rho, None, g, slot, plan.rep[perm], plan.frame)


_BAND_TOL = 2.0**-40
"""Relative allowance for float rounding in the bound of :func:`_near_sorted_bins`
(the rounding of apply's scaling and of the norms is ~2**-50 of the coordinates)."""


def _near_sorted_bins(
    plan: EmbedPlan,
    moved: tuple[int, np.ndarray],
    r: np.ndarray,
    ranks: np.ndarray,
    c2: np.ndarray,
    n_code: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The reader's edges ``np.partition(r, ranks)[ranks]``, every norm's bin
    (n_code: outside the bins) and the count per bin, exactly, without touching
    all norms twice.

    Why it is exact: apply gave group j the norm t_j about the plan centre c
    (``moved``; t is sorted), and r_j = |p_j - c2| differs from it by at most
    e = |c2 - c| (triangle inequality) plus rounding. Sorting is 1-Lipschitz in the
    max norm, so the q-th smallest r lies within e of t_q; every group with
    t_j < t_q - 2e has r_j below it, every group with t_j > t_q + 2e above it. So
    each edge is an order statistic of a small band of groups around its rank
    (a few dozen on a large mesh), and between two bands every group is in the bin
    the bands enclose; only band groups need a binary search. ``r`` is per group
    (plan order) when the plan has copies, else per vertex. None (use the full
    path) if the bands overlap or are large (a centre that moved far).
    """
    p0, xn = moved
    rho, g = plan.rho, len(plan.rho)
    p1 = p0 + len(xn)
    below, above = rho[:p0], rho[p1:]

    def at(vals: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
        """Position of ``vals`` in the sorted new norms t = rho[:p0] | xn | rho[p1:]."""
        return (
            np.searchsorted(below, vals, side)
            + np.searchsorted(xn, vals, side)
            + np.searchsorted(above, vals, side)
        )

    t_q = rho[ranks].copy()
    inside = (ranks >= p0) & (ranks < p1)
    t_q[inside] = xn[ranks[inside] - p0]
    size = float(np.linalg.norm(plan.centre)) + float(np.linalg.norm(c2)) + float(rho[-1])
    e = float(np.linalg.norm(c2 - plan.centre)) * (1.0 + _BAND_TOL) + _BAND_TOL * size
    lo, hi = at(t_q - 2.0 * e, "left"), at(t_q + 2.0 * e, "right")
    if (
        np.any(lo > ranks)
        or np.any(hi <= ranks)
        or np.any(hi[:-1] > lo[1:])
        or int((hi - lo).sum()) > g // 8
    ):
        return None
    band = np.concatenate([np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
    per_vertex = g == plan.n_vertices  # _read_back gathered r per group only with copies
    rb = r[band] if not per_vertex else r[plan.rep[band]]
    ev = np.empty(len(ranks))
    off = np.concatenate([[0], np.cumsum(hi - lo)])
    for k in range(len(ranks)):
        j = int(ranks[k] - lo[k])
        ev[k] = np.partition(rb[off[k] : off[k + 1]], j)[j]
    b_band = np.searchsorted(ev, rb, side="right") - 1
    b_band[(b_band < 0) | (b_band >= n_code)] = n_code
    # Plan order: outside | band 0 | bin 0 | band 1 | bin 1 | ... | band n_code | outside.
    dt = np.min_scalar_type(n_code)
    gap_lab = np.concatenate([[n_code], np.arange(n_code), [n_code]])
    gap_len = np.concatenate([lo, [g]]) - np.concatenate([[0], hi])
    vals = np.zeros(2 * len(gap_lab) - 1, np.int64)
    vals[0::2] = gap_lab
    lens = np.zeros(len(vals), np.int64)
    lens[0::2] = gap_len
    lens[1::2] = hi - lo
    b_plan = np.repeat(vals.astype(dt), lens)
    b_plan[band] = b_band
    counts = np.bincount(b_band, minlength=n_code + 1)[:n_code]
    counts += lo[1:] - hi[:-1]  # the groups between band k and band k + 1
    return ev, (np.take(b_plan, plan.slot) if per_vertex else b_plan), counts


def apply_plan(
    plan: EmbedPlan,
    vertices: np.ndarray,
    payload: bytes,
    key: bytes,
    *,
    strength: float | None = None,
    faces: np.ndarray | None = None,
) -> np.ndarray:
    """Per-delivery embedding with a cached plan; marked vertices (same shape, dtype).

    Without ``faces``: O(N) arithmetic only (no sort, no triangle pass); every
    bin is on its side about the plan's centre, and the reader's centre
    moves by ~1e-5 of the diagonal, which can endanger a bin of a small or lumpy
    mesh: verify the written file (the server does). With ``faces``: the result
    is read back exactly as the extractor will (``_read_back_wrong``); bins that
    came out short get a bigger push (<= 7 rounds; fewest wrong bytes wins).
    """
    alpha = DEFAULT_STRENGTH if strength is None else float(strength)
    if not 0.0 < alpha < 0.25:
        raise ValueError("strength must be in (0, 0.25)")
    if not payload:
        raise ValueError("payload must not be empty")
    src = np.asarray(vertices)
    if src.shape != (plan.n_vertices, 3):
        raise ValueError(f"plan is for {plan.n_vertices} vertices, got {src.shape}")
    _check_plan(plan, src)
    need = min_vertices(8 * len(payload))
    if plan.m < need:
        raise WatermarkCapacityError(
            "This mesh is too small to carry a watermark.",
            f"{plan.m} distinct face-referenced vertices, need at least {need}",
        )
    levels, perm, sign = _keyed_signs(payload, key)
    cap = np.full(len(sign), _MAX_SHIFT)
    a = _apply(plan, src, levels, perm, sign, alpha, cap)
    out = a.points
    if faces is not None:
        out = _embed_rounds(plan, src, as_triangles(faces), levels, perm, sign, alpha, a)
    # out is always a fresh float64 array: no second copy for float64 input.
    return out.astype(
        src.dtype if np.issubdtype(src.dtype, np.floating) else np.float64, copy=False
    )


def _rms(pts: np.ndarray, src: np.ndarray) -> float:
    d = pts - src
    return float(np.sqrt(np.einsum("ij,ij->", d, d) / max(len(d), 1)))


def _diag(plan: EmbedPlan, src: np.ndarray) -> float:
    """Bounding-box diagonal of the face-referenced vertices."""
    used = src[plan.rep]
    return float(np.linalg.norm(used.max(axis=0) - used.min(axis=0))) if len(used) else 0.0


def _embed_rounds(
    plan: EmbedPlan,
    src: np.ndarray,
    tris: np.ndarray,
    levels: np.ndarray,
    perm: np.ndarray,
    sign: np.ndarray,
    alpha: float,
    first: _Applied,
) -> np.ndarray:
    """Read the result back as the extractor will and repair it (small or lumpy meshes).

    A round starts from the original points with per-bin caps; while the read-back
    misses the goals (the centre moved with the mark), the marked points are
    re-planned in the reader's frame and moved to the same goals (<= _MAX_PASSES
    passes). Bins still short of a safe margin get their cap doubled for the next
    round (<= _CAP_ROUNDS); the round with the fewest wrong code bytes wins, the
    earliest (least distorted) on ties; a later round whose RMS displacement exceeds
    _MAX_MRMS of the bbox diagonal is not taken (a lumpy CAD part keeps a byte or
    two for the RS code to correct rather than a visible push). Large meshes pass
    the first read-back. When the marked points read in v3's other partition (the
    moves carried the emptiest even bin across EVEN_MIN_COUNT), the passes aim at
    that partition's own goals (:func:`_goal_in_other`).
    """
    cap = first.cap
    a = first
    best: tuple[int, np.ndarray] | None = None
    loose: np.ndarray | None = None  # unreferenced vertices, for _replan
    for _ in range(_CAP_ROUNDS):
        rule_goal = _capped_goal(a.goal0, a.margin0, a.alpha_b, a.cap)
        goal = rule_goal
        pts = a.points
        look = plan  # whose groups the read-back uses
        moved: tuple[int, np.ndarray] | None = a.moved  # pts is a's result for ``look``
        wrong = np.ones(len(sign), bool)
        goal_read = a.part.even  # which partition's bins ``goal`` is for
        # The pass with the fewest wrong bytes, the latest on ties: passes normally only
        # improve, but one that switches partitions can end worse than an earlier one.
        round_best: tuple[int, np.ndarray] | None = None
        round_wrong = wrong
        for step in range(_MAX_PASSES):
            seen = _look(look, pts, tris, levels, sign, alpha, moved)
            if seen is None:
                break
            if seen.even != goal_read:  # the reader's rule now picks the other bins
                # ... or, after a switch, the rule's bins again (the later moves took
                # the emptiest even bin back across the threshold): their own goals.
                back = seen.even == a.part.even
                other = rule_goal if back else _goal_in_other(plan, levels, sign, alpha, a.cap)
                if other is not None:
                    goal, goal_read = other, seen.even
            margin, usable, ab = seen.margin, seen.usable, seen.alpha_b
            wrong = usable & (margin < _SAFE_MARGIN * ab)
            wb = int(wrong[perm].reshape(-1, 8).any(axis=1).sum())
            if round_best is None or wb <= round_best[0]:
                round_best, round_wrong = (wb, pts), wrong
            if step == _MAX_PASSES - 1 or np.all((margin >= goal - 0.05 * ab) | ~usable):
                break
            if loose is None:  # one group per vertex: every vertex is referenced
                no_loose = len(plan.rho) == plan.n_vertices
                loose = (
                    np.zeros(0, np.intp)
                    if no_loose
                    else np.flatnonzero(~_frame_referenced(len(src), tris, plan.frame))
                )
            again = _replan(plan, pts, seen, loose)
            b = _apply(
                again if again is not None else plan_embed(pts, tris, frame=plan.frame),
                pts,
                levels,
                perm,
                sign,
                alpha,
                a.cap,
                goal,
            )
            pts = b.points
            # Without copies the read-back sums every vertex's norm in vertex order
            # whichever plan it uses, so the re-plan (and its apply's new norms) give
            # the same bits; with copies it sums per group, in the original's order.
            no_copies = len(plan.rho) == plan.n_vertices
            look, moved = (again, b.moved) if again is not None and no_copies else (plan, None)
        if round_best is not None:
            (wrong_bytes, pts), wrong = round_best, round_wrong
        else:
            wrong_bytes = int(wrong[perm].reshape(-1, 8).any(axis=1).sum())
        if best is not None and _rms(pts, src) > _MAX_MRMS * _diag(plan, src):
            break  # a bigger push would be visible: keep the best so far
        if best is None or wrong_bytes < best[0]:
            best = (wrong_bytes, pts)
        if wrong_bytes == 0:
            break
        cap = np.where(wrong, a.cap * 2.0, a.cap)
        a = _apply(plan, src, levels, perm, sign, alpha, cap)
    assert best is not None
    return best[1]


def _frame_referenced(n: int, tris: np.ndarray, frame: CentreKind) -> np.ndarray:
    """The vertices the reader counts in ``frame``: v2 and v3 leave out triangles that
    repeat a vertex index (``geometry.corner_counts``), v1 counts every triangle."""
    return corner_counts(n, tris) > 0 if centre_of(frame) == "corner" else referenced(n, tris)


def _check_plan(plan: EmbedPlan, v: np.ndarray) -> None:
    """Refuse a plan made from other vertices: re-measure a spread of vertices."""
    if plan.n_vertices == 0:
        return
    pick = np.linspace(0, plan.n_vertices - 1, min(_CHECK_POINTS, plan.n_vertices)).astype(int)
    slot = plan.slot[pick]
    pick, slot = pick[slot < len(plan.rho)], slot[slot < len(plan.rho)]
    if len(pick) and not np.array_equal(norms(v[pick], plan.centre), plan.rho[slot]):
        raise ValueError("this embed plan was made from other vertices")


def embed(
    vertices: np.ndarray,
    faces: np.ndarray,
    payload: bytes,
    key: bytes,
    *,
    strength: float | None = None,
    frame: CentreKind = "corner-even",
) -> np.ndarray:
    """Return marked vertices (same order, shape and dtype); faces are unchanged.

    ``apply_plan(plan_embed(vertices, faces, frame=frame), vertices, payload, key,
    faces=faces)``.
    Raises WatermarkCapacityError when the mesh cannot carry the payload.
    """
    if strength is not None and not 0.0 < float(strength) < 0.25:
        raise ValueError("strength must be in (0, 0.25)")
    if not payload:
        raise ValueError("payload must not be empty")
    plan = plan_embed(vertices, faces, frame=frame)
    return apply_plan(plan, vertices, payload, key, strength=strength, faces=faces)


# --- reading ---------------------------------------------------------------------------------
@dataclass
class _Observation:
    bits: np.ndarray  # (n_code,) hard code bits
    rel: np.ndarray  # (n_code,) |z|
    z: np.ndarray  # (n_code,) signed, whitened back: >0 means code bit 1
    usable: np.ndarray
    n_code: int


def _observe(
    vertices: np.ndarray,
    faces: np.ndarray,
    key: bytes,
    payload_bits: int,
    threads: int | None = None,
    hint: ReaderHint | None = None,
    frame: CentreKind = "corner-even",
) -> _Observation | None:
    """Common front end of extract/verify (None: too small to read); ``threads``,
    ``hint``, ``frame``: see :func:`_read_norms`."""
    return _observe_reading(
        read_mesh(vertices, faces, threads=threads, hint=hint, frame=frame), key, payload_bits
    )


@dataclass(frozen=True)
class MeshReading:
    """The key-independent half of a blind read of one mesh: its sorted distinct norms
    about the centre of one scheme's frame (:func:`read_mesh`).

    Why it is its own step: ``sealport trace`` tries the keys of hundreds of
    deliveries on one leaked mesh, and the triangle pass and the sort of the norms
    are ~95 % of a :func:`verify` on a large mesh (the keyed bins, the decode and
    the detector are the rest). Reading once and checking each key with
    :func:`verify_reading` gives the same results bit for bit (tested).
    """

    norms: _Norms | None
    """None: fewer than two face-referenced vertices."""
    reader: ReaderHint | None
    """The centre and "all vertices referenced" the reader found (or the hint it took)."""
    frame: CentreKind = "corner-even"
    """The frame the norms were read in (keys of another scheme need another reading)."""
    grid: tuple[float, float, float] | None = None
    """The per-axis step of the coarse grid the mesh was found rounded to, when the
    norms are its dequantised reading (:func:`_dequantised`); None: plain reading."""

    @property
    def distinct_vertices(self) -> int:
        """Distinct face-referenced positions: what the capacity floor counts. (A
        dequantised reading counts every referenced vertex, as it bins each on its own;
        it is only taken when the distinct positions already reach the floor.)"""
        return 0 if self.norms is None else self.norms.m


def read_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    hint: ReaderHint | None = None,
    threads: int | None = None,
    frame: CentreKind = "corner-even",
) -> MeshReading:
    """Key-independent reader front end (see :class:`MeshReading`; ``hint``, ``threads``,
    ``frame``: :func:`_read_norms`)."""
    v, tris = _mesh(vertices, faces)
    nm = _read_norms(v, tris, threads, hint, frame)
    seen = None
    grid = None
    if nm is not None:
        c = nm.centre
        seen = ReaderHint((float(c[0]), float(c[1]), float(c[2])), nm.all_referenced)
        dq = _dequantised(v, tris, nm)
        if dq is not None:
            nm, steps = dq
            grid = (float(steps[0]), float(steps[1]), float(steps[2]))
    return MeshReading(nm, seen, frame, grid)


def _dequantised(
    v: np.ndarray, tris: np.ndarray, nm: _Norms, payload_bits: int = 64
) -> tuple[_Norms, np.ndarray] | None:
    """The reading of a mesh rounded to a coarse grid (:mod:`.dequantise`): one group
    per referenced vertex, sorted by its estimated norm before the rounding, averaging
    its rounded norm (``_Norms.values``); with the grid's steps. None when the mesh is
    not on a grid coarse enough against the bins of a ``payload_bits`` payload, or
    too small to carry one: a mesh is counted by its distinct positions (seam copies
    once), which a per-vertex reading would overstate (Blender's Suzanne is modelled
    on a 1/128 grid and must stay "too small").

    Why the choice is safe for the false-positive bounds: it depends on the mesh
    alone, never on a key, so each check still reads one set of bins per partition."""
    if nm.m < min_vertices(payload_bits):
        return None
    steps = dequantise.lattice_steps(v)
    if steps is None:
        return None
    r_lo, r_hi = _end_norms(nm)
    bin_width = (r_hi - r_lo) / capacity_bits(payload_bits)
    k = dequantise.smoothing_steps(steps, bin_width)
    if k == 0:
        return None
    used = np.flatnonzero(corner_counts(len(v), tris) > 0)
    local = np.full(len(v), -1, np.int64)
    local[used] = np.arange(len(used))
    proper = tris[proper_mask(tris)]
    pts = v[used].astype(np.float64)
    est = dequantise.smoothed(pts, local[proper], steps, k)
    member = norms(est, nm.centre)
    order = np.argsort(member, kind="stable")
    ms, vs = member[order], norms(pts, nm.centre)[order]
    new = np.empty(len(ms), bool)
    new[:1] = True
    np.not_equal(ms[1:], ms[:-1], out=new[1:])
    if new.all():
        out = _Norms(nm.centre, ms, None, len(ms), nm.all_referenced, vs)
    else:
        group = np.cumsum(new) - 1
        weight = np.bincount(group)
        means = np.bincount(group, weights=vs) / weight
        out = _Norms(nm.centre, ms[new], weight, len(ms), nm.all_referenced, means)
    return out, steps


def _observe_reading(
    reading: MeshReading, key: bytes, payload_bits: int, second: bool = False
) -> _Observation | None:
    """``second``: read the bins of v3's second try (:func:`_other_partition`)."""
    n_code = capacity_bits(payload_bits)
    return _observation(
        reading.norms, layout(key, n_code), payload_bits, n_code, reading.frame, second
    )


def _observation(
    nm: _Norms | None,
    lay: Layout,
    payload_bits: int,
    n_code: int,
    frame: CentreKind = "corner-even",
    second: bool = False,
) -> _Observation | None:
    """The keyed bins' soft and hard bits from the reader's norms."""
    if nm is None or nm.m < min_vertices(payload_bits):
        return None
    part = _other_partition(nm, lay.edges) if second else _partition(nm, lay.edges, frame)
    if part is None:
        return None
    means = _bin_means_sorted(nm, part)
    usable_bin = part.counts >= MIN_BIN_VERTICES
    soft_bin = (means - 0.5) * np.sqrt(np.maximum(part.counts, 1))  # z-like reliability
    hard_bin = (means > 0.5).astype(np.uint8) ^ lay.whiten
    z_bin = np.where(lay.whiten == 1, -soft_bin, soft_bin)
    usable = usable_bin[lay.perm]
    if (~usable).reshape(-1, 8).any(axis=1).sum() > NSYM:
        return None
    return _Observation(
        hard_bin[lay.perm], np.abs(soft_bin)[lay.perm], z_bin[lay.perm], usable, n_code
    )


def _tries(frame: CentreKind) -> int:
    """Partitions the blind reader tries in ``frame`` (v3: the rule's, then the other)."""
    return 2 if even_bins(frame) else 1


def _fp_decode(payload_bits: int, frame: CentreKind = "corner") -> float:
    """False-positive bound of a blind decode: every decoding attempt on every
    partition tried passes the keyed tag with probability 2**-32 at most."""
    return _tries(frame) * max_attempts(payload_bits // 8) * 2.0 ** (-8 * TAG_BYTES)


def _read_blind(
    reading: MeshReading, key: bytes, payload_bits: int
) -> tuple[ExtractResult, list[_Observation]]:
    """Blind decode over the frame's partitions (the first that decodes wins; else
    the rule's partition's result), and the observations read (for the detector)."""
    seen: list[_Observation] = []
    first: ExtractResult | None = None
    for i in range(_tries(reading.frame)):
        o = _observe_reading(reading, key, payload_bits, second=i > 0)
        got = _extract_obs(o, key, payload_bits, reading.frame)
        if o is not None:
            seen.append(o)
        if got.status == "found":
            return got, seen
        if first is None or first.status == "too_small":
            first = got
    assert first is not None
    return first, seen


def _extract_obs(
    o: _Observation | None, key: bytes, payload_bits: int, frame: CentreKind = "corner"
) -> ExtractResult:
    pb = _payload_bytes(payload_bits)
    fpb = _fp_decode(payload_bits, frame)
    if o is None:
        return ExtractResult("too_small", None, 0.0, 0, fpb, 0, capacity_bits(payload_bits))
    dec, _ = decode_bits(o.bits, o.rel, o.usable, key, pb)
    n_usable = int(o.usable.sum())
    if dec is None:
        return ExtractResult("not_found", None, 0.0, 0, fpb, n_usable, o.n_code)
    return ExtractResult("found", dec.payload, 1.0 - fpb, dec.bit_errors, fpb, n_usable, o.n_code)


def extract(
    vertices: np.ndarray,
    faces: np.ndarray,
    key: bytes,
    *,
    payload_bits: int = 64,
    frame: CentreKind = "corner-even",
) -> ExtractResult:
    """Blind extraction: decode the payload with the key alone (``frame``: the
    scheme's centre, see :func:`_read_norms`)."""
    _payload_bytes(payload_bits)
    reading = read_mesh(vertices, faces, frame=frame)
    return _read_blind(reading, key, payload_bits)[0]


def binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) >= k), exact."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return math.fsum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def detect_p_value(z: np.ndarray, expected_bits: np.ndarray) -> tuple[float, int]:
    """Known-payload detector: (p-value, agreeing bits) of soft scores against bits.

    Under "not marked with this key and payload" the expected signs s_j are
    keyed, whitened fair coins independent of the mesh and hence of z, so
    P(sum s_j z_j >= T) <= exp(-T^2 / (2 sum z_j^2)) (Hoeffding) and
    P(#agree >= a) = BinomTail(n, a); the smaller of the two, x2 for the union.
    """
    s = expected_bits.astype(np.float64) * 2.0 - 1.0
    n = len(z)
    agree = int(np.count_nonzero(np.sign(z) == s))
    t = float(s @ z)
    sq = float(z @ z)
    hoeff = math.exp(-t * t / (2.0 * sq)) if t > 0 and sq > 0 else 1.0
    return min(1.0, 2.0 * min(hoeff, binomial_tail(n, agree))), agree


def verify(
    vertices: np.ndarray,
    faces: np.ndarray,
    key: bytes,
    expected_payload: bytes,
    *,
    hint: ReaderHint | None = None,
    frame: CentreKind = "corner-even",
) -> VerifyResult:
    """Check that the mesh carries ``expected_payload`` under ``key``.

    First a blind decode (a different payload under this key is a mismatch);
    if that fails, the known-payload detector on the soft bin scores (accepted
    when a random mesh would score this well with probability <= VERIFY_FPR).
    A too-small mesh is reported as such, never as verified.

    ``hint``: the signed :class:`ReaderHint` of this mesh (see :func:`_read_norms`);
    the result's ``reader`` is what the reader found (the hint, where it was taken).
    ``frame``: the scheme's centre (the manifest's scheme says which).
    """
    return verify_reading(read_mesh(vertices, faces, hint=hint, frame=frame), key, expected_payload)


def verify_reading(reading: MeshReading, key: bytes, expected_payload: bytes) -> VerifyResult:
    """:func:`verify` on a mesh already read by :func:`read_mesh` (same result)."""
    payload_bits = 8 * len(expected_payload)
    _payload_bytes(payload_bits)
    seen = reading.reader
    r, obs = _read_blind(reading, key, payload_bits)
    if r.status == "too_small" or not obs:
        return VerifyResult(
            "too_small", None, 0.0, r.false_positive_bound, 0, "none", "mesh too small", seen
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
            seen,
        )
    expected = encode_bits(expected_payload, key)
    # One detector per partition read; the best p-value times the number of
    # partitions (union bound) must pass VERIFY_FPR.
    p, agree, n = 1.0, 0, 0
    for o in obs:
        u = o.usable
        p_o, agree_o = detect_p_value(o.z[u], expected[u])
        if not n or p_o < p:
            p, agree, n = p_o, agree_o, int(u.sum())
    p = min(1.0, p * _tries(reading.frame))
    if p <= VERIFY_FPR:
        return VerifyResult(
            "verified", expected_payload, 1.0 - p, p, n - agree, "correlation", "", seen
        )
    return VerifyResult(
        "not_found",
        None,
        0.0,
        VERIFY_FPR,
        n - agree,
        "none",
        f"{agree}/{n} code bits agree",
        seen,
    )
