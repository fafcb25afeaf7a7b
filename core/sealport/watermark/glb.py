"""GLB mesh I/O for the watermark, straight from the BIN chunk (no trimesh).

Why: on a 100 MB GLB a trimesh load + export round trip cost several seconds
per delivery on the server and per import on the workstation (plus ~1-4 s to
import trimesh at all), while the mark only needs the POSITION floats and the
triangle indices. Here the container and JSON go through the safe reader
(:func:`sealport.formats.glb.read_document`: every accessor lies inside its
bufferView, every view inside the BIN chunk), positions and indices are read
with one ``np.fromfile`` each, and a marked copy is written by re-emitting the
JSON chunk (new accessor ``min``/``max``) and copying every other byte of the
file verbatim, with only the POSITION bytes replaced. Normals, UVs, images,
animation and unknown chunks are never decoded or re-encoded.

Covered layout: float32 VEC3 POSITION accessors in the BIN chunk (tight or
interleaved), triangle-list primitives (mode 4), indices u8/u16/u32 or none,
no sparse accessors. Anything else (data-URI buffers, strips/fans, quantised
or Draco positions) makes :func:`read` return None, and the caller falls back
to the general trimesh path. Primitives that share a POSITION accessor are one
mesh (their triangles together), so shared vertices are marked once; an index
accessor is decoded once per file, and one used twice by a mesh counts once.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsafeAsset
from .errors import WatermarkFormatError
from .glbalias import aliasing_problem

_FLOAT = 5126
_INDEX_DTYPE = {5121: "<u1", 5123: "<u2", 5125: "<u4"}
_TRIANGLES = 4
_POINTS_AND_LINES = {0, 1, 2, 3}
_COPY_BLOCK = 16 * 1024**2


@dataclass(frozen=True)
class GlbMesh:
    """One POSITION accessor and every triangle that uses it."""

    accessor: int
    offset: int
    """File offset of the first position."""
    stride: int
    vertices: np.ndarray
    """(N, 3) float32, read-only (shared by cached layouts)."""
    triangles: np.ndarray
    """(T, 3) unsigned integers, read-only, all < N."""


@dataclass(frozen=True)
class GlbLayout:
    """Where the meshes of one GLB file live; enough to write a marked copy."""

    doc: dict[str, Any]
    json_end: int
    size: int
    meshes: tuple[GlbMesh, ...]

    @property
    def nbytes(self) -> int:
        """Memory held: the arrays (one shared by meshes once) and the parsed JSON.

        For bounded caches: the JSON document of a GLB with many nodes can hold more
        than its arrays (a 6.5 MB JSON chunk of 100k nodes: 36 MB of objects).
        """
        held: dict[int, int] = {}
        for m in self.meshes:
            for a in (m.vertices, m.triangles):
                at = a.__array_interface__["data"][0]
                held[at] = max(held.get(at, 0), a.nbytes)
        return sum(held.values()) + self.json_nbytes

    @cached_property
    def json_nbytes(self) -> int:
        """Python objects of :attr:`doc`, estimated once (see :func:`json_nbytes`)."""
        return json_nbytes(self.doc)


def json_nbytes(doc: Any) -> int:
    """``sys.getsizeof`` summed over every value of a parsed JSON document.

    Dict keys are counted once per distinct string object (``json`` shares
    repeated keys). Cached small ints and shared values are counted each time,
    so this errs high; within 1.0-1.3x of tracemalloc on the shapes measured
    (flat numbers, many small objects, node lists).
    """
    total = 0
    keys: set[int] = set()
    stack = [doc]
    while stack:
        value = stack.pop()
        total += sys.getsizeof(value)
        if isinstance(value, dict):
            for k, v in value.items():
                if id(k) not in keys:
                    keys.add(id(k))
                    total += sys.getsizeof(k)
                stack.append(v)
        elif isinstance(value, list):
            stack.extend(value)
    return total


def _bad(path: Path, problem: str) -> WatermarkFormatError:
    return WatermarkFormatError(
        "This GLB file could not be read for the watermark.", f"{path}: {problem}"
    )


def _read_accessor(
    fh: Any,
    path: Path,
    doc: dict[str, Any],
    bin_offset: int,
    bin_end: int,
    index: int,
    dtype: str,
    width: int,
) -> tuple[np.ndarray, int, int] | None:
    """(array (count, width), file offset, stride) of a plain BIN-chunk accessor, else None."""
    acc = doc["accessors"][index]
    if "bufferView" not in acc or "sparse" in acc or acc.get("normalized"):
        return None
    view = doc["bufferViews"][acc["bufferView"]]
    if view["buffer"] != 0 or "uri" in doc["buffers"][0] or bin_offset < 0:
        return None
    item = np.dtype(dtype).itemsize
    elem = item * width
    stride = int(view.get("byteStride", elem))
    start = bin_offset + int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
    count = int(acc["count"])
    span = (count - 1) * stride + elem if count else 0
    if (
        stride < elem or start + span > bin_end
    ):  # read_document checked this; never trust twice-removed
        raise _bad(path, f"accessor {index} reaches past the BIN chunk")
    fh.seek(start)
    raw = np.fromfile(fh, np.uint8, span)
    if len(raw) != span:
        raise _bad(path, f"accessor {index} is truncated")
    if stride == elem:
        arr = raw.view(dtype).reshape(count, width)
    else:
        arr = np.ndarray((count, width), dtype, buffer=raw, strides=(stride, item)).copy()
    arr.flags.writeable = False
    return arr, start, stride


def read(path: Path) -> GlbLayout | None:
    """The file's meshes and layout; None if its layout needs the general reader.

    Raises WatermarkFormatError if the safe reader refuses the file, an index
    points past its vertices, or the POSITION bytes are shared with any other
    accessor or bufferView (patching them would change that data too, see
    :mod:`.glbalias`).
    """
    from ..formats.glb import read_document

    path = Path(path)
    try:
        d = read_document(path)
    except UnsafeAsset as exc:
        raise WatermarkFormatError(exc.message, exc.detail) from exc
    doc = d.doc
    accessors = doc.get("accessors", [])
    groups: dict[int, list[int | None]] = {}
    for mesh in doc.get("meshes", []):
        for prim in mesh["primitives"]:
            pos = prim["attributes"].get("POSITION")
            mode = prim.get("mode", _TRIANGLES)
            if not isinstance(mode, int):
                return None  # not a glTF mode: the general reader decides (and refuses)
            if pos is None or mode in _POINTS_AND_LINES:
                continue
            if mode != _TRIANGLES or prim.get("extensions"):
                return None  # strips/fans, Draco and friends: the general reader decides
            acc = accessors[pos]
            if acc.get("componentType") != _FLOAT or acc.get("type") != "VEC3":
                return None
            groups.setdefault(pos, []).append(prim.get("indices"))
    meshes = []
    bin_end = d.bin_offset + d.bin_length
    # Each index accessor is read and scanned once, however many primitives use it
    # (100 primitives sharing one 6 MB accessor held 100 copies: 1.2 GB peak).
    decoded: dict[int, tuple[np.ndarray, int]] = {}  # accessor -> ((T, 3) triangles, max)
    with open(path, "rb") as fh:
        for pos, index_list in groups.items():
            got = _read_accessor(fh, path, doc, d.bin_offset, bin_end, pos, "<f4", 3)
            if got is None:
                return None
            vertices, offset, stride = got
            if not np.isfinite(vertices).all():  # the mark (and min/max in JSON) need numbers
                raise _bad(path, f"accessor {pos} has positions that are NaN or infinite")
            n = len(vertices)
            parts = []
            # the same triangles drawn by two primitives are one surface: counted once
            for ind in dict.fromkeys(index_list):
                if ind is None:
                    if n % 3:
                        return None
                    parts.append(np.arange(n, dtype=np.uint32).reshape(-1, 3))
                    continue
                if ind not in decoded:
                    acc = accessors[ind]
                    dtype = _INDEX_DTYPE.get(acc.get("componentType", 0))
                    if dtype is None or acc.get("type") != "SCALAR":
                        return None
                    got_i = _read_accessor(fh, path, doc, d.bin_offset, bin_end, ind, dtype, 1)
                    if got_i is None or len(got_i[0]) % 3:
                        return None
                    flat = got_i[0].reshape(-1)
                    decoded[ind] = (flat.reshape(-1, 3), int(flat.max()) if flat.size else -1)
                tri, top = decoded[ind]
                if top >= n:
                    raise _bad(path, f"accessor {ind}: an index points past the {n} vertices")
                parts.append(tri)
            tris = parts[0] if len(parts) == 1 else np.concatenate(parts)
            tris.flags.writeable = False
            meshes.append(GlbMesh(pos, offset, stride, vertices, tris))
    problem = aliasing_problem(doc, list(groups))
    if problem is not None:
        raise WatermarkFormatError(
            f"This GLB file cannot carry a watermark: {problem}.",
            f"{path}: POSITION bytes are shared with other data; patching them in place "
            "would corrupt it (the file itself is valid and imports unmarked)",
        )
    return GlbLayout(doc, d.json_end, d.size, tuple(meshes))


def _json_chunk(doc: dict[str, Any], marked: dict[int, np.ndarray]) -> bytes:
    """The JSON chunk with fresh POSITION min/max (required by glTF) for the marked accessors."""
    accessors = list(doc["accessors"])
    for index, pts in marked.items():
        # Column by column: ``pts.min(axis=0)`` on an (N, 3) array reduces across
        # rows element-wise and took 0.1 s each for 2.8 M vertices; a strided 1-D
        # min is ~12x faster. Same values.
        cols = [pts[:, i] for i in range(3)]
        accessors[index] = {
            **accessors[index],
            "min": [float(c.min()) for c in cols],
            "max": [float(c.max()) for c in cols],
        }
    try:
        raw = json.dumps(
            {**doc, "accessors": accessors}, separators=(",", ":"), allow_nan=False
        ).encode()
    except ValueError as exc:  # a non-finite min/max: never write invalid JSON
        raise WatermarkFormatError(
            "The marked GLB file could not be written.", f"JSON chunk: {exc}"
        ) from None
    return raw + b" " * (-len(raw) % 4)


def _write_all(fo: Any, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = fo.write(view)
        view = view[n:]


def _copy_range(fi: Any, fo: Any, start: int, length: int) -> None:
    """Copy ``length`` bytes of ``fi`` from ``start`` to ``fo``'s position (unbuffered fo).

    In the kernel (copy_file_range) where available: the 100 MB tail of a GLB
    never passes through Python.
    """
    if hasattr(os, "copy_file_range"):
        try:
            while length > 0:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), length, start)
                if n <= 0:
                    break
                start += n
                length -= n
        except OSError:
            pass  # e.g. not supported on this file system: copy the rest by hand
    fi.seek(start)
    while length > 0:
        block = fi.read(min(_COPY_BLOCK, length))
        if not block:
            raise OSError("source file shrank while copying")
        _write_all(fo, block)
        length -= len(block)


def write(src: Path, layout: GlbLayout, dst: Path, marked: dict[int, np.ndarray]) -> None:
    """Write ``src`` to ``dst`` with the POSITION accessors in ``marked`` replaced.

    ``marked`` maps accessor index -> (N, 3) positions (written as float32). The
    JSON chunk is re-emitted (min/max change, so may its length); every byte
    after it is copied from ``src`` and then only the position bytes are patched.
    """
    js = _json_chunk(layout.doc, marked)
    tail = layout.size - layout.json_end
    total = 12 + 8 + len(js) + tail
    shift = 20 + len(js) - layout.json_end
    with open(src, "rb") as fi, open(dst, "wb", buffering=0) as fo:
        _write_all(fo, struct.pack("<4sII", b"glTF", 2, total))
        _write_all(fo, struct.pack("<II", len(js), 0x4E4F534A) + js)
        _copy_range(fi, fo, layout.json_end, tail)
        if fo.tell() != total:
            raise OSError(f"wrote {fo.tell()} of {total} bytes")
    with open(dst, "r+b") as fo:
        for mesh in layout.meshes:
            pts = marked.get(mesh.accessor)
            if pts is None:
                continue
            data = np.ascontiguousarray(pts, dtype="<f4")
            if data.shape != mesh.vertices.shape:
                raise ValueError(
                    f"accessor {mesh.accessor}: shape {data.shape} != {mesh.vertices.shape}"
                )
            fo.seek(mesh.offset + shift)
            if mesh.stride == 12:
                fo.write(data.data.cast("B"))
                continue
            n = len(data)
            span = (n - 1) * mesh.stride + 12 if n else 0
            buf = bytearray(fo.read(span))
            view: np.ndarray = np.ndarray((n, 3), "<f4", buffer=buf, strides=(mesh.stride, 4))
            view[...] = data
            fo.seek(mesh.offset + shift)
            fo.write(buf)
