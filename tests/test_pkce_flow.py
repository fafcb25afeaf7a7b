"""Browser sign-in (authorization code + PKCE, loopback redirect) against real IdPs.

The "browser" is an HTTP client that opens the authorize address, reads the
IdP's pages and presses their buttons as a person would, then follows the
redirect to the client's loopback listener. Both the reference server's dev
IdP (over real TLS) and npm oidc-provider are used.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from sealport.errors import (
    Cancelled,
    LoginDenied,
    LoginExpired,
    LoginStateMismatch,
    SessionRevoked,
)
from sealport.oidc import discover
from sealport.pkce_flow import BrowserSignIn, LoopbackListener, browser_likely_available
from sealport.progress import Progress
from sealport.secret_store import KeyringStore
from sealport.server.authcode import loopback_redirect_ok
from sealport.tokens import SESSION_ITEM, TokenSession, choose_flow

from tests.fixtures.oidc_provider import Browser, page_text, parse_forms
from tests.test_secure_import import make_client

# --- browsers ------------------------------------------------------------------------


def refused(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def set_state(location: str, state: str) -> str:
    p = urlsplit(location)
    q = {k: v[0] for k, v in parse_qs(p.query).items()}
    q["state"] = state
    return urlunsplit((p.scheme, p.netloc, p.path, urlencode(q), ""))


class DevIdpBrowser:
    """Drives the reference server's /oauth/authorize page in a background thread."""

    def __init__(
        self,
        server: Any,
        *,
        decision: str = "approve",
        tamper: Callable[[str], str] | None = None,
    ) -> None:
        self.server = server
        self.decision = decision
        self.tamper = tamper
        self.page = ""
        self.errors: list[BaseException] = []
        self.done = threading.Event()

    def __call__(self, url: str) -> bool:
        threading.Thread(target=self._run, args=(url,), daemon=True).start()
        return True

    def _run(self, url: str) -> None:
        try:
            b = self.server.session()
            page = b.get(url, timeout=30)
            assert page.status_code == 200, page.text[:300]
            self.page = page_text(page)
            form = parse_forms(page.text)[0][0]
            data = dict(
                form.fields,
                username=self.server.username,
                password=self.server.password,
                decision=self.decision,
            )
            resp = b.post(urljoin(page.url, form.action), data=data, allow_redirects=False)
            assert resp.status_code == 303, resp.text[:300]
            location = resp.headers["location"]
            if self.tamper is not None:
                location = self.tamper(location)
            requests.get(location, timeout=30)  # the loopback listener (plain http)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
        finally:
            self.done.set()


def pkce_client(server: Any, home: Path, browser: Any) -> Any:
    client = make_client(server, home, idp='flow = "pkce"')
    client.tokens.open_browser = browser
    return client


# --- pure parts ----------------------------------------------------------------------
def test_flow_choice_follows_the_session() -> None:
    assert browser_likely_available({"DISPLAY": ":0"}, "linux")
    assert browser_likely_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not browser_likely_available({}, "linux")
    assert not browser_likely_available({"DISPLAY": ":0", "SSH_CONNECTION": "a b c d"}, "linux")
    assert browser_likely_available({}, "darwin") and browser_likely_available({}, "win32")
    assert not browser_likely_available({"SSH_TTY": "/dev/pts/1"}, "darwin")


def test_choose_flow_without_an_authorization_endpoint_is_device() -> None:
    from sealport.oidc import ProviderMetadata

    meta = ProviderMetadata("https://i", "https://i/t", "https://i/d", None, None, None)
    assert choose_flow("auto", meta) == "device"
    assert choose_flow("pkce", meta) == "pkce"
    with pytest.raises(Exception, match="sign-in setting"):
        choose_flow("implicit", meta)


def test_dev_idp_accepts_only_loopback_ip_redirects() -> None:
    assert loopback_redirect_ok("http://127.0.0.1:53111/callback")
    assert loopback_redirect_ok("http://[::1]:4000/cb")
    assert not loopback_redirect_ok("http://localhost:4000/callback")
    assert not loopback_redirect_ok("https://evil.example/callback")
    assert not loopback_redirect_ok("http://127.0.0.1/callback#x")


def test_listener_serves_one_callback_then_closes() -> None:
    listener = LoopbackListener()
    port = listener.port
    got: list[int] = []

    def visit() -> None:
        got.append(requests.get(f"http://127.0.0.1:{port}/favicon.ico", timeout=10).status_code)
        got.append(requests.get(f"{listener.redirect_uri}?code=c&state=s", timeout=10).status_code)

    t = threading.Thread(target=visit)
    t.start()
    query = listener.wait(deadline=float("inf"))
    t.join(10)
    assert query == {"code": "c", "state": "s"}
    assert got == [404, 200]
    assert listener.closed and refused(port)


# --- against the reference server's dev IdP -------------------------------------------
def test_pkce_login_against_dev_idp(sealport_server: Any, tmp_path: Path) -> None:
    browser = DevIdpBrowser(sealport_server)
    client = pkce_client(sealport_server, tmp_path / "ws", browser)
    shown: list[BrowserSignIn] = []
    client.login(lambda a: pytest.fail("device flow used"), on_browser=shown.append)
    assert not browser.errors, browser.errors
    assert client.whoami()["sub"] == sealport_server.username
    # The approval page named the client, this workstation and the requesting IP.
    assert "Sealport" in browser.page
    assert socket.gethostname()[:64] in browser.page
    assert "127.0.0.1" in browser.page
    (sign_in,) = shown
    assert sign_in.browser_opened and sign_in.redirect_uri.startswith("http://127.0.0.1:")
    assert "code_challenge_method=S256" in sign_in.authorize_url
    assert refused(urlsplit(sign_in.redirect_uri).port or 0)
    # The refresh token renews silently, as after a device-flow login.
    first = client.tokens.access_token()
    assert client.tokens.force_refresh() != first


def test_pkce_wrong_state_is_refused(sealport_server: Any, tmp_path: Path) -> None:
    browser = DevIdpBrowser(sealport_server, tamper=lambda loc: set_state(loc, "forged"))
    client = pkce_client(sealport_server, tmp_path / "ws", browser)
    shown: list[BrowserSignIn] = []
    with pytest.raises(LoginStateMismatch) as err:
        client.login(lambda a: None, on_browser=shown.append)
    assert "did not start" in err.value.message
    assert not client.is_signed_in()
    assert refused(urlsplit(shown[0].redirect_uri).port or 0)


def test_pkce_user_denies(sealport_server: Any, tmp_path: Path) -> None:
    browser = DevIdpBrowser(sealport_server, decision="deny")
    client = pkce_client(sealport_server, tmp_path / "ws", browser)
    with pytest.raises(LoginDenied):
        client.login(lambda a: None, on_browser=lambda s: None)
    assert not browser.errors, browser.errors
    assert not client.is_signed_in()


def test_pkce_timeout_and_cancel_close_the_listener(sealport_server: Any, tmp_path: Path) -> None:
    client = pkce_client(sealport_server, tmp_path / "ws", lambda url: False)  # nobody comes
    client.tokens.browser_wait = 0.5
    shown: list[BrowserSignIn] = []
    with pytest.raises(LoginExpired):
        client.login(lambda a: None, on_browser=shown.append)
    assert not shown[0].browser_opened
    assert refused(urlsplit(shown[0].redirect_uri).port or 0)

    client.tokens.browser_wait = 300
    progress = Progress()

    def cancel_when_shown(sign_in: BrowserSignIn) -> None:
        shown.append(sign_in)
        progress.cancel()  # the artist pressed Cancel while the browser was open

    with pytest.raises(Cancelled):
        client.login(lambda a: None, progress, on_browser=cancel_when_shown)
    assert refused(urlsplit(shown[-1].redirect_uri).port or 0)
    assert not client.is_signed_in()


def test_dev_idp_refuses_plain_pkce_and_foreign_redirects(sealport_server: Any) -> None:
    b = sealport_server.session()
    base = {
        "response_type": "code",
        "client_id": "sealport",
        "scope": "openid",
        "state": "s1",
        "code_challenge": "A" * 43,
    }
    evil = b.get(
        f"{sealport_server.url}/oauth/authorize",
        params=dict(base, redirect_uri="https://evil.example/cb", code_challenge_method="S256"),
        allow_redirects=False,
        timeout=30,
    )
    assert evil.status_code == 400 and "location" not in evil.headers
    plain = b.get(
        f"{sealport_server.url}/oauth/authorize",
        params=dict(base, redirect_uri="http://127.0.0.1:5/cb", code_challenge_method="plain"),
        allow_redirects=False,
        timeout=30,
    )
    assert plain.status_code == 303
    q = parse_qs(urlsplit(plain.headers["location"]).query)
    assert q["error"] == ["invalid_request"] and q["state"] == ["s1"]


# --- against oidc-provider -------------------------------------------------------------
class OidcProviderBrowser:
    """Drives oidc-provider's own login and consent pages."""

    def __init__(self, login: str = "alice", *, deny: bool = False) -> None:
        self.login = login
        self.deny = deny
        self.errors: list[BaseException] = []

    def __call__(self, url: str) -> bool:
        threading.Thread(target=self._run, args=(url,), daemon=True).start()
        return True

    def _run(self, url: str) -> None:
        try:
            b = Browser()
            page = b.get(url)
            for _ in range(4):
                forms, text = parse_forms(page.text)
                if not forms:
                    return  # the loopback listener's "Signed in" page
                prompt = forms[0].fields.get("prompt")
                if self.deny:
                    b.http.get(urljoin(page.url, urlsplit(page.url).path + "/abort"), timeout=10)
                    return
                if prompt == "login":
                    page = b.submit(page, fill={"login": self.login, "password": "pw"})
                elif prompt == "consent":
                    page = b.submit(page)
                else:
                    raise AssertionError(f"unexpected page {page.url}: {text[:200]}")
        except BaseException as exc:
            self.errors.append(exc)


def provider_session(idp: Any, tmp_path: Path, browser: Any, **kw: Any) -> TokenSession:
    http = requests.Session()
    return TokenSession(
        http,
        discover(http, idp.issuer),
        idp.client_id,
        KeyringStore("sealport-test", "pkce-test/"),
        tmp_path / "refresh.lock",
        scopes=idp.scopes,
        flow="pkce",
        open_browser=browser,
        browser_wait=60,
        **kw,
    )


def test_pkce_login_against_oidc_provider(oidc_provider, secret_service, tmp_path) -> None:
    browser = OidcProviderBrowser("alice")
    ts = provider_session(oidc_provider, tmp_path, browser)
    ident = ts.login(lambda a: pytest.fail("device flow used"), on_browser=lambda s: None)
    assert not browser.errors, browser.errors
    assert (ident.sub, ident.email) == ("alice", "alice@studio.test")
    assert ts.store.get(SESSION_ITEM) is not None
    assert ts.force_refresh()
    ts.logout()


def test_pkce_denied_at_oidc_provider(oidc_provider, secret_service, tmp_path) -> None:
    browser = OidcProviderBrowser(deny=True)
    ts = provider_session(oidc_provider, tmp_path, browser)
    with pytest.raises(LoginDenied):
        ts.login(lambda a: None, on_browser=lambda s: None)
    assert not browser.errors, browser.errors
    assert ts.store.get(SESSION_ITEM) is None


def test_device_approval_page_names_the_workstation(sealport_server: Any) -> None:
    """The device flow's approval page shows the workstation's name and IP too."""
    from sealport.device_flow import start

    http = sealport_server.session()
    meta = discover(http, sealport_server.url)
    auth = start(http, meta, "sealport", ["openid"], workstation="render-node-07")
    b = sealport_server.session()
    page = b.get(f"{sealport_server.url}/device", timeout=30)
    form = parse_forms(page.text)[0][0]
    data = dict(
        form.fields,
        user_code=auth.user_code,
        username=sealport_server.username,
        password=sealport_server.password,
    )
    confirm = b.post(urljoin(page.url, form.action), data=data, timeout=30)
    text = page_text(confirm)
    assert "render-node-07" in text and "127.0.0.1" in text, text[:400]


def test_replayed_authorization_code_revokes_the_session(
    sealport_server: Any, tmp_path: Path
) -> None:
    seen: list[str] = []
    browser = DevIdpBrowser(sealport_server, tamper=lambda loc: seen.append(loc) or loc)
    client = pkce_client(sealport_server, tmp_path / "ws", browser)
    client.login(lambda a: None, on_browser=lambda s: None)
    assert client.whoami()["sub"]
    q = parse_qs(urlsplit(seen[0]).query)
    assert q["iss"] == [sealport_server.url]  # RFC 9207
    replay = sealport_server.session().post(
        f"{sealport_server.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": q["code"][0],
            "redirect_uri": seen[0].split("?")[0],
            "client_id": "sealport",
            "code_verifier": "x" * 43,
        },
        timeout=30,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    with pytest.raises(SessionRevoked):
        client.whoami()
