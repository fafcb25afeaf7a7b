"""RFC 8628 client: main path against oidc-provider, vendor quirks against a tiny real server.

Timing: an injected fake clock/sleep keeps runs short; every HTTP request is real.
Poll times are recorded on the fake clock by a response hook on the session.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from sealport.device_flow import DeviceAuthorization, poll, qr_text, start
from sealport.errors import (
    AuthError,
    Cancelled,
    LoginDenied,
    LoginExpired,
    TransportError,
)
from sealport.oidc import DEVICE_GRANT, ProviderMetadata, discover
from sealport.progress import Progress


class FakeClock:
    """Monotonic clock that only moves when ``sleep`` is called."""

    def __init__(self, real_scale: float = 0.0) -> None:
        self.now = 1000.0
        self.real_scale = real_scale  # real seconds slept per fake second
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.real_scale:
            time.sleep(seconds * self.real_scale)
        self.now += seconds


@dataclass
class PollLog:
    """Token-endpoint replies as seen by the client: (fake time, error or None)."""

    clock: FakeClock
    token_url: str
    entries: list[tuple[float, str | None]] = field(default_factory=list)

    def hook(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        if resp.request.method == "POST" and resp.url == self.token_url:
            try:
                error = resp.json().get("error")
            except ValueError:
                error = "<not json>"
            self.entries.append((self.clock(), error))

    @property
    def times(self) -> list[float]:
        return [t - 1000.0 for t, _ in self.entries]

    @property
    def errors(self) -> list[str | None]:
        return [e for _, e in self.entries]


def session_with_log(clock: FakeClock, token_url: str) -> tuple[requests.Session, PollLog]:
    s = requests.Session()
    plog = PollLog(clock, token_url)
    s.hooks["response"].append(plog.hook)
    return s, plog


# --- against oidc-provider ---------------------------------------------------------------
def test_discovery_of_the_real_idp(oidc_provider) -> None:
    meta = discover(requests.Session(), oidc_provider.issuer + "/")
    assert meta.issuer == oidc_provider.issuer
    assert meta.device_authorization_endpoint == f"{oidc_provider.issuer}/device/auth"
    assert meta.token_endpoint == f"{oidc_provider.issuer}/token"
    assert meta.revocation_endpoint == f"{oidc_provider.issuer}/token/revocation"
    assert meta.userinfo_endpoint and meta.jwks_uri and meta.end_session_endpoint


def test_device_login_end_to_end(oidc_provider) -> None:
    clock = FakeClock()
    meta = discover(requests.Session(), oidc_provider.issuer)
    session, plog = session_with_log(clock, meta.token_endpoint)
    auth = start(session, meta, oidc_provider.client_id, oidc_provider.scopes, clock=clock)
    assert auth.interval == 5  # oidc-provider omits "interval": RFC default
    assert auth.user_code in (auth.verification_uri_complete or "")
    assert "device_code" not in repr(auth)

    approved = []

    def approve_after_first_pending(resp: requests.Response, *a: Any, **k: Any) -> None:
        if resp.url == meta.token_endpoint and not approved:
            approved.append(True)
            oidc_provider.approve(auth.user_code, login="alice")

    session.hooks["response"].append(approve_after_first_pending)
    tokens = poll(session, meta, oidc_provider.client_id, auth, sleep=clock.sleep, clock=clock)
    assert plog.errors == ["authorization_pending", None]
    assert plog.times == [5.0, 10.0]
    assert tokens.refresh_token and tokens.id_token and tokens.token_type == "Bearer"
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    me = requests.get(
        meta.userinfo_endpoint or "",
        headers={"Authorization": f"Bearer {tokens.access_token}"},
        timeout=10,
    )
    assert me.status_code == 200 and me.json()["sub"] == "alice"

    # Never redeemed twice: a second poll() refuses without any request...
    with pytest.raises(AuthError):
        poll(session, meta, oidc_provider.client_id, auth, sleep=clock.sleep, clock=clock)
    assert len(plog.entries) == 2
    # ...so the IdP never revokes the tokens it issued.
    again = requests.get(
        meta.userinfo_endpoint or "",
        headers={"Authorization": f"Bearer {tokens.access_token}"},
        timeout=10,
    )
    assert again.status_code == 200


def test_denied_on_the_approval_page(oidc_provider) -> None:
    clock = FakeClock()
    meta = discover(requests.Session(), oidc_provider.issuer)
    session = requests.Session()
    auth = start(session, meta, oidc_provider.client_id, oidc_provider.scopes, clock=clock)
    oidc_provider.deny(auth.user_code)
    with pytest.raises(LoginDenied) as err:
        poll(session, meta, oidc_provider.client_id, auth, sleep=clock.sleep, clock=clock)
    assert "access_denied" in err.value.detail


def test_expired_device_code(oidc_provider_factory) -> None:
    idp = oidc_provider_factory(DEVICE_CODE_TTL=2, DEVICE_INTERVAL=1)
    clock = FakeClock()
    meta = discover(requests.Session(), idp.issuer)
    session, plog = session_with_log(clock, meta.token_endpoint)
    auth = start(session, meta, idp.client_id, idp.scopes, clock=clock)
    time.sleep(2.5)  # real time: the IdP's code expires (our fake deadline has not passed)
    with pytest.raises(LoginExpired) as err:
        poll(session, meta, idp.client_id, auth, sleep=clock.sleep, clock=clock)
    assert "expired_token" in err.value.detail
    assert plog.errors == ["expired_token"]


def test_slow_down_adds_five_seconds_for_all_later_polls(oidc_provider_factory) -> None:
    scale = 0.15  # the IdP measures 1 interval-second as 0.15 real seconds
    idp = oidc_provider_factory(DEVICE_INTERVAL=1, ENFORCE_SLOW_DOWN=1, SLOW_DOWN_TIME_SCALE=scale)
    meta = discover(requests.Session(), idp.issuer)

    clock = FakeClock(real_scale=scale)
    session, plog = session_with_log(clock, meta.token_endpoint)
    fast_once = {"on": True}

    def drifting_sleep(seconds: float) -> None:
        # The first wait runs on a "fast" clock (as on a drifting VM): no real time passes,
        # so the IdP sees a poll that is too early and answers slow_down.
        if fast_once["on"]:
            clock.now += seconds
        else:
            clock.sleep(seconds)

    def stop_drifting(resp: requests.Response, *a: Any, **k: Any) -> None:
        if resp.url == meta.token_endpoint:
            fast_once["on"] = False

    session.hooks["response"].append(stop_drifting)
    auth = start(session, meta, idp.client_id, idp.scopes, clock=clock)
    assert auth.interval == 1
    # Keep the code pending for a few polls so we see the new interval persist.
    polls_before_approval = 2

    def approve_later(resp: requests.Response, *a: Any, **k: Any) -> None:
        if resp.url == meta.token_endpoint and len(plog.entries) == polls_before_approval:
            idp.approve(auth.user_code)

    session.hooks["response"].append(approve_later)
    tokens = poll(session, meta, idp.client_id, auth, sleep=drifting_sleep, clock=clock)
    assert tokens.access_token
    assert plog.errors == ["slow_down", "authorization_pending", None]
    assert plog.times == [1.0, 7.0, 13.0]  # 1 s, then 1 + 5 s for every later poll


def test_interval_from_the_idp_is_honoured(oidc_provider_factory) -> None:
    scale = 0.1
    idp = oidc_provider_factory(DEVICE_INTERVAL=2, ENFORCE_SLOW_DOWN=1, SLOW_DOWN_TIME_SCALE=scale)
    meta = discover(requests.Session(), idp.issuer)
    clock = FakeClock(real_scale=scale)
    session, plog = session_with_log(clock, meta.token_endpoint)
    auth = start(session, meta, idp.client_id, idp.scopes, clock=clock)
    assert auth.interval == 2

    def approve_later(resp: requests.Response, *a: Any, **k: Any) -> None:
        if resp.url == meta.token_endpoint and len(plog.entries) == 2:
            idp.approve(auth.user_code)

    session.hooks["response"].append(approve_later)
    poll(session, meta, idp.client_id, auth, sleep=clock.sleep, clock=clock)
    # The IdP enforces the interval: any early poll would have produced slow_down.
    assert plog.errors == ["authorization_pending", "authorization_pending", None]
    assert plog.times == [2.0, 4.0, 6.0]


def test_cancel_while_waiting(oidc_provider) -> None:
    clock = FakeClock()
    meta = discover(requests.Session(), oidc_provider.issuer)
    session, plog = session_with_log(clock, meta.token_endpoint)
    auth = start(session, meta, oidc_provider.client_id, oidc_provider.scopes, clock=clock)
    progress = Progress()

    def sleep_then_cancel(seconds: float) -> None:
        clock.sleep(seconds)
        if len(plog.entries) == 1:
            progress.cancel()  # the artist pressed Cancel after the first poll

    with pytest.raises(Cancelled):
        poll(
            session,
            meta,
            oidc_provider.client_id,
            auth,
            progress=progress,
            sleep=sleep_then_cancel,
            clock=clock,
        )
    assert plog.errors == ["authorization_pending"]


def test_qr_text_shows_the_user_code() -> None:
    auth = DeviceAuthorization(
        device_code="dc",
        user_code="WXYZ-BCDF",
        verification_uri="https://sso.studio.example/device",
        verification_uri_complete="https://sso.studio.example/device?user_code=WXYZ-BCDF",
        expires_at=0.0,
        interval=5,
    )
    text = qr_text(auth)
    assert "WXYZ-BCDF" in text and "https://sso.studio.example/device" in text
    assert sum(1 for line in text.splitlines() if "█" in line) >= 10
    plain = DeviceAuthorization(
        device_code="dc",
        user_code="QQQQ-RRRR",
        verification_uri="https://sso.studio.example/device",
        verification_uri_complete=None,
        expires_at=0.0,
        interval=5,
    )
    assert "QQQQ-RRRR" in qr_text(plain)


# --- vendor quirks: a tiny real HTTP server with scripted replies --------------------------
class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: dict[str, deque[tuple[Any, ...]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hang = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def script(self, path: str, *replies: tuple[Any, ...]) -> None:
        self.replies.setdefault(path, deque()).extend(replies)

    def meta(self) -> ProviderMetadata:
        return ProviderMetadata(
            issuer=self.base,
            token_endpoint=f"{self.base}/token",
            device_authorization_endpoint=f"{self.base}/device",
            revocation_endpoint=None,
            jwks_uri=None,
            userinfo_endpoint=None,
        )


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self.server.requests.append((self.path, form))
        queue = self.server.replies.get(self.path)
        if not queue:
            self.send_error(404)
            return
        reply = queue[0] if len(queue) == 1 else queue.popleft()
        if reply[0] == "hang":
            self.server.hang.wait(reply[1])
            return
        status, body = reply
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _reply
    do_POST = _reply


@pytest.fixture
def quirky() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.hang.set()
        srv.shutdown()
        srv.server_close()


TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt"}


def device_reply(base: str, **extra: Any) -> dict[str, Any]:
    body = {"device_code": "dev-code", "user_code": "BCDF-GHJK", "expires_in": 600}
    body.update(extra)
    return body


def test_google_verification_url_and_missing_interval(quirky) -> None:
    quirky.script(
        "/device",
        (200, device_reply(quirky.base, verification_url="https://www.google.com/device")),
    )
    clock = FakeClock()
    auth = start(requests.Session(), quirky.meta(), "cid", ["openid"], clock=clock)
    assert auth.verification_uri == "https://www.google.com/device"
    assert auth.verification_uri_complete is None
    assert auth.interval == 5
    assert auth.expires_at == clock() + 600
    assert quirky.requests[0][1] == {"client_id": "cid", "scope": "openid"}


def test_entra_authorization_declined_is_a_denial(quirky) -> None:
    quirky.script(
        "/device",
        (200, device_reply(quirky.base, verification_uri="https://microsoft.com/devicelogin")),
    )
    quirky.script("/token", (400, {"error": "authorization_declined"}))
    clock = FakeClock()
    session = requests.Session()
    auth = start(session, quirky.meta(), "cid", ["openid"], clock=clock)
    with pytest.raises(LoginDenied):
        poll(session, quirky.meta(), "cid", auth, sleep=clock.sleep, clock=clock)
    assert quirky.requests[-1][1] == {
        "grant_type": DEVICE_GRANT,
        "device_code": "dev-code",
        "client_id": "cid",
    }


def test_error_is_read_whatever_the_status(quirky) -> None:
    quirky.script(
        "/device",
        (200, device_reply(quirky.base, verification_uri="https://idp.example/device", interval=2)),
    )
    quirky.script(
        "/token",
        (403, {"error": "authorization_pending"}),  # Auth0
        (401, {"error": "authorization_pending"}),
        (200, {"error": "authorization_pending"}),  # GitHub
        (429, {"error": "slow_down"}),  # Auth0
        (200, TOKEN),
    )
    clock = FakeClock()
    session, plog = session_with_log(clock, f"{quirky.base}/token")
    auth = start(session, quirky.meta(), "cid", ["openid"], clock=clock)
    tokens = poll(session, quirky.meta(), "cid", auth, sleep=clock.sleep, clock=clock)
    assert tokens.access_token == "at-1"
    assert plog.times == [2.0, 4.0, 6.0, 8.0, 15.0]


def test_network_timeout_backs_off_and_keeps_polling(quirky) -> None:
    quirky.script(
        "/device",
        (200, device_reply(quirky.base, verification_uri="https://idp.example/device")),
    )
    quirky.script(
        "/token",
        ("hang", 5.0),
        ("hang", 5.0),
        (400, {"error": "authorization_pending"}),
        (200, TOKEN),
    )
    clock = FakeClock()
    session = requests.Session()
    auth = start(session, quirky.meta(), "cid", ["openid"], clock=clock)
    times: list[float] = []
    real_post = session.post

    def timed_post(*a: Any, **k: Any) -> Any:
        times.append(clock() - 1000.0)
        return real_post(*a, **k)

    session.post = timed_post  # type: ignore[method-assign]
    tokens = poll(session, quirky.meta(), "cid", auth, sleep=clock.sleep, clock=clock, timeout=0.3)
    assert tokens.access_token == "at-1"
    # 5, then two timeouts: back off 10, 20; then back to the normal 5.
    assert times == [5.0, 15.0, 35.0, 40.0]


def test_client_side_deadline(quirky) -> None:
    quirky.script(
        "/device",
        (
            200,
            device_reply(quirky.base, verification_uri="https://idp.example/device", expires_in=17),
        ),
    )
    quirky.script("/token", (400, {"error": "authorization_pending"}))
    clock = FakeClock()
    session, plog = session_with_log(clock, f"{quirky.base}/token")
    auth = start(session, quirky.meta(), "cid", ["openid"], clock=clock)
    with pytest.raises(LoginExpired):
        poll(session, quirky.meta(), "cid", auth, sleep=clock.sleep, clock=clock)
    assert plog.times == [5.0, 10.0, 15.0]  # never polls after the code's deadline


def test_idp_refusing_device_flow_for_the_client(quirky) -> None:
    quirky.script("/device", (400, {"error": "unauthorized_client"}))
    with pytest.raises(AuthError) as err:
        start(requests.Session(), quirky.meta(), "cid", ["openid"])
    assert "does not allow device sign-in" in err.value.message


def test_insecure_verification_uri_is_refused(quirky) -> None:
    quirky.script(
        "/device", (200, device_reply(quirky.base, verification_uri="http://evil.example/d"))
    )
    with pytest.raises(AuthError):
        start(requests.Session(), quirky.meta(), "cid", ["openid"])


# --- discovery errors ------------------------------------------------------------------
def discovery_doc(base: str, **over: Any) -> dict[str, Any]:
    doc = {
        "issuer": base,
        "token_endpoint": f"{base}/token",
        "device_authorization_endpoint": f"{base}/device",
        "grant_types_supported": ["refresh_token", DEVICE_GRANT],
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def test_discovery_without_device_endpoint(quirky) -> None:
    quirky.script(
        "/.well-known/openid-configuration",
        (200, discovery_doc(quirky.base, device_authorization_endpoint=None)),
    )
    with pytest.raises(AuthError) as err:
        discover(requests.Session(), quirky.base)
    assert err.value.message == (
        "Your studio's sign-in service does not allow device sign-in; ask your TD."
    )


def test_discovery_issuer_mismatch(quirky) -> None:
    quirky.script(
        "/.well-known/openid-configuration",
        (200, discovery_doc(quirky.base, issuer="https://other.example")),
    )
    with pytest.raises(AuthError) as err:
        discover(requests.Session(), quirky.base)
    assert "https://other.example" in err.value.detail


def test_discovery_falls_back_to_rfc8414(quirky) -> None:
    quirky.script("/.well-known/oauth-authorization-server", (200, discovery_doc(quirky.base)))
    meta = discover(requests.Session(), quirky.base)
    assert meta.device_authorization_endpoint == f"{quirky.base}/device"


def test_discovery_unreachable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError) as err:
        discover(requests.Session(), f"http://127.0.0.1:{port}")
    assert "could not reach" in err.value.message


def test_discovery_requires_https_for_non_loopback() -> None:
    with pytest.raises(AuthError):
        discover(requests.Session(), "http://sso.studio.example")
