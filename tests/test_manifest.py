"""What the signed manifest promises: every attack on it is refused with a typed error."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import pytest
from sealport import trust
from sealport.errors import (
    MalformedManifest,
    ManifestExpired,
    SignatureInvalid,
    UntrustedKey,
    WrongRecipient,
)
from sealport.manifest import FileEntry, Manifest, PayloadInfo, sign_manifest, verify_envelope
from sealport.trust import TrustPolicy

NOW = int(time.time())
HEX = "ab" * 32


class Keys:
    def __init__(self) -> None:
        self.root = trust.generate_signing_key()
        self.delivery = trust.generate_signing_key()
        self.cert = trust.issue_delivery_cert(
            self.root,
            self.delivery.public_key(),
            key_id="dk-1",
            not_before=NOW - 60,
            not_after=NOW + 3600,
            serial=1,
        )
        self.policy = TrustPolicy((trust.fingerprint(self.root.public_key()),))

    def sign(self, m: Manifest, **kw: object) -> dict:
        args = dict(key_id="dk-1", delivery_cert=self.cert, root_public_key=self.root.public_key())
        args.update(kw)
        return sign_manifest(m, self.delivery, **args)  # type: ignore[arg-type]


@pytest.fixture
def keys() -> Keys:
    return Keys()


def manifest(**kw: object) -> Manifest:
    m = Manifest(
        delivery_id="d1",
        asset_id="a1",
        name="crate",
        project="demo",
        version=3,
        format="glb",
        files=(FileEntry("crate.glb", 10, HEX),),
        payload=PayloadInfo("age-x25519", 200, HEX),
        recipient="age1me",
        device_id="dev1",
        user="alice",
        issued_at=NOW - 10,
        expires_at=NOW + 3600,
    )
    return replace(m, **kw)  # type: ignore[arg-type]


def verify(keys: Keys, env: dict, **kw: object) -> object:
    args: dict = dict(policy=keys.policy, now=NOW, user="alice", recipient="age1me")
    args.update(kw)
    return verify_envelope(env, **args)


def test_good_manifest_verifies(keys: Keys) -> None:
    vm = verify(keys, keys.sign(manifest()))
    assert vm.manifest.version == 3 and vm.delivery_key_id == "dk-1"
    assert vm.root_fingerprint == keys.policy.root_fingerprints[0]


def test_flipped_byte_in_manifest_breaks_signature(keys: Keys) -> None:
    env = keys.sign(manifest())
    raw = bytearray(base64.b64decode(env["manifest"]))
    raw[raw.index(b'"version":3') + 10] = ord("9")
    env["manifest"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureInvalid):
        verify(keys, env)


def test_signature_by_uncertified_key(keys: Keys) -> None:
    rogue = trust.generate_signing_key()
    env = sign_manifest(
        manifest(),
        rogue,
        key_id="dk-1",
        delivery_cert=keys.cert,
        root_public_key=keys.root.public_key(),
    )
    with pytest.raises(SignatureInvalid):
        verify(keys, env)


def test_unknown_root(keys: Keys) -> None:
    other = Keys()
    with pytest.raises(UntrustedKey, match="root key"):
        verify(keys, other.sign(manifest()))


def test_cert_signed_by_other_root(keys: Keys) -> None:
    other_root = trust.generate_signing_key()
    forged = trust.issue_delivery_cert(
        other_root,
        keys.delivery.public_key(),
        key_id="dk-1",
        not_before=NOW - 60,
        not_after=NOW + 60,
        serial=2,
    )
    with pytest.raises(UntrustedKey, match="did not certify"):
        verify(keys, keys.sign(manifest(), delivery_cert=forged))


def test_revoked_delivery_key(keys: Keys) -> None:
    policy = TrustPolicy(keys.policy.root_fingerprints, revoked_key_ids=("dk-1",))
    with pytest.raises(UntrustedKey, match="revoked"):
        verify(keys, keys.sign(manifest()), policy=policy)


def test_expired_delivery_key(keys: Keys) -> None:
    old = trust.issue_delivery_cert(
        keys.root,
        keys.delivery.public_key(),
        key_id="dk-1",
        not_before=NOW - 7200,
        not_after=NOW - 3600,
        serial=1,
    )
    with pytest.raises(UntrustedKey, match="expired"):
        verify(keys, keys.sign(manifest(), delivery_cert=old))


def test_expired_manifest(keys: Keys) -> None:
    env = keys.sign(manifest(issued_at=NOW - 7200, expires_at=NOW - 3600))
    with pytest.raises(ManifestExpired):
        verify(keys, env)


def test_expiry_tolerates_stated_clock_skew(keys: Keys) -> None:
    env = keys.sign(manifest(expires_at=NOW - 60))
    verify(keys, env)  # within the default 120 s tolerance
    with pytest.raises(ManifestExpired):
        verify(keys, env, now=NOW + 121)


def test_other_user(keys: Keys) -> None:
    with pytest.raises(WrongRecipient, match="another user"):
        verify(keys, keys.sign(manifest(user="bob")))


def test_other_device(keys: Keys) -> None:
    with pytest.raises(WrongRecipient, match="another workstation"):
        verify(keys, keys.sign(manifest(recipient="age1someoneelse")))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("payload"),
        lambda b: b.update(files=[]),
        lambda b: b.update(files=[{"path": "../../etc/passwd", "size": 1, "sha256": HEX}]),
        lambda b: b.update(format="exe"),
        lambda b: b.update(version="3"),
        lambda b: b.update(type="other"),
    ],
)
def test_malformed_fields_refused_even_when_signed(keys: Keys, mutate) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(manifest().to_json_bytes())
    mutate(body)
    data = json.dumps(body).encode()
    from sealport.manifest import MANIFEST_PREFIX

    env = keys.sign(manifest())
    env["manifest"] = base64.b64encode(data).decode()
    env["signature"] = base64.b64encode(keys.delivery.sign(MANIFEST_PREFIX + data)).decode()
    with pytest.raises(MalformedManifest):
        verify(keys, env)


@pytest.mark.parametrize("env", [None, [], {"manifest": "!!!"}, {"root_public_key": 5}])
def test_garbage_envelope(keys: Keys, env: object) -> None:
    with pytest.raises((MalformedManifest, UntrustedKey)):
        verify(keys, env)  # type: ignore[arg-type]
