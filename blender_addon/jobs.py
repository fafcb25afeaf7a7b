"""Background work for Blender: :mod:`sealport.ui.jobs`, pumped by a ``bpy.app.timers`` timer.

Why: Blender's data (``bpy.data``, operators, the UI) may only be touched
from the main thread; writing it from a worker crashes Blender. The core's
:class:`~sealport.ui.jobs.JobRunner` runs each job's ``work`` on a thread
(which never imports ``bpy``) and applies its results when pumped; this
module pumps it from a timer on Blender's main thread and redraws the 3D
view's sidebar while a job runs.
"""

from __future__ import annotations

import bpy
from sealport.ui.jobs import Job, JobRunner

__all__ = ["Job", "pump", "running", "shutdown", "start"]

PUMP_INTERVAL = 0.05
"""Seconds between pumps while a job runs: how late a finished download reaches the
importer (0.025 s on average) and how often the sidebar redraws its progress."""
RUNNER = JobRunner()


def start(job: Job) -> Job:
    RUNNER.start(job)
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=PUMP_INTERVAL)
    return job


def running(name: str | None = None) -> Job | None:
    return RUNNER.running(name)


def pump() -> float | None:
    """The timer: drain every job on the main thread; stop when none is left."""
    try:
        left = RUNNER.pump()
    finally:
        _redraw()
    return PUMP_INTERVAL if left else None


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def shutdown(timeout: float = 5.0) -> None:
    """Cancel every job and stop the timer (unregister); callbacks are not called."""
    RUNNER.shutdown(timeout)
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
