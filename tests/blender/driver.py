"""Run inside a clean Blender (a Python with only bpy): the artist's whole session, scripted.

Usage: python driver.py SPEC.json  (SPEC written by test_extension.py). Writes
what it observed to spec["out"] as JSON; the pytest side asserts on it.

Background Blender runs no event loop, so nothing fires ``bpy.app.timers``.
:func:`pump_until` plays that loop: it calls the add-on's timer function only
while the add-on has it registered, exactly as Blender would, and never
otherwise. Everything else goes through the real UI entry points: the zip is
installed with ``extensions.package_install_files``, clicks are operator
calls, the sign-in code is read off the drawn panel and typed into the
server's verification page, and the add-on is disabled through Preferences.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ui_check  # noqa: E402

PKG = "bl_ext.user_default.sealport"
OUT: dict[str, Any] = {"steps": []}


def mod(name: str = "") -> Any:
    return sys.modules[PKG + ("." + name if name else "")]


def pump_until(cond: Any, timeout: float = 60.0, draw: bool = True) -> None:
    jobs = mod("jobs")
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"condition not met in {timeout}s; messages={mod('session').STATE.messages}"
            )
        if bpy.app.timers.is_registered(jobs.pump):
            if draw:
                OUT.setdefault("drawn_while_busy", []).extend(panel_texts())
            jobs.pump()
        time.sleep(0.05)


def idle() -> bool:
    return mod("jobs").running() is None


def panel_texts() -> list[str]:
    panel = mod("panel")
    texts = ui_check.draw(panel.SEALPORT_PT_main).texts
    return texts + ui_check.draw(panel.SEALPORT_PT_catalogue).texts


def snapshot() -> dict[str, Any]:
    """Every datablock by name, plus each object's collections and vertex count."""
    snap: dict[str, Any] = {}
    for attr in dir(bpy.data):
        coll = getattr(bpy.data, attr, None)
        if isinstance(coll, bpy.types.bpy_prop_collection) and attr not in (
            "window_managers",
            "screens",
            "workspaces",
        ):
            snap[attr] = sorted(b.name for b in coll)
    snap["object_detail"] = {
        o.name: (
            [c.name for c in o.users_collection],
            len(o.data.vertices) if o.type == "MESH" else 0,
        )
        for o in bpy.data.objects
    }
    snap["scene_children"] = sorted(c.name for c in bpy.context.scene.collection.children)
    return snap


def last_message() -> list[str]:
    msgs = mod("session").STATE.messages
    return list(msgs[-1]) if msgs else []


def install(spec: dict[str, Any]) -> None:
    result = bpy.ops.extensions.package_install_files(
        repo="user_default", filepath=spec["zip"], enable_on_install=True
    )
    import sealport

    OUT["install"] = {
        "result": sorted(result),
        "enabled": PKG in bpy.context.preferences.addons,
        "core_file": sealport.__file__,
        "addon_file": mod().__file__,
    }
    panel = mod("panel")
    menu = ui_check.CheckedLayout()
    panel.menu_import(ui_check._PanelSelf(menu), bpy.context)
    OUT["file_import_menu"] = {
        "registered": panel.menu_import in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize(),
        "entries": [(op, text) for (op, _), text in zip(menu.ops, menu.texts, strict=True)],
    }
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.config_file = spec["config"]
    layout = ui_check.CheckedLayout()
    type(prefs).draw(ui_check._PanelSelf(layout, prefs), bpy.context)
    OUT["prefs_texts"] = layout.texts


def sign_in(spec: dict[str, Any]) -> None:
    from sealport.demo import approve_via_page

    OUT["signed_out_panel"] = panel_texts()
    bpy.ops.sealport.sign_in()
    OUT["timer_registered_during_sign_in"] = bpy.app.timers.is_registered(mod("jobs").pump)
    pump_until(lambda: mod("session").STATE.auth is not None)
    texts = panel_texts()
    code = texts[texts.index("Sign in on the studio page with this code:") + 1]
    main_layout = ui_check.draw(mod("panel").SEALPORT_PT_main)
    state = mod("session").STATE
    import segno

    expected_qr = Path(spec["secrets_out"]).with_name("expected-qr.png")
    segno.make(state.auth.verification_uri_complete or state.auth.verification_uri, error="m").save(
        str(expected_qr), scale=8, border=2
    )
    OUT["code_panel"] = {
        "texts": texts,
        "icons": main_layout.icons,
        "ops": [op for op, _ in main_layout.ops],
        "qr_size": list(state.qr_preview.image_size),
        "qr_is_uri": (Path(state.qr_dir) / "qr.png").read_bytes() == expected_qr.read_bytes(),
    }

    import requests

    browser = requests.Session()
    browser.trust_env = False
    browser.verify = spec["ca_file"]
    errors: list[str] = []

    def person() -> None:
        try:
            uri = mod("session").STATE.auth.verification_uri
            approve_via_page(browser, uri, code, spec["username"], spec["password"])
        except Exception as exc:  # reported in OUT
            errors.append(repr(exc))

    threading.Thread(target=person, daemon=True).start()
    pump_until(idle)
    OUT["sign_in"] = {
        "errors": errors,
        "me": mod("session").STATE.me,
        "message": last_message(),
        "panel": panel_texts(),
        "catalogue": len(bpy.context.window_manager.sealport_assets),
    }


def filter_check() -> None:
    panel = mod("panel")
    wm = bpy.context.window_manager
    bit = 1 << 30  # UIList.bitflag_filter_item (the RNA default reads 0 outside a draw)

    class Fake:
        filter_name = "probe-obj"
        bitflag_filter_item = bit

    flags, _ = panel.SEALPORT_UL_assets.filter_items(Fake(), bpy.context, wm, "sealport_assets")
    shown = [it.name for it, f in zip(wm.sealport_assets, flags, strict=True) if f]
    wm.sealport_format = "stl"
    Fake.filter_name = ""
    flags, _ = panel.SEALPORT_UL_assets.filter_items(Fake(), bpy.context, wm, "sealport_assets")
    by_format = sorted({it.format for it, f in zip(wm.sealport_assets, flags, strict=True) if f})
    wm.sealport_format = "ALL"
    layout = ui_check.CheckedLayout()
    for it in wm.sealport_assets:
        panel.SEALPORT_UL_assets.draw_item(
            None, bpy.context, layout, wm, it, 0, wm, "sealport_index", 0
        )
    OUT["filter"] = {"search": shown, "formats": by_format, "rows": layout.texts}


def import_asset(asset_id: str) -> dict[str, Any]:
    before = snapshot()
    r = bpy.ops.sealport.secure_import(asset_id=asset_id)
    pump_until(idle, timeout=120)
    after = snapshot()
    new_colls = [c for c in bpy.data.collections if c.name not in before["collections"]]
    res: dict[str, Any] = {"op": sorted(r), "message": last_message(), "unchanged": before == after}
    if new_colls:
        c = new_colls[0]
        res["collection"] = c.name
        res["collection_props"] = {k: str(c[k]) for k in c.keys() if k.startswith("sealport_")}
        res["in_scene"] = c.name in bpy.context.scene.collection.children
        res["objects"] = [
            {
                "name": o.name,
                "type": o.type,
                "vertices": len(o.data.vertices) if o.type == "MESH" else 0,
                "props": {k: str(o[k]) for k in o.keys() if k.startswith("sealport_")},
            }
            for o in c.objects
        ]
    return res


def imports(spec: dict[str, Any]) -> None:
    OUT["imports"] = {fmt: import_asset(a["asset_id"]) for fmt, a in spec["assets"].items()}


def tamper(spec: dict[str, Any]) -> None:
    client = mod("session").STATE.client
    data_dir = Path(spec["data_dir"])
    flipped: list[str] = []

    def hook(resp: Any, *args: Any, **kwargs: Any) -> None:
        if resp.request.method == "POST" and resp.url.endswith("/deliveries") and resp.ok:
            delivery = resp.json()["delivery_id"]
            sealed = data_dir / "deliveries" / f"{delivery}.age"
            blob = bytearray(sealed.read_bytes())
            blob[len(blob) // 2] ^= 0x01
            sealed.write_bytes(bytes(blob))
            flipped.append(delivery)

    client.session.hooks["response"].append(hook)
    try:
        OUT["tamper"] = import_asset(spec["tamper_asset"])
    finally:
        client.session.hooks["response"].remove(hook)
    OUT["tamper"]["flipped"] = flipped


def cancel(spec: dict[str, Any]) -> None:
    cache = Path(spec["cache_dir"])
    files_before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    before = snapshot()
    bpy.ops.sealport.secure_import(asset_id=spec["cancel_asset"])
    bpy.ops.sealport.cancel()
    pump_until(idle, timeout=120)
    files_after = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    records = mod("session").STATE.client.audit.records()
    events = [r["event"] for r in records if r["data"].get("asset_id") == spec["cancel_asset"]]
    OUT["cancel"] = {
        "unchanged": before == snapshot(),
        "message": last_message(),
        "audit": events,
        "files_before": files_before,
        "files_after": files_after,
    }


def verify_scene() -> None:
    res: dict[str, Any] = {}
    bpy.ops.sealport.verify_scene()
    res["clean"] = last_message()
    glb = next(o for o in bpy.data.objects if o.get("sealport_asset_name") == "probe-glb")
    glb.data.vertices[0].co.x += 0.5
    bpy.ops.sealport.verify_scene()
    res["edited"] = last_message()
    glb.data.vertices[0].co.x -= 0.5
    coll = bpy.data.collections["probe-obj"]
    intruder = bpy.data.objects.new("intruder", bpy.data.meshes.new("intruder"))
    coll.objects.link(intruder)
    bpy.ops.sealport.verify_scene()
    res["added"] = last_message()
    bpy.data.objects.remove(intruder)
    bpy.ops.sealport.verify_scene()
    res["restored"] = last_message()
    OUT["verify_scene"] = res


def secrets_and_files(spec: dict[str, Any]) -> None:
    from sealport.device_key import SECRET_NAME
    from sealport.tokens import SESSION_ITEM

    client = mod("session").STATE.client
    session = json.loads(client.store.get(SESSION_ITEM) or "{}")
    secrets = [v for v in session.values() if isinstance(v, str) and len(v) >= 16]
    secrets.append(client.store.get(SECRET_NAME) or "")
    secrets = [s for s in secrets if s]
    Path(spec["secrets_out"]).write_text(json.dumps(secrets))
    Path(spec["secrets_out"]).chmod(0o600)
    bpy.ops.wm.save_as_mainfile(filepath=spec["blend"], compress=False)
    bpy.ops.wm.save_userpref()
    OUT["files"] = {
        "blend": spec["blend"],
        "userpref": bpy.utils.user_resource("CONFIG", path="userpref.blend"),
        "keyring_backend": client.store.backend_name
        if hasattr(client.store, "backend_name")
        else "",
    }


def sign_out_then_unregister() -> None:
    bpy.ops.sealport.sign_out()
    pump_until(idle)
    OUT["sign_out"] = {"message": last_message(), "panel": panel_texts()}
    bpy.ops.sealport.sign_in()
    pump_until(lambda: mod("session").STATE.auth is not None)
    jobs_mod, panel_mod = mod("jobs"), mod("panel")
    pump_fn, menu_fn = jobs_mod.pump, panel_mod.menu_import
    addon_file = mod().__file__
    bpy.ops.preferences.addon_disable(module=PKG)
    handlers = []
    for name in dir(bpy.app.handlers):
        lst = getattr(bpy.app.handlers, name)
        if isinstance(lst, list):
            handlers += [
                f"{name}:{f.__module__}" for f in lst if "sealport" in (f.__module__ or "")
            ]
    menu_funcs = bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    OUT["unregister"] = {
        "enabled": PKG in bpy.context.preferences.addons,
        "classes": sorted(n for n in dir(bpy.types) if n.upper().startswith("SEALPORT")),
        "ops": sorted(n for n in dir(bpy.ops.sealport)),
        "timer": bpy.app.timers.is_registered(pump_fn),
        "handlers": handlers,
        "menu": menu_fn in menu_funcs,
        "wm_props": sorted(n for n in dir(bpy.types.WindowManager) if n.startswith("sealport")),
        "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("sealport-")),
        "addon_file": addon_file,
    }


SCENARIOS = [
    install,
    sign_in,
    filter_check,
    imports,
    tamper,
    cancel,
    verify_scene,
    secrets_and_files,
    sign_out_then_unregister,
]


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    import addon_utils  # only importable once bpy put Blender's script modules on sys.path

    addon_utils.modules_refresh()
    try:
        for step in SCENARIOS:
            fn: Any = step
            fn(spec) if fn.__code__.co_argcount else fn()
            OUT["steps"].append(step.__name__)
    finally:
        Path(spec["out"]).write_text(json.dumps(OUT, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
