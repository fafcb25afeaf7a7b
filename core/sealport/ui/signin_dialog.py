"""Sign-in dialog for the OAuth device flow (RFC 8628).

Shows the user code large (the artist types it on the IdP's page, possibly on
a phone), buttons to open the browser and copy the code, a QR code of the
verification link, and a countdown to the code's expiry. The poll loop runs
in the core on a worker thread; the dialog closes itself when the IdP
approves. Cancel stops the poll cooperatively. The device code (the secret
half of the pair) never reaches this dialog: only the core's ``on_code``
object's public fields are read.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import segno

from ..errors import Cancelled, SealportError
from ..progress import Progress
from .qt import QtCore, QtGui, QtWidgets, Signal
from .task_dialog import TaskDialog
from .worker import Task


class _CodeBridge(QtCore.QObject):
    """Carries the device authorization from the login thread to the UI thread."""

    code = Signal(object)


def qr_pixmap(text: str, scale: int = 4) -> QtGui.QPixmap:
    """A QR code of ``text`` as a pixmap (segno draws it, Qt only displays it)."""
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=scale, border=2)
    pixmap = QtGui.QPixmap()
    pixmap.loadFromData(buf.getvalue(), "PNG")
    return pixmap


def format_remaining(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class SignInDialog(TaskDialog):
    """``exec()`` returns Accepted once signed in; ``identity`` / ``error`` say how it ended."""

    def __init__(
        self,
        client: Any,
        parent: QtWidgets.QWidget | None = None,
        *,
        open_url: Callable[[QtCore.QUrl], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sealportSignInDialog")
        self.setWindowTitle("Sign in to Sealport")
        self.setMinimumWidth(440)
        self.client = client
        self.identity: Any = None
        self.auth: Any = None
        self._open_url = open_url or QtGui.QDesktopServices.openUrl
        self._clock = clock

        self.intro = QtWidgets.QLabel("Contacting your studio's sign-in service…")
        self.intro.setWordWrap(True)
        self.code_label = QtWidgets.QLabel("")
        self.code_label.setObjectName("sealportUserCode")
        font = QtGui.QFont("monospace")
        font.setStyleHint(QtGui.QFont.StyleHint.Monospace)
        font.setPointSize(26)
        font.setBold(True)
        self.code_label.setFont(font)
        self.code_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.code_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        self.open_button = QtWidgets.QPushButton("Open sign-in page")
        self.open_button.clicked.connect(self.open_browser)
        self.copy_button = QtWidgets.QPushButton("Copy code")
        self.copy_button.clicked.connect(self.copy_code)
        for b in (self.open_button, self.copy_button):
            b.setEnabled(False)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.copy_button)

        self.qr_label = QtWidgets.QLabel()
        self.qr_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.url_label = QtWidgets.QLabel("")
        self.url_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.url_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.countdown_label = QtWidgets.QLabel("")
        self.countdown_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)

        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.reject)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.cancel_button)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.code_label)
        layout.addLayout(buttons)
        layout.addWidget(self.qr_label, 0, QtCore.Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.url_label)
        layout.addWidget(self.countdown_label)
        layout.addLayout(bottom)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._tick)
        self._bridge = _CodeBridge(self)
        self._bridge.code.connect(self.show_code)

        self.task = Task(self._login)
        self.task.signals.succeeded.connect(self._on_succeeded)
        self.task.signals.failed.connect(self._on_failed)

    # --- work on the login thread -------------------------------------------------------
    def _login(self, progress: Progress) -> Any:
        return self.client.login(self._bridge.code.emit, progress)

    # --- UI thread ------------------------------------------------------------------------
    def run(self) -> Any:
        """Sign in modally; return the identity, None if cancelled; raise on failure."""
        self.run_modal()
        if self.error is not None and not isinstance(self.error, Cancelled):
            raise self.error
        return self.identity

    @property
    def user_code(self) -> str:
        return self.code_label.text()

    def show_code(self, auth: Any) -> None:
        self.auth = auth
        uri = str(auth.verification_uri)
        link = str(getattr(auth, "verification_uri_complete", None) or uri)
        self.intro.setText(
            "Open the sign-in page (or scan the QR code with your phone), sign in with "
            "your studio account and enter this code:"
        )
        self.code_label.setText(str(auth.user_code))
        pixmap = qr_pixmap(link)
        self.qr_label.setPixmap(pixmap)
        self.qr_label.setFixedSize(pixmap.size())
        self.url_label.setText(uri)
        for b in (self.open_button, self.copy_button):
            b.setEnabled(True)
        self._tick()
        self._timer.start()
        self.adjustSize()

    def _tick(self) -> None:
        if self.auth is None:
            return
        remaining = float(self.auth.expires_at) - self._clock()
        if remaining <= 0:
            self.countdown_label.setText("The code has expired.")
            self._timer.stop()
        else:
            self.countdown_label.setText(f"Code expires in {format_remaining(remaining)}")

    def open_browser(self) -> None:
        if self.auth is not None:
            link = (
                getattr(self.auth, "verification_uri_complete", None) or self.auth.verification_uri
            )
            self._open_url(QtCore.QUrl(str(link)))

    def copy_code(self) -> None:
        QtGui.QGuiApplication.clipboard().setText(self.user_code)

    def reject(self) -> None:
        if self.running:
            self.task.cancel()
            self.cancel_button.setEnabled(False)
            self.countdown_label.setText("Cancelling…")
            return
        super().reject()

    def _on_succeeded(self, identity: Any) -> None:
        self.running = False
        self._timer.stop()
        self.identity = identity
        self.accept()

    def _on_failed(self, error: SealportError) -> None:
        self.running = False
        self._timer.stop()
        self.error = error
        super().reject()
