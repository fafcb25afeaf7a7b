"""Sealport plug-in for Maya (Python API 2.0): load it as ``sealport_plugin``.

Named apart from the ``sealport_maya`` package on purpose: Maya imports a
plug-in under its file name, which would otherwise shadow the package.

Loading it adds the "Sealport" menu to Maya's main window; unloading removes
the menu and everything it created. All behaviour lives in the
``sealport_maya`` package (``scripts/``), which the module file puts on the
Python path together with the Sealport core.
"""

from __future__ import annotations

from typing import Any

import maya.api.OpenMaya as om

VENDOR = "Sealport"
VERSION = "0.1.0"


def maya_useNewAPI() -> None:  # noqa: N802 - the name Maya looks for
    """Tells Maya this plug-in uses maya.api.OpenMaya (API 2.0)."""


def initializePlugin(plugin: Any) -> None:  # noqa: N802
    om.MFnPlugin(plugin, VENDOR, VERSION, "Any")
    from sealport_maya import menu

    menu.install()


def uninitializePlugin(plugin: Any) -> None:  # noqa: N802
    om.MFnPlugin(plugin)
    from sealport_maya import menu

    menu.uninstall()
