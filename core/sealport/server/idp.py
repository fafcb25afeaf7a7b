"""The development IdP: OIDC discovery, RFC 8628 device flow, rotating refresh tokens.

It exists so the whole secure-import path runs from the README with no
external IdP; a studio points the client at its own IdP instead. It still
behaves like a strict real one, because the client is tested against it:
``slow_down`` when polled too fast, single-use device codes (replay revokes
what was issued), refresh-token rotation with reuse detection that revokes
the whole session, RFC 7009 revocation, and a verification page with CSRF
protection and per-IP rate limiting that shows *where* the request came from
(RFC 8628 §5.4 remote phishing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from ..paths import atomic_write_bytes, ensure_private_dir
from .auth import AuthFailure, TokenValidator
from .ledger import Ledger, UserRecord, revoke_sid_in, sha256_hex
from .settings import API_AUDIENCE, CLIENT_ID, CLIENT_NAME, ServerSettings

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
ROLES = ("artist", "lead", "pipeline", "admin")
DEFAULT_SCOPE = "openid offline_access profile"
CSRF_COOKIE = "sp_csrf"

# --- passwords -----------------------------------------------------------------------
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """scrypt with a per-user salt, parameters stored alongside for later upgrades."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b(salt).decode()}${b(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


_DUMMY_HASH = hash_password("timing-equaliser")


def create_user(
    ledger: Ledger,
    username: str,
    password: str,
    *,
    name: str | None = None,
    roles: Sequence[str] = ("artist",),
    mfa: bool = False,
) -> None:
    """Create or update a user (admin command and demo seeding)."""
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"roles must be a non-empty subset of {ROLES}, got {list(roles)}")
    if not username or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError("username must be letters, digits, '.', '-' or '_'")
    ledger.put_user(username, name or username, hash_password(password), tuple(roles), mfa)


# --- signing key ---------------------------------------------------------------------
def load_or_create_signing_key(data_dir: Path) -> OKPKey:
    """The IdP's Ed25519 JWK (data/idp/signing.jwk, 0600), made on first run."""
    path = data_dir / "idp" / "signing.jwk"
    if path.exists():
        return OKPKey.import_key(json.loads(path.read_text("utf-8")))
    ensure_private_dir(path.parent)
    key = OKPKey.generate_key("Ed25519", auto_kid=True)
    atomic_write_bytes(path, json.dumps(key.as_dict(private=True)).encode(), mode=0o600)
    return key


# --- helpers -------------------------------------------------------------------------
class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )


def normalize_user_code(raw: str) -> str:
    return "".join(ch for ch in raw.upper() if ch.isalnum())


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


class FailureLimiter:
    """Sliding-window count of failures per client IP (RFC 8628 §5.1 brute force)."""

    def __init__(self, max_failures: int, window: float) -> None:
        self.max = max_failures
        self.window = window
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def _trim(self, ip: str, now: float) -> deque[float]:
        q = self._hits.setdefault(ip, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def blocked(self, ip: str) -> bool:
        with self._lock:
            return len(self._trim(ip, time.monotonic())) >= self.max

    def fail(self, ip: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._trim(ip, now).append(now)


@dataclass(frozen=True)
class _Ticket:
    device_code_hash: str
    username: str
    csrf: str
    expires: float


def _template(name: str) -> Template:
    text = resources.files("sealport.server").joinpath("templates", name).read_text("utf-8")
    return Template(text)


_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- the IdP -------------------------------------------------------------------------
class DevIdP:
    def __init__(self, data_dir: Path, ledger: Ledger, settings: ServerSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        self.key = load_or_create_signing_key(data_dir)
        self.issuer = settings.public_url.rstrip("/")
        self.limiter = FailureLimiter(settings.verify_max_failures, settings.verify_window)
        self._tickets: dict[str, _Ticket] = {}
        self._tickets_lock = threading.Lock()
        from .authcode import AuthCodeFlow  # authorization code + PKCE, DPoP bindings

        self.authcode = AuthCodeFlow(self)

    # keys ------------------------------------------------------------------------
    def public_keyset(self) -> KeySet:
        return KeySet([OKPKey.import_key(self.key.as_dict(private=False))])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self.key.as_dict(private=False), use="sig", alg="EdDSA")]}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        header = {"alg": "EdDSA", "kid": self.key.kid, "typ": typ}
        return jwt.encode(header, claims, self.key, algorithms=["EdDSA"])

    def discovery(self) -> dict[str, Any]:
        i = self.issuer
        return {
            "issuer": i,
            "device_authorization_endpoint": f"{i}/oauth/device_authorization",
            "token_endpoint": f"{i}/oauth/token",
            "revocation_endpoint": f"{i}/oauth/revoke",
            "jwks_uri": f"{i}/oauth/jwks",
            "userinfo_endpoint": f"{i}/oauth/userinfo",
            "authorization_endpoint": f"{i}/oauth/authorize",
            "grant_types_supported": [DEVICE_GRANT, "refresh_token", "authorization_code"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "scopes_supported": ["openid", "offline_access", "profile"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "name", "preferred_username", "roles", "amr", "sid"],
        }

    # device authorization ------------------------------------------------------------
    def device_authorization(self, client_id: str, scope: str, ip: str) -> dict[str, Any]:
        if client_id != CLIENT_ID:
            raise OAuthError("invalid_client", "Unknown client_id.", 401)
        scope = " ".join(s for s in scope.split() if s) or DEFAULT_SCOPE
        device_code = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        now = int(time.time())
        s = self.settings
        for _ in range(10):
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
            try:
                with self.ledger.tx() as c:
                    c.execute("DELETE FROM device_codes WHERE expires_at < ?", (now - 3600,))
                    c.execute(
                        "INSERT INTO device_codes(device_code_hash, user_code, client_id, scope, "
                        "requester_ip, issued_at, expires_at, interval, status) "
                        "VALUES (?,?,?,?,?,?,?,?, 'pending')",
                        (
                            sha256_hex(device_code),
                            user_code,
                            client_id,
                            scope,
                            ip,
                            now,
                            now + s.device_code_ttl,
                            s.device_interval,
                        ),
                    )
                break
            except Exception as exc:  # sqlite3.IntegrityError on a user-code collision
                if "UNIQUE" not in str(exc):
                    raise
        else:  # pragma: no cover - 20^8 codes
            raise OAuthError("temporarily_unavailable", "Could not allocate a user code.", 503)
        shown = format_user_code(user_code)
        return {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": f"{self.issuer}/device",
            "verification_uri_complete": f"{self.issuer}/device?user_code={shown}",
            "expires_in": s.device_code_ttl,
            "interval": s.device_interval,
        }

    # token endpoint ------------------------------------------------------------------
    def token(self, form: dict[str, str], jkt: str | None = None) -> dict[str, Any]:
        """``jkt``: thumbprint of the request's verified DPoP proof key (RFC 9449 §5)."""
        if form.get("client_id", CLIENT_ID) != CLIENT_ID:
            raise OAuthError("invalid_client", "Unknown client_id.", 401)
        grant = form.get("grant_type", "")
        if grant == DEVICE_GRANT:
            return self._device_grant(form.get("device_code", ""), jkt)
        if grant == "refresh_token":
            return self._refresh_grant(form.get("refresh_token", ""), jkt)
        if grant == "authorization_code":
            from .authcode import GrantFailure

            try:
                return self.authcode.grant(form, jkt)
            except GrantFailure as exc:
                raise OAuthError(exc.error, exc.description) from None
        raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported.")

    def _device_grant(self, device_code: str, jkt: str | None = None) -> dict[str, Any]:
        if not device_code:
            raise OAuthError("invalid_request", "device_code is required.")
        h = sha256_hex(device_code)
        now = time.time()
        outcome: str
        sid = ""
        row: Any
        with self.ledger.tx() as c:
            row = c.execute("SELECT * FROM device_codes WHERE device_code_hash=?", (h,)).fetchone()
            if row is None:
                outcome = "invalid_grant"
            elif row["status"] == "redeemed":
                # A replayed device code: whoever holds it may not be the rightful
                # client, so the tokens issued from it die too.
                if row["sid"]:
                    revoke_sid_in(c, row["sid"], "device_code_replay")
                outcome = "invalid_grant"
            elif now >= row["expires_at"]:
                outcome = "expired_token"
            elif row["status"] == "denied":
                outcome = "access_denied"
            elif row["status"] == "pending":
                last = row["last_poll"]
                if last is not None and now - last < row["interval"]:
                    c.execute(
                        "UPDATE device_codes SET last_poll=?, interval=interval+5 "
                        "WHERE device_code_hash=?",
                        (now, h),
                    )
                    outcome = "slow_down"
                else:
                    c.execute(
                        "UPDATE device_codes SET last_poll=? WHERE device_code_hash=?", (now, h)
                    )
                    outcome = "authorization_pending"
            else:  # approved
                sid = secrets.token_urlsafe(16)
                c.execute(
                    "UPDATE device_codes SET status='redeemed', sid=? WHERE device_code_hash=?",
                    (sid, h),
                )
                outcome = "ok"
        if outcome != "ok":
            messages = {
                "invalid_grant": "The device code is unknown or was already used.",
                "expired_token": "The device code expired; start the sign-in again.",
                "access_denied": "The sign-in was denied.",
                "slow_down": f"Polling too fast; wait {row['interval'] + 5 if row else 5} s.",
                "authorization_pending": "Waiting for the user to approve the sign-in.",
            }
            raise OAuthError(outcome, messages[outcome])
        user = self.ledger.get_user(row["username"])
        if user is None or user.disabled:
            raise OAuthError("access_denied", "The account is disabled.")
        amr = ["pwd", "otp"] if user.mfa else ["pwd"]
        with self.ledger.tx() as c:
            c.execute(
                "INSERT INTO sessions(sid, username, client_id, scope, amr, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (sid, user.username, row["client_id"], row["scope"], json.dumps(amr), int(now)),
            )
        self.ledger.add_audit(
            [
                {
                    "event": "login",
                    "client_id": row["client_id"],
                    "requester_ip": row["requester_ip"],
                }
            ],
            source="server",
            username=user.username,
            sid=sid,
            client_ip=row["approver_ip"],
        )
        return self._issue(user, sid, row["scope"], amr, with_id_token=True, jkt=jkt)

    def _refresh_grant(self, refresh_token: str, jkt: str | None = None) -> dict[str, Any]:
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required.")
        h = sha256_hex(refresh_token)
        now = int(time.time())
        outcome = "ok"
        with self.ledger.tx() as c:
            row = c.execute("SELECT * FROM refresh_tokens WHERE token_hash=?", (h,)).fetchone()
            if row is None:
                outcome = "unknown"
            elif c.execute("SELECT 1 FROM revoked_sids WHERE sid=?", (row["sid"],)).fetchone():
                outcome = "revoked"
            elif row["status"] == "rotated":
                # Reuse of a rotated-out token: it was copied. Kill the whole family.
                revoke_sid_in(c, row["sid"], "refresh_token_reuse")
                outcome = "reuse"
            elif row["status"] != "active" or row["expires_at"] <= now:
                outcome = "expired"
            elif (bound := self.authcode.binding(c, row["sid"])) is not None and bound != jkt:
                outcome = "dpop_key_mismatch"  # a DPoP-bound RT needs its own key's proof
            else:
                c.execute("UPDATE refresh_tokens SET status='rotated' WHERE token_hash=?", (h,))
            session = (
                c.execute("SELECT * FROM sessions WHERE sid=?", (row["sid"],)).fetchone()
                if row is not None
                else None
            )
        if outcome == "reuse":
            self.ledger.add_audit(
                [{"event": "refresh_token_reuse", "action": "session_revoked"}],
                source="server",
                username=session["username"] if session else None,
                sid=row["sid"],
            )
        if outcome == "dpop_key_mismatch":  # a copied refresh token, tried without its key
            self.ledger.add_audit(
                [{"event": "dpop_refresh_refused", "proof": jkt is not None}],
                source="server",
                username=session["username"] if session else None,
                sid=row["sid"],
            )
        if outcome != "ok" or session is None:
            raise OAuthError(
                "invalid_grant", f"The refresh token is not valid ({outcome}); sign in again."
            )
        user = self.ledger.get_user(session["username"])
        if user is None or user.disabled:
            self.ledger.revoke_sid(session["sid"], "user_disabled")
            raise OAuthError("invalid_grant", "The account is disabled.")
        return self._issue(
            user,
            session["sid"],
            session["scope"],
            json.loads(session["amr"]),
            with_id_token=False,
            jkt=bound,
        )

    def _issue(
        self,
        user: UserRecord,
        sid: str,
        scope: str,
        amr: list[str],
        *,
        with_id_token: bool,
        jkt: str | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        s = self.settings
        now = int(time.time())
        if jkt is not None:
            self.authcode.bind(sid, jkt)  # the session's refresh tokens need this key
        cnf = {"cnf": {"jkt": jkt}} if jkt is not None else {}
        access = self.sign(
            {
                **cnf,
                "iss": self.issuer,
                "sub": user.sub,
                "aud": API_AUDIENCE,
                "exp": now + s.access_token_ttl,
                "iat": now,
                "jti": secrets.token_urlsafe(16),
                "scope": scope,
                "amr": amr,
                "roles": list(user.roles),
                "sid": sid,
                "name": user.name,
                "client_id": CLIENT_ID,
            },
            typ="at+jwt",
        )
        refresh = secrets.token_urlsafe(32)
        with self.ledger.tx() as c:
            c.execute(
                "INSERT INTO refresh_tokens(token_hash, sid, issued_at, expires_at, status) "
                "VALUES (?,?,?,?, 'active')",
                (sha256_hex(refresh), sid, now, now + s.refresh_token_ttl),
            )
        out: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP" if jkt is not None else "Bearer",
            "expires_in": s.access_token_ttl,
            "refresh_token": refresh,
            "scope": scope,
        }
        if with_id_token and "openid" in scope.split():
            out["id_token"] = self.sign(
                {
                    "iss": self.issuer,
                    "sub": user.sub,
                    "aud": CLIENT_ID,
                    "exp": now + s.id_token_ttl,
                    "iat": now,
                    "auth_time": now,
                    "sid": sid,
                    "amr": amr,
                    "name": user.name,
                    "preferred_username": user.username,
                    "roles": list(user.roles),
                    **({"nonce": nonce} if nonce else {}),
                }
            )
        return out

    # revocation ----------------------------------------------------------------------
    def revoke(self, token: str, validator: TokenValidator) -> None:
        """RFC 7009; revoking either token of a session ends the whole session."""
        if not token:
            return
        row = self.ledger.one(
            "SELECT sid FROM refresh_tokens WHERE token_hash=?", (sha256_hex(token),)
        )
        sid: str | None = str(row["sid"]) if row else None
        if sid is None and token.count(".") == 2:
            try:
                claims = validator.decode_signature(token)
                if claims.get("iss") == self.issuer and isinstance(claims.get("sid"), str):
                    sid = claims["sid"]
            except AuthFailure:
                sid = None
        if sid is not None:
            self.ledger.revoke_sid(sid, "revoked")
            session = self.ledger.one("SELECT username FROM sessions WHERE sid=?", (sid,))
            self.ledger.add_audit(
                [{"event": "session_revoked", "reason": "revocation_endpoint"}],
                source="server",
                username=str(session["username"]) if session else None,
                sid=sid,
            )

    # verification page ---------------------------------------------------------------
    def _page(self, body: str, status: int = 200, csrf: str | None = None) -> HTMLResponse:
        resp = HTMLResponse(
            _template("base.html").substitute(body=body), status_code=status, headers=_PAGE_HEADERS
        )
        if csrf is not None:
            resp.set_cookie(
                CSRF_COOKIE, csrf, secure=True, httponly=True, samesite="strict", path="/device"
            )
        return resp

    def _code_form(
        self, csrf: str, *, user_code: str = "", username: str = "", error: str = "", status: int
    ) -> HTMLResponse:
        err = f'<p class="error" id="error">{html.escape(error)}</p>' if error else ""
        body = _template("device_code.html").substitute(
            csrf=html.escape(csrf),
            user_code=html.escape(user_code),
            username=html.escape(username),
            error=err,
        )
        return self._page(body, status, csrf)

    def _done(self, title: str, text: str, result: str, status: int = 200) -> HTMLResponse:
        body = _template("device_done.html").substitute(
            title=html.escape(title), text=html.escape(text), result=result
        )
        return self._page(body, status)

    def device_page(self, request: Request) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        code = request.query_params.get("user_code", "")[:16]
        return self._code_form(csrf, user_code=code, status=200)

    async def device_post(self, request: Request) -> HTMLResponse:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        ip = _client_ip(request)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = fields.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return self._done(
                "Page expired", "Reload the sign-in page and try again.", "csrf", status=403
            )
        if fields.get("step") == "confirm":
            return self._confirm(fields, ip, cookie)
        return self._login(fields, ip, cookie)

    def _login(self, fields: dict[str, str], ip: str, csrf: str) -> HTMLResponse:
        raw_code = fields.get("user_code", "")[:32]
        username = fields.get("username", "")[:128]
        password = fields.get("password", "")[:1024]
        if self.limiter.blocked(ip):
            return self._done(
                "Too many attempts",
                "Too many wrong codes or passwords from this computer. Wait a few minutes.",
                "rate_limited",
                status=429,
            )
        code = normalize_user_code(raw_code)
        row = self.ledger.one(
            "SELECT * FROM device_codes WHERE user_code=? AND status='pending' AND expires_at>?",
            (code, int(time.time())),
        )
        user = self.ledger.get_user(username)
        ok_pw = verify_password(password, user.password_hash if user else _DUMMY_HASH)
        if row is None or user is None or user.disabled or not ok_pw:
            self.limiter.fail(ip)
            msg = (
                "That code is not valid or has expired. Check it, or start the sign-in again."
                if row is None
                else "Wrong username or password."
            )
            return self._code_form(
                csrf, user_code=raw_code, username=username, error=msg, status=400
            )
        ticket = secrets.token_urlsafe(24)
        with self._tickets_lock:
            now = time.monotonic()
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
            self._tickets[sha256_hex(ticket)] = _Ticket(
                row["device_code_hash"], user.username, csrf, now + 300
            )
        age = max(0, int(time.time()) - int(row["issued_at"]))
        body = _template("device_confirm.html").substitute(
            client_name=html.escape(CLIENT_NAME),
            client_id=html.escape(row["client_id"]),
            name=html.escape(user.name),
            username=html.escape(user.username),
            user_code=format_user_code(code),
            requester_ip=html.escape(row["requester_ip"]),
            workstation=html.escape(self.authcode.workstation(row["device_code_hash"])),
            age=f"{age} s" if age < 120 else f"{age // 60} min",
            csrf=html.escape(csrf),
            ticket=ticket,
        )
        return self._page(body)

    def _confirm(self, fields: dict[str, str], ip: str, csrf: str) -> HTMLResponse:
        with self._tickets_lock:
            ticket = self._tickets.pop(sha256_hex(fields.get("ticket", "")), None)
        if ticket is None or ticket.expires < time.monotonic() or ticket.csrf != csrf:
            return self._done(
                "Page expired", "Start again from the sign-in page.", "expired", status=400
            )
        decision = fields.get("decision")
        if decision not in ("approve", "deny"):
            return self._done("Choose", "Choose Approve or Deny.", "invalid", status=400)
        status = "approved" if decision == "approve" else "denied"
        with self.ledger.tx() as c:
            cur = c.execute(
                "UPDATE device_codes SET status=?, username=?, approver_ip=? "
                "WHERE device_code_hash=? AND status='pending' AND expires_at>?",
                (status, ticket.username, ip, ticket.device_code_hash, int(time.time())),
            )
            changed = cur.rowcount == 1
        if not changed:
            return self._done(
                "Code expired", "This sign-in expired; start it again.", "expired", status=400
            )
        self.ledger.add_audit(
            [{"event": f"device_{status}"}], source="server", username=ticket.username, client_ip=ip
        )
        if status == "approved":
            return self._done(
                "Signed in", "You can close this page and return to your application.", "approved"
            )
        return self._done(
            "Sign-in denied", "Nobody was signed in. You can close this page.", "denied"
        )


def router(idp: DevIdP, validator: TokenValidator) -> APIRouter:
    r = APIRouter()

    @r.get("/.well-known/openid-configuration")
    def discovery() -> JSONResponse:
        return JSONResponse(idp.discovery())

    @r.get("/oauth/jwks")
    def jwks() -> JSONResponse:
        return JSONResponse(idp.jwks())

    @r.post("/oauth/device_authorization")
    async def device_authorization(request: Request) -> Response:
        form = await request.form()
        try:
            body = idp.device_authorization(
                str(form.get("client_id", "")), str(form.get("scope", "")), _client_ip(request)
            )
        except OAuthError as exc:
            return exc.response()
        idp.authcode.note_workstation(
            body["device_code"], str(form.get("sealport_workstation", ""))
        )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @r.post("/oauth/token")
    async def token(request: Request) -> Response:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if fields.get("grant_type") == "client_credentials":  # pipeline clients (issue 6)
            from .pipeline_clients import GrantError, client_credentials_grant

            try:
                body = client_credentials_grant(
                    idp, fields, request.headers.get("authorization"), _client_ip(request)
                )
            except GrantError as exc:
                return OAuthError(exc.error, exc.description, exc.status).response()
            return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
        from .dpop import ProofError

        proofs = request.headers.getlist("dpop")
        jkt: str | None = None
        if proofs or idp.settings.dpop_required:
            try:
                if len(proofs) != 1:
                    raise ProofError("exactly one DPoP header is required")
                jkt = validator.dpop.verify(proofs[0], "POST", str(request.url))
            except ProofError as exc:
                nonce = {"DPoP-Nonce": validator.dpop.current_nonce()}
                return JSONResponse(
                    {"error": exc.error, "error_description": exc.description},
                    status_code=400,
                    headers={"Cache-Control": "no-store", **nonce},
                )
        try:
            body = idp.token(fields, jkt)
        except OAuthError as exc:
            return exc.response()
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @r.post("/oauth/revoke")
    async def revoke(request: Request) -> Response:
        form = await request.form()
        idp.revoke(str(form.get("token", "")), validator)
        return Response(status_code=200)

    @r.get("/oauth/userinfo")
    def userinfo(request: Request) -> JSONResponse:
        p = validator.from_request(request)
        return JSONResponse(
            {"sub": p.sub, "name": p.name, "preferred_username": p.sub, "roles": list(p.roles)}
        )

    @r.get("/oauth/authorize")
    def authorize_get(request: Request) -> Response:
        return idp.authcode.authorize_get(request)

    @r.post("/oauth/authorize")
    async def authorize_post(request: Request) -> Response:
        return await idp.authcode.authorize_post(request)

    @r.get("/device")
    def device_get(request: Request) -> HTMLResponse:
        return idp.device_page(request)

    @r.post("/device")
    async def device_post(request: Request) -> HTMLResponse:
        return await idp.device_post(request)

    return r
