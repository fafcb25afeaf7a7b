"""Wavefront OBJ safe reader: one bounded pass over the lines, constant memory.

OBJ is text, so the risks are what it points at and what it makes importers
do: ``mtllib`` (and the rare ``maplib``/``shadow_obj``/``trace_obj``) name
other files, texture statements (``map_Kd``... found in MTL syntax, which
some tools inline) name images, and the original OBJ specification even has
``call`` (include another file) and ``csh`` (run a shell command). References
that are absolute, climb with ``..``, use a drive letter, a UNC path or a URL
are refused; ``call`` and ``csh`` are refused outright; a plain relative
material library is accepted with a warning (it was not part of the delivery,
so the host will show default materials).

Geometry is checked as it streams: vertex lines must hold finite numbers, and
every face/line/point index must be non-zero and refer to an existing vertex
(negative indices are relative to the vertices read so far, positive ones to
the final count). Lines are bounded so a file without newlines cannot make
the reader buffer gigabytes.
"""

from __future__ import annotations

import math
from pathlib import Path

from .refs import reference_problem
from .report import FormatReport, bounded_lines, refuse

FMT = "obj"
MAX_LINE = 64 * 1024
FILE_STATEMENTS = frozenset({"mtllib", "maplib", "shadow_obj", "trace_obj"})
FORBIDDEN_STATEMENTS = frozenset({"call", "csh"})
TEXTURE_STATEMENTS = frozenset(
    {
        "map_ka",
        "map_kd",
        "map_ks",
        "map_ke",
        "map_ns",
        "map_d",
        "map_bump",
        "map_pr",
        "map_pm",
        "map_ps",
        "map_aat",
        "bump",
        "disp",
        "decal",
        "refl",
        "norm",
    }
)


def _file_tokens(key: str, args: list[str]) -> list[str]:
    """The tokens of a statement that may name a file.

    Texture statements put ``-option value...`` pairs before the file name, and
    names may contain spaces; judging every token that is not an option flag is
    stricter than guessing where the name starts, and cannot be fooled by it.
    """
    if key in FILE_STATEMENTS:
        return args
    return [a for a in args if not a.startswith("-")]


def check_obj(path: Path, *, max_bytes: int) -> FormatReport:
    """Check an OBJ file line by line; see the module docstring for the policy."""
    size = path.stat().st_size
    counts = {"v": 0, "vt": 0, "vn": 0}
    max_ref = {"v": 0, "vt": 0, "vn": 0}
    faces = lines = points = 0
    objects: set[str] = set()
    libraries: list[str] = []
    warnings: list[str] = []

    with open(path, "rb") as f:
        for lineno, raw in bounded_lines(f, path, FMT, MAX_LINE):
            if b"\x00" in raw:
                raise refuse(path, FMT, "it contains binary data (NUL bytes)", f"line {lineno}")
            text = raw.decode("utf-8", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            key = parts[0].lower()
            args = parts[1:]

            if key in ("v", "vt", "vn"):
                try:
                    values = [float(a) for a in args]
                except ValueError:
                    raise refuse(
                        path, FMT, f"line {lineno} has a malformed '{key}'", text[:200]
                    ) from None
                need = 2 if key == "v" else 1
                if len(values) < need or not all(math.isfinite(x) for x in values):
                    raise refuse(path, FMT, f"line {lineno} has a malformed '{key}'", text[:200])
                counts[key] += 1
            elif key in ("f", "l", "p"):
                if len(args) < {"f": 3, "l": 2, "p": 1}[key]:
                    raise refuse(path, FMT, f"line {lineno} has too few vertices", text[:200])
                for ref in args:
                    fields = ref.split("/")
                    if len(fields) > 3 or not fields[0]:
                        raise refuse(path, FMT, f"line {lineno} has a malformed index", ref)
                    for kind, field in zip(("v", "vt", "vn"), fields, strict=False):
                        if not field:
                            continue
                        try:
                            i = int(field)
                        except ValueError:
                            raise refuse(
                                path, FMT, f"line {lineno} has a malformed index", ref
                            ) from None
                        if i == 0 or -i > counts[kind]:
                            raise refuse(
                                path,
                                FMT,
                                f"line {lineno} refers to a vertex that does not exist",
                                f"{kind} index {i} with {counts[kind]} read so far",
                            )
                        max_ref[kind] = max(max_ref[kind], i)
                if key == "f":
                    faces += 1
                elif key == "l":
                    lines += 1
                else:
                    points += 1
            elif key in ("o", "g"):
                objects.add(" ".join(args))
            elif key in FORBIDDEN_STATEMENTS:
                raise refuse(
                    path,
                    FMT,
                    f"line {lineno} uses '{key}', which loads other files or runs commands",
                    text[:200],
                )
            elif key in FILE_STATEMENTS or key in TEXTURE_STATEMENTS:
                tokens = _file_tokens(key, args)
                if not tokens:
                    raise refuse(path, FMT, f"line {lineno} has a '{key}' naming no file", text)
                for token in tokens:
                    why = reference_problem(token)
                    if why:
                        raise refuse(
                            path,
                            FMT,
                            f"line {lineno} refers to {token[:200]!r} ({why})",
                            f"{text[:500]!r}",
                        )
                name = " ".join(args)
                if key in FILE_STATEMENTS:
                    libraries.append(name)
                else:
                    warnings.append(f"texture {name} is not part of the delivery")

    for kind in ("v", "vt", "vn"):
        if max_ref[kind] > counts[kind]:
            raise refuse(
                path,
                FMT,
                "a face refers to a vertex that does not exist",
                f"{kind} index {max_ref[kind]} but only {counts[kind]} defined",
            )
    if counts["v"] == 0:
        raise refuse(path, FMT, "it contains no vertices")
    for lib in libraries:
        warnings.append(f"material library {lib} is not part of the delivery")
    summary: dict[str, int | str] = {
        "vertices": counts["v"],
        "texcoords": counts["vt"],
        "normals": counts["vn"],
        "faces": faces,
        "lines": lines,
        "points": points,
        "objects": len(objects),
    }
    return FormatReport(FMT, size, summary, tuple(warnings[:20]))
