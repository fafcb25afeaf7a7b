"""Resource-side access-token validation (the API never trusts the IdP blindly).

A Bearer JWT is accepted only if its signature verifies against the issuer's
JWKS, ``iss`` and ``aud`` match, it has not expired (small leeway), and its
session (``sid``) has not been revoked by logout, revocation or refresh-token
reuse. The key set comes from a :class:`KeySource`: the embedded IdP hands
its keys over directly; an external IdP is reached through its ``jwks_uri``.

DPoP (RFC 9449 §7): a token with ``cnf.jkt`` is accepted only as
``Authorization: DPoP <token>`` with a valid proof signed by that key; presented
as Bearer, without a proof, or with another key's proof it is refused (401,
``WWW-Authenticate: DPoP error="invalid_dpop_proof"``). Unbound bearer tokens stay
accepted unless ``dpop_required``.
"""

from __future__ import annotations

import hmac
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from .dpop import ALLOWED_ALGS, DPoPVerifier, ProofError
from .ledger import Ledger

# PROTOCOL.md fixes "EdDSA" (RFC 8037); joserfc warns because RFC 9864 prefers
# the fully-specified "Ed25519" name. The curve is pinned by our key, so the
# warning carries no risk here.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")


class AuthFailure(Exception):
    """A request without a usable access token (→ HTTP 401 with WWW-Authenticate)."""

    def __init__(
        self,
        error: str,
        message: str,
        description: str = "",
        status: int = 401,
        *,
        scheme: str = "Bearer",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.error = error
        self.message = message
        self.description = description
        self.status = status
        self.scheme = scheme
        self.headers = dict(headers or {})

    def www_authenticate(self) -> str:
        if self.error == "login_required":
            return 'Bearer realm="sealport"'
        desc = self.description.replace('"', "'")
        if self.scheme == "DPoP":
            err = self.error
            if err not in ("invalid_dpop_proof", "use_dpop_nonce"):
                err = "invalid_token"
            return (
                f'DPoP realm="sealport", algs="{" ".join(ALLOWED_ALGS)}", error="{err}", '
                f'error_description="{desc}"'
            )
        return f'Bearer realm="sealport", error="invalid_token", error_description="{desc}"'


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by the access token."""

    sub: str
    name: str
    roles: tuple[str, ...]
    sid: str | None
    amr: tuple[str, ...]
    scope: str
    jti: str
    claims: dict[str, Any] = field(repr=False)


class KeySource(Protocol):
    def keyset(self, refresh: bool = False) -> KeySet: ...


class StaticKeySource:
    """Keys handed over in-process (the embedded IdP)."""

    def __init__(self, get: Callable[[], KeySet]) -> None:
        self._get = get

    def keyset(self, refresh: bool = False) -> KeySet:
        return self._get()


class RemoteJWKS:
    """An external issuer's ``jwks_uri``, cached; refetched (rate-limited) on unknown kid."""

    def __init__(self, uri: str, *, ca_file: str | None = None, ttl: float = 300.0) -> None:
        self.uri = uri
        self.ca_file = ca_file
        self.ttl = ttl
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = 0.0

    def keyset(self, refresh: bool = False) -> KeySet:
        with self._lock:
            age = time.monotonic() - self._fetched
            if self._keys is None or age > self.ttl or (refresh and age > 30):
                resp = requests.get(self.uri, timeout=10, verify=self.ca_file or True)
                resp.raise_for_status()
                self._keys = KeySet.import_key_set(resp.json())
                self._fetched = time.monotonic()
            return self._keys


_EXPIRED = "Your sign-in expired; Sealport will refresh it, or sign in again."
_INVALID = "Your sign-in is not valid for this server; sign in again."
_REVOKED = "Your session was revoked; sign in again."
_PROOF = "Your sign-in could not be proven for this workstation; sign in again."
_NONCE = "The server asked for a fresh sign-in proof; try again."


class TokenValidator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        ledger: Ledger,
        leeway: int = 30,
        algorithms: tuple[str, ...] = ("EdDSA",),
        dpop: DPoPVerifier | None = None,
        dpop_required: bool = False,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.keys = keys
        self.ledger = ledger
        self.algorithms = list(algorithms)
        self.dpop = dpop or DPoPVerifier()
        self.dpop_required = dpop_required
        self._claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    def decode_signature(self, token: str) -> dict[str, Any]:
        """Verify the signature only; claims are checked by :meth:`validate`."""
        try:
            try:
                tok = jwt.decode(token, self.keys.keyset(), algorithms=self.algorithms)
            except jose_errors.InvalidKeyIdError:
                tok = jwt.decode(token, self.keys.keyset(refresh=True), algorithms=self.algorithms)
        except (jose_errors.JoseError, ValueError, KeyError, TypeError) as exc:
            raise AuthFailure("invalid_token", _INVALID, f"bad token: {exc}") from exc
        return dict(tok.claims)

    def validate(self, token: str) -> Principal:
        claims = self.decode_signature(token)
        try:
            self._claims.validate(claims)
        except jose_errors.ExpiredTokenError as exc:
            raise AuthFailure("invalid_token", _EXPIRED, "The access token expired") from exc
        except jose_errors.JoseError as exc:
            raise AuthFailure("invalid_token", _INVALID, f"claims: {exc}") from exc
        sid = claims.get("sid")
        if sid is not None and self.ledger.is_sid_revoked(str(sid)):
            why = self.ledger.one("SELECT reason FROM revoked_sids WHERE sid=?", (str(sid),))
            if why is not None and why["reason"] == "security_policy":
                from .detection import POLICY_REVOKED_MESSAGE  # spike response (issue 6)

                raise AuthFailure(
                    "session_revoked", POLICY_REVOKED_MESSAGE, "Revoked by security policy"
                )
            raise AuthFailure("session_revoked", _REVOKED, "The session was revoked")
        roles = claims.get("roles") or ()
        amr = claims.get("amr") or ()
        return Principal(
            sub=str(claims["sub"]),
            name=str(claims.get("name") or claims["sub"]),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            sid=str(sid) if sid is not None else None,
            amr=tuple(str(a) for a in amr) if isinstance(amr, list) else (),
            scope=str(claims.get("scope", "")),
            jti=str(claims.get("jti", "")),
            claims=claims,
        )

    def from_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthFailure("login_required", "Sign in first.", "no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure("invalid_token", _INVALID, "Authorization is not a Bearer token")
        return self.validate(token.strip())

    def dpop_failure(self, exc: ProofError) -> AuthFailure:
        headers = {"DPoP-Nonce": self.dpop.current_nonce()} if self.dpop.require_nonce else {}
        return AuthFailure(
            exc.error,
            _NONCE if exc.error == "use_dpop_nonce" else _PROOF,
            exc.description,
            scheme="DPoP",
            headers=headers,
        )

    def from_request(self, request: Any) -> Principal:
        """The caller of a Starlette/FastAPI request: Bearer, or DPoP token + proof."""
        authorization = request.headers.get("authorization")
        if not authorization:
            raise AuthFailure("login_required", "Sign in first.", "no Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer":
            p = self.from_header(authorization)
            if _jkt(p.claims) is not None:
                raise AuthFailure(
                    "invalid_dpop_proof",
                    _PROOF,
                    "DPoP-bound token presented as Bearer, without a proof",
                    scheme="DPoP",
                )
            if self.dpop_required:
                raise AuthFailure(
                    "invalid_dpop_proof", _PROOF, "this server requires DPoP", scheme="DPoP"
                )
            return p
        if scheme.lower() != "dpop" or not token:
            raise AuthFailure("invalid_token", _INVALID, "Authorization is not Bearer or DPoP")
        proofs = request.headers.getlist("dpop")
        try:
            if len(proofs) != 1:
                raise ProofError("exactly one DPoP header is required")
            jkt = self.dpop.verify(proofs[0], request.method, str(request.url), access_token=token)
        except ProofError as exc:
            raise self.dpop_failure(exc) from None
        p = self.validate(token)
        bound = _jkt(p.claims)
        if bound is None:
            raise AuthFailure("invalid_token", _INVALID, "token is not DPoP-bound", scheme="DPoP")
        if not hmac.compare_digest(bound, jkt):
            raise AuthFailure(
                "invalid_dpop_proof",
                _PROOF,
                "DPoP proof key does not match the token binding",
                scheme="DPoP",
            )
        return p


def _jkt(claims: dict[str, Any]) -> str | None:
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None
