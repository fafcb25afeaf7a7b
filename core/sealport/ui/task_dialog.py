"""A dialog that runs one :class:`~sealport.ui.worker.Task` and stays open while it runs.

Sign-in and every progress dialog share the same life cycle: start the task on the
pool thread and show without blocking (tests, hosts with their own loop), or start it
and wait in a local event loop so the host keeps drawing. Keeping that in one place
means the ``running`` flag, which Cancel and close rely on, is set the same way for both.
"""

from __future__ import annotations

from ..errors import SealportError
from .qt import QtWidgets
from .worker import Task, start


class TaskDialog(QtWidgets.QDialog):
    """Base for dialogs that own one task; subclasses set ``self.task`` in ``__init__``."""

    task: Task

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.error: SealportError | None = None
        self.running = False

    def start(self) -> None:
        """Start the work and show the dialog without blocking."""
        if not self.running:
            self.running = True
            start(self.task)
        self.show()

    def run_modal(self) -> None:
        """Start the work and wait in a local event loop (the host stays responsive)."""
        self.running = True
        start(self.task)
        self.exec()
