"""glTF binary (.glb) safe reader: our own container parser plus bounds checks.

The container is small enough to parse exactly (12-byte header, then chunks of
``length, type, data``), and doing it ourselves means every length is checked
against the real file size before anything trusts it. The JSON chunk must come
first and is size-bounded and depth-bounded, strict JSON (no ``NaN``/``Infinity``,
which Python's parser would accept, no duplicate keys); the BIN chunk (if any)
second.

Then the glTF references are checked, because host importers follow them:
a ``uri`` on a buffer or image must be absent (data lives in the BIN chunk via
bufferViews) or a ``data:`` URI; anything else (a relative file, an absolute
path, http) is refused. Every bufferView must lie inside its buffer, every
accessor inside its bufferView (with stride), and index accessors may not point
past the vertex count (read via a memory map of the BIN chunk, so memory stays
bounded for big files).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .report import FormatReport, refuse

MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
MAX_JSON_BYTES = 64 * 1024**2
MAX_JSON_DEPTH = 64
MAX_DATA_URI_BYTES = 256 * 1024**2

COMPONENT_SIZE = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
COMPONENT_DTYPE = {5121: "<u1", 5123: "<u2", 5125: "<u4"}
TYPE_COUNT = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
FMT = "glb"


class _Bad(Exception):
    """Internal: a structural problem, turned into UnsafeAsset at the top."""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(value, dict):
            stack.extend((v, d + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, d + 1) for v in value)
    return deepest


def _chunks(path: Path, size: int) -> tuple[bytes, int, int]:
    """Parse header + chunk table: (json bytes, bin offset, bin length)."""
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12:
            raise _Bad("it is too short to be a GLB file", f"size={size}")
        magic, version, length = struct.unpack("<4sII", header)
        if magic != MAGIC:
            raise _Bad("it is not a GLB file (bad magic)", f"magic={magic!r}")
        if version != 2:
            raise _Bad(f"it is glTF version {version}; only version 2 is accepted")
        if length != size:
            raise _Bad(
                "its header length does not match the file size (truncated or padded)",
                f"header={length} file={size}",
            )
        offset = 12
        json_bytes = b""
        bin_offset = bin_length = -1
        index = 0
        while offset < size:
            head = f.read(8)
            if len(head) < 8:
                raise _Bad("it ends in the middle of a chunk header", f"offset={offset}")
            chunk_len, chunk_type = struct.unpack("<II", head)
            data_start = offset + 8
            if chunk_len > size - data_start:
                raise _Bad(
                    "a chunk claims to be longer than the file",
                    f"chunk {index} type=0x{chunk_type:08x} length={chunk_len} at {offset}",
                )
            if index == 0:
                if chunk_type != CHUNK_JSON:
                    raise _Bad("its first chunk is not the JSON chunk", f"type=0x{chunk_type:08x}")
                if chunk_len > MAX_JSON_BYTES:
                    raise _Bad("its JSON chunk is too large", f"length={chunk_len}")
                json_bytes = f.read(chunk_len)
            else:
                if chunk_type == CHUNK_JSON:
                    raise _Bad("it has a second JSON chunk", f"chunk {index}")
                if chunk_type == CHUNK_BIN:
                    if index != 1:
                        raise _Bad("its BIN chunk is not the second chunk", f"chunk {index}")
                    bin_offset, bin_length = data_start, chunk_len
                f.seek(chunk_len, 1)  # unknown chunk types are skipped, per the spec
            offset = data_start + chunk_len
            index += 1
        if index == 0:
            raise _Bad("it has no JSON chunk")
    return json_bytes, bin_offset, bin_length


def _parse_json(raw: bytes) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise _Bad("its JSON has a duplicated key", repr(k))
            out[k] = v
        return out

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):  # 1e999 parses as infinity
            raise _Bad("its JSON has a number too large to represent", text[:40])
        return value

    def no_constants(name: str) -> float:
        # Python's json accepts NaN/Infinity; JSON (RFC 8259) and glTF do not.
        raise _Bad("its JSON contains NaN or Infinity, which JSON and glTF do not allow", name)

    try:
        doc = json.loads(
            raw.decode("utf-8").rstrip(" \x00"),
            object_pairs_hook=no_duplicates,
            parse_float=finite,
            parse_constant=no_constants,
        )
    except RecursionError as exc:
        raise _Bad("its JSON is nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Bad("its JSON chunk is not valid JSON", str(exc)[:300]) from exc
    if not isinstance(doc, dict):
        raise _Bad("its JSON is not an object")
    if _depth(doc) > MAX_JSON_DEPTH:
        raise _Bad("its JSON is nested too deeply")
    return doc


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Bad(f"its '{key}' list is malformed")
    return value


def _int(obj: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"{where} has an invalid '{key}'", repr(value))
    return value


def _index(obj: dict[str, Any], key: str, n: int, where: str) -> int:
    i = _int(obj, key, where)
    if i >= n:
        raise _Bad(f"{where} points to a missing {key} ({i} of {n})")
    return i


def _data_uri_length(uri: str, where: str) -> int:
    head, sep, payload = uri.partition(",")
    if not sep or ";base64" not in head:
        raise _Bad(f"{where} has a data URI that is not base64")
    if len(payload) > MAX_DATA_URI_BYTES * 4 // 3 + 4:
        raise _Bad(f"{where} has an oversized data URI")
    try:
        return len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise _Bad(f"{where} has a corrupt data URI") from exc


def _check_uri(obj: dict[str, Any], where: str) -> str | None:
    """Return the data: URI if present; refuse anything that would load a file or URL."""
    if "uri" not in obj:
        return None
    uri = obj["uri"]
    if not isinstance(uri, str):
        raise _Bad(f"{where} has a malformed uri")
    if uri.startswith("data:"):
        return uri
    raise _Bad(
        f"{where} loads an external file ({uri[:200]!r}); a GLB delivery must embed everything",
        f"uri={uri[:500]!r}",
    )


def _checked_document(doc: dict[str, Any], bin_length: int) -> Any:
    """:func:`_check_document`, with wrongly typed JSON values refused like any other lie.

    The checks index dicts by values taken from the file (``componentType``, ``type``,
    ``sparse``...); a list or object where a number or string belongs would otherwise
    escape as TypeError/AttributeError instead of a refusal.
    """
    try:
        return _check_document(doc, bin_length)
    except (TypeError, AttributeError, KeyError) as exc:
        raise _Bad(
            "its JSON has a value of the wrong type", f"{type(exc).__name__}: {exc}"
        ) from None


def _check_document(
    doc: dict[str, Any], bin_length: int
) -> tuple[list[int], list[tuple[int, int, int, int, int]]]:
    """Validate references and bounds. Returns (buffer lengths, index reads to verify)."""
    asset = doc.get("asset")
    if not isinstance(asset, dict) or not str(asset.get("version", "")).startswith("2."):
        raise _Bad("its JSON does not declare glTF 2.x")

    buffers = _list(doc, "buffers")
    buffer_lengths: list[int] = []
    for i, buf in enumerate(buffers):
        where = f"buffer {i}"
        length = _int(buf, "byteLength", where)
        uri = _check_uri(buf, where)
        if uri is None:
            if i != 0 or bin_length < 0:
                raise _Bad(f"{where} has no data (no BIN chunk)")
            available = bin_length
        else:
            available = _data_uri_length(uri, where)
        if length > available:
            raise _Bad(
                f"{where} claims {length} bytes but only {available} exist",
                f"byteLength={length} available={available}",
            )
        buffer_lengths.append(length)

    views = _list(doc, "bufferViews")
    for i, view in enumerate(views):
        where = f"bufferView {i}"
        b = _index(view, "buffer", len(buffers), where)
        off = _int(view, "byteOffset", where, 0)
        length = _int(view, "byteLength", where)
        if off + length > buffer_lengths[b]:
            raise _Bad(
                f"{where} reaches past the end of its buffer",
                f"offset={off} length={length} buffer={buffer_lengths[b]}",
            )
        if "byteStride" in view:
            stride = _int(view, "byteStride", where)
            if not 4 <= stride <= 252 or stride % 4:
                raise _Bad(f"{where} has an invalid byteStride", repr(stride))

    for i, img in enumerate(_list(doc, "images")):
        where = f"image {i}"
        if _check_uri(img, where) is None:
            if "bufferView" not in img:
                raise _Bad(f"{where} has neither embedded data nor a bufferView")
            _index(img, "bufferView", len(views), where)

    accessors = _list(doc, "accessors")
    for i, acc in enumerate(accessors):
        where = f"accessor {i}"
        count = _int(acc, "count", where)
        comp = acc.get("componentType")
        kind = acc.get("type")
        if comp not in COMPONENT_SIZE or kind not in TYPE_COUNT:
            raise _Bad(f"{where} has an unknown componentType/type", f"{comp!r}/{kind!r}")
        elem = COMPONENT_SIZE[comp] * TYPE_COUNT[kind]
        if "bufferView" in acc:
            v = _index(acc, "bufferView", len(views), where)
            view = views[v]
            stride = view.get("byteStride", elem)
            off = _int(acc, "byteOffset", where, 0)
            need = off + (count - 1) * stride + elem if count else 0
            if need > view["byteLength"]:
                raise _Bad(
                    f"{where} reads past the end of its bufferView",
                    f"needs {need} bytes, view has {view['byteLength']}",
                )
        sparse = acc.get("sparse")
        if sparse is not None:
            if not isinstance(sparse, dict):
                raise _Bad(f"{where} has malformed sparse data")
            scount = _int(sparse, "count", where)
            if scount > count:
                raise _Bad(f"{where} has more sparse entries than elements")
            for part, size in (
                ("indices", COMPONENT_SIZE.get(sparse.get("indices", {}).get("componentType"), 0)),
                ("values", elem),
            ):
                section = sparse.get(part)
                if not isinstance(section, dict) or not size:
                    raise _Bad(f"{where} has malformed sparse {part}")
                v = _index(section, "bufferView", len(views), f"{where} sparse {part}")
                off = _int(section, "byteOffset", where, 0)
                if off + scount * size > views[v]["byteLength"]:
                    raise _Bad(f"{where} sparse {part} read past the end of their bufferView")

    index_reads: list[tuple[int, int, int, int, int]] = []
    meshes = _list(doc, "meshes")
    for m, mesh in enumerate(meshes):
        prims = mesh.get("primitives")
        if not isinstance(prims, list) or not prims:
            raise _Bad(f"mesh {m} has no primitives")
        for p, prim in enumerate(prims):
            where = f"mesh {m} primitive {p}"
            if not isinstance(prim, dict) or not isinstance(prim.get("attributes"), dict):
                raise _Bad(f"{where} is malformed")
            mode = prim.get("mode", 4)
            if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 6:
                # glTF modes are the integers 0-6; anything else was counted as 0 faces
                raise _Bad(f"{where} has an invalid drawing mode", repr(mode)[:40])
            for name, a in prim["attributes"].items():
                if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < len(accessors):
                    raise _Bad(f"{where} attribute {name} points to a missing accessor")
            if "indices" in prim:
                a = _index(prim, "indices", len(accessors), where)
                acc = accessors[a]
                if acc.get("componentType") not in COMPONENT_DTYPE or acc.get("type") != "SCALAR":
                    raise _Bad(f"{where} has indices of an invalid type")
                pos = prim["attributes"].get("POSITION")
                if pos is not None and "bufferView" in acc and "sparse" not in acc:
                    view = views[acc["bufferView"]]
                    if view["buffer"] == 0 and "uri" not in buffers[0]:
                        index_reads.append(
                            (
                                view.get("byteOffset", 0) + acc.get("byteOffset", 0),
                                acc["count"],
                                acc["componentType"],
                                view.get("byteStride", COMPONENT_SIZE[acc["componentType"]]),
                                accessors[pos]["count"],
                            )
                        )
    for n, node in enumerate(_list(doc, "nodes")):
        if "mesh" in node:
            _index(node, "mesh", len(meshes), f"node {n}")
        children = node.get("children", [])
        if not isinstance(children, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(doc["nodes"])
            for c in children
        ):
            raise _Bad(f"node {n} has invalid children")
    return buffer_lengths, index_reads


def _check_indices(
    path: Path, bin_offset: int, reads: list[tuple[int, int, int, int, int]]
) -> None:
    """Every index value of every indexed primitive is below its vertex count."""
    if not reads:
        return
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        # primitives sharing an index accessor (and vertex count) are scanned once
        for offset, count, comp, stride, vertices in dict.fromkeys(reads):
            if count == 0:
                continue
            dtype = np.dtype(COMPONENT_DTYPE[comp])
            step = stride // dtype.itemsize
            chunk = 1 << 20
            for start in range(0, count, chunk):
                n = min(chunk, count - start)
                raw = np.frombuffer(
                    mm,
                    dtype=dtype,
                    count=(n - 1) * step + 1,
                    offset=bin_offset + offset + start * stride,
                )[::step]
                top = int(raw.max())
                if top >= vertices:
                    del raw
                    raise _Bad(
                        "a triangle uses a vertex that does not exist",
                        f"index {top} >= vertex count {vertices}",
                    )
                del raw


@dataclass(frozen=True)
class GlbDocument:
    """A GLB whose container, JSON and references passed the checks of this module.

    For callers that read mesh data themselves (the watermark layer): every
    bufferView lies inside its buffer and every accessor inside its bufferView,
    so an accessor's bytes can be read at ``bin_offset + view offset + accessor
    offset`` without further bounds checks. Index *values* are not scanned
    here; a reader that follows them must check them against the vertex count.
    """

    doc: dict[str, Any]
    json_end: int
    """File offset just past the JSON chunk (where the BIN chunk's header starts)."""
    bin_offset: int
    """File offset of the BIN chunk's data, -1 if there is none."""
    bin_length: int
    size: int


def read_document(path: Path) -> GlbDocument:
    """Parse and check a GLB's container and JSON (no index scan); UnsafeAsset if refused."""
    size = path.stat().st_size
    try:
        raw_json, bin_offset, bin_length = _chunks(path, size)
        doc = _parse_json(raw_json)
        _checked_document(doc, bin_length)
    except _Bad as bad:
        raise refuse(path, FMT, bad.problem, bad.detail) from None
    return GlbDocument(doc, 20 + len(raw_json), bin_offset, bin_length, size)


def check_glb(path: Path, *, max_bytes: int) -> FormatReport:
    """Check a .glb file; see the module docstring for what is refused."""
    size = path.stat().st_size
    try:
        raw_json, bin_offset, bin_length = _chunks(path, size)
        doc = _parse_json(raw_json)
        _, index_reads = _checked_document(doc, bin_length)
        _check_indices(path, bin_offset, index_reads)
    except _Bad as bad:
        raise refuse(path, FMT, bad.problem, bad.detail) from None
    accessors = doc.get("accessors", [])
    vertices = faces = primitives = 0
    for mesh in doc.get("meshes", []):
        for prim in mesh["primitives"]:
            primitives += 1
            pos = prim["attributes"].get("POSITION")
            n = accessors[pos]["count"] if pos is not None else 0
            vertices += n
            if prim.get("mode", 4) == 4:
                faces += (accessors[prim["indices"]]["count"] if "indices" in prim else n) // 3
    warnings = []
    required = doc.get("extensionsRequired", [])
    if isinstance(required, list) and required:
        warnings.append("requires extensions: " + ", ".join(map(str, required))[:300])
    summary: dict[str, int | str] = {
        "meshes": len(doc.get("meshes", [])),
        "primitives": primitives,
        "vertices": vertices,
        "faces": faces,
        "nodes": len(doc.get("nodes", [])),
        "materials": len(doc.get("materials", [])),
        "images": len(doc.get("images", [])),
        "generator": str(doc["asset"].get("generator", ""))[:80],
    }
    return FormatReport(FMT, size, summary, tuple(warnings))
