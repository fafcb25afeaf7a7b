"""Real GLB/FBX files built byte by byte for the memory and aliasing tests and bench.

Why here: the same files are used by the regression tests (small sizes) and by
``tests/bench/bench_parse_memory.py`` (the sizes of the security review), so
the bytes the figures in docs/FBX.md and docs/SERVER_SECURITY.md come from are
the bytes the tests check.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FBX_MAGIC = b"Kaydara FBX Binary  \x00\x1a\x00"


# --- GLB ---------------------------------------------------------------------------------
def glb_bytes(doc: dict[str, Any], binary: bytes) -> bytes:
    """A GLB container: JSON chunk, BIN chunk (both padded to 4 bytes)."""
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js
    body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def glb_shared_indices(v: np.ndarray, f: np.ndarray, primitives: int) -> bytes:
    """One POSITION and one u32 index accessor, used by ``primitives`` primitives."""
    n, idx = len(v), np.ascontiguousarray(f, "<u4").tobytes()
    doc = {
        "asset": {"version": "2.0"},
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}] * primitives}],
        "buffers": [{"byteLength": n * 12 + len(idx)}],
        "bufferViews": [
            {"buffer": 0, "byteLength": n * 12},
            {"buffer": 0, "byteOffset": n * 12, "byteLength": len(idx)},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5125, "count": f.size, "type": "SCALAR"},
        ],
    }
    return glb_bytes(doc, np.ascontiguousarray(v, "<f4").tobytes() + idx)


# --- FBX ---------------------------------------------------------------------------------
@dataclass
class FbxNode:
    """A node to encode: name, already-encoded properties, optional children."""

    name: bytes
    props: list[bytes] = field(default_factory=list)
    children: list[FbxNode] | None = None


def prop_s(value: bytes) -> bytes:
    return b"S" + struct.pack("<I", len(value)) + value


def prop_l(value: int) -> bytes:
    return b"L" + struct.pack("<q", value)


def prop_array(code: bytes, values: np.ndarray, *, compress: bool) -> bytes:
    dtype = {b"d": "<f8", b"f": "<f4", b"i": "<i4", b"l": "<i8"}[code]
    raw = np.ascontiguousarray(values, dtype).tobytes()
    body = zlib.compress(raw, 9) if compress else raw
    return code + struct.pack("<III", len(values), int(compress), len(body)) + body


def _encode(node: FbxNode, at: int, wide: bool) -> bytes:
    head = struct.Struct("<QQQB" if wide else "<IIIB")
    props = b"".join(node.props)
    inner = b""
    if node.children is not None:
        pos = at + head.size + len(node.name) + len(props)
        for c in node.children:
            cb = _encode(c, pos, wide)
            inner += cb
            pos += len(cb)
        inner += b"\0" * (25 if wide else 13)
    end = at + head.size + len(node.name) + len(props) + len(inner)
    return head.pack(end, len(node.props), len(props), len(node.name)) + node.name + props + inner


def fbx_bytes(roots: list[FbxNode], version: int = 7400) -> bytes:
    """A binary FBX file: header, the nodes, the closing null record (no footer)."""
    wide = version >= 7500
    out = FBX_MAGIC + struct.pack("<I", version)
    for n in roots:
        out += _encode(n, len(out), wide)
    return out + b"\0" * (25 if wide else 13)


def fbx_geometry(
    uid: int, verts: np.ndarray, polygon_vertex_index: np.ndarray, *, compress: bool = True
) -> FbxNode:
    """An ``Objects/Geometry`` mesh node (FBX 7 layout)."""
    return FbxNode(
        b"Geometry",
        [prop_l(uid), prop_s(b"Geometry::m\x00\x01Geometry"), prop_s(b"Mesh")],
        [
            FbxNode(b"Vertices", [prop_array(b"d", verts.reshape(-1), compress=compress)]),
            FbxNode(
                b"PolygonVertexIndex",
                [prop_array(b"i", polygon_vertex_index, compress=compress)],
            ),
        ],
    )


def triangles_pvi(f: np.ndarray) -> np.ndarray:
    """FBX ``PolygonVertexIndex`` of a triangle list (last index of each stored as ``~i``)."""
    pvi = np.asarray(f, np.int64).copy()
    pvi[:, 2] = ~pvi[:, 2]
    return pvi.reshape(-1)


def fbx_mesh_file(meshes: list[tuple[np.ndarray, np.ndarray]], version: int = 7400) -> bytes:
    """A file whose ``Objects`` holds one Geometry per (vertices, triangles)."""
    geos = [fbx_geometry(1000 + i, v, triangles_pvi(f)) for i, (v, f) in enumerate(meshes)]
    return fbx_bytes([FbxNode(b"Objects", [], geos)], version)


def fbx_zlib_geometries(geometries: int, values: int) -> bytes:
    """``geometries`` meshes whose arrays hold ``values`` zeros each, zlib-compressed (~1000:1)."""
    zeros_d = np.zeros(values, np.float64)
    pvi = np.zeros(values, np.int32)
    pvi[-1] = -1  # one giant polygon over vertex 0: valid indices, fan-triangulated
    geos = [
        FbxNode(
            b"Geometry",
            [prop_l(2000 + i), prop_s(b"Geometry::z\x00\x01Geometry"), prop_s(b"Mesh")],
            [
                FbxNode(b"Vertices", [prop_array(b"d", zeros_d, compress=True)]),
                FbxNode(b"PolygonVertexIndex", [prop_array(b"i", pvi, compress=True)]),
            ],
        )
        for i in range(geometries)
    ]
    return fbx_bytes([FbxNode(b"Objects", [], geos)])


def fbx_many_properties(count: int) -> bytes:
    """One node with ``count`` one-byte ``C`` properties (2 file bytes each)."""
    return fbx_bytes([FbxNode(b"P", [b"C\x01"] * count)])
