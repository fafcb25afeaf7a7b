"""Progress reporting and cooperative cancellation for long work.

Long operations (download, decrypt, checks) take a :class:`Progress` and call
``update`` often; ``update`` raises :class:`~sealport.errors.Cancelled` once
``cancel()`` was called from any thread (UI button, Ctrl-C handler).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import Cancelled

ProgressCallback = Callable[[str, int, int], None]
"""(stage, done, total) -> None; total is 0 when unknown."""


class Progress:
    def __init__(self, callback: ProgressCallback | None = None) -> None:
        self._callback = callback
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds`` (a retry's backoff), waking at once on ``cancel()``.

        Raises :class:`~sealport.errors.Cancelled` if cancelled, before or during.
        """
        self._cancelled.wait(seconds)
        self.check()

    def update(self, stage: str, done: int, total: int = 0) -> None:
        self.check()
        if self._callback is not None:
            self._callback(stage, done, total)
