"""Bounded cache of the recipient-independent half of watermarking, per asset version.

Why: every delivery of an asset is marked with its own payload, but parsing the
file (and, with :mod:`sealport.watermark.mark`'s plan, the geometry analysis)
gives the same result every time. On a 100 MB GLB that was most of the
per-delivery cost; cached, a delivery pays for the keyed mark and the write.

Keyed by asset id + version + content SHA-256 (the store's record) + the file's
identity on disk (device, inode, size, mtime): the SHA-256 is checked against
the file once, when an entry is made, so an entry can only ever describe the
bytes the ledger names, and a file replaced behind the store's back is a miss
(and, if its hash no longer matches, is not cached at all). Bounded by total
bytes held and by entry count; least recently used entries go first. Entries
are immutable and shared by concurrent deliveries.

"Bytes held" is each entry's ``nbytes``, which must count everything the entry
keeps alive, not only its numpy arrays: the parsed GLB JSON (``sys.getsizeof``
summed over the document) and the FBX node tree (file bytes plus ~270 B per
node and ~140 B per property, measured with tracemalloc). The size charged
when an entry is put is what its eviction gives back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024**3
DEFAULT_MAX_ENTRIES = 32


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


T = TypeVar("T", bound=Sized)
Key = tuple[str, int, str, int, int, int, int]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file read in 4 MiB blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 * 1024**2):
            h.update(block)
    return h.hexdigest()


class PreparedCache(Generic[T]):
    """LRU of prepared assets, bounded by ``max_bytes`` (sum of ``nbytes``) and ``max_entries``."""

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._items: OrderedDict[Key, T] = OrderedDict()
        self._sizes: dict[Key, int] = {}  # nbytes as charged when put: evictions give back the same
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[Key, threading.Lock] = {}
        self.hits = self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _hit(self, key: Key) -> T | None:
        """The cached entry, marked most recently used (caller holds ``_lock``)."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return hit

    def get(
        self, path: Path, asset_id: str, version: int, sha256: str, build: Callable[[Path], T]
    ) -> T:
        """The prepared form of ``path``, built (once per key, even under concurrency) on a miss."""
        st = os.stat(path)
        key: Key = (
            asset_id,
            int(version),
            sha256,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        )
        with self._lock:
            hit = self._hit(key)
            if hit is not None:
                return hit
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # one builder per key; the others wait and then hit
            with self._lock:
                hit = self._hit(key)
                if hit is not None:
                    return hit
                self.misses += 1
            try:
                value = build(path)
                actual = file_sha256(path)
                if actual != sha256 or os.stat(path).st_mtime_ns != st.st_mtime_ns:
                    log.warning(
                        "asset %s v%s: file on disk (sha256 %s) is not the recorded %s; not cached",
                        asset_id,
                        version,
                        actual,
                        sha256,
                    )
                    return value
                self._put(key, value)
                return value
            finally:
                with self._lock:
                    self._building.pop(key, None)

    def _put(self, key: Key, value: T) -> None:
        size = value.nbytes
        with self._lock:
            if size > self.max_bytes:
                return  # larger than the whole budget: serve it, keep nothing
            if self._items.pop(key, None) is not None:
                # two builders raced (a failed build freed the gate): count it once
                self._bytes -= self._sizes.pop(key)
            self._items[key] = value
            self._sizes[key] = size
            self._bytes += size
            while self._items and (
                self._bytes > self.max_bytes or len(self._items) > self.max_entries
            ):
                gone, _ = self._items.popitem(last=False)
                self._bytes -= self._sizes.pop(gone)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self._bytes = 0
