"""Tunable knobs of the reference server, in one frozen place.

Defaults are the production-ish values of PROTOCOL.md; tests shorten the
device-flow interval and lifetimes through the same object instead of
patching module globals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_AUDIENCE = "sealport-api"
CLIENT_ID = "sealport"
CLIENT_NAME = "Sealport"

WatermarkCheck = Callable[[], tuple[Path, dict[str, Any]] | None]
"""A hook's deferred check, run by sealing on a second thread while it encrypts:
None keeps the sealed copy; a (file, watermark dict) pair replaces it (sealed anew)."""

WatermarkHook = Callable[
    [Path, Path, dict[str, Any]],
    tuple[Path, dict[str, Any]] | tuple[Path, dict[str, Any], WatermarkCheck],
]
"""(plaintext source, private work dir, delivery info) -> (file to seal, watermark dict[, check]).

``delivery info`` holds delivery_id, asset_id, version, sha256 (of the stored
asset file), format, user, device_id, issued_at. The returned dict becomes the manifest's ``watermark`` field.
The optional third element is a :data:`WatermarkCheck` that sealing overlaps with
the encryption (why: checking a marked 100 MB mesh costs as much as sealing it).
"""


@dataclass(frozen=True)
class ServerSettings:
    """Everything a running server needs to know besides its data folder."""

    public_url: str = ""
    """https://host:port as clients see it; issuer of the embedded IdP."""
    device_interval: int = 5
    device_code_ttl: int = 600
    access_token_ttl: int = 300
    id_token_ttl: int = 300
    refresh_token_ttl: int = 8 * 3600
    manifest_ttl: int = 3600
    jwt_leeway: int = 30
    verify_max_failures: int = 10
    """Wrong user codes / passwords per IP per window before the page answers 429."""
    verify_window: int = 300
    max_audit_events: int = 500
    max_request_body: int = 1024 * 1024
    """Bytes; larger request bodies get 413 before they are read (body_limit.py)."""
    require_mfa_for_delivery: bool = False
    """Refuse deliveries to sessions whose ``amr`` lacks "otp"."""
    external_issuer: str | None = None
    """Trust access tokens from another OIDC issuer instead of the embedded IdP."""
    external_jwks_uri: str | None = None
    external_ca_file: str | None = None
    jwt_algorithms: tuple[str, ...] = ("EdDSA",)
    dpop_required: bool = False
    """RFC 9449: refuse bearer tokens and token requests without a DPoP proof. Off by
    default: tokens issued against a proof are DPoP-bound (and then always need one),
    plain bearer tokens stay accepted."""
    dpop_nonce: bool = False
    """Demand server-issued DPoP nonces (``use_dpop_nonce``) on token and API requests."""
    dpop_window: int = 60
    """Accepted age of a DPoP proof's ``iat`` (seconds, either direction)."""
    watermark: WatermarkHook | None = None
    watermark_premarked: int = 1
    """Copies of each recently delivered asset version that the studio watermark hook
    marks ahead of the next request (server/premark.py); 0 marks every delivery on request.
    Pooled copies are encrypted ahead too; with watermarking off (``watermarking.disabled``)
    this many copies of the stored file are encrypted ahead (0: encrypt on request)."""
    # --- authorization, detection and SIEM (issue 6; docs/SERVER_SECURITY.md) ---------
    pipeline_token_ttl: int = 300
    """Lifetime of client-credentials tokens of pipeline clients (capped at 300 s)."""
    rate_account_per_minute: float = 240.0
    """Token bucket per account (token ``sub``): sustained API requests per minute."""
    rate_account_burst: int = 120
    rate_device_per_minute: float = 120.0
    """Token bucket per workstation key: deliveries, manifests and payload requests."""
    rate_device_burst: int = 60
    spike_deliveries: int = 100
    """More deliveries than this from one account within ``spike_window`` seconds
    revoke all its sessions and raise a security alert."""
    spike_window: int = 600
    siem_files: bool = True
    """Write the chained SIEM export to DATA/siem/events.jsonl and events.syslog."""
    siem_syslog_target: str | None = None
    """``udp://host:port`` or ``tcp://host:port``: also send RFC 5424 lines there."""
    expose_openapi: bool = True
    """Serve the API description at /openapi.json (docs/openapi.json is the same)."""

    @property
    def issuer(self) -> str:
        return (self.external_issuer or self.public_url).rstrip("/")
