"""Shared pytest set-up: real servers and services as fixtures (no mocks).

Fixture plugins live in tests/fixtures/. ``test_fixture_plugins_present``
fails loudly if one is missing, rather than letting its tests vanish.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURE_PLUGINS = [
    "tests.fixtures.server",
    "tests.fixtures.oidc_provider",
    "tests.fixtures.secret_service",
]
pytest_plugins = [p for p in FIXTURE_PLUGINS if importlib.util.find_spec(p) is not None]
