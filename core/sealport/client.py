"""One workstation's Sealport context: config + transport + sign-in + logs.

Adapters and the CLI build one :class:`SealportClient` and call its methods;
it wires the pieces (hardened session, token session, device key, audit log,
rollback state) so that no adapter has to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from .api import ApiClient
from .audit import AuditLog
from .config import Config
from .device_key import DeviceKey, ensure_registered, forget
from .errors import LoginRequired, SealportError
from .progress import Progress
from .rollback import RollbackState
from .transport import build_session

TERMINAL_EVENTS = {
    "login",
    "logout",
    "import.verified",
    "import.failed",
    "import.cancelled",
}


class SealportClient:
    def __init__(self, config: Config, *, demo: bool = False, store: Any = None) -> None:
        from .secret_store import open_secret_store

        self.config = config
        self.home = config.home
        self.demo = demo
        self.session = build_session(
            ca_file=config.ca_file,
            pin_sha256=config.pin_sha256,
            client_cert=config.client_cert,
            client_key=config.client_key,
        )
        self.idp_session = self._idp_session()
        self.audit = AuditLog(config.audit_log)
        try:
            self.store = store if store is not None else open_secret_store(self.home, demo=demo)
        except SealportError as exc:  # e.g. no real keyring: fail closed, on the record
            self.audit.append("secrets.unavailable", code=exc.code, error=exc.message)
            raise
        self.rollback = RollbackState(self.home / "rollback.json")
        self._tokens: Any = None
        self._api: ApiClient | None = None
        self._user: str | None = None
        self._device: DeviceKey | None = None
        self._pending: list[dict[str, Any]] = []

    def _idp_session(self) -> requests.Session:
        cfg = self.config
        same_origin = urlsplit(cfg.issuer)[:2] == urlsplit(cfg.server_url)[:2]
        if cfg.idp_ca_file is None and same_origin:
            return self.session
        return build_session(ca_file=cfg.idp_ca_file)

    # --- sign-in -------------------------------------------------------------------------
    @property
    def tokens(self) -> Any:
        if self._tokens is None:
            from .oidc import discover
            from .tokens import TokenSession

            meta = discover(self.idp_session, self.config.issuer)
            self._tokens = TokenSession(
                self.idp_session,
                meta,
                self.config.client_id,
                self.store,
                self.home / "refresh.lock",
                scopes=self.config.scopes,
                flow=self.config.flow,
                dpop=self.config.dpop,
            )
        return self._tokens

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            self._api = ApiClient(
                self.session, self.config.server_url, self.tokens, timeout=self.config.timeout
            )
        return self._api

    def login(
        self,
        on_code: Callable[[Any], None],
        progress: Progress | None = None,
        *,
        on_browser: Callable[[Any], None] | None = None,
        flow: str | None = None,
    ) -> Any:
        """Sign in: browser + PKCE (``on_browser`` shows "browser opened, waiting") or
        device flow (``on_code`` shows the code); ``flow`` overrides ``idp.flow``."""
        try:
            identity = self.tokens.login(
                on_code, progress=progress, on_browser=on_browser, flow=flow
            )
        except SealportError as exc:
            self.audit.append("login.failed", code=exc.code, error=exc.message)
            raise
        self._user = None
        device = self.device_key()
        self.audit_event("login", user=self.user(), device_id=device.device_id)
        return identity

    def is_signed_in(self) -> bool:
        return bool(self.tokens.is_signed_in())

    def user(self) -> str:
        if self._user is None:
            if not self.is_signed_in():
                raise LoginRequired("You are not signed in to Sealport. Sign in first.")
            self._user = str(self.api.get("/api/v1/me")["sub"])
        return self._user

    def whoami(self) -> dict[str, Any]:
        me = self.api.get("/api/v1/me")
        return dict(me) if isinstance(me, dict) else {}

    def device_key(self) -> DeviceKey:
        if self._device is None:
            self._device = ensure_registered(
                self.api, self.store, self.home, server_url=self.config.server_url, user=self.user()
            )
        return self._device

    def logout(self) -> None:
        user = self._user
        with contextlib.suppress(SealportError):
            user = user or self.user()
        self.audit_event("logout", user=user)
        try:
            self.tokens.logout()
        finally:
            forget(self.store, self.home)
            self._user = None
            self._device = None

    # --- catalogue and import ------------------------------------------------------------
    def assets(self) -> list[dict[str, Any]]:
        reply = self.api.get("/api/v1/assets")
        return list(reply.get("assets", [])) if isinstance(reply, dict) else []

    def secure_import(self, asset_id: str, out_dir: Path, progress: Progress | None = None) -> Any:
        from .importer import secure_import

        return secure_import(self, asset_id, out_dir, progress=progress)

    # --- audit ---------------------------------------------------------------------------
    def audit_event(self, event: str, **data: Any) -> None:
        record = self.audit.append(event, **data)
        if self.config.report_audit:
            self._pending.append(record)
            if event in TERMINAL_EVENTS:
                self.flush_audit()

    def flush_audit(self) -> None:
        """Send pending records to the server's ledger; keep them if that fails."""
        if not self._pending or self._api is None:
            return
        with contextlib.suppress(SealportError, KeyError):
            self.api.post("/api/v1/audit", {"events": self._pending})
            self._pending = []


def local_path(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()
