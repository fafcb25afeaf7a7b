"""Background jobs for hosts that poll: a worker thread per job, results on the main thread.

Why: a host's scene data may only be touched from its main thread (Blender
crashes when ``bpy.data`` is written from a worker). Qt hosts get that from
:mod:`sealport.ui.worker` (queued signals); a host without a Qt event loop of
ours (Blender) instead calls :meth:`JobRunner.pump` from a main-thread timer.
A job's ``work`` runs on a thread and talks to the main thread only through a
queue; ``pump`` drains it and calls the job's callbacks there. Neither Qt nor
any host module is imported here.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..progress import Progress

Post = Callable[[str, Any], None]
"""post(kind, value): a message from the worker to the main thread."""


@dataclass
class Job:
    """One long call (sign-in, catalogue, secure import) running off the main thread."""

    name: str
    work: Callable[[Progress, Post], Any]
    """work(progress, post), on the worker thread; its return value goes to ``on_done``."""
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
        """Main thread only: apply every queued message, in order."""
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


class JobRunner:
    """The running jobs of one host session."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def start(self, job: Job) -> Job:
        """Start ``job``'s worker thread; the host must then call :meth:`pump` until it is done."""
        job.thread = threading.Thread(target=job._run, name=f"sealport-{job.name}", daemon=True)
        self._jobs.append(job)
        job.thread.start()
        return job

    def running(self, name: str | None = None) -> Job | None:
        return next((j for j in self._jobs if name is None or j.name == name), None)

    def pump(self) -> bool:
        """Main thread: drain every job, forget finished ones; True while any is left."""
        for job in list(self._jobs):
            try:
                job.drain()
            finally:
                if job.finished:
                    self._jobs.remove(job)
        return bool(self._jobs)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every job and wait up to ``timeout`` each; callbacks are not called."""
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            if job.thread is not None:
                job.thread.join(timeout)
        self._jobs.clear()
