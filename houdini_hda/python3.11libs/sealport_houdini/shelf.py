"""What the shelf tools and the HDA's Import button call."""

from __future__ import annotations

from typing import Any

import hou

_panels: Any = None


def panels() -> Any:
    global _panels
    if _panels is None:
        from sealport.ui.panels import Panels

        from .host import HoudiniHost, import_dir, main_window

        _panels = Panels(
            on_imported=HoudiniHost().import_verified_file, out_dir=import_dir, parent=main_window
        )
    return _panels


def secure_import() -> None:
    panels().secure_import()


def toggle_sign_in() -> None:
    panels().toggle_sign_in()


def verify_scene() -> None:
    from sealport.scene_check import local_audit_index, summarize

    from .provenance import verify_scene as run

    index = local_audit_index()
    checks = run(index)
    ok = not index.problem and all(c.ok for c in checks)
    severity = hou.severityType.Message if ok else hou.severityType.Warning
    hou.ui.displayMessage(
        summarize(checks, index), severity=severity, title="Sealport: Verify Scene"
    )
