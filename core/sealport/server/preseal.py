"""Pre-sealed payloads: a delivery's age body written ahead, its header at request time.

Why: in age v1 the payload (a nonce, then STREAM chunks under
``HKDF(file key, nonce, "payload")``) depends only on the random file key, not
on the recipient, and the header for one X25519 recipient has a fixed length
(:func:`sealport.age.header_size`). So the pre-mark pool (:mod:`.premark`)
encrypts each marked copy in the background behind a zero placeholder of that
length, hashes the plaintext for the manifest and deletes the plaintext; the
request only wraps the file key to the device key (fresh ephemeral key, as age
does), writes the header over the placeholder and hashes the whole file once.
The manifest still signs the SHA-256 of the whole payload, so nothing changes
for the client. On a 100 MB GLB this takes encryption (read, encrypt, write,
two hashes) off the artist's wait.

The file key lives only in the pool's memory (:class:`SealedBody`, left out of
its repr), never on disk or in a log, and is zeroed when the copy is discarded
(best effort: Python and ``cryptography`` hold transient copies while deriving
keys). A copy is finished at most once: its placeholder must still be zeros.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from .. import age
from ..errors import SealportError

HEADER_SIZE = age.header_size(1)
"""Bytes of the header for one X25519 recipient: the placeholder in front of a body."""

FileIdentity = tuple[int, int, int, int, int]
"""(device, inode, size, mtime in ns, ctime in ns) of a file: changes when it is
replaced, truncated or written through the filesystem (not on silent media damage,
which the client's payload hash and AEAD checks catch, as for every payload)."""


class PresealError(SealportError):
    """A pre-sealed copy could not be finished safely; the delivery fails, nothing corrupt
    is issued (the header does not fit the placeholder, or the file changed under us)."""

    code = "preseal"

    def __init__(
        self,
        message: str = "The server could not prepare this asset; nothing was delivered. "
        "Try the import again; if it keeps failing tell your pipeline TD.",
        detail: str = "",
    ) -> None:
        super().__init__(message, detail)


@dataclass(eq=False)
class SealedBody:
    """An age body under ``file_key`` at ``path``, behind a :data:`HEADER_SIZE` placeholder.

    ``plain_size``/``plain_sha256`` describe the plaintext it was made from (the
    manifest's file entry); ``identity`` is the file's as written, so a copy changed
    on disk since is not finished (it is re-made on request instead).
    """

    path: Path
    file_key: bytearray = field(repr=False)
    plain_size: int
    plain_sha256: str
    identity: FileIdentity

    @property
    def size(self) -> int:
        return HEADER_SIZE + age.body_size(self.plain_size)

    def intact(self) -> bool:
        """The file is the one written, of the right size, its placeholder unused."""
        if len(self.file_key) != age.FILE_KEY_SIZE or not any(self.file_key):
            return False  # wiped
        try:
            if _identity(os.stat(self.path)) != self.identity or self.identity[2] != self.size:
                return False
            with open(self.path, "rb") as fh:
                return fh.read(HEADER_SIZE) == bytes(HEADER_SIZE)
        except OSError:
            return False

    def wipe(self) -> None:
        """Forget the file key (the copy can no longer be finished)."""
        self.file_key[:] = bytes(len(self.file_key))


class _HashingReader:
    """Hands ``fh``'s bytes to the encoder and hashes them on the way (one read)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def seal_body(plain: Path, out: Path) -> SealedBody:
    """Encrypt ``plain`` under a new random file key into ``out`` (0600, must not exist),
    behind a zero placeholder for the header; the plaintext is hashed in the same read.

    Runs in the pool's background thread; the caller deletes ``plain`` afterwards.
    """
    file_key = bytearray(os.urandom(age.FILE_KEY_SIZE))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=age.READ_CHUNKS * age.ENC_CHUNK_SIZE) as dst:
            with plain.open("rb") as src_fh:
                src = _HashingReader(src_fh)
                dst.write(bytes(HEADER_SIZE))
                age.encrypt_body(cast(BinaryIO, src), dst, bytes(file_key))
        body = SealedBody(out, file_key, src.size, src.sha.hexdigest(), _identity(os.stat(out)))
        if body.identity[2] != body.size:  # pragma: no cover - encrypt_body's own arithmetic
            raise PresealError(detail=f"{out}: {body.identity[2]} bytes, expected {body.size}")
        return body
    except BaseException:
        file_key[:] = bytes(len(file_key))
        out.unlink(missing_ok=True)
        raise


def finish(body: SealedBody, recipient: str) -> tuple[int, str]:
    """Write the header for ``recipient`` over the placeholder of ``body``, in place:
    (payload size, payload SHA-256) of the finished age file.

    Raises PresealError (nothing is finished) if the header would not fit the
    placeholder exactly, or the file is not the one written or was finished before.
    """
    header = age.header_for(bytes(body.file_key), [recipient])
    if len(header) != HEADER_SIZE:
        raise PresealError(
            detail=f"age header is {len(header)} bytes, the placeholder {HEADER_SIZE}"
        )
    with open(body.path, "r+b", buffering=0) as fh:
        if _identity(os.fstat(fh.fileno())) != body.identity:
            raise PresealError(detail=f"{body.path} changed on disk since it was sealed")
        if fh.read(HEADER_SIZE) != bytes(HEADER_SIZE):
            raise PresealError(detail=f"{body.path}: header placeholder is not blank")
        fh.seek(0)
        if fh.write(header) != HEADER_SIZE:
            raise PresealError(detail=f"{body.path}: short header write")
        fh.seek(0)
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        size = os.fstat(fh.fileno()).st_size
    return size, digest


def _identity(st: os.stat_result) -> FileIdentity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
