"""A recording ``maya`` package (cmds checked against maya-stubs) for adapter tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .doubles import RecordingModule, check_method, module, purge, signed_in_client, stub_file

ROOT = Path(__file__).resolve().parents[2]
MAYA = ROOT / "maya_plugin"


class MayaScene:
    """Just enough state for menus, attributes and groups to answer like Maya."""

    def __init__(self) -> None:
        self.menus: set[str] = set()
        self.attrs: dict[str, dict[str, Any]] = {}
        self.loaded_plugins: set[str] = {"objExport", "fbxmaya", "mayaUsdPlugin"}
        self.available_plugins: set[str] = set(self.loaded_plugins)
        self.imported: list[str] = []

    def responders(self) -> dict[str, Any]:
        def menu(name: str = "", exists: bool = False, **kw: Any) -> Any:
            if exists:
                return name in self.menus
            self.menus.add(name)
            return name

        def delete_ui(name: str, menu: bool = False) -> None:
            assert menu and name in self.menus
            self.menus.discard(name)

        def plugin_info(name: str, query: bool = False, loaded: bool = False) -> bool:
            assert query and loaded
            return name in self.loaded_plugins

        def load_plugin(name: str, quiet: bool = False) -> list[str]:
            if name not in self.available_plugins:
                raise RuntimeError(f'Plug-in, "{name}", was not found on MAYA_PLUG_IN_PATH.')
            self.loaded_plugins.add(name)
            return [name]

        def file(path: str, **kw: Any) -> list[str]:
            assert kw["i"] and kw["returnNewNodes"]
            self.imported.append(path)
            ns = kw["namespace"]
            return [f"|{ns}:mesh", f"|{ns}:mesh|{ns}:meshShape"]

        def group(empty: bool = False, name: str = "") -> str:
            assert empty
            self.attrs[name] = {}
            return name

        def ls(*names: str, **kw: Any) -> list[str]:
            if kw.get("assemblies"):
                return [n for n in names if n.count("|") == 1]
            if kw.get("type") == "transform":
                return list(self.attrs)
            raise AssertionError(f"unexpected ls {names} {kw}")

        def attribute_query(attr: str, node: str = "", exists: bool = False) -> bool:
            return attr in self.attrs.get(node, {})

        def add_attr(node: str, longName: str = "", dataType: str = "") -> None:  # noqa: N803
            assert dataType == "string"
            self.attrs[node][longName] = None

        def set_attr(attr: str, *value: Any, **kw: Any) -> None:
            node, key = attr.split(".", 1)
            assert key in self.attrs[node], f"setAttr before addAttr: {attr}"
            if value:
                assert kw.get("type") == "string"
                self.attrs[node][key] = value[0]

        def list_attr(node: str, userDefined: bool = False) -> list[str]:  # noqa: N803
            return list(self.attrs[node])

        def get_attr(attr: str) -> Any:
            node, key = attr.split(".", 1)
            return self.attrs[node][key]

        return {
            "menu": menu,
            "deleteUI": delete_ui,
            "pluginInfo": plugin_info,
            "loadPlugin": load_plugin,
            "file": file,
            "group": group,
            "ls": ls,
            "attributeQuery": attribute_query,
            "addAttr": add_attr,
            "setAttr": set_attr,
            "listAttr": list_attr,
            "getAttr": get_attr,
            "menuItem": lambda *a, **k: "menuItem1",
            "workspace": lambda *a, **k: "/projects/show/",
        }


class MFnPlugin:
    """maya.api.OpenMaya.MFnPlugin double: checks the constructor against the stub."""

    made: list[tuple[Any, ...]] = []

    def __init__(self, *args: Any) -> None:
        check_method(stub_file("maya-stubs", "api/OpenMaya.pyi"), "MFnPlugin", "__init__")
        MFnPlugin.made.append(args)


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingModule, MayaScene]]:
    scene = MayaScene()
    cmds = RecordingModule(stub_file("maya-stubs", "cmds/__init__.pyi"), scene.responders())
    api_om = module("maya.api.OpenMaya", MFnPlugin=MFnPlugin)
    maya_pkg = module("maya", cmds=cmds)
    for name, mod in {
        "maya": maya_pkg,
        "maya.cmds": cmds,
        "maya.api": module("maya.api", OpenMaya=api_om),
        "maya.api.OpenMaya": api_om,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.syspath_prepend(str(MAYA / "scripts"))
    purge("sealport_maya")
    MFnPlugin.made.clear()
    yield cmds, scene
    purge("sealport_maya")


@pytest.fixture(scope="module")
def maya_client(sealport_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return signed_in_client(sealport_server, tmp_path_factory.mktemp("maya-ws"))
