"""The reference server (`sealport serve`): dev IdP, resource API, ledger, sealing.

Needs the ``server`` extra (fastapi, uvicorn, joserfc, python-multipart).
Entry points for the CLI and tests:

- :func:`serve_forever` — ``sealport serve --data DIR --host H --port P``
- :func:`start_background` — the same server on a thread (tests, ``sealport demo``)
- :func:`add_asset`, :func:`add_user`, :func:`seed_demo` — admin commands
- :func:`create_app` — the FastAPI app for a prepared data folder
"""

from __future__ import annotations

from .app import BackgroundServer, create_app, prepare, serve_forever, start_background
from .settings import ServerSettings
from .store import add_asset, add_user, seed_demo

__all__ = [
    "BackgroundServer",
    "ServerSettings",
    "add_asset",
    "add_user",
    "create_app",
    "prepare",
    "seed_demo",
    "serve_forever",
    "start_background",
]
