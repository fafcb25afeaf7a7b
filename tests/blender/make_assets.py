"""Run inside Blender: export one test mesh with Blender's own exporters, one file per format.

Usage: python make_assets.py OUT_DIR  (a Python with bpy). Prints a JSON map
format -> file. 3MF (Blender has no exporter) is written by the test itself.
The mesh is an icosphere with 42 welded vertices, smooth, no UVs, so every
importer gives back exactly 42 vertices.
"""

import json
import sys
from pathlib import Path

import bpy

VERTICES = 42


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, radius=1.0, calc_uvs=False)
    obj = bpy.context.active_object
    obj.name = "probe"
    bpy.ops.object.shade_smooth()
    assert len(obj.data.vertices) == VERTICES
    files = {
        "glb": out / "probe.glb",
        "fbx": out / "probe.fbx",
        "obj": out / "probe.obj",
        "stl": out / "probe.stl",
        "usd": out / "probe.usdc",
        "usdz": out / "probe.usdz",
    }
    bpy.ops.export_scene.gltf(filepath=str(files["glb"]), export_format="GLB", use_selection=True)
    bpy.ops.export_scene.fbx(filepath=str(files["fbx"]), use_selection=True)
    bpy.ops.wm.obj_export(
        filepath=str(files["obj"]),
        export_selected_objects=True,
        export_materials=False,
        export_uv=False,
    )
    bpy.ops.wm.stl_export(filepath=str(files["stl"]), export_selected_objects=True)
    bpy.ops.wm.usd_export(filepath=str(files["usd"]), selected_objects_only=True)
    bpy.ops.wm.usd_export(filepath=str(files["usdz"]), selected_objects_only=True)
    print("ASSETS " + json.dumps({k: str(v) for k, v in files.items()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
