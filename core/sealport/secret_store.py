"""Where Sealport keeps secrets: the OS keyring, or (demo profile only) a labelled file.

Why an allow-list: ``keyring`` silently picks ``keyrings.alt``'s *plaintext*
file backend when no Secret Service is running, so "it worked" can mean "the
refresh token is now a readable file". We accept only the OS keyrings below
and fail closed (``KeyringUnavailable``) with instructions otherwise.

Why chunks: Windows Credential Manager caps one secret at 2,560 bytes of
UTF-16 (about 1,280 characters), smaller than some JWT refresh tokens.

Why a timeout: a hung D-Bus / gnome-keyring must never freeze a DCC's UI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from filelock import FileLock

from .errors import KeyringUnavailable
from .paths import atomic_write_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")

ALLOWED_BACKENDS = frozenset(
    {
        "keyring.backends.macOS.Keyring",
        "keyring.backends.Windows.WinVaultKeyring",
        "keyring.backends.SecretService.Keyring",
        "keyring.backends.libsecret.Keyring",
        "keyring.backends.kwallet.DBusKeyring",
    }
)
CHAINER_BACKEND = "keyring.backends.chainer.ChainerBackend"

KEYRING_TIMEOUT = 5.0
"""Seconds one keyring call may take before we give up on it (gh uses 3 s)."""

MAX_ITEM_UTF16_BYTES = 2000
"""Largest single keyring item, measured as UTF-16 bytes (Windows stores UTF-16;
its hard limit is 2,560 bytes). Larger values are split into chunks."""

KEYRING_RETRY_PAUSES = (0.25, 1.0)
"""Pauses before the second and third try of a keyring call that failed in a way
that can pass (the Secret Service briefly without its default collection while
gnome-keyring reloads its file, a D-Bus hiccup). A locked keyring, a missing
backend or a timeout is never retried: those need the artist, not patience."""

CHUNK_HEADER = "sealport-chunks:v1:"
DEMO_WARNING = "DEMO ONLY - NOT A SECURE STORE"
DEMO_MARKER = ".sealport-demo-profile"


class SecretStore(Protocol):
    """A small named-secret store. Values are text (JSON when structured)."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


# --- keyring backend checks ----------------------------------------------------------------
def backend_name(backend: object) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _expected_backend() -> str:
    if sys.platform == "darwin":
        return "the macOS Keychain (keyring.backends.macOS.Keyring)"
    if sys.platform == "win32":
        return "Windows Credential Manager (keyring.backends.Windows.WinVaultKeyring)"
    return (
        "a Secret Service keyring such as GNOME Keyring or KWallet "
        "(keyring.backends.SecretService.Keyring)"
    )


def _how_to_fix() -> str:
    if sys.platform == "darwin":
        return (
            "On macOS the Keychain should work out of the box: make sure the 'keyring' "
            "package was installed with pip (not copied without its .dist-info folder) "
            "and that no PYTHON_KEYRING_BACKEND variable or keyringrc.cfg overrides it."
        )
    if sys.platform == "win32":
        return (
            "On Windows the Credential Manager should work out of the box: make sure the "
            "'keyring' and 'pywin32-ctypes' packages were installed with pip (not copied "
            "without their .dist-info folders) and that no PYTHON_KEYRING_BACKEND variable "
            "or keyringrc.cfg overrides it."
        )
    return (
        "On Linux, install and unlock GNOME Keyring (Debian/Ubuntu: apt install "
        "gnome-keyring) or KWallet, and run Sealport inside a desktop session so a D-Bus "
        "session bus is available (DBUS_SESSION_BUS_ADDRESS set); on a headless machine "
        "start one with dbus-run-session and gnome-keyring-daemon --unlock."
    )


def _refuse(found: str, why: str = "") -> KeyringUnavailable:
    reason = f" ({why})" if why else ""
    return KeyringUnavailable(
        f"Sealport will not store your sign-in because no secure system keyring is "
        f"available: it found '{found}'{reason}, but needs {_expected_backend()}. "
        f"{_how_to_fix()}",
        detail=f"active keyring backend: {found}; allowed: {', '.join(sorted(ALLOWED_BACKENDS))}",
    )


def resolve_backend(backend: object) -> Any:
    """The allow-listed OS keyring to pin, or ``KeyringUnavailable``.

    A chainer (keyring's default when several backends are viable, e.g. Secret
    Service plus a keyrings.alt file backend) resolves to the first allow-listed
    backend in its chain; the others are never called because we pin that one.
    """
    name = backend_name(backend)
    if name in ALLOWED_BACKENDS:
        return backend
    if name == CHAINER_BACKEND:
        parts = list(getattr(backend, "backends", []) or [])
        for part in parts:
            if backend_name(part) in ALLOWED_BACKENDS:
                return part
        chained = ", ".join(backend_name(b) for b in parts) or "nothing"
        raise _refuse(f"{name} [{chained}]", "it chains no operating-system keyring")
    why = ""
    if name.startswith("keyrings.alt."):
        why = "a keyrings.alt file backend, which is not the operating system keyring"
    elif name == "keyring.backends.fail.Keyring":
        why = "no keyring backend could be loaded"
    elif name == "keyring.backends.null.Keyring":
        why = "keyring is disabled"
    raise _refuse(name, why)


def _call_with_timeout(fn: Callable[[], T], what: str, timeout: float) -> T:
    """Run ``fn`` in a daemon thread; give up (and leave the thread) after ``timeout``.

    A hung D-Bus call cannot be interrupted from Python, so the worker thread is
    abandoned; it is a daemon so it never blocks the DCC from exiting.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"sealport-keyring-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise KeyringUnavailable(
            f"The system keyring did not answer within {timeout:g} seconds. It may be "
            "waiting for an unlock prompt or its service may be stuck; unlock your keyring "
            "(or log out and back in) and try again.",
            detail=f"keyring {what} timed out after {timeout}s",
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def _describe_chain(exc: BaseException) -> str:
    """``Type: text <- CauseType: text ...``: keyring wraps secretstorage's error, and the
    wrapped one is what tells a TD (or a CI log) why the collection could not be opened."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def _may_pass(exc: BaseException) -> bool:
    """Whether retrying a failed keyring call can help (see ``KEYRING_RETRY_PAUSES``)."""
    from keyring import errors as kerr

    return not isinstance(exc, kerr.KeyringLocked | kerr.NoKeyringError | KeyringUnavailable)


def _map_keyring_error(exc: BaseException, what: str) -> KeyringUnavailable:
    """Translate keyring's exceptions into artist-facing text (never includes values)."""
    from keyring import errors as kerr

    detail = f"keyring {what}: {_describe_chain(exc)}"
    if isinstance(exc, kerr.KeyringLocked):
        return KeyringUnavailable(
            "Your system keyring is locked, so Sealport cannot read or save your sign-in. "
            "Unlock it (log in to your desktop session, or unlock the 'Login' keyring in "
            "Passwords and Keys / KWallet) and try again.",
            detail=detail,
        )
    if isinstance(exc, kerr.InitError):
        return KeyringUnavailable(
            "Your system keyring could not be opened (no default keyring exists, or the "
            "unlock prompt could not be shown). Open Passwords and Keys / KWallet once to "
            "create and unlock it, then try again.",
            detail=detail,
        )
    if isinstance(exc, kerr.NoKeyringError):
        return _refuse("keyring.backends.fail.Keyring", "no keyring backend could be loaded")
    return KeyringUnavailable(
        "The system keyring reported an error while Sealport was using it. Try again; if it "
        "keeps happening, restart your desktop session or tell your TD.",
        detail=detail,
    )


class KeyringStore:
    """Secrets in the OS keyring, pinned to an allow-listed backend."""

    def __init__(
        self, service: str, account_prefix: str, *, timeout: float = KEYRING_TIMEOUT
    ) -> None:
        import keyring

        self.service = service
        self.account_prefix = account_prefix
        self.timeout = timeout
        try:
            backend = _call_with_timeout(keyring.get_keyring, "detect", timeout)
        except KeyringUnavailable:
            raise
        except Exception as exc:
            raise _map_keyring_error(exc, "detect") from None
        # Pin it: later keyring.set_keyring() calls by other add-ons cannot redirect us,
        # and a chainer can never fall through to a plaintext backend.
        self._backend: Any = resolve_backend(backend)

    @property
    def backend_name(self) -> str:
        return backend_name(self._backend)

    # -- raw keyring access (timeout + error mapping) --
    def _run(self, what: str, fn: Callable[[], T]) -> T:
        """One keyring call: bounded in time, retried while the failure may pass, and
        mapped to ``KeyringUnavailable``. Every call here is idempotent (get, replace,
        delete-if-present), so a retry after a half-done call cannot corrupt anything."""
        for pause in (*KEYRING_RETRY_PAUSES, None):
            try:
                return _call_with_timeout(fn, what, self.timeout)
            except KeyringUnavailable:
                raise
            except Exception as exc:
                if pause is None or not _may_pass(exc):
                    raise _map_keyring_error(exc, what) from None
                log.warning(
                    "keyring %s failed (%s); trying again in %g s",
                    what,
                    _describe_chain(exc),
                    pause,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # the last pause is None: the loop returns or raises

    def _get_raw(self, account: str) -> str | None:
        value = self._run("get", lambda: self._backend.get_password(self.service, account))
        return None if value is None else str(value)

    def _set_raw(self, account: str, value: str) -> None:
        self._run("set", lambda: self._backend.set_password(self.service, account, value))

    def _delete_raw(self, account: str) -> None:
        from keyring.errors import PasswordDeleteError

        def delete() -> None:
            try:
                self._backend.delete_password(self.service, account)
            except PasswordDeleteError:
                pass  # not there: deleting is idempotent

        self._run("delete", delete)

    # -- chunking --
    def _account(self, name: str) -> str:
        return f"{self.account_prefix}{name}"

    @staticmethod
    def _chunk_account(account: str, generation: str, index: int) -> str:
        return f"{account}#{generation}.{index}"

    @staticmethod
    def _parse_header(raw: str) -> tuple[int, str] | None:
        if not raw.startswith(CHUNK_HEADER):
            return None
        try:
            count_s, digest = raw[len(CHUNK_HEADER) :].split(":", 1)
            count = int(count_s)
        except ValueError:
            return None
        if count < 1 or len(digest) != 64:
            return None
        return count, digest

    @staticmethod
    def _split(value: str) -> list[str]:
        chunks: list[str] = []
        current: list[str] = []
        size = 0
        for ch in value:
            n = len(ch.encode("utf-16-le"))
            if size + n > MAX_ITEM_UTF16_BYTES:
                chunks.append("".join(current))
                current, size = [], 0
            current.append(ch)
            size += n
        chunks.append("".join(current))
        return chunks

    def _read_chunks(self, account: str, count: int, digest: str) -> str | None:
        parts: list[str] = []
        for i in range(count):
            part = self._get_raw(self._chunk_account(account, digest[:16], i))
            if part is None:
                return None
            parts.append(part)
        value = "".join(parts)
        if hashlib.sha256(value.encode("utf-8")).hexdigest() != digest:
            return None
        return value

    def get(self, name: str) -> str | None:
        account = self._account(name)
        for _attempt in (1, 2):  # a concurrent writer may swap generations under us
            raw = self._get_raw(account)
            if raw is None:
                return None
            header = self._parse_header(raw)
            if header is None:
                return raw
            value = self._read_chunks(account, *header)
            if value is not None:
                return value
        log.warning("keyring item %r is damaged (missing or mismatched chunks)", name)
        return None

    def set(self, name: str, value: str) -> None:
        account = self._account(name)
        old = self._get_raw(account)
        old_header = self._parse_header(old) if old is not None else None
        needs_chunks = (
            len(value.encode("utf-16-le")) > MAX_ITEM_UTF16_BYTES
            or self._parse_header(value) is not None
        )
        new_generation = ""
        if needs_chunks:
            digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
            new_generation = digest[:16]
            chunks = self._split(value)
            for i, chunk in enumerate(chunks):
                self._set_raw(self._chunk_account(account, new_generation, i), chunk)
            # The header is written last: readers see the old value or the whole new one.
            self._set_raw(account, f"{CHUNK_HEADER}{len(chunks)}:{digest}")
        else:
            self._set_raw(account, value)
        if old_header is not None and old_header[1][:16] != new_generation:
            self._delete_chunks(account, *old_header)

    def _delete_chunks(self, account: str, count: int, digest: str) -> None:
        for i in range(count):
            self._delete_raw(self._chunk_account(account, digest[:16], i))

    def delete(self, name: str) -> None:
        account = self._account(name)
        raw = self._get_raw(account)
        if raw is None:
            return
        header = self._parse_header(raw)
        self._delete_raw(account)
        if header is not None:
            self._delete_chunks(account, *header)


class DemoFileStore:
    """DEMO ONLY - NOT A SECURE STORE.

    A JSON file of secrets for the isolated demo profile (made by ``sealport demo``),
    so the demo runs on machines without an OS keyring. Anyone who can read the
    file can read the secrets. It refuses to exist outside a folder carrying the
    ``.sealport-demo-profile`` marker, and only when the caller says it understands.
    """

    def __init__(self, path: Path, *, i_understand_this_is_demo_only: bool = False) -> None:
        if i_understand_this_is_demo_only is not True:
            raise KeyringUnavailable(
                "The demo secret file is not a secure store and can only be used by the demo.",
                detail="DemoFileStore needs i_understand_this_is_demo_only=True",
            )
        folder = Path(path).parent
        if not (folder / DEMO_MARKER).is_file():
            raise KeyringUnavailable(
                "The demo secret file can only be used inside a demo profile.",
                detail=f"{folder} has no {DEMO_MARKER} marker file; refusing {path}",
            )
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")

    def _read(self) -> dict[str, str]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise KeyringUnavailable(
                "The demo profile's secret file is damaged; delete the demo profile and run "
                "the demo again.",
                detail=f"{self.path}: {type(exc).__name__}",
            ) from None
        secrets = doc.get("secrets") if isinstance(doc, dict) else None
        return {str(k): str(v) for k, v in (secrets or {}).items()}

    def _write(self, secrets: dict[str, str]) -> None:
        doc = {"warning": DEMO_WARNING, "secrets": secrets}
        atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode("utf-8"), mode=0o600)

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        with self._lock:
            secrets = self._read()
            secrets[name] = value
            self._write(secrets)

    def delete(self, name: str) -> None:
        with self._lock:
            secrets = self._read()
            if secrets.pop(name, None) is not None:
                self._write(secrets)


def profile_account_prefix(home: Path) -> str:
    """Keyring account prefix unique to one profile folder (profiles never share secrets)."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"profile-{digest}/"


def open_secret_store(home: Path, *, demo: bool = False) -> SecretStore:
    """The secret store for a profile: the OS keyring, or the labelled demo file.

    Fails closed: without an allow-listed keyring this raises ``KeyringUnavailable``.
    """
    if demo:
        return DemoFileStore(home / "demo-secrets.json", i_understand_this_is_demo_only=True)
    return KeyringStore("sealport", profile_account_prefix(home))
