"""What sealport.payload promises: a verified private temp file, or nothing on disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sealport import age
from sealport.errors import (
    Cancelled,
    HashMismatch,
    LocalIOError,
    PayloadError,
    SizeMismatch,
)
from sealport.payload import TEMP_PREFIX, TEMP_SUFFIX, decrypt_payload
from sealport.progress import Progress

SIZE = 3 * 1024 * 1024 + 123  # several 1 MiB blocks, short final chunk


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, bytes, str]:
    ident = age.generate_identity()
    data = os.urandom(SIZE)
    ct = tmp_path_factory.mktemp("sealed") / "asset.age"
    with ct.open("wb") as fh:
        age.encrypt_stream(io.BytesIO(data), fh, [age.identity_to_recipient(ident)])
    return ident, ct, data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


def _no_hasher_threads() -> bool:
    """Neither pipeline worker (writer, hasher) outlives decrypt_payload."""
    workers = {"sealport-sha256", "sealport-write"}
    return not any(t.name in workers and t.is_alive() for t in threading.enumerate())


def _run(ct: Path, dest: Path, ident: str, size: int, sha: str, **kw: object) -> Path:
    return decrypt_payload(
        ct,
        dest,
        identity=ident,
        expected_size=size,
        expected_sha256=sha,
        **kw,  # type: ignore[arg-type]
    )


def test_good_file(sealed: tuple[str, Path, bytes, str], dest: Path) -> None:
    ident, ct, data, sha = sealed
    seen: list[tuple[str, int, int]] = []
    out = _run(ct, dest, ident, SIZE, sha.upper(), progress=Progress(lambda *a: seen.append(a)))
    assert out.parent == dest
    assert out.name.startswith(TEMP_PREFIX) and out.name.endswith(TEMP_SUFFIX)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes() == data
    assert list(dest.iterdir()) == [out]
    assert seen and seen[-1] == ("decrypt", ct.stat().st_size, ct.stat().st_size)
    assert _no_hasher_threads()


def _flip(ct: Path, tmp: Path, offset: int) -> Path:
    raw = bytearray(ct.read_bytes())
    raw[offset] ^= 0x01
    bad = tmp / f"flip{offset}.age"
    bad.write_bytes(bytes(raw))
    return bad


@pytest.mark.parametrize(
    "where", ["stanza", "mac", "nonce", "first_chunk", "mid_block", "last_chunk", "tag"]
)
def test_flipped_byte_leaves_nothing(
    sealed: tuple[str, Path, bytes, str], dest: Path, tmp_path: Path, where: str
) -> None:
    ident, ct, _, sha = sealed
    raw = ct.read_bytes()
    mac_line = raw.index(b"\n--- ") + 1
    payload = raw.index(b"\n", mac_line) + 1 + 16
    offset = {
        "stanza": raw.index(b"-> X25519 ") + 12,
        "mac": mac_line + 10,
        "nonce": payload - 3,
        "first_chunk": payload + 100,
        "mid_block": payload + 5 * (65536 + 16) + 7,  # chunk 5 of the first 16-chunk block
        "last_chunk": len(raw) - 50,
        "tag": len(raw) - 1,
    }[where]
    with pytest.raises(PayloadError) as ei:
        _run(_flip(ct, tmp_path, offset), dest, ident, SIZE, sha)
    assert isinstance(ei.value, age.AgeError)
    if where in ("first_chunk", "mid_block", "last_chunk", "tag", "nonce"):
        assert isinstance(ei.value, age.AgePayloadError)
    assert "damaged or was tampered with" in ei.value.message or where == "stanza"
    assert list(dest.iterdir()) == []
    assert _no_hasher_threads()


def test_truncated_and_extended(
    sealed: tuple[str, Path, bytes, str], dest: Path, tmp_path: Path
) -> None:
    ident, ct, _, sha = sealed
    raw = ct.read_bytes()
    for name, body in (
        ("cut", raw[:-1]),
        ("cut_chunk", raw[: len(raw) - 139]),
        ("extra", raw + b"x"),
    ):
        bad = tmp_path / f"{name}.age"
        bad.write_bytes(body)
        with pytest.raises(age.AgePayloadError):
            _run(bad, dest, ident, SIZE, sha)
        assert list(dest.iterdir()) == []


@pytest.mark.parametrize("delta", [-1, -SIZE // 2, -SIZE, 1, 1000])
def test_size_mismatch(sealed: tuple[str, Path, bytes, str], dest: Path, delta: int) -> None:
    ident, ct, _, sha = sealed
    with pytest.raises(SizeMismatch) as ei:
        _run(ct, dest, ident, SIZE + delta, sha)
    word = "larger" if delta < 0 else "smaller"
    assert word in ei.value.message
    assert list(dest.iterdir()) == []


def test_hash_mismatch(sealed: tuple[str, Path, bytes, str], dest: Path) -> None:
    ident, ct, _, sha = sealed
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    with pytest.raises(HashMismatch):
        _run(ct, dest, ident, SIZE, wrong)
    assert list(dest.iterdir()) == []
    with pytest.raises(ValueError):
        _run(ct, dest, ident, SIZE, "not-hex")


def test_wrong_identity(sealed: tuple[str, Path, bytes, str], dest: Path) -> None:
    _, ct, _, sha = sealed
    with pytest.raises(age.AgeNoIdentityMatch):
        _run(ct, dest, age.generate_identity(), SIZE, sha)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("exc", [Cancelled, KeyboardInterrupt])
def test_cancel_midway_leaves_nothing(
    sealed: tuple[str, Path, bytes, str], dest: Path, exc: type[BaseException]
) -> None:
    ident, ct, _, sha = sealed
    temp_seen: list[int] = []

    def cb(stage: str, done: int, total: int) -> None:
        if done > 2 * 1024 * 1024:
            temp_seen.append(sum(p.stat().st_size for p in dest.iterdir()))
            if exc is Cancelled:
                prog.cancel()
            else:
                raise KeyboardInterrupt

    prog = Progress(cb)
    with pytest.raises(exc):
        _run(ct, dest, ident, SIZE, sha, progress=prog)
    assert temp_seen and temp_seen[0] > 0  # plaintext had been written: it was really midway
    assert list(dest.iterdir()) == []
    assert _no_hasher_threads()


_DISK_FULL_CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
import sealport.payload
from sealport.payload import decrypt_payload
from sealport.errors import SealportError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # write() fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
ct, dest, ident, size, sha, prealloc = sys.argv[1:]
# With preallocation the limit is hit by fallocate() before decrypting; without it,
# by write() in the middle of the stream. Both are real kernel failures.
sealport.payload._PREALLOCATE = prealloc == "1"
try:
    decrypt_payload(Path(ct), Path(dest), identity=ident, expected_size=int(size),
                    expected_sha256=sha)
    print(json.dumps({"ok": True}))
except SealportError as e:
    print(json.dumps({"type": type(e).__name__, "message": e.message, "detail": e.detail}))
"""


@pytest.mark.parametrize("prealloc", ["1", "0"], ids=["fallocate", "write"])
def test_disk_full_is_local_io_error(
    sealed: tuple[str, Path, bytes, str], dest: Path, prealloc: str
) -> None:
    """Real failure: RLIMIT_FSIZE of 1 MiB in a child process (EFBIG, SIGXFSZ ignored)."""
    ident, ct, _, sha = sealed
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _DISK_FULL_CHILD,
            *(str(ct), str(dest), ident, str(SIZE), sha, prealloc),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["type"] == "LocalIOError", out
    assert out["message"].startswith("The disk is full"), out
    assert "errno=27" in out["detail"], out  # EFBIG
    assert list(dest.iterdir()) == []


def test_unwritable_destination(sealed: tuple[str, Path, bytes, str], tmp_path: Path) -> None:
    """A dest "folder" under a regular file: ENOTDIR even for root."""
    ident, ct, _, sha = sealed
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file")
    with pytest.raises(LocalIOError) as ei:
        _run(ct, blocker / "dest", ident, SIZE, sha)
    assert ei.value.message.startswith("Sealport cannot write to")
    assert blocker.read_text() == "I am a file"
    with pytest.raises(LocalIOError) as ei:
        _run(ct, tmp_path / "missing", ident, SIZE, sha)
    assert ei.value.message.startswith("Sealport cannot write to")


def test_unreadable_ciphertext(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(LocalIOError) as ei:
        _run(tmp_path / "nope.age", dest, age.generate_identity(), 1, "0" * 64)
    assert "cannot read the downloaded file" in ei.value.message
    assert list(dest.iterdir()) == []


_HOLD_TEMP = """
import sys
from pathlib import Path
from sealport.payload import _create_temp
fd, path = _create_temp(Path(sys.argv[1]))
print(path, flush=True)
sys.stdin.read()  # hold the temp file (and its lock) until killed
"""


def test_sweep_removes_only_abandoned_temp_files(dest: Path) -> None:
    """A killed import's plaintext temp is deleted; a live one, and other files, stay."""
    from sealport.payload import sweep_abandoned

    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_TEMP, str(dest)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        live = Path(proc.stdout.readline().strip())
        live.write_bytes(b"half-written plaintext")
        other = dest / "asset.glb"
        other.write_bytes(b"placed asset")
        lookalike = dest / f"{TEMP_PREFIX}not-ours{TEMP_SUFFIX}"
        lookalike.write_bytes(b"x")
        assert sweep_abandoned(dest) == []  # the owner is alive and holds its lock
        assert live.exists()
        proc.kill()  # SIGKILL: no cleanup code runs in the child
        proc.wait(timeout=30)
        assert sweep_abandoned(dest) == [live]
        assert not live.exists()
        assert other.exists() and lookalike.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
