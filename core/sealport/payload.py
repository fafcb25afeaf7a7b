"""Verified payload decryption: age ciphertext in, checked plaintext temp file out.

Why a module of its own: the manifest promises an exact plaintext size and
SHA-256, and the importer must never see a file that does not match, nor
leave plaintext on disk when something fails. This module is the one place
that turns "decrypt" into "decrypt, bound, hash, compare, or leave nothing".

The plaintext goes to a private temp file (0600, O_EXCL, hidden name) inside
``dest_dir`` so that the caller can ``os.replace`` it into place atomically on
the same filesystem. SHA-256 runs in a second thread fed through a bounded
queue, overlapping with decryption while keeping memory constant.
The temp file is not fsynced: durability is the caller's choice after the
rename, and an import does not need to survive a power cut.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import hmac
import os
import queue
import re
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from . import age
from .errors import HashMismatch, LocalIOError, SizeMismatch
from .progress import Progress

__all__ = ["decrypt_payload", "TEMP_PREFIX", "TEMP_SUFFIX"]

TEMP_PREFIX = ".sealport-"
TEMP_SUFFIX = ".part"
_BATCH = 16  # chunks per queue item (~1 MiB): few lock round-trips per MiB
_QUEUE_DEPTH = 8  # items: bounds hashing backlog to ~8 MiB
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PREALLOCATE = True  # reserve expected_size with fallocate (tests switch it off to hit write())
_fallocate: Any = None  # ctypes function, False when unavailable, None before first use


class _WriteFailed(Exception):
    """Marks an OSError raised while writing plaintext (vs reading ciphertext)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


class _Sink:
    """Unbuffered writer on the temp file descriptor; tags its OSErrors.

    Chunks are gathered and written with one ``writev`` per ~1 MiB (16 age
    chunks): a sixteenth of the system calls, and no copying to join them.
    ``flush`` must be called once decryption has finished.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending: list[bytes] = []
        self._writev = getattr(os, "writev", None)

    def write(self, data: bytes) -> int:
        self._pending.append(data)
        if len(self._pending) >= _BATCH:
            self.flush()
        return len(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            if self._writev is not None and len(pending) > 1:
                total = sum(len(p) for p in pending)
                done = self._writev(self._fd, pending)
                if done == total:
                    return
                pending = [b"".join(pending)[done:]]  # short write: finish the rest
            for data in pending:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise _WriteFailed(exc) from exc


class _Hasher:
    """SHA-256 in a background thread; ``feed`` never holds more than the queue bound."""

    def __init__(self) -> None:
        self._q: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._h = hashlib.sha256()
        self._batch: list[bytes] = []
        self._abort = False
        self._thread = threading.Thread(target=self._run, name="sealport-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if not self._abort:
                for chunk in item:
                    self._h.update(chunk)  # releases the GIL for large buffers

    def feed(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        if len(self._batch) >= _BATCH:
            self._q.put(self._batch)
            self._batch = []

    def finish(self) -> str:
        if self._batch:
            self._q.put(self._batch)
            self._batch = []
        self._q.put(None)
        self._thread.join()
        return self._h.hexdigest()

    def abort(self) -> None:
        self._abort = True
        self._batch = []
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout=30)


def _create_temp(dest_dir: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(16):
        path = dest_dir / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        if sys.platform != "win32":
            os.fchmod(fd, 0o600)  # umask can only narrow it, but be explicit
        return fd, path
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(dest_dir))


def _preallocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes up front (Linux ``fallocate``), when the filesystem can.

    Why: a full disk is then reported before any decryption work, and ext4
    writes into reserved extents are several times faster than allocating
    blocks write by write. glibc's ``posix_fallocate`` would silently fall back
    to writing zeros on filesystems without support (NFS), so we call
    ``fallocate`` itself and skip quietly when it is not supported.
    """
    if not _PREALLOCATE or size <= 0 or not sys.platform.startswith("linux"):
        return
    global _fallocate
    if _fallocate is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.fallocate64
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            _fallocate = fn
        except (OSError, AttributeError):
            _fallocate = False
    if _fallocate is False:
        return
    if _fallocate(fd, 0, 0, size) != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
            return
        raise OSError(err, os.strerror(err))


def _write_error(exc: OSError, dest_dir: Path) -> LocalIOError:
    detail = f"{type(exc).__name__} errno={exc.errno} {exc.strerror} ({exc.filename or dest_dir})"
    if exc.errno in _DISK_FULL:
        return LocalIOError(
            f"The disk is full: Sealport could not write the asset to {dest_dir}. "
            "Free some space (or choose another folder) and try the import again.",
            detail,
        )
    return LocalIOError(
        f"Sealport cannot write to {dest_dir}. Check that the folder exists and that you "
        "can write to it, or choose another folder; if unsure ask your pipeline TD.",
        detail,
    )


def _read_error(exc: OSError, ciphertext: Path) -> LocalIOError:
    return LocalIOError(
        f"Sealport cannot read the downloaded file {ciphertext}. Try the import again; "
        "if it keeps failing tell your pipeline TD.",
        f"{type(exc).__name__} errno={exc.errno} {exc.strerror} ({exc.filename or ciphertext})",
    )


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def decrypt_payload(
    ciphertext: Path,
    dest_dir: Path,
    *,
    identity: str,
    expected_size: int,
    expected_sha256: str,
    progress: Progress | None = None,
) -> Path:
    """Decrypt ``ciphertext`` into a private temp file in ``dest_dir`` and verify it.

    Returns the temp file's path only when the plaintext authenticated, has
    exactly ``expected_size`` bytes and hashes to ``expected_sha256``; the
    caller then moves it into place (``os.replace``, same folder so same
    filesystem). On any failure - age errors, SizeMismatch, HashMismatch,
    Cancelled, KeyboardInterrupt, LocalIOError for disk full / unwritable
    folder / unreadable ciphertext - the temp file is deleted before the
    exception propagates.
    """
    want = expected_sha256.lower()
    if not _SHA256_HEX.fullmatch(want) or expected_size < 0:
        raise ValueError("expected_sha256 must be 64 hex digits and expected_size >= 0")
    try:
        src = open(ciphertext, "rb", buffering=0)  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise _read_error(exc, ciphertext) from exc
    tmp: Path | None = None
    fd = -1
    hasher: _Hasher | None = None
    try:
        try:
            fd, tmp = _create_temp(dest_dir)
            _preallocate(fd, expected_size)
        except OSError as exc:
            raise _write_error(exc, dest_dir) from exc
        hasher = _Hasher()
        sink = _Sink(fd)
        try:
            written = age.decrypt_stream(
                src,
                sink,  # type: ignore[arg-type]  # duck-typed BinaryIO: write() only
                [identity],
                on_plaintext=hasher.feed,
                progress=progress,
                max_plaintext=expected_size,
            )
            sink.flush()
        except _WriteFailed as exc:
            raise _write_error(exc.err, dest_dir) from exc.err
        except OSError as exc:
            raise _read_error(exc, ciphertext) from exc
        digest = hasher.finish()
        hasher = None
        try:
            os.close(fd)
        except OSError as exc:  # delayed write errors (NFS, quota) surface on close
            raise _write_error(exc, dest_dir) from exc
        finally:
            fd = -1
        if written != expected_size:
            raise SizeMismatch(
                "The asset is smaller than its manifest says; nothing was imported. "
                "Try the import again; if it keeps failing tell your pipeline TD.",
                f"plaintext {written} bytes, manifest says {expected_size}",
            )
        if not hmac.compare_digest(digest, want):
            raise HashMismatch(
                "The asset does not match what the studio sealed (checksum mismatch); "
                "nothing was imported. Try the import again; if it keeps failing tell "
                "your pipeline TD.",
                f"plaintext sha256 {digest}, manifest says {want}",
            )
        result = tmp
        tmp = None  # success: keep it
        return result
    finally:
        src.close()
        if hasher is not None:
            hasher.abort()
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass  # already failing; the unlink below is what matters
        if tmp is not None:
            _unlink_quietly(tmp)
