"""What a host menu or shelf button calls: sign in/out, Secure Import, show errors.

One :class:`Panels` per host session. It builds the :class:`SealportClient`
lazily (so a missing studio config is an error dialog, not a failed plug-in
load), keeps the panels parented to the host's main window, and hands
verified files to the host adapter's importer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SealportError
from .asset_browser import AssetBrowser
from .error_dialog import ErrorDialog
from .qt import QtWidgets, ensure_app
from .signin_dialog import SignInDialog

ClientFactory = Callable[[], Any]


def default_client() -> Any:
    """The workstation's client from the studio config (SEALPORT_CONFIG or the default)."""
    from ..client import SealportClient
    from ..config import load_config

    return SealportClient(load_config())


class Panels:
    def __init__(
        self,
        *,
        on_imported: Callable[[Any], list[str]] | None,
        out_dir: Callable[[], Path],
        parent: Callable[[], QtWidgets.QWidget | None] = lambda: None,
        client_factory: ClientFactory = default_client,
    ) -> None:
        self.on_imported = on_imported
        self.out_dir = out_dir
        self.parent = parent
        self.client_factory = client_factory
        self._client: Any = None
        self.browser: AssetBrowser | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def show_error(self, error: BaseException) -> None:
        ensure_app()
        ErrorDialog(error, self.parent()).exec()

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except SealportError as error:
            self.show_error(error)
            return None

    # --- menu actions ----------------------------------------------------------------------
    def sign_in(self) -> Any:
        """Run the sign-in dialog; the identity, or None if cancelled or failed."""
        ensure_app()
        return self._guard(lambda: SignInDialog(self.client, self.parent()).run())

    def sign_out(self) -> None:
        self._guard(self.client.logout)

    def toggle_sign_in(self) -> None:
        """One menu item: signs out when signed in, otherwise opens the sign-in dialog."""

        def toggle() -> None:
            if self.client.is_signed_in():
                self.client.logout()
            else:
                SignInDialog(self.client, self.parent()).run()

        ensure_app()
        self._guard(toggle)

    def secure_import(self) -> AssetBrowser | None:
        """Open the asset browser (signing in first when needed)."""
        ensure_app()

        def open_browser() -> AssetBrowser | None:
            if not self.client.is_signed_in():
                if SignInDialog(self.client, self.parent()).run() is None:
                    return None
            if self.browser is None:
                self.browser = AssetBrowser(
                    self.client, self.out_dir, self.on_imported, self.parent()
                )
            self.browser.show()
            self.browser.raise_()
            self.browser.refresh()
            return self.browser

        result: AssetBrowser | None = self._guard(open_browser)
        return result
