#!/usr/bin/env python3
"""Generate Sealport's demo assets: one small procedural model per format.

    .venv/bin/python packaging/make_demo_assets.py [OUT_DIR]

Writes into ``core/sealport/demo_assets/`` by default, with real writers:
trimesh for GLB, OBJ, STL and 3MF (3MF export needs ``networkx`` and ``lxml``),
usd-core for .usda/.usdc and the .usdz package, and real Blender (the ``bpy``
wheel) for FBX. Blender runs in a child process: bpy bundles its own USD and
must not share a process with usd-core. Also writes ``catalog.json``
(file, name = file stem, title, project, format, description, size, sha256), then runs every
file through :func:`sealport.formats.check_file` and refuses to finish if one
fails or is larger than 300 KB. Every mesh, the FBX one included, is dense
enough to carry the server's forensic watermark (see :func:`dense`).

Deterministic: the same inputs give byte-identical files (trimesh's random 3MF
UUIDs come from a seeded generator, Blender's FBX creation time is pinned).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "core" / "sealport" / "demo_assets"
MAX_ASSET_BYTES = 300 * 1024

Mesh = tuple[np.ndarray, np.ndarray]  # (vertices (N,3) float, triangles (M,3) int)


# --- procedural geometry (pure numpy + trimesh primitives) -------------------------------


def _combine(parts: list[Mesh]) -> Mesh:
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(np.asarray(v, dtype=np.float64))
        faces.append(np.asarray(f, dtype=np.int64) + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _box(
    center: tuple[float, float, float], size: tuple[float, float, float], rot_z: float = 0.0
) -> Mesh:
    import trimesh

    t = trimesh.transformations.rotation_matrix(rot_z, [0, 0, 1])
    t[:3, 3] = center
    m = trimesh.creation.box(extents=size, transform=t)
    return np.asarray(m.vertices), np.asarray(m.faces)


def _lathe(
    profile: list[tuple[float, float]],
    segments: int,
    *,
    ripple: tuple[int, float] = (0, 0.0),
    cap_bottom: bool = True,
    cap_top: bool = True,
) -> Mesh:
    """Revolve (radius, height) points about +Y; ``ripple`` = (flutes, depth) modulates r."""
    flutes, depth = ripple
    theta = np.arange(segments) * (2 * math.pi / segments)
    scale = 1.0 + depth * np.cos(flutes * theta)
    rings = [
        np.stack([r * scale * np.cos(theta), np.full(segments, y), r * scale * np.sin(theta)], 1)
        for r, y in profile
    ]
    verts = np.concatenate(rings)
    faces = []
    for i in range(len(profile) - 1):
        a, b = i * segments, (i + 1) * segments
        for j in range(segments):
            k = (j + 1) % segments
            faces += [(a + j, b + j, b + k), (a + j, b + k, a + k)]
    extra = []
    if cap_bottom:
        c = len(verts) + len(extra)
        extra.append((0.0, profile[0][1], 0.0))
        faces += [(c, j, (j + 1) % segments) for j in range(segments)]
    if cap_top:
        c = len(verts) + len(extra)
        top = (len(profile) - 1) * segments
        extra.append((0.0, profile[-1][1], 0.0))
        faces += [(c, top + (j + 1) % segments, top + j) for j in range(segments)]
    if extra:
        verts = np.concatenate([verts, np.array(extra)])
    return verts, np.array(faces, dtype=np.int64)


def _ring_solid(outer, inner, samples: int, z0: float, z1: float) -> Mesh:
    """A Z-up prism with a bore: ``outer``/``inner`` map angle -> radius (star-shaped)."""
    theta = np.arange(samples) * (2 * math.pi / samples)
    ro, ri = outer(theta), inner(theta)
    c, s = np.cos(theta), np.sin(theta)
    ob = np.stack([ro * c, ro * s, np.full(samples, z0)], 1)
    ot = np.stack([ro * c, ro * s, np.full(samples, z1)], 1)
    ib = np.stack([ri * c, ri * s, np.full(samples, z0)], 1)
    it = np.stack([ri * c, ri * s, np.full(samples, z1)], 1)
    verts = np.concatenate([ob, ot, ib, it])
    OB, OT, IB, IT = 0, samples, 2 * samples, 3 * samples
    faces = []
    for j in range(samples):
        k = (j + 1) % samples
        faces += [(OT + j, OT + k, IT + k), (OT + j, IT + k, IT + j)]  # top
        faces += [(OB + j, IB + k, OB + k), (OB + j, IB + j, IB + k)]  # bottom
        faces += [(OB + j, OB + k, OT + k), (OB + j, OT + k, OT + j)]  # outer wall
        faces += [(IB + j, IT + k, IB + k), (IB + j, IT + j, IT + k)]  # bore
    return verts, np.array(faces, dtype=np.int64)


def crate() -> Mesh:
    """Shipping crate, Y-up, 1 m: 12 frame beams, 6 inset panels, 4 diagonal braces."""
    parts, h, t = [], 0.5, 0.08
    for axis in range(3):
        for a in (-1, 1):
            for b in (-1, 1):
                c = [0.0, 0.0, 0.0]
                size = [t, t, t]
                size[axis] = 1.0
                others = [i for i in range(3) if i != axis]
                c[others[0]], c[others[1]] = a * (h - t / 2), b * (h - t / 2)
                parts.append(_box(tuple(c), tuple(size)))
    for axis in range(3):
        for a in (-1, 1):
            c = [0.0, 0.0, 0.0]
            size = [1 - 2 * t, 1 - 2 * t, 1 - 2 * t]
            c[axis], size[axis] = a * (h - t / 2), 0.03
            parts.append(_box(tuple(c), tuple(size)))
    for z in (-1, 1):
        parts.append(_box((0, 0, z * (h - 0.01)), (1.25, t * 0.8, 0.03), rot_z=math.pi / 4))
    return _combine(parts)


def _moved(mesh: Mesh, offset: tuple[float, float, float]) -> Mesh:
    return mesh[0] + np.asarray(offset), mesh[1]


def chair() -> Mesh:
    """Dining chair, Y-up (metres): seat, four turned legs, back posts and three slats."""
    leg = _lathe([(0.016, 0.0), (0.022, 0.05), (0.018, 0.2), (0.024, 0.3), (0.02, 0.425)], 16)
    post = _lathe([(0.02, 0.0), (0.017, 0.25), (0.02, 0.45), (0.026, 0.5)], 16)
    parts = [_box((0, 0.45, 0), (0.46, 0.05, 0.44))]
    for x in (-0.2, 0.2):
        for z in (-0.19, 0.19):
            parts.append(_moved(leg, (x, 0.0, z)))
        parts.append(_moved(post, (x, 0.475, -0.19)))
    for y in (0.6, 0.75, 0.9):
        parts.append(_box((0, y, -0.19), (0.36, 0.06, 0.02)))
    return _combine(parts)


def table() -> Mesh:
    """Round bistro table, Y-up: top, turned pedestal, foot."""
    top = _lathe([(0.6, 0.72), (0.6, 0.76)], 96)
    pedestal = _lathe(
        [
            (0.28, 0.0),
            (0.28, 0.03),
            (0.07, 0.06),
            (0.045, 0.2),
            (0.06, 0.4),
            (0.04, 0.6),
            (0.08, 0.72),
        ],
        48,
    )
    return _combine([top, pedestal])


def barrel() -> Mesh:
    """Oak barrel, Y-up: bulged staves (lathe) and three iron hoops."""
    ys = np.linspace(0.0, 0.9, 25)
    staves = _lathe([(0.28 + 0.06 * math.sin(math.pi * y / 0.9), float(y)) for y in ys], 48)
    hoops = []
    for y in (0.08, 0.3, 0.6, 0.82):
        r = 0.28 + 0.06 * math.sin(math.pi * y / 0.9) + 0.006
        hoops.append(_lathe([(r, y - 0.02), (r, y + 0.02)], 48, cap_bottom=False, cap_top=False))
    return _combine([staves, *hoops])


def column() -> Mesh:
    """Fluted Doric-style column, Y-up: square plinth, fluted shaft, capital."""
    shaft = _lathe([(0.2, 0.1), (0.19, 1.2), (0.17, 2.3)], 120, ripple=(20, 0.04))
    echinus = _lathe([(0.17, 2.3), (0.24, 2.4), (0.25, 2.42)], 48)
    return _combine(
        [
            _box((0, 0.05, 0), (0.56, 0.1, 0.56)),
            shaft,
            echinus,
            _box((0, 2.47, 0), (0.58, 0.1, 0.58)),
        ]
    )


def lamp() -> Mesh:
    """Desk lamp, Y-up: weighted base, stem, open conical shade."""
    base = _lathe([(0.12, 0.0), (0.12, 0.025), (0.1, 0.04)], 64)
    stem = _lathe([(0.012, 0.04), (0.012, 0.38)], 24)
    shade = _lathe([(0.15, 0.3), (0.06, 0.45)], 64, cap_bottom=False, cap_top=False)
    return _combine([base, stem, shade])


def gear() -> Mesh:
    """Spur gear for printing, Z-up (mm): 24 trapezoid teeth, 6 mm bore."""
    teeth, root, tip = 24, 26.0, 30.0

    def outer(theta: np.ndarray) -> np.ndarray:
        phase = (theta * teeth / (2 * math.pi)) % 1.0
        ramp = np.clip(np.minimum(phase, 1 - phase) * 4 - 0.3, 0, 1)  # 0 root .. 1 tip
        return root + (tip - root) * ramp

    return _ring_solid(outer, lambda t: np.full_like(t, 3.0), teeth * 24, 0.0, 8.0)


def hex_nut() -> Mesh:
    """M10 hex nut, Z-up (mm): 16 mm across flats, 8.5 mm bore, 8 mm thick."""
    apothem = 8.0

    def outer(theta: np.ndarray) -> np.ndarray:
        return apothem / np.cos(((theta + math.pi / 6) % (math.pi / 3)) - math.pi / 6)

    return _ring_solid(outer, lambda t: np.full_like(t, 4.25), 72, 0.0, 8.0)


WATERMARK_VERTICES = 2200
"""Welded vertices per demo mesh: above the watermark's 1,866-vertex floor with margin."""


EXACT = {"gear.stl", "hex_nut.3mf"}
"""Print-lab parts keep their exact dimensions (no warp, only the 1e-6 tie-break)."""


def dense(mesh: Mesh, name: str, target: int = WATERMARK_VERTICES) -> Mesh:
    """Refine long edges until the mesh has ``target`` welded vertices, then roughen it.

    Why: the server watermarks every delivery, and a mesh needs about 1,866 welded
    vertices to carry a mark (``sealport.watermark.min_vertices``); the plain
    procedural shapes have a few hundred, so the demo showed "unmarked: mesh too
    small" everywhere. Edge refinement (trimesh ``subdivide_to_size``, bisection on
    the edge length) keeps the flat shapes exact. A seeded 0.01 % surface jitter
    then breaks the exact symmetry of lathed rings and boxes (hundreds of vertices
    at one distance from the centre), which real scanned or sculpted assets never
    have and which leaves the mark's quantile bins without distinct edges.
    """
    import trimesh
    from trimesh.remesh import subdivide_to_size

    m = trimesh.Trimesh(vertices=mesh[0], faces=mesh[1], process=True)
    diag = float(np.linalg.norm(m.extents))
    if len(m.vertices) < target:
        lo, hi, best = 1e-3 * diag, diag, None
        for _ in range(40):
            edge = math.sqrt(lo * hi)
            v, f = subdivide_to_size(m.vertices, m.faces, max_edge=edge, max_iter=20)
            cand = trimesh.Trimesh(vertices=v, faces=f, process=True)
            if len(cand.vertices) < target:
                hi = edge
            else:
                lo, best = edge, cand
                if len(cand.vertices) < 1.25 * target:
                    break
        if best is None:
            raise SystemExit(f"{name}: could not refine to {target} vertices")
        m = best
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    v = np.asarray(m.vertices, np.float64)
    # Smooth "hand-made" warp (three seeded low-frequency waves, 0.4 % of the
    # diagonal): no shading noise on flat faces, but lathed rings and box faces no
    # longer sit at a handful of exact distances from the centre.
    warp = np.zeros_like(v)
    for _ in range(3):
        k = rng.normal(size=3) * (2.0 * math.pi / diag) * 1.5
        warp += np.sin(v @ k + rng.uniform(0, 2 * math.pi))[:, None] * rng.normal(size=3)
    if name not in EXACT:
        v = v + warp * (0.004 * diag / max(float(np.abs(warp).max()), 1e-12))
    v += rng.uniform(-1.0, 1.0, v.shape) * 1e-6 * diag  # break exact ties
    return v, np.asarray(m.faces, np.int64)


def _trimesh(mesh: Mesh):
    import trimesh

    m = trimesh.Trimesh(vertices=mesh[0], faces=mesh[1], process=True)
    m.fix_normals()
    return m


# --- writers ------------------------------------------------------------------------


def write_trimesh(mesh: Mesh, path: Path, file_type: str) -> None:
    import trimesh.exchange.threemf as threemf

    rng = random.Random(f"sealport-demo-{path.name}")
    real_uuid4 = threemf.uuid.uuid4
    threemf.uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)  # type: ignore[assignment]
    try:
        data = _trimesh(mesh).export(file_type=file_type)
    finally:
        threemf.uuid.uuid4 = real_uuid4  # type: ignore[assignment]
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _define_mesh(stage, prim_path: str, mesh: Mesh, color: tuple[float, float, float]) -> None:
    from pxr import Gf, UsdGeom, Vt

    v, f = mesh
    geo = UsdGeom.Mesh.Define(stage, prim_path)
    geo.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(v.astype(np.float32)))
    geo.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(f), 3, dtype=np.int32)))
    geo.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(f.reshape(-1).astype(np.int32)))
    geo.CreateExtentAttr([Gf.Vec3f(*map(float, v.min(0))), Gf.Vec3f(*map(float, v.max(0)))])
    geo.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    geo.CreateDisplayColorAttr([Gf.Vec3f(*color)])


def write_usd(mesh: Mesh, path: Path, root: str, color: tuple[float, float, float]) -> None:
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    xf = UsdGeom.Xform.Define(stage, f"/{root}")
    stage.SetDefaultPrim(xf.GetPrim())
    _define_mesh(stage, f"/{root}/geo", _fixed(mesh), color)
    stage.GetRootLayer().Save()


def write_usdz(mesh: Mesh, path: Path, root: str, color: tuple[float, float, float]) -> None:
    from pxr import UsdUtils

    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / f"{path.stem}.usdc"
        write_usd(mesh, layer, root, color)
        path.unlink(missing_ok=True)
        if not UsdUtils.CreateNewUsdzPackage(str(layer), str(path)):
            raise RuntimeError(f"UsdUtils.CreateNewUsdzPackage failed for {path}")
    _pin_zip_times(path)


def _pin_zip_times(path: Path) -> None:
    """Set every member's DOS time to 1980-01-01 00:00 (local + central headers)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    dos_date = (0 << 9) | (1 << 5) | 1  # 1980-01-01
    for info in infos:
        struct.pack_into("<HH", data, info.header_offset + 10, 0, dos_date)
    cd = data.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<I", data, cd + 16)
    pos = cd_offset
    for _ in infos:
        assert data[pos : pos + 4] == b"PK\x01\x02"
        struct.pack_into("<HH", data, pos + 12, 0, dos_date)
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + n + m + k
    path.write_bytes(bytes(data))


def _fixed(mesh: Mesh) -> Mesh:
    m = _trimesh(mesh)
    return np.asarray(m.vertices), np.asarray(m.faces)


def write_fbx(mesh: Mesh, path: Path, name: str) -> None:
    """Export with real Blender in a child process (see module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "mesh.npz"
        v, f = _fixed(mesh)
        np.savez(npz, vertices=v, faces=f)
        # Blender derives FBX object ids from hash(str): pin the hash seed.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [sys.executable, __file__, "--blender-fbx", str(npz), str(path), name],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )


def _blender_fbx(npz: Path, out: Path, name: str) -> None:
    """Runs inside the child process: build the mesh in bpy and export FBX."""
    import datetime
    import functools

    import bpy

    data = np.load(npz)
    v, f = data["vertices"], data["faces"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    me = bpy.data.meshes.new(name)
    # our geometry is Y-up; Blender is Z-up and its FBX exporter writes Y-up again
    me.from_pydata([(x, -z, y) for x, y, z in v.tolist()], [], f.tolist())
    me.validate()
    me.update()
    mat = bpy.data.materials.new(f"{name}_wood")
    mat.diffuse_color = (0.55, 0.36, 0.2, 1.0)
    me.materials.append(mat)
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)

    import io_scene_fbx.export_fbx_bin as fbx_bin  # loaded with the add-on

    fixed = datetime.datetime(2025, 1, 1, 12, 0, 0)
    fbx_bin.fbx_header_elements = functools.partial(fbx_bin.fbx_header_elements, time=fixed)
    result = bpy.ops.export_scene.fbx(
        filepath=str(out),
        use_selection=False,
        object_types={"MESH"},
        path_mode="STRIP",
        embed_textures=False,
        bake_anim=False,
    )
    if result != {"FINISHED"}:
        raise SystemExit(f"Blender FBX export failed: {result}")


# --- catalogue ------------------------------------------------------------------------

ASSETS = [
    # file, title, project, builder, writer, description
    (
        "crate.glb",
        "Shipping crate",
        "harbor-street",
        crate,
        "glb",
        "Wooden shipping crate with frame beams, inset panels and diagonal braces (1 m).",
    ),
    (
        "chair.fbx",
        "Dining chair",
        "harbor-street",
        chair,
        "fbx",
        "Dining chair with slatted back, exported from Blender as binary FBX.",
    ),
    (
        "table.obj",
        "Bistro table",
        "harbor-street",
        table,
        "obj",
        "Round bistro table on a turned pedestal.",
    ),
    (
        "barrel.usda",
        "Oak barrel",
        "harbor-street",
        barrel,
        "usda",
        "Bulged oak barrel with four iron hoops (USD text layer).",
    ),
    (
        "column.usdc",
        "Fluted column",
        "temple-set",
        column,
        "usdc",
        "Doric-style fluted column with plinth and capital (USD binary crate layer).",
    ),
    (
        "lamp.usdz",
        "Desk lamp",
        "temple-set",
        lamp,
        "usdz",
        "Desk lamp with weighted base and open conical shade (USDZ package).",
    ),
    (
        "gear.stl",
        "Spur gear",
        "print-lab",
        gear,
        "stl",
        "24-tooth spur gear with a 6 mm bore, for 3D printing (binary STL, mm).",
    ),
    (
        "hex_nut.3mf",
        "M10 hex nut",
        "print-lab",
        hex_nut,
        "3mf",
        "M10 hex nut, 16 mm across flats (3MF, mm).",
    ),
]

COLORS = {
    "barrel.usda": (0.5, 0.32, 0.16),
    "column.usdc": (0.86, 0.84, 0.78),
    "lamp.usdz": (0.2, 0.35, 0.3),
}


def build_all(out: Path) -> list[dict[str, object]]:
    sys.path.insert(0, str(ROOT / "core"))
    from sealport.formats import check_file, detect_format

    out.mkdir(parents=True, exist_ok=True)
    catalog = []
    for file, name, project, builder, kind, description in ASSETS:
        path = out / file
        mesh = builder()
        mesh = dense(mesh, file)
        root = path.stem.title().replace("_", "")
        if kind in ("glb", "obj", "stl", "3mf"):
            write_trimesh(mesh, path, kind)
        elif kind in ("usda", "usdc"):
            path.unlink(missing_ok=True)
            write_usd(mesh, path, root, COLORS[file])
        elif kind == "usdz":
            write_usdz(mesh, path, root, COLORS[file])
        elif kind == "fbx":
            write_fbx(mesh, path, root)
        fmt = detect_format(file)
        report = check_file(path, fmt)
        size = path.stat().st_size
        if size > MAX_ASSET_BYTES:
            raise SystemExit(f"{file} is {size} bytes, over the {MAX_ASSET_BYTES} budget")
        print(f"{file:14} {size:>8} B  {report.summary}")
        catalog.append(
            {
                "file": file,
                "name": path.stem,
                "title": name,
                "project": project,
                "format": fmt,
                "description": description,
                "size": size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    (out / "catalog.json").write_text(json.dumps({"assets": catalog}, indent=2) + "\n")
    return catalog


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    p.add_argument("--blender-fbx", nargs=3, metavar=("NPZ", "OUT", "NAME"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.blender_fbx:
        npz, out, name = args.blender_fbx
        _blender_fbx(Path(npz), Path(out), name)
        return 0
    build_all(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
