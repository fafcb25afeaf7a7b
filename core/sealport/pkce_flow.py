"""Authorization code + PKCE with a loopback redirect (RFC 6749 §4.1, RFC 7636, RFC 8252).

Why this flow by default on workstations: a device code can be phished (an
attacker starts a sign-in and talks an artist into approving *their* code);
here the browser that approves is the one on this workstation, the code comes
back only to a listener on this machine's loopback interface, and the PKCE
verifier never leaves this process, so an intercepted code is worthless.

Pieces: :class:`LoopbackListener` (one request on 127.0.0.1:<ephemeral port>,
then closed), :func:`login` (authorize URL with S256 challenge, ``state`` and
``nonce``; wait for the redirect, check ``state``/``iss``; redeem the code,
check the ID token's ``nonce``). The caller decides how to show the URL;
cancelling the ``Progress`` or the timeout closes the listener.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .device_flow import TokenResponse, error_text, parse_token_response
from .dpop import DPoPKey, post_token
from .errors import AuthError, LoginDenied, LoginExpired, LoginStateMismatch
from .progress import Progress

CALLBACK_PATH = "/callback"
DEFAULT_WAIT = 300.0
"""How long the listener waits for the browser (seconds)."""
POLL_SLICE = 0.2
"""Longest single wait for a connection, so a cancel is noticed quickly."""
DENIED = frozenset({"access_denied", "authorization_declined", "consent_required"})

_DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Sealport</title>"
    "<body style='font-family:sans-serif'><h1>{title}</h1><p>{text}</p></body>"
)


def browser_likely_available(
    env: Mapping[str, str] | None = None, platform: str | None = None
) -> bool:
    """Can this session open a browser the artist sees? (``idp.flow = "auto"``)

    An SSH session means the browser would open on the far machine (or nowhere);
    Linux needs a display; macOS and Windows desktops always have a browser.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if env.get("SSH_CONNECTION") or env.get("SSH_CLIENT") or env.get("SSH_TTY"):
        return False
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


@dataclass(frozen=True)
class BrowserSignIn:
    """What a UI shows while the browser sign-in runs ("browser opened, waiting")."""

    authorize_url: str
    redirect_uri: str
    browser_opened: bool
    """False when no browser could be started: show ``authorize_url`` to open by hand."""
    expires_at: float
    """Deadline on ``time.monotonic``."""
    kind: str = "browser"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_verifier() -> tuple[str, str]:
    """A PKCE code verifier (43 chars, 256 bits) and its S256 challenge."""
    verifier = _b64url(secrets.token_bytes(32))
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


# --- the loopback listener ------------------------------------------------------------
@dataclass
class _Result:
    query: dict[str, str] | None = None
    event: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a connection that never sends a request cannot hold the listener

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH or self.server.result.query is not None:
            self.send_error(404)
            return
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.server.result.query = query
        if "code" in query and not query.get("error"):
            title, text = "Signed in", "You can close this tab and return to your application."
        else:
            title, text = "Sign-in not completed", "Return to your application for details."
        body = _DONE_PAGE.format(title=title, text=text).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # the query holds the authorization code: never log it


class _Server(http.server.HTTPServer):
    result: _Result


class LoopbackListener:
    """A one-shot HTTP listener on 127.0.0.1 at an ephemeral port (RFC 8252 §7.3)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.result = _Result()
        self._server.timeout = POLL_SLICE
        self.port = int(self._server.server_address[1])
        self.redirect_uri = f"http://{host}:{self.port}{CALLBACK_PATH}"
        self.closed = False

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._server.server_close()

    def wait(
        self,
        deadline: float,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, str]:
        """Serve requests until the callback arrives; then close. Raises ``Cancelled``/
        ``LoginExpired`` on cancel/timeout (the listener is closed either way)."""
        try:
            while self._server.result.query is None:
                if progress is not None:
                    progress.check()
                if clock() >= deadline:
                    raise LoginExpired(
                        "The browser sign-in was not finished in time. Start sign-in again.",
                        detail=f"no redirect to {self.redirect_uri} before the deadline",
                    )
                try:
                    self._server.handle_request()
                except (TimeoutError, OSError):
                    continue
            return self._server.result.query
        finally:
            self.close()


# --- the flow -------------------------------------------------------------------------
def _claims(id_token: str) -> dict[str, Any]:
    try:
        part = id_token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise AuthError(
            "Your studio's sign-in service sent an unreadable identity; tell your TD.",
            detail="id_token payload is not a JSON object",
        )
    return doc


def login(
    session: requests.Session,
    meta: Any,
    client_id: str,
    scopes: Iterable[str],
    *,
    open_browser: Callable[[str], bool] = webbrowser.open,
    on_browser: Callable[[BrowserSignIn], None] | None = None,
    progress: Progress | None = None,
    wait: float = DEFAULT_WAIT,
    dpop: DPoPKey | None = None,
    workstation: str | None = None,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> TokenResponse:
    """Sign in through the system browser; returns the token reply.

    Raises ``LoginDenied`` (the artist pressed Deny), ``LoginStateMismatch`` (a
    redirect this sign-in did not ask for), ``LoginExpired`` (timeout),
    ``Cancelled`` (via ``progress``), ``AuthError`` for protocol failures.
    """
    endpoint = getattr(meta, "authorization_endpoint", None)
    if not endpoint:
        raise AuthError(
            "Your studio's sign-in service does not offer browser sign-in; "
            "use device sign-in (sealport login --device).",
            detail=f"{meta.issuer}: discovery has no authorization_endpoint",
        )
    methods = tuple(getattr(meta, "code_challenge_methods", ()) or ())
    if methods and "S256" not in methods:
        raise AuthError(
            "Your studio's sign-in service does not support secure browser sign-in (PKCE); "
            "ask your TD.",
            detail=f"code_challenge_methods_supported={list(methods)} lacks S256",
        )
    verifier, challenge = make_verifier()
    state = _b64url(secrets.token_bytes(24))
    nonce = _b64url(secrets.token_bytes(24))
    with LoopbackListener() as listener:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": listener.redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if "offline_access" in params["scope"].split():
            params["prompt"] = "consent"  # OIDC Core §11: offline_access needs consent
        if dpop is not None:
            params["dpop_jkt"] = dpop.jkt  # RFC 9449 §10: bind the code to our key
        if workstation:
            params["sealport_workstation"] = workstation[:64]
        sep = "&" if urlsplit(endpoint).query else "?"
        url = f"{endpoint}{sep}{urlencode(params)}"
        deadline = clock() + wait
        try:
            opened = bool(open_browser(url))
        except webbrowser.Error:
            opened = False
        if on_browser is not None:
            on_browser(BrowserSignIn(url, listener.redirect_uri, opened, deadline))
        if progress is not None:
            progress.update("waiting for the browser sign-in", 0, 0)
        query = listener.wait(deadline, progress, clock)
    return _finish(session, meta, client_id, query, state, nonce, verifier, listener, dpop, timeout)


def _finish(
    session: requests.Session,
    meta: Any,
    client_id: str,
    query: dict[str, str],
    state: str,
    nonce: str,
    verifier: str,
    listener: LoopbackListener,
    dpop: DPoPKey | None,
    timeout: float,
) -> TokenResponse:
    got_state = query.get("state", "")
    if not secrets.compare_digest(got_state.encode(), state.encode()):
        raise LoginStateMismatch(
            "The browser returned a sign-in that Sealport did not start, so it was refused. "
            "Start sign-in again; tell your TD if this repeats.",
            detail="state in the redirect does not match the authorization request",
        )
    iss = query.get("iss")
    if iss is not None and iss != meta.issuer:  # RFC 9207 mix-up defence
        raise AuthError(
            "The browser returned a sign-in from a different sign-in service; Sealport "
            "stopped. Tell your TD.",
            detail=f"redirect iss={iss!r}, expected {meta.issuer!r}",
        )
    error = query.get("error")
    if error:
        desc = query.get("error_description", "")
        if error in DENIED:
            raise LoginDenied(
                "Sign-in was denied in the browser. If that was not you, tell your TD.",
                detail=f"authorization endpoint -> {error}: {desc}",
            )
        raise AuthError(
            "Sign-in failed at your studio's sign-in service. Try again; if it keeps "
            "failing tell your TD.",
            detail=f"authorization endpoint -> {error}: {desc}",
        )
    code = query.get("code")
    if not code:
        raise AuthError(
            "Your studio's sign-in service sent an incomplete browser reply; tell your TD.",
            detail="redirect without code or error",
        )
    url = meta.token_endpoint
    status, body = post_token(
        session,
        url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": listener.redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
        dpop,
        timeout=timeout,
    )
    if status != 200 or body.get("error"):
        err = str(body.get("error", ""))
        raise (LoginExpired if err == "invalid_grant" else AuthError)(
            "Sealport could not finish the browser sign-in. Start sign-in again; if it keeps "
            "failing tell your TD.",
            detail=f"POST {url} (authorization_code) -> {status} {error_text(dict(body))}",
        )
    tokens = parse_token_response(dict(body), url, dpop=dpop is not None)
    if tokens.id_token is not None:
        got_nonce = _claims(tokens.id_token).get("nonce")
        if not isinstance(got_nonce, str) or not secrets.compare_digest(
            got_nonce.encode(), nonce.encode()
        ):
            raise LoginStateMismatch(
                "Your studio's sign-in service returned an identity for a different sign-in; "
                "Sealport stopped. Tell your TD.",
                detail="id_token nonce does not match the authorization request",
            )
    return tokens
