"""The error dialog shows the artist message, hides TD details behind a toggle, masks secrets."""

from __future__ import annotations

from sealport.errors import HashMismatch
from sealport.ui.error_dialog import ErrorDialog, describe, redact

from .conftest import save_shot


def test_message_and_hidden_details(qtbot) -> None:
    err = HashMismatch(
        "The downloaded file does not match what the studio signed. Nothing was imported.",
        detail="delivery d-123: expected sha256 aa…, got bb…",
    )
    dialog = ErrorDialog(err)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.message_label.text() == err.message
    assert not dialog.details.isVisible()
    dialog.details_button.click()
    assert dialog.details.isVisible()
    text = dialog.details.toPlainText()
    assert "[hash_mismatch] HashMismatch" in text and "delivery d-123" in text
    save_shot(dialog, "error_dialog")
    dialog.copy_button.click()
    from qtpy import QtGui

    clip = QtGui.QGuiApplication.clipboard().text()
    assert err.message in clip and "delivery d-123" in clip


def test_unexpected_exception_gets_generic_message() -> None:
    message, detail = describe(ValueError("boom"))
    assert "unexpected" in message and "ValueError: boom" in detail


def test_redact_masks_credentials() -> None:
    text = (
        'Authorization: Bearer abc.def-ghi {"refresh_token": "r-secret", "access_token":"a1"} '
        "device_code=dc123&x=1 AGE-SECRET-KEY-1QQQQQQQQ eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhcnRpc3QifQ.c2ln"
    )
    out = redact(text)
    for secret in ("abc.def-ghi", "r-secret", '"a1"', "dc123", "QQQQQQQQ", "eyJzdWIi"):
        assert secret not in out, secret
    assert "x=1" in out
