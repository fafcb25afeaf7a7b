"""Import hooks: one per kind of format, each using Houdini's own readers.

- OBJ, STL: a geo node in /obj with a File SOP reading the verified file.
- GLB, 3MF: the core converts the verified file to OBJ, then as above.
- FBX: Houdini's FBX importer (``hou.hipFile.importFBX``) into /obj.
- USD, USDA, USDC, USDZ: a Reference LOP in /stage.
Each returns the node that carries the provenance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import hou
from sealport.errors import HostImportError


def node_name(asset_name: str) -> str:
    return "sealport_" + (re.sub(r"[^A-Za-z0-9_]", "_", asset_name).strip("_") or "asset")


def _context(path: str) -> hou.OpNode:
    node = hou.node(path)
    if not isinstance(node, hou.OpNode):
        raise HostImportError(
            f"Houdini has no {path} network in this session, so Sealport cannot import here.",
            detail=f"hou.node({path!r}) returned None",
        )
    return node


def _unexpected(what: str, node: object) -> HostImportError:
    return HostImportError(
        "Houdini created an unexpected node while importing; tell your pipeline TD.",
        detail=f"expected {what}, got {node!r}",
    )


def import_geometry(path: Path, name: str) -> hou.OpNode:
    obj = _context("/obj")
    geo = obj.createNode("geo", node_name(name))
    reader = geo.createNode("file", "verified_file")
    if not isinstance(reader, hou.SopNode):
        raise _unexpected("a File SOP", reader)
    parm = reader.parm("file")
    if parm is None:
        raise _unexpected("a File SOP with a 'file' parameter", reader)
    parm.set(str(path))
    reader.setDisplayFlag(True)
    reader.setRenderFlag(True)
    geo.moveToGoodPosition()
    return geo


def import_converted(path: Path, name: str) -> hou.OpNode:
    from sealport.convert import convert_to_obj

    return import_geometry(convert_to_obj(path), name)


def import_fbx(path: Path, name: str) -> hou.OpNode:
    created = hou.hipFile.importFBX(str(path), suppress_save_prompt=True, merge_into_scene=True)
    if not created or created[0] is None:
        raise HostImportError(
            "Houdini's FBX importer did not create anything for this file.",
            detail=f"hou.hipFile.importFBX({str(path)!r}) -> {created!r}",
        )
    return created[0]


def import_usd(path: Path, name: str) -> hou.OpNode:
    stage = _context("/stage")
    ref = stage.createNode("reference", node_name(name))
    if not isinstance(ref, hou.LopNode):
        raise _unexpected("a Reference LOP", ref)
    parm = ref.parm("filepath1")
    if parm is None:
        raise _unexpected("a Reference LOP with a 'filepath1' parameter", ref)
    parm.set(str(path))
    ref.setDisplayFlag(True)
    ref.moveToGoodPosition()
    return ref


HOOKS: dict[str, Callable[[Path, str], hou.OpNode]] = {
    "obj": import_geometry,
    "stl": import_geometry,
    "glb": import_converted,
    "3mf": import_converted,
    "fbx": import_fbx,
    "usd": import_usd,
    "usda": import_usd,
    "usdc": import_usd,
    "usdz": import_usd,
}


def hook_for(fmt: str) -> Callable[[Path, str], hou.OpNode]:
    try:
        return HOOKS[fmt.lower()]
    except KeyError:
        raise HostImportError(
            f"Sealport for Houdini cannot import {fmt.upper()} files.",
            detail=f"no Houdini import hook for format {fmt!r}",
        ) from None
