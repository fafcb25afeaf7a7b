"""Procedural meshes for the watermark tests and benchmark (no downloads)."""

from __future__ import annotations

import numpy as np


def bumpy_torus(
    nu: int, nv: int, seed: int = 0, *, quads: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Closed torus grid with random low-frequency bumps; quads or triangles."""
    rng = np.random.default_rng(seed)
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    r = 0.35 + 0.04 * np.sin(rng.integers(1, 5) * uu + rng.uniform(0, 6)) * np.cos(
        rng.integers(1, 4) * vv
    )
    big = 1.0 + 0.1 * np.cos(rng.integers(1, 4) * uu + rng.uniform(0, 6))
    x = (big + r * np.cos(vv)) * np.cos(uu)
    y = (big + r * np.cos(vv)) * np.sin(uu) * rng.uniform(0.6, 1.0)
    z = r * np.sin(vv) * rng.uniform(0.7, 1.5)
    verts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a = i * nv + j
    b = ((i + 1) % nu) * nv + j
    c = ((i + 1) % nu) * nv + (j + 1) % nv
    d = i * nv + (j + 1) % nv
    q = np.stack([a, b, c, d], axis=-1).reshape(-1, 4)
    if quads:
        return verts, q
    return verts, np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])


def blob(subdivisions: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere with a random smooth radial deformation (organic-looking)."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(seed)
    v = np.asarray(s.vertices)
    rad = np.ones(len(v))
    for _ in range(6):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        rad += rng.uniform(0.05, 0.25) * np.sin(rng.uniform(1, 4) * (v @ axis) + rng.uniform(0, 6))
    scale = rng.uniform(0.5, 2.0, 3)
    return v * rad[:, None] * scale, np.asarray(s.faces, np.int64)


def unweld(vertices: np.ndarray, faces: np.ndarray, fraction: float, seed: int = 0):
    """Split vertices the way exporters do at UV seams: give some faces own copies."""
    rng = np.random.default_rng(seed)
    faces = faces.copy()
    pick = np.flatnonzero(rng.random(len(faces)) < fraction)
    extra = vertices[faces[pick].ravel()]
    new_idx = len(vertices) + np.arange(len(extra)).reshape(-1, 3)
    faces[pick] = new_idx
    return np.concatenate([vertices, extra]), faces
