"""Sealing's one-pass encrypt + hash (server/sealing.py ``_encrypt``) at batch boundaries.

The plaintext and ciphertext hashes are taken on background threads from
batched reads and writes; what the manifest states must be the SHA-256 of the
bytes actually read and written, and the ciphertext must decrypt (with our age
reader) to the plaintext, for sizes around the 64 KiB age chunk and the 1 MiB batch.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from sealport import age
from sealport.server.sealing import BATCH, _encrypt

SIZES = [0, 1, 65535, 65536, 65537, BATCH - 1, BATCH, BATCH + 1, 3 * BATCH + 65536 + 7]


@pytest.mark.parametrize("size", SIZES)
def test_hashes_and_ciphertext_match_the_bytes(tmp_path: Path, size: int) -> None:
    identity = age.generate_identity()
    plain = tmp_path / "plain.bin"
    plain.write_bytes(hashlib.shake_256(str(size).encode()).digest(size) if size else b"")
    out = tmp_path / "payload.age"
    plain_size, plain_sha, cipher_size, cipher_sha = _encrypt(
        plain, out, age.identity_to_recipient(identity)
    )
    data, sealed = plain.read_bytes(), out.read_bytes()
    assert (plain_size, plain_sha) == (len(data), hashlib.sha256(data).hexdigest())
    assert (cipher_size, cipher_sha) == (len(sealed), hashlib.sha256(sealed).hexdigest())
    back = io.BytesIO()
    with out.open("rb") as fh:
        age.decrypt_stream(fh, back, [identity])
    assert back.getvalue() == data


def test_a_failed_encryption_leaves_no_hashing_thread(tmp_path: Path) -> None:
    import threading

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x" * (2 * BATCH))
    with pytest.raises(age.AgeError):
        _encrypt(plain, tmp_path / "payload.age", "age1notarecipient")
    assert not [t for t in threading.enumerate() if t.name == "sealport-seal-hash"]


def test_a_hashing_thread_that_cannot_start_leaves_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of threads: the second hasher fails to start; the first must not be left
    blocked forever on its queue (review 2026-11-25)."""
    import threading

    real_start = threading.Thread.start
    started: list[str] = []

    def start(self: threading.Thread) -> None:
        if self.name == "sealport-seal-hash":
            started.append(self.name)
            if len(started) == 2:
                raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x" * 1000)
    identity = age.generate_identity()
    with pytest.raises(RuntimeError, match="can't start"):
        _encrypt(plain, tmp_path / "payload.age", age.identity_to_recipient(identity))
    monkeypatch.undo()
    for t in threading.enumerate():
        if t.name == "sealport-seal-hash":
            t.join(5)  # a leaked one never ends: bounded wait, then the check below
    assert not [t for t in threading.enumerate() if t.name == "sealport-seal-hash"]
