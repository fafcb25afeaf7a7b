"""The signed delivery manifest: model, signing, verification.

The manifest is the only thing that makes a delivery genuine (age does not
authenticate the sender). It binds every hash and size (mix-and-match, endless
data), the recipient device key and user (wrong recipient), the version
(rollback, checked by :mod:`sealport.rollback`) and an expiry (freeze).
Each check is its own small function, as in python-tuf's ngclient.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import MalformedManifest, ManifestExpired, WrongRecipient
from .trust import (
    TrustPolicy,
    b64d,
    b64e,
    raw_public,
    verify_delivery_cert,
    verify_root,
    verify_signature,
)

MANIFEST_TYPE = "sealport-manifest/v1"
MANIFEST_PREFIX = b"sealport-manifest/v1\n"
MAX_ENVELOPE_BYTES = 256 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,200}$")
FORMATS = ("usd", "usdz", "fbx", "obj", "stl", "glb", "3mf")

_BAD = (
    "The asset's signed manifest is malformed, so it cannot be trusted; nothing was imported. "
    "Tell your pipeline TD."
)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PayloadInfo:
    encryption: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    delivery_id: str
    asset_id: str
    name: str
    project: str
    version: int
    format: str
    files: tuple[FileEntry, ...]
    payload: PayloadInfo
    recipient: str
    device_id: str
    user: str
    issued_at: int
    expires_at: int
    watermark: dict[str, Any] | None = None
    type: str = MANIFEST_TYPE

    @property
    def file(self) -> FileEntry:
        """The delivered file (one per delivery; USDZ is itself a package)."""
        return self.files[0]

    def to_json_bytes(self) -> bytes:
        body = asdict(self)
        body["files"] = [asdict(f) for f in self.files]
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _req(body: dict[str, Any], key: str, typ: type) -> Any:
    value = body.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise MalformedManifest(
            _BAD, detail=f"manifest field {key!r} missing or not {typ.__name__}"
        )
    return value


def parse_manifest(data: bytes) -> Manifest:
    """Strictly parse manifest JSON bytes (every field typed and bounded)."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedManifest(_BAD, detail=f"manifest JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("type") != MANIFEST_TYPE:
        raise MalformedManifest(_BAD, detail="not a sealport-manifest/v1 document")
    files_raw = _req(body, "files", list)
    if len(files_raw) != 1:
        raise MalformedManifest(_BAD, detail="exactly one file per delivery is supported")
    files = []
    for f in files_raw:
        if not isinstance(f, dict):
            raise MalformedManifest(_BAD, detail="file entry is not an object")
        entry = FileEntry(_req(f, "path", str), _req(f, "size", int), _req(f, "sha256", str))
        if not _SAFE_NAME.match(entry.path) or ".." in entry.path:
            raise MalformedManifest(_BAD, detail=f"unsafe file name {entry.path!r}")
        if entry.size < 0 or not _HEX64.match(entry.sha256):
            raise MalformedManifest(_BAD, detail="bad file size or sha256")
        files.append(entry)
    p = _req(body, "payload", dict)
    payload = PayloadInfo(_req(p, "encryption", str), _req(p, "size", int), _req(p, "sha256", str))
    if payload.encryption != "age-x25519" or payload.size <= 0 or not _HEX64.match(payload.sha256):
        raise MalformedManifest(_BAD, detail="bad payload description")
    fmt = _req(body, "format", str)
    if fmt not in FORMATS:
        raise MalformedManifest(_BAD, detail=f"unsupported format {fmt!r}")
    for key in ("name", "project"):
        # Shown to the artist: no control/bidi/zero-width characters (an RTL override can
        # make "crate\u202egnp.exe" read as "crateexe.png"), no lone surrogates, bounded.
        text = _req(body, key, str)
        if len(text) > 200 or any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in text):
            raise MalformedManifest(
                _BAD, detail=f"manifest {key} {text[:80]!r} has control characters or is too long"
            )
    wm = body.get("watermark")
    if wm is not None and not isinstance(wm, dict):
        raise MalformedManifest(_BAD, detail="watermark must be an object or null")
    return Manifest(
        delivery_id=_req(body, "delivery_id", str),
        asset_id=_req(body, "asset_id", str),
        name=_req(body, "name", str),
        project=_req(body, "project", str),
        version=_req(body, "version", int),
        format=fmt,
        files=tuple(files),
        payload=payload,
        recipient=_req(body, "recipient", str),
        device_id=_req(body, "device_id", str),
        user=_req(body, "user", str),
        issued_at=_req(body, "issued_at", int),
        expires_at=_req(body, "expires_at", int),
        watermark=wm,
    )


def sign_manifest(
    manifest: Manifest,
    delivery_key: Ed25519PrivateKey,
    *,
    key_id: str,
    delivery_cert: dict[str, str],
    root_public_key: Ed25519PublicKey,
) -> dict[str, Any]:
    data = manifest.to_json_bytes()
    return {
        "manifest": b64e(data),
        "signature": b64e(delivery_key.sign(MANIFEST_PREFIX + data)),
        "key_id": key_id,
        "delivery_cert": delivery_cert,
        "root_public_key": b64e(raw_public(root_public_key)),
    }


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose chain, signature, expiry and recipient all checked out."""

    manifest: Manifest
    delivery_key_id: str
    root_fingerprint: str
    sha256: str


def check_expiry(m: Manifest, now: int, skew: int) -> None:
    if now - skew > m.expires_at:
        raise ManifestExpired(
            "The download offer for this asset has expired; nothing was imported. Start the "
            "import again to get a fresh one (check this computer's clock if it keeps happening).",
            detail=f"manifest expired at {m.expires_at}, now {now}",
        )
    if m.issued_at > now + skew:
        raise ManifestExpired(
            "The asset's manifest claims to be issued in the future; nothing was imported. "
            "Check this computer's clock.",
            detail=f"issued_at {m.issued_at} > now {now} + skew {skew}",
        )


def check_recipient(m: Manifest, *, user: str, recipient: str) -> None:
    if m.user != user:
        raise WrongRecipient(
            "This delivery was issued to another user; nothing was imported. Sign in as "
            "yourself and import again.",
            detail=f"manifest user {m.user!r}, signed-in user {user!r}",
        )
    if m.recipient != recipient:
        raise WrongRecipient(
            "This delivery was encrypted for another workstation; nothing was imported. "
            "Import it again from this computer.",
            detail=f"manifest recipient {m.recipient}, this device {recipient}",
        )


def verify_envelope(
    envelope: Any,
    *,
    policy: TrustPolicy,
    now: int,
    user: str,
    recipient: str,
) -> VerifiedManifest:
    """Verify root → delivery cert → manifest signature → fields → expiry → recipient."""
    import hashlib

    if not isinstance(envelope, dict):
        raise MalformedManifest(_BAD, detail="envelope is not a JSON object")
    root = verify_root(envelope.get("root_public_key"), policy)
    cert = verify_delivery_cert(envelope.get("delivery_cert"), root, policy, now)
    if envelope.get("key_id") != cert.key_id:
        raise MalformedManifest(_BAD, detail="key_id does not match the delivery certificate")
    data = b64d(envelope.get("manifest"), "manifest")
    signature = b64d(envelope.get("signature"), "signature")
    verify_signature(cert.public_key, signature, MANIFEST_PREFIX + data)
    m = parse_manifest(data)
    check_expiry(m, now, policy.clock_skew)
    check_recipient(m, user=user, recipient=recipient)
    return VerifiedManifest(m, cert.key_id, cert.root_fingerprint, hashlib.sha256(data).hexdigest())
