"""Pre-marked copies: the next delivery of an asset is watermarked before it is asked for.

Why: marking a delivery is per recipient only through its delivery id (the
payload is ``HMAC(secret, delivery_id)``, see :mod:`.watermarking`), and the id
is a random name the server picks. So the server can pick the id of the *next*
delivery of an asset ahead of time, mark and check a copy in the background,
and encrypt it too, and hand that copy to the next request. The encryption can
be done ahead because an age payload depends only on its random file key, not on
the recipient (:mod:`.preseal`): the pool writes the body behind a blank
placeholder for the one-recipient header and keeps the file key in memory; the
request wraps that key to the device, writes the header in place, hashes the
payload and signs the manifest. On a 100 MB GLB that takes marking and its
read-back check (~1.1 s of CPU) and the encryption (~0.2 s) off the artist's
wait. Every copy is still marked for exactly one delivery: a pooled copy is
taken by one request and deleted after sealing (its file key forgotten); the
ledger records the delivery (user, device, time) under the id the copy was
marked with. A copy changed on disk since the pool wrote it is not used; that
delivery is marked and encrypted on request.

What is kept and where: at most ``per_asset`` copies per asset version
(default 1), for the most recently delivered ``max_assets`` versions and at
most ``max_bytes`` in total, in ``<data>/deliveries/.premarked/`` (0700, files
0600, set by the pool: the marker writes with the umask). On disk a pooled copy
is ciphertext only (``<id>/payload.age``): the marked plaintext is deleted once it
is checked and encrypted, and the file key never leaves memory. A copy exists only on
the server until it is issued; the folder is emptied when the pool starts, so ids
that were never issued never reach the ledger. Only copies of the file whose
SHA-256 the ledger records are pooled, and only assets that have been delivered once are
pre-marked (a catalogue of never-requested assets costs nothing), and only
copies whose mark was verified by the read-back check are pooled: an asset
that cannot be marked (too small, unsupported file) is delivered on request as
before. Refills (marking, checking, encrypting) run on one background thread that only gets CPU time nothing
else wants (Linux ``SCHED_IDLE``, else niceness 19), so they yield to live
requests and, where the server shares a machine with a DCC, to the artist's import.

With watermarking off the same pool runs without a marker
(:func:`.sealing.presealed_pool`): each copy is the stored file encrypted ahead,
pooled only if the bytes it encrypted hash to the ledger's SHA-256.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any, TypeVar

from ..paths import ensure_private_dir
from .preseal import SealedBody, seal_body
from .wm_cache import file_sha256

log = logging.getLogger(__name__)

DEFAULT_PER_ASSET = 1
DEFAULT_MAX_ASSETS = 16
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MIN_FREE = 1024**3
"""Free disk a refill leaves for live deliveries (it skips, logged, when short)."""
REFILL_NICENESS = 19
PAYLOAD_NAME = "payload.age"
"""The pooled file in a copy's folder: the encrypted body behind a header placeholder."""
STATS_KEPT = 1000
"""Refills whose timings are kept (the latest): a long-running server must not grow."""

AssetKey = tuple[str, int, str]
"""(asset id, version, SHA-256 of the stored file)."""

FileIdentity = tuple[int, int, int, int]
"""(device, inode, size, mtime in ns) of a file."""

MarkFn = Callable[[Path, Path, dict[str, Any]], tuple[Path, dict[str, Any]]]
"""(asset source, private work dir, delivery info naming the id) -> (file, manifest watermark)."""


@dataclass(frozen=True)
class Premarked:
    """A copy marked for ``delivery_id`` and encrypted ahead (:mod:`.preseal`).

    The taker writes the recipient's header into ``path`` (:func:`.preseal.finish`),
    moves the file out and then calls ``discard``. The file key is in ``body`` only
    (memory; not in the repr).
    """

    delivery_id: str
    body: SealedBody
    watermark: dict[str, Any] | None
    """The manifest's watermark object; None in a pool without marking (watermarking off)."""

    @property
    def path(self) -> Path:
        return self.body.path

    @property
    def size(self) -> int:
        """Bytes on disk: the finished payload's size."""
        return self.body.size

    def discard(self) -> None:
        """Delete the copy's folder and forget its file key."""
        self.body.wipe()
        shutil.rmtree(self.path.parent, ignore_errors=True)


@dataclass
class RefillStats:
    """What the background refills cost (for benchmarks and the server log)."""

    wall: deque[float]
    cpu: deque[float]
    spans: deque[tuple[float, float]]
    """(start, end) of each refill, wall-clock epoch seconds."""


def asset_key(info: dict[str, Any]) -> AssetKey | None:
    sha = info.get("sha256")
    if not isinstance(sha, str) or "asset_id" not in info:
        return None
    return str(info["asset_id"]), int(info.get("version", 0)), sha


class PremarkPool:
    """Pre-marked copies per asset version, refilled in the background after each delivery.

    ``mark`` None: a pool for watermarking off; each copy is the stored file itself,
    encrypted ahead (``watermark`` None), so such deliveries skip encryption too.
    """

    def __init__(
        self,
        root: Path,
        mark: MarkFn | None,
        new_id: Callable[[], str],
        *,
        per_asset: int = DEFAULT_PER_ASSET,
        max_assets: int = DEFAULT_MAX_ASSETS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        prepare: Callable[[Path, dict[str, Any]], object] | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE,
    ) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self._mark = mark
        self._prepare = prepare
        self._new_id = new_id
        self.per_asset = per_asset
        self.max_assets = max_assets
        self.max_bytes = max_bytes
        self._copies: OrderedDict[AssetKey, list[Premarked]] = OrderedDict()
        self._unpoolable: set[AssetKey] = set()
        self._verified: dict[AssetKey, FileIdentity] = {}
        """Source files whose SHA-256 was checked against the key, by identity on disk."""
        self._queued: set[AssetKey] = set()
        self._lock = threading.Lock()
        self._jobs: Queue[tuple[AssetKey, Path, dict[str, Any]] | None] = Queue()
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._closed = threading.Event()
        self.stats = RefillStats(
            wall=deque(maxlen=STATS_KEPT),
            cpu=deque(maxlen=STATS_KEPT),
            spans=deque(maxlen=STATS_KEPT),
        )
        shutil.rmtree(self.root, ignore_errors=True)  # never-issued ids from a previous run

    # --- requests ---------------------------------------------------------------------
    def take(self, info: dict[str, Any]) -> Premarked | None:
        """A pooled copy of this asset version for the delivery being sealed, if one is ready."""
        key = asset_key(info)
        if key is None:
            return None
        with self._lock:
            copies = self._copies.get(key)
            if not copies:
                return None
            self._copies.move_to_end(key)
            return copies.pop(0)

    def refill(self, src: Path, info: dict[str, Any]) -> None:
        """Queue marking copies of this asset version until ``per_asset`` are ready."""
        key = asset_key(info)
        if key is None or self.per_asset <= 0 or self._closed.is_set():
            return
        with self._lock:
            if key in self._unpoolable or key in self._queued:
                return
            if len(self._copies.get(key, ())) >= self.per_asset:
                return
            self._queued.add(key)
            self._idle.clear()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._run, name="sealport-premark", daemon=True
                )
                self._worker.start()
        self._jobs.put((key, Path(src), dict(info)))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no refill is queued or running (tests, benchmarks, shutdown)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the worker after the job it is on (queued ones are dropped); delete every copy."""
        self._closed.set()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(timeout=60)
        with self._lock:
            copies = [p for c in self._copies.values() for p in c]
            self._copies.clear()
        for p in copies:
            p.discard()  # forgets the file keys too
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def marking(self) -> bool:
        """Whether copies are watermarked (else: the stored file, encrypted ahead)."""
        return self._mark is not None

    def __len__(self) -> int:
        with self._lock:
            return sum(len(c) for c in self._copies.values())

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(p.size for c in self._copies.values() for p in c)

    # --- the background worker --------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._closed.is_set():
                return
            key, src, info = job
            try:
                self._fill(key, src, info)
            except Exception:  # a bug must not kill the worker; requests mark on demand
                log.exception("pre-marking asset %s v%s failed", key[0], key[1])
            finally:
                with self._lock:
                    self._queued.discard(key)
                    if not self._queued:
                        self._idle.set()

    def _fill(self, key: AssetKey, src: Path, info: dict[str, Any]) -> None:
        if self._prepare is not None:
            # At normal priority: building the parsed asset holds the cache's per-asset
            # gate, which a live request for the same asset may be waiting on.
            self._prepare(src, info)
        while True:
            with self._lock:
                if len(self._copies.get(key, ())) >= self.per_asset:
                    return
            before = _identity(src)
            if not self._room_for(before[2]):
                return  # tried again after the next delivery; live sealing keeps the space
            delivery_id = self._new_id()
            work = ensure_private_dir(self.root) / delivery_id
            work.mkdir(mode=0o700)
            start, wall = time.time(), time.perf_counter()
            cpu: list[float] = []  # CPU seconds of the idle-priority steps that ran
            try:  # whatever fails from here on, the work folder goes with it
                made: tuple[SealedBody, dict[str, Any] | None] | None
                if self._mark is None:
                    made = self._sealed_source(key, src, work, cpu)
                else:
                    made = self._marked_copy(key, src, info, work, delivery_id, before, cpu)
                if made is None:
                    return
                copy = Premarked(delivery_id, *made)
                if self._closed.is_set():
                    copy.discard()
                    return
                if copy.size > self.max_bytes:  # could never be kept: do not mark it again
                    copy.discard()
                    with self._lock:
                        self._unpoolable.add(key)
                    log.info("asset %s v%s: a copy exceeds the pool's bytes", key[0], key[1])
                    return
                if not self._keep(key, copy):
                    return  # evicted at once (bounds): marking again would loop
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            finally:
                if cpu:  # marking ran (and sealing, unless it returned early)
                    self.stats.wall.append(time.perf_counter() - wall)
                    self.stats.cpu.append(sum(cpu))
                    self.stats.spans.append((start, time.time()))

    def _marked_copy(
        self,
        key: AssetKey,
        src: Path,
        info: dict[str, Any],
        work: Path,
        delivery_id: str,
        before: FileIdentity,
        cpu: list[float],
    ) -> tuple[SealedBody, dict[str, Any]] | None:
        """Mark a copy in ``work`` (the marker's read-back check included), then encrypt
        it and delete the plaintext: (body, manifest watermark), or None: not pooled."""
        assert self._mark is not None
        marking = {**info, "delivery_id": delivery_id}
        (path, entry), spent = _at_idle_priority(self._mark, src, work, marking)
        cpu.append(spent)
        if entry.get("status") == "unmarked" or path.parent != work:
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self._unpoolable.add(key)  # delivered on request, as before
            return None
        if not self._is_recorded_file(key, src, before):
            shutil.rmtree(work, ignore_errors=True)
            _log_not_recorded(key)
            return None
        for other in work.iterdir():  # e.g. a quick mark the marker re-embedded
            if other != path:
                if other.is_dir():
                    shutil.rmtree(other, ignore_errors=True)
                else:
                    other.unlink(missing_ok=True)
        if sys.platform != "win32":  # the marker writes with the umask
            os.chmod(path, 0o600)  # private while it exists
        # The marker's read-back check passed above; now the copy is encrypted (still
        # background work: idle priority) and the plaintext deleted.
        body, spent = _at_idle_priority(seal_body, path, work / PAYLOAD_NAME)
        cpu.append(spent)
        path.unlink()
        return body, entry

    def _sealed_source(
        self, key: AssetKey, src: Path, work: Path, cpu: list[float]
    ) -> tuple[SealedBody, None] | None:
        """No watermarking: the stored file itself, encrypted ahead (no plaintext copy).
        Pooled only if the bytes encrypted hash to the recorded SHA-256 (taken in the
        same read)."""
        body, spent = _at_idle_priority(seal_body, src, work / PAYLOAD_NAME)
        cpu.append(spent)
        if body.plain_sha256 != key[2]:
            body.wipe()
            shutil.rmtree(work, ignore_errors=True)
            _log_not_recorded(key)
            return None
        return body, None

    def _room_for(self, size: int) -> bool:
        """Enough free disk for a marked copy and its encryption (~2x the asset until the
        plaintext is deleted) plus ``min_free_bytes`` left for live sealing and the ledger."""
        free = shutil.disk_usage(ensure_private_dir(self.root)).free
        if free >= 2 * size + self.min_free_bytes:
            return True
        log.warning(
            "not pre-marking: %d MiB free in %s, a copy needs %d MiB and %d MiB stay free",
            free // 2**20,
            self.root,
            2 * size // 2**20,
            self.min_free_bytes // 2**20,
        )
        return False

    def _is_recorded_file(self, key: AssetKey, src: Path, before: FileIdentity) -> bool:
        """``src`` did not change while it was marked and hashes to the key's SHA-256.

        Why: copies are keyed by the ledger's hash, and a store file replaced behind the
        ledger must not be pooled under it (the copy could be served after the file was
        put back). Hashed once per file identity, as the prepared cache does.
        """
        try:
            now = _identity(src)
            if now != before:
                return False
            with self._lock:
                if self._verified.get(key) == now:
                    return True
            if file_sha256(src) != key[2]:
                return False
        except OSError:  # gone or unreadable now: not a file we can vouch for
            return False
        with self._lock:
            self._verified[key] = now
        return True

    def _keep(self, key: AssetKey, copy: Premarked) -> bool:
        """Pool ``copy``, evicting the least recently delivered; False if it went too."""
        dropped: list[Premarked] = []
        with self._lock:
            self._copies.setdefault(key, []).append(copy)
            self._copies.move_to_end(key)
            total = sum(p.size for c in self._copies.values() for p in c)
            while self._copies and (total > self.max_bytes or len(self._copies) > self.max_assets):
                old, gone = self._copies.popitem(last=False)
                self._verified.pop(old, None)
                dropped.extend(gone)
                total -= sum(p.size for p in gone)
        for p in dropped:
            p.discard()
        return not any(p is copy for p in dropped)


def _log_not_recorded(key: AssetKey) -> None:
    log.warning(
        "asset %s v%s: the stored file is not the recorded one (SHA-256); not pre-marked",
        key[0],
        key[1],
    )


def _identity(path: Path) -> FileIdentity:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


T = TypeVar("T")


def _at_idle_priority(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``fn(*args)`` on a new thread at the lowest CPU priority: (its result, its CPU seconds).

    A thread of its own because Linux cannot undo ``SCHED_IDLE`` for an unprivileged
    thread; the pool's worker stays at normal priority for the cache builds above.
    """
    out: list[Any] = []

    def run() -> None:
        _lower_priority()
        try:
            out.append((True, fn(*args), time.thread_time()))
        except BaseException as exc:  # re-raised on the worker
            out.append((False, exc, time.thread_time()))

    t = threading.Thread(target=run, name="sealport-premark-mark", daemon=True)
    t.start()
    t.join()
    ok, value, cpu = out[0]
    if not ok:
        raise value
    return value, cpu


def _lower_priority() -> None:
    """Best effort: this thread (and the helper threads it starts) runs only on CPU time
    nothing else wants: Linux ``SCHED_IDLE``, else the highest niceness we may set.

    Why: on a machine that also runs an artist's DCC (the reference server on a
    workstation) a refill at normal priority took ~1 s of CPU from Blender's importer.
    A refill starved for long only means the next request marks on demand, as before.
    """
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, REFILL_NICENESS)
    except (AttributeError, OSError):
        pass
