"""Verified payload decryption: age ciphertext in, checked plaintext temp file out.

Why a module of its own: the manifest promises an exact plaintext size and
SHA-256, and the importer must never see a file that does not match, nor
leave plaintext on disk when something fails. This module is the one place
that turns "decrypt" into "decrypt, bound, hash, compare, or leave nothing".

The plaintext goes to a private temp file (0600, O_EXCL, hidden name) inside
``dest_dir`` so that the caller can ``os.replace`` it into place atomically on
the same filesystem. Decryption (this thread, in place into lent 1 MiB
buffers), writing and SHA-256 (one thread each) overlap, with a fixed number
of buffers in flight so memory stays constant. The written pages are left in
the page cache on purpose: the format and watermark checks read the file
right after, and dropping the pages behind the writer (sync_file_range +
POSIX_FADV_DONTNEED, tried) made that read-back go to disk, ~2 s per GiB.
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
import stat
import sys
import threading
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; an open file cannot be deleted there
    fcntl = None  # type: ignore[assignment]

from . import age
from .errors import HashMismatch, LocalIOError, SizeMismatch
from .progress import Progress

__all__ = ["decrypt_payload", "sweep_abandoned", "TEMP_PREFIX", "TEMP_SUFFIX"]

TEMP_PREFIX = ".sealport-"
TEMP_SUFFIX = ".part"
_BUFFERS = 8  # plaintext blocks (1 MiB each) in flight between decoder, writer and hasher
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PREALLOCATE = True  # reserve expected_size with fallocate (tests switch it off to hit write())
_fallocate: Any = None  # ctypes function, False when unavailable, None before first use


class _WriteFailed(Exception):
    """Marks an OSError raised while writing plaintext (vs reading ciphertext)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


class _Block:
    """A lent buffer on its way through both workers; back to the pool when both are done."""

    __slots__ = ("buf", "n", "left")

    def __init__(self, buf: bytearray, n: int) -> None:
        self.buf = buf
        self.n = n  # authenticated plaintext bytes at the start of buf
        self.left = 2  # workers (writer, hasher) still to handle it


_Item = _Block | None  # None: end of stream


class _Pipeline:
    """Decrypted blocks go from the decoder (this thread) to a writer and a hasher thread.

    Why three threads on a machine that may have two cores: ``decrypt_into``
    holds the GIL, but ``os.write`` and ``hashlib`` release it for large
    buffers, so writing and hashing run truly in parallel with decryption and
    with each other, and the OS balances the three over the cores. Writing
    is the costly part on fresh page cache (see docs/BENCHMARKS.md), so it
    gets a thread of its own instead of sharing one with the hash.

    Memory is constant: ``_BUFFERS`` plaintext blocks exist, lent to the
    decoder by :meth:`buffer`, handed to both workers at once (neither
    waits for the other) and returned to the pool by whichever finishes it
    last. Both workers always release a buffer, also after a write error or
    an abort, so the decoder can never wait forever for one.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(_BUFFERS):
            self._free.put(bytearray(age.BLOCK_PLAINTEXT))
        self._to_write: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._to_hash: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._h = hashlib.sha256()
        self._release_lock = threading.Lock()
        self._abort = False
        self.write_error: OSError | None = None
        self._worker_error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._write_loop, name="sealport-write", daemon=True),
            threading.Thread(target=self._hash_loop, name="sealport-sha256", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- BlockSink, called by the decoder ------------------------------------------------

    def buffer(self) -> bytearray:
        self._raise_worker_error()
        return self._free.get()

    def emit(self, buf: bytearray, n: int) -> None:
        block = _Block(buf, n)
        self._to_hash.put(block)
        self._to_write.put(block)

    def _release(self, block: _Block) -> None:
        with self._release_lock:
            block.left -= 1
            last = block.left == 0
        if last:
            self._free.put(block.buf)

    # -- workers ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        write = os.write
        while True:
            item = self._to_write.get()
            if item is None:
                return
            if not self._abort and self.write_error is None:
                try:
                    view = memoryview(item.buf)[: item.n]
                    while view:
                        view = view[write(self._fd, view) :]
                except OSError as exc:
                    self.write_error = exc
                except BaseException as exc:  # a bug must not leave the decoder waiting
                    self._worker_error = exc
                    self._abort = True
            self._release(item)

    def _hash_loop(self) -> None:
        update = self._h.update
        while True:
            item = self._to_hash.get()
            if item is None:
                return
            if not self._abort:
                try:
                    update(memoryview(item.buf)[: item.n])  # releases the GIL
                except BaseException as exc:  # pragma: no cover - hashlib does not fail
                    self._worker_error = exc
                    self._abort = True
            self._release(item)

    def _raise_worker_error(self) -> None:
        if self.write_error is not None:
            raise _WriteFailed(self.write_error)
        if self._worker_error is not None:
            raise RuntimeError("sealport payload worker failed") from self._worker_error

    # -- end ---------------------------------------------------------------------------------

    def finish(self) -> str:
        """Wait until every block is written and hashed; the hex digest."""
        self._to_write.put(None)
        self._to_hash.put(None)
        for t in self._threads:
            t.join()
        self._raise_worker_error()
        return self._h.hexdigest()

    def abort(self) -> None:
        """Stop both workers (they drop what is queued) and wait for them."""
        self._abort = True
        self._to_write.put(None)
        self._to_hash.put(None)
        for t in self._threads:
            t.join(timeout=30)


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
            # Held until the fd closes or the process dies: tells sweep_abandoned
            # that this temp file is in use.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd, path
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(dest_dir))


_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}" + re.escape(TEMP_SUFFIX))


def sweep_abandoned(dest_dir: Path) -> list[Path]:
    """Delete plaintext temp files that a killed process left in ``dest_dir``; return them.

    Why: every failure inside :func:`decrypt_payload` deletes its temp file, but a
    process killed outright (SIGKILL, a crashed DCC, power loss) cannot, and the
    half-written plaintext would stay in the cache folder. A live decrypt holds an
    exclusive ``flock`` on its temp file, released by the OS when its process dies,
    so a file whose lock can be taken is abandoned (another DCC's import in progress
    is left alone). On Windows an open file cannot be deleted, which gives the same
    guarantee. Only regular files with our exact temp name are touched.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(dest_dir)
    except OSError:
        return removed
    for name in names:
        if not _TEMP_NAME.fullmatch(name):
            continue
        path = Path(dest_dir) / name
        try:
            if sys.platform == "win32":
                os.unlink(path)  # fails while the owner still has it open
            else:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        continue
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: BlockingIOError
                    os.unlink(path)
                finally:
                    os.close(fd)
        except OSError:
            continue  # in use, vanished, or not ours to delete
        removed.append(path)
    return removed


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
    source: Any = None,
) -> Path:
    """Decrypt ``ciphertext`` into a private temp file in ``dest_dir`` and verify it.

    ``source`` (optional): read the ciphertext from this object (``readinto`` and
    ``close``) instead of opening ``ciphertext``, which then only names it in
    messages; :mod:`sealport.stream_decrypt` passes a reader that follows a
    download in progress. It is closed on return, as the opened file would be.

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
        src = source if source is not None else open(ciphertext, "rb", buffering=0)  # noqa: SIM115
    except OSError as exc:
        raise _read_error(exc, ciphertext) from exc
    tmp: Path | None = None
    fd = -1
    pipe: _Pipeline | None = None
    try:
        try:
            fd, tmp = _create_temp(dest_dir)
            _preallocate(fd, expected_size)
        except OSError as exc:
            raise _write_error(exc, dest_dir) from exc
        pipe = _Pipeline(fd)
        try:
            written = age.decrypt_stream_blocks(
                src, pipe, [identity], progress=progress, max_plaintext=expected_size
            )
            digest = pipe.finish()
        except _WriteFailed as exc:
            raise _write_error(exc.err, dest_dir) from exc.err
        except OSError as exc:
            raise _read_error(exc, ciphertext) from exc
        pipe = None
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
        if pipe is not None:
            pipe.abort()
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass  # already failing; the unlink below is what matters
        if tmp is not None:
            _unlink_quietly(tmp)
