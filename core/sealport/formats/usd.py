"""USD (.usd/.usda/.usdc) and USDZ safe reader, on Pixar's usd-core (``pxr``).

A USD stage composes other files on open: sublayers, references, payloads,
value clips, and every ``asset``-valued attribute or metadata is a path the
host will resolve (and may fetch: URLs, absolute paths, search paths). So the
order is: parse each layer *alone* with ``Sdf`` (no composition), list every
asset path it contains (``UsdUtils.ModifyAssetPaths`` visits all of them:
composition arcs, attributes, time samples, clips, dictionaries; plus
``GetCompositionAssetDependencies``), judge them, and only then open the
composed ``Usd.Stage`` to count prims and meshes.

Policy: a standalone .usd delivery must be self-contained: any non-empty
asset path is refused. A USDZ may refer to files inside its own package only:
plain relative names (no absolute paths, ``..``, URLs, expressions, format
arguments or nested packages) that name an existing member. USDZ members must
be stored uncompressed (the USDZ spec; USD memory-maps them).

``pxr`` picks the file format by extension and caches layers by path, so the
checks run on a fresh hard link (or copy) named ``asset.usd``/``asset.usdz``
in a private temporary folder: the delivered temp file may have any name,
and a stale cached layer can never answer for new bytes.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .refs import reference_problem
from .report import FormatReport, refuse
from .zipcheck import ZipLimits, check_zip

LAYER_EXTS = frozenset({".usd", ".usda", ".usdc"})
"""Layer files USD opens itself."""

USDZ_MEDIA_EXTS = frozenset({".png", ".jpg", ".jpeg", ".exr", ".avif", ".m4a", ".mp3", ".wav"})
"""Other member types the USDZ specification allows."""


@contextmanager
def _staged(path: Path, suffix: str) -> Iterator[Path]:
    """A private link (or copy) of ``path`` named ``asset<suffix>``; removed afterwards."""
    try:
        tmpdir = tempfile.mkdtemp(prefix=".sealport-usd-", dir=path.parent)
    except OSError:
        tmpdir = tempfile.mkdtemp(prefix="sealport-usd-")
    staged = Path(tmpdir) / f"asset{suffix}"
    try:
        try:
            os.link(path, staged)
        except OSError:
            shutil.copyfile(path, staged)
        yield staged
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _error_text(exc: BaseException) -> str:
    """The text of a pxr error for the TD detail, even when it is not valid UTF-8.

    ``Tf.ErrorException.__str__`` decodes the C++ messages, which quote bytes of
    the (hostile) file: it raises UnicodeDecodeError on non-UTF-8 input (found by
    tests/fuzz/fuzz_usd.py), which must not replace the refusal.
    """
    try:
        return str(exc).strip()[:2000]
    except UnicodeError:
        return f"{type(exc).__name__} (message is not valid UTF-8)"


def _open_layer(identifier: str, path: Path, fmt: str) -> Any:
    from pxr import Sdf, Tf

    try:
        layer = Sdf.Layer.FindOrOpen(identifier)
    except Tf.ErrorException as exc:
        raise refuse(path, fmt, "it is not a valid USD file", _error_text(exc)) from exc
    if layer is None:
        raise refuse(path, fmt, "it is not a valid USD file", f"cannot open {identifier}")
    return layer


def layer_asset_paths(layer: Any) -> list[str]:
    """Every asset path written in ``layer`` (arcs, attributes, samples, clips, metadata)."""
    from pxr import UsdUtils

    found: list[str] = list(layer.GetCompositionAssetDependencies())
    found.extend(layer.GetExternalAssetDependencies())

    def visit(asset_path: str) -> str:
        found.append(asset_path)
        return asset_path  # unchanged: the layer is only read

    UsdUtils.ModifyAssetPaths(layer, visit)
    return [p for p in dict.fromkeys(found) if p.strip()]


def _checked_asset_paths(layer: Any, path: Path, fmt: str) -> list[str]:
    """:func:`layer_asset_paths`, with a corrupt usdc value (read while visiting) refused."""
    from pxr import Tf

    try:
        return layer_asset_paths(layer)
    except (Tf.ErrorException, TypeError) as exc:  # found by tests/fuzz/fuzz_usd.py
        raise refuse(path, fmt, "its USD data is corrupt", _error_text(exc)) from exc


def _count_stage(identifier: str, path: Path, fmt: str) -> tuple[dict[str, int | str], list[str]]:
    from pxr import Tf, Usd, UsdGeom

    try:
        stage = Usd.Stage.Open(identifier, Usd.Stage.LoadAll)
    except Tf.ErrorException as exc:
        raise refuse(path, fmt, "the USD stage could not be composed", _error_text(exc)) from exc
    if stage is None:
        raise refuse(path, fmt, "the USD stage could not be composed", identifier)
    prims = meshes = points = faces = 0
    early = Usd.TimeCode.EarliestTime()
    predicate = Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate)
    try:
        for prim in stage.Traverse(predicate):
            prims += 1
            if prim.IsA(UsdGeom.Mesh):
                meshes += 1
                mesh = UsdGeom.Mesh(prim)
                pts = mesh.GetPointsAttr().Get(early)
                counts = mesh.GetFaceVertexCountsAttr().Get(early)
                points += len(pts) if pts is not None else 0
                faces += len(counts) if counts is not None else 0
        warnings: list[str] = []
        if hasattr(stage, "GetCompositionErrors"):
            warnings = [str(e.GetErrorMessage()) for e in stage.GetCompositionErrors()][:20]
        summary: dict[str, int | str] = {
            "prims": prims,
            "meshes": meshes,
            "vertices": points,
            "faces": faces,
            "layers": sum(1 for layer in stage.GetUsedLayers() if not layer.anonymous),
            "up_axis": str(UsdGeom.GetStageUpAxis(stage)),
        }
    except (Tf.ErrorException, TypeError) as exc:
        # A corrupt usdc value surfaces only when read: Tf.ErrorException, or a TypeError
        # for a value type without a Python converter; stage metadata too (an upAxis
        # of another type). All found by tests/fuzz/fuzz_usd.py.
        raise refuse(path, fmt, "its USD data is corrupt", _error_text(exc)) from exc
    return summary, warnings


def check_usd(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a standalone .usd/.usda/.usdc: it must refer to no other file at all."""
    fmt = "usd"
    size = path.stat().st_size
    with _staged(path, ".usd") as staged:
        layer = _open_layer(str(staged), path, fmt)
        for asset_path in _checked_asset_paths(layer, path, fmt):
            why = reference_problem(asset_path) or (
                "a USD delivery must be self-contained and may not load other files"
            )
            raise refuse(
                path,
                fmt,
                f"it refers to the file {asset_path!r} ({why})",
                f"asset path={asset_path!r} in layer {layer.identifier}",
            )
        summary, warnings = _count_stage(str(staged), path, fmt)
        with open(path, "rb") as f:
            magic = f.read(8)
        summary["encoding"] = "usdc" if magic.startswith(b"PXR-USDC") else "usda"
        del layer
    return FormatReport(fmt, size, summary, tuple(warnings))


_UDIM = "<UDIM>"


def _package_target(member: str, asset_path: str, names: set[str], path: Path, fmt: str) -> str:
    """Resolve ``asset_path`` written in package member ``member``; refuse if it leaves."""
    why = reference_problem(asset_path)
    if why is None and ("[" in asset_path or "]" in asset_path):
        why = "it points into a nested package"
    if why is None and ":" in asset_path:
        why = "it carries file format arguments"
    if why is None and "\\" in asset_path:
        why = "it uses backslashes"
    if why:
        raise refuse(
            path,
            fmt,
            f"it refers to {asset_path!r} ({why})",
            f"asset path={asset_path!r} in member {member!r}",
        )
    target = posixpath.normpath(posixpath.join(posixpath.dirname(member), asset_path))
    if _UDIM in target:
        pattern = re.compile(re.escape(target).replace(re.escape(_UDIM), r"\d{4}"))
        present = any(pattern.fullmatch(n) for n in names)
    else:
        present = target in names
    if not present:
        raise refuse(
            path,
            fmt,
            f"it refers to {asset_path!r}, which is not inside the package",
            f"asset path={asset_path!r} in member {member!r} -> {target!r}",
        )
    return target


def _check_stored_layout(path: Path, fmt: str, infos: list[Any]) -> list[str]:
    """USDZ members are stored, non-overlapping, and (ideally) 64-byte aligned."""
    warnings: list[str] = []
    size = path.stat().st_size
    spans: list[tuple[int, int, str]] = []
    with open(path, "rb") as f:
        for info in infos:
            if not 0 <= info.header_offset <= size - 30:  # found by tests/fuzz/fuzz_usd.py
                raise refuse(
                    path,
                    fmt,
                    "its zip directory is corrupt",
                    f"member {info.filename!r} local header offset {info.header_offset}",
                )
            if info.compress_type != 0 or info.compress_size != info.file_size:
                raise refuse(
                    path,
                    fmt,
                    f"the member {info.filename!r} is compressed; USDZ packages must store "
                    "their files uncompressed",
                    f"member={info.filename!r} method={info.compress_type}",
                )
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise refuse(
                    path, fmt, "its zip directory is corrupt", f"bad local header {info.filename}"
                )
            name_len, extra_len = struct.unpack_from("<HH", local, 26)
            start = info.header_offset + 30 + name_len + extra_len
            end = start + info.file_size
            if end > size:
                raise refuse(path, fmt, "it is truncated", f"member {info.filename} ends past EOF")
            if start % 64:
                warnings.append(f"member {info.filename} is not 64-byte aligned")
            spans.append((info.header_offset, end, info.filename))
    spans.sort()
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise refuse(
                path,
                fmt,
                "its files overlap inside the zip (a decompression bomb trick)",
                f"{name_a!r} overlaps {name_b!r}",
            )
    return warnings


def check_usdz(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a USDZ package: safe zip, stored members, references stay inside."""
    from pxr import Ar

    fmt = "usdz"
    size = path.stat().st_size
    infos = check_zip(path, fmt, ZipLimits(max_total_bytes=max_bytes))
    warnings = _check_stored_layout(path, fmt, infos)
    first = infos[0].filename
    if posixpath.splitext(first)[1].lower() not in LAYER_EXTS:
        raise refuse(
            path,
            fmt,
            "the first file in the package is not a USD layer",
            f"first member={first!r}",
        )
    names = {i.filename for i in infos}
    for name in sorted(names):
        ext = posixpath.splitext(name)[1].lower()
        if ext == ".usdz":
            raise refuse(path, fmt, f"it nests another USDZ package ({name!r})", name)
        if ext not in LAYER_EXTS and ext not in USDZ_MEDIA_EXTS:
            warnings.append(f"member {name} has a type the USDZ specification does not list")

    layer_members = [n for n in sorted(names) if posixpath.splitext(n)[1].lower() in LAYER_EXTS]
    with _staged(path, ".usdz") as staged:
        for member in layer_members:
            layer = _open_layer(Ar.JoinPackageRelativePath([str(staged), member]), path, fmt)
            for asset_path in _checked_asset_paths(layer, path, fmt):
                _package_target(member, asset_path, names, path, fmt)
            del layer
        summary, stage_warnings = _count_stage(str(staged), path, fmt)
    summary["members"] = len(names)
    return FormatReport(fmt, size, summary, tuple(warnings + stage_warnings))
