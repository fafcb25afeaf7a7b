"""Download and decrypt at the same time: the age decoder follows the ciphertext file.

Why: done one after the other, a 100 MB delivery waits for the whole download and
then spends ~0.1-0.2 s (more on a busy machine) decrypting, writing and hashing
the plaintext. The download itself is mostly waiting on the socket and work that
releases the GIL (TLS, SHA-256, write), so a second thread can decrypt the bytes
already on disk while the rest arrives; what is left after the last byte is the
decoder catching up with the final blocks (measured on a 100 MB GLB: ~0.1-0.3 s of
decrypt after the download became ~0.005-0.03 s). It pays where the client has a
spare core while bytes arrive (a real network, a workstation); where the download
already keeps every core busy (2 cores, server on the same machine) the download
got slower by about what the tail lost (tests/bench/bench_client_path.py).

Nothing about the guarantees changes, because both halves are the unchanged
functions: :func:`sealport.transport.download_payload` still writes the
ciphertext file, resumes with Range after a dropped connection, bounds the size
by the manifest and checks the ciphertext SHA-256; :func:`sealport.payload.decrypt_payload`
still writes the plaintext only to its private 0600 temp file, bounds it, hashes
it and deletes it on any failure. The decoder reads the ciphertext file through
:class:`_Follower`, which hands out only bytes the download has declared final
(:class:`~sealport.transport.DownloadObserver`) and blocks until more arrive.

Failure order is the sequential one: a download error (network, size, ciphertext
hash, cancel) wins over anything the decoder saw, and the decoder's own error is
raised only after the ciphertext verified. If the server restarts the body from
byte 0 (it ignored our Range) the bytes the decoder used are void: it is stopped
and the verified file is decrypted again afterwards, as before. Memory stays
constant (the decoder's fixed buffers; the follower reads into them).

Cancel: the download's progress calls raise Cancelled as before; the decoder
thread checks the same flag. Progress callbacks run on the calling thread only:
the decoder's position is relayed as the "decrypt" stage once the download is
done.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import Cancelled
from .payload import decrypt_payload
from .progress import Progress

ENABLED = hasattr(os, "pread") and os.environ.get("SEALPORT_STREAM_DECRYPT", "1") != "0"
"""False: download, then decrypt (the sequential path; benchmarks compare both; set
``SEALPORT_STREAM_DECRYPT=0`` to choose it). Off where there is no ``pread``
(Windows): there a reader's open handle would also make the download's unlink of a
damaged file fail, so Windows keeps the sequential path."""
_RELAY_SECONDS = 0.05


class _Stopped(Exception):
    """The download failed or was cancelled: the decoder stops (not an OSError, so
    decrypt_payload does not call it a read error; it never reaches the caller)."""


class _Restarted(Exception):
    """The download started over from byte 0: the bytes decrypted so far are void."""


class _Feed:
    """What the download has made final, shared with the decoder thread (a DownloadObserver)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.size = 0
        self.generation = 0
        self.finished = False
        self.stopped = False

    # -- DownloadObserver (download thread) ----------------------------------------------
    def reset(self) -> None:
        with self._cond:
            self.generation += 1
            self.size = 0
            self._cond.notify_all()

    def committed(self, size: int) -> None:
        with self._cond:
            self.size = size
            self._cond.notify_all()

    # -- end of the download -------------------------------------------------------------
    def finish(self) -> None:
        with self._cond:
            self.finished = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    # -- decoder thread ------------------------------------------------------------------
    def wait_beyond(self, pos: int, generation: int) -> int:
        """Bytes final beyond ``pos`` (0: end of file); raises if stopped or restarted."""
        with self._cond:
            while True:
                if self.stopped:
                    raise _Stopped()
                if self.generation != generation:
                    raise _Restarted()
                if self.size > pos:
                    return self.size - pos
                if self.finished:
                    return 0
                self._cond.wait()

    def current_generation(self) -> int:
        with self._cond:
            return self.generation

    def same_generation(self, generation: int) -> bool:
        with self._cond:
            return self.generation == generation


class _Follower:
    """Read-only view of the ciphertext file that never reads past the final bytes.

    The file is opened on first read (the download creates it); every read is a
    ``pread`` at our own offset, re-checked against the feed's generation after
    it returns, so bytes from before a restart are never used. A restart before
    the first byte was used (every fresh download announces one) is simply followed.
    """

    def __init__(self, path: Path, feed: _Feed) -> None:
        self._path = path
        self._feed = feed
        self._generation = feed.generation
        self._fd = -1
        self._pos = 0

    def readinto(self, mv: memoryview) -> int:
        while True:
            try:
                avail = self._feed.wait_beyond(self._pos, self._generation)
                if avail == 0 or not len(mv):
                    return 0
                if self._fd < 0:
                    self._fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                n = _pread_into(self._fd, mv[: min(len(mv), avail)], self._pos)
                if not self._feed.same_generation(self._generation):
                    raise _Restarted()
            except _Restarted:
                if self._pos:
                    raise  # bytes of the old body were used: the caller decrypts again
                # Nothing used yet (the download's first start): follow the new body.
                self._generation = self._feed.current_generation()
                self.close()
                continue
            if n <= 0:  # the file is shorter than the download said: not ours to guess
                raise _Stopped()
            self._pos += n
            return n

    @property
    def generation(self) -> int:
        """The download generation whose bytes this reader handed out."""
        return self._generation

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _pread_into(fd: int, mv: memoryview, pos: int) -> int:
    """``pread`` into ``mv`` (no copy where ``os.preadv`` exists)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [mv], pos)
    data = os.pread(fd, len(mv), pos)
    mv[: len(data)] = data
    return len(data)


class _DecoderProgress(Progress):
    """The decoder thread's progress: records its position and honours cancel, but
    never calls the caller's callback (that stays on the caller's thread)."""

    def __init__(self, outer: Progress, feed: _Feed) -> None:
        super().__init__()
        self._outer = outer
        self._feed = feed
        self.done = 0

    def update(self, stage: str, done: int, total: int = 0) -> None:  # noqa: ARG002
        if self._outer.cancelled or self._feed.stopped:
            raise Cancelled()
        self.done = done


def download_and_decrypt(
    download: Callable[[Any], Path],
    ciphertext: Path,
    dest_dir: Path,
    *,
    identity: str,
    payload_size: int,
    expected_size: int,
    expected_sha256: str,
    progress: Progress,
    on_downloaded: Callable[[], None] | None = None,
) -> Path:
    """Run ``download(observer)`` (which writes and verifies ``ciphertext``) while a
    thread decrypts what has arrived; the verified plaintext temp file in ``dest_dir``.

    ``on_downloaded`` runs once the ciphertext verified, before the wait for the
    decoder (the importer writes its audit record there). Raises what the
    sequential download-then-decrypt would raise; no temp file is left on failure.
    """
    args: dict[str, Any] = {
        "identity": identity,
        "expected_size": expected_size,
        "expected_sha256": expected_sha256,
    }
    if not ENABLED:
        download(None)
        if on_downloaded is not None:
            on_downloaded()
        return decrypt_payload(ciphertext, dest_dir, progress=progress, **args)
    feed = _Feed()
    quiet = _DecoderProgress(progress, feed)
    follower = _Follower(ciphertext, feed)
    outcome: dict[str, Any] = {}

    def decode() -> None:
        try:
            outcome["temp"] = decrypt_payload(
                ciphertext, dest_dir, progress=quiet, source=follower, **args
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=decode, name="sealport-decrypt", daemon=True)
    worker.start()
    try:
        download(feed)
        feed.finish()
        if on_downloaded is not None:
            on_downloaded()
        while True:  # relay the decoder's progress on this thread; cancel stops it
            progress.update("decrypt", min(quiet.done, payload_size), payload_size)
            worker.join(_RELAY_SECONDS)
            if not worker.is_alive():
                break
        progress.check()
    except BaseException:
        feed.stop()
        worker.join()
        _discard(outcome)
        raise
    error = outcome.get("error")
    if isinstance(error, (_Restarted, _Stopped)) or (
        error is not None and not feed.same_generation(follower.generation)
    ):
        # The server ignored a Range (or the file was not what the download said), or
        # the decoder failed on bytes a restart later replaced: decrypt the verified
        # file, as the sequential path does.
        return decrypt_payload(ciphertext, dest_dir, progress=progress, **args)
    if error is not None:
        raise error
    return Path(outcome["temp"])


def _discard(outcome: dict[str, Any]) -> None:
    temp = outcome.pop("temp", None)
    if temp is not None:
        Path(temp).unlink(missing_ok=True)
