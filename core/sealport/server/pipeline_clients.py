"""Pipeline (service) clients: OAuth 2.0 client credentials for farm and bot accounts.

Why a separate kind of caller: a render-farm sync job or a publishing bot has
no person to approve a device code and no keyring to keep a refresh token.
It gets a registered ``client_id`` + secret (stored only as a scrypt hash),
trades them for a short-lived access token (role ``pipeline``, at most five
minutes, no refresh token, RFC 6749 §4.4) and may call the API only from the
networks on its allow-list, so a leaked secret is useless off the farm.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .ledger import Ledger
from .settings import API_AUDIENCE

if TYPE_CHECKING:
    from .idp import DevIdP

CLIENT_CREDENTIALS = "client_credentials"
PIPELINE_ROLE = "pipeline"
SUB_PREFIX = "pipeline:"
MAX_TOKEN_TTL = 300

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipeline_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    allowed_ips TEXT NOT NULL,  -- JSON list of CIDRs
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class PipelineClient:
    client_id: str
    name: str
    secret_hash: str
    allowed_ips: tuple[str, ...]
    disabled: bool

    @property
    def sub(self) -> str:
        return SUB_PREFIX + self.client_id

    def ip_allowed(self, ip: str) -> bool:
        """True if ``ip`` falls in one of the allow-listed networks (never for "unknown")."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(net, strict=False) for net in self.allowed_ips)


def ensure_schema(ledger: Ledger) -> None:
    ledger.ensure_schema(SCHEMA)


def _check_networks(allowed_ips: Sequence[str]) -> tuple[str, ...]:
    nets = tuple(str(ipaddress.ip_network(n.strip(), strict=False)) for n in allowed_ips)
    if not nets:
        raise ValueError("a pipeline client needs at least one allowed network (CIDR)")
    return nets


def register_pipeline_client(
    ledger: Ledger, client_id: str, allowed_ips: Sequence[str], *, name: str | None = None
) -> str:
    """Create (or re-key) a pipeline client; returns the new secret (shown once)."""
    from .idp import hash_password

    if not client_id or not client_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError("client_id must be letters, digits, '-' or '_'")
    nets = _check_networks(allowed_ips)
    secret = secrets.token_urlsafe(32)
    ensure_schema(ledger)
    with ledger.tx() as c:
        c.execute(
            "INSERT INTO pipeline_clients(client_id, name, secret_hash, allowed_ips, created_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(client_id) DO UPDATE SET name=excluded.name, "
            "secret_hash=excluded.secret_hash, allowed_ips=excluded.allowed_ips, disabled=0",
            (client_id, name or client_id, hash_password(secret), json.dumps(nets), _now()),
        )
    return secret


def set_allowed_ips(ledger: Ledger, client_id: str, allowed_ips: Sequence[str]) -> None:
    """Change a client's allow-list (takes effect on its next request)."""
    nets = _check_networks(allowed_ips)
    with ledger.tx() as c:
        c.execute(
            "UPDATE pipeline_clients SET allowed_ips=? WHERE client_id=?",
            (json.dumps(nets), client_id),
        )


def get_client(ledger: Ledger, client_id: str) -> PipelineClient | None:
    row = ledger.one("SELECT * FROM pipeline_clients WHERE client_id=?", (client_id,))
    if row is None:
        return None
    return PipelineClient(
        row["client_id"],
        row["name"],
        row["secret_hash"],
        tuple(json.loads(row["allowed_ips"])),
        bool(row["disabled"]),
    )


def client_from_sub(ledger: Ledger, sub: str) -> PipelineClient | None:
    if not sub.startswith(SUB_PREFIX):
        return None
    return get_client(ledger, sub[len(SUB_PREFIX) :])


class GrantError(Exception):
    """An RFC 6749 §5.2 error of the client-credentials grant."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str]:
    """client_secret_basic (RFC 6749 §2.3.1, form-urlencoded parts) or client_secret_post."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise GrantError("invalid_client", "Malformed Basic credentials.", 401) from exc
        cid, sep, secret = raw.partition(":")
        if not sep:
            raise GrantError("invalid_client", "Malformed Basic credentials.", 401)
        return unquote(cid), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def client_credentials_grant(
    idp: DevIdP, form: dict[str, str], authorization: str | None, ip: str
) -> dict[str, Any]:
    """Authenticate a pipeline client and issue its short-lived access token."""
    from .idp import _DUMMY_HASH, verify_password

    ledger = idp.ledger
    ensure_schema(ledger)
    client_id, secret = _credentials(form, authorization)
    client = get_client(ledger, client_id[:128]) if client_id else None
    ok = verify_password(secret[:512], client.secret_hash if client else _DUMMY_HASH)
    if client is None or client.disabled or not ok:
        ledger.add_audit(
            [{"event": "pipeline_auth_failed", "client_id": client_id[:128]}],
            source="server",
            username=None,
            client_ip=ip,
        )
        raise GrantError("invalid_client", "Unknown client or wrong secret.", 401)
    if not client.ip_allowed(ip):
        ledger.add_audit(
            [{"event": "pipeline_ip_refused", "client_id": client.client_id}],
            source="server",
            username=client.sub,
            client_ip=ip,
        )
        raise GrantError("unauthorized_client", "This client may not sign in from here.", 400)
    now = _now()
    ttl = min(MAX_TOKEN_TTL, max(1, idp.settings.pipeline_token_ttl))
    sid = "cc_" + secrets.token_urlsafe(12)
    with ledger.tx() as c:
        c.execute(
            "INSERT INTO sessions(sid, username, client_id, scope, amr, created_at) "
            "VALUES (?,?,?,?,?,?)",
            (sid, client.sub, client.client_id, PIPELINE_ROLE, "[]", now),
        )
    token = idp.sign(
        {
            "iss": idp.issuer,
            "sub": client.sub,
            "aud": API_AUDIENCE,
            "exp": now + ttl,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "scope": PIPELINE_ROLE,
            "amr": [],
            "roles": [PIPELINE_ROLE],
            "sid": sid,
            "name": client.name,
            "client_id": client.client_id,
        },
        typ="at+jwt",
    )
    ledger.add_audit(
        [{"event": "pipeline_token", "client_id": client.client_id, "expires_in": ttl}],
        source="server",
        username=client.sub,
        sid=sid,
        client_ip=ip,
    )
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": PIPELINE_ROLE,
    }


def _now() -> int:
    return int(time.time())
