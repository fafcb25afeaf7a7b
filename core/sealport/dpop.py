"""DPoP (RFC 9449) on the client: a proof-of-possession key and the proofs it signs.

Why: a bearer token works for whoever holds it; a DPoP-bound token (``cnf.jkt``)
works only together with a fresh proof signed by the key it was issued to. The
private key lives in the secret store beside the refresh token (a stolen refresh
token is useless without it, and without persisting it the refresh token would
die with the process). Signing and JWK handling are joserfc's, not ours.

A proof is a JWT with header ``typ=dpop+jwt``, ``alg=ES256`` and the public
``jwk``; claims ``jti`` (unique), ``htm`` (HTTP method), ``htu`` (URL without query
and fragment), ``iat``, plus ``ath`` (hash of the access token) on resource
requests and ``nonce`` when the server asked for one (``use_dpop_nonce``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from .errors import AuthError
from .oidc import DEFAULT_TIMEOUT, post_form_full

ALG = "ES256"
NONCE_ERROR = "use_dpop_nonce"


def htu(url: str) -> str:
    """The ``htu`` form of a URL: scheme, host, port and path (RFC 9449 §4.2)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path or "/", "", ""))


def ath(access_token: str) -> str:
    """base64url(SHA-256(access token)) without padding (RFC 9449 §4.2)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme.lower()}://{p.netloc.lower()}"


class DPoPKey:
    """An EC P-256 key that signs DPoP proofs; remembers server nonces per origin."""

    def __init__(self, key: ECKey, *, clock: Callable[[], float] = time.time) -> None:
        if key.as_dict(private=False).get("crv") != "P-256" or not key.is_private:
            raise AuthError(
                "Sealport's stored sign-in key is unusable; sign in again.",
                detail="DPoP key must be a private EC P-256 JWK",
            )
        self._key = key
        self._clock = clock
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never print the private key
        return f"DPoPKey(jkt={self.jkt!r})"

    @classmethod
    def generate(cls) -> DPoPKey:
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> DPoPKey:
        try:
            key = ECKey.import_key(dict(jwk))
        except (ValueError, TypeError, KeyError) as exc:
            raise AuthError(
                "Sealport's stored sign-in key is unreadable; sign in again.",
                detail=f"DPoP JWK import failed: {type(exc).__name__}",
            ) from None
        return cls(key)

    def private_jwk(self) -> dict[str, object]:
        """The private JWK, for the secret store only."""
        return dict(self._key.as_dict(private=True))

    def public_jwk(self) -> dict[str, object]:
        return {k: v for k, v in self._key.as_dict(private=False).items() if k != "kid"}

    @property
    def jkt(self) -> str:
        """RFC 7638 thumbprint (SHA-256) of the public key: the token's ``cnf.jkt``."""
        return str(self._key.thumbprint())

    # nonces -------------------------------------------------------------------------
    def remember_nonce(self, url: str, headers: Mapping[str, str]) -> bool:
        """Keep a ``DPoP-Nonce`` the server sent; True when there was one."""
        nonce = headers.get("DPoP-Nonce") or headers.get("dpop-nonce")
        if not nonce:
            return False
        with self._lock:
            self._nonces[_origin(url)] = nonce
        return True

    # proofs -------------------------------------------------------------------------
    def proof(self, method: str, url: str, *, access_token: str | None = None) -> str:
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(18),
            "htm": method.upper(),
            "htu": htu(url),
            "iat": int(self._clock()),
        }
        if access_token is not None:
            claims["ath"] = ath(access_token)
        with self._lock:
            nonce = self._nonces.get(_origin(url))
        if nonce:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": ALG, "jwk": self.public_jwk()}
        return str(jwt.encode(header, claims, self._key, algorithms=[ALG]))


def asks_for_nonce(status: int, body: Mapping[str, object], headers: Mapping[str, str]) -> bool:
    """True when a reply is the server's ``use_dpop_nonce`` challenge (token or resource)."""
    if body.get("error") == NONCE_ERROR:
        return True
    if status == 401:
        challenge = headers.get("WWW-Authenticate") or headers.get("www-authenticate") or ""
        return challenge.lower().startswith("dpop") and NONCE_ERROR in challenge
    return False


def dumps_key(key: DPoPKey) -> str:
    return json.dumps(key.private_jwk())


def post_token(
    session: requests.Session,
    url: str,
    data: dict[str, str],
    key: DPoPKey | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, dict[str, object]]:
    """A token-endpoint POST, with a DPoP proof when ``key`` is set.

    Retried once, and only on ``use_dpop_nonce`` (RFC 9449 §8): the IdP refused
    the request before looking at the grant, so the code or refresh token was not
    consumed and sending it again is safe.
    """
    for attempt in (1, 2):
        headers = {"DPoP": key.proof("POST", url)} if key is not None else None
        status, body, reply = post_form_full(session, url, data, timeout=timeout, headers=headers)
        if key is None:
            return status, body
        fresh_nonce = key.remember_nonce(url, reply)
        if attempt == 1 and fresh_nonce and asks_for_nonce(status, body, reply):
            continue
        return status, body
    raise AssertionError("unreachable")
