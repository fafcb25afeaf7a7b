"""Anomaly response: a spike of deliveries from one account ends all its sessions.

Why: a stolen session (or an insider with a script) shows up as many more
deliveries than a person needs in a few minutes. When one account asks for
more than ``spike_deliveries`` within ``spike_window`` seconds, the server
revokes every session and refresh token of that account, refuses any access
token issued before that moment (even from an external IdP, whose sessions
it cannot revoke), records an alert in the ledger (which the SIEM export
forwards) and tells the artist why on their next request.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .ledger import Ledger, revoke_sid_in
from .settings import ServerSettings

POLICY_REVOKED_MESSAGE = (
    "Your session was revoked by security policy. Sign in again; if this keeps happening, "
    "contact your studio's security team."
)
POLICY_REASON = "security_policy"

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_revocations (
    username TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    username TEXT,
    client_ip TEXT,
    detail TEXT NOT NULL
);
"""


class SpikeDetector:
    def __init__(self, ledger: Ledger, settings: ServerSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        ledger.ensure_schema(SCHEMA)

    def revoked_since(self, username: str) -> int | None:
        """When security policy last revoked ``username`` (epoch s), if ever."""
        row = self.ledger.one(
            "SELECT revoked_at FROM user_revocations WHERE username=?", (username,)
        )
        return int(row["revoked_at"]) if row else None

    def token_revoked(self, username: str, iat: Any) -> bool:
        """Access tokens issued at or before the user's revocation are dead."""
        since = self.revoked_since(username)
        if since is None:
            return False
        try:
            return int(iat) <= since
        except (TypeError, ValueError):
            return True

    def check_delivery(self, username: str, client_ip: str) -> bool:
        """Count this delivery; True if it trips the spike response (which then ran)."""
        now = int(time.time())
        since = max(now - self.settings.spike_window, self.revoked_since(username) or 0)
        row = self.ledger.one(
            "SELECT COUNT(*) AS n FROM deliveries WHERE username=? AND issued_at>?",
            (username, since),
        )
        count = (int(row["n"]) if row else 0) + 1
        if count <= self.settings.spike_deliveries:
            return False
        self.respond(username, client_ip, count)
        return True

    def respond(self, username: str, client_ip: str, count: int) -> str:
        """Revoke everything of ``username``, record and emit the alert; returns its id."""
        now = int(time.time())
        alert_id = "alr_" + secrets.token_hex(8)
        detail = {
            "deliveries": count,
            "threshold": self.settings.spike_deliveries,
            "window_seconds": self.settings.spike_window,
        }
        with self.ledger.tx() as c:
            sids = [
                r["sid"]
                for r in c.execute(
                    "SELECT sid FROM sessions WHERE username=? AND sid NOT IN "
                    "(SELECT sid FROM revoked_sids)",
                    (username,),
                ).fetchall()
            ]
            for sid in sids:
                revoke_sid_in(c, sid, POLICY_REASON)
            c.execute(
                "INSERT INTO user_revocations(username, revoked_at, reason) VALUES (?,?,?) "
                "ON CONFLICT(username) DO UPDATE SET revoked_at=excluded.revoked_at, "
                "reason=excluded.reason",
                (username, now, "delivery_spike"),
            )
            detail["sessions_revoked"] = len(sids)
            c.execute(
                "INSERT INTO alerts(alert_id, created_at, kind, username, client_ip, detail) "
                "VALUES (?,?,?,?,?,?)",
                (alert_id, now, "delivery_spike", username, client_ip, json.dumps(detail)),
            )
        self.ledger.add_audit(
            [
                {
                    "event": "security_alert",
                    "alert_id": alert_id,
                    "kind": "delivery_spike",
                    "action": "sessions_revoked",
                    **detail,
                }
            ],
            source="server",
            username=username,
            client_ip=client_ip,
        )
        return alert_id

    def alerts(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.ledger.query("SELECT * FROM alerts ORDER BY created_at DESC LIMIT ?", (limit,))
        return [
            {
                "alert_id": r["alert_id"],
                "created_at": r["created_at"],
                "kind": r["kind"],
                "username": r["username"],
                "client_ip": r["client_ip"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]
