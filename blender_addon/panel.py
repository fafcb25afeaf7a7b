"""The "Sealport" sidebar tab: account and sign-in, the catalogue, progress, messages.

Drawing only reads :data:`.session.STATE` and window-manager properties; it
never calls the network (a draw runs many times a second on the main thread).
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import CollectionProperty, EnumProperty, IntProperty, StringProperty

from . import jobs
from .session import STATE

FORMATS = ("glb", "fbx", "obj", "stl", "usd", "usdz", "3mf")


class SealportAsset(bpy.types.PropertyGroup):
    asset_id: StringProperty()  # type: ignore[valid-type]
    project: StringProperty()  # type: ignore[valid-type]
    format: StringProperty()  # type: ignore[valid-type]
    version: IntProperty()  # type: ignore[valid-type]
    size: IntProperty()  # type: ignore[valid-type]
    created_by: StringProperty()  # type: ignore[valid-type]
    created_at: StringProperty()  # type: ignore[valid-type]


def set_catalogue(wm: bpy.types.WindowManager, assets: list[dict[str, Any]]) -> None:
    wm.sealport_assets.clear()
    for a in sorted(assets, key=lambda a: (a.get("project", ""), a.get("name", ""))):
        item = wm.sealport_assets.add()
        item.name = str(a.get("name", ""))
        item.asset_id = str(a.get("asset_id", ""))
        item.project = str(a.get("project", ""))
        item.format = str(a.get("format", ""))
        item.version = int(a.get("version", 0))
        item.size = min(int(a.get("size", 0)), 2**31 - 1)
        item.created_by = str(a.get("created_by", ""))
        item.created_at = str(a.get("created_at", ""))
    wm.sealport_index = 0 if assets else -1


def _projects(self: Any, context: Any) -> list[tuple[str, str, str]]:
    names = sorted({a.get("project", "") for a in STATE.assets})
    items = [("ALL", "All projects", "")] + [(p, p, "") for p in names if p]
    _projects.keep = items  # type: ignore[attr-defined]  # Blender needs the strings kept alive
    return items


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


class SEALPORT_UL_assets(bpy.types.UIList):
    """Catalogue list; the list's own filter box searches by name."""

    def draw_item(
        self,
        context: Any,
        layout: Any,
        data: Any,
        item: Any,
        icon: Any,
        active_data: Any,
        active_propname: str,
        index: int = 0,
    ) -> None:
        row = layout.row(align=True)
        row.label(text=item.name, icon="MESH_DATA")
        row.label(text=f"{item.format} v{item.version}")

    def filter_items(self, context: Any, data: Any, propname: str) -> tuple[list[int], list[int]]:
        items = getattr(data, propname)
        wm = context.window_manager
        needle = self.filter_name.lower()
        flags = []
        for it in items:
            show = (
                needle in it.name.lower()
                and wm.sealport_project in ("ALL", it.project)
                and wm.sealport_format in ("ALL", it.format)
            )
            flags.append(self.bitflag_filter_item if show else 0)
        return flags, []


class SEALPORT_PT_main(bpy.types.Panel):
    bl_label = "Sealport"
    bl_idname = "SEALPORT_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Sealport"

    def draw(self, context: Any) -> None:
        layout = self.layout
        job = jobs.running()
        if STATE.auth is not None:
            self._draw_code(layout)
        elif STATE.me:
            box = layout.box()
            box.label(text=str(STATE.me.get("name") or STATE.me.get("sub")), icon="USER")
            client = STATE.client
            if client is not None:
                box.label(text=client.config.server_url, icon="WORLD")
            box.operator("sealport.sign_out", icon="UNLINKED")
        else:
            layout.label(text="Not signed in", icon="LOCKED")
            layout.operator("sealport.sign_in", icon="LINKED")
        if job is not None:
            box = layout.box()
            box.label(text=f"{job.name}: {job.stage}", icon="SORTTIME")
            if job.total:
                box.progress(factor=job.fraction, text=f"{job.fraction:.0%}")
            box.operator("sealport.cancel", icon="CANCEL")
        if STATE.messages:
            level, text = STATE.messages[-1]
            icon = {"ERROR": "ERROR", "WARNING": "ERROR"}.get(level, "INFO")
            col = layout.column()
            col.alert = level == "ERROR"
            for i, line in enumerate(_wrap(text, 40)):
                col.label(text=line, icon=icon if i == 0 else "BLANK1")
        layout.operator("sealport.verify_scene", icon="CHECKMARK")

    def _draw_code(self, layout: Any) -> None:
        auth = STATE.auth
        box = layout.box()
        box.label(text="Sign in on the studio page with this code:")
        row = box.row()
        row.scale_y = 2.0
        row.alignment = "CENTER"
        row.label(text=auth.user_code)
        if STATE.qr_preview is not None:
            box.template_icon(icon_value=STATE.qr_preview.icon_id, scale=8.0)
        row = box.row(align=True)
        row.operator("sealport.open_verification", icon="URL")
        row.operator("sealport.copy_code", icon="COPYDOWN")
        left = STATE.seconds_left()
        box.label(text=f"Code expires in {left // 60}:{left % 60:02d}", icon="TIME")


class SEALPORT_PT_catalogue(bpy.types.Panel):
    bl_label = "Catalogue"
    bl_idname = "SEALPORT_PT_catalogue"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Sealport"
    bl_parent_id = "SEALPORT_PT_main"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return bool(STATE.me)

    def draw(self, context: Any) -> None:
        layout, wm = self.layout, context.window_manager
        row = layout.row(align=True)
        row.prop(wm, "sealport_project", text="")
        row.prop(wm, "sealport_format", text="")
        row.operator("sealport.refresh", text="", icon="FILE_REFRESH")
        layout.template_list(
            "SEALPORT_UL_assets", "", wm, "sealport_assets", wm, "sealport_index", rows=5
        )
        if 0 <= wm.sealport_index < len(wm.sealport_assets):
            a = wm.sealport_assets[wm.sealport_index]
            col = layout.column(align=True)
            col.label(text=f"{a.name}  ·  {a.project}")
            col.label(text=f"Version {a.version} · {a.format.upper()} · {_human(a.size)}")
            col.label(text=f"By {a.created_by} · {a.created_at}")
            op = layout.operator("sealport.secure_import", icon="IMPORT")
            op.asset_id = a.asset_id


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def menu_import(self: Any, context: Any) -> None:
    self.layout.operator("sealport.secure_import", text="Secure Import (Sealport)")


CLASSES = (SealportAsset, SEALPORT_UL_assets, SEALPORT_PT_main, SEALPORT_PT_catalogue)


def register_props() -> None:
    wm = bpy.types.WindowManager
    wm.sealport_assets = CollectionProperty(type=SealportAsset)
    wm.sealport_index = IntProperty(default=-1)
    wm.sealport_project = EnumProperty(name="Project", items=_projects)
    wm.sealport_format = EnumProperty(
        name="Format", items=[("ALL", "All formats", "")] + [(f, f.upper(), "") for f in FORMATS]
    )


def unregister_props() -> None:
    for name in ("sealport_assets", "sealport_index", "sealport_project", "sealport_format"):
        delattr(bpy.types.WindowManager, name)
