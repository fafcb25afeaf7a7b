"""Who may call what: the role policy of the resource API, in one table.

Why one table: the authorization matrix test and docs/SERVER_SECURITY.md
are written against :data:`POLICY`, so a new endpoint that forgets to ask
the gate fails the matrix instead of silently allowing every role.

The :class:`Gate` runs after the token has been validated
(:mod:`sealport.server.auth`) and adds what a token alone cannot say: the
account was revoked by the spike response, a pipeline client is calling
from outside its allow-list, the account or workstation is over its rate
limit, the role may not perform the action, the studio requires MFA.
"""

from __future__ import annotations

from .auth import AuthFailure, Principal
from .detection import POLICY_REVOKED_MESSAGE, SpikeDetector
from .ledger import Ledger
from .pipeline_clients import PIPELINE_ROLE, client_from_sub, ensure_schema
from .ratelimit import TokenBucket, retry_after_header
from .settings import ServerSettings

ARTIST, LEAD, PIPELINE, ADMIN = "artist", "lead", PIPELINE_ROLE, "admin"
HUMAN_ROLES = frozenset({ARTIST, LEAD, ADMIN})

POLICY: dict[str, frozenset[str]] = {
    "me": frozenset({ARTIST, LEAD, PIPELINE, ADMIN}),
    "list_assets": frozenset({ARTIST, LEAD, PIPELINE, ADMIN}),
    "register_device": frozenset({ARTIST, LEAD, ADMIN}),
    "create_delivery": frozenset({ARTIST, LEAD, ADMIN}),
    # Only the delivery's own user, whatever the role (checked by ownership: 404 otherwise).
    "read_own_delivery": frozenset({ARTIST, LEAD, PIPELINE, ADMIN}),
    "list_own_deliveries": frozenset({ARTIST, LEAD, PIPELINE, ADMIN}),
    # Everyone's deliveries of a project (who got what): oversight and reporting.
    "list_project_deliveries": frozenset({LEAD, PIPELINE, ADMIN}),
    "post_audit": frozenset({ARTIST, LEAD, PIPELINE, ADMIN}),
    "read_alerts": frozenset({ADMIN}),
}
"""action -> roles allowed (a caller with several roles gets the union)."""

MFA_ACTIONS = frozenset({"create_delivery"})
"""Actions refused to human sessions without "otp" in ``amr`` when the studio requires MFA."""

RATE_LIMITED_MESSAGE = (
    "Sealport is receiving too many requests from your account or workstation. "
    "Wait {seconds} s and try again; if a tool is looping, tell your TD."
)


class Refusal(Exception):
    """A policy answer: JSON ``{error, message}`` with ``status`` (and optional headers)."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


class Gate:
    def __init__(self, ledger: Ledger, settings: ServerSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        self.spikes = SpikeDetector(ledger, settings)
        self.accounts = TokenBucket(settings.rate_account_per_minute, settings.rate_account_burst)
        self.devices = TokenBucket(settings.rate_device_per_minute, settings.rate_device_burst)
        ensure_schema(ledger)

    def admit(self, p: Principal, ip: str) -> Principal:
        """Per-request checks on a validated token (run by the ``Caller`` dependency)."""
        if self.spikes.token_revoked(p.sub, p.claims.get("iat")):
            raise AuthFailure(
                "session_revoked", POLICY_REVOKED_MESSAGE, "revoked by the spike response"
            )
        if PIPELINE in p.roles:
            client = client_from_sub(self.ledger, p.sub)
            if client is None or client.disabled:
                raise Refusal(403, "forbidden", "This pipeline client is not registered.")
            if not client.ip_allowed(ip):
                self.ledger.add_audit(
                    [{"event": "pipeline_ip_refused", "client_id": client.client_id}],
                    source="server",
                    username=p.sub,
                    sid=p.sid,
                    client_ip=ip,
                )
                raise Refusal(
                    403, "ip_not_allowed", "This pipeline client may not call from this address."
                )
        self._spend(self.accounts, "acct:" + p.sub)
        return p

    def allow(self, p: Principal, action: str) -> None:
        """403 unless one of the caller's roles may perform ``action`` (MFA where required)."""
        roles = set(p.roles) & POLICY[action]
        if not roles:
            raise Refusal(403, "forbidden", "Your account's role may not do that.")
        if (
            action in MFA_ACTIONS
            and self.settings.require_mfa_for_delivery
            and roles & HUMAN_ROLES
            and "otp" not in p.amr
        ):
            raise Refusal(
                403, "mfa_required", "Sign in with multi-factor authentication to download."
            )

    def device(self, device_id: str) -> None:
        """Spend one token of the workstation key's bucket."""
        self._spend(self.devices, "dev:" + device_id)

    def _spend(self, bucket: TokenBucket, key: str) -> None:
        wait = bucket.take(key)
        if wait > 0:
            ra = retry_after_header(wait)
            raise Refusal(
                429,
                "rate_limited",
                RATE_LIMITED_MESSAGE.format(seconds=ra),
                {"Retry-After": ra},
            )
