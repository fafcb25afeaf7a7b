"""Connected parts of a leaked mesh, for the trace.

Why: a leaker who joins the delivered asset with other geometry into one mesh
(Blender's Join, Maya's Combine, a scene exported as one object) moves the area
centre the blind reader frames the mesh in, and gives the informed registration
a point cloud that is mostly not the original. The delivered mesh is usually one
connected surface (a scan, an AI-generated model), and joining keeps it
connected and apart from the rest, so the trace also tries every connected part
that is large enough to carry a mark on its own.

Parts are found on the welded surface (coincident vertices merged), so the UV
seams and hard edges an exporter splits do not cut a surface into islands.
"""

from __future__ import annotations

import numpy as np

from .geometry import as_triangles, weld


def part_labels(tris: np.ndarray, n: int) -> np.ndarray:
    """(n,) connected part of every vertex, by shared triangle sides (an unreferenced
    vertex is a part of its own). Needs scipy."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = np.asarray(tris)
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def connected_parts(vertices: np.ndarray, faces: np.ndarray, min_vertices: int) -> list[np.ndarray]:
    """Triangles (rows of the fan-triangulated ``faces``) of every connected part with at
    least ``min_vertices`` distinct positions, largest first; [] when the mesh is one
    part (nothing to add) or no part is large enough. Needs scipy."""
    tris = as_triangles(faces)
    if not len(tris):
        return []
    w = weld(vertices, tris)
    wt = w.inverse[tris]
    label = part_labels(wt, len(w.points))
    count = int(label.max()) + 1
    if count < 2:
        return []
    tri_label = label[wt[:, 0]]
    sizes = np.bincount(label[w.used], minlength=count)  # distinct used positions per part
    big = np.flatnonzero(sizes >= min_vertices)
    if len(big) == 0 or (len(big) == 1 and sizes[big[0]] == int(w.used.sum())):
        return []
    big = big[np.argsort(-sizes[big], kind="stable")]
    return [tris[tri_label == part] for part in big]
