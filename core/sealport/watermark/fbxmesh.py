"""FBX meshes for the watermark: read and rewrite ``Geometry`` vertex arrays.

Why here and not through a binding: the structural reader
(:mod:`sealport.formats.fbxtree`) is pure Python and bounds-checked, so it is
safe inside a DCC's own process and on the server, and it can *write* the
file back, which no FBX library on PyPI can without the Autodesk SDK.

A mesh is one ``Objects/Geometry`` node of class ``Mesh``: its ``Vertices``
array (x, y, z flat, double or float) holds the stored positions and
``PolygonVertexIndex`` the polygons (the last index of each polygon is stored
as ``~index``). The mark lives in those stored positions, the same buffer
every FBX importer reads; normals, UVs and everything else are kept byte for
byte. Blend-shape geometry (class ``Shape``) is not marked.

ASCII FBX is refused with a clear reason (no binary node tree to patch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..formats.fbxtree import (
    FbxTree,
    FbxTreeError,
    Prop,
    encode_array,
    geometries,
    parse,
    points,
    polygons,
    serialize,
)
from .errors import WatermarkFormatError

MAX_FILE_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class FbxMesh:
    """One geometry: where its vertex array sits, its positions and triangles."""

    vertices_prop: Prop
    vertices: np.ndarray
    """(N, 3) float64."""
    triangles: np.ndarray
    """(T, 3) int64, fan-triangulated polygons."""


def _fail(path: Path, problem: str, detail: str = "") -> WatermarkFormatError:
    return WatermarkFormatError(
        f"This FBX file could not be read for the watermark: {problem}.", f"{path}: {detail}"
    )


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _fail(path, "it is too large", f"{size} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(path, "it could not be opened", repr(exc)) from None
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"; FBX", b"FBXHeaderExtension")):
        raise _fail(path, "it is an ASCII FBX file; only binary FBX can carry a mark")
    return data


def meshes_of(tree: FbxTree) -> list[FbxMesh]:
    """Every mesh geometry, fan-triangulated (raises FbxTreeError if malformed)."""
    from .files import _fan

    out = []
    for geo in geometries(tree):
        verts = points(tree, geo)
        if not np.isfinite(verts).all():  # the mark needs numbers (ValueError otherwise)
            raise FbxTreeError(
                "a mesh has vertex positions that are NaN or infinite",
                f"geometry at {geo.node.start}",
            )
        counts, idx = polygons(tree, geo, len(verts))
        triangles = int(np.maximum(counts - 2, 0).sum())
        tree.charge(triangles * 24, f"triangles of the mesh at {geo.node.start}")
        out.append(FbxMesh(geo.vertices, verts, _fan(counts, idx)))
    return out


def load(path: Path) -> tuple[FbxTree, list[FbxMesh]]:
    """Parse ``path`` and its meshes, or raise WatermarkFormatError."""
    path = Path(path)
    data = _read(path)
    try:
        tree = parse(data)
        return tree, meshes_of(tree)
    except FbxTreeError as exc:
        raise _fail(path, exc.problem, exc.detail) from None


@dataclass(frozen=True)
class FbxPrepared:
    """A parsed FBX kept by the server across deliveries (read-only, thread-safe)."""

    tree: FbxTree
    meshes: tuple[FbxMesh, ...]

    @property
    def nbytes(self) -> int:
        """The file's bytes, its node objects (estimated) and the mesh arrays."""
        return self.tree.nbytes + sum(m.vertices.nbytes + m.triangles.nbytes for m in self.meshes)


def prepare(path: Path) -> FbxPrepared:
    """Parse once; every delivery then only marks and writes (:func:`write_marked`)."""
    tree, meshes = load(path)
    for m in meshes:
        m.vertices.flags.writeable = False
        m.triangles.flags.writeable = False
    return FbxPrepared(tree, tuple(meshes))


def fbx_meshes(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(vertices, triangles) of every mesh, for extract/verify."""
    return [(m.vertices, m.triangles) for m in load(path)[1]]


def write_marked(
    tree: FbxTree, new_vertices: dict[int, tuple[Prop, np.ndarray]], dst: Path
) -> None:
    """Write ``tree`` to ``dst`` with the given meshes' vertex arrays replaced.

    ``new_vertices`` maps a vertex property's offset to (property, (N, 3)
    positions); each array keeps its type (double/float) and encoding.
    WatermarkFormatError if the file cannot be written back (nothing is written).
    """
    replace = {
        start: encode_array(prop.code, np.asarray(v).reshape(-1), prop.encoding)
        for start, (prop, v) in new_vertices.items()
    }
    try:
        data = serialize(tree, replace)
    except FbxTreeError as exc:  # e.g. past 4 GiB with 32-bit offsets
        raise WatermarkFormatError(
            f"This FBX file cannot carry a watermark: {exc.problem}.", f"{dst}: {exc.detail}"
        ) from None
    Path(dst).write_bytes(data)


def embed_fbx(
    src: Path, dst: Path, payload: bytes, key: bytes, strength: float | None
) -> tuple[int, int]:
    """Mark every mesh of ``src`` that can carry the payload; write ``dst`` if any.

    Returns (marked, too small). Meshes too small keep their bytes unchanged.
    """
    from .errors import WatermarkCapacityError
    from .mark import embed

    tree, meshes = load(Path(src))
    new: dict[int, tuple[Prop, np.ndarray]] = {}
    small = 0
    for m in meshes:
        try:
            new[m.vertices_prop.start] = (
                m.vertices_prop,
                embed(m.vertices, m.triangles, payload, key, strength=strength),
            )
        except WatermarkCapacityError:
            small += 1
    if new:
        write_marked(tree, new, Path(dst))
    return len(new), small
