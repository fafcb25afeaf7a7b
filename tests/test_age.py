"""What sealport.age promises: keys, round trips, strictness, bounds, progress, interop.

Conformance to the C2SP vectors lives in test_age_testkit.py; this file covers
the API contract and interop with the real ``age`` CLI (marker ``agecli``:
those tests fail, not skip, when ``age`` is missing - CI must install the
Debian package ``age``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from sealport import age
from sealport.errors import Cancelled, PayloadError, SizeMismatch
from sealport.progress import Progress

SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 5 * 1024 * 1024 + 7]
ENC_CHUNK = age.ENC_CHUNK_SIZE


def _enc(data: bytes, recipients: list[str], armor: bool = False) -> bytes:
    out = io.BytesIO()
    assert age.encrypt_stream(io.BytesIO(data), out, recipients, armor=armor) == len(data)
    return out.getvalue()


def _dec(ct: bytes, identities: list[str], **kw: object) -> bytes:
    out = io.BytesIO()
    n = age.decrypt_stream(io.BytesIO(ct), out, identities, **kw)  # type: ignore[arg-type]
    assert n == len(out.getvalue())
    return out.getvalue()


@pytest.fixture(scope="module")
def ident() -> str:
    return age.generate_identity()


# --- keys ------------------------------------------------------------------------------


def test_generated_identity_round_trips(ident: str) -> None:
    assert ident.startswith("AGE-SECRET-KEY-1") and ident == ident.upper() and len(ident) == 74
    rcpt = age.identity_to_recipient(ident)
    assert rcpt.startswith("age1") and rcpt == rcpt.lower() and len(rcpt) == 62
    assert age.parse_recipient(rcpt).public_bytes_raw() == (
        age.parse_identity(ident).public_key().public_bytes_raw()
    )
    assert age.generate_identity() != ident


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "AGE-SECRET-KEY-1",
        "not a key",
        "age-secret-key-1egtzvffv20835nwyv6270lxyvk2vknx2mmdkwyklmgr48uawx40q2p2lm0",  # lower
        "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM1",  # checksum
        "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0Q",  # length
    ],
)
def test_parse_identity_rejects_malformed(bad: str) -> None:
    with pytest.raises(age.AgeKeyError):
        age.parse_identity(bad)


def test_parse_identity_accepts_testkit_key_and_surrounding_newline() -> None:
    key = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
    assert age.parse_identity(key + "\n").private_bytes_raw() == (
        age.parse_identity(key).private_bytes_raw()
    )


def test_post_quantum_and_plugin_keys_are_unsupported(ident: str) -> None:
    with pytest.raises(age.AgeUnsupported):
        age.parse_identity(
            "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG"
        )
    with pytest.raises(age.AgeUnsupported):
        age.parse_identity("AGE-PLUGIN-YUBIKEY-1QQQQQ")
    with pytest.raises(age.AgeUnsupported):
        age.parse_recipient("age1pq1" + "q" * 60)
    with pytest.raises(age.AgeUnsupported):
        age.parse_recipient("age1yubikey1" + "q" * 50)


def test_parse_recipient_rejects_uppercase_and_identity(ident: str) -> None:
    with pytest.raises(age.AgeKeyError):
        age.parse_recipient(age.identity_to_recipient(ident).upper())
    with pytest.raises(age.AgeKeyError):
        age.parse_recipient(ident)


def test_errors_are_typed_payload_errors_with_artist_message() -> None:
    for cls in (
        age.AgeHeaderError,
        age.AgeNoIdentityMatch,
        age.AgeHmacError,
        age.AgePayloadError,
        age.AgeArmorError,
        age.AgeUnsupported,
    ):
        err = cls(detail="for the TD")
        assert isinstance(err, age.AgeError) and isinstance(err, PayloadError)
        assert "nothing was imported" in err.message and err.detail == "for the TD"
        assert str(err) == err.message


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
def test_round_trip(ident: str, size: int, armor: bool) -> None:
    data = os.urandom(size)
    ct = _enc(data, [age.identity_to_recipient(ident)], armor=armor)
    chunks = max(1, -(-size // 65536))
    if not armor:
        assert ct.startswith(age.INTRO)
        assert len(ct) == _header_len(ct) + 16 + chunks * 16 + size  # header, nonce, chunks
    else:
        assert ct.startswith(age.ARMOR_BEGIN + b"\n") and ct.endswith(age.ARMOR_END + b"\n")
        assert max(len(x) for x in ct.splitlines()) <= 64
    got: list[bytes] = []
    assert _dec(ct, [ident], on_plaintext=got.append) == data
    assert b"".join(got) == data


def test_multiple_recipients_and_identities(ident: str) -> None:
    other = age.generate_identity()
    ct = _enc(b"shared", [age.identity_to_recipient(other), age.identity_to_recipient(ident)])
    assert _dec(ct, [ident]) == b"shared"
    assert _dec(ct, [age.generate_identity(), other]) == b"shared"


def test_wrong_identity_is_no_match(ident: str) -> None:
    ct = _enc(b"x" * 100, [age.identity_to_recipient(ident)])
    with pytest.raises(age.AgeNoIdentityMatch) as ei:
        _dec(ct, [age.generate_identity()])
    assert "not encrypted for this workstation" in ei.value.message
    with pytest.raises(age.AgeNoIdentityMatch):
        _dec(ct, [])


def test_pq_identity_on_x25519_file_reports_unsupported(ident: str) -> None:
    ct = _enc(b"x", [age.identity_to_recipient(ident)])
    with pytest.raises(age.AgeUnsupported):
        _dec(ct, ["AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG"])


class _Trickle(io.RawIOBase):
    """A pipe-like, non-seekable source that returns at most 1000 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), len(self._data), 1000)
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_short_reads_from_a_pipe(ident: str) -> None:
    data = os.urandom(3 * 65536 + 5)
    for armor in (False, True):
        ct = _enc(data, [age.identity_to_recipient(ident)], armor=armor)
        out = io.BytesIO()
        age.decrypt_stream(_Trickle(ct), out, [ident])  # type: ignore[arg-type]
        assert out.getvalue() == data


# --- strictness ------------------------------------------------------------------------


def _header_len(ct: bytes) -> int:
    return ct.index(b"\n---") + ct[ct.index(b"\n---") + 1 :].index(b"\n") + 2


@pytest.fixture(scope="module")
def three_chunks(ident: str) -> tuple[bytes, bytes]:
    data = os.urandom(2 * 65536 + 1000)
    return data, _enc(data, [age.identity_to_recipient(ident)])


def test_tampered_chunk_releases_only_authenticated_prefix(
    ident: str, three_chunks: tuple[bytes, bytes]
) -> None:
    data, ct = three_chunks
    body = _header_len(ct) + 16
    for chunk_index in range(3):
        bad = bytearray(ct)
        bad[body + chunk_index * ENC_CHUNK + 5] ^= 1
        out = io.BytesIO()
        with pytest.raises(age.AgePayloadError):
            age.decrypt_stream(io.BytesIO(bytes(bad)), out, [ident])
        assert out.getvalue() == data[: chunk_index * 65536]


def test_tampered_header_is_hmac_failure(ident: str, three_chunks: tuple[bytes, bytes]) -> None:
    _, ct = three_chunks
    mac_at = ct.index(b"\n--- ") + 6
    bad = bytearray(ct)
    bad[mac_at] = ord("A") if bad[mac_at] != ord("A") else ord("B")
    with pytest.raises((age.AgeHmacError, age.AgeHeaderError)):
        _dec(bytes(bad), [ident])


def test_truncation_and_trailing_data(ident: str, three_chunks: tuple[bytes, bytes]) -> None:
    data, ct = three_chunks
    for cut in (1, 16, 1000 + 16, 1000 + 17):
        with pytest.raises(age.AgePayloadError):
            _dec(ct[:-cut], [ident])
    # Cut exactly at a chunk boundary: the last full chunk is not marked final.
    with pytest.raises(age.AgePayloadError):
        _dec(ct[: _header_len(ct) + 16 + 2 * ENC_CHUNK], [ident])
    # A byte appended after a short final chunk makes that chunk fail authentication...
    with pytest.raises(age.AgePayloadError) as ei:
        _dec(ct + b"\x00", [ident])
    assert "chunk 2 failed authentication" in ei.value.detail
    # ...after a full-length final chunk it is trailing data, refused after the chunk.
    full = os.urandom(65536)
    ct_full = _enc(full, [age.identity_to_recipient(ident)])
    out = io.BytesIO()
    with pytest.raises(age.AgePayloadError) as ei:
        age.decrypt_stream(io.BytesIO(ct_full + b"\x00"), out, [ident])
    assert "after the final chunk" in ei.value.detail
    assert out.getvalue() == full  # authenticated, released, then the error: caller discards
    with pytest.raises(age.AgeHeaderError):
        _dec(ct[: _header_len(ct) + 10], [ident])  # short payload nonce


def test_armor_with_garbage_is_armor_error(ident: str) -> None:
    ct = _enc(b"hello", [age.identity_to_recipient(ident)], armor=True)
    with pytest.raises(age.AgeArmorError):
        _dec(ct + b"junk\n", [ident])
    with pytest.raises(age.AgeArmorError):
        _dec(ct.replace(b"\n", b" \n", 2), [ident])
    assert _dec(b"\n  \n" + ct.replace(b"\n", b"\r\n") + b"\n\n", [ident]) == b"hello"


# --- bounds, progress, memory -----------------------------------------------------------


def test_max_plaintext_stops_before_exceeding(
    ident: str, three_chunks: tuple[bytes, bytes]
) -> None:
    data, ct = three_chunks
    assert _dec(ct, [ident], max_plaintext=len(data)) == data
    out = io.BytesIO()
    with pytest.raises(SizeMismatch):
        age.decrypt_stream(io.BytesIO(ct), out, [ident], max_plaintext=len(data) - 1)
    assert len(out.getvalue()) <= len(data) - 1
    with pytest.raises(SizeMismatch):
        age.decrypt_stream(io.BytesIO(ct), io.BytesIO(), [ident], max_plaintext=0)


def test_progress_reports_and_cancels(ident: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    src = tmp_path / "f.age"
    src.write_bytes(_enc(data, [age.identity_to_recipient(ident)]))
    seen: list[tuple[str, int, int]] = []
    with src.open("rb") as fh:
        age.decrypt_stream(fh, io.BytesIO(), [ident], progress=Progress(lambda *a: seen.append(a)))
    size = src.stat().st_size
    assert {s for s, _, _ in seen} == {"decrypt"}
    assert all(t == size for _, _, t in seen) and seen[-1][1] == size
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen) and len(seen) >= 3

    prog = Progress(lambda stage, done, total: prog.cancel() if done > 0 else None)
    out = io.BytesIO()
    with src.open("rb") as fh, pytest.raises(Cancelled):
        age.decrypt_stream(fh, out, [ident], progress=prog)
    assert len(out.getvalue()) < len(data)


def test_decrypt_memory_is_constant(ident: str, tmp_path: Path) -> None:
    size = 48 * 1024 * 1024
    src = tmp_path / "big.age"
    with src.open("wb") as fh:
        age.encrypt_stream(io.BytesIO(b"\x5a" * size), fh, [age.identity_to_recipient(ident)])

    class Null(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            return len(b)

    tracemalloc.start()
    try:
        with src.open("rb", buffering=0) as raw:
            assert age.decrypt_stream(raw, Null(), [ident]) == size  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak} for a {size}-byte file"


# --- interop with the age CLI ------------------------------------------------------------


def _age_bin(name: str = "age") -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not installed: CI must install the Debian package 'age'")
    return path


@pytest.fixture(scope="module")
def cli_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    keyfile = tmp_path_factory.mktemp("agekey") / "key.txt"
    subprocess.run([_age_bin("age-keygen"), "-o", str(keyfile)], check=True, capture_output=True)
    identity = next(
        ln for ln in keyfile.read_text().splitlines() if ln.startswith("AGE-SECRET-KEY-1")
    )
    recipient = subprocess.run(
        [_age_bin("age-keygen"), "-y", str(keyfile)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return keyfile, identity, recipient


@pytest.mark.agecli
def test_cli_keys_match_ours(cli_key: tuple[Path, str, str], tmp_path: Path) -> None:
    _, identity, recipient = cli_key
    assert age.identity_to_recipient(identity) == recipient
    ours = age.generate_identity()
    kf = tmp_path / "ours.txt"
    kf.write_text(ours + "\n")
    out = subprocess.run(
        [_age_bin("age-keygen"), "-y", str(kf)], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == age.identity_to_recipient(ours)


@pytest.mark.agecli
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
def test_cli_encrypts_we_decrypt(
    cli_key: tuple[Path, str, str], tmp_path: Path, size: int, armor: bool
) -> None:
    _, identity, recipient = cli_key
    plain = tmp_path / "p.bin"
    plain.write_bytes(os.urandom(size))
    ct = tmp_path / "p.age"
    cmd = [_age_bin(), "-r", recipient, "-o", str(ct)] + (["-a"] if armor else []) + [str(plain)]
    subprocess.run(cmd, check=True, capture_output=True)
    out = io.BytesIO()
    with ct.open("rb") as fh:
        n = age.decrypt_stream(fh, out, [identity], max_plaintext=size)
    assert n == size
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(plain.read_bytes()).digest()


@pytest.mark.agecli
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
def test_we_encrypt_cli_decrypts(
    cli_key: tuple[Path, str, str], tmp_path: Path, size: int, armor: bool
) -> None:
    keyfile, _, recipient = cli_key
    data = os.urandom(size)
    ct = tmp_path / "p.age"
    with ct.open("wb") as fh:
        age.encrypt_stream(io.BytesIO(data), fh, [recipient], armor=armor)
    res = subprocess.run(
        [_age_bin(), "-d", "-i", str(keyfile), str(ct)], check=True, capture_output=True
    )
    assert res.stdout == data


@pytest.mark.agecli
def test_cli_rejects_what_we_reject(cli_key: tuple[Path, str, str], tmp_path: Path) -> None:
    """A flipped payload byte: both the CLI and we refuse it."""
    keyfile, identity, recipient = cli_key
    ct = tmp_path / "p.age"
    with ct.open("wb") as fh:
        age.encrypt_stream(io.BytesIO(os.urandom(70000)), fh, [recipient])
    raw = bytearray(ct.read_bytes())
    raw[-100] ^= 0x40
    ct.write_bytes(bytes(raw))
    res = subprocess.run([_age_bin(), "-d", "-i", str(keyfile), str(ct)], capture_output=True)
    assert res.returncode != 0
    with pytest.raises(age.AgePayloadError):
        _dec(bytes(raw), [identity])


def test_block_sink_buffer_too_small_is_refused(ident: str) -> None:
    """A sink lending less than a block is a programming error, not an endless loop."""

    class Small:
        def buffer(self) -> bytearray:
            return bytearray(age.BLOCK_PLAINTEXT // 2)

        def emit(self, buf: bytearray, n: int) -> None:  # pragma: no cover - never reached
            raise AssertionError("emitted")

    ct = _enc(b"x" * 100, [age.identity_to_recipient(ident)])
    with pytest.raises(ValueError, match="must lend"):
        age.decrypt_stream_blocks(io.BytesIO(ct), Small(), [ident])


class _AeadWithoutDecryptInto:
    """cryptography < 47's ChaCha20Poly1305 surface: encrypt/decrypt, no ``decrypt_into``.

    The Blender extension's Linux wheel set carries cryptography 46; the decoder
    must authenticate and copy the same way there (the crypto itself is still real).
    """

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._aead = ChaCha20Poly1305(key)

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self._aead.encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self._aead.decrypt(nonce, data, aad)


@pytest.mark.parametrize("size", [0, 65536, 3 * 1024 * 1024 + 5])
def test_decoder_works_without_decrypt_into(
    ident: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(size)
    ct = _enc(data, [age.identity_to_recipient(ident)])
    monkeypatch.setattr(age, "ChaCha20Poly1305", _AeadWithoutDecryptInto)
    assert _dec(ct, [ident]) == data
    if size:
        bad = bytearray(ct)
        bad[-20] ^= 1  # inside the last chunk's ciphertext
        with pytest.raises(age.AgePayloadError):
            _dec(bytes(bad), [ident])
