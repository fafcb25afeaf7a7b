"""The asset server's resource API, seen from the client.

Adds the bearer token to every request, refreshes once on an expired token,
maps HTTP errors to typed errors with the server's artist-facing message,
and bounds every JSON body it reads (endless-data defence for metadata).
"""

from __future__ import annotations

import json
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
from .transport import describe_request_error, read_bounded

MAX_JSON_BYTES = 4 * 1024 * 1024


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

    def request(self, method: str, path: str, *, limit: int = MAX_JSON_BYTES, **kw: Any) -> Any:
        url = self.url(path)
        nonce_retry, refresh_retry = True, True
        for _ in range(3):
            try:
                resp = self.session.request(
                    method,
                    url,
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
            except requests.RequestException as exc:
                # The reply broke off after its headers (dropped connection, damaged TLS
                # record): still a typed error, never a bare requests exception.
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
