"""Houdini package JSON, shelf XML and HDA source parse and agree with each other;
the HDA's cook code runs (LOP against real USD); the adapter type-checks against
types-houdini."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as ET
import pytest

from .conftest import HOUDINI, ROOT

SRC = HOUDINI / "hda_src" / "sealport_secure_import"
OPERATORS = {"Sop": "Sop_1sealport__secure__import", "Lop": "Lop_1sealport__secure__import"}


def test_package_json() -> None:
    pkg = json.loads((HOUDINI / "sealport.json").read_text())
    assert pkg["hpath"] == "$SEALPORT_ROOT" and pkg["load_package_once"] is True
    assert "houdini_python == 'python3.11'" in pkg["enable"]
    env = {k: v for entry in pkg["env"] for k, v in entry.items()}
    assert env["SEALPORT_ROOT"] == "$HOUDINI_PACKAGE_PATH/sealport"
    paths = env["PYTHONPATH"]["value"]
    assert env["PYTHONPATH"]["method"] == "append" and "$SEALPORT_ROOT/core" in paths
    conditional = {k: v for p in paths if isinstance(p, dict) for k, v in p.items()}
    assert set(conditional) == {
        "houdini_os == 'linux'",
        "houdini_os == 'windows'",
        "houdini_os == 'macos'",
    }
    # Everything the package puts on HOUDINI_PATH exists in the source tree.
    for sub in ("toolbar", "python3.11libs"):
        assert (HOUDINI / sub).is_dir()


def test_shelf_tools_call_existing_functions() -> None:
    root = ET.parse(HOUDINI / "toolbar" / "sealport.shelf").getroot()
    assert root.tag == "shelfDocument"
    shelf = root.find("toolshelf")
    members = [m.get("name") for m in shelf.findall("memberTool")]
    tools = {t.get("name"): t for t in root.findall("tool")}
    assert members == list(tools)
    labels = [tools[m].get("label") for m in members]
    assert labels == ["Secure Import", "Sign In/Out", "Verify Scene"]
    shelf_py = ast.parse((HOUDINI / "python3.11libs/sealport_houdini/shelf.py").read_text())
    defined = {f.name for f in shelf_py.body if isinstance(f, ast.FunctionDef)}
    for tool in tools.values():
        script = tool.find("script")
        assert script.get("scriptType") == "python"
        ast.parse(script.text)
        (called,) = re.findall(r"sealport_houdini\.shelf\.(\w+)\(\)", script.text)
        assert called in defined


def parse_dialog_script(text: str) -> list[Any]:
    """Houdini DialogScript: words, "strings" and { nested } blocks, # comments."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}]|[^\s{}"]+', re.sub(r"(?m)^\s*#.*$", "", text))

    def block(i: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        while i < len(tokens):
            t = tokens[i]
            if t == "{":
                inner, i = block(i + 1)
                out.append(inner)
            elif t == "}":
                return out, i + 1
            else:
                out.append(t[1:-1] if t.startswith('"') else t)
                i += 1
        return out, i

    parsed, end = block(0)
    assert end == len(tokens)
    assert len(parsed) == 1 and isinstance(parsed[0], list), "one top-level block"
    return parsed[0]


def parms(dialog: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(dialog):
        if item == "parm":
            body = dialog[i + 1]
            fields: dict[str, Any] = {"tags": {}}
            j = 0
            while j < len(body):
                key = body[j]
                if key == "parmtag":
                    fields["tags"][body[j + 1][0]] = body[j + 1][1]
                else:
                    fields[key] = body[j + 1]
                j += 2
            out[fields["name"]] = fields
    return out


@pytest.mark.parametrize("ctx", sorted(OPERATORS))
def test_hda_source(ctx: str) -> None:
    folder = SRC / OPERATORS[ctx]
    listed = [
        line.split("\t")[0] for line in (folder / "Sections.list").read_text().splitlines()[1:]
    ]
    assert sorted(listed) == sorted(p.name for p in folder.iterdir() if p.name != "Sections.list")
    top = (SRC / "Sections.list").read_text().splitlines()
    assert f"{OPERATORS[ctx]}\t{ctx}/sealport_secure_import" in top
    index = (SRC / "INDEX__SECTION").read_text()
    assert (
        f"Path:         oplib:/{ctx}/sealport_secure_import?{ctx}/sealport_secure_import" in index
    )

    dialog = parse_dialog_script((folder / "DialogScript").read_text())
    assert dialog[dialog.index("name") + 1] == "sealport_secure_import"
    assert dialog[dialog.index("label") + 1] == "Sealport Secure Import"
    p = parms(dialog)
    assert {"asset_id", "import", "verified_file"} <= set(p)
    assert p["import"]["type"] == "button"
    callback = p["import"]["tags"]["script_callback"]
    assert p["import"]["tags"]["script_callback_language"] == "python"
    (fn,) = re.findall(r"hou\.phm\(\)\.(\w+)\(kwargs\)", callback)
    module = ast.parse((folder / "PythonModule").read_text())
    assert fn in {f.name for f in module.body if isinstance(f, ast.FunctionDef)}
    cook = ast.parse((folder / "PythonCook").read_text())
    used = {
        n.args[0].value
        for n in ast.walk(cook)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "evalParm"
    }
    assert used <= set(p), f"cook reads parms the node does not have: {used - set(p)}"
    ET.fromstring((folder / "Tools.shelf").read_bytes())
    json.loads((folder / "ExtraFileOptions").read_text())


class _Node:
    def __init__(self, parms: dict[str, str], stage: Any = None) -> None:
        self.parms, self.stage, self.geo = parms, stage, _Geo()

    def evalParm(self, name: str) -> str:  # noqa: N802
        return self.parms[name]

    def editableStage(self) -> Any:  # noqa: N802
        return self.stage

    def geometry(self) -> Any:
        return self.geo


class _Geo:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def clear(self) -> None:
        self.calls.append(("clear", ()))

    def loadFromFile(self, path: str) -> None:  # noqa: N802
        self.calls.append(("loadFromFile", (path,)))


def run_cook(ctx: str, node: _Node) -> None:
    from tests.maya.doubles import check_method, stub_file

    stub = stub_file("hou-stubs", "__init__.pyi")
    for cls, method in [
        ("Geometry", "clear"),
        ("Geometry", "loadFromFile"),
        ("LopNode", "editableStage"),
        ("SopNode", "geometry"),
        ("OpNode", "evalParm"),
    ]:
        check_method(stub, cls, method)
    from tests.maya.doubles import functions

    assert "pwd" in functions(stub)
    code = (SRC / OPERATORS[ctx] / "PythonCook").read_text()
    hou = type("hou", (), {"pwd": staticmethod(lambda: node)})
    exec(compile(code, f"{ctx}/PythonCook", "exec"), {"hou": hou})


def test_lop_cook_references_verified_usd(tmp_path: Path) -> None:
    from pxr import Usd, UsdGeom

    asset = tmp_path / "chair.usda"
    src = Usd.Stage.CreateNew(str(asset))
    UsdGeom.Cube.Define(src, "/chair")
    src.SetDefaultPrim(src.GetPrimAtPath("/chair"))
    src.Save()
    stage = Usd.Stage.CreateInMemory()
    run_cook("Lop", _Node({"verified_file": str(asset), "prim_path": "/sealport_asset"}, stage))
    prim = stage.GetPrimAtPath("/sealport_asset")
    assert prim.IsValid() and prim.GetTypeName() == "Cube"  # composed from the reference


def test_sop_cook_loads_verified_file() -> None:
    node = _Node({"verified_file": "/jobs/x/sealport/chair.obj"})
    run_cook("Sop", node)
    assert node.geo.calls == [("clear", ()), ("loadFromFile", ("/jobs/x/sealport/chair.obj",))]
    empty = _Node({"verified_file": ""})
    run_cook("Sop", empty)
    assert empty.geo.calls == [("clear", ())]


def test_adapter_type_checks_against_types_houdini() -> None:
    from tests.maya.doubles import stub_file

    stub_file("hou-stubs", "__init__.pyi")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "houdini_hda/python3.11libs/sealport_houdini",
        ],
        cwd=ROOT,
        env={"MYPYPATH": f"{ROOT / 'core'}:{HOUDINI / 'python3.11libs'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
