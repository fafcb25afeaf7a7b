"""age-encryption.org/v1 with X25519 recipients, on ``cryptography`` primitives.

Why our own codec: the payload is the last untrusted input before an asset
reaches the artist's scene, so we want a streaming, constant-memory decoder
that never releases unauthenticated plaintext, reports typed errors, bounds
the output size, and can be cancelled - without pulling a native extension
into every DCC's bundled Python. The primitives (X25519, HKDF-SHA256,
HMAC-SHA256, ChaCha20-Poly1305) all come from ``cryptography``; this module
only implements the framing, as strictly as the reference implementation
(canonical base64, 64-column stanza bodies, no empty final chunk, no trailing
data, no low-order shares, 16-byte file keys, strict ASCII armor).

Spec: https://age-encryption.org/v1 . Conformance is checked against the
C2SP CCTV vectors (``tests/test_age_testkit.py``) and the ``age`` CLI.

Scrypt (passphrase) and post-quantum hybrid (ML-KEM) recipients, and plugin
identities, are recognised and reported as :class:`AgeUnsupported`, never as
success.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

import bech32
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import PayloadError, SizeMismatch
from .progress import Progress

__all__ = [
    "AgeArmorError",
    "AgeError",
    "AgeHeaderError",
    "AgeHmacError",
    "AgeKeyError",
    "AgeNoIdentityMatch",
    "AgePayloadError",
    "AgeUnsupported",
    "BLOCK_PLAINTEXT",
    "BlockSink",
    "body_size",
    "decrypt_stream",
    "decrypt_stream_blocks",
    "encrypt_body",
    "encrypt_stream",
    "generate_identity",
    "header_for",
    "header_size",
    "identity_to_recipient",
    "parse_identity",
    "parse_recipient",
]

# --- errors ----------------------------------------------------------------------------

_DAMAGED = (
    "The asset download is damaged or was tampered with; nothing was imported. "
    "Try the import again; if it keeps failing tell your pipeline TD."
)


class AgeError(PayloadError):
    """Base of every age failure. ``detail`` says exactly what the decoder rejected."""

    code = "age"
    default_message = _DAMAGED

    def __init__(self, message: str = "", detail: str = "") -> None:
        super().__init__(message or self.default_message, detail)


class AgeHeaderError(AgeError):
    """The header is malformed (intro, stanza syntax, base64, share, file key size)."""

    code = "age_header"


class AgeNoIdentityMatch(AgeError):
    """No stanza could be opened with the given identities: encrypted for someone else."""

    code = "age_no_match"
    default_message = (
        "This asset was not encrypted for this workstation's key, so it cannot be opened "
        "here; nothing was imported. Sign in again on this workstation and retry; if it "
        "keeps failing tell your pipeline TD."
    )


class AgeHmacError(AgeError):
    """The header MAC does not verify: the header was altered after encryption."""

    code = "age_hmac"


class AgePayloadError(AgeError):
    """A payload chunk failed authentication, is missing, or data trails the end."""

    code = "age_payload"


class AgeArmorError(AgeError):
    """The ASCII armor (PEM 'AGE ENCRYPTED FILE') is malformed."""

    code = "age_armor"


class AgeUnsupported(AgeError):
    """Recognised but unsupported: scrypt passphrases, post-quantum hybrid keys, plugins."""

    code = "age_unsupported"
    default_message = (
        "This asset uses a kind of encryption Sealport does not support (for example a "
        "passphrase or a post-quantum key); nothing was imported. Tell your pipeline TD."
    )


class AgeKeyError(AgeError):
    """An identity or recipient string is not a valid age X25519 key."""

    code = "age_key"
    default_message = (
        "This workstation's encryption key is not valid, so the asset cannot be opened; "
        "nothing was imported. Sign in again to register a new key, or tell your pipeline TD."
    )


class _ProgressLike(Protocol):
    def update(self, stage: str, done: int, total: int = 0) -> None: ...


# --- format constants ------------------------------------------------------------------

INTRO = b"age-encryption.org/v1\n"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
FILE_KEY_SIZE = 16
NONCE_SIZE = 16
STANZA_LINE_BYTES = 48  # 64 base64 columns
MAX_HEADER_SIZE = 1 << 20  # bounds memory spent on a hostile header
MAX_LINE = 64 * 1024
# Reads of 16 chunks (~1 MiB): few syscalls, little Python per byte. Plaintext goes out
# in blocks of 16 chunks (1 MiB). (256 KiB reads, so that the decoder releases the GIL
# more often for sealport.payload's worker threads, measured no faster and cost ~5% more
# CPU.)
READ_CHUNKS = 16
CHUNKS_PER_BLOCK = 16
BLOCK_PLAINTEXT = CHUNKS_PER_BLOCK * CHUNK_SIZE  # plaintext bytes one block can hold

X25519_LABEL = b"age-encryption.org/v1/X25519"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
ARMOR_COLUMNS = 64
ARMOR_MAX_WHITESPACE = 1024
_WS = b" \t\r\n\v\f"

_IDENTITY_HRP = "age-secret-key-"
_RECIPIENT_HRP = "age"
# Stanza types and key prefixes we recognise but do not implement.
_UNSUPPORTED_STANZAS = frozenset(
    {"scrypt", "mlkem768x25519", "ssh-rsa", "ssh-ed25519", "piv-p256", "p256tag"}
)
_UNSUPPORTED_IDENTITY_PREFIXES = ("AGE-SECRET-KEY-PQ-1", "AGE-PLUGIN-")
_UNSUPPORTED_RECIPIENT_PREFIXES = ("age1pq1", "age1tag1")

_B64_RAW = re.compile(rb"[A-Za-z0-9+/]*")
_B64_PADDED = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


# --- base64 and keys -------------------------------------------------------------------


def _b64_raw_decode(s: bytes) -> bytes:
    """Canonical unpadded standard base64, as the header requires (no CR, no padding)."""
    if not _B64_RAW.fullmatch(s) or len(s) % 4 == 1:
        raise ValueError(f"invalid base64 {s[:80]!r}")
    out = base64.b64decode(s + b"=" * (-len(s) % 4), validate=True)
    if _b64_raw_encode(out) != s:
        raise ValueError(f"non-canonical base64 {s[:80]!r}")
    return out


def _b64_raw_encode(b: bytes) -> bytes:
    return base64.b64encode(b).rstrip(b"=")


def _b64_padded_decode(s: bytes) -> bytes:
    """Canonical padded standard base64, as the armor requires."""
    if not _B64_PADDED.fullmatch(s):
        raise ValueError(f"invalid base64 {s[:80]!r}")
    out = base64.b64decode(s, validate=True)
    if base64.b64encode(out) != s:
        raise ValueError(f"non-canonical base64 {s[:80]!r}")
    return out


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _bech32_decode(s: str, hrp: str) -> bytes:
    got_hrp, data = bech32.bech32_decode(s)
    if got_hrp is None or data is None or got_hrp != hrp:
        raise AgeKeyError(detail=f"not a Bech32 {hrp!r} key")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != 32:
        raise AgeKeyError(detail=f"Bech32 {hrp!r} key does not hold 32 bytes")
    return bytes(raw)


def generate_identity() -> str:
    """A new X25519 identity, ``AGE-SECRET-KEY-1…`` (uppercase, as age writes it)."""
    raw = X25519PrivateKey.generate().private_bytes_raw()
    five = bech32.convertbits(raw, 8, 5, True)
    assert five is not None
    return bech32.bech32_encode(_IDENTITY_HRP, five).upper()


def parse_identity(s: str) -> X25519PrivateKey:
    """Parse ``AGE-SECRET-KEY-1…``. Post-quantum/plugin identities raise AgeUnsupported."""
    s = s.strip()
    if s.startswith(_UNSUPPORTED_IDENTITY_PREFIXES):
        raise AgeUnsupported(detail=f"unsupported identity type {s[:20]}…")
    if not s.startswith("AGE-SECRET-KEY-1"):
        # age writes identities uppercase only; a lowercase one is a copy/paste accident.
        raise AgeKeyError(detail="identity does not start with AGE-SECRET-KEY-1")
    return X25519PrivateKey.from_private_bytes(_bech32_decode(s, _IDENTITY_HRP))


def parse_recipient(s: str) -> X25519PublicKey:
    """Parse ``age1…`` (lowercase). Post-quantum/plugin recipients raise AgeUnsupported."""
    s = s.strip()
    # X25519 recipients are "age1" + Bech32 data, which never contains "1"; a second "1"
    # means a longer HRP such as age1pq1… (post-quantum) or age1yubikey1… (plugin).
    if s.startswith(_UNSUPPORTED_RECIPIENT_PREFIXES) or (s.startswith("age1") and "1" in s[4:]):
        raise AgeUnsupported(detail=f"unsupported recipient type {s[:12]}…")
    if not s.startswith("age1") or s.lower() != s:
        raise AgeKeyError(
            "This encryption recipient is not a valid age key.",
            detail="recipient must be lowercase age1…",
        )
    return X25519PublicKey.from_public_bytes(_bech32_decode(s, _RECIPIENT_HRP))


def identity_to_recipient(identity: str) -> str:
    """The ``age1…`` recipient string of an ``AGE-SECRET-KEY-1…`` identity."""
    pub = parse_identity(identity).public_key().public_bytes_raw()
    five = bech32.convertbits(pub, 8, 5, True)
    assert five is not None
    return bech32.bech32_encode(_RECIPIENT_HRP, five)


# --- input plumbing ----------------------------------------------------------------------


class _Reader:
    """Small buffered reader: peek/readline for the header, bulk readinto for the payload.

    Works over any object with ``readinto`` or ``read`` (files, pipes, BytesIO,
    the armor decoder). Keeps at most one line or one peek window buffered.
    """

    def __init__(self, src: object) -> None:
        self._readinto: Callable[[memoryview], int | None] | None = getattr(src, "readinto", None)
        self._read: Callable[[int], bytes] | None = getattr(src, "read", None)
        self._buf = bytearray()
        self._eof = False
        self.consumed = 0  # bytes handed out so far

    def _raw_read(self, n: int) -> bytes:
        if self._read is not None:
            return self._read(n) or b""
        tmp = bytearray(n)
        got = self._raw_readinto(memoryview(tmp))
        return bytes(tmp[:got])

    def _raw_readinto(self, mv: memoryview) -> int:
        if self._readinto is not None:
            return self._readinto(mv) or 0
        data = self._raw_read(len(mv))
        mv[: len(data)] = data
        return len(data)

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            data = self._raw_read(max(want - len(self._buf), 8192))
            if not data:
                self._eof = True
            self._buf += data

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.consumed += len(out)
        return out

    def readline(self, limit: int) -> bytes:
        """Up to and including ``\\n``; shorter at EOF; ``limit`` bytes if no newline."""
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0 and i < limit:
                return self.read(i + 1)
            if len(self._buf) >= limit or self._eof:
                return self.read(limit)
            start = len(self._buf)
            self._fill(len(self._buf) + 4096)

    def readinto_full(self, mv: memoryview) -> int:
        """Fill ``mv`` completely unless EOF comes first; returns the count."""
        n = 0
        if self._buf:
            n = min(len(self._buf), len(mv))
            mv[:n] = self._buf[:n]
            del self._buf[:n]
        while n < len(mv) and not self._eof:
            got = self._raw_readinto(mv[n:])
            if got == 0:
                self._eof = True
            n += got
        self.consumed += n
        return n


class _ArmorReader:
    """Streaming decoder of the strict age armor (PEM, 64 columns, canonical padded base64).

    Mirrors the reference implementation: optional surrounding whitespace
    (≤1024 bytes each side), CRLF allowed, no PEM headers, no checksum, full
    lines except the last, END line required, nothing but whitespace after.
    Errors found after some bytes were produced are deferred to the next call,
    so authenticated chunks before them are still released in order.
    """

    def __init__(self, r: _Reader) -> None:
        self._r = r
        self._started = False
        self._done = False
        self._pending = b""
        self._err: AgeArmorError | None = None

    def _line(self) -> bytes | None:
        raw = self._r.readline(1024)
        if not raw:
            return None
        if not raw.endswith(b"\n") and len(raw) == 1024:
            raise AgeArmorError(detail="armor line too long")
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return raw

    def _drain(self) -> None:
        rest = self._r.read(ARMOR_MAX_WHITESPACE)
        if rest.strip(_WS):
            raise AgeArmorError(detail="data after the armor END line")
        if len(rest) == ARMOR_MAX_WHITESPACE:
            raise AgeArmorError(detail="too much whitespace after the armor")
        self._done = True

    def _next(self) -> None:
        skipped = 0
        while not self._started:
            line = self._line()
            if line is None:
                raise AgeArmorError(detail="no armor BEGIN line")
            if not line.strip(_WS):
                skipped += len(line) + 1
                if skipped > ARMOR_MAX_WHITESPACE:
                    raise AgeArmorError(detail="too much whitespace before the armor")
                continue
            if line != ARMOR_BEGIN:
                raise AgeArmorError(detail=f"invalid armor first line {line[:80]!r}")
            self._started = True
        line = self._line()
        if line is None:
            raise AgeArmorError(detail="armor ends without the END line")
        if line == ARMOR_END:
            self._drain()
            return
        if not line:
            raise AgeArmorError(detail="empty line inside the armor")
        if len(line) > ARMOR_COLUMNS:
            raise AgeArmorError(detail="armor line longer than 64 columns")
        try:
            data = _b64_padded_decode(line)
        except (ValueError, binascii.Error) as exc:
            raise AgeArmorError(detail=f"armor: {exc}") from None
        if len(data) < STANZA_LINE_BYTES:
            end = self._line()
            if end != ARMOR_END:
                raise AgeArmorError(detail="short armor line not followed by the END line")
            self._drain()
        self._pending = data

    def readinto(self, mv: memoryview) -> int:
        if self._err is not None:
            raise self._err
        n = 0
        try:
            while n < len(mv):
                if self._pending:
                    k = min(len(self._pending), len(mv) - n)
                    mv[n : n + k] = self._pending[:k]
                    self._pending = self._pending[k:]
                    n += k
                    continue
                if self._done:
                    break
                self._next()
        except AgeArmorError as exc:
            if n:
                self._err = exc
                return n
            raise
        return n


def _open_input(src: BinaryIO) -> _Reader:
    """Auto-detect armor: binary files start with the intro, armored ones with BEGIN."""
    raw = _Reader(src)
    head = raw.peek(ARMOR_MAX_WHITESPACE + len(ARMOR_BEGIN) + 2)
    if head.startswith(INTRO[:-1]):
        return raw
    if head.lstrip(_WS).startswith(b"-----"):
        return _Reader(_ArmorReader(raw))
    if b"BEGIN AGE ENCRYPTED FILE" in head:
        raise AgeArmorError(detail="data before the armor BEGIN line")
    return raw


def _total_size(src: BinaryIO) -> int:
    try:
        st = os.fstat(src.fileno())
        return max(st.st_size - src.tell(), 0)
    except (AttributeError, OSError, ValueError):
        return 0


# --- header ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class _Header:
    stanzas: tuple[_Stanza, ...]
    mac: bytes
    mac_input: bytes  # header bytes up to and including "---"


def _valid_arg(a: bytes) -> bool:
    return bool(a) and all(33 <= c <= 126 for c in a)


def _read_header(r: _Reader) -> _Header:
    size = 0

    def line() -> bytes:
        nonlocal size
        got = r.readline(MAX_LINE)
        if not got.endswith(b"\n"):
            raise AgeHeaderError(detail="header truncated or line too long")
        size += len(got)
        if size > MAX_HEADER_SIZE:
            raise AgeHeaderError(detail="header larger than 1 MiB")
        return got

    intro = r.readline(len(INTRO))
    if intro != INTRO:
        raise AgeHeaderError(detail=f"not an age v1 file (intro {intro[:40]!r})")
    mac_input = bytearray(intro)
    stanzas: list[_Stanza] = []
    while True:
        ln = line()
        if ln.startswith(b"---"):
            parts = ln[:-1].split(b" ")
            if parts[0] != b"---" or len(parts) != 2:
                raise AgeHeaderError(detail=f"malformed MAC line {ln[:80]!r}")
            try:
                mac = _b64_raw_decode(parts[1])
            except (ValueError, binascii.Error) as exc:
                raise AgeHeaderError(detail=f"MAC line: {exc}") from None
            if len(mac) != 32:
                raise AgeHeaderError(detail="MAC is not 32 bytes")
            mac_input += b"---"
            return _Header(tuple(stanzas), mac, bytes(mac_input))
        if not ln.startswith(b"->"):
            raise AgeHeaderError(detail=f"unexpected header line {ln[:80]!r}")
        parts = ln[:-1].split(b" ")
        if parts[0] != b"->" or len(parts) < 2 or not all(_valid_arg(a) for a in parts[1:]):
            raise AgeHeaderError(detail=f"malformed stanza line {ln[:80]!r}")
        mac_input += ln
        body = bytearray()
        while True:
            bl = line()
            mac_input += bl
            try:
                chunk = _b64_raw_decode(bl[:-1])
            except (ValueError, binascii.Error) as exc:
                raise AgeHeaderError(detail=f"stanza body: {exc}") from None
            if len(chunk) > STANZA_LINE_BYTES:
                raise AgeHeaderError(detail="stanza body line longer than 64 columns")
            body += chunk
            if len(chunk) < STANZA_LINE_BYTES:
                break
        args = tuple(a.decode("ascii") for a in parts[2:])
        stanzas.append(_Stanza(parts[1].decode("ascii"), args, bytes(body)))


def _unwrap_x25519(ident: X25519PrivateKey, st: _Stanza) -> bytes | None:
    """The file key, or None if this stanza is not for ``ident``; malformed → header error."""
    if len(st.args) != 1:
        raise AgeHeaderError(detail="X25519 stanza must have exactly one argument")
    try:
        share = _b64_raw_decode(st.args[0].encode("ascii"))
    except (ValueError, binascii.Error) as exc:
        raise AgeHeaderError(detail=f"X25519 share: {exc}") from None
    if len(share) != 32:
        raise AgeHeaderError(detail=f"X25519 share is {len(share)} bytes, not 32")
    if len(st.body) != FILE_KEY_SIZE + TAG_SIZE:
        raise AgeHeaderError(detail=f"X25519 wrapped file key is {len(st.body)} bytes, not 32")
    try:
        shared = ident.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:  # cryptography refuses an all-zero shared secret
        raise AgeHeaderError(detail="X25519 share is a low-order point") from None
    if not any(shared):
        raise AgeHeaderError(detail="X25519 shared secret is all zero")
    ours = ident.public_key().public_bytes_raw()
    wrap_key = _hkdf(shared, share + ours, X25519_LABEL)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(b"\x00" * 12, st.body, None)
    except InvalidTag:
        return None


def _file_key(header: _Header, identities: Sequence[str]) -> bytes:
    keys: list[X25519PrivateKey] = []
    unsupported_ids: list[str] = []
    for s in identities:
        try:
            keys.append(parse_identity(s))
        except AgeUnsupported:
            unsupported_ids.append(s.strip()[:20])
    types = [st.type for st in header.stanzas]
    if "scrypt" in types and len(types) != 1:
        raise AgeHeaderError(detail="an scrypt stanza must be the only one in the header")
    for key in keys:
        for st in header.stanzas:
            if st.type != "X25519":
                continue
            fk = _unwrap_x25519(key, st)
            if fk is not None:
                return fk
    odd = sorted({t for t in types if t in _UNSUPPORTED_STANZAS})
    if odd or unsupported_ids:
        raise AgeUnsupported(
            detail=f"no supported identity matched; unsupported stanzas {odd}, "
            f"unsupported identities {unsupported_ids}"
        )
    raise AgeNoIdentityMatch(
        detail=f"no identity matched any of {len(types)} stanza(s) of types {sorted(set(types))}"
    )


# --- decrypt -----------------------------------------------------------------------------


class BlockSink(Protocol):
    """Receives decrypted plaintext block by block, without copies.

    Why: per-chunk ``bytes`` objects (a fresh 64 KiB allocation each) cost more
    than the decryption itself; here the decoder decrypts in place
    (``decrypt_into``) into buffers the sink lends it and hands each one back
    with the count of authenticated bytes at its start. The sink may pass the
    buffer to other threads and lend it again only when they are done with it.
    """

    def buffer(self) -> bytearray:
        """A buffer of at least :data:`BLOCK_PLAINTEXT` bytes, owned by the decoder until emit."""
        ...

    def emit(self, buf: bytearray, n: int) -> None:
        """``buf[:n]`` is authenticated plaintext, in stream order; ownership returns to the sink."""
        ...


class _CopySink:
    """Adapts ``dst.write`` / ``on_plaintext`` callers to :class:`BlockSink` (one copy per block)."""

    def __init__(self, dst: BinaryIO, on_plaintext: Callable[[bytes], object] | None) -> None:
        self._buf = bytearray(BLOCK_PLAINTEXT)
        self._write = dst.write
        self._on_plaintext = on_plaintext

    def buffer(self) -> bytearray:
        return self._buf

    def emit(self, buf: bytearray, n: int) -> None:
        data = bytes(memoryview(buf)[:n])
        if self._on_plaintext is not None:
            self._on_plaintext(data)
        self._write(data)


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    identities: Sequence[str],
    *,
    on_plaintext: Callable[[bytes], object] | None = None,
    progress: Progress | _ProgressLike | None = None,
    max_plaintext: int | None = None,
) -> int:
    """Decrypt an age file from ``src`` into ``dst``; returns plaintext bytes written.

    Streaming in ~1 MiB reads, constant memory; armor is auto-detected.
    Only authenticated chunks are written (and passed to ``on_plaintext``, in
    order, before they are written), in pieces of up to one block. A failure
    later in the stream still raises after earlier chunks were written:
    callers must discard ``dst`` on any exception. ``max_plaintext`` makes it
    raise SizeMismatch before writing a chunk that would exceed it.
    ``progress.update("decrypt", ciphertext_done, ciphertext_total)`` is
    called per block (total 0 when unknown) and may raise Cancelled.
    """
    return decrypt_stream_blocks(
        src,
        _CopySink(dst, on_plaintext),
        identities,
        progress=progress,
        max_plaintext=max_plaintext,
    )


def decrypt_stream_blocks(
    src: BinaryIO,
    sink: BlockSink,
    identities: Sequence[str],
    *,
    progress: Progress | _ProgressLike | None = None,
    max_plaintext: int | None = None,
) -> int:
    """As :func:`decrypt_stream`, but plaintext goes to ``sink`` in lent buffers (no copies).

    Each ``sink.emit`` carries whole authenticated chunks; when a chunk fails
    (or would exceed ``max_plaintext``), the authenticated chunks before it in
    the same block are emitted first, then the error is raised.
    """
    total = _total_size(src)
    r = _open_input(src)
    header = _read_header(r)
    file_key = _file_key(header, identities)
    if len(file_key) != FILE_KEY_SIZE:  # pragma: no cover - ChaCha tag covers the length
        raise AgeHeaderError(detail="file key is not 16 bytes")
    mac_key = _hkdf(file_key, None, b"header")
    h = crypto_hmac.HMAC(mac_key, hashes.SHA256())
    h.update(header.mac_input)
    if not hmac.compare_digest(h.finalize(), header.mac):
        raise AgeHmacError(detail="header MAC does not verify")
    nonce = r.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise AgeHeaderError(detail="payload nonce missing or short")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    return _decrypt_payload(r, sink, aead, progress, max_plaintext, total)


_DecryptInto = Callable[[bytes, memoryview, None, memoryview], object]


def _decrypt_into(aead: ChaCha20Poly1305) -> _DecryptInto:
    """``aead.decrypt_into`` (cryptography >= 47), or a copying stand-in for older releases.

    DCC bundles resolve their own wheels per platform (the Blender extension's
    manylinux_2_28 set carries cryptography 46, which has no ``decrypt_into``), so the
    decoder must not depend on it; the stand-in authenticates the same way and copies
    the plaintext into the lent buffer.
    """
    native = getattr(aead, "decrypt_into", None)
    if native is not None:
        return cast(_DecryptInto, native)

    def copy_in(nonce: bytes, ct: memoryview, aad: None, out: memoryview) -> int:
        plain = aead.decrypt(nonce, ct, aad)
        out[:] = plain
        return len(plain)

    return copy_in


def _open_final(decrypt_into: _DecryptInto, counter: int, ct: memoryview, pt: memoryview) -> None:
    """Open chunk ``counter`` as the final one (nonce flag 1), or fail authentication."""
    try:
        decrypt_into(counter.to_bytes(11, "big") + b"\x01", ct, None, pt)
    except InvalidTag:
        raise AgePayloadError(detail=f"chunk {counter} failed authentication") from None


def _decrypt_payload(
    r: _Reader,
    sink: BlockSink,
    aead: ChaCha20Poly1305,
    progress: Progress | _ProgressLike | None,
    max_plaintext: int | None,
    total: int,
) -> int:
    view = memoryview(bytearray(READ_CHUNKS * ENC_CHUNK_SIZE))
    room = READ_CHUNKS * CHUNK_SIZE  # plaintext one read can yield
    decrypt_into = _decrypt_into(aead)
    counter = 0
    written = 0
    limit = max_plaintext if max_plaintext is not None else -1
    last = False
    if progress is not None:
        progress.update("decrypt", r.consumed, total)
    while not last:
        buf = sink.buffer()
        out = memoryview(buf)
        if len(out) < room:  # would emit empty blocks forever
            raise ValueError(f"BlockSink lent {len(out)} bytes; it must lend {BLOCK_PLAINTEXT}")
        pos = 0  # authenticated plaintext bytes in buf
        try:
            while not last and pos + room <= len(out):
                n = r.readinto_full(view)
                off = 0
                while off < n:
                    end = min(off + ENC_CHUNK_SIZE, n)
                    size = end - off
                    ct = view[off:end]
                    pt = out[pos : pos + size - TAG_SIZE] if size >= TAG_SIZE else out[:0]
                    if size < ENC_CHUNK_SIZE:
                        # Only the final chunk may be short; it can be empty only if it is the
                        # only one.
                        if size < TAG_SIZE:
                            raise AgePayloadError(
                                detail=f"chunk {counter} truncated ({size} bytes)"
                            )
                        if size == TAG_SIZE and counter:
                            raise AgePayloadError(detail="final chunk is empty")
                        _open_final(decrypt_into, counter, ct, pt)
                        last = True
                    else:
                        try:
                            decrypt_into(counter.to_bytes(11, "big") + b"\x00", ct, None, pt)
                        except InvalidTag:
                            # A full-length chunk may be the final one.
                            _open_final(decrypt_into, counter, ct, pt)
                            last = True
                    if limit >= 0 and written + pos + size - TAG_SIZE > limit:
                        raise SizeMismatch(
                            "The asset is larger than its manifest says; nothing was imported. "
                            "Tell your pipeline TD.",
                            detail=f"plaintext exceeds max_plaintext={limit} at chunk {counter}",
                        )
                    pos += size - TAG_SIZE
                    counter += 1
                    off = end
                    if last and off != n:
                        raise AgePayloadError(detail="data after the final chunk")
                if not last and n < len(view):
                    raise AgePayloadError(
                        detail=f"file truncated: no final chunk after {counter} chunks"
                    )
        except (AgePayloadError, SizeMismatch):
            if pos:
                sink.emit(buf, pos)  # the authenticated chunks before the failure, as age does
            raise
        sink.emit(buf, pos)
        written += pos
        if progress is not None:
            progress.update("decrypt", r.consumed, total)
    if r.read(1):
        raise AgePayloadError(detail="data after the final chunk")
    return written


# --- encrypt -----------------------------------------------------------------------------


def _wrap_body(body: bytes) -> bytes:
    enc = _b64_raw_encode(body)
    lines = [enc[i : i + ARMOR_COLUMNS] for i in range(0, len(enc), ARMOR_COLUMNS)]
    if not lines or len(lines[-1]) == ARMOR_COLUMNS:
        lines.append(b"")  # every body ends with a short line
    return b"\n".join(lines) + b"\n"


class _ArmorWriter:
    """Writes PEM armor around whatever is written to it (64 columns, padded base64)."""

    def __init__(self, dst: BinaryIO) -> None:
        self._dst = dst
        self._pending = bytearray()
        dst.write(ARMOR_BEGIN + b"\n")

    def write(self, data: bytes) -> int:
        self._pending += data
        full = len(self._pending) // STANZA_LINE_BYTES * STANZA_LINE_BYTES
        if full:
            out = base64.b64encode(bytes(self._pending[:full]))
            self._dst.write(
                b"".join(
                    out[i : i + ARMOR_COLUMNS] + b"\n" for i in range(0, len(out), ARMOR_COLUMNS)
                )
            )
            del self._pending[:full]
        return len(data)

    def close(self) -> None:
        if self._pending:
            self._dst.write(base64.b64encode(bytes(self._pending)) + b"\n")
        self._dst.write(ARMOR_END + b"\n")


def _read_full(src: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = src.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def header_size(recipients: int = 1) -> int:
    """Bytes of the header :func:`header_for` writes for ``recipients`` X25519 recipients.

    Fixed: the intro, per recipient ``-> X25519 <43 b64>`` and a 43-column body
    line (32 bytes: wrapped 16-byte key + tag), and ``--- <43 b64 MAC>``. Why it
    matters: a body can be written behind a placeholder of this size before the
    recipient is known (server/preseal.py).
    """
    stanza = len(b"-> X25519 \n") + 43 + 43 + 1
    return len(INTRO) + recipients * stanza + len(b"--- \n") + 43


def body_size(plaintext: int) -> int:
    """Bytes :func:`encrypt_body` writes for ``plaintext`` bytes (nonce + sealed chunks)."""
    chunks = max(1, -(-plaintext // CHUNK_SIZE))
    return NONCE_SIZE + plaintext + chunks * TAG_SIZE


def header_for(file_key: bytes, recipients: Sequence[str]) -> bytes:
    """The age header wrapping ``file_key`` to the X25519 ``recipients`` (age1…).

    Each stanza uses a fresh ephemeral key, as age does; the header MAC is keyed
    from ``file_key``. Together with :func:`encrypt_body` under the same key this
    is exactly what :func:`encrypt_stream` writes: the body does not depend on
    the recipients, so it can be written before they are known.
    """
    if len(file_key) != FILE_KEY_SIZE:
        raise ValueError(f"age file keys are {FILE_KEY_SIZE} bytes, not {len(file_key)}")
    if not recipients:
        raise AgeKeyError(
            "No recipient to encrypt to.", detail="encryption needs at least one recipient"
        )
    pubs = [parse_recipient(r) for r in recipients]
    header = bytearray(INTRO)
    for pub in pubs:
        eph = X25519PrivateKey.generate()
        share = eph.public_key().public_bytes_raw()
        shared = eph.exchange(pub)
        wrap_key = _hkdf(shared, share + pub.public_bytes_raw(), X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(b"\x00" * 12, bytes(file_key), None)
        header += b"-> X25519 " + _b64_raw_encode(share) + b"\n" + _wrap_body(body)
    header += b"---"
    h = crypto_hmac.HMAC(_hkdf(bytes(file_key), None, b"header"), hashes.SHA256())
    h.update(bytes(header))
    header += b" " + _b64_raw_encode(h.finalize()) + b"\n"
    return bytes(header)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


def encrypt_body(src: BinaryIO, dst: _Writable, file_key: bytes) -> int:
    """Write the payload of an age file under ``file_key``: a fresh 16-byte nonce, then
    the STREAM chunks of ``src``; returns plaintext bytes read.

    Constant memory (one 64 KiB chunk of look-ahead). Put :func:`header_for` with
    the same key in front of it (before or after it is written) to make an age file.
    """
    if len(file_key) != FILE_KEY_SIZE:
        raise ValueError(f"age file keys are {FILE_KEY_SIZE} bytes, not {len(file_key)}")
    nonce = os.urandom(NONCE_SIZE)
    aead = ChaCha20Poly1305(_hkdf(bytes(file_key), nonce, b"payload"))
    dst.write(nonce)
    counter = 0
    total = 0
    cur = _read_full(src, CHUNK_SIZE)
    while True:
        nxt = _read_full(src, CHUNK_SIZE) if len(cur) == CHUNK_SIZE else b""
        final = not nxt
        flag = b"\x01" if final else b"\x00"
        dst.write(aead.encrypt(counter.to_bytes(11, "big") + flag, cur, None))
        total += len(cur)
        counter += 1
        if final:
            break
        cur = nxt
    return total


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, recipients: Sequence[str], *, armor: bool = False
) -> int:
    """Encrypt ``src`` to the X25519 ``recipients`` (age1…); returns plaintext bytes read.

    Constant memory (one 64 KiB chunk of look-ahead). ``armor=True`` writes
    the PEM 'AGE ENCRYPTED FILE' form (as ``age -a``). :func:`header_for` then
    :func:`encrypt_body` under one fresh file key.
    """
    file_key = os.urandom(FILE_KEY_SIZE)
    header = header_for(file_key, recipients)
    out: BinaryIO | _ArmorWriter = _ArmorWriter(dst) if armor else dst
    out.write(header)
    total = encrypt_body(src, out, file_key)
    if isinstance(out, _ArmorWriter):
        out.close()
    return total
