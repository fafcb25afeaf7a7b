"""The dev IdP's authorization code + PKCE grant for native clients (RFC 6749 §4.1,
RFC 7636 S256 only, RFC 8252 loopback redirects, RFC 9207 ``iss``).

Why these rules: the client is public, so the code itself must be useless to
anyone but the process that asked for it. PKCE ``S256`` (``plain`` refused) ties
it to a verifier that never left that process; the redirect goes only to an IP
loopback address (any port, RFC 8252 §7.3; "localhost" refused, §8.3); codes
live 60 s, are single-use, and a replayed code revokes what it produced. The
approval page names the client, the workstation it reports and the IP the
request came from, so an artist can tell a sign-in they did not start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .ledger import UserRecord, revoke_sid_in, sha256_hex
from .settings import CLIENT_ID, CLIENT_NAME

if TYPE_CHECKING:
    from .idp import DevIdP

CODE_TTL = 60
REQUEST_TTL = 600
CSRF_COOKIE = "sp_csrf_az"
LOOPBACK_IPS = frozenset({"127.0.0.1", "::1"})
BINDINGS_SQL = """
CREATE TABLE IF NOT EXISTS dpop_bindings (
    sid TEXT PRIMARY KEY,
    jkt TEXT NOT NULL
);
"""


class GrantFailure(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class _Request:
    client_id: str
    redirect_uri: str
    state: str
    nonce: str | None
    challenge: str
    scope: str
    dpop_jkt: str | None
    workstation: str
    ip: str
    csrf: str
    expires: float


@dataclass
class _Code:
    req: _Request
    username: str
    expires: float
    sid: str | None = None


def loopback_redirect_ok(uri: str) -> bool:
    """http on an IP loopback literal, any port (RFC 8252 §7.3), no fragment."""
    try:
        p = urlsplit(uri)
        port = p.port
    except ValueError:
        return False
    return (
        p.scheme == "http"
        and (p.hostname or "") in LOOPBACK_IPS
        and port is not None
        and not p.fragment
        and not p.username
    )


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _b64url_ok(value: str, low: int, high: int) -> bool:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return low <= len(value) <= high and set(value) <= allowed


class AuthCodeFlow:
    """Pages and grant for ``/oauth/authorize``; owned by :class:`DevIdP`."""

    def __init__(self, idp: DevIdP) -> None:
        self.idp = idp
        self._lock = threading.Lock()
        self._requests: dict[str, _Request] = {}
        self._codes: dict[str, _Code] = {}
        self._workstations: dict[str, str] = {}
        idp.ledger.ensure_schema(BINDINGS_SQL)

    # --- workstation names for the device flow's approval page -------------------------
    def note_workstation(self, device_code: str, name: str) -> None:
        """Remember the (self-reported) workstation name of a device authorization."""
        with self._lock:
            if len(self._workstations) > 10_000:
                self._workstations.clear()
            self._workstations[sha256_hex(device_code)] = name[:64] or "(not reported)"

    def workstation(self, device_code_hash: str) -> str:
        with self._lock:
            return self._workstations.get(device_code_hash, "(not reported)")

    # --- DPoP session bindings --------------------------------------------------------
    def binding(self, c: Any, sid: str) -> str | None:
        row = c.execute("SELECT jkt FROM dpop_bindings WHERE sid=?", (sid,)).fetchone()
        return str(row["jkt"]) if row else None

    def bind(self, sid: str, jkt: str) -> None:
        with self.idp.ledger.tx() as c:
            c.execute("INSERT OR IGNORE INTO dpop_bindings(sid, jkt) VALUES (?,?)", (sid, jkt))

    # --- authorization endpoint ----------------------------------------------------------
    def _redirect(self, req_uri: str, params: dict[str, str]) -> RedirectResponse:
        sep = "&" if urlsplit(req_uri).query else "?"
        params = {**params, "iss": self.idp.issuer}
        return RedirectResponse(f"{req_uri}{sep}{urlencode(params)}", status_code=303)

    def authorize_get(self, request: Request) -> Response:
        q = request.query_params
        client_id = q.get("client_id", "")
        redirect_uri = q.get("redirect_uri", "")
        # Never redirect to an unverified address (open redirector): show the error.
        if client_id != CLIENT_ID:
            return self.idp._done("Unknown application", "This sign-in link is not valid.", "bad")
        if not loopback_redirect_ok(redirect_uri):
            return self.idp._done(
                "Unknown return address",
                "This sign-in link does not return to this workstation; it was refused.",
                "bad_redirect",
                status=400,
            )
        state = q.get("state", "")[:512]

        def fail(error: str, desc: str) -> RedirectResponse:
            return self._redirect(
                redirect_uri, {"error": error, "error_description": desc, "state": state}
            )

        if q.get("response_type") != "code":
            return fail("unsupported_response_type", "only response_type=code")
        if q.get("code_challenge_method") != "S256":
            return fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
        challenge = q.get("code_challenge", "")
        if not _b64url_ok(challenge, 43, 43):
            return fail("invalid_request", "code_challenge must be 43 base64url characters")
        dpop_jkt = q.get("dpop_jkt") or None
        if dpop_jkt is not None and not _b64url_ok(dpop_jkt, 43, 43):
            return fail("invalid_request", "dpop_jkt is malformed")
        scope = " ".join(s for s in q.get("scope", "").split() if s) or "openid"
        ticket = secrets.token_urlsafe(24)
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        req = _Request(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            nonce=q.get("nonce") or None,
            challenge=challenge,
            scope=scope,
            dpop_jkt=dpop_jkt,
            workstation=(q.get("sealport_workstation") or "(not reported)")[:64],
            ip=request.client.host if request.client else "unknown",
            csrf=csrf,
            expires=time.monotonic() + REQUEST_TTL,
        )
        with self._lock:
            now = time.monotonic()
            self._requests = {k: r for k, r in self._requests.items() if r.expires > now}
            self._requests[sha256_hex(ticket)] = req
        return self._form(req, ticket)

    def _form(
        self, req: _Request, ticket: str, *, error: str = "", username: str = "", status: int = 200
    ) -> HTMLResponse:
        from .idp import _template

        err = f'<p class="error" id="error">{html.escape(error)}</p>' if error else ""
        body = _template("authorize.html").substitute(
            client_name=html.escape(CLIENT_NAME),
            client_id=html.escape(req.client_id),
            workstation=html.escape(req.workstation),
            requester_ip=html.escape(req.ip),
            scope=html.escape(req.scope),
            error=err,
            csrf=html.escape(req.csrf),
            ticket=html.escape(ticket),
            username=html.escape(username),
        )
        resp = self.idp._page(body, status)
        resp.set_cookie(
            CSRF_COOKIE, req.csrf, secure=True, httponly=True, samesite="strict", path="/oauth"
        )
        return resp

    async def authorize_post(self, request: Request) -> Response:
        from .idp import _DUMMY_HASH, verify_password

        form = await request.form()
        f = {k: v for k, v in form.items() if isinstance(v, str)}
        ip = request.client.host if request.client else "unknown"
        ticket = f.get("ticket", "")
        with self._lock:
            req = self._requests.get(sha256_hex(ticket))
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if (
            req is None
            or req.expires < time.monotonic()
            or not cookie
            or not hmac.compare_digest(cookie.encode(), req.csrf.encode())
            or not hmac.compare_digest(f.get("csrf", "").encode(), req.csrf.encode())
        ):
            return self.idp._done(
                "Page expired", "Start the sign-in again from your application.", "expired", 400
            )
        if f.get("decision") == "deny":
            with self._lock:
                self._requests.pop(sha256_hex(ticket), None)
            self.idp.ledger.add_audit(
                [{"event": "authorize_denied", "workstation": req.workstation}],
                source="server",
                username=None,
                client_ip=ip,
            )
            return self._redirect(
                req.redirect_uri,
                {"error": "access_denied", "error_description": "denied", "state": req.state},
            )
        if self.idp.limiter.blocked(ip):
            return self.idp._done(
                "Too many attempts",
                "Too many wrong passwords from this computer. Wait a few minutes.",
                "rate_limited",
                status=429,
            )
        username = f.get("username", "")[:128]
        user = self.idp.ledger.get_user(username)
        ok = verify_password(
            f.get("password", "")[:1024], user.password_hash if user else _DUMMY_HASH
        )
        if user is None or user.disabled or not ok:
            self.idp.limiter.fail(ip)
            return self._form(
                req, ticket, error="Wrong username or password.", username=username, status=400
            )
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._requests.pop(sha256_hex(ticket), None)
            now = time.monotonic()
            self._codes = {k: c for k, c in self._codes.items() if c.expires > now - 3600}
            self._codes[sha256_hex(code)] = _Code(req, user.username, now + CODE_TTL)
        self.idp.ledger.add_audit(
            [{"event": "authorize_approved", "workstation": req.workstation}],
            source="server",
            username=user.username,
            client_ip=ip,
        )
        return self._redirect(req.redirect_uri, {"code": code, "state": req.state})

    # --- token endpoint: grant_type=authorization_code ---------------------------------
    def grant(self, form: dict[str, str], jkt: str | None) -> dict[str, Any]:
        code = form.get("code", "")
        h = sha256_hex(code)
        with self._lock:
            entry = self._codes.get(h)
            replay_sid = entry.sid if entry is not None else None
            fresh = entry is not None and entry.sid is None and entry.expires > time.monotonic()
            if fresh and entry is not None:
                entry.sid = secrets.token_urlsafe(16)  # single use from here on
        if entry is None:
            raise GrantFailure("invalid_grant", "The authorization code is unknown.")
        if replay_sid is not None:
            # A second redemption: the code leaked. Kill what the first one produced.
            with self.idp.ledger.tx() as c:
                revoke_sid_in(c, replay_sid, "authorization_code_replay")
            raise GrantFailure("invalid_grant", "The authorization code was already used.")
        if not fresh or entry.sid is None:
            raise GrantFailure("invalid_grant", "The authorization code expired.")
        req = entry.req
        if form.get("redirect_uri") != req.redirect_uri or form.get("client_id") != req.client_id:
            raise GrantFailure("invalid_grant", "redirect_uri or client_id does not match.")
        verifier = form.get("code_verifier", "")
        if not _b64url_ok(verifier, 43, 128) or not hmac.compare_digest(
            s256(verifier), req.challenge
        ):
            raise GrantFailure("invalid_grant", "PKCE verification failed.")
        if req.dpop_jkt is not None and jkt != req.dpop_jkt:
            raise GrantFailure("invalid_dpop_proof", "The DPoP key differs from dpop_jkt.")
        user = self.idp.ledger.get_user(entry.username)
        if user is None or user.disabled:
            raise GrantFailure("access_denied", "The account is disabled.")
        return self._session(user, entry.sid, req, jkt)

    def _session(
        self, user: UserRecord, sid: str, req: _Request, jkt: str | None
    ) -> dict[str, Any]:
        amr = ["pwd", "otp"] if user.mfa else ["pwd"]
        with self.idp.ledger.tx() as c:
            c.execute(
                "INSERT INTO sessions(sid, username, client_id, scope, amr, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (sid, user.username, req.client_id, req.scope, json.dumps(amr), int(time.time())),
            )
        self.idp.ledger.add_audit(
            [
                {
                    "event": "login",
                    "flow": "authorization_code",
                    "client_id": req.client_id,
                    "workstation": req.workstation,
                    "dpop": jkt is not None,
                }
            ],
            source="server",
            username=user.username,
            sid=sid,
            client_ip=req.ip,
        )
        return self.idp._issue(
            user, sid, req.scope, amr, with_id_token=True, jkt=jkt, nonce=req.nonce
        )
