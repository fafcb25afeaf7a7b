"""Shared body of the format fuzz targets: bytes -> temp file -> the format's checker.

:func:`sealport.formats.check_file` turns *any* exception of a reader into an
UnsafeAsset ("the safety check could not read it") so a host never sees a
traceback. That fail-closed net would hide every parser bug from a fuzzer, so
the targets call the reader ``check_file`` dispatches to
(``sealport.formats._checker(fmt)``) directly: a reader that lets a raw
exception escape is a finding even though production would refuse the file.
"""

from __future__ import annotations

from collections.abc import Callable

from _harness import input_file, instrumented

with instrumented():
    from sealport import formats

MAX_BYTES = 64 * 1024**2


def checker_target(fmt: str, filename: str) -> Callable[[bytes], None]:
    with instrumented():  # the readers are imported lazily, on first use
        check = formats._checker(fmt)

    def one(data: bytes) -> None:
        if not data:
            return  # check_file refuses empty files before any reader runs
        check(input_file(data, filename), max_bytes=MAX_BYTES)

    return one
