"""Run core work off the UI thread, report progress back on it.

Every network or disk step of Sealport (sign-in poll, catalogue, secure import)
runs in a :class:`Task` on a ``QThreadPool`` thread so the host's UI keeps
drawing and the Cancel button keeps working. The task's signals live on the
UI thread, so Qt queues every emission from the worker to the UI thread;
cancelling is cooperative through :class:`sealport.progress.Progress`.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import SealportError
from ..progress import Progress
from .qt import QtCore, Signal

Work = Callable[[Progress], Any]

_POOL: QtCore.QThreadPool | None = None


def thread_pool() -> QtCore.QThreadPool:
    """Sealport's own pool (not the host's global one, which it may keep busy)."""
    global _POOL
    if _POOL is None:
        _POOL = QtCore.QThreadPool()
        _POOL.setMaxThreadCount(2)
    return _POOL


class TaskSignals(QtCore.QObject):
    progress = Signal(str, int, int)
    """(stage, done, total) from Progress.update."""
    succeeded = Signal(object)
    failed = Signal(object)
    """A SealportError (unexpected exceptions are wrapped in one)."""
    finished = Signal()


class UnexpectedError(SealportError):
    """A bug or an unanticipated failure: the artist sees a generic message."""

    code = "unexpected"


class Task(QtCore.QRunnable):
    """One unit of work: ``work(progress)`` on a pool thread."""

    def __init__(self, work: Work, progress: Progress | None = None) -> None:
        super().__init__()
        # The pool owns and deletes the C++ runnable once run() returns; the Python
        # side keeps only ``signals`` and ``progress``, which are plain owned objects.
        self.setAutoDelete(True)
        self.signals = TaskSignals()
        self.work = work
        self.progress = progress or Progress(self._report)

    def _report(self, stage: str, done: int, total: int) -> None:
        self.signals.progress.emit(stage, int(done), int(total))

    def cancel(self) -> None:
        self.progress.cancel()

    def run(self) -> None:
        try:
            result = self.work(self.progress)
        except SealportError as exc:
            self.signals.failed.emit(exc)
        except BaseException as exc:  # noqa: BLE001 - shown to the artist, never swallowed
            self.signals.failed.emit(
                UnexpectedError(
                    "Something unexpected went wrong in Sealport. Send the details to "
                    "your pipeline TD.",
                    detail="".join(traceback.format_exception(exc)),
                )
            )
        else:
            self.signals.succeeded.emit(result)
        finally:
            self.signals.finished.emit()


def start(task: Task) -> Task:
    """Queue ``task`` on Sealport's pool. Connect to ``task.signals`` before calling.

    Call it on the UI thread. It first runs Python's cycle collector there: the
    collector runs in whichever thread's allocation crosses its threshold, and when
    that was a pool thread while the heap held unreachable Qt wrappers (a closed
    widget in a reference cycle), their C++ objects were destroyed off the UI thread
    and the process crashed (a segfault in the test suite, in a sign-in task's
    request, "Garbage-collecting"; 2026-12-06). Collecting here leaves the task
    little to find. Cost: one full collection per task started (a button press).
    """
    gc.collect()
    thread_pool().start(task)
    return task
