"""Asset browser against the real server: catalogue, search, filters, details, import,
cancel and error, with the work on a worker thread and the host import on the UI thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import requests
from qtpy import QtCore
from sealport.errors import Cancelled, NotFound
from sealport.ui.asset_browser import ALL, AssetBrowser

from .conftest import save_shot


class RecordingHost:
    """Stands in for a DCC adapter: records what it is asked to import, and on which thread."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.threads: list[threading.Thread] = []

    def import_verified_file(self, result: Any) -> list[str]:
        self.results.append(result)
        self.threads.append(threading.current_thread())
        return [f"/obj/{result.manifest.name}"]


def loaded_browser(qtbot: Any, client: Any, out: Path, host: RecordingHost) -> AssetBrowser:
    browser = AssetBrowser(client, lambda: out, host.import_verified_file, show_errors=True)
    qtbot.addWidget(browser)
    browser.show()
    browser.refresh()
    qtbot.waitUntil(lambda: bool(browser.assets), timeout=20000)
    return browser


def test_catalogue_search_filters_details(qtbot, signed_in, tmp_path) -> None:
    browser = loaded_browser(qtbot, signed_in, tmp_path / "out", RecordingHost())
    server_side = signed_in.assets()
    assert {a["asset_id"] for a in browser.assets} == {a["asset_id"] for a in server_side}
    assert len(browser.visible_assets()) == len(server_side)

    browser.search.setText("cube")
    names = [a["name"] for a in browser.visible_assets()]
    assert names and all("cube" in n.lower() for n in names)
    browser.search.setText("no-such-asset-xyz")
    assert browser.visible_assets() == [] and not browser.import_button.isEnabled()
    browser.search.setText("")

    formats = [browser.format_box.itemText(i) for i in range(browser.format_box.count())]
    assert formats[0] == ALL and "OBJ" in formats
    browser.format_box.setCurrentText("OBJ")
    assert browser.visible_assets() and all(a["format"] == "obj" for a in browser.visible_assets())
    browser.format_box.setCurrentText(ALL)
    browser.project_box.setCurrentText("test")
    assert all(a["project"] == "test" for a in browser.visible_assets())
    browser.project_box.setCurrentText(ALL)

    cube = next(a for a in server_side if a["name"] == "cube")
    assert browser.select_asset(cube["asset_id"])
    assert browser.detail_labels["asset_id"].text() == cube["asset_id"]
    assert browser.detail_labels["created_by"].text() == cube["created_by"]
    assert browser.import_button.isEnabled()
    save_shot(browser, "asset_browser")


def test_secure_import_hands_verified_file_to_host(qtbot, signed_in, tmp_path) -> None:
    host = RecordingHost()
    out = tmp_path / "out"
    browser = loaded_browser(qtbot, signed_in, out, host)
    cube = next(a for a in browser.assets if a["name"] == "cube")
    browser.select_asset(cube["asset_id"])
    seen: list[tuple[Any, Any]] = []
    browser.imported.connect(lambda result, nodes: seen.append((result, nodes)))
    qtbot.mouseClick(browser.import_button, QtCore.Qt.MouseButton.LeftButton)
    assert browser.progress_dialog is not None and browser.progress_dialog.isVisible()
    qtbot.waitUntil(lambda: browser.progress_dialog is None, timeout=60000)
    err = browser.last_error
    assert err is None, f"{err!r}: {getattr(err, 'detail', '')}"
    assert len(seen) == 1
    result, nodes = seen[0]
    assert nodes == ["/obj/cube"]
    assert host.results == [result] and host.threads == [threading.main_thread()]
    assert result.path.parent == out and result.path.is_file()
    assert result.manifest.asset_id == cube["asset_id"]
    assert "Imported cube" in browser.status.text()
    assert browser.last_error is None


def block_at_delivery(client: Any) -> tuple[threading.Event, threading.Event]:
    """Pause the worker right after the server sealed a delivery, until released."""
    reached, release = threading.Event(), threading.Event()

    def hook(resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if resp.request.method == "POST" and resp.url.endswith("/deliveries"):
            reached.set()
            release.wait(30)
        return resp

    client.session.hooks["response"].append(hook)
    return reached, release


def test_cancel_mid_import_leaves_nothing(qtbot, signed_in, tmp_path) -> None:
    host = RecordingHost()
    out = tmp_path / "out"
    browser = loaded_browser(qtbot, signed_in, out, host)
    browser.select_asset(next(a for a in browser.assets if a["name"] == "cube")["asset_id"])
    reached, release = block_at_delivery(signed_in)
    dialog = browser.secure_import()
    assert dialog is not None
    # The UI thread stays live while the worker is busy: wait, and click, on it.
    qtbot.waitUntil(reached.is_set, timeout=20000)
    assert dialog.isVisible() and dialog.running
    save_shot(dialog, "progress_dialog")
    with qtbot.waitSignal(dialog.finished, timeout=30000):
        qtbot.mouseClick(dialog.cancel_button, QtCore.Qt.MouseButton.LeftButton)
        assert dialog.stage_label.text() == "Cancelling…"
        release.set()
    assert isinstance(dialog.error, Cancelled)
    assert host.results == []
    assert not out.exists() or list(out.iterdir()) == []
    assert "cancelled" in browser.status.text()
    assert browser.error_dialog is None  # a cancel is not an error


def test_server_error_opens_error_dialog(qtbot, signed_in, tmp_path) -> None:
    host = RecordingHost()
    browser = loaded_browser(qtbot, signed_in, tmp_path / "out", host)
    # A catalogue entry the server does not know (e.g. deleted since the list loaded).
    gone = dict(browser.assets[0], asset_id="deleted-asset-0000", name="deleted")
    browser.set_assets([*browser.assets, gone])
    assert browser.select_asset("deleted-asset-0000")
    browser.secure_import()
    qtbot.waitUntil(lambda: browser.error_dialog is not None, timeout=30000)
    assert isinstance(browser.last_error, NotFound)
    assert browser.error_dialog.isVisible()
    assert browser.error_dialog.message_label.text() == browser.last_error.message
    assert host.results == []
    assert "failed" in browser.status.text()
