"""Background work for Blender: a worker thread per job, results applied on the main thread.

Why: Blender's data (``bpy.data``, operators, the UI) may only be touched
from the main thread; writing it from a worker crashes Blender. So a job's
``work`` runs on a thread and talks to the main thread only through a queue;
:func:`pump` (registered with ``bpy.app.timers``) drains the queue on the main
thread and calls the job's callbacks there. The worker never imports ``bpy``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bpy
from sealport.progress import Progress

PUMP_INTERVAL = 0.1


@dataclass
class Job:
    """One long call (sign-in, catalogue, secure import) running off the main thread."""

    name: str
    work: Callable[[Progress, Callable[[str, Any], None]], Any]
    """work(progress, post): ``post(kind, value)`` sends a message to the main thread."""
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None]
    on_message: Callable[[str, Any], None] = lambda kind, value: None
    stage: str = "starting"
    done: int = 0
    total: int = 0
    finished: bool = False
    _queue: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.progress = Progress(
            lambda stage, done, total: self._post("progress", (stage, done, total))
        )

    def _post(self, kind: str, value: Any) -> None:
        self._queue.put((kind, value))

    def _run(self) -> None:
        try:
            self._post("done", self.work(self.progress, self._post))
        except BaseException as exc:  # handed to the main thread, which reports it
            self._post("error", exc)

    def cancel(self) -> None:
        self.progress.cancel()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def drain(self) -> None:
        """Main thread only: apply every queued message."""
        while not self.finished:
            try:
                kind, value = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == "progress":
                self.stage, self.done, self.total = value
            elif kind == "done":
                self.finished = True
                self.on_done(value)
            elif kind == "error":
                self.finished = True
                self.on_error(value)
            else:
                self.on_message(kind, value)


_jobs: list[Job] = []


def start(job: Job) -> Job:
    job.thread = threading.Thread(target=job._run, name=f"sealport-{job.name}", daemon=True)
    _jobs.append(job)
    job.thread.start()
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=PUMP_INTERVAL)
    return job


def running(name: str | None = None) -> Job | None:
    return next((j for j in _jobs if name is None or j.name == name), None)


def pump() -> float | None:
    """The timer: drain every job on the main thread; stop when none is left."""
    for job in list(_jobs):
        try:
            job.drain()
        finally:
            if job.finished:
                _jobs.remove(job)
    _redraw()
    return PUMP_INTERVAL if _jobs else None


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def shutdown(timeout: float = 5.0) -> None:
    """Cancel every job and stop the timer (unregister); callbacks are not called."""
    for job in _jobs:
        job.cancel()
    for job in _jobs:
        if job.thread is not None:
            job.thread.join(timeout)
    _jobs.clear()
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
