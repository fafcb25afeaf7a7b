"""FBX safe reader: our bounded node-tree check, plus ufbx in a child process.

1. **Structural check, always, in-process** (:mod:`.fbxtree`, pure Python): the
   binary header, every node's and property's offsets and lengths against their
   enclosing bounds, depth and node-count caps, each mesh's polygon indices in
   range (arrays decoded with zlib output bounded by the declared size), and
   the reference policy below applied to every ``Video``, ``Texture``,
   ``Audio`` and ``Cache`` object. Nothing here can crash the process, so this
   is also the whole check inside a DCC whose ``sys.executable`` is not Python
   (Blender, Maya): the ufbx binding never runs in an artist's DCC.
2. **ufbx second opinion, only in a child process** where a Python interpreter
   is available (:mod:`.isolated`): ufbx (a fuzzed C loader) parses the whole
   scene with its strictest options (``strict``, out-of-range indices abort,
   node depth limit, no external files). The ufbx 0.0.5 binding corrupts
   memory (measured: it segfaults on every valid file under
   ``PYTHONMALLOC=debug``; see ``docs/FBX.md``), so it never runs in-process.

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
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import fbxtree
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


_MEDIA_KINDS = {
    b"Video": "video",
    b"Texture": "texture",
    b"Audio": "audio clip",
    b"Cache": "geometry cache",
}
_NAME_NODES = (b"FileName", b"Filename", b"RelativeFilename")
_NAME_PROPS = (
    b"Path",
    b"RelativePath",
    b"FileName",
    b"RelativeFilename",
    b"CacheFileName",
    b"CacheAbsoluteFileName",
)


def _text(tree: fbxtree.FbxTree, prop: fbxtree.Prop) -> str:
    return tree.string(prop).decode("utf-8", "replace")


def _tree_media(tree: fbxtree.FbxTree) -> list[_Media]:
    """File references of every media object, read from the node tree.

    Conservative on purpose: every file-name child node (``FileName``,
    ``Filename``, ``RelativeFilename``) and every ``Properties70`` entry with
    a path-like name is judged; a non-empty ``Content`` blob means embedded,
    for a texture also the ``Content`` of a video connected to it (``OO``).
    """
    objects = tree.root(b"Objects")
    found: list[tuple[int | float | None, bytes, str, list[str], bool]] = []
    for obj in objects.children if objects is not None else []:
        kind = _MEDIA_KINDS.get(obj.name)
        if kind is None:
            continue
        names: list[str] = []
        embedded = False
        for c in obj.children:
            if c.name in _NAME_NODES and c.props and c.props[0].code == b"S":
                names.append(_text(tree, c.props[0]))
            elif c.name == b"Content" and c.props and c.props[0].code == b"R":
                embedded = embedded or c.props[0].data_len > 0
            elif c.name == b"Properties70":
                for p in c.children:
                    if p.name == b"P" and len(p.props) >= 5 and p.props[0].code == b"S":
                        if tree.string(p.props[0]) in _NAME_PROPS and p.props[4].code == b"S":
                            names.append(_text(tree, p.props[4]))
        label = (
            _text(tree, obj.props[1]) if len(obj.props) > 1 and obj.props[1].code == b"S" else ""
        )
        oid = obj.props[0].value if obj.props else None
        found.append((oid, obj.name, label.split("\x00")[0], names, embedded))
    with_content = {oid for oid, name, _, _, emb in found if name == b"Video" and emb}
    fed = _connected_from(tree, with_content)
    media: list[_Media] = []
    for oid, name, label, names, embedded in found:
        embedded = embedded or (name == b"Texture" and oid in fed)
        names = list(dict.fromkeys(n for n in names if n))  # each distinct name judged once
        pairs = [names[i : i + 2] for i in range(0, len(names), 2)] or [[]]
        for pair in pairs:
            absolute, relative = (pair + ["", ""])[:2]
            media.append(_Media(_MEDIA_KINDS[name], label, absolute, relative, embedded))
    return media


def _connected_from(tree: fbxtree.FbxTree, sources: set[int | float | None]) -> set[int | float]:
    """Ids of objects that one of ``sources`` is connected to (object-object links)."""
    conns = tree.root(b"Connections")
    out: set[int | float] = set()
    for c in conns.children if conns is not None and sources else []:
        p = c.props
        if c.name == b"C" and len(p) >= 3 and p[0].code == b"S" and tree.string(p[0]) == b"OO":
            if p[1].value in sources and p[2].value is not None:
                out.add(p[2].value)
    return out


def _tree_facts(
    path: Path, data: bytes | mmap.mmap
) -> tuple[fbxtree.FbxTree, dict[str, int | str]]:
    try:
        tree = fbxtree.parse(data)
        verts = faces = tris = 0
        geos = fbxtree.geometries(tree)
        for geo in geos:
            n = len(fbxtree.points(tree, geo))
            counts, _ = fbxtree.polygons(tree, geo, n)
            verts, faces, tris = (
                verts + n,
                faces + len(counts),
                tris + int((counts - 2).clip(0).sum()),
            )
    except fbxtree.FbxTreeError as exc:
        raise refuse(path, FMT, exc.problem, exc.detail) from None
    return tree, {
        "meshes": len(geos),
        "vertices": verts,
        "faces": faces,
        "triangles": tris,
        "nodes": tree.nodes,
    }


def check_fbx(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a binary FBX file; see the module docstring for the two stages."""
    from .isolated import check_in_child, python_available

    size = path.stat().st_size
    version = _check_header(path, size)
    if size > max_bytes:
        raise refuse(path, FMT, f"it is larger than the {max_bytes} byte limit", f"size={size}")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        tree, summary = _tree_facts(path, data)  # mapped, not read: large files stay cheap
        warnings = _judge_references(path, _tree_media(tree))
        del tree
    reader = "node tree"
    if python_available():
        deep = check_in_child(path, FMT, max_bytes)
        warnings += [w for w in deep.warnings if w not in warnings]
        summary.update({k: v for k, v in deep.summary.items() if k not in summary})
        reader = "node tree + ufbx (child process)"
    return FormatReport(
        FMT, size, {"version": version, **summary, "reader": reader}, tuple(warnings)
    )


def check_fbx_ufbx(path: Path, *, max_bytes: int) -> FormatReport:
    """The ufbx load; run only in a child process (see :mod:`.isolated`)."""
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
