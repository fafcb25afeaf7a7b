"""Signing keys and the delivery-key certificate chain.

Two levels, as in TUF: an *offline root* key (its SHA-256 fingerprint is in
every workstation's config) certifies an *online delivery* key for a bounded
time; the delivery key signs each manifest. Losing the delivery key costs a
re-certification and a revocation entry, not a redeploy of every config.

All signatures are Ed25519 (``cryptography``) over a domain-separation prefix
plus the exact JSON bytes, so no canonicalisation is ever needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import MalformedManifest, SignatureInvalid, UntrustedKey
from .paths import atomic_write_bytes

CERT_TYPE = "sealport-delivery-cert/v1"
CERT_PREFIX = b"sealport-delivery-cert/v1\n"


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedManifest(_BAD, detail=f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedManifest(_BAD, detail=f"{what}: {exc}") from exc


_BAD = (
    "The asset's signed manifest is malformed, so it cannot be trusted; nothing was imported. "
    "Tell your pipeline TD."
)


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw public key: what studio configs pin."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def save_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write_bytes(path, pem, mode=0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key(path)
    key = generate_signing_key()
    os.makedirs(path.parent, exist_ok=True)
    save_private_key(path, key)
    return key


def issue_delivery_cert(
    root_key: Ed25519PrivateKey,
    delivery_public_key: Ed25519PublicKey,
    *,
    key_id: str,
    not_before: int,
    not_after: int,
    serial: int,
) -> dict[str, str]:
    body = {
        "type": CERT_TYPE,
        "key_id": key_id,
        "public_key": b64e(raw_public(delivery_public_key)),
        "not_before": int(not_before),
        "not_after": int(not_after),
        "serial": int(serial),
    }
    cert = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {"cert": b64e(cert), "signature": b64e(root_key.sign(CERT_PREFIX + cert))}


@dataclass(frozen=True)
class DeliveryCert:
    key_id: str
    public_key: Ed25519PublicKey
    not_before: int
    not_after: int
    serial: int
    root_fingerprint: str


@dataclass(frozen=True)
class TrustPolicy:
    """What this workstation trusts; built from the studio config."""

    root_fingerprints: tuple[str, ...]
    revoked_key_ids: tuple[str, ...] = ()
    clock_skew: int = 120


def verify_root(root_public_b64: Any, policy: TrustPolicy) -> Ed25519PublicKey:
    raw = b64d(root_public_b64, "root_public_key")
    if len(raw) != 32:
        raise MalformedManifest(_BAD, detail="root public key is not 32 bytes")
    key = Ed25519PublicKey.from_public_bytes(raw)
    fp = fingerprint(key)
    if fp not in policy.root_fingerprints:
        raise UntrustedKey(
            "The asset was signed under a root key this workstation does not trust; nothing "
            "was imported. If your studio rotated its keys, your TD must update sealport.toml.",
            detail=f"root fingerprint {fp} not in trust.root_fingerprints",
        )
    return key


def verify_delivery_cert(
    signed: Any, root: Ed25519PublicKey, policy: TrustPolicy, now: int
) -> DeliveryCert:
    """Check the root's signature, the validity window and the revocation list."""
    if not isinstance(signed, dict):
        raise MalformedManifest(_BAD, detail="delivery_cert is not an object")
    cert = b64d(signed.get("cert"), "delivery_cert.cert")
    sig = b64d(signed.get("signature"), "delivery_cert.signature")
    try:
        root.verify(sig, CERT_PREFIX + cert)
    except InvalidSignature as exc:
        raise UntrustedKey(
            "The asset was signed by a delivery key that the studio root did not certify; "
            "nothing was imported. Tell your pipeline TD.",
            detail="delivery certificate signature invalid",
        ) from exc
    try:
        body = json.loads(cert)
        key_raw = b64d(body["public_key"], "cert.public_key")
        dc = DeliveryCert(
            key_id=str(body["key_id"]),
            public_key=Ed25519PublicKey.from_public_bytes(key_raw),
            not_before=int(body["not_before"]),
            not_after=int(body["not_after"]),
            serial=int(body["serial"]),
            root_fingerprint=fingerprint(root),
        )
        if body.get("type") != CERT_TYPE:
            raise ValueError(f"type {body.get('type')!r}")
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        # OverflowError: a JSON number like 1e999 is float inf and int(inf) overflows
        # (found by tests/fuzz/fuzz_cert.py); RecursionError: absurdly nested JSON.
        raise MalformedManifest(_BAD, detail=f"delivery certificate: {exc}") from exc
    if dc.key_id in policy.revoked_key_ids:
        raise UntrustedKey(
            "The asset was signed by a delivery key the studio has revoked; nothing was "
            "imported. Tell your pipeline TD: the server must be re-keyed.",
            detail=f"delivery key {dc.key_id} is in trust.revoked_delivery_keys",
        )
    if now + policy.clock_skew < dc.not_before or now - policy.clock_skew > dc.not_after:
        raise UntrustedKey(
            "The asset was signed by a delivery key that has expired (or is not valid yet); "
            "nothing was imported. Check this computer's clock; if it is right, tell your TD.",
            detail=f"delivery key {dc.key_id} valid {dc.not_before}..{dc.not_after}, now {now}",
        )
    return dc


def verify_signature(key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    try:
        key.verify(signature, message)
    except InvalidSignature as exc:
        raise SignatureInvalid(
            "The asset's manifest signature is invalid: it was changed after the studio "
            "signed it. Nothing was imported. Tell your pipeline TD.",
            detail="Ed25519 signature over the manifest does not verify",
        ) from exc
