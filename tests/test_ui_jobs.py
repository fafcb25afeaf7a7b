"""sealport.ui.jobs: worker-thread jobs whose results are applied only when the host pumps."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sealport.errors import Cancelled, SealportError
from sealport.progress import Progress
from sealport.ui.jobs import Job, JobRunner


def _pump_until_idle(runner: JobRunner, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while runner.pump():
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.01)


def test_messages_progress_and_result_arrive_on_the_pumping_thread() -> None:
    runner = JobRunner()
    seen: list[tuple[str, Any, str]] = []
    gate = threading.Event()

    def work(progress: Progress, post: Any) -> str:
        post("code", "ABCD-1234")
        progress.update("download", 5, 10)
        gate.wait(10)
        return "result"

    def note(kind: str) -> Any:
        return lambda *a: seen.append((kind, a, threading.current_thread().name))

    job = runner.start(Job("import", work, note("done"), note("error"), note("message")))
    assert runner.running() is job and runner.running("import") is job
    assert runner.running("other") is None
    time.sleep(0.05)
    assert seen == []  # nothing is applied until the host pumps
    runner.pump()
    assert (job.stage, job.done, job.total, job.fraction) == ("download", 5, 10, 0.5)
    gate.set()
    _pump_until_idle(runner)
    main = threading.current_thread().name
    assert seen == [
        ("message", ("code", "ABCD-1234"), main),
        ("done", ("result",), main),
    ]
    assert job.finished and runner.running() is None
    assert job.thread is not None and job.thread.name == "sealport-import"


def test_errors_go_to_on_error_and_cancel_is_cooperative() -> None:
    runner = JobRunner()
    errors: list[BaseException] = []

    def failing(progress: Progress, post: Any) -> None:
        raise SealportError("It broke.", "detail")

    runner.start(Job("a", failing, lambda v: pytest.fail("no result"), errors.append))

    def slow(progress: Progress, post: Any) -> None:
        while True:
            progress.update("waiting", 0)
            time.sleep(0.01)

    job = runner.start(Job("b", slow, lambda v: pytest.fail("no result"), errors.append))
    job.cancel()
    _pump_until_idle(runner)
    assert [type(e) for e in errors] == [SealportError, Cancelled]


def test_shutdown_cancels_joins_and_calls_no_callback() -> None:
    runner = JobRunner()
    called: list[Any] = []

    def slow(progress: Progress, post: Any) -> None:
        while True:
            progress.update("waiting", 0)
            time.sleep(0.01)

    job = runner.start(Job("c", slow, called.append, called.append))
    runner.shutdown(timeout=5)
    assert job.thread is not None and not job.thread.is_alive()
    assert runner.running() is None and not runner.pump() and called == []
