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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Media:
    """Plain-data copy of one file reference (no ufbx object may outlive the scene)."""

    kind: str
    name: str
    absolute: str
    relative: str
    embedded: bool


@dataclass
class _Facts:
    media: list[_Media]
    summary: dict[str, int | str]
    warnings: list[str]
    ascii: bool


def _collect(scene: Any) -> _Facts:
    """Copy everything we judge out of the scene into plain Python values.

    ufbx 0.0.5's binding crashes (segfault) when an element wrapper is used or
    collected after ``scene.free()``, or when the same list is wrapped twice.
    So each list is read exactly once, inside this function, which returns
    normally (an exception's traceback would keep wrappers alive past
    ``free()``); the caller judges the copied facts afterwards.
    """
    media: list[_Media] = []
    for kind, attr in (
        ("texture", "textures"),
        ("video", "videos"),
        ("audio clip", "audio_clips"),
        ("geometry cache", "cache_files"),
    ):
        for el in list(getattr(scene, attr)):
            content = bytes(getattr(el, "content", b"") or b"")
            video = getattr(el, "video", None)
            embedded = bool(content) or bool(video is not None and video.content)
            media.append(
                _Media(kind, el.name, el.absolute_filename, el.relative_filename, embedded)
            )
    meshes = [(m.num_vertices, m.num_faces, m.num_triangles) for m in list(scene.meshes)]
    meta = scene.metadata
    summary: dict[str, int | str] = {
        "meshes": len(meshes),
        "vertices": sum(m[0] for m in meshes),
        "faces": sum(m[1] for m in meshes),
        "triangles": sum(m[2] for m in meshes),
        "nodes": len(list(scene.nodes)),
        "materials": len(list(scene.materials)),
        "textures": sum(1 for m in media if m.kind == "texture"),
        "creator": str(meta.creator)[:80],
    }
    warnings = [str(w.description) for w in list(meta.warnings)[:10]]
    return _Facts(media, summary, warnings, bool(meta.ascii))


def _judge_references(path: Path, media: list[_Media]) -> list[str]:
    """Refuse non-embedded references to unsafe paths; warn about missing media."""
    warnings: list[str] = []
    for m in media:
        if m.embedded:
            continue
        names = [n for n in (m.absolute, m.relative) if n]
        for name in names:
            why = reference_problem(name)
            if why:
                raise refuse(
                    path,
                    FMT,
                    f"a {m.kind} refers to the file {name[:200]!r} ({why}) instead of embedding it",
                    f"{m.kind} {m.name!r}: absolute={m.absolute!r} relative={m.relative!r}",
                )
        if names:
            warnings.append(f"{m.kind} {names[0]} is not embedded and was not delivered")
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
        ) from None  # no ufbx objects on the traceback
    facts = _collect(scene)
    scene.free()
    del scene
    if facts.ascii:
        raise refuse(path, FMT, "it is an ASCII FBX file; only binary FBX is accepted")
    warnings = _judge_references(path, facts.media) + facts.warnings
    summary: dict[str, int | str] = {"version": version, **facts.summary}
    return FormatReport(FMT, size, summary, tuple(warnings))
