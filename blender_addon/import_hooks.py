"""Import hooks: a verified file in, Blender objects in a collection out (main thread only).

One small function per format calls Blender's own importer (3MF, which
Blender cannot read, becomes a mesh from the core's reader). Only
``ImportResult.path`` (a file the core verified in its cache) ever reaches an
importer. If an importer fails half way, everything it created is removed,
so the scene is exactly as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
from sealport.errors import SealportError
from sealport.host import provenance

GEOMETRY_KEY = "sealport_geometry_sha256"


def _gltf(path: Path) -> None:
    bpy.ops.import_scene.gltf(filepath=str(path))


def _fbx(path: Path) -> None:
    bpy.ops.import_scene.fbx(filepath=str(path))


def _obj(path: Path) -> None:
    bpy.ops.wm.obj_import(filepath=str(path))


def _stl(path: Path) -> None:
    bpy.ops.wm.stl_import(filepath=str(path))


def _usd(path: Path) -> None:
    bpy.ops.wm.usd_import(filepath=str(path))


def _threemf(path: Path) -> None:
    from sealport.formats import read_3mf_mesh

    vertices, triangles = read_3mf_mesh(path)
    mesh = bpy.data.meshes.new(path.stem)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype("float32").ravel())
    mesh.loops.add(3 * len(triangles))
    mesh.loops.foreach_set("vertex_index", triangles.astype("int32").ravel())
    mesh.polygons.add(len(triangles))
    mesh.polygons.foreach_set("loop_start", range(0, 3 * len(triangles), 3))
    mesh.update(calc_edges=True)
    mesh.validate()
    obj = bpy.data.objects.new(path.stem, mesh)
    bpy.context.view_layer.active_layer_collection.collection.objects.link(obj)


HOOKS: dict[str, Callable[[Path], None]] = {
    "glb": _gltf,
    "gltf": _gltf,
    "fbx": _fbx,
    "obj": _obj,
    "stl": _stl,
    "usd": _usd,
    "usdz": _usd,
    "3mf": _threemf,
}

_DATA = (
    "objects",
    "meshes",
    "materials",
    "images",
    "textures",
    "cameras",
    "lights",
    "curves",
    "armatures",
    "actions",
    "node_groups",
    "collections",
    "worlds",
)


def _snapshot() -> dict[str, set[Any]]:
    return {name: set(getattr(bpy.data, name)) for name in _DATA}


def _remove_new(before: dict[str, set[Any]]) -> None:
    """Delete every datablock created since ``before`` (objects first, then their data)."""
    for name in _DATA:
        coll = getattr(bpy.data, name)
        for block in [b for b in coll if b not in before[name]]:
            coll.remove(block)


def geometry_sha256(obj: bpy.types.Object) -> str:
    """Hash of a mesh object's vertex positions and topology, to notice edits later.

    Reads the ``position`` and ``.corner_vert`` attributes (Blender 4.0+), which copy
    as whole arrays: ``loops.foreach_get("vertex_index")`` walks RNA per corner and
    took 1.4-1.8 s of the main thread for a 16.6 M-corner GLB (0.07 s this way).
    The bytes hashed are the same either way.
    """
    h = hashlib.sha256()
    if obj.type == "MESH" and obj.data is not None:
        import numpy as np

        me = obj.data
        co = np.empty(len(me.vertices) * 3, dtype=np.float32)
        position = me.attributes.get("position")
        if position is not None and position.data_type == "FLOAT_VECTOR":
            position.data.foreach_get("vector", co)
        else:
            me.vertices.foreach_get("co", co)
        idx = np.empty(len(me.loops), dtype=np.int32)
        corner_vert = me.attributes.get(".corner_vert")
        if corner_vert is not None and corner_vert.data_type == "INT":
            corner_vert.data.foreach_get("value", idx)
        else:
            me.loops.foreach_get("vertex_index", idx)
        h.update(co)  # the arrays' own buffers: no 100 MB of copies on the main thread
        h.update(idx)
    return h.hexdigest()


def import_verified(result: Any, context: bpy.types.Context | None = None) -> bpy.types.Collection:
    """Import a verified file into a new collection named after the asset, with provenance."""
    context = context or bpy.context
    m = result.manifest
    hook = HOOKS.get(m.format)
    if hook is None:
        raise SealportError(f"Blender cannot import {m.format} files yet. Nothing was imported.")
    scene, view_layer = context.scene, context.view_layer
    before = _snapshot()
    previous_active = view_layer.active_layer_collection
    try:
        coll = bpy.data.collections.new(m.name)
        scene.collection.children.link(coll)
        view_layer.active_layer_collection = _layer_collection(view_layer.layer_collection, coll)
        hook(Path(result.path))
        new_objects = [o for o in bpy.data.objects if o not in before["objects"]]
        if not new_objects:
            raise SealportError(
                f"Blender's importer read {Path(result.path).name} but created nothing.",
                detail=f"format={m.format}",
            )
        props = provenance(result)
        for key, value in props.items():
            coll[key] = value
        for obj in new_objects:
            for other in list(obj.users_collection):
                if other != coll:
                    other.objects.unlink(obj)
            if obj.name not in coll.objects:
                coll.objects.link(obj)
            for key, value in props.items():
                obj[key] = value
            obj[GEOMETRY_KEY] = geometry_sha256(obj)
        return coll
    except BaseException as exc:
        view_layer.active_layer_collection = previous_active
        _remove_new(before)
        if isinstance(exc, SealportError):
            raise
        raise SealportError(
            f"Blender could not import {Path(result.path).name}. Nothing was added to the scene.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc
    finally:
        if previous_active is not None:
            try:
                view_layer.active_layer_collection = previous_active
            except (ReferenceError, TypeError):
                pass


def _layer_collection(root: Any, coll: bpy.types.Collection) -> Any:
    if root.collection == coll:
        return root
    for child in root.children:
        found = _layer_collection(child, coll)
        if found is not None:
            return found
    return None
