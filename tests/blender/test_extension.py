"""The Blender extension, proven in a real headless Blender (bpy from PyPI).

One Blender process (tests/blender/driver.py) plays an artist's session
against the real reference server over TLS 1.3: install the built zip into a
clean Blender, enable it, sign in (the code read off the panel and approved
on the server's verification page, as a person would), Secure Import one
asset per format, a tampered delivery, a cancelled import, Verify Scene,
save the .blend and the preferences, sign out, and disable the extension
while a sign-in is pending. Each test below checks one promise on what the
process recorded, the files it left, and its console output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import HERE, blender_env, run_blender

FORMATS = ("glb", "fbx", "obj", "stl", "usd", "usdz", "3mf")
PROVENANCE = (
    "sealport_asset_id",
    "sealport_version",
    "sealport_manifest_sha256",
    "sealport_verified_at",
    "sealport_watermark",
    "sealport_delivery_id",
)


@pytest.fixture(scope="module")
def session(
    blender_python: Path,
    extension_zip: Path,
    blender_assets: dict[str, dict[str, Any]],
    sealport_server: Any,
    keyring_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("blender-session")
    home = work / "profile"
    home.mkdir()
    shutil.copy(sealport_server.client_config_path, home / "sealport.toml")
    spec = {
        "zip": str(extension_zip),
        "config": str(home / "sealport.toml"),
        "import_dir": str(home / "cache" / "verified"),
        "ca_file": str(sealport_server.ca_file),
        "username": sealport_server.username,
        "password": sealport_server.password,
        "data_dir": str(sealport_server.data_dir),
        "assets": {f: blender_assets[f] for f in FORMATS},
        "tamper_asset": blender_assets["glb"]["asset_id"],
        "cancel_asset": blender_assets["cancel"]["asset_id"],
        "cache_dir": str(home / "cache"),
        "out": str(work / "observed.json"),
        "blend": str(work / "scene.blend"),
        "secrets_out": str(work / "secrets.json"),
    }
    (work / "spec.json").write_text(json.dumps(spec))
    done = run_blender(
        blender_python,
        [str(HERE / "driver.py"), str(work / "spec.json")],
        blender_env(work / "blender-user", keyring_env),
        timeout=600,
    )
    observed = json.loads(Path(spec["out"]).read_text()) if Path(spec["out"]).exists() else {}
    assert done.returncode == 0, (
        f"driver failed after steps {observed.get('steps')}:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    )
    return {"spec": spec, "out": observed, "console": done.stdout + done.stderr, "work": work}


def test_zip_installs_into_clean_blender_with_bundled_core(session: dict[str, Any]) -> None:
    inst = session["out"]["install"]
    assert inst["result"] == ["FINISHED"] and inst["enabled"]
    # The core comes from the extension's wheels, not from any development checkout.
    assert "/extensions/.local/lib/python3.11/site-packages/sealport/" in inst["core_file"]
    assert "/extensions/user_default/sealport/" in inst["addon_file"]
    assert "Or, without a config file:" in session["out"]["prefs_texts"]
    menu = session["out"]["file_import_menu"]
    assert menu["registered"] is True
    assert menu["entries"] == [["sealport.secure_import", "Secure Import (Sealport)"]]


def test_sign_in_shows_code_qr_countdown_and_succeeds(
    session: dict[str, Any], sealport_server: Any
) -> None:
    out = session["out"]
    assert "Not signed in" in out["signed_out_panel"]
    assert out["timer_registered_during_sign_in"] is True
    code = out["code_panel"]
    assert any(t.startswith("Code expires in ") for t in code["texts"])
    # The QR code of the verification URI, loaded as an image preview and drawn with
    # template_icon (background Blender starts no icon system, so its icon_id is 0 here).
    assert code["qr_is_uri"] is True and code["qr_size"][0] > 0
    assert len(code["icons"]) == 1
    assert {"sealport.open_verification", "sealport.copy_code", "sealport.cancel"} <= set(
        code["ops"]
    )
    s = out["sign_in"]
    assert s["errors"] == []
    assert s["me"]["sub"] == sealport_server.username
    assert s["message"][0] == "INFO" and "Signed in" in s["message"][1]
    assert "Test Artist" in s["panel"]
    assert s["catalogue"] >= len(FORMATS)


def test_catalogue_search_and_format_filter(session: dict[str, Any]) -> None:
    f = session["out"]["filter"]
    assert f["search"] == ["probe-obj"]
    assert f["formats"] == ["stl"]
    assert "probe-usdz" in f["rows"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_secure_import_per_format(
    session: dict[str, Any], blender_assets: dict[str, Any], fmt: str
) -> None:
    res = session["out"]["imports"][fmt]
    assert res["op"] == ["FINISHED"]
    assert res["message"][0] == "INFO", res["message"]
    assert res["collection"] == f"probe-{fmt}" and res["in_scene"]
    meshes = [o for o in res["objects"] if o["type"] == "MESH"]
    assert sum(o["vertices"] for o in meshes) == blender_assets[fmt]["vertices"]
    asset_id = blender_assets[fmt]["asset_id"]
    for holder in [res["collection_props"], *[o["props"] for o in res["objects"]]]:
        assert set(PROVENANCE) <= set(holder)
        assert holder["sealport_asset_id"] == asset_id
        assert len(holder["sealport_manifest_sha256"]) == 64
        assert holder["sealport_verified_at"].endswith("Z")
    for o in meshes:
        assert len(o["props"]["sealport_geometry_sha256"]) == 64


def test_tampered_delivery_imports_nothing(session: dict[str, Any]) -> None:
    t = session["out"]["tamper"]
    assert t["flipped"], "the hook did not see the delivery request"
    assert t["unchanged"] is True
    assert "collection" not in t
    assert t["message"][0] == "ERROR"


def test_cancelled_import_leaves_nothing_behind(session: dict[str, Any]) -> None:
    c = session["out"]["cancel"]
    assert c["unchanged"] is True
    assert c["files_after"] == c["files_before"]
    assert c["message"][0] == "WARNING" and "cancelled" in c["message"][1].lower()
    # Cancelled in the core (usual) or, if the worker had already finished, before import.
    assert c["audit"][-1] in ("import.cancelled", "host.import_cancelled"), c["audit"]


def test_verify_scene_finds_edits_and_additions(session: dict[str, Any]) -> None:
    v = session["out"]["verify_scene"]
    assert v["clean"][0] == "INFO" and "all 7" in v["clean"][1], v["clean"]
    assert v["edited"][0] == "WARNING" and "changed since it was imported" in v["edited"][1]
    assert v["added"][0] == "WARNING" and "'intruder' was added to 'probe-obj'" in v["added"][1]
    assert v["restored"][0] == "INFO"


def test_no_secret_in_blend_prefs_or_console(session: dict[str, Any]) -> None:
    secrets = json.loads(Path(session["spec"]["secrets_out"]).read_text())
    assert any(s.startswith("AGE-SECRET-KEY-") for s in secrets)
    assert len(secrets) >= 2  # the device identity and at least the refresh token
    files = session["out"]["files"]
    blobs = {name: Path(files[name]).read_bytes() for name in ("blend", "userpref")}
    assert b"probe-glb" in blobs["blend"]  # the scene really was saved
    assert session["spec"]["config"].encode() in blobs["userpref"]  # and the preferences
    for s in secrets:
        for name, blob in blobs.items():
            assert s.encode() not in blob, f"a secret is in the saved {name}"
        assert s not in session["console"], "a secret was printed to the console"


def test_sign_out(session: dict[str, Any]) -> None:
    s = session["out"]["sign_out"]
    assert s["message"] == ["INFO", "Signed out of Sealport."]
    assert "Not signed in" in s["panel"]


def test_unregister_leaves_nothing(session: dict[str, Any]) -> None:
    u = session["out"]["unregister"]
    assert u["enabled"] is False
    assert u["classes"] == [] and u["ops"] == [] and u["wm_props"] == []
    assert u["timer"] is False and u["handlers"] == [] and u["menu"] is False
    assert u["threads"] == []  # the pending sign-in was cancelled and joined
