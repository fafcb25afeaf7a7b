"""The asset server's resource API, seen from the client.

Adds the bearer token to every request, refreshes once on an expired token,
maps HTTP errors to typed errors with the server's artist-facing message,
and bounds every JSON body it reads (endless-data defence for metadata).
"""

from __future__ import annotations

import json
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
from .transport import describe_request_error

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
    data = b""
    for block in resp.iter_content(64 * 1024):
        data += block
        if len(data) > limit:
            raise TransportError(
                "The studio server sent an oversized reply; nothing was imported.",
                detail=f"{resp.url}: body exceeds {limit} bytes",
            )
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

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.access_token()}"}

    def request(self, method: str, path: str, *, limit: int = MAX_JSON_BYTES, **kw: Any) -> Any:
        url = self.url(path)
        for attempt in (1, 2):
            try:
                resp = self.session.request(
                    method,
                    url,
                    headers=self.auth_headers(),
                    timeout=self.timeout,
                    stream=True,
                    **kw,
                )
            except requests.RequestException as exc:
                raise describe_request_error(exc, url) from exc
            with resp:
                if resp.status_code == 401 and attempt == 1:
                    code, _ = _server_message(resp)
                    if code != "session_revoked":
                        self.tokens.force_refresh()
                        continue
                raise_for_response(resp)
                return read_json(resp, limit)
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, payload: Any, **kw: Any) -> Any:
        return self.request("POST", path, json=payload, **kw)
