"""Detection and response: rate limits (429 + Retry-After) and the delivery-spike response.

Real server over TLS, real sign-ins; the spike test drives the real client
(SealportClient) so the artist-facing message is checked where the artist
sees it: the SessionRevoked error the CLI and the DCC panels print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sealport import age
from sealport.errors import ServerError, SessionRevoked
from sealport.server import ServerSettings
from sealport.server.detection import POLICY_REVOKED_MESSAGE
from sealport.server.ratelimit import TokenBucket, retry_after_header

from tests.test_secure_import import make_client, sign_in

SPIKE_MESSAGE = (
    "Your session was revoked by security policy. Sign in again; if this keeps happening, "
    "contact your studio's security team."
)


# --- the bucket itself (a fake clock: no sleeping, no timing asserts) ------------------
def test_token_bucket_burst_then_steady_rate() -> None:
    now = [1000.0]
    b = TokenBucket(per_minute=60, burst=3, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("a")
    assert wait == pytest.approx(1.0)
    assert retry_after_header(wait) == "1"
    assert b.take("b") == 0.0  # keys are independent
    now[0] += 1.0
    assert b.take("a") == 0.0
    assert b.take("a") > 0
    now[0] += 3600
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refills only up to burst
    assert b.take("a") > 0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"


def _device(srv: Any, api: Any) -> str:
    pub = age.identity_to_recipient(age.generate_identity())
    r = api.post(f"{srv.url}/api/v1/devices", json={"public_key": pub, "name": "ws"})
    assert r.status_code == 200, r.text
    return str(r.json()["device_id"])


def test_account_rate_limit_429_with_retry_after(sealport_server_factory, tmp_path: Path) -> None:
    srv = sealport_server_factory(
        settings=ServerSettings(
            device_interval=1, rate_account_burst=4, rate_account_per_minute=1.0
        )
    )
    api = srv.api(srv.login()["access_token"])
    codes = [api.get(f"{srv.url}/api/v1/assets").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    r = api.get(f"{srv.url}/api/v1/me")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["error"] == "rate_limited"
    assert "too many requests" in body["message"] and r.headers["Retry-After"] in body["message"]
    # Another account is not affected.
    srv.add_user("other", "other-pass-1")
    other = srv.api(srv.login("other", "other-pass-1")["access_token"])
    assert other.get(f"{srv.url}/api/v1/me").status_code == 200

    # The client shows the server's message as a typed error. (POST: the transport
    # honours Retry-After by waiting and retrying idempotent GETs; a POST is not retried.)
    client = make_client(srv, tmp_path / "ws")
    sign_in(client, srv, "other", "other-pass-1")
    with pytest.raises(ServerError) as exc:
        for _ in range(10):
            client.api.post("/api/v1/audit", {"events": []})
    assert exc.value.status == 429 and "too many requests" in exc.value.message


def test_device_rate_limit(sealport_server_factory) -> None:
    srv = sealport_server_factory(
        settings=ServerSettings(device_interval=1, rate_device_burst=3, rate_device_per_minute=1.0)
    )
    api = srv.api(srv.login()["access_token"])
    asset = srv.ledger.asset_id_for("test", "cube")
    busy, calm = _device(srv, api), _device(srv, api)
    url = f"{srv.url}/api/v1/assets/{asset}/deliveries"
    dlv = api.post(url, json={"device_id": busy}).json()["delivery_id"]
    manifest = f"{srv.url}/api/v1/deliveries/{dlv}/manifest"
    assert [api.get(manifest).status_code for _ in range(3)] == [200, 200, 429]
    assert api.get(manifest).headers["Retry-After"]
    # Same account, other workstation key: its own bucket.
    assert api.post(url, json={"device_id": calm}).status_code == 200


def test_delivery_spike_revokes_sessions_alerts_and_client_shows_message(
    sealport_server_factory, tmp_path: Path
) -> None:
    srv = sealport_server_factory(
        settings=ServerSettings(device_interval=1, spike_deliveries=3, spike_window=600)
    )
    user = srv.username
    asset = srv.ledger.asset_id_for("test", "cube")
    # A second session of the same account (another workstation) that must die too.
    other = srv.login()
    other_api = srv.api(other["access_token"])
    assert other_api.get(f"{srv.url}/api/v1/me").status_code == 200

    client = make_client(srv, tmp_path / "ws")
    sign_in(client, srv, user, srv.password)
    for _ in range(3):  # up to the threshold: fine
        client.secure_import(asset, tmp_path / "out")
    with pytest.raises(SessionRevoked) as exc:
        client.secure_import(asset, tmp_path / "out")
    assert exc.value.message == SPIKE_MESSAGE == POLICY_REVOKED_MESSAGE
    # The artist's next request: the same clear message, no silent refresh.
    with pytest.raises(SessionRevoked) as exc:
        client.assets()
    assert exc.value.message == SPIKE_MESSAGE

    # Every session and refresh token of the account is gone.
    r = other_api.get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401
    assert r.json() == {"error": "session_revoked", "message": SPIKE_MESSAGE}
    r = srv.session().post(
        f"{srv.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": other["refresh_token"]},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    live = srv.ledger.query(
        "SELECT t.status FROM refresh_tokens t JOIN sessions s ON s.sid=t.sid "
        "WHERE s.username=? AND t.status='active'",
        (user,),
    )
    assert live == []
    # A token minted before the revocation without a known session is refused as well.
    row = srv.ledger.one("SELECT revoked_at FROM user_revocations WHERE username=?", (user,))
    stale = srv.mint_token(sub=user, iat=int(row["revoked_at"]) - 5)
    assert srv.api(stale).get(f"{srv.url}/api/v1/me").status_code == 401

    # Only 3 deliveries were sealed; the 4th was refused before sealing.
    assert len(srv.ledger.deliveries_for(user)) == 3

    # Alert recorded in the ledger and in the SIEM export.
    alerts = srv.ledger.query("SELECT * FROM alerts WHERE username=?", (user,))
    assert len(alerts) == 1 and alerts[0]["kind"] == "delivery_spike"
    detail = json.loads(alerts[0]["detail"])
    assert detail["deliveries"] == 4 and detail["threshold"] == 3
    assert detail["sessions_revoked"] >= 2
    events = [e["event"] for e in srv.ledger.audit_events(user)]
    assert any(e.get("event") == "security_alert" for e in events)
    srv.running.app.state.siem.catch_up()  # the export runs on a background thread
    siem = [
        json.loads(x) for x in (srv.data_dir / "siem" / "events.jsonl").read_text().splitlines()
    ]
    assert [r["event"]["alert_id"] for r in siem if r["kind"] == "alert"] == [alerts[0]["alert_id"]]
    syslog = (srv.data_dir / "siem" / "events.syslog").read_text().splitlines()
    assert sum(line.startswith("<106>1 ") for line in syslog) == 1  # facility 13, critical

    # An admin sees the alert through the API.
    srv.add_user("sec-admin", "sec-admin-pass-1", roles=("admin",))
    admin = srv.api(srv.login("sec-admin", "sec-admin-pass-1")["access_token"])
    listed = admin.get(f"{srv.url}/api/v1/admin/alerts").json()["alerts"]
    assert [a["alert_id"] for a in listed] == [alerts[0]["alert_id"]]

    # Signing in again works (a new session, issued after the revocation).
    sign_in(client, srv, user, srv.password)
    assert client.assets()
