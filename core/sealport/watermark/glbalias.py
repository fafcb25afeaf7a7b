"""Do the POSITION bytes the GLB marker patches belong to those positions alone?

Why: :mod:`.glb` writes a marked copy by patching the POSITION bytes in place.
glTF lets any accessor, sparse section or bufferView (images, extension data)
point at any bytes of the BIN chunk, so a file can make an index accessor, a
normal accessor or an image read the very bytes that hold positions. Patching
them would silently change that other data too (a changed index even makes the
delivery fail its own check). Such a file is still fine to *import* (aliased
reads harm nothing), so the format check accepts it; only the patching writer
must refuse, and the server then delivers the file unmarked with the reason.

What is compared (all in BIN-chunk coordinates): each POSITION accessor to be
patched, as its exact strided elements, against every other accessor (exact
elements), every sparse ``indices``/``values`` section, and every bufferView that
is not used by accessors alone (images, extensions, or nothing) as its whole
byte range. Interleaved attributes in one strided view (POSITION at 0, NORMAL
at 12 of a 24-byte stride) do not share bytes and pass. Two strided ranges with
different strides that overlap at all are counted as shared (conservative;
real exporters never lay views out like that).

A sweep over start offsets keeps the work to the pairs whose ranges overlap;
a file with more than :data:`MAX_PAIRS` such pairs is refused as too tangled
to check (bounded work on hostile input).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from ..formats.glb import COMPONENT_SIZE, TYPE_COUNT

MAX_PAIRS = 1_000_000
"""Overlapping (position, other) range pairs examined at most per file."""


@dataclass(frozen=True, slots=True)
class Region:
    """Bytes ``start + i * stride + [0, elem)`` for ``i < count``, in the BIN chunk."""

    start: int
    end: int
    stride: int
    elem: int
    owner: str
    """What reads these bytes, for the message ("accessor 3", "bufferView 2")."""
    accessor: int = -1
    """The accessor whose elements these are (-1: a sparse section or a whole view)."""

    @property
    def solid(self) -> bool:
        """No gaps between elements: the region is ``[start, end)``."""
        return self.stride <= self.elem

    def hits(self, lo: int, hi: int) -> bool:
        """Does any element intersect ``[lo, hi)``?"""
        if self.solid:
            return self.start < hi and lo < self.end
        count = (self.end - self.start - self.elem) // self.stride + 1
        i = max(0, (lo - self.elem - self.start) // self.stride + 1)
        return i < count and self.start + i * self.stride < hi


def shares_bytes(a: Region, b: Region) -> bool:
    """True if ``a`` and ``b`` may read a common byte (exact unless both are strided
    with different strides, where any overlap of their ranges counts)."""
    if a.end <= b.start or b.end <= a.start:
        return False
    if a.solid:
        return b.hits(a.start, a.end)
    if b.solid:
        return a.hits(b.start, b.end)
    if a.stride == b.stride:
        d = (b.start - a.start) % a.stride
        return d < a.elem or a.stride - d < b.elem
    return True


def _view_range(view: dict[str, Any]) -> tuple[int, int]:
    off = int(view.get("byteOffset", 0))
    return off, off + int(view["byteLength"])


def accessor_region(doc: dict[str, Any], index: int) -> Region | None:
    """The BIN-chunk bytes of accessor ``index`` (None: not in buffer 0, or empty)."""
    acc = doc["accessors"][index]
    if "bufferView" not in acc or not acc["count"]:
        return None
    view = doc["bufferViews"][acc["bufferView"]]
    if view["buffer"] != 0:
        return None
    elem = COMPONENT_SIZE[acc["componentType"]] * TYPE_COUNT[acc["type"]]
    stride = int(view.get("byteStride", elem))
    start = _view_range(view)[0] + int(acc.get("byteOffset", 0))
    end = start + (int(acc["count"]) - 1) * stride + elem
    return Region(start, end, stride, elem, f"accessor {index}", index)


def _other_regions(doc: dict[str, Any]) -> list[Region]:
    """Every byte range of buffer 0 that something other than a POSITION patch reads."""
    views = doc.get("bufferViews", [])
    accessors = doc.get("accessors", [])
    out: list[Region] = []
    by_accessors: set[int] = set()
    skip: set[int] = set()  # dicts whose "bufferView" is accounted for exactly
    for i, acc in enumerate(accessors):
        skip.add(id(acc))
        if "bufferView" in acc:
            by_accessors.add(acc["bufferView"])
            region = accessor_region(doc, i)
            if region is not None:
                out.append(region)
        sparse = acc.get("sparse")
        if isinstance(sparse, dict):
            n = int(sparse["count"])
            sizes = {
                "indices": COMPONENT_SIZE[sparse["indices"]["componentType"]],
                "values": COMPONENT_SIZE[acc["componentType"]] * TYPE_COUNT[acc["type"]],
            }
            for part, size in sizes.items():
                section = sparse[part]
                skip.add(id(section))
                v = section["bufferView"]
                by_accessors.add(v)
                if views[v]["buffer"] == 0 and n:
                    lo = _view_range(views[v])[0] + int(section.get("byteOffset", 0))
                    out.append(Region(lo, lo + n * size, size, size, f"accessor {i} sparse {part}"))
    elsewhere = _views_named_outside_accessors(doc, skip)
    for v, view in enumerate(views):
        if view["buffer"] == 0 and (v in elsewhere or v not in by_accessors):
            lo, hi = _view_range(view)
            if hi > lo:
                out.append(Region(lo, hi, hi - lo, hi - lo, f"bufferView {v}"))
    return out


def _views_named_outside_accessors(doc: dict[str, Any], skip: set[int]) -> set[int]:
    """bufferView indices named by images, extensions or anything but accessors."""
    found: set[int] = set()
    stack: list[Any] = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            ref = value.get("bufferView")
            if id(value) not in skip and isinstance(ref, int) and not isinstance(ref, bool):
                found.add(ref)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def aliasing_problem(doc: dict[str, Any], positions: list[int]) -> str | None:
    """Why the POSITION accessors ``positions`` cannot be patched in place, or None.

    ``doc`` must have passed :func:`sealport.formats.glb.read_document` (indices
    and types checked); only buffer 0 (the BIN chunk) is considered.
    """
    mine = sorted(
        (r for i in positions if (r := accessor_region(doc, i)) is not None),
        key=lambda r: r.start,
    )
    if not mine:
        return None
    others = sorted(_other_regions(doc), key=lambda r: r.start)
    starts = [r.start for r in others]
    active: list[tuple[int, int]] = []  # (end, index into others) of ranges begun earlier
    j = pairs = 0
    for region in mine:
        while j < len(others) and others[j].start < region.start:
            heapq.heappush(active, (others[j].end, j))
            j += 1
        while active and active[0][0] <= region.start:
            heapq.heappop(active)
        later = range(j, bisect_left(starts, region.end, lo=j))
        for k in [k for _, k in active] + list(later):
            other = others[k]
            if other.accessor == region.accessor:
                continue
            pairs += 1
            if pairs > MAX_PAIRS:
                return "too many of its accessors overlap to check which bytes they share"
            if shares_bytes(region, other):
                return (
                    f"the vertex positions of {region.owner} share bytes with "
                    f"{other.owner}, which would change too"
                )
    return None
