"""The signed-in session: browser (PKCE) or device-flow login, silent refresh, logout.

Where things live: the refresh token (RT) only in the secret store; the access
token only in this process's memory. Why the file lock: Blender, Maya, Houdini
and farm tools on one workstation share one RT, and the IdP rotates it on every
refresh; if two processes present the same RT, reuse detection revokes the whole
grant. So "read RT from store -> refresh -> write rotated RT" runs under one
cross-process ``FileLock``, and the store is re-read after the lock is taken.

With DPoP on (``idp.dpop``), the EC P-256 proof key is made at sign-in and
kept in the same secret-store record as the refresh token: the IdP binds the
refresh token (and each access token, ``cnf.jkt``) to it, so either secret is
useless without the other, and both go together on logout.

Tokens never appear in logs or in exception text.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from filelock import FileLock
from filelock import Timeout as LockTimeout

from . import device_flow, pkce_flow
from .device_flow import DeviceAuthorization, TokenResponse, error_text, parse_token_response
from .dpop import DPoPKey, post_token
from .errors import AuthError, LoginRequired, LogoutIncomplete, SealportError, TransportError
from .oidc import ProviderMetadata, get_json, post_form
from .progress import Progress
from .secret_store import SecretStore

log = logging.getLogger(__name__)

SESSION_ITEM = "oidc-session"
DEFAULT_SCOPES = ("openid", "offline_access", "profile", "email")
SIGNED_OUT = "Your Sealport sign-in has ended. Sign in again."
FLOWS = ("auto", "pkce", "device")


def choose_flow(flow: str, meta: ProviderMetadata) -> str:
    """``auto``: the browser flow when a local browser is likely and the IdP offers it."""
    if flow not in FLOWS:
        raise AuthError(
            "Sealport's sign-in setting is invalid; tell your TD.",
            detail=f"idp.flow={flow!r}, expected one of {FLOWS}",
        )
    if flow != "auto":
        return flow
    if meta.authorization_endpoint and pkce_flow.browser_likely_available():
        return "pkce"
    return "device" if meta.device_authorization_endpoint else "pkce"


@dataclass(frozen=True)
class Identity:
    sub: str
    name: str | None
    email: str | None
    expires: float
    """Wall-clock time (epoch seconds) when the current access token expires; 0 if none."""


@dataclass(frozen=True)
class _Record:
    """What the secret store holds for one sign-in (JSON, one item)."""

    issuer: str
    client_id: str
    refresh_token: str
    sub: str
    name: str | None
    email: str | None
    dpop_jwk: dict[str, Any] | None = None
    """Private DPoP key the refresh token is bound to (None: bearer sign-in)."""

    def __repr__(self) -> str:  # never print the refresh token
        return f"_Record(issuer={self.issuer!r}, client_id={self.client_id!r}, sub={self.sub!r})"

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "issuer": self.issuer,
                "client_id": self.client_id,
                "refresh_token": self.refresh_token,
                "sub": self.sub,
                "name": self.name,
                "email": self.email,
                **({"dpop_jwk": self.dpop_jwk} if self.dpop_jwk else {}),
            }
        )

    def dpop_key(self) -> DPoPKey | None:
        return DPoPKey.from_jwk(self.dpop_jwk) if self.dpop_jwk else None


class _InvalidGrant(Exception):
    """The IdP refused the refresh token (revoked, expired, rotated out)."""


@contextmanager
def _scrubbed(*secrets: str | None) -> Iterator[None]:
    """Make sure no token text leaks through an error raised inside the block."""
    try:
        yield
    except SealportError as exc:
        for secret in secrets:
            if secret:
                exc.message = exc.message.replace(secret, "[redacted]")
                exc.detail = exc.detail.replace(secret, "[redacted]")
                exc.args = (exc.message,)
        raise


def _auth_headers(token: str, key: DPoPKey | None, method: str, url: str) -> dict[str, str]:
    if key is None:
        return {"Authorization": f"Bearer {token}"}
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": key.proof(method, url, access_token=token),
    }


def _b64url_json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


class TokenSession:
    def __init__(
        self,
        session: requests.Session,
        meta: ProviderMetadata,
        client_id: str,
        store: SecretStore,
        lock_path: Path,
        *,
        skew: float = 30,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock_timeout: float = 60.0,
        timeout: float = 30.0,
        flow: str = "device",
        dpop: bool = False,
        open_browser: Callable[[str], bool] | None = None,
        browser_wait: float = pkce_flow.DEFAULT_WAIT,
    ) -> None:
        self.session = session
        self.meta = meta
        self.client_id = client_id
        self.store = store
        self.lock_path = Path(lock_path)
        self.skew = skew
        self.scopes = tuple(scopes)
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep  # used between device-flow polls (tests pass a fake)
        self.timeout = timeout
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(self.lock_path), timeout=lock_timeout)
        self._lock = threading.RLock()
        self._access: str | None = None
        self._access_expires = 0.0  # on self.clock
        self._identity: Identity | None = None
        self.flow = flow
        self.dpop = dpop
        self.open_browser = open_browser
        self.browser_wait = browser_wait
        self._token_type = "Bearer"
        self._dpop_key: DPoPKey | None = None

    def __repr__(self) -> str:
        return f"TokenSession(issuer={self.meta.issuer!r}, client_id={self.client_id!r})"

    # --- store -------------------------------------------------------------------------
    def _load(self) -> _Record | None:
        raw = self.store.get(SESSION_ITEM)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            rec = _Record(
                issuer=str(doc["issuer"]),
                client_id=str(doc["client_id"]),
                refresh_token=str(doc["refresh_token"]),
                sub=str(doc["sub"]),
                name=doc.get("name"),
                email=doc.get("email"),
                dpop_jwk=doc.get("dpop_jwk") if isinstance(doc.get("dpop_jwk"), dict) else None,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("stored sign-in is unreadable; treating as signed out")
            return None
        if rec.issuer != self.meta.issuer or rec.client_id != self.client_id:
            # Never send a refresh token to an IdP other than the one that issued it.
            log.info("stored sign-in is for another issuer/client; treating as signed out")
            return None
        return rec

    def _wipe(self) -> None:
        self._access = None
        self._access_expires = 0.0
        self._identity = None
        self._dpop_key = None
        self.store.delete(SESSION_ITEM)

    @contextmanager
    def _cross_process_lock(self) -> Iterator[None]:
        try:
            self._file_lock.acquire()
        except LockTimeout:
            raise AuthError(
                "Another Sealport window is busy renewing your sign-in. Try again in a moment.",
                detail=f"could not lock {self.lock_path} within {self._file_lock.timeout}s",
            ) from None
        try:
            yield
        finally:
            self._file_lock.release()

    # --- sign-in -------------------------------------------------------------------------
    def login(
        self,
        on_code: Callable[[DeviceAuthorization], None],
        progress: Progress | None = None,
        *,
        on_browser: Callable[[pkce_flow.BrowserSignIn], None] | None = None,
        flow: str | None = None,
    ) -> Identity:
        """Sign in. Browser flow: ``on_browser`` is told the sign-in page opened (or the
        address to open by hand). Device flow: ``on_code`` shows the code and address."""
        chosen = choose_flow(flow or self.flow, self.meta)
        if chosen == "pkce" and (flow or self.flow) == "auto" and on_browser is None:
            # "auto" from a caller with no browser-waiting UI (older DCC panels): keep the
            # device flow they know how to show rather than a silent browser window.
            chosen = "device" if self.meta.device_authorization_endpoint else "pkce"
        key = DPoPKey.generate() if self.dpop else None
        if chosen == "pkce":
            opener = self.open_browser or pkce_flow.webbrowser.open
            tokens = pkce_flow.login(
                self.session,
                self.meta,
                self.client_id,
                self.scopes,
                open_browser=opener,
                on_browser=on_browser,
                progress=progress,
                wait=self.browser_wait,
                dpop=key,
                workstation=socket.gethostname(),
                timeout=self.timeout,
                clock=self.clock,
            )
        else:
            if not self.meta.device_authorization_endpoint:
                raise AuthError(
                    "Your studio's sign-in service does not allow device sign-in; "
                    "sign in from a workstation with a browser, or ask your TD.",
                    detail=f"{self.meta.issuer}: no device_authorization_endpoint",
                )
            auth = device_flow.start(
                self.session,
                self.meta,
                self.client_id,
                self.scopes,
                clock=self.clock,
                workstation=socket.gethostname(),
            )
            on_code(auth)
            tokens = device_flow.poll(
                self.session,
                self.meta,
                self.client_id,
                auth,
                progress=progress,
                sleep=self.sleep,
                clock=self.clock,
                dpop=key,
            )
        with _scrubbed(tokens.access_token, tokens.refresh_token, tokens.id_token):
            if tokens.refresh_token is None:
                raise AuthError(
                    "Your studio's sign-in service did not allow Sealport to stay signed in; "
                    "ask your TD to allow the offline_access scope for Sealport.",
                    detail=f"{chosen} grant response has no refresh_token",
                )
            bound = key if tokens.token_type == "DPoP" else None
            claims = self._claims(tokens, bound)
            record = _Record(
                issuer=self.meta.issuer,
                client_id=self.client_id,
                refresh_token=tokens.refresh_token,
                sub=claims["sub"],
                name=claims.get("name"),
                email=claims.get("email"),
                dpop_jwk=bound.private_jwk() if bound is not None else None,
            )
            with self._lock, self._cross_process_lock():
                self.store.set(SESSION_ITEM, record.dumps())
                self._remember(tokens, record)
        assert self._identity is not None
        log.info("signed in as %s (%s flow, %s token)", record.sub, chosen, tokens.token_type)
        return self._identity

    def _claims(self, tokens: TokenResponse, pop: DPoPKey | None = None) -> dict[str, Any]:
        """Who signed in: the ID token (received directly over TLS) plus userinfo."""
        claims: dict[str, Any] = {}
        if tokens.id_token:
            try:
                payload = _b64url_json(tokens.id_token.split(".")[1])
            except (IndexError, ValueError):
                payload = None
            if not isinstance(payload, dict):
                raise AuthError(
                    "Your studio's sign-in service sent an unreadable identity; tell your TD.",
                    detail="id_token payload is not a JSON object",
                )
            aud = payload.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if payload.get("iss") != self.meta.issuer or self.client_id not in auds:
                raise AuthError(
                    "Your studio's sign-in service sent an identity meant for another "
                    "application, so Sealport stopped. Tell your TD.",
                    detail=f"id_token iss={payload.get('iss')!r} aud={aud!r}",
                )
            claims = {k: payload[k] for k in ("sub", "name", "email") if k in payload}
        if self.meta.userinfo_endpoint:
            status, info = get_json(
                self.session,
                self.meta.userinfo_endpoint,
                headers=_auth_headers(tokens.access_token, pop, "GET", self.meta.userinfo_endpoint),
                timeout=self.timeout,
            )
            if status == 200 and isinstance(info, dict):
                if "sub" in claims and info.get("sub") != claims["sub"]:
                    raise AuthError(
                        "Your studio's sign-in service sent two different identities; "
                        "Sealport stopped. Tell your TD.",
                        detail="userinfo sub differs from id_token sub",
                    )
                for key in ("sub", "name", "email"):
                    if isinstance(info.get(key), str):
                        claims.setdefault(key, info[key])
            else:
                log.warning("userinfo answered HTTP %s; using ID token claims only", status)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthError(
                "Your studio's sign-in service did not say who signed in; tell your TD.",
                detail="no sub in id_token or userinfo (request the openid scope)",
            )
        return claims

    def _remember(self, tokens: TokenResponse, record: _Record) -> None:
        self._access = tokens.access_token
        self._token_type = tokens.token_type
        if record.dpop_jwk is None:
            self._dpop_key = None
        elif self._dpop_key is None or self._dpop_key.private_jwk() != record.dpop_jwk:
            self._dpop_key = record.dpop_key()
        self._access_expires = self.clock() + tokens.expires_in
        self._identity = Identity(
            sub=record.sub,
            name=record.name,
            email=record.email,
            expires=self.wall_clock() + tokens.expires_in,
        )

    # --- access tokens -------------------------------------------------------------------
    def _fresh(self) -> bool:
        return self._access is not None and self.clock() < self._access_expires - self.skew

    def access_token(self) -> str:
        """A valid access token; refreshes silently when it is close to expiry."""
        with self._lock:
            if self._fresh():
                assert self._access is not None
                return self._access
            return self._refresh()

    def request_headers(self, method: str, url: str) -> dict[str, str]:
        """``Authorization`` (+ a fresh ``DPoP`` proof for a DPoP-bound token) for one request."""
        with self._lock:
            token = self.access_token()
            key = self._dpop_key if self._token_type == "DPoP" else None
        return _auth_headers(token, key, method, url)

    def dpop_key(self) -> DPoPKey | None:
        """The proof key of the current DPoP-bound sign-in (None for bearer tokens)."""
        with self._lock:
            return self._dpop_key if self._token_type == "DPoP" else None

    def force_refresh(self) -> str:
        """Refresh now (e.g. after the API answered 401) and return the new access token."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> str:
        with self._cross_process_lock():
            # Re-read under the lock: another process may have rotated the RT already.
            record = self._load()
            if record is None:
                self._access = None
                self._identity = None
                raise LoginRequired(SIGNED_OUT, detail="no stored sign-in for this issuer")
            try:
                tokens = self._redeem(record)
            except _InvalidGrant:
                again = self._load()
                if again is None or again.refresh_token == record.refresh_token:
                    self._wipe()
                    raise LoginRequired(
                        SIGNED_OUT, detail="refresh token rejected (invalid_grant)"
                    ) from None
                record = again  # rotated concurrently (outside our lock): one retry
                try:
                    tokens = self._redeem(record)
                except _InvalidGrant:
                    self._wipe()
                    raise LoginRequired(
                        SIGNED_OUT, detail="refresh token rejected twice (invalid_grant)"
                    ) from None
            with _scrubbed(tokens.access_token, tokens.refresh_token, record.refresh_token):
                new_rt = tokens.refresh_token or record.refresh_token
                rotated = new_rt != record.refresh_token
                if rotated:
                    record = _Record(
                        issuer=record.issuer,
                        client_id=record.client_id,
                        refresh_token=new_rt,
                        sub=record.sub,
                        name=record.name,
                        email=record.email,
                        dpop_jwk=record.dpop_jwk,
                    )
                    # Keep the new tokens in memory even if the store write fails below.
                    self._remember(tokens, record)
                    self.store.set(SESSION_ITEM, record.dumps())
                else:
                    self._remember(tokens, record)
            log.info("access token renewed (refresh token rotated: %s)", rotated)
            return tokens.access_token

    def _redeem(self, record: _Record) -> TokenResponse:
        url = self.meta.token_endpoint
        refresh_token = record.refresh_token
        with _scrubbed(refresh_token):
            key = record.dpop_key()  # a DPoP-bound RT needs a proof by its own key
            status, body = post_token(
                self.session,
                url,
                {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": self.client_id,
                },
                key,
                timeout=self.timeout,
            )
            error = body.get("error")
            if status == 200 and not error:
                return parse_token_response(dict(body), url, dpop=key is not None)
            if error == "invalid_grant":
                raise _InvalidGrant()
            if status >= 500 or status == 429 or error == "temporarily_unavailable":
                raise TransportError(
                    "Your studio's sign-in service is busy or unavailable; try again shortly.",
                    detail=f"POST {url} (refresh) -> {status} {error_text(dict(body))}",
                )
            raise AuthError(
                "Sealport could not renew your sign-in; tell your TD if this keeps happening.",
                detail=f"POST {url} (refresh) -> {status} {error_text(dict(body))}",
            )

    # --- state -------------------------------------------------------------------------
    def is_signed_in(self) -> bool:
        """True when a sign-in is stored for this IdP (no network call)."""
        with self._lock:
            return self._load() is not None

    def identity(self) -> Identity:
        with self._lock:
            if self._identity is not None:
                return self._identity
            record = self._load()
            if record is None:
                raise LoginRequired(
                    "You are not signed in to Sealport. Sign in first.",
                    detail="no stored sign-in",
                )
            return Identity(sub=record.sub, name=record.name, email=record.email, expires=0.0)

    def logout(self) -> None:
        """Revoke at the IdP (RFC 7009: refresh token, then access token), then wipe.

        The local wipe always happens. If the IdP could not be told, this raises
        ``LogoutIncomplete`` after wiping, so the caller can say so honestly.
        """
        with self._lock, self._cross_process_lock():
            record = self._load()
            pending = [
                (token, hint)
                for token, hint in (
                    (record.refresh_token if record else None, "refresh_token"),
                    (self._access, "access_token"),
                )
                if token
            ]
            problems: list[str] = []
            try:
                endpoint = self.meta.revocation_endpoint
                for token, hint in pending:
                    if endpoint is None:
                        problems.append("the IdP has no revocation_endpoint")
                        break
                    try:
                        with _scrubbed(token):
                            status, body = post_form(
                                self.session,
                                endpoint,
                                {
                                    "token": token,
                                    "token_type_hint": hint,
                                    "client_id": self.client_id,
                                },
                                timeout=self.timeout,
                            )
                    except TransportError as exc:
                        problems.append(f"{hint}: {exc.detail or exc.message}")
                        continue
                    if status != 200:
                        problems.append(f"{hint}: HTTP {status} {error_text(body)}")
            finally:
                self._wipe()
        if problems:
            log.warning("signed out locally; revocation incomplete: %s", "; ".join(problems))
            raise LogoutIncomplete(
                "You are signed out on this workstation, but Sealport could not reach your "
                "studio's sign-in service to end the session there; it will expire on its "
                "own. Tell your TD if this workstation may be compromised.",
                detail="; ".join(problems),
            )
        log.info("signed out; tokens revoked and wiped")
