"""OIDC discovery and the small HTTP helpers the sign-in modules share.

All HTTP goes through the ``requests.Session`` the caller passes in (the hardened
transport builds it); nothing here sets TLS policy. Replies are read with a size
cap, and the discovered ``issuer`` must equal the configured one exactly
(mix-up defence: a document for another issuer is refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from .errors import AuthError, TransportError
from .transport import describe_request_error, read_bounded

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_REPLY_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 30.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str
    revocation_endpoint: str | None
    jwks_uri: str | None
    userinfo_endpoint: str | None
    end_session_endpoint: str | None = None
    authorization_endpoint: str | None = None
    code_challenge_methods: tuple[str, ...] = ()
    dpop_algs: tuple[str, ...] = ()


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def _require_https(url: str, what: str) -> None:
    """https everywhere except a loopback test IdP (plain http on 127.0.0.1)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(url):
        return
    raise AuthError(
        "Your studio's sign-in service is not configured for secure (https) sign-in; ask your TD.",
        detail=f"{what} is not an https URL: {url!r}",
    )


def network_error(exc: requests.RequestException, url: str) -> TransportError:
    """A requests failure while talking to the IdP, in artist words."""
    if isinstance(exc, requests.exceptions.SSLError):
        return describe_request_error(exc, url)
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportError(
            "Your studio's sign-in service did not answer in time. Check your network or "
            "VPN and try again.",
            detail=f"{url}: {type(exc).__name__}",
        )
    return TransportError(
        "Sealport could not reach your studio's sign-in service. Check your network or VPN "
        "and try again.",
        detail=f"{url}: {type(exc).__name__}: {exc}",
    )


def read_json_reply(resp: requests.Response, limit: int = MAX_REPLY_BYTES) -> Any:
    """The JSON body of ``resp`` (at most ``limit`` bytes), or None if it is not JSON."""
    data = read_bounded(resp, limit, "Your studio's sign-in service")
    try:
        return json.loads(data)
    except ValueError:
        return None


def post_form(
    session: requests.Session,
    url: str,
    data: dict[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST a form, return (status, JSON object or {}). Network failures raise ``TransportError``.

    Never retried here: a token request may have been processed even if its
    answer was lost, and device codes / refresh tokens must not be redeemed twice.
    """
    status, body, _ = post_form_full(session, url, data, timeout=timeout, headers=headers)
    return status, body


def post_form_full(
    session: requests.Session,
    url: str,
    data: dict[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """:func:`post_form` plus the reply headers (DPoP needs ``DPoP-Nonce``)."""
    try:
        resp = session.post(
            url,
            data=data,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise network_error(exc, url) from None
    try:
        with resp:
            body = read_json_reply(resp)
    except requests.RequestException as exc:  # the reply broke off after its headers
        raise network_error(exc, url) from None
    return resp.status_code, body if isinstance(body, dict) else {}, dict(resp.headers)


def get_json(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, Any]:
    try:
        resp = session.get(url, headers=headers or {}, timeout=timeout, stream=True)
    except requests.RequestException as exc:
        raise network_error(exc, url) from None
    try:
        with resp:
            return resp.status_code, read_json_reply(resp)
    except requests.RequestException as exc:  # the reply broke off after its headers
        raise network_error(exc, url) from None


def _str_field(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) and value else None


def _str_list(doc: dict[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def discover(
    session: requests.Session, issuer: str, *, timeout: float = DEFAULT_TIMEOUT
) -> ProviderMetadata:
    """Fetch and check the IdP's OpenID configuration (RFC 8414 as a fallback)."""
    issuer = issuer.rstrip("/")
    _require_https(issuer, "issuer")
    doc: Any = None
    status = 0
    tried: list[str] = []
    for well_known in ("openid-configuration", "oauth-authorization-server"):
        url = f"{issuer}/.well-known/{well_known}"
        tried.append(url)
        status, doc = get_json(session, url, timeout=timeout)
        if status == 200:
            break
    if status != 200 or not isinstance(doc, dict):
        raise AuthError(
            "Sealport could not read your studio's sign-in settings. Check the issuer in "
            "sealport.toml with your TD.",
            detail=f"discovery failed: {', '.join(tried)} -> HTTP {status}",
        )
    if doc.get("issuer") != issuer:
        raise AuthError(
            "Your studio's sign-in service identified itself as a different service than "
            "the one configured, so Sealport stopped. Tell your TD.",
            detail=f"configured issuer {issuer!r}, discovery document says {doc.get('issuer')!r}",
        )
    token = _str_field(doc, "token_endpoint")
    device = _str_field(doc, "device_authorization_endpoint")
    grants = doc.get("grant_types_supported")
    authorize = _str_field(doc, "authorization_endpoint")
    code_grant = not isinstance(grants, list) or "authorization_code" in grants
    if isinstance(grants, list) and DEVICE_GRANT not in grants:
        device = None
    if device is None and (authorize is None or not code_grant):
        raise AuthError(
            "Your studio's sign-in service does not allow device sign-in; ask your TD.",
            detail=f"{issuer}: no device_authorization_endpoint (or {DEVICE_GRANT} not in "
            f"grant_types_supported) and no authorization_endpoint for authorization_code",
        )
    if token is None:
        raise AuthError(
            "Your studio's sign-in settings are incomplete; tell your TD.",
            detail=f"{issuer}: discovery document has no token_endpoint",
        )
    meta = ProviderMetadata(
        issuer=issuer,
        token_endpoint=token,
        device_authorization_endpoint=device or "",
        revocation_endpoint=_str_field(doc, "revocation_endpoint"),
        jwks_uri=_str_field(doc, "jwks_uri"),
        userinfo_endpoint=_str_field(doc, "userinfo_endpoint"),
        end_session_endpoint=_str_field(doc, "end_session_endpoint"),
        authorization_endpoint=authorize if code_grant else None,
        code_challenge_methods=_str_list(doc, "code_challenge_methods_supported"),
        dpop_algs=_str_list(doc, "dpop_signing_alg_values_supported"),
    )
    for name in (
        "token_endpoint",
        "device_authorization_endpoint",
        "authorization_endpoint",
        "revocation_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "end_session_endpoint",
    ):
        value = getattr(meta, name)
        if value:
            _require_https(value, name)
    return meta
