"""Binary STL mesh I/O for the watermark: one ``np.fromfile``, positions patched in place.

Why: same reason as :mod:`.glb`; a binary STL is an 80-byte header, a uint32
triangle count and 50-byte records (normal, three float32 vertices, a uint16
attribute), so the file is read as a structured array and a marked copy is the
same bytes with the vertices (and the facet normals, which follow them)
replaced; the header and attribute words are kept. ASCII STL, or a file whose
size does not match its count, makes :func:`read` return None and the caller
uses the general reader. The vertices are not welded here: every triangle has
its own three copies, exactly as trimesh (``process=False``) reads them; the
mark's own weld merges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = 80
RECORD = np.dtype(
    [("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attr", "<u2")], align=False
)


@dataclass(frozen=True)
class StlLayout:
    """The triangles of one binary STL; the triangle list is implicit (0, 1, 2, 3, ...)."""

    vertices: np.ndarray
    """(3 T, 3) float32, read-only."""

    @property
    def triangles(self) -> np.ndarray:
        return np.arange(len(self.vertices), dtype=np.uint32).reshape(-1, 3)

    @property
    def nbytes(self) -> int:
        return int(self.vertices.nbytes)


def read(path: Path) -> StlLayout | None:
    """The vertices of a binary STL, or None if the file is not one (ASCII, odd size)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(HEADER + 4)
        if len(head) < HEADER + 4:
            return None
        count = int(np.frombuffer(head, "<u4", 1, HEADER)[0])
        if size != HEADER + 4 + count * RECORD.itemsize or count == 0:
            return None
        records = np.fromfile(fh, RECORD, count)
    if len(records) != count:
        return None
    vertices = np.ascontiguousarray(records["vertices"]).reshape(-1, 3)
    vertices.flags.writeable = False
    return StlLayout(vertices)


def write(src: Path, dst: Path, marked: np.ndarray) -> None:
    """``src`` with its vertices replaced by ``marked`` (3 T, 3) and facet normals recomputed."""
    pts = np.asarray(marked, "<f4").reshape(-1, 3, 3)
    with open(src, "rb") as fi:
        head = fi.read(HEADER + 4)
        count = int(np.frombuffer(head, "<u4", 1, HEADER)[0])
        if count != len(pts):
            raise ValueError(f"{count} triangles in the file, {len(pts)} given")
        records = np.fromfile(fi, RECORD, count)
    n = np.cross(pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    records["normal"] = n / np.where(length > 0, length, np.inf)
    records["vertices"] = pts
    with open(dst, "wb") as fo:
        fo.write(head)
        fo.write(records.data)
