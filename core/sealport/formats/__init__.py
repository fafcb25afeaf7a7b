"""Safe readers for delivered assets: one module per format, one entry point.

``check_file(path, fmt)`` opens a decrypted, hash-verified delivery with a
reader that refuses anything that would make a host importer read outside the
delivery (absolute paths, ``..``, URLs, external files), unpack without bound
(zip-slip, decompression bombs, entity expansion) or trust inconsistent
lengths. It never writes into the delivery and never imports into a host; it
returns a :class:`FormatReport` with counts for the audit log, or raises
:class:`~sealport.errors.UnsafeAsset` ("... Nothing was imported.").

| format | module | reader |
|---|---|---|
| usd (.usd/.usda/.usdc), usdz | :mod:`.usd` | usd-core ``pxr`` (Sdf per layer, then Usd.Stage) |
| glb | :mod:`.glb` | own container parser + ``json`` |
| obj | :mod:`.obj` | own line reader |
| stl | :mod:`.stl` | own header/ASCII reader + numpy chunked reads |
| fbx | :mod:`.fbx` | own node-tree reader :mod:`.fbxtree` + ``ufbx`` in a child |
| 3mf | :mod:`.threemf` | :mod:`.zipcheck` + ``defusedxml`` streaming |
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePath

from ..errors import UnsafeAsset
from .isolated import check_in_child, python_available
from .report import DEFAULT_MAX_BYTES, FormatReport, refuse
from .threemf import read_3mf_mesh

ISOLATED_FORMATS = frozenset({"usd", "usdz"})
"""Formats whose reader library is not memory-safe enough to run in-process.

FBX is not listed: its check runs the pure-Python node-tree reader in-process and
starts the ufbx child itself (:mod:`.fbx`). USD joined FBX here after tests/fuzz/fuzz_usd.py found a corrupt usdc layer that
makes usd-core abort the whole process ("FATAL ERROR: Dereferenced an invalid
SdfPrimSpec"; regression input tests/fuzz/corpus/usd/regress-pxr-abort)."""

FORMATS = ("usd", "usdz", "fbx", "obj", "stl", "glb", "3mf")

EXTENSIONS: dict[str, str] = {
    ".usd": "usd",
    ".usda": "usd",
    ".usdc": "usd",
    ".usdz": "usdz",
    ".fbx": "fbx",
    ".obj": "obj",
    ".stl": "stl",
    ".glb": "glb",
    ".3mf": "3mf",
}

Checker = Callable[..., FormatReport]


def detect_format(filename: str) -> str:
    """The Sealport format name for a file name, by extension (case-insensitive)."""
    suffix = PurePath(filename).suffix.lower()
    fmt = EXTENSIONS.get(suffix)
    if fmt is None:
        raise UnsafeAsset(
            f"'{PurePath(filename).name}' is not a format Sealport can import safely "
            f"(accepted: {', '.join(sorted(EXTENSIONS))}). Nothing was imported.",
            f"filename={filename!r} suffix={suffix!r}",
        )
    return fmt


def _checker(fmt: str) -> Checker:
    # Imported lazily: pxr and numpy are heavy, and a host may only ever see one format.
    if fmt == "usd":
        from .usd import check_usd

        return check_usd
    if fmt == "usdz":
        from .usd import check_usdz

        return check_usdz
    if fmt == "glb":
        from .glb import check_glb

        return check_glb
    if fmt == "obj":
        from .obj import check_obj

        return check_obj
    if fmt == "stl":
        from .stl import check_stl

        return check_stl
    if fmt == "fbx":
        from .fbx import check_fbx

        return check_fbx
    from .threemf import check_3mf

    return check_3mf


def check_file(path: Path, fmt: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> FormatReport:
    """Run the safe reader for ``fmt`` on ``path``; raise UnsafeAsset on any problem.

    ``fmt`` comes from the signed manifest, not from the file name (the
    delivery is checked while it still has its temporary name).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise UnsafeAsset(
            f"The delivery declares the format {fmt!r}, which Sealport cannot check. "
            "Nothing was imported.",
            f"format={fmt!r} path={path}",
        )
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise refuse(path, fmt, "the file could not be read", repr(exc)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise refuse(path, fmt, "it is not a regular file", f"mode={st.st_mode:o}")
    if st.st_size == 0:
        raise refuse(path, fmt, "the file is empty")
    if st.st_size > max_bytes:
        raise refuse(
            path,
            fmt,
            f"it is larger than the {max_bytes} byte limit",
            f"size={st.st_size} limit={max_bytes}",
        )
    try:
        if fmt in ISOLATED_FORMATS and python_available():
            return check_in_child(path, fmt, max_bytes)
        return _checker(fmt)(path, max_bytes=max_bytes)
    except UnsafeAsset:
        raise
    except MemoryError as exc:
        raise refuse(path, fmt, "it needs more memory than a safe check allows") from exc
    except RecursionError as exc:
        raise refuse(path, fmt, "it is nested too deeply") from exc
    except Exception as exc:  # fail closed: a reader crash on hostile input is a refusal
        raise refuse(
            path, fmt, "the safety check could not read it", f"{type(exc).__name__}: {exc}"[:2000]
        ) from exc


__all__ = [
    "DEFAULT_MAX_BYTES",
    "EXTENSIONS",
    "FORMATS",
    "FormatReport",
    "check_file",
    "detect_format",
    "read_3mf_mesh",
]
