"""The result of a format check, and the one way checks refuse a file.

Every reader in this package either returns a :class:`FormatReport` or raises
:class:`~sealport.errors.UnsafeAsset` built by :func:`refuse`, so the artist
always reads the same shape of sentence ("... was refused: <problem>. Nothing
was imported.") and the TD gets the raw facts in ``detail``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import UnsafeAsset

GiB = 1024**3
DEFAULT_MAX_BYTES = 8 * GiB
"""Largest delivered file any check accepts (a 10 GB USD is refused, not parsed)."""


@dataclass(frozen=True)
class FormatReport:
    """What a safe reader found in a file that passed its checks.

    ``summary`` holds plain counts (``vertices``, ``faces``, ``meshes``,
    ``prims``...) and short strings (``version``, ``encoding``) that the
    importer logs to the audit trail; ``warnings`` are facts worth telling a
    TD that do not make the file unsafe (e.g. an OBJ naming a material file
    that was not delivered).
    """

    format: str
    size: int
    summary: dict[str, int | str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def refuse(path: Path | str, fmt: str, problem: str, detail: str = "") -> UnsafeAsset:
    """Build the error every check raises: artist sentence + TD detail.

    ``problem`` is a short lowercase clause ("it refers to a file outside the
    package: /etc/passwd"); ``detail`` carries offsets, raw values and the path.
    """
    name = Path(path).name
    message = (
        f"The {fmt.upper()} file '{name}' was refused by the safety check: {problem}. "
        "Nothing was imported. Ask the asset's author to re-export it, or send this "
        "message to your pipeline TD."
    )
    td = f"format={fmt} path={path}"
    if detail:
        td += f"; {detail}"
    return UnsafeAsset(message, td)


def bounded_lines(
    f: BinaryIO, path: Path | str, fmt: str, max_line: int
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, raw line)`` of a text format, refusing any line over ``max_line``.

    Text readers (OBJ, ASCII STL) hold one line in memory at a time; a file with no
    newline would otherwise be read whole by ``readline``.
    """
    lineno = 0
    while True:
        raw = f.readline(max_line + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > max_line:
            raise refuse(path, fmt, f"line {lineno} is longer than {max_line} bytes")
        yield lineno, raw
