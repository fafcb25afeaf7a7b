"""Run inside Blender: draw panels headless into a layout that checks every call against RNA.

Background Blender has no region to draw into, so a real ``UILayout`` cannot
be made. :class:`CheckedLayout` stands in for one and is strict: each method
must exist on ``bpy.types.UILayout`` with those keyword names, operators must
be registered, ``prop``/``template_list`` must name real properties, icons
must be real icon names. It records the texts drawn, which is what a person
would read on screen.
"""

from __future__ import annotations

import types
from typing import Any

import bpy

_FUNCS = bpy.types.UILayout.bl_rna.functions
_ICONS = {i.identifier for i in _FUNCS["label"].parameters["icon"].enum_items}
_ATTRS = {p.identifier for p in bpy.types.UILayout.bl_rna.properties}


class UICheckError(AssertionError):
    pass


class _OpProps:
    """What ``layout.operator()`` returns: only the operator's real properties can be set."""

    def __init__(self, idname: str) -> None:
        rna = getattr(getattr(bpy.ops, idname.split(".")[0]), idname.split(".")[1]).get_rna_type()
        object.__setattr__(self, "_names", {p.identifier for p in rna.properties})
        object.__setattr__(self, "values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._names:
            raise UICheckError(f"operator has no property {name!r}")
        self.values[name] = value


class CheckedLayout:
    def __init__(self, texts: list[str] | None = None, ops: list[tuple[str, Any]] | None = None):
        object.__setattr__(self, "texts", texts if texts is not None else [])
        object.__setattr__(self, "ops", ops if ops is not None else [])
        object.__setattr__(self, "icons", [])

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _ATTRS:
            raise UICheckError(f"UILayout has no attribute {name!r}")

    def __getattr__(self, name: str) -> Any:
        if name not in _FUNCS:
            raise UICheckError(f"UILayout has no function {name!r}")
        params = {p.identifier for p in _FUNCS[name].parameters}

        def call(*args: Any, **kwargs: Any) -> Any:
            unknown = set(kwargs) - params
            if unknown:
                raise UICheckError(f"UILayout.{name}() has no parameter(s) {sorted(unknown)}")
            icon = kwargs.get("icon")
            if icon is not None and icon not in _ICONS:
                raise UICheckError(f"unknown icon {icon!r}")
            if "icon_value" in kwargs:
                self.icons.append(kwargs["icon_value"])
            if "text" in kwargs and kwargs["text"]:
                self.texts.append(str(kwargs["text"]))
            if name in ("prop", "prop_search"):
                data, prop = args[0], args[1]
                if prop not in data.bl_rna.properties:
                    raise UICheckError(f"{data!r} has no property {prop!r}")
            if name == "template_list":
                data, prop, active, active_prop = args[2], args[3], args[4], args[5]
                for d, p in ((data, prop), (active, active_prop)):
                    if p not in d.bl_rna.properties:
                        raise UICheckError(f"{d!r} has no property {p!r}")
                if not hasattr(bpy.types, args[0]):
                    raise UICheckError(f"UIList {args[0]!r} is not registered")
            if name == "operator":
                idname = args[0]
                mod, _, op = idname.partition(".")
                if op not in dir(getattr(bpy.ops, mod)):
                    raise UICheckError(f"operator {idname!r} is not registered")
                props = _OpProps(idname)
                self.ops.append((idname, props))
                return props
            if name in ("row", "column", "box", "split", "column_flow", "grid_flow"):
                child = CheckedLayout(self.texts, self.ops)
                object.__setattr__(child, "icons", self.icons)
                return child
            return None

        return call


class _PanelSelf:
    """``self`` for a draw call: our layout, everything else from ``target`` (e.g. preferences)."""

    def __init__(self, layout: CheckedLayout, target: Any = None) -> None:
        self.layout = layout
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if isinstance(self._target, type) and callable(value):  # a panel's own helper method
            return types.MethodType(value, self)
        return value


def draw(panel_cls: type, context: Any = None) -> CheckedLayout:
    """Call a registered panel's ``draw`` (after its ``poll``) on a checked layout."""
    context = context or bpy.context
    layout = CheckedLayout()
    if not hasattr(panel_cls, "poll") or panel_cls.poll(context):
        panel_cls.draw(_PanelSelf(layout, panel_cls), context)
    return layout
