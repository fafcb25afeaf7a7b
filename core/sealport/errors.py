"""The typed error hierarchy.

Every failure that crosses a module boundary is a :class:`SealportError`.
``message`` is written for the artist (what happened, what to do);
``detail`` is for the pipeline TD (ids, paths, raw server replies).
``code`` is a stable machine-readable identifier used in audit records.
"""

from __future__ import annotations


class SealportError(Exception):
    """Base of every error Sealport raises on purpose."""

    code = "error"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class Cancelled(SealportError):
    code = "cancelled"

    def __init__(self, message: str = "Cancelled by the user.", detail: str = "") -> None:
        super().__init__(message, detail)


# --- configuration -------------------------------------------------------------------
class ConfigError(SealportError):
    code = "config"


# --- secrets / keyring ---------------------------------------------------------------
class KeyringUnavailable(SealportError):
    code = "keyring_unavailable"


# --- sign-in -------------------------------------------------------------------------
class AuthError(SealportError):
    code = "auth"


class LoginRequired(AuthError):
    """No session, or the refresh token was revoked/expired: sign in again."""

    code = "login_required"


class LoginDenied(AuthError):
    code = "login_denied"


class LoginExpired(AuthError):
    """The device code expired before the user approved it."""

    code = "login_expired"


class SessionRevoked(AuthError):
    code = "session_revoked"


# --- transport -----------------------------------------------------------------------
class TransportError(SealportError):
    code = "transport"


class TLSError(TransportError):
    code = "tls"


class ServerError(TransportError):
    """The server answered with an error status."""

    code = "server"

    def __init__(self, message: str, detail: str = "", status: int = 0) -> None:
        super().__init__(message, detail)
        self.status = status


class PermissionDenied(ServerError):
    code = "forbidden"


class NotFound(ServerError):
    code = "not_found"


# --- integrity -----------------------------------------------------------------------
class IntegrityError(SealportError):
    """Anything that means the delivered bytes or metadata cannot be trusted."""

    code = "integrity"


class SizeMismatch(IntegrityError):
    code = "size_mismatch"


class HashMismatch(IntegrityError):
    code = "hash_mismatch"


class SignatureInvalid(IntegrityError):
    code = "signature_invalid"


class UntrustedKey(IntegrityError):
    """Unknown root, unknown/revoked/expired delivery key."""

    code = "untrusted_key"


class ManifestExpired(IntegrityError):
    code = "manifest_expired"


class RollbackDetected(IntegrityError):
    code = "rollback"


class WrongRecipient(IntegrityError):
    """Manifest issued to another user or another device key."""

    code = "wrong_recipient"


class MalformedManifest(IntegrityError):
    code = "malformed_manifest"


class WatermarkMismatch(IntegrityError):
    code = "watermark_mismatch"


# --- payload (age) -------------------------------------------------------------------
class PayloadError(IntegrityError):
    """The encrypted payload could not be decrypted (see :mod:`sealport.age`)."""

    code = "payload"


# --- asset formats -------------------------------------------------------------------
class UnsafeAsset(SealportError):
    """A delivered file failed a format safety check."""

    code = "unsafe_asset"


class LocalIOError(SealportError):
    """Disk full, permission denied and friends on the local machine."""

    code = "local_io"


class LogoutIncomplete(AuthError):
    """Signed out locally (secrets wiped) but the IdP could not be told to revoke."""

    code = "logout_incomplete"


# --- host adapters (issue 5) --------------------------------------------------------
class HostImportError(SealportError):
    """The file was verified, but the host application could not import it
    (missing importer plug-in, conversion failure, host API error)."""

    code = "host_import"


# --- sign-in hardening (issue 6) ---------------------------------------------------
class LoginStateMismatch(AuthError):
    """A browser redirect (``state``) or ID token (``nonce``) that this sign-in did
    not ask for: a forged or mixed-up authorization response."""

    code = "login_state_mismatch"


class DPoPError(AuthError):
    """The DPoP proof-of-possession key or proof was refused or is unusable."""

    code = "dpop"
