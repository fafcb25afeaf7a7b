"""STL safe reader, binary and ASCII, in bounded memory.

Binary STL is an 80-byte header, a uint32 triangle count and 50 bytes per
triangle, so the size must be exactly ``84 + 50 * count``: any other size is
a truncated or padded file (or a count crafted to make an importer allocate
or read past the end) and is refused. The triangles are then read through a
numpy memory map in chunks and must be finite numbers.

A file whose size does not fit the binary layout and that starts with
``solid`` is read as ASCII STL: a strict state machine over bounded lines
(``solid / facet normal / outer loop / vertex x3 / endloop / endfacet /
endsolid``). Some exporters write binary files whose header starts with
"solid"; the exact size rule tells those apart first.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from .report import FormatReport, bounded_lines, refuse

FMT = "stl"
MAX_LINE = 64 * 1024
CHUNK = 1 << 18  # triangles per memmap slice (12.5 MiB)
_TRI = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (9,)), ("attr", "<u2")])
assert _TRI.itemsize == 50


def _check_binary(path: Path, size: int, count: int) -> FormatReport:
    if count == 0:
        raise refuse(path, FMT, "it contains no triangles")
    # Fixed-size reads, not a memmap: a mapping's touched pages count as the
    # process's resident memory, which then grows with the file (1 GiB STL ->
    # 1 GiB RSS); a reused chunk keeps the check's memory constant.
    with open(path, "rb") as fh:
        fh.seek(84)
        for start in range(0, count, CHUNK):
            block = np.fromfile(fh, dtype=_TRI, count=min(CHUNK, count - start))
            if len(block) != min(CHUNK, count - start):
                raise refuse(path, FMT, "it is shorter than its triangle count says")
            if not (np.isfinite(block["v"]).all() and np.isfinite(block["normal"]).all()):
                bad = start + int(np.argmin(np.isfinite(block["v"]).all(axis=1)))
                raise refuse(
                    path, FMT, "it contains coordinates that are not numbers", f"triangle {bad}"
                )
    summary: dict[str, int | str] = {
        "faces": count,
        "vertices": 3 * count,
        "encoding": "binary",
    }
    return FormatReport(FMT, size, summary, ())


def _numbers(words: list[str], n: int, path: Path, lineno: int) -> None:
    if len(words) != n:
        raise refuse(path, FMT, f"line {lineno} has {len(words)} numbers instead of {n}")
    try:
        values = [float(w) for w in words]
    except ValueError:
        raise refuse(path, FMT, f"line {lineno} has a malformed number", " ".join(words)) from None
    if not all(math.isfinite(v) for v in values):
        raise refuse(path, FMT, f"line {lineno} has a coordinate that is not a number")


def _check_ascii(path: Path, size: int) -> FormatReport:
    """Strict ASCII STL state machine; one line in memory at a time."""
    state = "start"  # start | solid | facet | loop | endloop | endfacet-done
    facets = solids = vertices_in_loop = 0
    lineno = 0
    with open(path, "rb") as f:
        for lineno, raw in bounded_lines(f, path, FMT, MAX_LINE):
            try:
                text = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise refuse(
                    path,
                    FMT,
                    "it is neither a valid binary nor a valid ASCII STL",
                    f"line {lineno}",
                ) from None
            if not text:
                continue
            words = text.split()
            key = words[0].lower()
            if state == "start":
                if key != "solid":
                    raise refuse(path, FMT, f"line {lineno}: expected 'solid'", text[:200])
                state = "solid"
                solids += 1
            elif state == "solid":
                if key == "endsolid":
                    state = "start"
                elif key == "facet" and len(words) >= 2 and words[1].lower() == "normal":
                    _numbers(words[2:], 3, path, lineno)
                    state = "facet"
                else:
                    raise refuse(path, FMT, f"line {lineno}: expected 'facet normal'", text[:200])
            elif state == "facet":
                if key != "outer" or len(words) != 2 or words[1].lower() != "loop":
                    raise refuse(path, FMT, f"line {lineno}: expected 'outer loop'", text[:200])
                state, vertices_in_loop = "loop", 0
            elif state == "loop":
                if key == "vertex":
                    _numbers(words[1:], 3, path, lineno)
                    vertices_in_loop += 1
                    if vertices_in_loop > 3:
                        raise refuse(path, FMT, f"line {lineno}: a facet has more than 3 vertices")
                elif key == "endloop":
                    if vertices_in_loop != 3:
                        raise refuse(path, FMT, f"line {lineno}: a facet has fewer than 3 vertices")
                    state = "endloop"
                else:
                    raise refuse(path, FMT, f"line {lineno}: expected 'vertex'", text[:200])
            elif state == "endloop":
                if key != "endfacet":
                    raise refuse(path, FMT, f"line {lineno}: expected 'endfacet'", text[:200])
                facets += 1
                state = "solid"
    if state != "start":
        raise refuse(path, FMT, "it ends before 'endsolid' (truncated)", f"state={state}")
    if facets == 0:
        raise refuse(path, FMT, "it contains no triangles")
    summary: dict[str, int | str] = {
        "faces": facets,
        "vertices": 3 * facets,
        "solids": solids,
        "encoding": "ascii",
    }
    return FormatReport(FMT, size, summary, ())


def check_stl(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a binary or ASCII STL file; see the module docstring."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(84)
    if size >= 84:
        (count,) = struct.unpack_from("<I", head, 80)
        if 84 + 50 * count == size:
            return _check_binary(path, size, count)
    if head[:5].lower() == b"solid" and b"\x00" not in head:
        return _check_ascii(path, size)
    if size < 84:
        raise refuse(path, FMT, "it is too short to be an STL file", f"size={size}")
    raise refuse(
        path,
        FMT,
        f"its header says {count} triangles, which does not match the file size "
        "(truncated or tampered)",
        f"size={size} expected={84 + 50 * count}",
    )
