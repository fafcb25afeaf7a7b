"""Fixed signing keys for the manifest and certificate fuzz targets and their seeds.

Deterministic (derived from constant seeds) so the committed seed corpus stays
valid across runs: a seed signed with these keys verifies, and mutations of it
exercise the checks after the signature. Test keys only; never used elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealport import trust

NOW = 1_800_000_000
USER = "artist1"
RECIPIENT = "age1wuhc5y4aau5yam3ergk74tlgy6s6axql375ywnfcp6e33jdqv4eqdf373a"


@dataclass(frozen=True)
class FixedKeys:
    root: Ed25519PrivateKey
    delivery: Ed25519PrivateKey
    key_id: str
    cert: dict[str, str]
    policy: trust.TrustPolicy


def fixed_keys() -> FixedKeys:
    root = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    delivery = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    cert = trust.issue_delivery_cert(
        root,
        delivery.public_key(),
        key_id="dk-fuzz",
        not_before=NOW - 3600,
        not_after=NOW + 3600,
        serial=1,
    )
    policy = trust.TrustPolicy(
        (trust.fingerprint(root.public_key()),), revoked_key_ids=("dk-revoked",)
    )
    return FixedKeys(root, delivery, "dk-fuzz", cert, policy)
