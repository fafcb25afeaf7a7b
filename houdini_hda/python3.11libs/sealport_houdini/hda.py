"""The Sealport Secure Import HDA's Import button (SOP and LOP versions).

The button opens the shared asset browser; the verified result is written
into the node's own parameters (``asset_id``, ``verified_file``) and its
provenance onto the node. The SOP cooks the file with Houdini's geometry
readers (GLB/3MF are converted to OBJ by the core first); the LOP references
USD files only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hou
from sealport.errors import HostImportError
from sealport.host import provenance

USD_FORMATS = {"usd", "usda", "usdc", "usdz"}
CONVERT = {"glb", "3mf"}


def apply_result(node: hou.OpNode, result: Any) -> list[str]:
    """Point the HDA at a verified file and record where it came from."""
    m = result.manifest
    path = Path(result.path)
    is_lop = isinstance(node, hou.LopNode)
    if is_lop and m.format not in USD_FORMATS:
        raise HostImportError(
            f"The Sealport LOP imports USD assets only; {m.name} is {m.format.upper()}. "
            "Use the SOP version of Sealport Secure Import for geometry.",
            detail=f"LOP HDA, format {m.format}",
        )
    if not is_lop and m.format in CONVERT:
        from sealport.convert import convert_to_obj

        path = convert_to_obj(path)
    for name, value in (("asset_id", m.asset_id), ("verified_file", str(path))):
        parm = node.parm(name)
        if parm is None:
            raise HostImportError(
                "This Sealport node is missing a parameter; update the HDA.",
                detail=f"{node.path()} has no parm {name!r}",
            )
        parm.set(value)
    values = dict(provenance(result), sealport_path=str(result.path))
    for key, value in values.items():
        node.setUserData(key, value)
    return [node.path()]


def secure_import_into(node: hou.OpNode) -> None:
    from sealport.ui.panels import Panels

    from .host import import_dir, main_window

    Panels(
        on_imported=lambda result: apply_result(node, result),
        out_dir=import_dir,
        parent=main_window,
    ).secure_import()
