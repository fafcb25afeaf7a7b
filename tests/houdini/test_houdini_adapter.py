"""The Houdini adapter against a recording ``hou`` checked against types-houdini:
geometry via a geo node + File SOP, FBX via hou.hipFile.importFBX, USD via a
Reference LOP in /stage, provenance as user data + locked spare parms, Verify Scene,
and the HDA's Import button logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sealport.errors import HostImportError
from sealport.host import provenance

from tests.maya.doubles import verified_by_format

FORMATS = ["obj", "stl", "glb", "3mf", "fbx", "usd", "usdz"]


@pytest.fixture(scope="module")
def verified(houdini_client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return verified_by_format(houdini_client, tmp_path_factory.mktemp("hou-imports"), FORMATS)


def expected_values(result: Any) -> dict[str, str]:
    return dict(provenance(result), sealport_path=str(result.path))


@pytest.mark.parametrize("fmt", FORMATS)
def test_import_hook_per_format(houdini, verified, fmt, capsys) -> None:
    hou, rec = houdini
    result = verified[fmt]
    from sealport_houdini.host import HoudiniHost
    from sealport_houdini.importers import node_name

    (path,) = HoudiniHost().import_verified_file(result)
    node = hou.nodes[path]
    if fmt in ("obj", "stl", "glb", "3mf"):
        assert [c.args for c in rec.named("ObjNode.createNode")] == [
            ("geo", node_name(result.manifest.name)),
            ("file", "verified_file"),
        ]
        reader = node.children_[0]
        read_path = Path(reader.parms["file"].value)
        if fmt in ("glb", "3mf"):
            assert read_path.name.endswith(".sealport.obj") and read_path.is_file()
        else:
            assert read_path == result.path
        assert reader.flags == {"display": True, "render": True}
    elif fmt == "fbx":
        (call,) = rec.named("hipFile.importFBX")
        assert call.args == (str(result.path),)
        assert call.kwargs == {"suppress_save_prompt": True, "merge_into_scene": True}
    else:
        (call,) = rec.named("LopNode.createNode")
        assert call.args[0] == "reference" and path.startswith("/stage/")
        assert node.parms["filepath1"].value == str(result.path)
    # Provenance: user data and locked spare parms, the same values, nothing else.
    assert node.user_data == expected_values(result)
    for key, value in expected_values(result).items():
        assert node.parms[key].value == value and node.parms[key].locked
    out = capsys.readouterr().out
    assert "token" not in out.lower() and "AGE-SECRET" not in out


def test_no_secret_reaches_houdini(houdini, verified, houdini_client) -> None:
    hou, rec = houdini
    from sealport_houdini.host import HoudiniHost

    HoudiniHost().import_verified_file(verified["obj"])
    secret = houdini_client.device_key().identity
    assert secret.startswith("AGE-SECRET-KEY-1")
    text = repr([(c.args, c.kwargs) for c in rec.calls])
    assert secret not in text and "AGE-SECRET-KEY" not in text.upper()


def test_verify_scene(houdini, verified) -> None:
    hou, rec = houdini
    from sealport_houdini import provenance as prov
    from sealport_houdini.host import HoudiniHost

    result = verified["usd"]
    HoudiniHost().import_verified_file(result)
    assert [c.status for c in prov.verify_scene()] == ["ok"]
    original = result.path.read_bytes()
    try:
        result.path.write_bytes(original + b"\n")
        assert [c.status for c in prov.verify_scene()] == ["modified"]
        result.path.unlink()
        assert [c.status for c in prov.verify_scene()] == ["missing"]
    finally:
        result.path.write_bytes(original)


def test_hda_button_points_sop_at_verified_file(houdini, verified) -> None:
    hou, rec = houdini
    from sealport_houdini.hda import apply_result

    sop = hou.HdaSop("/obj/geo1/sealport_secure_import1", "sealport_secure_import")
    result = verified["glb"]
    assert apply_result(sop, result) == [sop._path]
    assert sop.parms["asset_id"].value == result.manifest.asset_id
    assert sop.parms["verified_file"].value.endswith(".sealport.obj")
    assert sop.user_data == expected_values(result)


def test_hda_lop_refuses_non_usd(houdini, verified) -> None:
    hou, rec = houdini
    from sealport_houdini.hda import apply_result

    lop = hou.HdaLop("/stage/sealport_secure_import1", "sealport_secure_import")
    with pytest.raises(HostImportError):
        apply_result(lop, verified["obj"])
    assert apply_result(lop, verified["usd"]) == [lop._path]
    assert lop.parms["verified_file"].value == str(verified["usd"].path)


def test_missing_stage_is_a_clear_error(houdini, verified) -> None:
    hou, rec = houdini
    del hou.nodes["/stage"]
    from sealport_houdini.host import HoudiniHost

    with pytest.raises(HostImportError) as err:
        HoudiniHost().import_verified_file(verified["usd"])
    assert "/stage" in err.value.message
