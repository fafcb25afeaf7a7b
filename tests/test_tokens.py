"""Token session against the real oidc-provider IdP and a real Secret Service."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests
from sealport.errors import LoginRequired, LogoutIncomplete
from sealport.oidc import ProviderMetadata, discover
from sealport.secret_store import KeyringStore
from sealport.tokens import SESSION_ITEM, TokenSession

CORE = Path(__file__).resolve().parents[1] / "core"
SERVICE = "sealport-test"
PREFIX = "tokens-test/"


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_session(idp: Any, store: Any, lock: Path, clock: FakeClock, **kw: Any) -> TokenSession:
    http = requests.Session()
    meta = kw.pop("meta", None) or discover(http, idp.issuer)
    return TokenSession(
        http,
        meta,
        idp.client_id,
        store,
        lock,
        scopes=idp.scopes,
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )


def stored(store: KeyringStore) -> dict[str, Any] | None:
    raw = store.get(SESSION_ITEM)
    return None if raw is None else json.loads(raw)


def userinfo(meta: ProviderMetadata, access_token: str) -> requests.Response:
    return requests.get(
        meta.userinfo_endpoint or "",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def raw_refresh(meta: ProviderMetadata, client_id: str, rt: str) -> dict[str, Any]:
    r = requests.post(
        meta.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": client_id},
        timeout=10,
    )
    return dict(r.json())


@pytest.fixture
def signed_in(oidc_provider, secret_service, tmp_path):
    """A TokenSession signed in as alice through the IdP's real approval pages."""
    store = KeyringStore(SERVICE, PREFIX)
    clock = FakeClock()
    ts = make_session(oidc_provider, store, tmp_path / "refresh.lock", clock)
    shown = []

    def on_code(auth: Any) -> None:
        shown.append(auth.user_code)
        oidc_provider.approve(auth.user_code, login="alice")

    ident = ts.login(on_code)
    assert shown
    return ts, store, clock, ident


def test_login_keeps_only_the_refresh_token_in_the_store(signed_in, secret_service) -> None:
    ts, store, _clock, ident = signed_in
    assert (ident.sub, ident.name, ident.email) == ("alice", "Artist alice", "alice@studio.test")
    assert ts.is_signed_in()
    at = ts.access_token()
    raw = store.get(SESSION_ITEM)
    assert raw is not None and at not in raw
    rec = json.loads(raw)
    assert set(rec) == {"v", "issuer", "client_id", "refresh_token", "sub", "name", "email"}
    assert userinfo(ts.meta, at).json()["sub"] == "alice"
    # The item is really in the Secret Service (read back with libsecret's CLI).
    out = subprocess.run(
        ["secret-tool", "lookup", "service", SERVICE, "username", PREFIX + SESSION_ITEM],
        env=secret_service.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert json.loads(out)["refresh_token"] == rec["refresh_token"]
    assert rec["refresh_token"] not in repr(ts) and at not in repr(ts.identity())


def test_refresh_rotates_and_the_old_refresh_token_is_dead(signed_in) -> None:
    ts, store, _clock, _ = signed_in
    rt1 = stored(store)["refresh_token"]
    at1 = ts.access_token()
    at2 = ts.force_refresh()
    rt2 = stored(store)["refresh_token"]
    assert rt2 != rt1 and at2 != at1
    assert userinfo(ts.meta, at2).status_code == 200
    # Presenting the rotated-out RT fails, and the IdP's reuse detection then kills the
    # whole grant: exactly why refreshes must be serialised across processes.
    assert raw_refresh(ts.meta, ts.client_id, rt1)["error"] == "invalid_grant"
    assert raw_refresh(ts.meta, ts.client_id, rt2)["error"] == "invalid_grant"


def test_access_token_is_refreshed_silently_near_expiry(signed_in) -> None:
    ts, store, clock, _ = signed_in
    at1 = ts.access_token()
    rt1 = stored(store)["refresh_token"]
    clock.now += 200  # 300 s token, 30 s skew: still fresh
    assert ts.access_token() == at1
    assert stored(store)["refresh_token"] == rt1
    clock.now += 80  # inside the skew window
    at2 = ts.access_token()
    assert at2 != at1
    assert stored(store)["refresh_token"] != rt1
    assert userinfo(ts.meta, at2).status_code == 200
    assert ts.identity().sub == "alice"


def test_revoked_refresh_token_means_login_required(signed_in) -> None:
    ts, store, _clock, _ = signed_in
    rt = stored(store)["refresh_token"]
    r = requests.post(
        ts.meta.revocation_endpoint or "",
        data={"token": rt, "token_type_hint": "refresh_token", "client_id": ts.client_id},
        timeout=10,
    )
    assert r.status_code == 200
    with pytest.raises(LoginRequired) as err:
        ts.force_refresh()
    assert err.value.message == "Your Sealport sign-in has ended. Sign in again."
    assert rt not in err.value.message and rt not in err.value.detail
    assert store.get(SESSION_ITEM) is None
    assert not ts.is_signed_in()
    with pytest.raises(LoginRequired):
        ts.access_token()


def test_invalid_grant_rereads_the_store_once(signed_in) -> None:
    """Another writer (e.g. an older client without the lock) rotates the RT mid-refresh."""
    ts, store, _clock, _ = signed_in
    calls: list[str] = []
    ts.session.hooks["response"].append(
        lambda resp, *a, **k: calls.append(resp.url) if resp.url == ts.meta.token_endpoint else None
    )

    class RacingStore:
        def __init__(self) -> None:
            self.raced = False

        def get(self, name: str) -> str | None:
            value = store.get(name)
            if not self.raced and value is not None:
                self.raced = True
                rec = json.loads(value)
                new = raw_refresh(ts.meta, ts.client_id, rec["refresh_token"])
                store.set(name, json.dumps({**rec, "refresh_token": new["refresh_token"]}))
            return value  # the RT as it was before the other writer rotated it

        def set(self, name: str, value: str) -> None:
            store.set(name, value)

        def delete(self, name: str) -> None:
            store.delete(name)

    ts.store = RacingStore()
    with pytest.raises(LoginRequired):
        ts.force_refresh()
    # Refresh with the stale RT, then one retry with the re-read (newer) RT. oidc-provider
    # revoked the family on the stale reuse, so the retry fails too and the store is wiped.
    assert len(calls) == 2
    assert store.get(SESSION_ITEM) is None


def test_logout_revokes_and_wipes(signed_in) -> None:
    ts, store, _clock, _ = signed_in
    at = ts.access_token()
    rt = stored(store)["refresh_token"]
    ts.logout()
    assert store.get(SESSION_ITEM) is None and not ts.is_signed_in()
    assert userinfo(ts.meta, at).status_code == 401
    assert raw_refresh(ts.meta, ts.client_id, rt)["error"] == "invalid_grant"
    intro = requests.post(
        f"{ts.meta.issuer}/token/introspection",
        data={"token": at, "client_id": ts.client_id},
        timeout=10,
    )
    assert intro.status_code == 200 and intro.json()["active"] is False
    with pytest.raises(LoginRequired):
        ts.access_token()


def test_logout_wipes_even_when_the_idp_is_unreachable(signed_in) -> None:
    import dataclasses
    import socket

    ts, store, _clock, _ = signed_in
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/revoke"
    ts.meta = dataclasses.replace(ts.meta, revocation_endpoint=dead)
    rt = stored(store)["refresh_token"]
    with pytest.raises(LogoutIncomplete) as err:
        ts.logout()
    assert "signed out on this workstation" in err.value.message
    assert rt not in err.value.detail
    assert store.get(SESSION_ITEM) is None


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import requests
    from sealport.oidc import discover
    from sealport.secret_store import KeyringStore
    from sealport.tokens import TokenSession

    issuer, client_id, lock, rounds = sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
    http = requests.Session()
    meta = discover(http, issuer)
    ts = TokenSession(http, meta, client_id, KeyringStore("{service}", "{prefix}"), lock)
    ok = 0
    for _ in range(rounds):
        try:
            at = ts.force_refresh()
        except Exception as exc:  # say why: the detail names the keyring's own error
            print("detail:", getattr(exc, "detail", ""), file=sys.stderr)
            raise
        r = http.get(meta.userinfo_endpoint, headers={{"Authorization": "Bearer " + at}})
        if r.status_code != 200:
            print(json.dumps({{"ok": ok, "failed_status": r.status_code}}))
            sys.exit(1)
        ok += 1
    print(json.dumps({{"ok": ok}}))
    """
).format(service=SERVICE, prefix=PREFIX)


def test_two_processes_refresh_at_once_without_burning_the_grant(
    signed_in, secret_service, tmp_path
) -> None:
    ts, store, _clock, _ = signed_in
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rounds = 6
    args = [
        sys.executable,
        str(script),
        str(CORE),
        ts.meta.issuer,
        ts.client_id,
        str(ts.lock_path),
        str(rounds),
    ]
    env = secret_service.subprocess_env()
    children = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [c.communicate(timeout=120) for c in children]
    for child, (out, errtext) in zip(children, results, strict=True):
        assert child.returncode == 0, f"child failed: {out}\n{errtext[-3000:]}"
        assert json.loads(out.strip().splitlines()[-1]) == {"ok": rounds}
    # The grant family is alive: this process can still refresh with whatever is stored now.
    at = ts.force_refresh()
    assert userinfo(ts.meta, at).status_code == 200
