#!/usr/bin/env python3
"""Regenerate the FBX fixtures of tests/test_formats.py with real Blender (bpy).

    .venv/bin/python tests/formats/make_fbx_fixtures.py

Writing FBX needs Blender (no pure-Python FBX writer exists), and the test
suite must not need the 370 MB bpy wheel, so these few small files are
committed; everything else in the format tests is generated at test time.

- ``texture_absolute.fbx``: a cube whose material uses a texture at the
  absolute path /etc/sealport-test/wood.png, not embedded.
- ``texture_outside.fbx``: same, texture stored relative as ../../secret/wood.png.
- ``texture_embedded.fbx``: same material, the PNG embedded in the file.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import bpy

HERE = Path(__file__).resolve().parent


def _scene(image_path: str, pixels_file: Path | None) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    me = bpy.data.meshes.new("cube")
    v = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    f = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    me.from_pydata(v, [], f)
    me.update()
    obj = bpy.data.objects.new("cube", me)
    bpy.context.scene.collection.objects.link(obj)
    mat = bpy.data.materials.new("wood")
    mat.use_nodes = True
    if pixels_file is not None:
        img = bpy.data.images.load(str(pixels_file))
    else:
        img = bpy.data.images.new("wood", 4, 4)
        img.filepath_raw = image_path
        img.file_format = "PNG"
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = img
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    mat.node_tree.links.new(node.outputs[0], bsdf.inputs[0])
    me.materials.append(mat)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        _scene("/etc/sealport-test/wood.png", None)
        bpy.ops.export_scene.fbx(filepath=str(HERE / "texture_absolute.fbx"), path_mode="ABSOLUTE")

        out_dir = Path(tmp) / "a" / "b"
        out_dir.mkdir(parents=True)
        _scene(str(Path(tmp) / "secret" / "wood.png"), None)
        bpy.ops.export_scene.fbx(filepath=str(out_dir / "x.fbx"), path_mode="RELATIVE")
        (HERE / "texture_outside.fbx").write_bytes((out_dir / "x.fbx").read_bytes())

        png = Path(tmp) / "wood.png"
        img = bpy.data.images.new("px", 4, 4)
        img.filepath_raw = str(png)
        img.file_format = "PNG"
        img.save()
        _scene("", png)
        bpy.ops.export_scene.fbx(
            filepath=str(HERE / "texture_embedded.fbx"), path_mode="COPY", embed_textures=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
