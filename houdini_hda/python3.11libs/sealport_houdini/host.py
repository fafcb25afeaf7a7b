"""The :class:`sealport.host.Host` for Houdini, and the panels' parent window."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hou
from sealport.host import provenance

from . import importers
from . import provenance as prov


def main_window() -> Any:
    """Houdini's main window (already a QWidget of Houdini's own binding)."""
    return hou.qt.mainWindow()


def import_dir() -> Path:
    """Verified files go to $HIP/sealport/, beside the scene that uses them."""
    hip = hou.getenv("HIP") or os.getcwd()
    return Path(hip) / "sealport"


class HoudiniHost:
    name = "houdini"

    def import_verified_file(self, result: Any) -> list[str]:
        m = result.manifest
        node = importers.hook_for(m.format)(Path(result.path), m.name)
        prov.store(node, dict(provenance(result), sealport_path=str(result.path)))
        node.setSelected(True, clear_all_selected=True)
        print(f"Sealport: imported {m.name} v{m.version} as {node.path()} (verified)")
        return [node.path()]

    def report_progress(self, stage: str, done: int, total: int) -> None:
        hou.ui.setStatusMessage(f"Sealport: {stage}")

    def ask_yes_no(self, question: str) -> bool:
        return hou.ui.displayMessage(question, buttons=("Yes", "No"), title="Sealport") == 0

    def show_error(self, message: str, detail: str) -> None:
        hou.ui.displayMessage(
            message, severity=hou.severityType.Error, title="Sealport", details=detail
        )

    def main_window(self) -> Any:
        return main_window()
