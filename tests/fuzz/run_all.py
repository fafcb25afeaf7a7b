"""Run every fuzz target (or some) for a bounded time; report executions and coverage.

    python tests/fuzz/run_all.py --seconds 300            # the long run (docs/FUZZING.md)
    python tests/fuzz/run_all.py --seconds 5 age glb      # a few targets, briefly

Each target runs as its own process (libFuzzer owns the process): the
committed seed corpus ``corpus/<target>/`` is read-only input, new inputs go
to a scratch corpus (``--work``, default a temp folder) so the repository is
never modified by a run, crash artifacts go to ``<work>/<target>/crash-*``.
Limits: ``-rss_limit_mb`` (memory), ``-timeout`` (one input; a hang is a
finding), ``-max_len`` (bytes per input). Exit status is non-zero if any
target found something.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TARGETS = tuple(sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py")))
MAX_LEN = {"age": 200_000, "glb": 64_000, "3mf": 64_000, "usd": 64_000, "stl": 64_000}
"""Per-target input size cap (default 16 KiB); the seeds of these are larger."""
NATIVE_CONTAINED = {"usd": "FATAL ERROR"}
"""Targets whose third-party C++ reader may kill the process on hostile input, and the
marker it prints. Production runs those readers in a child process
(``sealport.formats.ISOLATED_FORMATS``), where such a death is a refusal; here it
ends the run early, is reported and its input kept, and is not a finding. A Python
exception in our code is still a finding."""

_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)(?: corp: (\d+)/(\S+))?")
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


@dataclass
class Result:
    target: str
    returncode: int
    runs: int
    cov: int
    ft: int
    corpus_units: int
    corpus_size: str
    seconds: float
    log: str

    native_crash: Path | None = None
    native_crashes: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 or self.native_crash is not None) and self.runs > 0


def run_target(
    target: str, seconds: int, work: Path, *, rss_mb: int = 1024, timeout: int = 20
) -> Result:
    """Fuzz ``target`` for ``seconds``; a contained native crash restarts it (same corpus)."""
    r = _run_once(target, seconds, work, rss_mb, timeout)
    crashes = [r.native_crash] if r.native_crash else []
    while r.native_crash is not None and (left := seconds - int(r.seconds)) > 2:
        more = _run_once(target, left, work, rss_mb, timeout)
        r = Result(
            target,
            more.returncode,
            r.runs + more.runs,
            more.cov,
            more.ft,
            more.corpus_units,
            more.corpus_size,
            r.seconds + more.seconds,
            r.log + more.log,
            more.native_crash,
        )
        if more.native_crash:
            crashes.append(more.native_crash)
    r.native_crashes = crashes
    if crashes and r.returncode < 0 and r.native_crash is None:
        return r  # the last run ended some other way: a finding
    if crashes and r.native_crash is None and r.returncode == 0:
        r.native_crash = crashes[-1]  # finished cleanly after restarts: still report them
    return r


_FRESH_PEAK = [
    "/bin/sh",
    "-c",
    '"$@"; s=$?; if [ "$s" -gt 128 ]; then kill -"$((s - 128))" "$$"; fi; exit "$s"',
    "sh",
]
"""Prefix that starts a command with its own peak-RSS count (see :func:`fresh_peak`)."""


def fresh_peak(cmd: list[str]) -> list[str]:
    """``cmd`` started through ``sh`` so that its peak RSS starts from zero.

    Why: libFuzzer's ``-rss_limit_mb`` reads ``getrusage``'s ``ru_maxrss``, and Linux
    carries a process's peak RSS across fork + exec. Started straight from a pytest
    process that had grown past 1 GiB, a target "used" 1 GiB before its first input
    and was stopped as out-of-memory (a full test run, 2026-12-06). ``sh`` is
    exec'd first (a small process) and forks the target: a fork's peak starts at
    zero and its memory is sh's. A target killed by a signal is re-raised on sh, so
    the caller still sees the negative return code native crashes are told by.
    """
    return [*_FRESH_PEAK, *cmd]


def _run_once(target: str, seconds: int, work: Path, rss_mb: int, timeout: int) -> Result:
    out_corpus = work / target / "corpus"
    out_corpus.mkdir(parents=True, exist_ok=True)
    seeds = CORPUS / target
    cmd = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={rss_mb}",
        f"-timeout={timeout}",
        f"-max_len={MAX_LEN.get(target, 16_384)}",
        f"-artifact_prefix={work / target}/",
        "-print_final_stats=1",
        str(out_corpus),
        str(seeds),
    ]
    scratch = work / target / "scratch"
    env = {**os.environ, "SEALPORT_FUZZ_SCRATCH": str(scratch)}
    start = time.monotonic()
    proc = subprocess.run(
        fresh_peak(cmd), capture_output=True, text=True, errors="replace", cwd=HERE, env=env
    )
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    runs = cov = ft = units = 0
    size = "0b"
    for m in _STATS.finditer(log):
        runs, cov, ft = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if m.group(4):
            units, size = int(m.group(4)), m.group(5)
    done = _DONE.search(log)
    if done:
        runs = int(done.group(1))
    native = None
    marker = NATIVE_CONTAINED.get(target)
    python_finding = "Uncaught Python exception" in log or "Traceback" in log
    if marker and proc.returncode < 0 and marker in log and not python_finding:
        native = work / target / f"native-crash-{time.time_ns()}"
        shutil.copytree(scratch, native, ignore=shutil.ignore_patterns(".sealport-*"))
    shutil.rmtree(scratch, ignore_errors=True)
    return Result(target, proc.returncode, runs, cov, ft, units, size, elapsed, log, native)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", default=list(TARGETS), help=f"of {', '.join(TARGETS)}")
    ap.add_argument("--seconds", type=int, default=60, help="per target")
    ap.add_argument("--rss-limit-mb", type=int, default=1024)
    ap.add_argument("--work", type=Path, help="scratch folder (kept) for corpora and crashes")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="sealport-fuzz-run-"))
    failed = []
    print(f"{'target':10} {'runs':>9} {'exec/s':>7} {'cov':>6} {'ft':>6} {'corpus':>12}  result")
    for t in args.targets:
        r = run_target(t, args.seconds, work, rss_mb=args.rss_limit_mb)
        rate = r.runs / max(r.seconds, 1e-9)
        status = "ok" if r.ok else f"FINDING (exit {r.returncode})"
        if r.native_crash is not None:
            status = (
                f"ok ({len(r.native_crashes)} native crash(es) contained by isolation, "
                f"inputs in {work / t}/native-crash-*)"
            )
        print(
            f"{t:10} {r.runs:>9} {rate:>7.0f} {r.cov:>6} {r.ft:>6} "
            f"{r.corpus_units:>5}/{r.corpus_size:>6}  {status}",
            flush=True,
        )
        if not r.ok:
            failed.append(t)
            (work / t / "log.txt").write_text(r.log)
            print("\n".join(r.log.splitlines()[-40:]), file=sys.stderr)
    print(f"work folder: {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
