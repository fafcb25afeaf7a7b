"""The "Sealport" menu: Secure Import…, Sign In / Sign Out, Verify Scene.

``install`` is called by the plug-in's initializePlugin, ``uninstall`` by
uninitializePlugin; uninstall deletes the menu and closes any open panel, so
unloading the plug-in leaves nothing of Sealport in Maya's UI.
"""

from __future__ import annotations

from typing import Any

import maya.cmds as cmds

MENU = "sealportMenu"
MAIN_WINDOW = "MayaWindow"

_panels: Any = None


def panels() -> Any:
    global _panels
    if _panels is None:
        from sealport.ui.panels import Panels

        from .host import MayaHost, import_dir, main_window

        _panels = Panels(
            on_imported=MayaHost().import_verified_file, out_dir=import_dir, parent=main_window
        )
    return _panels


def secure_import(*_args: Any) -> None:
    panels().secure_import()


def toggle_sign_in(*_args: Any) -> None:
    panels().toggle_sign_in()


def verify_scene(*_args: Any) -> None:
    from sealport.scene_check import local_audit_index, summarize

    from .provenance import verify_scene as run

    index = local_audit_index()
    cmds.confirmDialog(
        title="Sealport: Verify Scene", message=summarize(run(index), index), button=["OK"]
    )


def install() -> str:
    uninstall()
    menu = str(cmds.menu(MENU, label="Sealport", parent=MAIN_WINDOW, tearOff=True))
    cmds.menuItem(label="Secure Import…", command=secure_import, parent=menu)
    cmds.menuItem(label="Sign In / Sign Out", command=toggle_sign_in, parent=menu)
    cmds.menuItem(divider=True, parent=menu)
    cmds.menuItem(label="Verify Scene", command=verify_scene, parent=menu)
    return menu


def uninstall() -> None:
    global _panels
    if _panels is not None and _panels.browser is not None:
        _panels.browser.close()
    _panels = None
    if cmds.menu(MENU, exists=True):
        cmds.deleteUI(MENU, menu=True)
