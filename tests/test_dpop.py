"""DPoP (RFC 9449) sender-constrained tokens against our server and oidc-provider.

Each attack is staged with real HTTP against the running servers: a DPoP-bound
token without a proof, as Bearer, with a replayed proof, with a proof for
another URL, and with the attacker's own key; a stolen refresh token without
its key.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from sealport.dpop import DPoPKey, htu
from sealport.oidc import discover
from sealport.secret_store import KeyringStore
from sealport.server.dpop import DPoPVerifier, ProofError
from sealport.server.settings import ServerSettings
from sealport.tokens import SESSION_ITEM, TokenSession

from tests.test_pkce_flow import DevIdpBrowser, OidcProviderBrowser
from tests.test_secure_import import make_client, sign_in


def claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def challenge(resp: requests.Response) -> str:
    return resp.headers.get("WWW-Authenticate", "")


@pytest.fixture
def dpop_client(sealport_server: Any, tmp_path: Path) -> Any:
    """Signed in through the device flow with idp.dpop = true."""
    client = make_client(sealport_server, tmp_path / "ws", idp="dpop = true")
    sign_in(client, sealport_server, sealport_server.username, sealport_server.password)
    return client


# --- the verifier alone -----------------------------------------------------------------
def test_verifier_checks_each_claim() -> None:
    v = DPoPVerifier(window=60)
    key = DPoPKey.generate()
    url = "https://api.example/api/v1/me"
    assert (
        v.verify(key.proof("GET", url, access_token="t"), "GET", url, access_token="t") == key.jkt
    )
    bad = [
        (key.proof("POST", url, access_token="t"), "GET", url, "t", "htm"),
        (key.proof("GET", url + "x", access_token="t"), "GET", url, "t", "htu"),
        (key.proof("GET", url, access_token="other"), "GET", url, "t", "ath"),
        (key.proof("GET", url), "GET", url, "t", "ath"),
    ]
    for proof, method, where, token, what in bad:
        with pytest.raises(ProofError, match=what):
            v.verify(proof, method, where, access_token=token)
    old = DPoPVerifier(window=60, clock=lambda: 10_000.0)
    with pytest.raises(ProofError, match="iat"):
        old.verify(key.proof("GET", url), "GET", url)
    with pytest.raises(ProofError, match="compact"):
        v.verify("a.b", "GET", url)
    # A proof signed with HMAC (alg outside the allow-list) is refused before any key use.
    h = base64.urlsafe_b64encode(b'{"typ":"dpop+jwt","alg":"HS256"}').rstrip(b"=").decode()
    with pytest.raises(ProofError, match="alg"):
        v.verify(f"{h}.e30.c2ln", "GET", url)
    assert htu("HTTPS://API.example/a?b=1#c") == "https://api.example/a"


# --- our server ------------------------------------------------------------------------
def test_dpop_sign_in_binds_tokens_and_keeps_the_key_with_the_refresh_token(
    dpop_client: Any,
) -> None:
    tokens = dpop_client.tokens
    at = tokens.access_token()
    key = tokens.dpop_key()
    assert key is not None and claims(at)["cnf"] == {"jkt": key.jkt}
    record = json.loads(dpop_client.store.get(SESSION_ITEM))
    assert record["dpop_jwk"]["d"] and record["refresh_token"]  # one secret-store record
    assert dpop_client.whoami()["sub"]  # API requests carry DPoP token + proof
    assert tokens.force_refresh() != at  # refresh proves the same key
    assert claims(tokens.access_token())["cnf"] == {"jkt": key.jkt}


def test_server_refuses_a_bound_token_without_its_proof(
    dpop_client: Any, sealport_server: Any
) -> None:
    at = dpop_client.tokens.access_token()
    key = dpop_client.tokens.dpop_key()
    url = f"{sealport_server.url}/api/v1/me"
    http = sealport_server.session()

    def me(headers: dict[str, str], where: str = url) -> requests.Response:
        return http.get(where, headers=headers, timeout=30)

    good = {"Authorization": f"DPoP {at}", "DPoP": key.proof("GET", url, access_token=at)}
    assert me(good).status_code == 200

    # Replay of the very same proof.
    replay = me(good)
    assert replay.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenge(replay)
    assert "replay" in challenge(replay)

    # No proof at all; and the token presented as a plain Bearer token.
    for headers in ({"Authorization": f"DPoP {at}"}, {"Authorization": f"Bearer {at}"}):
        r = me(headers)
        assert r.status_code == 401
        assert challenge(r).startswith("DPoP ") and 'error="invalid_dpop_proof"' in challenge(r)

    # A valid proof, but for another URL.
    other = key.proof("GET", f"{sealport_server.url}/api/v1/assets", access_token=at)
    r = me({"Authorization": f"DPoP {at}", "DPoP": other})
    assert r.status_code == 401 and "htu" in challenge(r)

    # Stolen token + the attacker's own key (a perfectly valid proof, wrong key).
    attacker = DPoPKey.generate()
    r = me({"Authorization": f"DPoP {at}", "DPoP": attacker.proof("GET", url, access_token=at)})
    assert r.status_code == 401 and "does not match the token binding" in challenge(r)

    # The artist's own next request still works.
    assert dpop_client.whoami()["sub"]


def test_stolen_refresh_token_is_useless_without_the_key(
    dpop_client: Any, sealport_server: Any
) -> None:
    rt = json.loads(dpop_client.store.get(SESSION_ITEM))["refresh_token"]
    token_url = f"{sealport_server.url}/oauth/token"
    form = {"grant_type": "refresh_token", "refresh_token": rt, "client_id": "sealport"}
    http = sealport_server.session()
    bare = http.post(token_url, data=form, timeout=30)
    assert bare.status_code == 400 and bare.json()["error"] == "invalid_grant"
    attacker = DPoPKey.generate()
    wrong = http.post(token_url, data=form, headers={"DPoP": attacker.proof("POST", token_url)})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # The failed attempts did not burn the artist's refresh token.
    assert dpop_client.tokens.force_refresh()
    assert dpop_client.whoami()["sub"]


def test_browser_sign_in_binds_the_code_to_the_key(sealport_server: Any, tmp_path: Path) -> None:
    client = make_client(sealport_server, tmp_path / "ws", idp='flow = "pkce"\ndpop = true')
    browser = DevIdpBrowser(sealport_server)
    client.tokens.open_browser = browser
    urls: list[str] = []
    client.login(lambda a: None, on_browser=lambda s: urls.append(s.authorize_url))
    assert not browser.errors, browser.errors
    key = client.tokens.dpop_key()
    assert key is not None and f"dpop_jkt={key.jkt}" in urls[0]
    assert claims(client.tokens.access_token())["cnf"]["jkt"] == key.jkt
    assert client.whoami()["sub"] == sealport_server.username


def test_strict_server_demands_dpop_and_nonces(
    sealport_server_factory: Any, tmp_path: Path
) -> None:
    server = sealport_server_factory(
        settings=ServerSettings(device_interval=1, dpop_required=True, dpop_nonce=True)
    )
    # A bearer token from the same IdP is refused outright.
    r = server.api(server.mint_token(sub=server.username)).get(f"{server.url}/api/v1/me")
    assert r.status_code == 401 and challenge(r).startswith("DPoP ")
    # A device-flow poll without a proof is refused before the grant is looked at.
    auth = server.start_device_flow()
    poll = server.session().post(
        f"{server.url}/oauth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": auth["device_code"],
            "client_id": "sealport",
        },
        timeout=30,
    )
    assert poll.status_code == 400 and poll.json()["error"] == "invalid_dpop_proof"
    # The client answers use_dpop_nonce (token endpoint and API) and signs in, through
    # the device flow (nonce while polling) and the browser flow (nonce on code exchange).
    client = make_client(server, tmp_path / "ws", idp="dpop = true")
    sign_in(client, server, server.username, server.password)
    assert client.whoami()["sub"] == server.username
    assert client.assets()
    browser_client = make_client(server, tmp_path / "ws2", idp='flow = "pkce"\ndpop = true')
    browser_client.tokens.open_browser = browser = DevIdpBrowser(server)
    browser_client.login(lambda a: None, on_browser=lambda s: None)
    assert not browser.errors, browser.errors
    assert browser_client.whoami()["sub"] == server.username


# --- oidc-provider ------------------------------------------------------------------------
def test_oidc_provider_dpop_bound_tokens(oidc_provider, secret_service, tmp_path) -> None:
    http = requests.Session()
    meta = discover(http, oidc_provider.issuer)
    assert "ES256" in meta.dpop_algs
    browser = OidcProviderBrowser("carol")
    ts = TokenSession(
        http,
        meta,
        oidc_provider.client_id,
        KeyringStore("sealport-test", "dpop-test/"),
        tmp_path / "refresh.lock",
        scopes=oidc_provider.scopes,
        flow="pkce",
        dpop=True,
        open_browser=browser,
        browser_wait=60,
    )
    done = threading.Event()
    ident = ts.login(lambda a: None, on_browser=lambda s: done.set())
    assert not browser.errors and done.is_set()
    assert ident.sub == "carol"
    key = ts.dpop_key()
    assert key is not None
    record = json.loads(ts.store.get(SESSION_ITEM) or "{}")
    assert record["dpop_jwk"]["d"]  # the key sits in the keyring beside the refresh token
    userinfo = meta.userinfo_endpoint or ""
    at = ts.access_token()
    assert http.get(userinfo, headers=ts.request_headers("GET", userinfo)).status_code == 200
    assert http.get(userinfo, headers={"Authorization": f"Bearer {at}"}).status_code == 401

    # The stolen refresh token alone, or with another key, gets nothing.
    form = {
        "grant_type": "refresh_token",
        "refresh_token": record["refresh_token"],
        "client_id": oidc_provider.client_id,
    }
    url = meta.token_endpoint
    assert http.post(url, data=form).json()["error"] == "invalid_grant"
    other = DPoPKey.generate()
    stolen = http.post(url, data=form, headers={"DPoP": other.proof("POST", url)})
    assert stolen.json()["error"] == "invalid_grant"

    # With its own key it renews (tests/idp/server.mjs forces rotation), and the new
    # refresh token is bound to the same key: again useless alone.
    assert ts.force_refresh() != at
    after = json.loads(ts.store.get(SESSION_ITEM) or "{}")
    assert after["dpop_jwk"] == record["dpop_jwk"]
    form["refresh_token"] = after["refresh_token"]
    assert http.post(url, data=form).json()["error"] == "invalid_grant"
    assert ts.force_refresh()
    ts.logout()
    assert ts.store.get(SESSION_ITEM) is None


def test_refused_refresh_without_the_key_is_in_the_ledger(
    dpop_client: Any, sealport_server: Any
) -> None:
    def refusals() -> int:
        sql = "SELECT COUNT(*) AS n FROM audit_events WHERE event LIKE '%dpop_refresh_refused%'"
        return int(sealport_server.ledger.one(sql)["n"])

    before = refusals()
    rt = json.loads(dpop_client.store.get(SESSION_ITEM))["refresh_token"]
    r = sealport_server.session().post(
        f"{sealport_server.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "sealport"},
        timeout=30,
    )
    assert r.json()["error"] == "invalid_grant"
    assert refusals() == before + 1
