"""The resource API: JWT validation, device binding, per-user deliveries, Range, ledger."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from sealport import age, manifest, trust
from sealport.server.app import parse_range


@pytest.fixture(scope="module")
def alice(sealport_server):
    """A signed-in user with a registered workstation key."""
    srv = sealport_server
    srv.add_user("alice", "alice-pass-1")
    tok = srv.login("alice", "alice-pass-1")
    identity = age.generate_identity()
    recipient = age.identity_to_recipient(identity)
    api = srv.api(tok["access_token"])
    r = api.post(f"{srv.url}/api/v1/devices", json={"public_key": recipient, "name": "ws-1"})
    assert r.status_code == 200, r.text
    return {
        "api": api,
        "tok": tok,
        "identity": identity,
        "recipient": recipient,
        "device_id": r.json()["device_id"],
    }


@pytest.fixture(scope="module")
def bob(sealport_server):
    srv = sealport_server
    srv.add_user("bob", "bob-pass-1")
    tok = srv.login("bob", "bob-pass-1")
    identity = age.generate_identity()
    api = srv.api(tok["access_token"])
    r = api.post(
        f"{srv.url}/api/v1/devices",
        json={"public_key": age.identity_to_recipient(identity), "name": "ws-b"},
    )
    assert r.status_code == 200
    return {"api": api, "identity": identity, "device_id": r.json()["device_id"]}


def _cube(srv):
    assets = srv.api(srv.login()["access_token"]).get(f"{srv.url}/api/v1/assets").json()["assets"]
    return next(a for a in assets if a["name"] == "cube" and a["project"] == "test")


@pytest.fixture(scope="module")
def delivery(sealport_server, alice):
    srv = sealport_server
    cube = _cube(srv)
    r = alice["api"].post(
        f"{srv.url}/api/v1/assets/{cube['asset_id']}/deliveries",
        json={"device_id": alice["device_id"]},
    )
    assert r.status_code == 200, r.text
    return dict(r.json(), asset=cube)


def test_me(sealport_server, alice):
    r = alice["api"].get(f"{sealport_server.url}/api/v1/me")
    assert r.json() == {"sub": "alice", "name": "alice", "roles": ["artist"]}


def test_missing_token(sealport_server):
    r = sealport_server.session().get(f"{sealport_server.url}/api/v1/me")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_jwt_refused(sealport_server):
    srv = sealport_server
    past = int(time.time()) - 600
    token = srv.mint_token(iat=past, exp=past + 300)
    r = srv.api(token).get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    # The same token with a live exp is accepted: the test above failed on expiry alone.
    assert srv.api(srv.mint_token()).get(f"{srv.url}/api/v1/me").status_code == 200


def test_wrong_audience_refused(sealport_server):
    srv = sealport_server
    r = srv.api(srv.mint_token(aud="sealport")).get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_wrong_issuer_refused(sealport_server):
    srv = sealport_server
    r = srv.api(srv.mint_token(iss="https://evil.example")).get(f"{srv.url}/api/v1/me")
    assert r.status_code == 401


def test_foreign_key_refused(sealport_server):
    srv = sealport_server
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    now = int(time.time())
    token = jwt.encode(
        {"alg": "EdDSA", "kid": key.kid},
        {"iss": srv.url, "sub": "alice", "aud": "sealport-api", "exp": now + 60, "iat": now},
        key,
        algorithms=["EdDSA"],
    )
    assert srv.api(token).get(f"{srv.url}/api/v1/me").status_code == 401


def test_device_registration_rules(sealport_server, alice, bob):
    srv = sealport_server
    url = f"{srv.url}/api/v1/devices"
    again = alice["api"].post(url, json={"public_key": alice["recipient"], "name": "ws-1"})
    assert again.json()["device_id"] == alice["device_id"]  # idempotent
    stolen = bob["api"].post(url, json={"public_key": alice["recipient"], "name": "mine"})
    assert stolen.status_code == 409
    bad = alice["api"].post(url, json={"public_key": "age1notakey", "name": "x"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_asset_list(sealport_server, alice):
    assets = alice["api"].get(f"{sealport_server.url}/api/v1/assets").json()["assets"]
    cube = next(a for a in assets if a["name"] == "cube")
    assert set(cube) == {
        "asset_id",
        "name",
        "project",
        "format",
        "version",
        "size",
        "created_by",
        "created_at",
    }
    assert cube["format"] == "obj" and cube["size"] > 0


def test_delivery_to_another_users_device_is_forbidden(sealport_server, alice, bob):
    srv = sealport_server
    cube = _cube(srv)
    r = bob["api"].post(
        f"{srv.url}/api/v1/assets/{cube['asset_id']}/deliveries",
        json={"device_id": alice["device_id"]},
    )
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = bob["api"].post(
        f"{srv.url}/api/v1/assets/a_doesnotexist/deliveries", json={"device_id": bob["device_id"]}
    )
    assert r.status_code == 404


def test_manifest_verifies_and_payload_decrypts(sealport_server, alice, delivery):
    srv = sealport_server
    env = alice["api"].get(delivery["manifest_url"])
    assert env.status_code == 200
    verified = manifest.verify_envelope(
        env.json(),
        policy=trust.TrustPolicy(root_fingerprints=(srv.root_fingerprint,)),
        now=int(time.time()),
        user="alice",
        recipient=alice["recipient"],
    )
    m = verified.manifest
    assert m.delivery_id == delivery["delivery_id"] and m.device_id == alice["device_id"]
    assert m.watermark == {"status": "unmarked", "reason": "mesh too small"}
    assert m.payload.encryption == "age-x25519"
    assert m.expires_at - m.issued_at == 3600
    payload = alice["api"].get(delivery["payload_url"])
    assert payload.status_code == 200 and payload.headers["Accept-Ranges"] == "bytes"
    assert len(payload.content) == m.payload.size
    assert hashlib.sha256(payload.content).hexdigest() == m.payload.sha256
    out = io.BytesIO()
    age.decrypt_stream(io.BytesIO(payload.content), out, [alice["identity"]])
    assert hashlib.sha256(out.getvalue()).hexdigest() == m.files[0].sha256
    assert out.getvalue().startswith(b"# unit cube")


def test_other_user_cannot_see_delivery(sealport_server, bob, delivery):
    for url in (delivery["manifest_url"], delivery["payload_url"]):
        r = bob["api"].get(url)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = bob["api"].get(f"{sealport_server.url}/api/v1/deliveries/d_nonexistent/manifest")
    assert r.status_code == 404


def test_range_requests(alice, delivery):
    api, url = alice["api"], delivery["payload_url"]
    full = api.get(url).content
    size = len(full)
    r = api.get(url, headers={"Range": "bytes=10-"})
    assert r.status_code == 206 and r.content == full[10:]
    assert r.headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    r = api.get(url, headers={"Range": "bytes=5-20"})
    assert r.status_code == 206 and r.content == full[5:21]
    assert r.headers["Content-Length"] == "16"
    r = api.get(url, headers={"Range": "bytes=-7"})
    assert r.status_code == 206 and r.content == full[-7:]
    r = api.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    etag = api.get(url, headers={"Range": "bytes=0-0"}).headers["ETag"]
    r = api.get(url, headers={"Range": "bytes=10-", "If-Range": etag})
    assert r.status_code == 206
    r = api.get(url, headers={"Range": "bytes=10-", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == full


def test_parse_range_unit():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-", 100) == (0, 99)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=100-", 100) is False
    assert parse_range("bytes=5-3", 100) is False
    assert parse_range("bytes=0-1,5-6", 100) is None
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=abc", 100) is None


def test_ledger_records_delivery(sealport_server, alice, delivery):
    rec = sealport_server.ledger.get_delivery(delivery["delivery_id"])
    assert rec is not None
    assert (rec.username, rec.device_id, rec.recipient) == (
        "alice",
        alice["device_id"],
        alice["recipient"],
    )
    assert rec.asset_id == delivery["asset"]["asset_id"] and rec.client_ip == "127.0.0.1"
    env = alice["api"].get(delivery["manifest_url"]).json()
    assert rec.manifest_sha256 == hashlib.sha256(base64.b64decode(env["manifest"])).hexdigest()
    payload = (sealport_server.data_dir / "deliveries" / f"{rec.delivery_id}.age").read_bytes()
    assert rec.payload_sha256 == hashlib.sha256(payload).hexdigest()
    events = [e["event"]["event"] for e in sealport_server.ledger.audit_events("alice")]
    assert "delivery_sealed" in events and "device_registered" in events and "login" in events


def test_audit_upload(sealport_server, alice, bob):
    srv = sealport_server
    events = [
        {"event": "import_ok", "asset_id": "a_x", "seq": 1},
        {"event": "hash_mismatch", "seq": 2},
    ]
    r = alice["api"].post(
        f"{srv.url}/api/v1/audit", json={"events": events, "device_id": alice["device_id"]}
    )
    assert r.status_code == 200 and r.json() == {"accepted": 2}
    stored = [e for e in srv.ledger.audit_events("alice") if e["source"] == "client"]
    assert [e["event"] for e in stored[-2:]] == events
    assert all(e["device_id"] == alice["device_id"] for e in stored[-2:])
    r = bob["api"].post(
        f"{srv.url}/api/v1/audit", json={"events": events, "device_id": alice["device_id"]}
    )
    assert r.status_code == 403
    r = alice["api"].post(f"{srv.url}/api/v1/audit", json={"events": "nope"})
    assert r.status_code == 400


def test_deliveries_are_distinct_ciphertexts(sealport_server, alice, delivery):
    srv = sealport_server
    r = alice["api"].post(
        f"{srv.url}/api/v1/assets/{delivery['asset']['asset_id']}/deliveries",
        json={"device_id": alice["device_id"]},
    )
    second = r.json()
    assert second["delivery_id"] != delivery["delivery_id"]
    a = alice["api"].get(delivery["payload_url"]).content
    b = alice["api"].get(second["payload_url"]).content
    assert a != b  # fresh file key per delivery


def test_client_config_is_valid(sealport_server):
    from sealport.config import load_config

    cfg = load_config(sealport_server.client_config_path)
    assert cfg.server_url == sealport_server.url and cfg.issuer == sealport_server.url
    assert cfg.root_fingerprints == (sealport_server.root_fingerprint,)
    assert cfg.ca_file == sealport_server.ca_file
    assert json.loads(json.dumps(cfg.client_id)) == "sealport"


def test_external_issuer_via_jwks_uri(sealport_server, sealport_server_factory):
    """A resource server trusting another issuer fetches its JWKS over TLS."""
    from sealport.server import ServerSettings

    idp = sealport_server
    api_only = sealport_server_factory(
        settings=ServerSettings(
            external_issuer=idp.url,
            external_jwks_uri=f"{idp.url}/oauth/jwks",
            external_ca_file=str(idp.ca_file),
        ),
        seed=False,
    )
    # No embedded IdP on this one.
    assert api_only.session().get(f"{api_only.url}/oauth/jwks").status_code == 404
    tok = idp.login()
    me = api_only.api(tok["access_token"]).get(f"{api_only.url}/api/v1/me")
    assert me.status_code == 200 and me.json()["sub"] == idp.username
    # A token the external issuer did not sign is refused.
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    now = int(time.time())
    forged = jwt.encode(
        {"alg": "EdDSA", "kid": key.kid},
        {"iss": idp.url, "sub": "alice", "aud": "sealport-api", "exp": now + 60, "iat": now},
        key,
        algorithms=["EdDSA"],
    )
    assert api_only.api(forged).get(f"{api_only.url}/api/v1/me").status_code == 401
