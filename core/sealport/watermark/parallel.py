"""Threaded building blocks of the blind reader, bit for bit equal to the serial ones.

Why: the client checks the mark of a 100 MB GLB (2.8 M vertices, 5.5 M triangles)
while the host's main thread waits for it; on one core the reader front end
(:func:`sealport.watermark.mark._read_norms`) took ~0.5 s, nearly all of it in
numpy calls that release the GIL (gathers with native-size indices, arithmetic,
``np.sort``). Splitting them across threads shortens the wait without changing
a single bit of the result:

- :func:`referenced_and_centre`: the referenced vertices and the frame's centre;
  for scheme v1's :func:`~.geometry.area_centre` one pass over the triangles. The centre is
  summed per block of ``geometry._CENTRE_CHUNK`` triangles exactly as the serial
  code does; threads take contiguous runs of blocks, keep each block's four
  partial sums, and the partials are then added in block order, so the float
  additions happen in the same order as in the serial loop.
- :func:`norms`: element-wise, split by rows.
- :func:`sort_keys`: a sort of int64 keys split by key range (a pivot from a
  sample); the concatenated sorted ranges are the sorted array.

Thread count: ``threads`` argument, else :func:`configure`, else the
``SEALPORT_WATERMARK_THREADS`` environment variable, else ``min(2, os.cpu_count())``.
Meshes below :data:`PARALLEL_MIN_TRIANGLES` run serially by default (thread
hand-off costs more than it saves there). The speed benchmark sets 1 (it reports
one-core speeds).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np

from . import geometry

ENV_THREADS = "SEALPORT_WATERMARK_THREADS"
PARALLEL_MIN_TRIANGLES = 1 << 18
"""Below this many triangles the default is one thread (the work is a few ms)."""
_SORT_SAMPLE = 4096

_configured: int | None = None

T = TypeVar("T")


def default_threads() -> int:
    """``min(2, os.cpu_count())``: the reader is memory bound beyond two threads."""
    return max(1, min(2, os.cpu_count() or 1))


def configure(threads: int | None) -> None:
    """Set the process-wide reader thread count (None: back to env / default)."""
    global _configured
    if threads is not None and threads < 1:
        raise ValueError("threads must be >= 1")
    _configured = threads


def configured_threads() -> int:
    """The thread count in force: :func:`configure`, else the env variable, else default."""
    if _configured is not None:
        return _configured
    raw = os.environ.get(ENV_THREADS, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value >= 1:
            return value
    return default_threads()


def threads_for(n_triangles: int, threads: int | None) -> int:
    """Threads to use for a mesh: the explicit count, else the configured one for
    meshes of at least :data:`PARALLEL_MIN_TRIANGLES` triangles, else 1."""
    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        return threads
    return configured_threads() if n_triangles >= PARALLEL_MIN_TRIANGLES else 1


def run_all(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``tasks`` concurrently (the calling thread takes the first); results in order.

    Why fresh threads and no pool: a thread started by the caller inherits its
    scheduling priority on Linux, so the server's background pre-marking (niced)
    stays niced in its helper threads and a live request's helpers are not; a
    shared pool would give everyone the priority of whoever created it. Starting
    a thread costs ~0.1 ms, against tens of ms of work per call.

    Every task is waited for before an exception is re-raised, so no helper still
    writes into a caller's buffer after this returns.
    """
    if len(tasks) <= 1:
        return [t() for t in tasks]
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)

    def run(i: int) -> None:
        try:
            results[i] = tasks[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            errors[i] = exc

    helpers = [
        threading.Thread(target=run, args=(i,), name="sealport-wm", daemon=True)
        for i in range(1, len(tasks))
    ]
    for h in helpers:
        h.start()
    try:
        run(0)
    finally:
        for h in helpers:
            h.join()
    for err in errors:
        if err is not None:
            raise err
    return results


def _spans(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, nearly equal ranges covering ``range(n)``."""
    cuts = [n * i // parts for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(parts)]


# --- referenced vertices + area-weighted centre: one pass over the triangles ----------
def referenced_and_centre(
    points: np.ndarray, tris: np.ndarray, threads: int, kind: geometry.CentreKind = "corner-even"
) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices the reader counts, geometry.frame_centre(points, tris, kind))``, bit
    for bit: for ``corner``, ``geometry.corner_counts > 0`` (triangles that repeat a
    vertex index left out); for ``area``, ``geometry.referenced``.

    ``corner`` (schemes v2, v3): one ``bincount`` of the corners gives both (no float
    work per triangle; cheaper than the area pass on one core, so not threaded).
    ``area`` (scheme v1): one pass over the triangles in ``threads`` threads.

    The arithmetic per block is :func:`~.geometry.area_centre`'s, in the same
    order (float32 coordinates relative to the first vertex, float64 sums, one
    ``einsum`` per coordinate); only the index cast to ``intp`` is done once per
    block instead of once per gather (same gathered values, and native indices
    let numpy's gather drop the GIL).
    """
    pts = np.asarray(points)
    n = len(pts)
    tris = np.asarray(tris)
    kind = geometry.centre_of(kind)
    if kind == "corner":
        counts = geometry.corner_counts(n, tris)
        return counts > 0, geometry.corner_centre(pts, tris, counts)
    if kind != "area":
        raise ValueError(f"unknown centre kind {kind!r}")
    chunk = geometry._CENTRE_CHUNK
    if not (len(tris) and n):
        return geometry.referenced(n, tris), geometry.area_centre(pts, tris)
    origin = pts[0].astype(np.float64)
    n_blocks = (len(tris) + chunk - 1) // chunk
    parts = max(1, min(threads, n_blocks))
    xyz: list[np.ndarray] = [np.empty(n, np.float32) for _ in range(3)]

    def convert(lo: int, hi: int) -> None:
        for i in range(3):
            xyz[i][lo:hi] = (pts[lo:hi, i] - origin[i]).astype(np.float32)

    run_all([partial(convert, lo, hi) for lo, hi in _spans(n, parts)])
    sums = np.zeros((n_blocks, 4))  # per block: area sum, then the three einsums

    def blocks(b0: int, b1: int) -> np.ndarray:
        used = np.zeros(n, bool)
        for blk in range(b0, b1):
            tt = tris[blk * chunk : (blk + 1) * chunk]
            ii = [np.ascontiguousarray(tt[:, j], dtype=np.intp) for j in range(3)]
            for j in range(3):
                used[ii[j]] = True
            sums[blk] = geometry.block_sums(xyz, ii[0], ii[1], ii[2])
        return used

    masks = run_all([partial(blocks, b0, b1) for b0, b1 in _spans(n_blocks, parts)])
    used = masks[0]
    for m in masks[1:]:
        used |= m
    # The serial loop's additions, in its order: Python float for the total, the
    # float64 elements of ``acc`` for the coordinates.
    total = 0.0
    acc = np.zeros(3)
    for blk in range(n_blocks):
        total += float(sums[blk, 0])
        for k in range(3):
            acc[k] += float(sums[blk, 1 + k])
    if total > 0:
        return used, origin + acc / (3.0 * total)
    return used, np.asarray(pts.mean(axis=0), dtype=np.float64)


# --- norms -------------------------------------------------------------------------------
def norms(points: np.ndarray, centre: np.ndarray, threads: int) -> np.ndarray:
    """:func:`~.geometry.norms` (element-wise, so equal bit for bit), rows split over threads."""
    p = np.asarray(points)
    parts = max(1, min(threads, len(p) // 4096 or 1))
    if parts == 1:
        return geometry.norms(p, centre)
    out = np.empty(len(p))

    def part(lo: int, hi: int) -> None:
        out[lo:hi] = geometry.norms(p[lo:hi], centre)

    run_all([partial(part, lo, hi) for lo, hi in _spans(len(p), parts)])
    return out


# --- sort --------------------------------------------------------------------------------
def sort_keys(keys: np.ndarray, threads: int) -> np.ndarray:
    """``np.sort(keys)`` of a 1-D int64 array, split by key range over ``threads`` threads.

    Pivots are quantiles of a strided sample; each thread gathers the keys of its
    range into its slice of the output and sorts it there. Any pivots give the
    same array (a sorted array of integers is unique), so the result equals
    ``np.sort`` exactly; the sample only balances the work.
    """
    k = np.asarray(keys)
    if k.dtype != np.int64 or k.ndim != 1:
        raise ValueError("sort_keys takes a 1-D int64 array")
    parts = max(1, min(threads, len(k) // 4096 or 1))
    if parts == 1:
        return np.sort(k)
    sample = np.sort(k[:: max(1, len(k) // _SORT_SAMPLE)])
    pivots = np.unique(sample[[len(sample) * i // parts for i in range(1, parts)]])
    # range j holds pivots[j-1] <= key < pivots[j]
    which = np.searchsorted(pivots, k, side="right") if len(pivots) > 1 else None
    if which is None:
        low = k < pivots[0]
        counts = [int(np.count_nonzero(low))]
        counts.append(len(k) - counts[0])
    else:
        counts = np.bincount(which, minlength=len(pivots) + 1).tolist()
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int).tolist()
    out = np.empty_like(k)

    def part(j: int) -> None:
        if which is None:
            mask = low if j == 0 else ~low
        else:
            mask = which == j
        dst = out[starts[j] : starts[j + 1]]
        np.compress(mask, k, out=dst)
        dst.sort()

    run_all([partial(part, j) for j in range(len(counts))])
    return out
