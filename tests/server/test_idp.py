"""The development IdP behaves like a strict OIDC IdP with device flow (RFC 8628)."""

from __future__ import annotations

import re
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from sealport.server import ServerSettings

from tests.fixtures.server import DEVICE_GRANT, ApprovalFailed, parse_page


def _poll(srv, http, device_code):
    return http.post(
        f"{srv.url}/oauth/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "sealport"},
        timeout=30,
    )


def _refresh(srv, http, rt):
    return http.post(
        f"{srv.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "sealport"},
        timeout=30,
    )


def test_discovery(sealport_server):
    r = requests.get(
        f"{sealport_server.url}/.well-known/openid-configuration",
        verify=str(sealport_server.ca_file),
        timeout=10,
    )
    assert r.status_code == 200
    d = r.json()
    assert d["issuer"] == sealport_server.url
    for key, path in [
        ("device_authorization_endpoint", "/oauth/device_authorization"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("jwks_uri", "/oauth/jwks"),
        ("userinfo_endpoint", "/oauth/userinfo"),
    ]:
        assert d[key] == sealport_server.url + path
    assert DEVICE_GRANT in d["grant_types_supported"]


def test_device_authorization_response(sealport_server):
    auth = sealport_server.start_device_flow()
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", auth["user_code"])
    assert len(auth["device_code"]) == 43  # 32 random bytes, base64url without padding
    assert auth["expires_in"] == 600 and auth["interval"] == 1
    assert auth["verification_uri"] == f"{sealport_server.url}/device"
    assert auth["verification_uri_complete"].endswith(auth["user_code"])
    # Only hashes of device codes are stored.
    row = sealport_server.ledger.one(
        "SELECT * FROM device_codes WHERE user_code=?", (auth["user_code"].replace("-", ""),)
    )
    assert row is not None and auth["device_code"] not in tuple(str(v) for v in tuple(row))


def test_unknown_client_is_refused(sealport_server):
    r = sealport_server.session().post(
        f"{sealport_server.url}/oauth/device_authorization", data={"client_id": "evil"}, timeout=10
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_device_flow_happy_path(sealport_server):
    srv = sealport_server
    http = srv.session()
    auth = srv.start_device_flow(http)
    pending = _poll(srv, http, auth["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    assert srv.approve(auth["user_code"]) == "approved"
    time.sleep(auth["interval"])  # a polite client waits `interval` between polls
    r = _poll(srv, http, auth["device_code"])
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 300
    assert tok["refresh_token"] and tok["id_token"]
    keys = KeySet.import_key_set(http.get(f"{srv.url}/oauth/jwks", timeout=10).json())
    at = jwt.decode(tok["access_token"], keys, algorithms=["EdDSA"])
    c = at.claims
    assert set(c) >= {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "scope",
        "amr",
        "roles",
        "sid",
        "name",
    }
    assert c["iss"] == srv.url and c["aud"] == "sealport-api" and c["sub"] == srv.username
    assert c["exp"] - c["iat"] == 300 and c["amr"] == ["pwd"] and c["roles"] == ["artist"]
    idt = jwt.decode(tok["id_token"], keys, algorithms=["EdDSA"]).claims
    assert idt["aud"] == "sealport" and idt["sub"] == srv.username and idt["sid"] == c["sid"]
    ui = srv.api(tok["access_token"]).get(f"{srv.url}/oauth/userinfo", timeout=10)
    assert ui.status_code == 200 and ui.json()["sub"] == srv.username
    # The device code is single-use; a replay is refused and kills what it issued.
    replay = _poll(srv, http, auth["device_code"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    me = srv.api(tok["access_token"]).get(f"{srv.url}/api/v1/me", timeout=10)
    assert me.status_code == 401 and me.json()["error"] == "session_revoked"


def test_mfa_user_gets_otp_amr(sealport_server):
    srv = sealport_server
    srv.add_user("mfa-lead", "s3cret-pass", roles=("lead", "artist"), mfa=True)
    tok = srv.login("mfa-lead", "s3cret-pass")
    claims = jwt.decode(
        tok["access_token"],
        KeySet.import_key_set(srv.session().get(f"{srv.url}/oauth/jwks", timeout=10).json()),
        algorithms=["EdDSA"],
    ).claims
    assert claims["amr"] == ["pwd", "otp"] and claims["roles"] == ["lead", "artist"]


def test_deny(sealport_server):
    srv = sealport_server
    http = srv.session()
    auth = srv.start_device_flow(http)
    assert srv.deny(auth["user_code"]) == "denied"
    r = _poll(srv, http, auth["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "access_denied"
    # A denied code cannot be approved afterwards.
    with pytest.raises(ApprovalFailed):
        srv.approve(auth["user_code"])


def test_wrong_password_and_wrong_code(sealport_server):
    srv = sealport_server
    auth = srv.start_device_flow()
    with pytest.raises(ApprovalFailed) as exc:
        srv.approve(auth["user_code"], srv.username, "wrong-password")
    assert exc.value.response.status_code == 400
    assert "Wrong username or password" in exc.value.response.text
    with pytest.raises(ApprovalFailed):
        srv.approve("BBBB-BBBB")


def test_confirm_page_shows_client_and_requesting_ip(sealport_server):
    srv = sealport_server
    auth = srv.start_device_flow()
    b = srv.session()
    page = b.get(f"{srv.url}/device?user_code={auth['user_code']}", timeout=10)
    form = parse_page(page.text).forms[0]
    assert form["fields"]["user_code"] == auth["user_code"]
    fields = dict(form["fields"], username=srv.username, password=srv.password)
    confirm = b.post(f"{srv.url}/device", data=fields, timeout=10)
    assert confirm.status_code == 200
    assert "Sealport" in confirm.text and "127.0.0.1" in confirm.text
    assert auth["user_code"] in confirm.text
    assert "frame-ancestors 'none'" in confirm.headers["Content-Security-Policy"]


def test_csrf_token_is_required(sealport_server):
    srv = sealport_server
    auth = srv.start_device_flow()
    b = srv.session()
    b.get(f"{srv.url}/device", timeout=10)  # cookie set, but the form token is missing
    r = b.post(
        f"{srv.url}/device",
        data={
            "step": "login",
            "user_code": auth["user_code"],
            "username": srv.username,
            "password": srv.password,
            "csrf": "forged",
        },
        timeout=10,
    )
    assert r.status_code == 403
    fresh = requests.Session()  # no cookie at all (a cross-site POST)
    r = fresh.post(
        f"{srv.url}/device",
        data={
            "step": "login",
            "user_code": auth["user_code"],
            "username": srv.username,
            "password": srv.password,
            "csrf": "x",
        },
        verify=str(srv.ca_file),
        timeout=10,
    )
    assert r.status_code == 403


def test_slow_down(sealport_server_factory):
    srv = sealport_server_factory(settings=ServerSettings(device_interval=5), seed=False)
    http = srv.session()
    auth = srv.start_device_flow(http)
    assert auth["interval"] == 5
    assert _poll(srv, http, auth["device_code"]).json()["error"] == "authorization_pending"
    second = _poll(srv, http, auth["device_code"])  # well inside 5 s
    assert second.status_code == 400 and second.json()["error"] == "slow_down"
    row = srv.ledger.one(
        "SELECT interval FROM device_codes WHERE user_code=?", (auth["user_code"].replace("-", ""),)
    )
    assert row["interval"] == 10


def test_expired_device_code(sealport_server_factory):
    srv = sealport_server_factory(settings=ServerSettings(device_code_ttl=1), seed=False)
    http = srv.session()
    auth = srv.start_device_flow(http)
    time.sleep(1.2)
    r = _poll(srv, http, auth["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "expired_token"
    with pytest.raises(ApprovalFailed):
        srv.approve(auth["user_code"])


def test_unknown_device_code(sealport_server):
    r = _poll(sealport_server, sealport_server.session(), "not-a-real-code")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_rotation_and_reuse_revokes_family(sealport_server):
    srv = sealport_server
    http = srv.session()
    tok1 = srv.login()
    r = _refresh(srv, http, tok1["refresh_token"])
    assert r.status_code == 200, r.text
    tok2 = r.json()
    assert tok2["refresh_token"] != tok1["refresh_token"]
    assert srv.api(tok2["access_token"]).get(f"{srv.url}/api/v1/me", timeout=10).status_code == 200
    # Presenting the rotated-out token again: stolen copy suspected.
    reuse = _refresh(srv, http, tok1["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # The whole family is dead: the newest refresh token and the live access token too.
    r = _refresh(srv, http, tok2["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    me = srv.api(tok2["access_token"]).get(f"{srv.url}/api/v1/me", timeout=10)
    assert me.status_code == 401
    assert me.json() == {
        "error": "session_revoked",
        "message": "Your session was revoked; sign in again.",
    }
    sid = jwt.decode(
        tok2["access_token"],
        KeySet.import_key_set(http.get(f"{srv.url}/oauth/jwks", timeout=10).json()),
        algorithms=["EdDSA"],
    ).claims["sid"]
    assert srv.ledger.one("SELECT reason FROM revoked_sids WHERE sid=?", (sid,))["reason"] == (
        "refresh_token_reuse"
    )
    # Only hashes are stored.
    assert (
        srv.ledger.one("SELECT 1 FROM refresh_tokens WHERE token_hash=?", (tok2["refresh_token"],))
        is None
    )


def test_revocation(sealport_server):
    srv = sealport_server
    http = srv.session()
    tok = srv.login()
    r = http.post(
        f"{srv.url}/oauth/revoke",
        data={
            "token": tok["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": "sealport",
        },
        timeout=10,
    )
    assert r.status_code == 200
    assert _refresh(srv, http, tok["refresh_token"]).json()["error"] == "invalid_grant"
    me = srv.api(tok["access_token"]).get(f"{srv.url}/api/v1/me", timeout=10)
    assert me.status_code == 401 and me.json()["error"] == "session_revoked"
    # RFC 7009: unknown tokens also get 200.
    r = http.post(f"{srv.url}/oauth/revoke", data={"token": "nonsense"}, timeout=10)
    assert r.status_code == 200


def test_revoking_access_token_ends_session(sealport_server):
    srv = sealport_server
    http = srv.session()
    tok = srv.login()
    r = http.post(f"{srv.url}/oauth/revoke", data={"token": tok["access_token"]}, timeout=10)
    assert r.status_code == 200
    assert srv.api(tok["access_token"]).get(f"{srv.url}/api/v1/me", timeout=10).status_code == 401
    assert _refresh(srv, http, tok["refresh_token"]).json()["error"] == "invalid_grant"


def test_verification_page_rate_limit(sealport_server_factory):
    srv = sealport_server_factory(
        settings=ServerSettings(device_interval=1, verify_max_failures=3), seed=False
    )
    auth = srv.start_device_flow()
    for _ in range(3):
        with pytest.raises(ApprovalFailed) as exc:
            srv.approve("BBBB-CCCC")
        assert exc.value.response.status_code == 400
    # Now even the right code and password are refused from this IP for a while.
    with pytest.raises(ApprovalFailed) as exc:
        srv.approve(auth["user_code"])
    assert exc.value.response.status_code == 429
