"""Pre-sealed payloads (server/preseal.py) and the age split they rest on (age.header_for,
age.encrypt_body).

A body written under a file key before the recipient is known, plus the header
written later for one X25519 recipient, must be a valid age file: decrypted here
by the real ``age`` CLI (installed by ``scripts/setup.sh --test``) and by our
decoder. A copy is finished at most once, and a header that does not fit its
placeholder fails loudly instead of producing a corrupt payload.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sealport import age
from sealport.server import preseal

AGE_CLI = shutil.which("age")
SIZES = [0, 1, age.CHUNK_SIZE - 1, age.CHUNK_SIZE, age.CHUNK_SIZE + 1, 3 * age.CHUNK_SIZE + 7]


def data_of(size: int) -> bytes:
    return hashlib.shake_256(str(size).encode()).digest(size) if size else b""


def age_cli_decrypt(path: Path, identity: str, tmp: Path) -> bytes:
    assert AGE_CLI is not None, "the age CLI is a test tool: scripts/setup.sh --test installs it"
    keyfile = tmp / "identity.txt"
    keyfile.write_text(identity + "\n")
    keyfile.chmod(0o600)
    return subprocess.run(
        [AGE_CLI, "-d", "-i", str(keyfile), str(path)], capture_output=True, check=True
    ).stdout


def our_decrypt(path: Path, identity: str) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as fh:
        age.decrypt_stream(fh, out, [identity])
    return out.getvalue()


@pytest.mark.parametrize("size", SIZES)
def test_header_for_plus_encrypt_body_is_an_age_file(tmp_path: Path, size: int) -> None:
    identity = age.generate_identity()
    data, key = data_of(size), os.urandom(age.FILE_KEY_SIZE)
    body = io.BytesIO()
    assert age.encrypt_body(io.BytesIO(data), body, key) == size  # before the recipient
    header = age.header_for(key, [age.identity_to_recipient(identity)])
    assert len(header) == age.header_size(1)
    assert len(body.getvalue()) == age.body_size(size)
    path = tmp_path / "split.age"
    path.write_bytes(header + body.getvalue())
    assert age_cli_decrypt(path, identity, tmp_path) == data
    assert our_decrypt(path, identity) == data


def test_header_size_for_several_recipients() -> None:
    key = os.urandom(age.FILE_KEY_SIZE)
    for n in (1, 2, 3):
        recipients = [age.identity_to_recipient(age.generate_identity()) for _ in range(n)]
        assert len(age.header_for(key, recipients)) == age.header_size(n)


def test_header_for_refuses_wrong_keys_and_no_recipient() -> None:
    recipient = age.identity_to_recipient(age.generate_identity())
    with pytest.raises(ValueError):
        age.header_for(b"short", [recipient])
    with pytest.raises(age.AgeKeyError):
        age.header_for(os.urandom(age.FILE_KEY_SIZE), [])
    with pytest.raises(ValueError):
        age.encrypt_body(io.BytesIO(b"x"), io.BytesIO(), b"short")


@pytest.mark.parametrize("size", [0, age.CHUNK_SIZE + 1, 1024 * 1024 + 5])
def test_a_sealed_body_finished_for_a_device_decrypts_to_the_plaintext(
    tmp_path: Path, size: int
) -> None:
    identity = age.generate_identity()
    plain = tmp_path / "marked.glb"
    plain.write_bytes(data_of(size))
    body = preseal.seal_body(plain, tmp_path / "payload.age")
    assert body.plain_size == size
    assert body.plain_sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert (body.path.stat().st_mode & 0o777) == 0o600
    assert body.path.read_bytes()[: preseal.HEADER_SIZE] == bytes(preseal.HEADER_SIZE)
    assert body.intact()
    size_out, sha_out = preseal.finish(body, age.identity_to_recipient(identity))
    sealed = body.path.read_bytes()
    assert (size_out, sha_out) == (len(sealed), hashlib.sha256(sealed).hexdigest())
    assert age_cli_decrypt(body.path, identity, tmp_path) == plain.read_bytes()
    assert our_decrypt(body.path, identity) == plain.read_bytes()
    assert bytes(body.file_key) not in sealed
    assert bytes(body.file_key).hex() not in repr(body)


def test_a_copy_is_finished_only_once(tmp_path: Path) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(b"one delivery")
    body = preseal.seal_body(plain, tmp_path / "payload.age")
    preseal.finish(body, age.identity_to_recipient(age.generate_identity()))
    assert not body.intact()
    with pytest.raises(preseal.PresealError):
        preseal.finish(body, age.identity_to_recipient(age.generate_identity()))


def test_a_header_that_does_not_fit_the_placeholder_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the header ever longer or shorter than the placeholder (a second recipient,
    a format change), finishing must refuse, leaving the file untouched."""
    plain = tmp_path / "p.bin"
    plain.write_bytes(data_of(5000))
    body = preseal.seal_body(plain, tmp_path / "payload.age")
    before = body.path.read_bytes()
    extra = age.identity_to_recipient(age.generate_identity())
    real = age.header_for
    monkeypatch.setattr(age, "header_for", lambda key, rs: real(key, [*rs, extra]))
    with pytest.raises(preseal.PresealError) as err:
        preseal.finish(body, age.identity_to_recipient(age.generate_identity()))
    assert "placeholder" in err.value.detail
    assert body.path.read_bytes() == before and body.intact()


def test_a_changed_copy_is_not_intact_and_not_finished(tmp_path: Path) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(data_of(5000))
    recipient = age.identity_to_recipient(age.generate_identity())
    truncated = preseal.seal_body(plain, tmp_path / "a.age")
    os.truncate(truncated.path, truncated.size - 1)
    assert not truncated.intact()
    with pytest.raises(preseal.PresealError):
        preseal.finish(truncated, recipient)
    replaced = preseal.seal_body(plain, tmp_path / "b.age")
    other = tmp_path / "other"
    other.write_bytes(replaced.path.read_bytes())
    os.replace(other, replaced.path)  # same bytes, another file
    assert not replaced.intact()
    with pytest.raises(preseal.PresealError):
        preseal.finish(replaced, recipient)
    wiped = preseal.seal_body(plain, tmp_path / "c.age")
    wiped.wipe()
    assert not any(wiped.file_key) and not wiped.intact()


def test_a_failed_seal_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        preseal.seal_body(tmp_path / "missing.glb", tmp_path / "payload.age")
    assert not (tmp_path / "payload.age").exists()
