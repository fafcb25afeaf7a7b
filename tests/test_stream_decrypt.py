"""Decrypt while downloading (sealport.stream_decrypt): same results, failures and cleanup
as download-then-decrypt.

The "download" here is a function that writes a real age file piece by piece and
tells the observer what is final, as ``transport.download_payload`` does; the
decoder, the temp file and the checks are the real ones. The real transport with a
real server, dropped connections and Range resumes is exercised end to end by
tests/test_secure_import.py and tests/faults/ (the importer always streams).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sealport import age, stream_decrypt
from sealport.age import AgeNoIdentityMatch
from sealport.errors import Cancelled, HashMismatch, SizeMismatch
from sealport.progress import Progress

PLAIN = os.urandom(3 * age.BLOCK_PLAINTEXT + 12345)
IDENTITY = age.generate_identity()


def _seal(plain: bytes, identity: str = IDENTITY) -> bytes:
    out = io.BytesIO()
    age.encrypt_stream(io.BytesIO(plain), out, [age.identity_to_recipient(identity)])
    return out.getvalue()


CIPHER = _seal(PLAIN)
PIECE = 256 * 1024


def _writer(
    path: Path,
    versions: list[bytes],
    *,
    fail_after: int | None = None,
    error: Exception | None = None,
    between: Callable[[int], None] | None = None,
) -> Callable[[Any], Path]:
    """A download: each version is written from byte 0 (a server ignoring Range
    restarts the body); pieces are announced to the observer as they land."""

    def download(observer: Any) -> Path:
        done = 0
        for version in versions:
            if observer is not None:
                observer.reset()
            with open(path, "wb", buffering=0) as fh:
                for at in range(0, len(version), PIECE):
                    if fail_after is not None and done >= fail_after:
                        raise error or HashMismatch("damaged", "test")
                    fh.write(version[at : at + PIECE])
                    done += min(PIECE, len(version) - at)
                    if observer is not None:
                        observer.committed(at + min(PIECE, len(version) - at))
                    if between is not None:
                        between(at)
        return path

    return download


def _run(tmp_path: Path, download: Callable[[Any], Path], **kw: Any) -> Path:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    args: dict[str, Any] = {
        "identity": IDENTITY,
        "payload_size": len(CIPHER),
        "expected_size": len(PLAIN),
        "expected_sha256": hashlib.sha256(PLAIN).hexdigest(),
        "progress": Progress(),
    }
    args.update(kw)
    return stream_decrypt.download_and_decrypt(download, tmp_path / "c.age", out, **args)


def _no_decoder_left() -> bool:
    return not any(t.name == "sealport-decrypt" for t in threading.enumerate())


def test_decoder_works_while_the_download_runs_and_the_result_is_checked(tmp_path: Path) -> None:
    """The decoder writes plaintext before the last ciphertext byte exists (bounded wait
    on the temp file's content, not a timing assert); the result is the checked file."""
    out = tmp_path / "out"
    seen_early: list[bool] = []

    def wait_for_plaintext(at: int) -> None:
        if at == 8 * PIECE and not seen_early:  # 2.25 MiB in: a whole decoder block is final
            seen_early.append(_wait_for_plaintext(out, PLAIN[:1024]))

    stages: list[str] = []
    order: list[str] = []
    progress = Progress(lambda stage, done, total: stages.append(stage))
    temp = _run(
        tmp_path,
        _writer(tmp_path / "c.age", [CIPHER], between=wait_for_plaintext),
        progress=progress,
        on_downloaded=lambda: order.append("downloaded"),
    )
    assert seen_early == [True]
    assert temp.parent == out and temp.read_bytes() == PLAIN
    assert stat.S_IMODE(temp.stat().st_mode) == 0o600
    assert "decrypt" in stages and order == ["downloaded"]
    assert _no_decoder_left()


def test_download_error_wins_and_nothing_is_left(tmp_path: Path) -> None:
    with pytest.raises(HashMismatch):
        _run(tmp_path, _writer(tmp_path / "c.age", [CIPHER], fail_after=len(CIPHER) // 2))
    assert list((tmp_path / "out").iterdir()) == []
    assert _no_decoder_left()


def test_download_error_wins_over_the_decoders(tmp_path: Path) -> None:
    """Wrong identity (the decoder fails at once) and a damaged download: the artist
    sees the download's error, as in the sequential order."""
    with pytest.raises(SizeMismatch):
        _run(
            tmp_path,
            _writer(tmp_path / "c.age", [CIPHER], fail_after=PIECE, error=SizeMismatch("x", "y")),
            identity=age.generate_identity(),
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_decoder_error_after_a_good_download(tmp_path: Path) -> None:
    with pytest.raises(AgeNoIdentityMatch):
        _run(tmp_path, _writer(tmp_path / "c.age", [CIPHER]), identity=age.generate_identity())
    assert list((tmp_path / "out").iterdir()) == []


def test_plaintext_hash_mismatch_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(HashMismatch):
        _run(tmp_path, _writer(tmp_path / "c.age", [CIPHER]), expected_sha256="0" * 64)
    assert list((tmp_path / "out").iterdir()) == []


def _wait_for_plaintext(out: Path, prefix: bytes) -> bool:
    """Bounded wait until the decoder's temp file starts with ``prefix`` (it decrypted
    and wrote its first block); not a timing assert, just a rendezvous."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for p in out.glob(".sealport-*.part"):
            with open(p, "rb") as fh:
                if fh.read(len(prefix)) == prefix:
                    return True
        time.sleep(0.01)
    return False


def test_restart_from_byte_zero_voids_what_was_decrypted(tmp_path: Path) -> None:
    """The server ignored our Range and sent the body from 0: the bytes the decoder
    already used (here another valid age file for the same key, whose first block it
    decrypted and wrote) are void; the result is the verified second body."""
    other_plain = os.urandom(len(PLAIN))
    other = _seal(other_plain)
    out = tmp_path / "out"
    used_old: list[bool] = []

    def after_piece(at: int) -> None:
        if at == 8 * PIECE and not used_old:  # still in the first body
            used_old.append(_wait_for_plaintext(out, other_plain[:1024]))

    download = _writer(tmp_path / "c.age", [other[: 10 * PIECE], CIPHER], between=after_piece)
    temp = _run(tmp_path, download)
    assert used_old == [True]
    assert temp.read_bytes() == PLAIN
    assert [p.name for p in out.iterdir()] == [temp.name]


@pytest.mark.parametrize("when", ["download", "decrypt"])
def test_cancel_leaves_nothing(tmp_path: Path, when: str) -> None:
    progress: Progress

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == when:
            progress.cancel()

    def download_with_progress(observer: Any) -> Path:
        progress.update("download", 0, len(CIPHER))
        path = _writer(tmp_path / "c.age", [CIPHER])(observer)
        progress.update("download", len(CIPHER), len(CIPHER))
        return path

    progress = Progress(on_progress)
    with pytest.raises(Cancelled):
        _run(tmp_path, download_with_progress, progress=progress)
    assert list((tmp_path / "out").iterdir()) == []
    assert _no_decoder_left()


def test_sequential_path_gives_the_same_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream_decrypt, "ENABLED", False)
    seen: list[Any] = []

    def download(observer: Any) -> Path:
        seen.append(observer)
        return _writer(tmp_path / "c.age", [CIPHER])(observer)

    assert _run(tmp_path, download).read_bytes() == PLAIN
    assert seen == [None]


def test_the_real_download_announces_its_bytes(sealport_server: Any, tmp_path: Path) -> None:
    """transport.download_payload tells the observer each final size, growing to the
    whole file, over real TLS from the reference server."""
    from sealport import importer

    from tests.test_secure_import import make_client, sign_in

    client = make_client(sealport_server, tmp_path / "ws")
    sign_in(client, sealport_server, sealport_server.username, sealport_server.password)
    key = client.device_key()
    asset = next(a for a in client.assets() if a["format"] == "glb")
    delivery = importer.request_delivery(client, asset["asset_id"], key.device_id or "")
    envelope = importer.fetch_manifest(client, delivery)
    m = importer.verify_manifest(client, envelope, user=client.user(), recipient=key.recipient)
    events: list[Any] = []

    class Recorder:
        def reset(self) -> None:
            events.append("reset")

        def committed(self, size: int) -> None:
            events.append(size)

    path = importer.download_ciphertext(client, delivery, m.manifest, Progress(), Recorder())
    sizes = [e for e in events if e != "reset"]
    first = next(i for i, e in enumerate(events) if e != "reset")
    assert first >= 1 and "reset" not in events[first:]  # (re)starts come before any byte
    assert sizes == sorted(sizes) and sizes[-1] == m.manifest.payload.size == path.stat().st_size


def test_without_preadv_the_follower_copies_from_pread(tmp_path: Path, monkeypatch) -> None:
    """Platforms with ``pread`` but no ``preadv`` (older macOS) still stream."""
    monkeypatch.delattr(os, "preadv", raising=False)
    assert stream_decrypt.ENABLED
    assert _run(tmp_path, _writer(tmp_path / "c.age", [CIPHER])).read_bytes() == PLAIN


def test_file_shorter_than_announced_falls_back_to_the_verified_file(tmp_path: Path) -> None:
    """If the ciphertext file holds less than the download announced (never by
    download_payload; e.g. someone truncated the cache file), the decoder stops and
    the verified file is decrypted afterwards: a good file, or a typed error."""
    path = tmp_path / "c.age"

    def lying_download(observer: Any) -> Path:
        path.write_bytes(b"")
        observer.reset()
        observer.committed(len(CIPHER))  # nothing of it is in the file yet
        deadline = time.monotonic() + 20
        while not _no_decoder_left() and time.monotonic() < deadline:
            time.sleep(0.01)  # the decoder reads 0 bytes where it was promised some: it stops
        assert _no_decoder_left()
        path.write_bytes(CIPHER)
        return path

    assert _run(tmp_path, lying_download).read_bytes() == PLAIN
    assert len(list((tmp_path / "out").iterdir())) == 1


def test_decoder_error_on_bytes_a_restart_replaced_falls_back(tmp_path: Path) -> None:
    """The first body is damaged and the decoder fails on it (its thread ends) before
    the server restarts the body from byte 0 and the download verifies: the error was
    about void bytes, so the verified file is decrypted, as the sequential path would
    (review 2026-11-25: this used to raise the stale AgePayloadError)."""
    damaged = bytearray(CIPHER)
    damaged[2 * PIECE] ^= 1  # a payload chunk of the first body
    decoder_ended: list[bool] = []

    def after_piece(at: int) -> None:
        if at == 9 * PIECE and not decoder_ended:  # still in the first body
            deadline = time.monotonic() + 20  # rendezvous, not a timing assert
            while not _no_decoder_left() and time.monotonic() < deadline:
                time.sleep(0.01)
            decoder_ended.append(_no_decoder_left())

    download = _writer(
        tmp_path / "c.age", [bytes(damaged[: 10 * PIECE]), CIPHER], between=after_piece
    )
    temp = _run(tmp_path, download)
    assert decoder_ended == [True]
    assert temp.read_bytes() == PLAIN
    assert [p.name for p in (tmp_path / "out").iterdir()] == [temp.name]


def test_decoder_error_in_the_final_body_is_still_raised(tmp_path: Path) -> None:
    """A restart before the decoder used a byte is followed; an error on the body that
    verified is the artist's error (no second, silent decrypt)."""
    with pytest.raises(AgeNoIdentityMatch):
        _run(
            tmp_path,
            _writer(tmp_path / "c.age", [CIPHER[:0], CIPHER]),
            identity=age.generate_identity(),
        )
    assert list((tmp_path / "out").iterdir()) == []
