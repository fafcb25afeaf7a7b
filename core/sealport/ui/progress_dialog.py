"""Progress dialog with Cancel for one piece of core work.

The work runs on a pool thread (:mod:`sealport.ui.worker`); this dialog only
draws what the worker reports. Cancel (or Esc, or the window's close button)
asks the core to stop cooperatively, and the dialog closes once the work has
actually stopped, so no half-finished import is left running behind it.
"""

from __future__ import annotations

from typing import Any

from ..errors import Cancelled, SealportError
from .qt import QtCore, QtWidgets
from .task_dialog import TaskDialog
from .worker import Task, Work

STAGES = {
    "request": "Asking the server for a sealed copy…",
    "manifest": "Checking the signed manifest…",
    "download": "Downloading (encrypted)…",
    "decrypt": "Decrypting and checking hashes…",
    "resume": "Resuming the download…",
    "format check": "Checking the file is safe to open…",
    "watermark": "Checking the forensic watermark…",
    "place": "Placing the verified file…",
    "waiting for sign-in approval": "Waiting for approval in the browser…",
    "assets": "Loading the catalogue…",
}
SCALE = 1000


def stage_text(stage: str) -> str:
    return STAGES.get(stage, stage.replace("_", " ").capitalize() + "…")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class ProgressDialog(TaskDialog):
    """Runs ``work(progress)`` off the UI thread; ``run()`` returns its result."""

    def __init__(self, title: str, work: Work, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sealportProgressDialog")
        self.setWindowTitle(title)
        self.setMinimumWidth(420)
        self.setModal(True)
        self.result_value: Any = None
        self.stages_seen: list[str] = []

        self.title_label = QtWidgets.QLabel(f"<b>{title}</b>")
        self.stage_label = QtWidgets.QLabel("Starting…")
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 0)
        self.bytes_label = QtWidgets.QLabel("")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.bytes_label, 1)
        row.addWidget(self.cancel_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.title_label)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.bar)
        layout.addLayout(row)

        self.task = Task(work)
        self.task.signals.progress.connect(self._on_progress)
        self.task.signals.succeeded.connect(self._on_succeeded)
        self.task.signals.failed.connect(self._on_failed)

    # --- running ---------------------------------------------------------------------
    def run(self) -> Any:
        """Start, wait in a local event loop (host stays responsive); return or raise."""
        self.run_modal()
        if self.error is not None:
            raise self.error
        return self.result_value

    def cancel(self) -> None:
        if not self.running:
            self.reject()
            return
        self.task.cancel()
        self.cancel_button.setEnabled(False)
        self.stage_label.setText("Cancelling…")

    def reject(self) -> None:
        # Esc and the close button mean Cancel while work is running.
        if self.running:
            self.cancel()
            return
        super().reject()

    # --- worker signals (queued onto the UI thread) ------------------------------------
    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if self.task.progress.cancelled:
            return
        if not self.stages_seen or self.stages_seen[-1] != stage:
            self.stages_seen.append(stage)
        self.stage_label.setText(stage_text(stage))
        if total > 0:
            self.bar.setRange(0, SCALE)
            self.bar.setValue(min(SCALE, int(done * SCALE / total)))
            self.bytes_label.setText(f"{human_size(done)} of {human_size(total)}")
        else:
            self.bar.setRange(0, 0)
            self.bytes_label.setText("")

    def _on_succeeded(self, value: Any) -> None:
        self.running = False
        self.result_value = value
        self.accept()

    def _on_failed(self, error: SealportError) -> None:
        self.running = False
        self.error = error
        if isinstance(error, Cancelled):
            super().reject()
        else:
            self.done(QtWidgets.QDialog.DialogCode.Rejected)


def run_with_progress(title: str, work: Work, parent: QtWidgets.QWidget | None = None) -> Any:
    """Run ``work`` behind a progress dialog; returns its result or raises its error."""
    return ProgressDialog(title, work, parent).run()


__all__ = ["ProgressDialog", "run_with_progress", "stage_text", "human_size", "QtCore"]
