"""Shared plumbing for the atheris fuzz targets in this folder.

Every target feeds bytes to one of Sealport's real entry points. The contract
under test is the project's: hostile input ends in a :class:`SealportError`
subclass (typed, artist-facing message) or in success. Anything else - a
ValueError, KeyError, RecursionError, struct.error, UnicodeDecodeError, a
hang (libFuzzer ``-timeout``) or an out-of-memory (``-rss_limit_mb``) - is a
finding: atheris prints the traceback, writes the input as a crash artifact
and exits non-zero, which is what ``tests/test_fuzz_smoke.py`` checks.

Usage from a target::

    from _harness import fuzz, instrumented
    with instrumented():
        from sealport import something
    def one(data: bytes) -> None: ...
    if __name__ == "__main__":
        fuzz(one)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Import the project's modules with coverage instrumentation (``sealport`` only).

    Third-party libraries (cryptography, numpy, pxr) are not instrumented: the
    feedback we want is which branches of *our* parsers the input reached.
    """
    with atheris.instrument_imports(include=["sealport"]):
        yield


def _scratch() -> Path:
    """A private scratch folder, on tmpfs when there is one (inputs are written per run).

    ``SEALPORT_FUZZ_SCRATCH`` (set by run_all.py) names it instead, so the input
    that killed the process from native code (no Python traceback, no libFuzzer
    artifact) is still on disk afterwards.
    """
    named = os.environ.get("SEALPORT_FUZZ_SCRATCH")
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)
        return Path(named)
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="sealport-fuzz-", dir=base))
    import atexit

    atexit.register(shutil.rmtree, d, True)
    return d


SCRATCH = _scratch()


def input_file(data: bytes, name: str) -> Path:
    """Write ``data`` to a fixed scratch path named ``name`` (one file per target)."""
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def typed_only(test: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """Wrap a target so the project's typed errors count as correct handling."""
    from sealport.errors import SealportError

    def one(data: bytes) -> None:
        try:
            test(data)
        except SealportError as exc:
            # The message is what the artist reads: it must exist and be text.
            if not isinstance(exc.message, str) or not exc.message.strip():
                raise AssertionError(f"{type(exc).__name__} without an artist message") from exc

    return one


def fuzz(test: Callable[[bytes], None]) -> None:
    """Run libFuzzer over ``test`` with the command-line flags (corpus dirs, limits)."""
    atheris.Setup(sys.argv, typed_only(test))
    atheris.Fuzz()
