"""``sealport ui``: the shared panels as a standalone application.

Useful outside any DCC (check the catalogue, pre-fetch assets into a folder)
and as the quickest way for a TD to see that a workstation's config,
certificates and sign-in work. Verified files are left in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import SealportError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sealport ui", description="Sealport panels, standalone.")
    p.add_argument("--config", help="studio config (default: SEALPORT_CONFIG or the profile's)")
    p.add_argument(
        "--out",
        default=str(Path.cwd() / "sealport_imports"),
        help="folder for verified files (default: ./sealport_imports)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..client import SealportClient
    from ..config import load_config
    from .asset_browser import AssetBrowser
    from .error_dialog import ErrorDialog
    from .qt import ensure_app
    from .signin_dialog import SignInDialog

    app = ensure_app()
    app.setApplicationName("Sealport")
    out = Path(args.out).expanduser().resolve()
    try:
        client: Any = SealportClient(load_config(Path(args.config) if args.config else None))
        if not client.is_signed_in() and SignInDialog(client).run() is None:
            return 1
    except SealportError as error:
        ErrorDialog(error).exec()
        return 2
    browser = AssetBrowser(client, lambda: out)
    browser.show()
    browser.refresh()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
