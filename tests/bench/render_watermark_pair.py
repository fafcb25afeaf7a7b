"""Render the before/after picture pair of the geometry watermark (issue 4's distortion proof).

The mark is meant to be invisible: this renders the Stanford bunny (``shared/meshes``)
unmarked and marked at the default strength with real Blender (``bpy`` from the
project's Blender venv, Cycles on the CPU, headless), plus a third picture that colours
each vertex by how far the mark moved it, so a reviewer sees both that the two renders
match and where the displacement went. The pixel difference of the two renders is
printed (max and mean over 8-bit channels).

Run: ``python tests/bench/render_watermark_pair.py`` (writes docs/img/watermark_*.png).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "core"))

BLENDER_PY = ROOT / "build" / "blender-venv" / "bin" / "python"
MESH = ROOT.parent / "shared" / "meshes" / "bunny.ply"
OUT = ROOT / "docs" / "img"

# Runs inside Blender's Python: build meshes from .npy arrays, render three stills.
RENDER = r"""
import json, sys
import numpy as np
import bpy

tmp, out = sys.argv[1], sys.argv[2]
faces = np.load(f"{tmp}/faces.npy")
heat = np.load(f"{tmp}/heat.npy")

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 48
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = 640
scene.render.image_settings.file_format = "PNG"
world = bpy.data.worlds.new("w")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.55, 0.57, 0.6, 1.0)
world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
scene.world = world

def mesh_object(name, verts):
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", verts.astype(np.float32).ravel())
    me.loops.add(faces.size)
    me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    me.polygons.add(len(faces))
    me.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    me.update()
    me.validate()
    me.shade_smooth()
    ob = bpy.data.objects.new(name, me)
    scene.collection.objects.link(ob)
    return ob

def material(name, use_heat):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.45
    if use_heat:
        attr = mat.node_tree.nodes.new("ShaderNodeAttribute")
        attr.attribute_name = "displacement"
        mat.node_tree.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = (0.72, 0.66, 0.58, 1.0)
    return mat

cam_data = bpy.data.cameras.new("cam")
cam = bpy.data.objects.new("cam", cam_data)
scene.collection.objects.link(cam)
scene.camera = cam
sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
sun.data.energy = 3.0
sun.rotation_euler = (0.8, 0.0, -0.4)
scene.collection.objects.link(sun)

shots = {}
for name in ("before", "after", "heat"):
    verts = np.load(f"{tmp}/{'after' if name == 'heat' else name}.npy")
    ob = mesh_object(name, verts)
    if name == "heat":
        layer = ob.data.color_attributes.new("displacement", "FLOAT_COLOR", "POINT")
        layer.data.foreach_set("color", heat.astype(np.float32).ravel())
    ob.data.materials.append(material(name, name == "heat"))
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    centre, size = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
    cam.location = (centre[0] + 0.15 * size, centre[1] - 1.1 * size, centre[2] + 0.35 * size)
    direction = centre - np.array(cam.location)
    cam.rotation_euler = __import__("mathutils").Vector(direction).to_track_quat("-Z", "Y").to_euler()
    for other in scene.objects:
        if other.type == "MESH":
            other.hide_render = other is not ob
    scene.render.filepath = f"{out}/watermark_{name}.png"
    bpy.ops.render.render(write_still=True)
    shots[name] = scene.render.filepath

a = bpy.data.images.load(shots["before"]); b = bpy.data.images.load(shots["after"])
pa = np.empty(len(a.pixels), np.float32); a.pixels.foreach_get(pa)
pb = np.empty(len(b.pixels), np.float32); b.pixels.foreach_get(pb)
d = np.abs(np.round(pa * 255) - np.round(pb * 255))
print(json.dumps({"max_diff": float(d.max()), "mean_diff": float(d.mean()),
                  "pixels_over_8": int((d.reshape(-1, 4)[:, :3].max(axis=1) > 8).sum()),
                  "pixels": int(len(pa) // 4)}))
"""


def main() -> int:
    import trimesh
    from sealport.watermark import mark

    if not BLENDER_PY.exists():
        print(f"Blender venv missing ({BLENDER_PY}); run scripts/setup.sh --test first")
        return 2
    mesh = trimesh.load(MESH, process=False, force="mesh")
    before = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    after = mark.embed(before, faces, b"SEALPORT", b"k" * 32)
    moved = np.linalg.norm(after - before, axis=1)
    diag = float(np.linalg.norm(before.max(axis=0) - before.min(axis=0)))
    # Heat map: blue (not moved) -> red (largest move), linear in displacement.
    t = moved / max(float(moved.max()), 1e-30)
    heat = np.stack([t, 0.15 * np.ones_like(t), 1.0 - t, np.ones_like(t)], axis=1)
    y_up_to_z_up = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # the PLY is Y-up
    with tempfile.TemporaryDirectory() as tmp:
        views = {"before": before @ y_up_to_z_up.T, "after": after @ y_up_to_z_up.T}
        for name, arr in (*views.items(), ("faces", faces), ("heat", heat)):
            np.save(f"{tmp}/{name}.npy", arr)
        OUT.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [str(BLENDER_PY), "-c", RENDER, tmp, str(OUT)], capture_output=True, text=True
        )
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        return 1
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"bunny {len(before):,} vertices; max displacement {moved.max() / diag:.4%} of the "
        f"bbox diagonal, RMS {np.sqrt((moved**2).mean()) / diag:.4%}; render difference: "
        f"max {stats['max_diff']:.0f}/255, mean {stats['mean_diff']:.3f}/255, "
        f"{stats['pixels_over_8']} of {stats['pixels']:,} pixels differ by more than 8/255"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
