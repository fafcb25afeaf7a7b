"""Every atheris fuzz target runs briefly in CI; any finding fails the build.

Each target (``tests/fuzz/fuzz_<name>.py``) first replays its committed seed
corpus (``tests/fuzz/corpus/<name>/``, including the ``regress-*`` inputs of
fixed findings), then mutates for ``SEALPORT_FUZZ_SECONDS`` (default 2) with
a 1 GiB RSS limit and a 20 s per-input timeout. A crash, a non-typed
exception, a hang or an out-of-memory makes libFuzzer exit non-zero and the
test fail with the tail of the log. The test also fails if the target did not
execute at all (a broken harness must not pass). Longer runs:
``python tests/fuzz/run_all.py --seconds 300`` (docs/FUZZING.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import run_all  # noqa: E402

SECONDS = int(os.environ.get("SEALPORT_FUZZ_SECONDS", "2"))


def test_every_target_has_a_seed_corpus() -> None:
    assert len(run_all.TARGETS) >= 11, run_all.TARGETS
    for t in run_all.TARGETS:
        seeds = list((FUZZ / "corpus" / t).glob("*"))
        assert seeds, f"no seed corpus for fuzz target {t}"
    total = sum(p.stat().st_size for p in (FUZZ / "corpus").rglob("*") if p.is_file())
    assert total < 2 * 1024**2, f"seed corpus is {total} bytes; keep it under 2 MiB"


@pytest.mark.parametrize("target", run_all.TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    r = run_all.run_target(target, SECONDS, tmp_path)
    tail = "\n".join(r.log.splitlines()[-60:])
    assert r.runs > 0, f"fuzz target {target} executed nothing:\n{tail}"
    assert r.ok, f"fuzz target {target} found a problem (exit {r.returncode}):\n{tail}"


def test_a_target_starts_with_its_own_peak_memory() -> None:
    """libFuzzer's RSS limit reads the peak RSS, which Linux carries across fork + exec:
    a target started from a large pytest process was stopped as out-of-memory before
    its first input. Through ``fresh_peak`` it counts only its own memory, and a
    target killed by a signal still returns that signal."""
    import subprocess
    import sys

    import numpy as np

    ballast = np.ones(300 * 2**20 // 8)  # 300 MiB, touched: this process's peak grows
    probe = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    direct = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    launched = subprocess.run(
        run_all.fresh_peak([sys.executable, "-c", probe]), capture_output=True, text=True
    )
    assert int(direct.stdout) > 300 * 1024  # KiB: the inherited peak (why the wrapper exists)
    assert int(launched.stdout) < 100 * 1024
    killed = subprocess.run(
        run_all.fresh_peak([sys.executable, "-c", "import os; os.kill(os.getpid(), 15)"])
    )
    assert killed.returncode == -15  # SIGTERM: a native crash (SIGSEGV) would write a core
    del ballast
