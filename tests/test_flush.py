"""sealport.flush: the decrypted file's write-back runs beside the checks, bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sealport.flush import BackgroundFlush


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc (Linux)")
def test_flush_finishes_and_closes_its_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "payload.glb"
    path.write_bytes(os.urandom(4 << 20))
    before = _open_fds()
    flush = BackgroundFlush(path)
    assert flush.wait(30)
    assert _open_fds() == before  # the thread closed what it opened
    assert path.read_bytes()  # the file is untouched and still readable


def test_missing_file_is_no_error(tmp_path: Path) -> None:
    """The checks report a missing or unreadable file; the flush never fails an import."""
    assert BackgroundFlush(tmp_path / "gone.glb").wait(0)


@pytest.mark.skipif(os.name != "posix", reason="the flush only runs on POSIX")
def test_file_removed_during_the_flush_is_no_error(tmp_path: Path) -> None:
    """The failure path deletes the temp file while a flush may still run."""
    path = tmp_path / "payload.stl"
    path.write_bytes(os.urandom(8 << 20))
    flush = BackgroundFlush(path)
    path.unlink()
    assert flush.wait(30)
