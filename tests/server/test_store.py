"""Asset store, admin commands, password storage and signing-key set-up."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sealport import trust
from sealport.server import add_asset, add_user, seed_demo
from sealport.server.idp import hash_password, load_or_create_signing_key, verify_password
from sealport.server.sealing import ensure_keys
from sealport.server.store import open_ledger


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_add_asset_versions_and_store_layout(tmp_path: Path):
    data = tmp_path / "data"
    v1 = add_asset(
        data,
        _file(tmp_path, "chair.obj", b"v 0 0 0\n"),
        name="chair",
        project="p",
        created_by="lead1",
    )
    v2 = add_asset(data, _file(tmp_path, "chair.obj", b"v 1 1 1\n"), name="chair", project="p")
    assert (v1.version, v2.version) == (1, 2) and v1.asset_id == v2.asset_id
    assert v1.format == "obj" and v1.created_by == "lead1"
    stored = data / "store" / v1.asset_id / "2" / "chair.obj"
    assert stored.read_bytes() == b"v 1 1 1\n"
    other = add_asset(data, _file(tmp_path, "chair.obj", b"x"), name="chair", project="q")
    assert other.asset_id != v1.asset_id
    with pytest.raises(ValueError):
        add_asset(data, _file(tmp_path, "chair.obj", b"x"), name="chair", project="p", version=2)
    with pytest.raises(ValueError):
        add_asset(data, _file(tmp_path, "evil.exe", b"x"), name="evil", project="p")
    led = open_ledger(data)
    try:
        latest = led.list_latest_assets()
        assert {(a.project, a.version) for a in latest} == {("p", 2), ("q", 1)}
    finally:
        led.close()


def test_seed_demo_is_idempotent(tmp_path: Path):
    user, pw = seed_demo(tmp_path)
    led = open_ledger(tmp_path)
    try:
        before = len(led.list_latest_assets())
        u = led.get_user(user)
        assert u is not None and u.mfa and verify_password(pw, u.password_hash)
    finally:
        led.close()
    seed_demo(tmp_path)
    led = open_ledger(tmp_path)
    try:
        assert len(led.list_latest_assets()) == before
        assert all(a.version == 1 for a in led.list_latest_assets())
    finally:
        led.close()


def test_add_user_validation_and_password_hashing(tmp_path: Path):
    add_user(tmp_path, "lead-1", "pw-1", roles=["lead"], mfa=True, name="Lead One")
    led = open_ledger(tmp_path)
    try:
        u = led.get_user("lead-1")
        assert u is not None and u.roles == ("lead",) and u.name == "Lead One"
        assert "pw-1" not in u.password_hash and u.password_hash.startswith("scrypt$")
    finally:
        led.close()
    with pytest.raises(ValueError):
        add_user(tmp_path, "x", "pw", roles=["superuser"])
    with pytest.raises(ValueError):
        add_user(tmp_path, "bad name", "pw")
    a, b = hash_password("same"), hash_password("same")
    assert a != b  # per-user salt
    assert verify_password("same", a) and not verify_password("other", a)
    assert not verify_password("same", "garbage")


def test_keys_are_private_and_stable(tmp_path: Path):
    k1 = ensure_keys(tmp_path)
    k2 = ensure_keys(tmp_path)
    assert k1.root_fingerprint == k2.root_fingerprint and k1.delivery_cert == k2.delivery_cert
    assert k1.root_fingerprint == trust.fingerprint(k1.root_public)
    for name in ("root.key", "delivery.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode) == 0o600
    jwk = load_or_create_signing_key(tmp_path)
    assert load_or_create_signing_key(tmp_path).kid == jwk.kid
    path = tmp_path / "idp" / "signing.jwk"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["crv"] == "Ed25519"
