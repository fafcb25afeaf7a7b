"""Error dialog: the core's artist-facing message, and a details section for the TD.

The artist reads ``message`` (what happened, what to do). ``detail`` (ids,
paths, server replies) sits behind "Show details" with a copy button so it
can be pasted into a ticket. Anything that looks like a credential is masked
before it is shown or copied, in case a detail string ever carries one.
"""

from __future__ import annotations

import re

from ..errors import SealportError
from .qt import QtCore, QtGui, QtWidgets

_SECRET_PATTERNS = [
    (re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+", re.IGNORECASE), "AGE-SECRET-KEY-1[hidden]"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[hidden]"),
    (
        re.compile(
            r"""(["']?(?:access_token|refresh_token|id_token|device_code|client_secret|password)"""
            r"""["']?\s*[:=]\s*["']?)[^"'&\s,}]+"""
        ),
        r"\1[hidden]",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "[hidden JWT]"),
]


def redact(text: str) -> str:
    """Mask tokens, passwords and age identities in ``text``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def describe(error: BaseException) -> tuple[str, str]:
    """(artist message, TD details) for any exception."""
    if isinstance(error, SealportError):
        detail = f"[{error.code}] {type(error).__name__}"
        if error.detail:
            detail += "\n" + error.detail
        return error.message, redact(detail)
    return (
        "Something unexpected went wrong in Sealport. Send the details to your pipeline TD.",
        redact(f"{type(error).__name__}: {error}"),
    )


class ErrorDialog(QtWidgets.QDialog):
    def __init__(
        self, error: BaseException, parent: QtWidgets.QWidget | None = None, title: str = ""
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sealportErrorDialog")
        message, detail = describe(error)
        self.setWindowTitle(title or "Sealport")
        self.setMinimumWidth(460)

        icon = QtWidgets.QLabel()
        style = self.style()
        icon.setPixmap(
            style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxCritical).pixmap(40, 40)
        )
        self.message_label = QtWidgets.QLabel(message)
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
        )
        top = QtWidgets.QHBoxLayout()
        top.addWidget(icon, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.message_label, 1)

        self.details = QtWidgets.QPlainTextEdit(detail)
        self.details.setReadOnly(True)
        self.details.setVisible(False)
        self.details.setMinimumHeight(120)

        self.details_button = QtWidgets.QPushButton("Show details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._toggle_details)
        self.details_button.setEnabled(bool(detail))
        self.copy_button = QtWidgets.QPushButton("Copy details")
        self.copy_button.clicked.connect(self.copy_details)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.setDefault(True)
        self.close_button.clicked.connect(self.accept)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.details_button)
        buttons.addWidget(self.copy_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.details)
        layout.addLayout(buttons)

    def _toggle_details(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.details_button.setText("Hide details" if shown else "Show details")
        self.adjustSize()

    def copy_details(self) -> None:
        text = f"{self.message_label.text()}\n\n{self.details.toPlainText()}"
        QtGui.QGuiApplication.clipboard().setText(text)


def show_error(error: BaseException, parent: QtWidgets.QWidget | None = None) -> None:
    """Show ``error`` modally (the host's event loop keeps running)."""
    ErrorDialog(error, parent).exec()
