"""Sign-in dialog over the real device flow: code, QR, countdown, approval, cancel, denial."""

from __future__ import annotations

import threading
from typing import Any

from qtpy import QtCore, QtGui, QtWidgets
from sealport.errors import Cancelled, LoginDenied
from sealport.ui.signin_dialog import SignInDialog, format_remaining

from .conftest import save_shot


def open_dialog(qtbot: Any, client: Any) -> tuple[SignInDialog, list[QtCore.QUrl]]:
    opened: list[QtCore.QUrl] = []
    dialog = SignInDialog(client, open_url=opened.append)
    qtbot.addWidget(dialog)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.user_code != "", timeout=20000)
    return dialog, opened


def test_shows_code_qr_countdown_and_closes_on_approval(qtbot, sealport_server, client) -> None:
    dialog, opened = open_dialog(qtbot, client)
    code = dialog.user_code
    assert dialog.isVisible() and dialog.running
    assert dialog.code_label.font().pointSize() >= 20  # large enough to read across a room
    assert not dialog.qr_label.pixmap().isNull()
    assert dialog.countdown_label.text().startswith("Code expires in ")
    assert sealport_server.url in dialog.url_label.text()

    dialog.copy_button.click()
    assert QtGui.QGuiApplication.clipboard().text() == code
    dialog.open_button.click()
    assert len(opened) == 1 and opened[0].toString().startswith(sealport_server.url)
    save_shot(dialog, "signin_dialog")

    # The artist approves on the page, reading the code off the dialog.
    approve = threading.Thread(target=sealport_server.approve, args=(code,), daemon=True)
    approve.start()
    with qtbot.waitSignal(dialog.finished, timeout=30000) as blocker:
        pass
    approve.join(10)
    assert blocker.args == [int(QtWidgets.QDialog.DialogCode.Accepted)]
    assert dialog.identity is not None and dialog.error is None
    assert not dialog.isVisible()
    assert client.is_signed_in()


def test_cancel_stops_polling_and_signs_nothing_in(qtbot, client) -> None:
    dialog, _ = open_dialog(qtbot, client)
    with qtbot.waitSignal(dialog.finished, timeout=30000) as blocker:
        dialog.cancel_button.click()
        assert dialog.countdown_label.text() == "Cancelling…"
    assert blocker.args == [int(QtWidgets.QDialog.DialogCode.Rejected)]
    assert isinstance(dialog.error, Cancelled)
    assert not client.is_signed_in()


def test_denial_ends_with_typed_error(qtbot, sealport_server, client) -> None:
    dialog, _ = open_dialog(qtbot, client)
    threading.Thread(target=sealport_server.deny, args=(dialog.user_code,), daemon=True).start()
    qtbot.waitSignal(dialog.finished, timeout=30000).wait()
    assert isinstance(dialog.error, LoginDenied)
    assert not client.is_signed_in()


def test_countdown_format() -> None:
    assert format_remaining(601.7) == "10:01"
    assert format_remaining(-3) == "0:00"
