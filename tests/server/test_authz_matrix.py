"""Authorization matrix of the resource API, over real TLS with real sign-ins.

Roles artist, lead, pipeline, admin x every /api/ endpoint, against the policy
table in sealport.server.policy (documented in docs/SERVER_SECURITY.md); a
route missing from the matrix fails ``test_matrix_covers_every_route``.
Then: other users' deliveries are 404, another workstation key cannot decrypt,
MFA policy, pipeline client credentials with IP allow-lists, and expired,
revoked and replayed tokens.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt as jose_jwt
from sealport import age
from sealport.errors import PayloadError
from sealport.server import ServerSettings
from sealport.server.pipeline_clients import register_pipeline_client, set_allowed_ips
from sealport.server.policy import POLICY

from tests.fixtures.server import start_sealport_server

ROLES = ("artist", "lead", "pipeline", "admin")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server that requires MFA for deliveries, one signed-in caller per role."""
    srv = start_sealport_server(
        tmp_path_factory.mktemp("authz") / "data",
        settings=ServerSettings(device_interval=1, require_mfa_for_delivery=True),
    )
    callers: dict[str, dict[str, Any]] = {}
    for role in ("artist", "lead", "admin"):
        user = f"{role}-u"
        srv.add_user(user, f"{role}-pass-1", roles=(role,), mfa=True)
        tok = srv.login(user, f"{role}-pass-1")
        identity = age.generate_identity()
        callers[role] = {
            "user": user,
            "tok": tok,
            "api": srv.api(tok["access_token"]),
            "identity": identity,
            "recipient": age.identity_to_recipient(identity),
        }
    secret = register_pipeline_client(srv.ledger, "farm-sync", ["127.0.0.1/32"])
    r = srv.session().post(
        f"{srv.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("farm-sync", secret),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    callers["pipeline"] = {
        "user": "pipeline:farm-sync",
        "tok": r.json(),
        "api": srv.api(r.json()["access_token"]),
        "secret": secret,
    }
    asset_id = srv.ledger.asset_id_for("test", "cube")
    try:
        yield {"srv": srv, "c": callers, "asset_id": asset_id}
    finally:
        srv.stop()


def _device(world: Any, role: str) -> str:
    c = world["c"][role]
    if "device_id" not in c:
        r = c["api"].post(
            f"{world['srv'].url}/api/v1/devices",
            json={"public_key": c["recipient"], "name": f"{role}-ws"},
        )
        assert r.status_code == 200, r.text
        c["device_id"] = r.json()["device_id"]
    return str(c["device_id"])


def _delivery(world: Any, role: str) -> str:
    c = world["c"][role]
    if "delivery_id" not in c:
        r = c["api"].post(
            f"{world['srv'].url}/api/v1/assets/{world['asset_id']}/deliveries",
            json={"device_id": _device(world, role)},
        )
        assert r.status_code == 200, r.text
        c["delivery_id"] = r.json()["delivery_id"]
    return str(c["delivery_id"])


def _own_delivery_id(world: Any, role: str) -> str:
    return _delivery(world, role) if role != "pipeline" else "dlv_does_not_exist"


ALL, HUMANS = set(ROLES), {"artist", "lead", "admin"}

# (method, path, POLICY action, roles expected to get 200) — written out here, apart from
# the server's table, as docs/SERVER_SECURITY.md states it; the whole resource API.
MATRIX: list[tuple[str, str, str, set[str]]] = [
    ("GET", "/api/v1/me", "me", ALL),
    ("GET", "/api/v1/assets", "list_assets", ALL),
    ("POST", "/api/v1/devices", "register_device", HUMANS),
    ("POST", "/api/v1/assets/{asset_id}/deliveries", "create_delivery", HUMANS),
    ("GET", "/api/v1/deliveries", "list_own_deliveries", ALL),
    ("GET", "/api/v1/deliveries?project=test", "list_project_deliveries", ALL - {"artist"}),
    ("GET", "/api/v1/deliveries/{delivery_id}/manifest", "read_own_delivery", ALL),
    ("GET", "/api/v1/deliveries/{delivery_id}/payload", "read_own_delivery", ALL),
    ("POST", "/api/v1/audit", "post_audit", ALL),
    ("GET", "/api/v1/admin/alerts", "read_alerts", {"admin"}),
]


def test_matrix_covers_every_route(world: Any) -> None:
    app = world["srv"].running.app
    routes = {
        (m, r.path)
        for r in app.routes
        if getattr(r, "path", "").startswith("/api/")
        for m in getattr(r, "methods", ())
    }
    covered = {(m, p.split("?")[0]) for m, p, _, _ in MATRIX}
    assert routes == covered, f"add to MATRIX and POLICY: {routes - covered}"
    assert {a for _, _, a, _ in MATRIX} == set(POLICY)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "method,path,action,expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_role_matrix(
    world: Any, role: str, method: str, path: str, action: str, expected: set[str]
) -> None:
    srv, c = world["srv"], world["c"][role]
    allowed = role in expected
    body: dict[str, Any] | None = None
    if "{delivery_id}" in path:
        path = path.format(delivery_id=_own_delivery_id(world, role))
    if "{asset_id}" in path:
        path = path.format(asset_id=world["asset_id"])
        device = _device(world, role) if role != "pipeline" else "dev_none"
        body = {"device_id": device}
    if path == "/api/v1/devices":
        pub = c.get("recipient") or age.identity_to_recipient(age.generate_identity())
        body = {"public_key": pub, "name": "matrix"}
    if path == "/api/v1/audit":
        body = {"events": [{"event": "matrix_probe"}]}
    r = c["api"].request(method, f"{srv.url}{path}", json=body, timeout=30)
    if role == "pipeline" and action == "read_own_delivery":
        # A pipeline client holds no deliveries: allowed by role, but nothing is its own.
        assert r.status_code == 404, r.text
        return
    if allowed:
        assert r.status_code == 200, (role, method, path, r.status_code, r.text)
    else:
        assert r.status_code == 403, (role, method, path, r.status_code, r.text)
        assert r.json()["error"] == "forbidden"


def test_project_listing_shows_everyones_deliveries_to_leads_only(world: Any) -> None:
    srv = world["srv"]
    artist_dlv = _delivery(world, "artist")
    lead = world["c"]["lead"]["api"].get(f"{srv.url}/api/v1/deliveries?project=test").json()
    assert artist_dlv in {d["delivery_id"] for d in lead["deliveries"]}
    own = world["c"]["admin"]["api"].get(f"{srv.url}/api/v1/deliveries").json()
    assert artist_dlv not in {d["delivery_id"] for d in own["deliveries"]}


@pytest.mark.parametrize("other", ["lead", "admin", "pipeline"])
@pytest.mark.parametrize("part", ["manifest", "payload"])
def test_nobody_else_fetches_a_delivery(world: Any, other: str, part: str) -> None:
    srv = world["srv"]
    dlv = _delivery(world, "artist")
    r = world["c"][other]["api"].get(f"{srv.url}/api/v1/deliveries/{dlv}/{part}")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    unknown = world["c"][other]["api"].get(f"{srv.url}/api/v1/deliveries/dlv_{'0' * 16}/{part}")
    assert (unknown.status_code, unknown.json()) == (r.status_code, r.json())  # no oracle


def test_delivery_to_another_users_device_is_refused(world: Any) -> None:
    srv = world["srv"]
    r = world["c"]["lead"]["api"].post(
        f"{srv.url}/api/v1/assets/{world['asset_id']}/deliveries",
        json={"device_id": _device(world, "artist")},
    )
    assert r.status_code == 403


def test_another_device_key_cannot_decrypt(world: Any, tmp_path: Path) -> None:
    srv, artist, lead = world["srv"], world["c"]["artist"], world["c"]["lead"]
    dlv = _delivery(world, "artist")
    payload = artist["api"].get(f"{srv.url}/api/v1/deliveries/{dlv}/payload").content
    out = io.BytesIO()
    age.decrypt_stream(io.BytesIO(payload), out, [artist["identity"]])
    assert out.getvalue()
    with pytest.raises(PayloadError):
        age.decrypt_stream(io.BytesIO(payload), io.BytesIO(), [lead["identity"]])


def test_mfa_required_for_delivery(world: Any) -> None:
    srv = world["srv"]
    srv.add_user("no-mfa", "no-mfa-pass-1", roles=("artist",), mfa=False)
    tok = srv.login("no-mfa", "no-mfa-pass-1")
    assert "otp" not in _claims(tok["access_token"])["amr"]
    api = srv.api(tok["access_token"])
    pub = age.identity_to_recipient(age.generate_identity())
    dev = api.post(f"{srv.url}/api/v1/devices", json={"public_key": pub, "name": "x"})
    assert dev.status_code == 200
    r = api.post(
        f"{srv.url}/api/v1/assets/{world['asset_id']}/deliveries",
        json={"device_id": dev.json()["device_id"]},
    )
    assert r.status_code == 403 and r.json()["error"] == "mfa_required"
    assert "multi-factor" in r.json()["message"]
    # Same user, token whose amr carries otp (signed by the IdP's key): allowed.
    otp = srv.mint_token(sub="no-mfa", amr=["pwd", "otp"])
    r = srv.api(otp).post(
        f"{srv.url}/api/v1/assets/{world['asset_id']}/deliveries",
        json={"device_id": dev.json()["device_id"]},
    )
    assert r.status_code == 200, r.text


def test_mfa_not_required_when_policy_off(sealport_server) -> None:
    srv = sealport_server
    srv.add_user("mfa-off", "mfa-off-pass-1")
    api = srv.api(srv.login("mfa-off", "mfa-off-pass-1")["access_token"])
    pub = age.identity_to_recipient(age.generate_identity())
    dev = api.post(f"{srv.url}/api/v1/devices", json={"public_key": pub}).json()["device_id"]
    asset = srv.ledger.asset_id_for("test", "cube")
    r = api.post(f"{srv.url}/api/v1/assets/{asset}/deliveries", json={"device_id": dev})
    assert r.status_code == 200, r.text


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


# --- pipeline clients ---------------------------------------------------------------
def test_pipeline_token_is_short_lived_and_secret_hashed_at_rest(world: Any) -> None:
    srv, pipe = world["srv"], world["c"]["pipeline"]
    assert pipe["tok"]["expires_in"] <= 300
    assert "refresh_token" not in pipe["tok"]
    claims = _claims(pipe["tok"]["access_token"])
    assert claims["roles"] == ["pipeline"] and claims["exp"] - claims["iat"] <= 300
    row = srv.ledger.one("SELECT secret_hash FROM pipeline_clients WHERE client_id='farm-sync'")
    assert row["secret_hash"].startswith("scrypt$")
    assert pipe["secret"].encode() not in (srv.data_dir / "ledger.sqlite").read_bytes()


def test_pipeline_wrong_secret_refused(world: Any) -> None:
    srv = world["srv"]
    for data, auth in (
        ({"grant_type": "client_credentials"}, ("farm-sync", "wrong")),
        ({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}, None),
    ):
        r = srv.session().post(f"{srv.url}/oauth/token", data=data, auth=auth, timeout=30)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_pipeline_ip_allow_list(world: Any) -> None:
    """The server sees 127.0.0.1: an allow-list without it refuses, with it admits."""
    srv = world["srv"]
    secret = register_pipeline_client(srv.ledger, "render-farm", ["10.20.0.0/16"])
    tok_url = f"{srv.url}/oauth/token"
    form = {"grant_type": "client_credentials", "client_id": "render-farm", "client_secret": secret}
    r = srv.session().post(tok_url, data=form, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"

    set_allowed_ips(srv.ledger, "render-farm", ["10.20.0.0/16", "127.0.0.1/32"])
    r = srv.session().post(tok_url, data=form, timeout=30)
    assert r.status_code == 200, r.text
    api = srv.api(r.json()["access_token"])
    assert api.get(f"{srv.url}/api/v1/assets").status_code == 200

    # The allow-list is checked on every API call, not only when the token is issued.
    set_allowed_ips(srv.ledger, "render-farm", ["10.20.0.0/16"])
    r = api.get(f"{srv.url}/api/v1/assets")
    assert r.status_code == 403 and r.json()["error"] == "ip_not_allowed"
    events = [e["event"]["event"] for e in srv.ledger.audit_events("pipeline:render-farm")]
    assert events.count("pipeline_ip_refused") == 2


def test_pipeline_role_token_not_from_a_registered_client_refused(world: Any) -> None:
    srv = world["srv"]
    forged = srv.mint_token(sub="pipeline:ghost", roles=["pipeline"])
    r = srv.api(forged).get(f"{srv.url}/api/v1/assets")
    assert r.status_code == 403


# --- expired, revoked, replayed -------------------------------------------------------
def test_expired_token_refused(world: Any) -> None:
    srv = world["srv"]
    old = srv.mint_token(sub="artist-u", iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    r = srv.api(old).get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_token_signed_by_another_key_refused(world: Any) -> None:
    from joserfc.jwk import OKPKey

    srv = world["srv"]
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    now = int(time.time())
    claims = _claims(srv.mint_token(sub="admin-u", roles=["admin"]))
    claims.update(iat=now, exp=now + 60)
    tok = jose_jwt.encode({"alg": "EdDSA", "kid": key.kid}, claims, key, algorithms=["EdDSA"])
    assert srv.api(tok).get(f"{srv.url}/api/v1/admin/alerts").status_code == 401


def test_logged_out_token_replay_refused(world: Any) -> None:
    """A copied access token (its jti/sid) is dead once its session is revoked."""
    srv = world["srv"]
    srv.add_user("leaver", "leaver-pass-1", mfa=True)
    tok = srv.login("leaver", "leaver-pass-1")
    api = srv.api(tok["access_token"])
    assert api.get(f"{srv.url}/api/v1/me").status_code == 200
    r = srv.session().post(f"{srv.url}/oauth/revoke", data={"token": tok["refresh_token"]})
    assert r.status_code == 200
    r = api.get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401 and r.json()["error"] == "session_revoked"
    r = srv.session().post(
        f"{srv.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_rotated_refresh_token_reuse_kills_the_family(world: Any) -> None:
    srv = world["srv"]
    srv.add_user("reuser", "reuser-pass-1", mfa=True)
    first = srv.login("reuser", "reuser-pass-1")
    http = srv.session()
    rotate = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = http.post(f"{srv.url}/oauth/token", data=rotate)
    assert second.status_code == 200
    new_access = second.json()["access_token"]
    assert srv.api(new_access).get(f"{srv.url}/api/v1/me").status_code == 200
    replay = http.post(f"{srv.url}/oauth/token", data=rotate)  # the stolen old one
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    r = srv.api(new_access).get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401 and r.json()["error"] == "session_revoked"
    again = http.post(
        f"{srv.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": second.json()["refresh_token"]},
    )
    assert again.status_code == 400


def test_cli_registers_a_pipeline_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from sealport.cli import main as cli_main
    from sealport.server.idp import verify_password
    from sealport.server.pipeline_clients import get_client
    from sealport.server.store import open_ledger

    data = tmp_path / "srv"
    argv = ["admin", "add-pipeline-client", "farm-cli", "--allow", "10.1.0.0/16"]
    assert cli_main([*argv, "--allow", "127.0.0.1", "--data", str(data)]) == 0
    secret = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    ledger = open_ledger(data)
    try:
        client = get_client(ledger, "farm-cli")
    finally:
        ledger.close()
    assert client is not None and client.allowed_ips == ("10.1.0.0/16", "127.0.0.1/32")
    assert verify_password(secret, client.secret_hash) and secret not in client.secret_hash
    assert client.ip_allowed("127.0.0.1") and not client.ip_allowed("192.168.1.1")
