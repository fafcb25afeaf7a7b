"""The Maya adapter against a recording maya.cmds (checked against maya-stubs).

Menus appear and disappear with the plug-in; each format goes through Maya's
own importer after its plug-in is loaded (or a clear error if it is missing);
GLB/3MF/STL go through the core's OBJ conversion; provenance lands on the top
node and nowhere else; Verify Scene re-hashes the verified files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sealport.errors import HostImportError
from sealport.host import provenance

from .conftest import MAYA, MFnPlugin
from .doubles import load_file, verified_by_format

FORMATS = ["obj", "fbx", "usd", "usdz", "glb", "3mf", "stl"]
EXPECTED = {
    "obj": ("objExport", "OBJ"),
    "fbx": ("fbxmaya", "FBX"),
    "usd": ("mayaUsdPlugin", "USD Import"),
    "usdz": ("mayaUsdPlugin", "USD Import"),
    "glb": ("objExport", "OBJ"),
    "3mf": ("objExport", "OBJ"),
    "stl": ("objExport", "OBJ"),
}


def test_plugin_adds_and_removes_the_menu(maya) -> None:
    cmds, scene = maya
    plugin = load_file("sealport_plugin", MAYA / "plug-ins" / "sealport_plugin.py")
    assert callable(plugin.maya_useNewAPI)
    plugin.initializePlugin("mobject")
    assert MFnPlugin.made == [("mobject", "Sealport", "0.1.0", "Any")]
    (created,) = cmds.named("menu")[-1:]
    assert created.args == ("sealportMenu",)
    assert created.kwargs == {"label": "Sealport", "parent": "MayaWindow", "tearOff": True}
    items = cmds.named("menuItem")
    labels = [c.kwargs.get("label") for c in items if not c.kwargs.get("divider")]
    assert labels == ["Secure Import…", "Sign In / Sign Out", "Verify Scene"]
    assert all(c.kwargs["parent"] == "sealportMenu" for c in items)
    assert all(callable(c.kwargs["command"]) for c in items if "label" in c.kwargs)
    assert scene.menus == {"sealportMenu"}

    plugin.uninitializePlugin("mobject")
    assert scene.menus == set()
    assert cmds.named("deleteUI")[-1].kwargs == {"menu": True}


def test_missing_importer_plugin_is_named(maya) -> None:
    cmds, scene = maya
    scene.loaded_plugins.discard("fbxmaya")
    scene.available_plugins.discard("fbxmaya")
    from sealport_maya import importers

    with pytest.raises(HostImportError) as err:
        importers.ensure_plugin("fbxmaya")
    assert "FBX (fbxmaya)" in err.value.message and "Plug-in Manager" in err.value.message
    assert [c.name for c in cmds.calls] == ["pluginInfo", "loadPlugin"]
    assert cmds.calls[1].args == ("fbxmaya",) and cmds.calls[1].kwargs == {"quiet": True}


def test_unloaded_plugin_is_loaded_first(maya) -> None:
    cmds, scene = maya
    scene.loaded_plugins.discard("mayaUsdPlugin")
    from sealport_maya import importers

    importers.ensure_plugin("mayaUsdPlugin")
    assert "mayaUsdPlugin" in scene.loaded_plugins


@pytest.fixture(scope="module")
def verified(maya_client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return verified_by_format(maya_client, tmp_path_factory.mktemp("maya-imports"), FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_import_hook_per_format(maya, verified, fmt, capsys) -> None:
    cmds, scene = maya
    result = verified[fmt]
    from sealport_maya.host import MayaHost

    nodes = MayaHost().import_verified_file(result)
    top = "sealport_" + "".join(ch if ch.isalnum() else "_" for ch in result.manifest.name)
    assert nodes == [top.rstrip("_")]
    plugin, file_type = EXPECTED[fmt]
    assert cmds.named("pluginInfo")[0].args == (plugin,)
    (imp,) = cmds.named("file")
    assert imp.kwargs["type"] == file_type and imp.kwargs["i"] is True
    imported = Path(imp.args[0])
    if fmt in ("glb", "3mf", "stl"):
        assert imported.name.endswith(".sealport.obj") and imported.is_file()
        assert imported.parent == result.path.parent
    else:
        assert imported == result.path
    # The new top-level node is grouped under the Sealport top node.
    (parent,) = cmds.named("parent")
    assert parent.args[-1] == nodes[0] and all(a.count("|") == 1 for a in parent.args[:-1])
    # Provenance: exactly the core's fields plus the verified path, all locked strings.
    stored = scene.attrs[nodes[0]]
    assert stored == dict(provenance(result), sealport_path=str(result.path))
    locks = [c for c in cmds.named("setAttr") if c.kwargs.get("lock") is True]
    assert len(locks) == len(stored)
    out = capsys.readouterr().out
    assert "token" not in out.lower() and "AGE-SECRET" not in out


def test_no_secret_reaches_maya(maya, verified, maya_client) -> None:
    cmds, scene = maya
    from sealport_maya.host import MayaHost

    MayaHost().import_verified_file(verified["obj"])
    secret = maya_client.device_key().identity
    assert secret.startswith("AGE-SECRET-KEY-1")
    text = repr([(c.args, c.kwargs) for c in cmds.calls])
    assert secret not in text and "AGE-SECRET-KEY" not in text.upper() and "Bearer" not in text


def test_verify_scene(maya, verified) -> None:
    cmds, scene = maya
    from sealport.scene_check import summarize
    from sealport_maya import provenance
    from sealport_maya.host import MayaHost

    result = verified["obj"]
    MayaHost().import_verified_file(result)
    checks = provenance.verify_scene()
    assert [c.status for c in checks] == ["ok"]
    original = result.path.read_bytes()
    try:
        result.path.write_bytes(original + b"# changed\n")
        checks = provenance.verify_scene()
        assert [c.status for c in checks] == ["modified"]
        assert "no longer match" in summarize(checks)
    finally:
        result.path.write_bytes(original)
