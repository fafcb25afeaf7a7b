"""The :class:`sealport.host.Host` for Maya, and the panels' parent window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import maya.cmds as cmds
from sealport.host import provenance

from . import importers
from . import provenance as prov


def main_window() -> Any:
    """Maya's main window as a QWidget (shiboken-wrapped via sealport.ui.qt)."""
    from maya import OpenMayaUI as omui
    from sealport.ui.qt import wrap_pointer

    return wrap_pointer(omui.MQtUtil.mainWindow())


def import_dir() -> Path:
    """Verified files go to <project>/sealport/, so they travel with the project."""
    root = cmds.workspace(query=True, rootDirectory=True) or str(Path.home())
    return Path(str(root)) / "sealport"


class MayaHost:
    name = "maya"

    def import_verified_file(self, result: Any) -> list[str]:
        m = result.manifest
        hook = importers.hook_for(m.format)
        new_nodes = hook(Path(result.path), prov.group_name(m.name))
        top = prov.make_top_node(m.name, new_nodes)
        prov.store(top, dict(provenance(result), sealport_path=str(result.path)))
        cmds.select(top, replace=True)
        print(f"Sealport: imported {m.name} v{m.version} as {top} (verified)")
        return [top]

    def report_progress(self, stage: str, done: int, total: int) -> None:
        cmds.progressWindow(edit=True, status=stage)

    def ask_yes_no(self, question: str) -> bool:
        answer = cmds.confirmDialog(
            title="Sealport",
            message=question,
            button=["Yes", "No"],
            defaultButton="Yes",
            cancelButton="No",
            dismissString="No",
        )
        return bool(answer == "Yes")

    def show_error(self, message: str, detail: str) -> None:
        cmds.confirmDialog(title="Sealport", message=message, button=["OK"])

    def main_window(self) -> Any:
        return main_window()
