"""Provenance on imported Houdini nodes, and Verify Scene.

Stored twice on the node that holds the import: as node user data (read by
scripts, survives parameter edits) and as locked spare string parameters in a
"Sealport" folder (visible to the artist in the parameter pane). Values come
from :func:`sealport.host.provenance`: ids, hashes, times; never a secret.
"""

from __future__ import annotations

import hou
from sealport.scene_check import AuditIndex, NodeCheck, check_node

MARKER = "sealport_file_sha256"


def store(node: hou.OpNode, values: dict[str, str]) -> None:
    for key, value in values.items():
        node.setUserData(key, value)
    group = node.parmTemplateGroup()
    templates = [
        hou.StringParmTemplate(key, key.replace("sealport_", "").replace("_", " "), 1)
        for key in values
    ]
    group.append(hou.FolderParmTemplate("sealport", "Sealport", parm_templates=templates))
    node.setParmTemplateGroup(group)
    for key, value in values.items():
        parm = node.parm(key)
        if parm is not None:
            parm.set(value)
            parm.lock(True)


def read(node: hou.Node) -> dict[str, str]:
    return {k: str(v) for k, v in node.userDataDict().items() if k.startswith("sealport_")}


def sealport_nodes() -> list[hou.Node]:
    found: list[hou.Node] = []
    for root in ("/obj", "/stage"):
        top = hou.node(root)
        if top is not None:
            found += [n for n in top.allSubChildren() if MARKER in n.userDataDict()]
    return found


def verify_scene(index: AuditIndex | None = None) -> list[NodeCheck]:
    """Check every Sealport node; with ``index``, against the local audit log too."""
    return [check_node(n.path(), read(n), index) for n in sealport_nodes()]
