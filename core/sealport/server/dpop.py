"""DPoP proof validation (RFC 9449 §4.3) for the dev IdP and the resource API.

Why each check: the signature + embedded ``jwk`` prove possession of the key;
``typ`` and an alg allow-list stop key-confusion tricks (no ``none``, no HMAC);
``htm``/``htu`` pin a proof to one request, so a proof captured for one URL
cannot be used for another; ``iat`` bounds how long a captured proof lives, and
the ``jti`` replay cache makes it single-use inside that window; ``ath`` ties a
resource proof to one access token. Optional server nonces (``use_dpop_nonce``)
remove the reliance on the client's clock: they are stateless HMACs of a time
slot, so any worker can check them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import errors as jose_errors
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OKPKey

ALLOWED_ALGS = ("ES256", "EdDSA", "Ed25519")
MAX_PROOF_BYTES = 4096
NONCE_SLOT = 300
"""Seconds per server-nonce slot; the current and the previous slot are accepted."""


class ProofError(Exception):
    """A missing or invalid proof (``invalid_dpop_proof``) or a nonce demand."""

    def __init__(self, description: str, *, error: str = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def normalize_htu(url: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path or "/", "", ""))


def access_token_hash(token: str) -> str:
    digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ReplayCache:
    """jti values seen within the acceptance window (bounded; oldest evicted first)."""

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, key: str, now: float) -> bool:
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at <= self.ttl and len(self._seen) < self.max:
                    break
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True


class DPoPVerifier:
    def __init__(
        self,
        *,
        window: int = 60,
        require_nonce: bool = False,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        self.window = window
        self.require_nonce = require_nonce
        self.clock = clock
        self._secret = secret or secrets.token_bytes(32)
        self.replay = ReplayCache(ttl=2 * window + 5)

    # nonces -------------------------------------------------------------------------
    def _nonce_for(self, slot: int) -> str:
        mac = hmac.new(self._secret, str(slot).encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def current_nonce(self) -> str:
        return self._nonce_for(int(self.clock() // NONCE_SLOT))

    def _nonce_ok(self, nonce: object) -> bool:
        if not isinstance(nonce, str):
            return False
        slot = int(self.clock() // NONCE_SLOT)
        return any(hmac.compare_digest(nonce, self._nonce_for(s)) for s in (slot, slot - 1))

    # proofs -------------------------------------------------------------------------
    def verify(
        self, proof: str | None, method: str, url: str, *, access_token: str | None = None
    ) -> str:
        """Check one proof for ``method url``; return the key's thumbprint (``jkt``)."""
        if not proof:
            raise ProofError("DPoP proof missing")
        if len(proof) > MAX_PROOF_BYTES or proof.count(".") != 2:
            raise ProofError("DPoP proof is not a compact JWS")
        try:
            header = jws.extract_compact(proof.encode("ascii")).headers()
        except (jose_errors.JoseError, ValueError, UnicodeEncodeError) as exc:
            raise ProofError(f"DPoP proof unreadable: {type(exc).__name__}") from None
        if header.get("typ") != "dpop+jwt":
            raise ProofError("DPoP proof typ must be dpop+jwt")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise ProofError(f"DPoP proof alg {alg!r} not allowed")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or "d" in jwk:
            raise ProofError("DPoP proof jwk must be a public key")
        try:
            key: Any = (ECKey if jwk.get("kty") == "EC" else OKPKey).import_key(jwk)
            if key.as_dict(private=False).get("crv") not in ("P-256", "Ed25519"):
                raise ProofError("DPoP proof key curve not allowed")
            claims = dict(jwt.decode(proof, key, algorithms=[str(alg)]).claims)
        except ProofError:
            raise
        except (jose_errors.JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProofError(f"DPoP proof signature invalid: {type(exc).__name__}") from None
        if claims.get("htm") != method.upper():
            raise ProofError("DPoP proof htm does not match the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalize_htu(htu) != normalize_htu(url):
            raise ProofError("DPoP proof htu does not match the request URL")
        iat = claims.get("iat")
        now = self.clock()
        if not isinstance(iat, int | float) or abs(now - iat) > self.window:
            raise ProofError("DPoP proof iat outside the acceptance window")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
            raise ProofError("DPoP proof jti missing")
        if access_token is not None:
            got = claims.get("ath")
            if not isinstance(got, str) or not hmac.compare_digest(
                got, access_token_hash(access_token)
            ):
                raise ProofError("DPoP proof ath does not match the access token")
        if self.require_nonce and not self._nonce_ok(claims.get("nonce")):
            raise ProofError("DPoP nonce required", error="use_dpop_nonce")
        jkt = str(key.thumbprint())
        if not self.replay.first_use(f"{jkt}:{jti}", now):
            raise ProofError("DPoP proof was already used (replay)")
        return jkt
