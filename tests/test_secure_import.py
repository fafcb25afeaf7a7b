"""The secure import path end to end, over real TLS to the real reference server.

Every attack of issue 2's list ends in a typed error, nothing in the output
folder (not even a hidden temp file), and an audit record. Attacks on the
server side are made the way an attacker would: by changing the sealed
payload on the server's disk (compromised object store) or by serving a
manifest signed with keys the attacker holds (compromised or misconfigured
server), using the server's real keys where the attack needs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sealport import trust
from sealport.client import SealportClient
from sealport.config import load_config
from sealport.demo import DEMO_MARKER
from sealport.errors import (
    HashMismatch,
    ManifestExpired,
    RollbackDetected,
    SignatureInvalid,
    SizeMismatch,
    UntrustedKey,
    WrongRecipient,
)
from sealport.manifest import MANIFEST_PREFIX

Hook = Callable[[requests.Response], requests.Response | None]


def make_client(server: Any, home: Path, **toml_extra: str) -> SealportClient:
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("test profile\n")
    text = Path(server.client_config_path).read_text()
    for section, line in toml_extra.items():
        text = text.replace(f"[{section}]\n", f"[{section}]\n{line}\n")
    (home / "sealport.toml").write_text(text)
    return SealportClient(load_config(home / "sealport.toml"), demo=True)


def sign_in(client: SealportClient, server: Any, username: str, password: str) -> None:
    errors: list[BaseException] = []

    def on_code(auth: Any) -> None:
        def approve() -> None:
            try:
                server.approve(auth.user_code, username, password)
            except BaseException as exc:
                errors.append(exc)

        threading.Thread(target=approve, daemon=True).start()

    client.login(on_code)
    assert not errors, errors


@pytest.fixture
def signed_in(sealport_server: Any, tmp_path: Path) -> Iterator[SealportClient]:
    client = make_client(sealport_server, tmp_path / "ws")
    sign_in(client, sealport_server, sealport_server.username, sealport_server.password)
    yield client


def asset_by_format(client: SealportClient, fmt: str) -> dict[str, Any]:
    return next(a for a in client.assets() if a["format"] == fmt)


def on_response(
    client: SealportClient, predicate: Callable[[requests.Response], bool], action: Hook
) -> None:
    def hook(resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if predicate(resp):
            return action(resp) or resp
        return resp

    client.session.hooks["response"].append(hook)


def is_delivery_post(resp: requests.Response) -> bool:
    return resp.request.method == "POST" and resp.url.endswith("/deliveries") and resp.ok


def is_manifest(resp: requests.Response) -> bool:
    return resp.request.method == "GET" and resp.url.endswith("/manifest") and resp.ok


def sealed_payload(server: Any, resp: requests.Response) -> Path:
    return Path(server.data_dir) / "deliveries" / f"{resp.json()['delivery_id']}.age"


def rewrite_manifest(
    resp: requests.Response, edit: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    envelope = edit(json.loads(resp.content))
    resp._content = json.dumps(envelope).encode()


def resign(server: Any, **changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Re-sign the served manifest with the server's real delivery key after changing fields."""
    keys = Path(server.data_dir) / "keys"
    delivery = trust.load_private_key(keys / "delivery.key")

    def edit(env: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(base64.b64decode(env["manifest"]))
        body.update(changes)
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        env["manifest"] = base64.b64encode(data).decode()
        env["signature"] = base64.b64encode(delivery.sign(MANIFEST_PREFIX + data)).decode()
        return env

    return edit


def assert_nothing_imported(client: SealportClient, out: Path, code: str) -> None:
    leftovers = list(out.rglob("*")) if out.exists() else []
    assert leftovers == [], f"left behind: {leftovers}"
    records = client.audit.records()
    assert records[-1]["event"] == "import.failed" and records[-1]["data"]["code"] == code
    assert client.audit.verify().ok


# --- the happy path ------------------------------------------------------------------------
def test_every_demo_format_imports_verified(signed_in: SealportClient, tmp_path: Path) -> None:
    out = tmp_path / "out"
    formats = set()
    assets = signed_in.assets()
    for asset in assets:
        result = signed_in.secure_import(asset["asset_id"], out)
        data = result.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == result.manifest.file.sha256
        assert result.path.parent == out and oct(result.path.stat().st_mode & 0o077) == "0o0"
        assert result.manifest.user == signed_in.user()
        formats.add(result.manifest.format)
    assert formats == {"usd", "usdz", "fbx", "obj", "stl", "glb", "3mf"}
    assert len(list(out.iterdir())) == len(assets)  # one file per asset, no temp files left
    events = [r["event"] for r in signed_in.audit.records()]
    assert events.count("import.verified") == len(assets) and signed_in.audit.verify().ok
    assert list((signed_in.config.cache_dir / "deliveries").glob("*")) == []


# --- payload attacks -----------------------------------------------------------------------
@pytest.mark.parametrize("offset", [0, 40, -1, "middle"])
def test_flipped_ciphertext_byte(
    signed_in: SealportClient, sealport_server: Any, tmp_path: Path, offset: int | str
) -> None:
    def flip(resp: requests.Response) -> None:
        path = sealed_payload(sealport_server, resp)
        data = bytearray(path.read_bytes())
        i = len(data) // 2 if offset == "middle" else int(offset)
        data[i] ^= 0x01
        path.write_bytes(bytes(data))

    on_response(signed_in, is_delivery_post, flip)
    with pytest.raises(HashMismatch):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "hash_mismatch")


def test_truncated_payload(signed_in: SealportClient, sealport_server: Any, tmp_path: Path) -> None:
    def truncate(resp: requests.Response) -> None:
        path = sealed_payload(sealport_server, resp)
        path.write_bytes(path.read_bytes()[:-100])

    on_response(signed_in, is_delivery_post, truncate)
    with pytest.raises(SizeMismatch):
        signed_in.secure_import(asset_by_format(signed_in, "obj")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "size_mismatch")


def test_payload_longer_than_manifest(
    signed_in: SealportClient, sealport_server: Any, tmp_path: Path
) -> None:
    def extend(resp: requests.Response) -> None:
        path = sealed_payload(sealport_server, resp)
        with open(path, "ab") as fh:
            fh.write(b"\0" * (3 * 1024 * 1024))

    on_response(signed_in, is_delivery_post, extend)
    with pytest.raises(SizeMismatch):
        signed_in.secure_import(asset_by_format(signed_in, "stl")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "size_mismatch")


def test_plaintext_hash_mismatch(
    signed_in: SealportClient, sealport_server: Any, tmp_path: Path
) -> None:
    def wrong_hash(resp: requests.Response) -> None:
        def edit(env: dict[str, Any]) -> dict[str, Any]:
            body = json.loads(base64.b64decode(env["manifest"]))
            f = body["files"][0]
            return resign(sealport_server, files=[{**f, "sha256": "0" * 64}])(env)

        rewrite_manifest(resp, edit)

    on_response(signed_in, is_manifest, wrong_hash)
    with pytest.raises(HashMismatch):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "hash_mismatch")


# --- manifest attacks ----------------------------------------------------------------------
def test_manifest_signature_invalid(signed_in: SealportClient, tmp_path: Path) -> None:
    def tamper(env: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(base64.b64decode(env["manifest"]))
        body["expires_at"] += 86400 * 365
        env["manifest"] = base64.b64encode(json.dumps(body).encode()).decode()
        return env

    on_response(signed_in, is_manifest, lambda r: rewrite_manifest(r, tamper))
    with pytest.raises(SignatureInvalid):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "signature_invalid")


def test_manifest_signed_by_unknown_key(signed_in: SealportClient, tmp_path: Path) -> None:
    rogue_root, rogue = trust.generate_signing_key(), trust.generate_signing_key()
    now = int(time.time())
    cert = trust.issue_delivery_cert(
        rogue_root,
        rogue.public_key(),
        key_id="rogue",
        not_before=now - 60,
        not_after=now + 3600,
        serial=1,
    )

    def resign_rogue(env: dict[str, Any]) -> dict[str, Any]:
        data = base64.b64decode(env["manifest"])
        return {
            "manifest": env["manifest"],
            "signature": base64.b64encode(rogue.sign(MANIFEST_PREFIX + data)).decode(),
            "key_id": "rogue",
            "delivery_cert": cert,
            "root_public_key": base64.b64encode(trust.raw_public(rogue_root.public_key())).decode(),
        }

    on_response(signed_in, is_manifest, lambda r: rewrite_manifest(r, resign_rogue))
    with pytest.raises(UntrustedKey):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "untrusted_key")


def test_manifest_signed_by_expired_delivery_key(
    signed_in: SealportClient, sealport_server: Any, tmp_path: Path
) -> None:
    keys = Path(sealport_server.data_dir) / "keys"
    root = trust.load_private_key(keys / "root.key")
    old = trust.generate_signing_key()
    now = int(time.time())
    cert = trust.issue_delivery_cert(
        root,
        old.public_key(),
        key_id="old-key",
        not_before=now - 90 * 86400,
        not_after=now - 86400,
        serial=1,
    )

    def resign_old(env: dict[str, Any]) -> dict[str, Any]:
        data = base64.b64decode(env["manifest"])
        env.update(
            signature=base64.b64encode(old.sign(MANIFEST_PREFIX + data)).decode(),
            key_id="old-key",
            delivery_cert=cert,
        )
        return env

    on_response(signed_in, is_manifest, lambda r: rewrite_manifest(r, resign_old))
    with pytest.raises(UntrustedKey, match="expired"):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "untrusted_key")


def test_manifest_signed_by_revoked_delivery_key(sealport_server: Any, tmp_path: Path) -> None:
    keys = Path(sealport_server.data_dir) / "keys"
    cert = json.loads((keys / "delivery-cert.json").read_text())
    key_id = json.loads(base64.b64decode(cert["cert"]))["key_id"]
    client = make_client(
        sealport_server, tmp_path / "ws", trust=f'revoked_delivery_keys = ["{key_id}"]'
    )
    sign_in(client, sealport_server, sealport_server.username, sealport_server.password)
    with pytest.raises(UntrustedKey, match="revoked"):
        client.secure_import(asset_by_format(client, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(client, tmp_path / "out", "untrusted_key")


def test_expired_manifest(signed_in: SealportClient, sealport_server: Any, tmp_path: Path) -> None:
    now = int(time.time())
    on_response(
        signed_in,
        is_manifest,
        lambda r: rewrite_manifest(
            r, resign(sealport_server, issued_at=now - 7200, expires_at=now - 3600)
        ),
    )
    with pytest.raises(ManifestExpired):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "manifest_expired")


def test_rollback_to_older_version(
    signed_in: SealportClient, sealport_server: Any, tmp_path: Path
) -> None:
    asset = asset_by_format(signed_in, "obj")
    first = signed_in.secure_import(asset["asset_id"], tmp_path / "first")
    version = first.manifest.version
    signed_in.session.hooks["response"].clear()
    on_response(
        signed_in,
        is_manifest,
        lambda r: rewrite_manifest(r, resign(sealport_server, version=version - 1)),
    )
    with pytest.raises(RollbackDetected):
        signed_in.secure_import(asset["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "rollback")


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("user", "mallory", "another user"),
        (
            "recipient",
            "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
            "another workstation",
        ),
    ],
)
def test_manifest_for_someone_else(
    signed_in: SealportClient,
    sealport_server: Any,
    tmp_path: Path,
    field: str,
    value: str,
    match: str,
) -> None:
    on_response(
        signed_in,
        is_manifest,
        lambda r: rewrite_manifest(r, resign(sealport_server, **{field: value})),
    )
    with pytest.raises(WrongRecipient, match=match):
        signed_in.secure_import(asset_by_format(signed_in, "glb")["asset_id"], tmp_path / "out")
    assert_nothing_imported(signed_in, tmp_path / "out", "wrong_recipient")


# --- the cache keeps nothing usable --------------------------------------------------------
def test_cached_ciphertext_resumes_after_partial_download(
    signed_in: SealportClient, sealport_server: Any, tmp_path: Path
) -> None:
    """A partial ciphertext in the cache (dropped connection) is resumed with Range."""
    asset = asset_by_format(signed_in, "glb")
    seen: list[str] = []

    def keep_partial(resp: requests.Response) -> None:
        path = sealed_payload(sealport_server, resp)
        part = signed_in.config.cache_dir / "deliveries" / path.name
        part.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, part)
        with open(part, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)

    def record_range(resp: requests.Response) -> None:
        seen.append(resp.request.headers.get("Range", ""))

    on_response(signed_in, is_delivery_post, keep_partial)
    on_response(signed_in, lambda r: r.url.endswith("/payload"), record_range)
    result = signed_in.secure_import(asset["asset_id"], tmp_path / "out")
    assert result.path.exists() and seen and seen[0].startswith("bytes=")


# --- cancellation --------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["download", "decrypt", "format check", "watermark"])
def test_cancel_mid_import_leaves_nothing(
    signed_in: SealportClient, tmp_path: Path, stage: str
) -> None:
    from sealport.errors import Cancelled
    from sealport.progress import Progress

    progress: Progress

    def callback(seen: str, done: int, total: int) -> None:
        if seen == stage:
            progress.cancel()

    progress = Progress(callback)
    asset = asset_by_format(signed_in, "stl")
    with pytest.raises(Cancelled):
        signed_in.secure_import(asset["asset_id"], tmp_path / "out", progress)
    assert list((tmp_path / "out").rglob("*")) == []
    assert signed_in.audit.records()[-1]["event"] == "import.cancelled"


def test_ctrl_c_cancels_cooperatively() -> None:
    import os
    import signal

    from sealport.cli import cancellable
    from sealport.progress import Progress

    progress = Progress()
    before = signal.getsignal(signal.SIGINT)  # default, or SIG_IGN under a background job
    with cancellable(progress):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert progress.cancelled  # first Ctrl-C: cooperative cancel, no exception yet
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


def test_next_import_sweeps_a_killed_imports_plaintext(
    signed_in: SealportClient, tmp_path: Path
) -> None:
    """A temp file whose owner died (no lock held) is deleted and audited; the import works."""
    from sealport.payload import TEMP_PREFIX, TEMP_SUFFIX

    out = tmp_path / "out"
    out.mkdir()
    leftover = out / f"{TEMP_PREFIX}{'0' * 16}{TEMP_SUFFIX}"
    leftover.write_bytes(b"plaintext of an import whose DCC was killed")
    asset = asset_by_format(signed_in, "obj")
    result = signed_in.secure_import(asset["asset_id"], out)
    assert not leftover.exists() and result.path.exists()
    swept = [r for r in signed_in.audit.records() if r["event"] == "cleanup.abandoned_plaintext"]
    assert [r["data"]["file"] for r in swept] == [leftover.name]
    assert signed_in.audit.verify().ok
