"""File layer: read meshes from asset files, rewrite marked points in place.

Readers: GLB and binary STL directly (:mod:`.glb`, :mod:`.stl`: positions and
indices straight into numpy, marked copies written by patching the position
bytes; layouts they do not cover fall back to trimesh), OBJ/STL/PLY/GLB/GLTF
(trimesh), USD/USDA/USDC/USDZ (pxr UsdGeom.Mesh
points + faceVertexIndices, fan-triangulated), 3MF (zip + XML, defusedxml),
FBX (own bounded binary node-tree reader, :mod:`.fbxmesh`). Writers: the trimesh
formats, USD/USDA/USDC/USDZ (points rewritten with pxr, everything else kept),
3MF (vertex attributes rewritten in the original XML), binary FBX (the
``Vertices`` arrays rewritten in the node tree, everything else kept byte for
byte; ASCII FBX is refused with WatermarkFormatError).

Each mesh of a file is marked independently with the same key and payload;
meshes too small to carry a mark are left unmarked and reported as such.
:func:`prepare_file` / :func:`embed_prepared` split the work into the part a
server can keep per asset version and the part each delivery pays for.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

import numpy as np

from ..errors import MalformedManifest
from . import fbxmesh, glb, stl
from .errors import WatermarkCapacityError, WatermarkFormatError
from .geometry import CentreKind
from .keys import SCHEME, SCHEME_FRAMES
from .mark import (
    EmbedPlan,
    ExtractResult,
    ReaderHint,
    VerifyResult,
    apply_plan,
    embed,
    extract,
    plan_embed,
    verify,
)

Mesh = tuple[np.ndarray, np.ndarray]
TRIMESH_SUFFIXES = {".obj", ".stl", ".ply", ".glb", ".gltf", ".off"}
USD_SUFFIXES = {".usd", ".usda", ".usdc", ".usdz"}
_NS_3MF = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"


def _suffix(path: Path) -> str:
    return path.suffix.lower()


# --- trimesh formats -----------------------------------------------------------------
def _trimesh_scene(path: Path) -> Any:
    import trimesh

    try:
        return trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many types
        raise WatermarkFormatError(
            "This file could not be read for the watermark check.", f"{path}: {exc!r}"
        ) from exc


def _trimesh_meshes(scene: Any) -> list[tuple[str, Any]]:
    import trimesh

    return [(name, g) for name, g in scene.geometry.items() if isinstance(g, trimesh.Trimesh)]


# --- USD -------------------------------------------------------------------------------
def _usd_meshes(stage: Any) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    from pxr import Usd, UsdGeom

    out = []
    for prim in stage.Traverse(Usd.PrimDefaultPredicate):
        if not prim.IsA(UsdGeom.Mesh):
            continue
        mesh = UsdGeom.Mesh(prim)
        pts = mesh.GetPointsAttr().Get()
        counts = mesh.GetFaceVertexCountsAttr().Get()
        idx = mesh.GetFaceVertexIndicesAttr().Get()
        if pts is None or counts is None or idx is None:
            continue
        out.append((mesh, np.asarray(pts, np.float64), _fan(np.asarray(counts), np.asarray(idx))))
    return out


def _fan(counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Triangulate polygon faces given per-face counts and flat indices (vectorised)."""
    counts = counts.astype(np.int64)
    idx = idx.astype(np.int64)
    if counts.size == 0:
        return np.zeros((0, 3), np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ntri = np.maximum(counts - 2, 0)
    face = np.repeat(np.arange(len(counts)), ntri)
    j = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    s = starts[face]
    return np.stack([idx[s], idx[s + j + 1], idx[s + j + 2]], axis=1)


# --- 3MF -------------------------------------------------------------------------------
def _3mf_model_name(z: zipfile.ZipFile) -> str:
    names = [n for n in z.namelist() if n.lower().endswith(".model")]
    if not names:
        raise WatermarkFormatError("This 3MF file has no model part.", str(z.filename))
    return "3D/3dmodel.model" if "3D/3dmodel.model" in names else names[0]


def _3mf_meshes(root: ET.Element) -> list[tuple[list[ET.Element], np.ndarray, np.ndarray]]:
    out = []
    for mesh in root.iter(f"{{{_NS_3MF}}}mesh"):
        vs = list(mesh.iter(f"{{{_NS_3MF}}}vertex"))
        ts = list(mesh.iter(f"{{{_NS_3MF}}}triangle"))
        v = np.array([[float(e.get(a, "nan")) for a in ("x", "y", "z")] for e in vs], np.float64)
        t = np.array([[int(e.get(a, "-1")) for a in ("v1", "v2", "v3")] for e in ts], np.int64)
        out.append((vs, v.reshape(-1, 3), t.reshape(-1, 3)))
    return out


def _3mf_parse(data: bytes) -> ET.Element:
    from defusedxml.ElementTree import fromstring

    return fromstring(data)


# --- FBX -------------------------------------------------------------------------------
def _fbx_meshes(path: Path) -> list[Mesh]:
    """Binary FBX meshes from the node tree: pure Python and bounds-checked, so safe
    in-process (also inside a DCC); replaces the ufbx binding, which corrupted memory."""
    from .fbxmesh import fbx_meshes

    return fbx_meshes(path)


# --- formats read without trimesh ----------------------------------------------------
def _native_meshes(path: Path) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Meshes as stored (float32 positions, unsigned indices) where a direct reader
    covers the file (GLB, see :mod:`.glb`); None means "use the general reader"."""
    if _suffix(path) == ".glb":
        layout = glb.read(path)
        if layout is not None:
            return [(m.vertices, m.triangles) for m in layout.meshes]
    elif _suffix(path) == ".stl":
        tri = stl.read(path)
        if tri is not None:
            return [(tri.vertices, tri.triangles)]
    return None


def _meshes_for_check(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """What extract/verify read: the direct reader's arrays (no copies), else load_meshes."""
    fast = _native_meshes(path)
    return fast if fast is not None else load_meshes(path)


# --- public ----------------------------------------------------------------------------
def load_meshes(path: Path) -> list[Mesh]:
    """Every mesh in the file as (vertices (N,3) float64, triangles (T,3) int64).

    Vertices are in each mesh's local space (the mark is similarity invariant and
    lives in the stored vertex buffers).
    """
    path = Path(path)
    suf = _suffix(path)
    fast = _native_meshes(path)
    if fast is not None:
        return [(np.asarray(v, np.float64), np.asarray(t, np.int64)) for v, t in fast]
    if suf in TRIMESH_SUFFIXES:
        scene = _trimesh_scene(path)
        return [
            (np.asarray(g.vertices, np.float64), np.asarray(g.faces, np.int64))
            for _, g in _trimesh_meshes(scene)
        ]
    if suf in USD_SUFFIXES:
        from pxr import Usd

        stage = Usd.Stage.Open(str(path))
        if stage is None:
            raise WatermarkFormatError("This USD file could not be opened.", str(path))
        return [(v, f) for _, v, f in _usd_meshes(stage)]
    if suf == ".3mf":
        with zipfile.ZipFile(path) as z:
            root = _3mf_parse(z.read(_3mf_model_name(z)))
        return [(v, t) for _, v, t in _3mf_meshes(root)]
    if suf == ".fbx":
        return _fbx_meshes(path)
    raise WatermarkFormatError("This file type cannot carry a geometry watermark.", str(path))


@dataclass(frozen=True)
class EmbedReport:
    """What ``embed_file`` did: how many meshes carry the mark."""

    marked: int
    too_small: int
    total: int


def _mark_or_skip(
    v: np.ndarray, f: np.ndarray, payload: bytes, key: bytes, strength: float | None
) -> np.ndarray | None:
    try:
        return embed(v, f, payload, key, strength=strength)
    except WatermarkCapacityError:
        return None


@dataclass(frozen=True)
class PreparedFile:
    """The part of marking a file that does not depend on the recipient.

    Why: the server marks every delivery of an asset with another payload; the
    parsed file (for GLB/STL: layout, positions, triangles) and each mesh's
    :class:`~sealport.watermark.mark.EmbedPlan` (centre, sorted norms) are the
    same each time, so a server keeps them (see :mod:`sealport.server.watermarking`)
    and a delivery costs the keyed O(N) apply plus writing the file. Formats
    without a direct reader keep only the path and are parsed per delivery.
    Shared read-only between threads.
    """

    src: Path
    glb: glb.GlbLayout | None = None
    stl: stl.StlLayout | None = None
    plans: tuple[EmbedPlan | None, ...] = ()
    """Per mesh of :meth:`meshes` (empty: not planned; None: that mesh cannot be planned)."""
    fbx: fbxmesh.FbxPrepared | None = None

    def meshes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The directly read meshes (float32 positions, triangles); empty for other formats."""
        if self.glb is not None:
            return [(m.vertices, m.triangles) for m in self.glb.meshes]
        if self.stl is not None:
            return [(self.stl.vertices, self.stl.triangles)]
        if self.fbx is not None:
            return [(m.vertices, m.triangles) for m in self.fbx.meshes]
        return []

    @property
    def nbytes(self) -> int:
        """Memory held (for bounded caches)."""
        held = sum(x.nbytes for x in (self.glb, self.stl, self.fbx) if x is not None)
        for p in self.plans:
            if p is not None:
                arrays = (p.centre, p.rho, p.weight, p.slot, p.rep)
                held += sum(a.nbytes for a in arrays if a is not None)
        return held


def _plan(v: np.ndarray, t: np.ndarray) -> EmbedPlan | None:
    try:
        plan = plan_embed(v, t)
    except (ValueError, WatermarkCapacityError):
        return None  # embed_prepared falls back to embed(), which says why
    for a in (plan.centre, plan.rho, plan.weight, plan.slot, plan.rep):
        if a is not None:
            a.flags.writeable = False  # shared by concurrent deliveries
    return plan


def prepare_file(src: Path, *, plan: bool = False) -> PreparedFile:
    """Parse what can be reused across deliveries of ``src`` (WatermarkFormatError if unreadable).

    ``plan=True`` also makes each mesh's embed plan (worth it only when the
    result is reused: a single embed costs the same without).
    """
    src = Path(src)
    if _suffix(src) == ".glb":
        prepared = PreparedFile(src, glb=glb.read(src))
    elif _suffix(src) == ".stl":
        prepared = PreparedFile(src, stl=stl.read(src))
    elif _suffix(src) == ".fbx":
        prepared = PreparedFile(src, fbx=fbxmesh.prepare(src))
    else:
        return PreparedFile(src)
    if plan:
        plans = tuple(_plan(v, t) for v, t in prepared.meshes())
        prepared = PreparedFile(src, prepared.glb, prepared.stl, plans, prepared.fbx)
    return prepared


def embed_file(
    src: Path, dst: Path, payload: bytes, key: bytes, *, strength: float | None = None
) -> EmbedReport:
    """Mark every mesh of ``src`` that can carry the payload and write ``dst``.

    Raises WatermarkCapacityError if no mesh in the file can carry it, and
    WatermarkFormatError for files that cannot be read or written (e.g. ASCII FBX).
    """
    return embed_prepared(prepare_file(src), dst, payload, key, strength=strength)


def embed_prepared(
    prepared: PreparedFile,
    dst: Path,
    payload: bytes,
    key: bytes,
    *,
    strength: float | None = None,
    certify: bool = True,
) -> EmbedReport:
    """:func:`embed_file` from a :class:`PreparedFile` (reused read-only, thread-safe).

    With plans, each mesh is marked by ``apply_plan``; ``certify=False`` skips its
    read-back (O(N) arithmetic only), for a caller that verifies the written file
    itself and calls again with ``certify=True`` if that fails (the server does).
    """
    src, dst = prepared.src, Path(dst)
    suf = _suffix(src)
    if _suffix(dst) != suf:
        raise WatermarkFormatError(
            "Source and destination must have the same format.", f"{src} -> {dst}"
        )
    plans = prepared.plans or (None,) * len(prepared.meshes())

    def mark(i: int, v: np.ndarray, t: np.ndarray) -> np.ndarray | None:
        plan = plans[i]
        # A plan made in another scheme's frame (one serialised before an upgrade)
        # would mark in that frame while the manifest names the current scheme.
        if plan is None or plan.frame != SCHEME_FRAMES[SCHEME]:
            return _mark_or_skip(v, t, payload, key, strength)
        try:
            return apply_plan(
                plan, v, payload, key, strength=strength, faces=t if certify else None
            )
        except WatermarkCapacityError:
            return None

    if prepared.glb is not None:
        marked_glb: dict[int, np.ndarray] = {}
        for i, m in enumerate(prepared.glb.meshes):
            new_pts = mark(i, m.vertices, m.triangles)
            if new_pts is not None:
                marked_glb[m.accessor] = new_pts
        total = len(prepared.glb.meshes)
        if marked_glb:
            glb.write(src, prepared.glb, dst, marked_glb)
        return _report(src, len(marked_glb), total - len(marked_glb))
    if prepared.stl is not None:
        tri = prepared.stl
        new_stl = mark(0, tri.vertices, tri.triangles)
        if new_stl is not None:
            stl.write(src, dst, new_stl)
        return _report(src, int(new_stl is not None), int(new_stl is None))
    if prepared.fbx is not None:
        new_fbx = {}
        for i, fm in enumerate(prepared.fbx.meshes):
            pts = mark(i, fm.vertices, fm.triangles)
            if pts is not None:
                new_fbx[fm.vertices_prop.start] = (fm.vertices_prop, pts)
        if new_fbx:
            fbxmesh.write_marked(prepared.fbx.tree, new_fbx, dst)
        return _report(src, len(new_fbx), len(prepared.fbx.meshes) - len(new_fbx))
    marked = small = 0
    if suf in TRIMESH_SUFFIXES:
        scene = _trimesh_scene(src)
        for _, g in _trimesh_meshes(scene):
            new = _mark_or_skip(np.asarray(g.vertices), np.asarray(g.faces), payload, key, strength)
            if new is None:
                small += 1
            else:
                g.vertices = new
                marked += 1
        if marked:
            if suf in {".stl", ".ply", ".off"} and len(scene.geometry) == 1:
                next(iter(scene.geometry.values())).export(str(dst))
            else:
                scene.export(str(dst))
    elif suf in USD_SUFFIXES:
        marked, small = _embed_usd(src, dst, payload, key, strength)
    elif suf == ".3mf":
        marked, small = _embed_3mf(src, dst, payload, key, strength)
    elif suf == ".fbx":
        from .fbxmesh import embed_fbx

        marked, small = embed_fbx(src, dst, payload, key, strength)
    else:
        raise WatermarkFormatError("This file type cannot carry a geometry watermark.", str(src))
    return _report(src, marked, small)


def _report(src: Path, marked: int, small: int) -> EmbedReport:
    if not marked:
        raise WatermarkCapacityError(
            "No mesh in this file is large enough to carry a watermark.",
            f"{src}: {marked + small} meshes, all too small",
        )
    return EmbedReport(marked, small, marked + small)


def _embed_usd(
    src: Path, dst: Path, payload: bytes, key: bytes, strength: float | None
) -> tuple[int, int]:
    from pxr import Sdf, Usd, UsdUtils, Vt

    marked = small = 0
    with tempfile.TemporaryDirectory() as tmp:
        if _suffix(src) == ".usdz":
            work = Path(tmp) / (src.stem + ".usdc")
            stage = Usd.Stage.Open(str(src))
            stage.Export(str(work))  # flattened root layer; assets stay referenced
        else:
            work = Path(tmp) / src.name
            shutil.copyfile(src, work)
        stage = Usd.Stage.Open(str(work))
        for mesh, v, f in _usd_meshes(stage):
            new = _mark_or_skip(v, f, payload, key, strength)
            if new is None:
                small += 1
                continue
            attr = mesh.GetPointsAttr()
            old = attr.Get()
            arr = np.asarray(new, dtype=np.asarray(old).dtype)
            attr.Set(
                type(old).FromNumpy(arr)
                if hasattr(type(old), "FromNumpy")
                else Vt.Vec3fArray.FromNumpy(arr.astype(np.float32))
            )
            marked += 1
        stage.GetRootLayer().Save()
        if marked:
            if _suffix(dst) == ".usdz":
                if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(work)), str(dst)):
                    raise WatermarkFormatError("Could not write the USDZ package.", str(dst))
            else:
                shutil.copyfile(work, dst)
    return marked, small


def _embed_3mf(
    src: Path, dst: Path, payload: bytes, key: bytes, strength: float | None
) -> tuple[int, int]:
    marked = small = 0
    ET.register_namespace("", _NS_3MF)
    with zipfile.ZipFile(src) as zin:
        name = _3mf_model_name(zin)
        root = _3mf_parse(zin.read(name))
        for elems, v, t in _3mf_meshes(root):
            new = _mark_or_skip(v, t, payload, key, strength)
            if new is None:
                small += 1
                continue
            for e, p in zip(elems, new, strict=True):
                e.set("x", repr(float(p[0])))
                e.set("y", repr(float(p[1])))
                e.set("z", repr(float(p[2])))
            marked += 1
        if marked:
            buf = io.BytesIO()
            ET.ElementTree(root).write(buf, xml_declaration=True, encoding="UTF-8")
            with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
                for info in zin.infolist():
                    data = buf.getvalue() if info.filename == name else zin.read(info)
                    zout.writestr(info, data)
    return marked, small


@dataclass(frozen=True)
class FileExtractResult:
    """Per-mesh results and the file-level verdict."""

    status: Literal["found", "not_found", "too_small"]
    payload: bytes | None
    confidence: float
    meshes: list[ExtractResult] = field(default_factory=list)


def extract_file(
    path: Path, key: bytes, *, payload_bits: int = 64, frame: CentreKind = "corner-even"
) -> FileExtractResult:
    """Blind extraction from every mesh; found if any mesh decodes (highest confidence
    wins). ``frame``: the scheme's centre (``keys.SCHEME_FRAMES``)."""
    results = [
        extract(v, f, key, payload_bits=payload_bits, frame=frame)
        for v, f in _meshes_for_check(Path(path))
    ]
    found = [r for r in results if r.status == "found"]
    if found:
        best = max(found, key=lambda r: r.confidence)
        return FileExtractResult("found", best.payload, best.confidence, results)
    if results and all(r.status == "too_small" for r in results):
        return FileExtractResult("too_small", None, 0.0, results)
    return FileExtractResult("not_found", None, 0.0, results)


@dataclass(frozen=True)
class FileVerifyResult:
    status: Literal["verified", "mismatch", "too_small", "not_found"]
    meshes: list[VerifyResult] = field(default_factory=list)


def verify_file(
    path: Path,
    key: bytes,
    expected_payload: bytes,
    *,
    reader: Sequence[ReaderHint | None] | None = None,
    on_mesh: Callable[[int, int], None] | None = None,
    frame: CentreKind = "corner-even",
) -> FileVerifyResult:
    """Importer check: mismatch if any mesh carries another payload; verified if at
    least one mesh verifies and every mesh large enough to carry a mark does;
    too_small if no mesh can carry one; otherwise not_found.

    ``reader``: the manifest's signed reader hints, one per mesh in load order
    (see :class:`~.mark.ReaderHint`); MalformedManifest if their number is not the
    file's number of meshes. Each result's ``reader`` holds what the reader found.
    ``on_mesh(done, total)``: called before each mesh and once at the end (progress
    in a DCC); whatever it raises (a cancel) stops the check there. ``frame``: the
    delivery's scheme's centre (:func:`~.manifest.entry_frame`).
    """
    meshes = _meshes_for_check(Path(path))
    if reader is not None and len(reader) != len(meshes):
        raise MalformedManifest(
            "The delivery's watermark record is invalid.",
            f"reader hints for {len(reader)} meshes, the file has {len(meshes)}",
        )
    hints = reader if reader is not None else [None] * len(meshes)
    results = []
    for i, ((v, f), h) in enumerate(zip(meshes, hints, strict=True)):
        if on_mesh is not None:
            on_mesh(i, len(meshes))
        results.append(verify(v, f, key, expected_payload, hint=h, frame=frame))
    if on_mesh is not None:
        on_mesh(len(meshes), len(meshes))
    statuses = {r.status for r in results}
    if "mismatch" in statuses:
        status: Literal["verified", "mismatch", "too_small", "not_found"] = "mismatch"
    elif not results or statuses == {"too_small"}:
        status = "too_small"
    elif "not_found" in statuses:
        status = "not_found"
    else:
        status = "verified"
    return FileVerifyResult(status, results)
