"""Provenance on the imported top node, and Verify Scene.

Every import is grouped under one transform ``sealport_<name>``; the core's
:func:`sealport.host.provenance` (ids, hashes, verification time: never a
secret) is stored on it as locked string attributes, plus the verified file's
path so Verify Scene can re-hash it.
"""

from __future__ import annotations

import re

import maya.cmds as cmds
from sealport.scene_check import AuditIndex, NodeCheck, check_node

MARKER = "sealport_file_sha256"


def group_name(asset_name: str) -> str:
    return "sealport_" + (re.sub(r"[^A-Za-z0-9_]", "_", asset_name).strip("_") or "asset")


def make_top_node(asset_name: str, new_nodes: list[str]) -> str:
    """Group the new top-level DAG nodes under one transform and return its name."""
    top = cmds.group(empty=True, name=group_name(asset_name))
    # cmds.ls() with no names would list the whole scene: only ask about new nodes.
    roots = (cmds.ls(*new_nodes, assemblies=True, long=True) or []) if new_nodes else []
    if roots:
        cmds.parent(*roots, top)
    return str(top)


def store(node: str, values: dict[str, str]) -> None:
    for key, value in values.items():
        if not cmds.attributeQuery(key, node=node, exists=True):
            cmds.addAttr(node, longName=key, dataType="string")
        attr = f"{node}.{key}"
        cmds.setAttr(attr, lock=False)
        cmds.setAttr(attr, value, type="string")
        cmds.setAttr(attr, lock=True)


def read(node: str) -> dict[str, str]:
    keys = cmds.listAttr(node, userDefined=True) or []
    return {k: str(cmds.getAttr(f"{node}.{k}") or "") for k in keys if k.startswith("sealport_")}


def sealport_nodes() -> list[str]:
    return [
        n
        for n in cmds.ls(type="transform", long=True) or []
        if cmds.attributeQuery(MARKER, node=n, exists=True)
    ]


def verify_scene(index: AuditIndex | None = None) -> list[NodeCheck]:
    """Check every Sealport node; with ``index``, against the local audit log too."""
    return [check_node(n, read(n), index) for n in sealport_nodes()]
