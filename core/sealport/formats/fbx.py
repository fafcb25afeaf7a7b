"""FBX safe reader: header check, then a full load with ``ufbx``.

We check the binary header ourselves (``Kaydara FBX Binary  \\x00\\x1a\\x00`` +
uint32 version) so garbage never reaches the C parser, then let ufbx (a
fuzzed, single-file C loader) parse the whole file with the strictest options
it has: ``strict``, out-of-range indices abort the load, a node depth limit,
and external files are never loaded. Truncated files, bad offsets and broken
compressed arrays come back as ``ufbx.UfbxError`` and are refused.

Policy on references: textures, videos, audio clips and geometry caches may
name files. Embedded content is fine. A reference without embedded content is
refused when its stored path is absolute, climbs with ``..``, or is a URL/UNC
path (a host importer would read that file, or reach the network); a plain
relative name is accepted with a warning (the image simply was not delivered).
Note FBX exporters store an absolute path next to the relative one, so a
non-embedded texture from most tools is refused: deliver FBX with embedded
media ("Path Mode: Copy" + "Embed Textures" in Blender).

ASCII FBX is refused with a clear message: Blender's importer (our first host)
cannot read it, and one binary code path is easier to keep safe.

Limits: the ufbx Python binding (0.0.x) silently ignores allocator options
(``temp_allocator``/``result_allocator`` memory limits), so memory is bounded
only by the caller's ``max_bytes`` size cap and ufbx's own sanity checks.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from .refs import reference_problem
from .report import FormatReport, refuse

FMT = "fbx"
MAGIC = b"Kaydara FBX Binary  \x00\x1a\x00"
MIN_VERSION, MAX_VERSION = 6100, 7700
NODE_DEPTH_LIMIT = 256


def _check_header(path: Path, size: int) -> int:
    with open(path, "rb") as f:
        head = f.read(27)
    if head[:23] != MAGIC:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if text.startswith((b"; FBX", b"FBXHeaderExtension")):
            raise refuse(
                path,
                FMT,
                "it is an ASCII FBX file; only binary FBX is accepted (re-export as binary)",
                f"head={head!r}",
            )
        raise refuse(path, FMT, "it is not a binary FBX file (bad header)", f"head={head[:27]!r}")
    if len(head) < 27:
        raise refuse(path, FMT, "it is truncated inside the FBX header", f"size={size}")
    (version,) = struct.unpack_from("<I", head, 23)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise refuse(
            path,
            FMT,
            f"it declares FBX version {version}, which is not supported",
            f"supported {MIN_VERSION}..{MAX_VERSION}",
        )
    return version


def _embedded(obj: Any) -> bool:
    content = getattr(obj, "content", b"")
    if content:
        return True
    video = getattr(obj, "video", None)
    return bool(video is not None and video.content)


def _check_references(path: Path, groups: list[tuple[str, list[Any]]]) -> list[str]:
    """Refuse non-embedded references to unsafe paths; warn about missing media."""
    warnings: list[str] = []
    for kind, elements in groups:
        for element in elements:
            if _embedded(element):
                continue
            names = [element.absolute_filename, element.relative_filename]
            names = [n for n in names if n]
            for name in names:
                why = reference_problem(name)
                if why:
                    raise refuse(
                        path,
                        FMT,
                        f"a {kind} refers to the file {name[:200]!r} ({why}) "
                        "instead of embedding it",
                        f"{kind} {element.name!r}: absolute={element.absolute_filename!r} "
                        f"relative={element.relative_filename!r}",
                    )
            if names:
                warnings.append(f"{kind} {names[0]} is not embedded and was not delivered")
    return warnings


def check_fbx(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a binary FBX file; see the module docstring for the policy."""
    import ufbx

    size = path.stat().st_size
    version = _check_header(path, size)
    try:
        scene = ufbx.load_file(
            str(path),
            file_format=ufbx.FileFormat.FBX,
            no_format_from_extension=True,
            load_external_files=False,
            strict=True,
            index_error_handling=ufbx.IndexErrorHandling.ABORT_LOADING,
            node_depth_limit=NODE_DEPTH_LIMIT,
        )
    except ufbx.UfbxError as exc:
        raise refuse(
            path,
            FMT,
            f"the FBX reader could not load it ({type(exc).__name__})",
            str(exc)[:2000],
        ) from exc
    # Every ufbx list is materialised exactly once and kept alive until free():
    # ufbx 0.0.5's binding segfaults when an element is wrapped again after its
    # first Python wrapper was collected (e.g. iterating scene.meshes twice).
    lists: dict[str, list[Any]] = {}
    try:
        if scene.metadata.ascii:
            raise refuse(path, FMT, "it is an ASCII FBX file; only binary FBX is accepted")
        for name in ("meshes", "nodes", "materials", "textures", "videos"):
            lists[name] = list(getattr(scene, name))
        lists["audio_clips"] = list(scene.audio_clips)
        lists["cache_files"] = list(scene.cache_files)
        lists["warnings"] = list(scene.metadata.warnings)
        warnings = _check_references(
            path,
            [
                ("texture", lists["textures"]),
                ("video", lists["videos"]),
                ("audio clip", lists["audio_clips"]),
                ("geometry cache", lists["cache_files"]),
            ],
        )
        warnings.extend(str(w.description) for w in lists["warnings"][:10])
        meshes = lists["meshes"]
        summary: dict[str, int | str] = {
            "version": version,
            "meshes": len(meshes),
            "vertices": sum(m.num_vertices for m in meshes),
            "faces": sum(m.num_faces for m in meshes),
            "triangles": sum(m.num_triangles for m in meshes),
            "nodes": len(lists["nodes"]),
            "materials": len(lists["materials"]),
            "textures": len(lists["textures"]),
            "creator": str(scene.metadata.creator)[:80],
        }
    finally:
        lists.clear()
        scene.free()
    return FormatReport(FMT, size, summary, tuple(warnings))
