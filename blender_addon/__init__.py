"""Sealport for Blender: sign in, browse the studio catalogue, import verified assets.

A thin adapter over the host-agnostic core (``sealport``, bundled as a wheel):
register, UI (:mod:`.panel`), operators (:mod:`.operators`), import hooks
(:mod:`.import_hooks`). Long work runs off the main thread (:mod:`.jobs`).
"""

from __future__ import annotations

import bpy

from . import jobs, operators, panel, preferences
from .session import STATE

_CLASSES = (preferences.SealportPreferences, *operators.CLASSES, *panel.CLASSES)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    panel.register_props()
    bpy.types.TOPBAR_MT_file_import.append(panel.menu_import)


def unregister() -> None:
    jobs.shutdown()
    bpy.types.TOPBAR_MT_file_import.remove(panel.menu_import)
    panel.unregister_props()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    STATE.close()
