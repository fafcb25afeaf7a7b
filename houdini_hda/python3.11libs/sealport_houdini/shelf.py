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
    from sealport.ui.scene_check import summarize

    from .provenance import verify_scene as run

    checks = run()
    severity = hou.severityType.Message if all(c.ok for c in checks) else hou.severityType.Warning
    hou.ui.displayMessage(summarize(checks), severity=severity, title="Sealport: Verify Scene")
