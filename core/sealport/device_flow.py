"""RFC 8628 device authorization grant: the client side, written to the RFC.

Why so careful: vendors differ (Google says ``verification_url``, Entra denies
with ``authorization_declined``, Auth0 answers ``authorization_pending`` with 403
and ``slow_down`` with 429, GitHub sends errors with 200, oidc-provider omits
``interval``), and a device code redeemed twice makes the IdP revoke the tokens
it already issued. So: the JSON ``error`` decides, never the HTTP status; the
default interval is 5 s; ``slow_down`` adds 5 s for good; network failures back
off exponentially until the code's deadline; each authorization is polled by
one caller, once.

Run :func:`poll` off the DCC's UI thread; cancel it through :class:`Progress`.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from .errors import AuthError, LoginDenied, LoginExpired, TLSError, TransportError
from .oidc import DEVICE_GRANT, ProviderMetadata, is_loopback, post_form, post_form_full
from .progress import Progress

if TYPE_CHECKING:
    from .dpop import DPoPKey

DEFAULT_INTERVAL = 5
SLOW_DOWN_STEP = 5
MAX_BACKOFF = 60.0
MAX_EXPIRES_IN = 3600
SLEEP_SLICE = 0.25
"""Longest single sleep, so a cancel from the UI is noticed quickly."""

DENIED = frozenset({"access_denied", "authorization_declined"})
CODE_GONE = frozenset({"expired_token", "bad_verification_code", "invalid_grant"})


@dataclass
class _PollGuard:
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False


@dataclass(frozen=True)
class DeviceAuthorization:
    """What to show the artist, plus the (secret) device code and timing."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    """Deadline on the ``clock`` used by :func:`start` (``time.monotonic``)."""
    interval: int
    message: str | None = None
    """Free text some IdPs (Entra) add; informational only."""
    _guard: _PollGuard = field(default_factory=_PollGuard, repr=False, compare=False)


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    scope: str | None = None


def _uri(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise AuthError(
            "Your studio's sign-in service sent an incomplete device sign-in reply; tell your TD.",
            detail=f"device authorization response: missing {what}",
        )
    if not (value.startswith("https://") or (value.startswith("http://") and is_loopback(value))):
        raise AuthError(
            "Your studio's sign-in service sent an unsafe sign-in address; tell your TD.",
            detail=f"device authorization response: {what} is not https: {value!r}",
        )
    return value


def _positive_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def error_text(body: dict[str, Any]) -> str:
    """The IdP's error code and description (never contains our secrets)."""
    code = str(body.get("error", ""))[:100]
    desc = str(body.get("error_description", ""))[:300]
    return f"{code}: {desc}" if desc else code


def start(
    session: requests.Session,
    meta: ProviderMetadata,
    client_id: str,
    scopes: Iterable[str],
    *,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = 30.0,
    workstation: str | None = None,
) -> DeviceAuthorization:
    """Ask the IdP for a device code + user code (RFC 8628 §3.1-3.2).

    Call only when the artist asked to sign in: the codes start expiring at once.
    """
    url = meta.device_authorization_endpoint
    form = {"client_id": client_id, "scope": " ".join(scopes)}
    if workstation:  # shown on the approval page (RFC 8628 §5.4 remote phishing)
        form["sealport_workstation"] = workstation[:64]
    status, body = post_form(session, url, form, timeout=timeout)
    if status != 200 or "error" in body:
        error = str(body.get("error", ""))
        if error in ("unauthorized_client", "invalid_client", "unsupported_grant_type"):
            message = (
                "Your studio's sign-in service does not allow device sign-in for Sealport; "
                "ask your TD."
            )
        elif error == "invalid_scope":
            message = (
                "Your studio's sign-in service refused the permissions Sealport asks for; "
                "ask your TD."
            )
        else:
            message = "Your studio's sign-in service could not start sign-in. Try again later."
        raise AuthError(message, detail=f"POST {url} -> {status} {error_text(body)}")
    device_code = body.get("device_code")
    user_code = body.get("user_code")
    if not isinstance(device_code, str) or not device_code:
        raise AuthError(
            "Your studio's sign-in service sent an incomplete device sign-in reply; tell your TD.",
            detail="device authorization response: missing device_code",
        )
    if not isinstance(user_code, str) or not user_code:
        raise AuthError(
            "Your studio's sign-in service sent an incomplete device sign-in reply; tell your TD.",
            detail="device authorization response: missing user_code",
        )
    # RFC 8628 says verification_uri; Google (and Entra v1) say verification_url.
    verification = _uri(
        body.get("verification_uri") or body.get("verification_url"), "verification_uri"
    )
    complete_raw = body.get("verification_uri_complete") or body.get("verification_url_complete")
    complete = _uri(complete_raw, "verification_uri_complete") if complete_raw else None
    expires_in = min(_positive_int(body.get("expires_in"), 600), MAX_EXPIRES_IN)
    note = body.get("message")
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=verification,
        verification_uri_complete=complete,
        expires_at=clock() + expires_in,
        interval=_positive_int(body.get("interval"), DEFAULT_INTERVAL),
        message=note if isinstance(note, str) else None,
    )


def parse_token_response(body: dict[str, Any], url: str, *, dpop: bool = False) -> TokenResponse:
    """Check and wrap a successful token endpoint reply (device or refresh grant).

    ``dpop``: the request carried a DPoP proof, so ``token_type`` may be ``DPoP``.
    """
    access = body.get("access_token")
    token_type = str(body.get("token_type", ""))
    if not isinstance(access, str) or not access:
        raise AuthError(
            "Your studio's sign-in service sent an incomplete token reply; tell your TD.",
            detail=f"{url}: token response without access_token",
        )
    if token_type.lower() not in (("bearer", "dpop") if dpop else ("bearer",)):
        raise AuthError(
            "Your studio's sign-in service issued a token type Sealport does not support; "
            "tell your TD.",
            detail=f"{url}: token_type {token_type!r} (only Bearer is supported)",
        )
    refresh = body.get("refresh_token")
    id_token = body.get("id_token")
    scope = body.get("scope")
    return TokenResponse(
        access_token=access,
        token_type="DPoP" if token_type.lower() == "dpop" else "Bearer",
        expires_in=_positive_int(body.get("expires_in"), 300),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        scope=scope if isinstance(scope, str) else None,
    )


def _wait(
    seconds: float,
    progress: Progress | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    end = clock() + seconds
    while True:
        if progress is not None:
            progress.check()
        remaining = end - clock()
        if remaining <= 0:
            return
        sleep(min(remaining, SLEEP_SLICE))


def poll(
    session: requests.Session,
    meta: ProviderMetadata,
    client_id: str,
    auth: DeviceAuthorization,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = 30.0,
    dpop: DPoPKey | None = None,
) -> TokenResponse:
    """Poll the token endpoint until the artist approves, denies, or the code expires.

    Raises ``LoginDenied``, ``LoginExpired``, ``Cancelled`` (via ``progress``),
    ``AuthError`` for protocol failures, ``TLSError`` for certificate problems.
    """
    guard = auth._guard
    if not guard.lock.acquire(blocking=False):
        raise AuthError(
            "Sign-in is already waiting for approval.",
            detail="poll() called concurrently for the same device authorization",
        )
    try:
        if guard.finished:
            raise AuthError(
                "This sign-in code was already used. Start sign-in again.",
                detail="poll() called again for a finished device authorization",
            )
        try:
            return _poll_loop(session, meta, client_id, auth, progress, sleep, clock, timeout, dpop)
        finally:
            # Whatever happened (tokens, denial, expiry, cancel), never poll this code again:
            # a second redemption would make the IdP revoke what it issued.
            guard.finished = True
    finally:
        guard.lock.release()


def _poll_loop(
    session: requests.Session,
    meta: ProviderMetadata,
    client_id: str,
    auth: DeviceAuthorization,
    progress: Progress | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    timeout: float,
    dpop: DPoPKey | None = None,
) -> TokenResponse:
    url = meta.token_endpoint
    form = {"grant_type": DEVICE_GRANT, "device_code": auth.device_code, "client_id": client_id}
    interval = float(auth.interval)
    failures = 0  # consecutive network failures
    started = clock()
    total = max(0, int(auth.expires_at - started))
    expired = LoginExpired(
        "The sign-in code expired before it was approved. Start sign-in again.",
        detail="device code deadline (expires_in) passed on the client",
    )
    while True:
        wait = interval if failures == 0 else min(interval * (2**failures), MAX_BACKOFF)
        if clock() + wait > auth.expires_at:
            raise expired
        _wait(wait, progress, sleep, clock)
        if progress is not None:
            progress.update("waiting for sign-in approval", int(clock() - started), total)
        try:
            # A fresh DPoP proof per poll (each proof's jti is single-use).
            headers = {"DPoP": dpop.proof("POST", url)} if dpop is not None else None
            status, body, reply_headers = post_form_full(
                session, url, form, timeout=timeout, headers=headers
            )
        except TLSError:
            raise
        except TransportError:
            failures += 1  # RFC 8628 §3.5: back off on connection timeouts, keep polling
            continue
        failures = 0
        error = body.get("error")
        if not error:
            if status == 200:
                return parse_token_response(body, url, dpop=dpop is not None)
            if status == 429 or status >= 500:
                interval += SLOW_DOWN_STEP if status == 429 else 0
                failures = 0 if status == 429 else 1
                continue
            raise AuthError(
                "Your studio's sign-in service sent a reply Sealport cannot read; tell your TD.",
                detail=f"POST {url} -> {status} without error code",
            )
        if error == "authorization_pending":
            if dpop is not None:
                dpop.remember_nonce(url, reply_headers)
            continue
        if (
            error == "use_dpop_nonce"
            and dpop is not None
            and dpop.remember_nonce(url, reply_headers)
        ):
            continue
        if error == "temporarily_unavailable":
            failures = 1
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            # GitHub tells the new interval; never go below our own +5.
            interval = max(interval, float(_positive_int(body.get("interval"), 0)))
            continue
        if error in DENIED:
            raise LoginDenied(
                "Sign-in was denied on the approval page. If that was not you, tell your TD.",
                detail=f"POST {url} -> {status} {error_text(body)}",
            )
        if error in CODE_GONE:
            raise LoginExpired(
                "The sign-in code expired or is no longer valid. Start sign-in again.",
                detail=f"POST {url} -> {status} {error_text(body)}",
            )
        if error in ("invalid_client", "unauthorized_client", "unsupported_grant_type"):
            raise AuthError(
                "Your studio's sign-in service does not allow device sign-in for Sealport; "
                "ask your TD.",
                detail=f"POST {url} -> {status} {error_text(body)}",
            )
        raise AuthError(
            "Sign-in failed at your studio's sign-in service. Try again; if it keeps "
            "failing tell your TD.",
            detail=f"POST {url} -> {status} {error_text(body)}",
        )


def qr_text(auth: DeviceAuthorization) -> str:
    """A terminal QR code of the verification address, with the user code beside it.

    RFC 8628 §3.3.1: even when a complete URI (code included) is offered, the user
    code must still be shown so the artist can compare it with the approval page.
    """
    import segno

    uri = auth.verification_uri_complete or auth.verification_uri
    qr = segno.make_qr(uri, error="m")
    out = io.StringIO()
    qr.terminal(out=out, compact=True, border=2)
    return (
        f"{out.getvalue().rstrip()}\n"
        f"Scan, or open {auth.verification_uri}\n"
        f"Code: {auth.user_code}  (check the page shows this code before you approve)\n"
    )
