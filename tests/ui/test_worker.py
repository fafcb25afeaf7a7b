"""The pool's start(): cyclic garbage is collected on the UI thread, not in a task."""

from __future__ import annotations

import gc
import threading
from typing import Any

from sealport.ui.worker import Task, start


def test_start_collects_cyclic_garbage_on_the_ui_thread(qtbot: Any) -> None:
    """Unreachable Qt wrappers finalized by a collection that a pool thread triggers
    are destroyed off the UI thread (a segfault seen once in the suite); start()
    collects first, on the calling (UI) thread."""
    finalized: list[bool] = []

    class Node:
        peer: Node | None = None

        def __del__(self) -> None:
            finalized.append(threading.current_thread() is threading.main_thread())

    done: list[int] = []
    gc.disable()  # nothing else may collect the cycle before start() does
    try:
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        del a, b
        assert finalized == []  # a cycle: reference counting alone frees nothing
        task = Task(lambda progress: None)
        task.signals.finished.connect(lambda: done.append(1))
        start(task)
        assert finalized == [True, True]
    finally:
        gc.enable()
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
