"""3MF safe reader: zip checks, defused streaming XML, index bounds.

A 3MF file is an OPC zip package: ``[Content_Types].xml``, ``_rels/.rels``
(which names the model part, usually ``3D/3dmodel.model``) and the model XML.
The zip is vetted first (:mod:`.zipcheck`: zip-slip, symlinks, bombs). Every
XML part is parsed with ``defusedxml`` with DTDs, entities and external
references forbidden, so "billion laughs" and XXE never expand. The model is
parsed as a stream (each finished element is dropped), so memory stays flat
for big meshes. Each ``<triangle>`` must name vertices of its own mesh;
``path`` attributes (production/material extensions) must name a part inside
the package; build items and components must name existing objects.

:func:`read_3mf_mesh` returns the build's geometry as numpy arrays, for hosts
without a 3MF importer (Blender): the same checks, plus the transforms.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from .refs import reference_problem
from .report import DEFAULT_MAX_BYTES, FormatReport, refuse
from .zipcheck import ZipLimits, check_zip, read_member_bounded

FMT = "3mf"
MODEL_REL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
DEFAULT_MODEL = "3D/3dmodel.model"
MAX_SMALL_XML = 4 * 1024**2
MAX_COMPONENT_DEPTH = 16
IDENTITY = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float64)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass
class _Object:
    vertices: array[float] = field(default_factory=lambda: array("d"))
    triangles: array[int] = field(default_factory=lambda: array("q"))
    n_vertices: int = 0
    n_triangles: int = 0
    components: list[tuple[int, np.ndarray]] = field(default_factory=list)


@dataclass
class _Model:
    objects: dict[int, _Object] = field(default_factory=dict)
    build: list[tuple[int, np.ndarray]] = field(default_factory=list)
    external_parts: int = 0
    warnings: list[str] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


def _parse_xml_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    from defusedxml.ElementTree import fromstring

    data = read_member_bounded(zf, info, MAX_SMALL_XML)
    return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)


def _part_name(target: str, names: set[str], where: str) -> str:
    """A package part reference ("/3D/x.model") -> member name, refused if outside."""
    name = target[1:] if target.startswith("/") else target
    why = reference_problem(name)
    if why is None and "\\" in name:
        why = "it uses backslashes"
    if why:
        raise _Bad(f"{where} refers to {target!r} ({why})", target)
    if name not in names:
        raise _Bad(f"{where} refers to {target!r}, which is not in the package", target)
    return name


def _model_part(zf: zipfile.ZipFile, names: dict[str, zipfile.ZipInfo]) -> str:
    if "[Content_Types].xml" not in names:
        raise _Bad("it has no [Content_Types].xml part (not a 3MF package)")
    _parse_xml_small(zf, names["[Content_Types].xml"])
    if "_rels/.rels" in names:
        rels = _parse_xml_small(zf, names["_rels/.rels"])
        for rel in rels:
            if _local(rel.tag) == "Relationship" and rel.get("Type") == MODEL_REL:
                return _part_name(rel.get("Target", ""), set(names), "the package relationship")
    if DEFAULT_MODEL in names:
        return DEFAULT_MODEL
    raise _Bad("it has no 3D model part (3D/3dmodel.model)")


def _transform(text: str | None, where: str) -> np.ndarray:
    if not text:
        return IDENTITY
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise _Bad(f"{where} has a malformed transform", text[:200]) from None
    if len(values) != 12 or not all(math.isfinite(v) for v in values):
        raise _Bad(f"{where} has a malformed transform", text[:200])
    return np.array(values, dtype=np.float64).reshape(4, 3)


def _int_attr(elem: Any, key: str, where: str) -> int:
    try:
        return int(elem.get(key, ""))
    except ValueError:
        raise _Bad(f"{where} has a malformed '{key}'", repr(elem.get(key))) from None


def _events(stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
    return iterparse(
        stream,
        events=("start", "end"),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )


def _parse_model(stream: IO[bytes], names: set[str], collect: bool) -> _Model:
    """Stream the model XML once; count (and optionally keep) geometry."""
    model = _Model()
    stack: list[Any] = []
    current: _Object | None = None
    current_id = -1
    for event, elem in _events(stream):
        tag = _local(elem.tag)
        if event == "start":
            if not stack and tag != "model":
                raise _Bad("its model part does not start with <model>", tag)
            if tag == "object":
                current_id = _int_attr(elem, "id", "an object")
                if current_id in model.objects:
                    raise _Bad(f"object id {current_id} is defined twice")
                current = _Object()
                model.objects[current_id] = current
            stack.append(elem)
            continue
        # end event: handle, then drop the element so memory stays flat
        stack.pop()
        for key, value in elem.attrib.items():
            if _local(key) == "path":
                _part_name(value, names, f"a <{tag}> element")
                model.external_parts += tag in ("component", "item")
        if tag == "vertex" and current is not None:
            try:
                xyz = (float(elem.get("x")), float(elem.get("y")), float(elem.get("z")))
            except (TypeError, ValueError):
                raise _Bad(
                    f"object {current_id} has a malformed vertex", str(elem.attrib)[:200]
                ) from None
            if not all(math.isfinite(c) for c in xyz):
                raise _Bad(f"object {current_id} has a vertex that is not a number")
            current.n_vertices += 1
            if collect:
                current.vertices.extend(xyz)
        elif tag == "triangle" and current is not None:
            tri = [_int_attr(elem, k, f"object {current_id} triangle") for k in ("v1", "v2", "v3")]
            for v in tri:
                if not 0 <= v < current.n_vertices:
                    raise _Bad(
                        f"a triangle of object {current_id} uses a vertex that does not exist",
                        f"index {v} with {current.n_vertices} vertices",
                    )
            current.n_triangles += 1
            if collect:
                current.triangles.extend(tri)
        elif tag == "component" and current is not None:
            ref = _int_attr(elem, "objectid", f"object {current_id} component")
            has_path = any(_local(k) == "path" for k in elem.attrib)
            if not has_path:
                if ref not in model.objects or ref == current_id:
                    raise _Bad(f"object {current_id} uses a missing object {ref} as a component")
                current.components.append((ref, _transform(elem.get("transform"), "component")))
        elif tag == "object":
            current = None
        elif tag == "item":
            ref = _int_attr(elem, "objectid", "a build item")
            if not any(_local(k) == "path" for k in elem.attrib):
                if ref not in model.objects:
                    raise _Bad(f"the build uses a missing object {ref}")
                model.build.append((ref, _transform(elem.get("transform"), "a build item")))
        if stack:
            stack[-1].remove(elem)
        elem.clear()
    if model.external_parts:
        model.warnings.append(
            f"{model.external_parts} components/items live in other model parts (not counted)"
        )
    return model


def _open_model(path: Path, max_bytes: int, collect: bool) -> _Model:
    infos = check_zip(path, FMT, ZipLimits(max_total_bytes=max_bytes))
    names = {i.filename: i for i in infos}
    try:
        with zipfile.ZipFile(path) as zf:
            part = _model_part(zf, names)
            with zf.open(names[part]) as stream:
                return _parse_model(stream, set(names), collect)
    except _Bad as bad:
        raise refuse(path, FMT, bad.problem, bad.detail) from None
    except DefusedXmlException as exc:
        raise refuse(
            path,
            FMT,
            "its XML uses a DTD or entities, which 3MF never needs (possible entity-expansion "
            "or external-entity attack)",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    except (
        SyntaxError,
        zipfile.BadZipFile,
        zlib.error,
        LookupError,
        NotImplementedError,
        ValueError,
        EOFError,
        OSError,
    ) as exc:
        # xml.etree.ElementTree.ParseError is a SyntaxError; a bad CRC is BadZipFile.
        # Found by tests/fuzz/fuzz_3mf.py: a corrupt deflate stream raises zlib.error,
        # an XML declaration naming an unknown encoding raises LookupError, a local header
        # flagging "compressed patched data" (bit 5) raises NotImplementedError.
        raise refuse(path, FMT, "its XML or zip data is corrupt", repr(exc)[:1000]) from exc


def check_3mf(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a 3MF package; see the module docstring."""
    size = path.stat().st_size
    model = _open_model(path, max_bytes, collect=False)
    meshes = [o for o in model.objects.values() if o.n_vertices]
    if not meshes and not model.external_parts:
        raise refuse(path, FMT, "it contains no mesh")
    summary: dict[str, int | str] = {
        "objects": len(model.objects),
        "meshes": len(meshes),
        "vertices": sum(o.n_vertices for o in meshes),
        "faces": sum(o.n_triangles for o in meshes),
        "build_items": len(model.build),
    }
    return FormatReport(FMT, size, summary, tuple(model.warnings))


def _instances(
    model: _Model, obj_id: int, xform: np.ndarray, depth: int
) -> Iterator[tuple[_Object, np.ndarray]]:
    """(mesh object, accumulated 4x3 transform) for an object and its components."""
    if depth > MAX_COMPONENT_DEPTH:
        raise _Bad("its components nest too deeply")
    obj = model.objects[obj_id]
    if obj.n_vertices:
        yield obj, xform
    for child, local in obj.components:
        combined = np.vstack([local[:3] @ xform[:3], local[3] @ xform[:3] + xform[3]])
        yield from _instances(model, child, combined, depth + 1)


def read_3mf_mesh(
    path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """All triangles of a checked 3MF build as ``(vertices (N,3) float64, faces (M,3) int64)``.

    Runs every :func:`check_3mf` check (raises UnsafeAsset the same way), then
    places each build item's mesh (and its components) with its transform
    (3MF row-vector convention: ``p' = p @ M[:3] + M[3]``). Without build
    items every mesh object is returned untransformed.
    """
    path = Path(path)
    model = _open_model(path, max_bytes, collect=True)
    roots = model.build or [(i, IDENTITY) for i, o in model.objects.items() if o.n_vertices]
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    offset = 0
    try:
        for obj_id, xform in roots:
            for obj, total in _instances(model, obj_id, xform, 0):
                v = np.frombuffer(obj.vertices, dtype=np.float64).reshape(-1, 3)
                f = np.frombuffer(obj.triangles, dtype=np.int64).reshape(-1, 3)
                verts.append(v @ total[:3] + total[3])
                faces.append(f + offset)
                offset += len(v)
    except _Bad as bad:
        raise refuse(path, FMT, bad.problem, bad.detail) from None
    if not verts:
        raise refuse(path, FMT, "it contains no mesh")
    return np.concatenate(verts), np.concatenate(faces)


__all__ = ["check_3mf", "read_3mf_mesh"]
