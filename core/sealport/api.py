"""The asset server's resource API, seen from the client.

Adds the bearer token to every request, refreshes once on an expired token,
maps HTTP errors to typed errors with the server's artist-facing message,
bounds every JSON body it reads (endless-data defence for metadata), and
retries a GET whose reply broke off mid-body. urllib3's ``Retry`` (see
:func:`sealport.transport.build_session`) only covers failures before a
response exists; with ``stream=True`` the body is read here, so a dropped link
or a truncated TLS stream after the headers would otherwise fail the import.
Only GET is retried: a POST (a delivery) creates a ledger record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from .errors import (
    LoginRequired,
    NotFound,
    PermissionDenied,
    ServerError,
    SessionRevoked,
    TransportError,
)
from .progress import Progress
from .transport import describe_request_error, read_bounded

MAX_JSON_BYTES = 4 * 1024 * 1024

BODY_RETRY_BACKOFF = (0.5, 1.0)
"""Seconds before each retry of a GET whose body broke off (like the transport's
backoff_factor 0.5); its length is the number of retries. Small and bounded: the
caller is often a DCC's UI thread, and the final failure is still a typed error."""

RETRY_METHODS = frozenset({"GET"})
"""Methods safe to send again. Never POST: a delivery POST creates a ledger record."""

_BROKEN_BODY: tuple[type[requests.RequestException], ...] = (
    # urllib3's ProtocolError / IncompleteRead arrive as ChunkedEncodingError; a cut or
    # damaged TLS record (SSLError), a reset or a read timeout as ConnectionError.
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
)

log = logging.getLogger(__name__)


class TokenSource(Protocol):
    def access_token(self) -> str: ...

    def force_refresh(self) -> Any: ...


def _server_message(resp: requests.Response) -> tuple[str, str]:
    try:
        body = resp.json()
    except ValueError:
        return "", resp.text[:500]
    if isinstance(body, dict):
        return str(body.get("error", "")), str(body.get("message") or body.get("detail") or "")
    return "", str(body)[:500]


def raise_for_response(resp: requests.Response) -> None:
    """Raise the typed error that matches an error response; return on success."""
    if resp.status_code < 400:
        return
    code, message = _server_message(resp)
    detail = f"{resp.request.method} {resp.url} -> {resp.status_code} {code}: {message}"
    if resp.status_code == 401:
        if code == "session_revoked":
            raise SessionRevoked(
                message or "Your session was revoked by the studio; sign in again.", detail
            )
        raise LoginRequired("Your Sealport sign-in has ended. Sign in again.", detail)
    if resp.status_code == 403:
        raise PermissionDenied(
            message or "You are not allowed to do that. Ask your lead or TD for access.",
            detail,
            resp.status_code,
        )
    if resp.status_code == 404:
        raise NotFound(
            message or "That asset or delivery does not exist (or is not yours).",
            detail,
            resp.status_code,
        )
    if resp.status_code == 429:
        raise ServerError(message or "Too many requests; wait a minute and try again.", detail, 429)
    raise ServerError(
        message or "The studio server reported an error. Try again; if it persists tell your TD.",
        detail,
        resp.status_code,
    )


def read_json(resp: requests.Response, limit: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON body of at most ``limit`` bytes."""
    data = read_bounded(resp, limit, "The studio server")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise TransportError(
            "The studio server sent a reply Sealport cannot read; tell your TD.",
            detail=f"{resp.url}: {exc}",
        ) from exc


class ApiClient:
    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        tokens: TokenSource,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.timeout = timeout

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.base_url}{path}"

    def auth_headers(self, method: str = "GET", url: str | None = None) -> dict[str, str]:
        """Headers for one request: Bearer, or DPoP token + a fresh proof for ``method url``.

        A DPoP proof is single-use and names its URL, so call this once per request.
        """
        request_headers = getattr(self.tokens, "request_headers", None)
        if request_headers is not None and url is not None:
            return dict(request_headers(method, url))
        return {"Authorization": f"Bearer {self.tokens.access_token()}"}

    def header_factory(self, method: str, url: str) -> Callable[[], dict[str, str]]:
        """Fresh auth headers per call (downloads that resume send several requests)."""
        return lambda: self.auth_headers(method, url)

    def request(
        self,
        method: str,
        path: str,
        *,
        limit: int = MAX_JSON_BYTES,
        progress: Progress | None = None,
        **kw: Any,
    ) -> Any:
        """Send one API request and return its JSON reply, or raise a typed error.

        ``progress`` (optional) makes the backoff before a body retry cancellable.
        """
        url = self.url(path)
        nonce_retry, refresh_retry = True, True
        body_retries = 0
        for _ in range(3 + len(BODY_RETRY_BACKOFF)):
            try:
                resp = self.session.request(
                    method,
                    url,
                    # Fresh per attempt: a DPoP proof is single-use.
                    headers=self.auth_headers(method, url),
                    timeout=self.timeout,
                    stream=True,
                    **kw,
                )
            except requests.RequestException as exc:
                raise describe_request_error(exc, url) from exc
            try:
                with resp:
                    if resp.status_code == 401 and nonce_retry and self._took_dpop_nonce(url, resp):
                        nonce_retry = False  # RFC 9449 §9: once, with the server's nonce
                        continue
                    if resp.status_code == 401 and refresh_retry:
                        refresh_retry = False
                        code, _ = _server_message(resp)
                        if code != "session_revoked":
                            self.tokens.force_refresh()
                            continue
                    raise_for_response(resp)
                    return read_json(resp, limit)
            except _BROKEN_BODY as exc:
                # The reply broke off after its headers (dropped link, cut or damaged TLS
                # record). A GET is sent again after a short pause; otherwise, or once the
                # retries are used up, a typed error, never a bare requests exception.
                if method.upper() not in RETRY_METHODS or body_retries >= len(BODY_RETRY_BACKOFF):
                    raise describe_request_error(exc, url) from exc
                delay = BODY_RETRY_BACKOFF[body_retries]
                body_retries += 1
                log.warning(
                    "%s %s: reply broke off mid-body (%s: %s); retry %d of %d in %.1f s",
                    method,
                    url,
                    type(exc).__name__,
                    exc,
                    body_retries,
                    len(BODY_RETRY_BACKOFF),
                    delay,
                )
                _pause(delay, progress)
            except requests.RequestException as exc:
                raise describe_request_error(exc, url) from exc
        raise AssertionError("unreachable")

    def _took_dpop_nonce(self, url: str, resp: requests.Response) -> bool:
        key = getattr(self.tokens, "dpop_key", lambda: None)()
        challenge = resp.headers.get("WWW-Authenticate", "")
        if key is None or "use_dpop_nonce" not in challenge:
            return False
        return bool(key.remember_nonce(url, resp.headers))

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, payload: Any, **kw: Any) -> Any:
        return self.request("POST", path, json=payload, **kw)


def _pause(seconds: float, progress: Progress | None) -> None:
    """Wait ``seconds`` before a retry; a cancel on ``progress`` ends the wait at once."""
    if progress is None:
        time.sleep(seconds)
    else:
        progress.wait(seconds)
