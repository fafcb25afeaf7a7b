"""Qt panel tests: offscreen Qt, the real reference server, a real client.

QT_QPA_PLATFORM must be set before Qt is imported, so it is set here, at the
top of the conftest that pytest loads before any test module of this folder.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import functools  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from sealport.client import SealportClient  # noqa: E402
from sealport.config import load_config  # noqa: E402
from sealport.demo import DEMO_MARKER  # noqa: E402

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
UPDATE_ENV = "SEALPORT_UPDATE_SCREENSHOTS"


def shot_dir() -> Path:
    """docs/img when ``SEALPORT_UPDATE_SCREENSHOTS=1``, else a temporary folder.

    Why: a plain test run must not rewrite tracked files (font hinting differs
    between machines, so every run left docs/img modified in the checkout).
    """
    return IMG if os.environ.get(UPDATE_ENV) == "1" else _scratch_dir()


@functools.cache
def _scratch_dir() -> Path:
    """One private folder per test run (mkdtemp: 0700, unique)."""
    return Path(tempfile.mkdtemp(prefix="sealport-ui-shots-"))


def save_shot(widget: Any, name: str) -> Path:
    """Save a screenshot of ``widget`` (checked to be a real image); see :func:`shot_dir`."""
    folder = shot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    pixmap = widget.grab()
    assert not pixmap.isNull() and pixmap.width() > 100 and pixmap.height() > 50
    assert pixmap.save(str(path), "PNG")
    return path


def make_client(server: Any, home: Path) -> SealportClient:
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("test profile\n")
    (home / "sealport.toml").write_text(Path(server.client_config_path).read_text())
    return SealportClient(load_config(home / "sealport.toml"), demo=True)


@pytest.fixture
def client(sealport_server: Any, tmp_path: Path) -> SealportClient:
    return make_client(sealport_server, tmp_path / "ws")


@pytest.fixture
def signed_in(sealport_server: Any, client: SealportClient) -> Iterator[SealportClient]:
    """A client signed in through the real device flow (approved on the real page)."""
    errors: list[BaseException] = []

    def on_code(auth: Any) -> None:
        def approve() -> None:
            try:
                sealport_server.approve(auth.user_code)
            except BaseException as exc:
                errors.append(exc)

        threading.Thread(target=approve, daemon=True).start()

    client.login(on_code)
    assert not errors, errors
    yield client
