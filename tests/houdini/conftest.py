"""A recording ``hou`` (every method checked against types-houdini) for adapter tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.maya.doubles import Call, check_method, classes, purge, signed_in_client, stub_file

ROOT = Path(__file__).resolve().parents[2]
HOUDINI = ROOT / "houdini_hda"
STUB = stub_file("hou-stubs", "__init__.pyi")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def record(self, cls: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        check_method(STUB, cls, name, kwargs)
        self.calls.append(Call(f"{cls}.{name}", args, kwargs))

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


def make_hou(rec: Recorder) -> Any:
    """A module object with the classes and functions the adapter uses."""
    import types

    hou = types.ModuleType("hou")
    nodes: dict[str, Any] = {}

    class ParmTemplate:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            rec.record(type(self).__name__, "__init__", args, kwargs)
            self.args, self.kwargs = args, kwargs

    class StringParmTemplate(ParmTemplate):
        pass

    class FolderParmTemplate(ParmTemplate):
        pass

    class ParmTemplateGroup:
        def __init__(self) -> None:
            self.entries: list[Any] = []

        def append(self, template: Any) -> None:
            rec.record("ParmTemplateGroup", "append", (template,), {})
            self.entries.append(template)

    class Parm:
        def __init__(self, node: Any, name: str) -> None:
            self.node_, self.name, self.value, self.locked = node, name, "", False

        def set(self, value: Any) -> None:
            rec.record("Parm", "set", (value,), {})
            assert not self.locked
            self.value = value

        def lock(self, on: bool) -> None:
            rec.record("Parm", "lock", (on,), {})
            self.locked = on

    class Node:
        PARMS: tuple[str, ...] = ()

        def __init__(self, path: str, type_name: str) -> None:
            self._path, self.type_name = path, type_name
            self.children_: list[Any] = []
            self.user_data: dict[str, str] = {}
            self.parms = {p: Parm(self, p) for p in self.PARMS}
            self.group = ParmTemplateGroup()
            self.flags: dict[str, bool] = {}
            nodes[path] = self

        def _rec(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            stub_classes = classes(STUB)
            cls = next(c.__name__ for c in type(self).__mro__ if c.__name__ in stub_classes)
            rec.record(cls, name, args, kwargs)

        def path(self) -> str:
            self._rec("path", (), {})
            return self._path

        def createNode(self, type_name: str, node_name: str | None = None) -> Any:  # noqa: N802
            self._rec("createNode", (type_name, node_name), {})
            cls = CHILD_TYPES[(type(self).__name__, type_name)]
            child = cls(f"{self._path}/{node_name or type_name}", type_name)
            self.children_.append(child)
            return child

        def allSubChildren(self) -> tuple[Any, ...]:  # noqa: N802
            self._rec("allSubChildren", (), {})
            out: list[Any] = []
            for c in self.children_:
                out += [c, *c.allSubChildren()]
            return tuple(out)

        def parm(self, name: str) -> Any:
            self._rec("parm", (name,), {})
            return self.parms.get(name)

        def setUserData(self, key: str, value: str) -> None:  # noqa: N802
            self._rec("setUserData", (key, value), {})
            assert isinstance(value, str)
            self.user_data[key] = value

        def userDataDict(self) -> dict[str, str]:  # noqa: N802
            self._rec("userDataDict", (), {})
            return dict(self.user_data)

        def parmTemplateGroup(self) -> Any:  # noqa: N802
            self._rec("parmTemplateGroup", (), {})
            return self.group

        def setParmTemplateGroup(self, group: Any) -> None:  # noqa: N802
            self._rec("setParmTemplateGroup", (group,), {})
            for folder in group.entries:
                for t in folder.kwargs["parm_templates"]:
                    self.parms[t.args[0]] = Parm(self, t.args[0])

        def setDisplayFlag(self, on: bool) -> None:  # noqa: N802
            self._rec("setDisplayFlag", (on,), {})
            self.flags["display"] = on

        def setRenderFlag(self, on: bool) -> None:  # noqa: N802
            self._rec("setRenderFlag", (on,), {})
            self.flags["render"] = on

        def moveToGoodPosition(self) -> None:  # noqa: N802
            self._rec("moveToGoodPosition", (), {})

        def setSelected(self, on: bool, clear_all_selected: bool = False) -> None:  # noqa: N802
            self._rec("setSelected", (on,), {"clear_all_selected": clear_all_selected})

    class OpNode(Node):
        pass

    class ObjNode(OpNode):
        pass

    class SopNode(OpNode):
        PARMS = ("file",)

    class LopNode(OpNode):
        PARMS = ("filepath1",)

    class HdaSop(SopNode):
        PARMS = ("asset_id", "verified_file")

    class HdaLop(LopNode):
        PARMS = ("asset_id", "verified_file", "prim_path")

    CHILD_TYPES = {
        ("ObjNode", "geo"): ObjNode,
        ("ObjNode", "file"): SopNode,
        ("LopNode", "reference"): LopNode,
    }

    class hipFile:  # noqa: N801
        @staticmethod
        def importFBX(file_name: str, **kwargs: Any) -> tuple[Any, ...]:  # noqa: N802
            rec.record("hipFile", "importFBX", (file_name,), kwargs)
            return (ObjNode(f"/obj/{Path(file_name).stem}_fbx", "subnet"), "")

    def node(path: str) -> Any:
        rec.calls.append(Call("node", (path,), {}))
        assert "node" in [n for n in _module_functions()], "hou.node missing from stubs"
        return nodes.get(path)

    ObjNode("/obj", "obj")
    LopNode("/stage", "stage")
    for name, value in {
        "ParmTemplateGroup": ParmTemplateGroup,
        "StringParmTemplate": StringParmTemplate,
        "FolderParmTemplate": FolderParmTemplate,
        "Node": Node,
        "OpNode": OpNode,
        "ObjNode": ObjNode,
        "SopNode": SopNode,
        "LopNode": LopNode,
        "hipFile": hipFile,
        "node": node,
        "HdaSop": HdaSop,
        "HdaLop": HdaLop,
        "nodes": nodes,
    }.items():
        setattr(hou, name, value)
    return hou


def _module_functions() -> set[str]:
    from tests.maya.doubles import functions

    return set(functions(STUB))


@pytest.fixture
def houdini(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Recorder]]:
    rec = Recorder()
    hou = make_hou(rec)
    monkeypatch.setitem(sys.modules, "hou", hou)
    monkeypatch.syspath_prepend(str(HOUDINI / "python3.11libs"))
    purge("sealport_houdini")
    yield hou, rec
    purge("sealport_houdini")


@pytest.fixture(scope="module")
def houdini_client(sealport_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return signed_in_client(sealport_server, tmp_path_factory.mktemp("houdini-ws"))
