"""Import hooks: one per format, each loading Maya's importer plug-in first.

FBX needs ``fbxmaya``, OBJ ``objExport``, USD ``mayaUsdPlugin``. If one is
missing, the artist is told which plug-in to enable (a typed
:class:`HostImportError`), rather than getting Maya's generic file error.
GLB, 3MF and STL have no Maya importer: the core converts the verified file
to OBJ (:func:`sealport.convert.convert_to_obj`) and the OBJ hook imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import maya.cmds as cmds
from sealport.errors import HostImportError

PLUGINS = {"fbx": "fbxmaya", "obj": "objExport", "usd": "mayaUsdPlugin"}
PLUGIN_NAMES = {
    "fbxmaya": "FBX (fbxmaya)",
    "objExport": "OBJ (objExport)",
    "mayaUsdPlugin": "USD (mayaUsdPlugin)",
}


def ensure_plugin(name: str) -> None:
    """Load Maya plug-in ``name`` unless it is loaded; say clearly if it is missing."""
    if cmds.pluginInfo(name, query=True, loaded=True):
        return
    try:
        cmds.loadPlugin(name, quiet=True)
    except RuntimeError as exc:
        raise HostImportError(
            f"Maya's {PLUGIN_NAMES.get(name, name)} plug-in is not available, so Sealport "
            "cannot import this file. Enable it in Windows > Settings/Preferences > "
            "Plug-in Manager, or ask your TD to install it.",
            detail=f"cmds.loadPlugin({name!r}) failed: {exc}",
        ) from exc


def _import(path: Path, file_type: str, namespace: str, options: str = "") -> list[str]:
    nodes = cmds.file(
        str(path),
        i=True,
        type=file_type,
        ignoreVersion=True,
        mergeNamespacesOnClash=False,
        namespace=namespace,
        options=options,
        returnNewNodes=True,
    )
    return [str(n) for n in nodes] if isinstance(nodes, list) else []


def import_fbx(path: Path, namespace: str) -> list[str]:
    ensure_plugin("fbxmaya")
    return _import(path, "FBX", namespace)


def import_obj(path: Path, namespace: str) -> list[str]:
    ensure_plugin("objExport")
    return _import(path, "OBJ", namespace, options="mo=1")


def import_usd(path: Path, namespace: str) -> list[str]:
    ensure_plugin("mayaUsdPlugin")
    return _import(path, "USD Import", namespace)


def import_converted(path: Path, namespace: str) -> list[str]:
    from sealport.convert import convert_to_obj

    return import_obj(convert_to_obj(path), namespace)


HOOKS: dict[str, Callable[[Path, str], list[str]]] = {
    "fbx": import_fbx,
    "obj": import_obj,
    "usd": import_usd,
    "usda": import_usd,
    "usdc": import_usd,
    "usdz": import_usd,
    "glb": import_converted,
    "3mf": import_converted,
    "stl": import_converted,
}


def hook_for(fmt: str) -> Callable[[Path, str], list[str]]:
    try:
        return HOOKS[fmt.lower()]
    except KeyError:
        raise HostImportError(
            f"Sealport for Maya cannot import {fmt.upper()} files.",
            detail=f"no Maya import hook for format {fmt!r}",
        ) from None
