"""Operators: each click becomes one core call, run off the main thread by :mod:`.jobs`.

Execute returns at once (Blender never freezes); results come back through
the job's callbacks on the main thread, which report in Blender's own way
(operator reports: status bar and Info log) with the core's artist-facing
message. The TD detail goes to the console; it never holds a secret.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import bpy
from bpy.props import EnumProperty, StringProperty
from sealport.errors import Cancelled, LoginRequired, SealportError

from . import jobs
from .import_hooks import import_verified
from .preferences import client_config, import_dir, prefs
from .session import STATE


def notify(level: str, message: str, detail: str = "") -> None:
    """Tell the artist (report + panel); main thread only."""
    STATE.say(level, message)
    if detail:
        print(f"Sealport ({level.lower()}): {message}\n  detail: {detail}")
    try:
        bpy.ops.sealport.report(level=level, message=message)
    except RuntimeError:
        pass  # an ERROR report also raises in the caller; it was reported


def notify_error(exc: BaseException, what: str) -> None:
    if isinstance(exc, Cancelled):
        notify("WARNING", f"{what} cancelled. Nothing was changed.")
    elif isinstance(exc, SealportError):
        notify("ERROR", exc.message, exc.detail)
    else:
        notify(
            "ERROR",
            f"{what} failed unexpectedly; see the system console.",
            "".join(traceback.format_exception(exc)),
        )


def get_client(context: bpy.types.Context) -> Any:
    """The core client for the current preferences (rebuilt when they change)."""
    p = prefs(context)
    key = (p.config_file, p.server_url, p.ca_file, p.root_fingerprint, p.cache_dir)
    if STATE.client is None or STATE.client_key != key:
        from sealport.client import SealportClient

        STATE.client = SealportClient(client_config(p))
        STATE.client_key = key
        STATE.me = {}
    return STATE.client


T = TypeVar("T")


def reported(op: bpy.types.Operator, call: Callable[[], T]) -> T | None:
    """``call()``, or None after reporting its SealportError as this operator's error.

    For the set-up an operator does before it starts a job (the client from the
    preferences, the import folder): a bad preference is reported in Blender's
    own way with the core's artist message, the TD detail goes to the console.
    """
    try:
        return call()
    except SealportError as exc:
        if exc.detail:
            print(f"Sealport (error): {exc.message}\n  detail: {exc.detail}")
        op.report({"ERROR"}, exc.message)
        return None


def start_job(
    name: str,
    what: str,
    work: Callable[[Any, Any], Any],
    done: Callable[[Any], None],
    on_message: Callable[[str, Any], None] | None = None,
) -> jobs.Job:
    """Run ``work`` off the main thread; failures are told to the artist as "<what> failed"."""
    job = jobs.Job(name, work, done, lambda e: notify_error(e, what))
    if on_message is not None:
        job.on_message = on_message
    return jobs.start(job)


class SEALPORT_OT_report(bpy.types.Operator):
    """Show a Sealport message in the status bar and the Info log"""

    bl_idname = "sealport.report"
    bl_label = "Sealport Message"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=[(x, x, "") for x in ("INFO", "WARNING", "ERROR")])  # type: ignore[valid-type]
    message: StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({self.level}, self.message)
        return {"FINISHED"}


class _Busy:
    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return jobs.running() is None


def _set_catalogue(assets: list[dict[str, Any]]) -> None:
    from .panel import set_catalogue

    STATE.assets = assets
    set_catalogue(bpy.context.window_manager, assets)


class SEALPORT_OT_sign_in(_Busy, bpy.types.Operator):
    """Sign in to your studio with a code (device sign-in in your browser)"""

    bl_idname = "sealport.sign_in"
    bl_label = "Sign In"

    def execute(self, context: bpy.types.Context) -> set[str]:
        client = reported(self, lambda: get_client(context))
        if client is None:
            return {"CANCELLED"}

        def work(progress: Any, post: Any) -> Any:
            if client.is_signed_in():  # a session kept in the keyring: no code needed
                try:
                    return client.whoami(), client.assets()
                except LoginRequired:
                    pass
            client.login(lambda auth: post("code", auth), progress)
            return client.whoami(), client.assets()

        def done(value: Any) -> None:
            STATE.clear_code()
            STATE.me = value[0]
            _set_catalogue(value[1])
            notify(
                "INFO", f"Signed in to Sealport as {STATE.me.get('name') or STATE.me.get('sub')}."
            )

        def failed(exc: BaseException) -> None:
            STATE.clear_code()
            notify_error(exc, "Sign-in")

        def message(kind: str, value: Any) -> None:
            if kind == "code":
                STATE.show_code(value)

        jobs.start(jobs.Job("sign-in", work, done, failed, message))  # clears the code on failure
        return {"FINISHED"}


class SEALPORT_OT_sign_out(_Busy, bpy.types.Operator):
    """Sign out: revoke this workstation's session and forget its keys"""

    bl_idname = "sealport.sign_out"
    bl_label = "Sign Out"

    def execute(self, context: bpy.types.Context) -> set[str]:
        client = STATE.client
        STATE.me, STATE.assets = {}, []
        _set_catalogue([])
        if client is None:
            return {"FINISHED"}

        def done(_: Any) -> None:
            notify("INFO", "Signed out of Sealport.")

        start_job("sign-out", "Sign-out", lambda p, post: client.logout(), done)
        return {"FINISHED"}


class SEALPORT_OT_cancel(bpy.types.Operator):
    """Cancel what Sealport is doing (nothing is imported)"""

    bl_idname = "sealport.cancel"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        job = jobs.running()
        if job is not None:
            job.cancel()
        return {"FINISHED"}


class SEALPORT_OT_open_verification(bpy.types.Operator):
    """Open the sign-in page in your web browser"""

    bl_idname = "sealport.open_verification"
    bl_label = "Open Sign-in Page"

    def execute(self, context: bpy.types.Context) -> set[str]:
        if STATE.auth is not None:
            bpy.ops.wm.url_open(
                url=STATE.auth.verification_uri_complete or STATE.auth.verification_uri
            )
        return {"FINISHED"}


class SEALPORT_OT_copy_code(bpy.types.Operator):
    """Copy the sign-in code to the clipboard"""

    bl_idname = "sealport.copy_code"
    bl_label = "Copy Code"

    def execute(self, context: bpy.types.Context) -> set[str]:
        if STATE.auth is not None:
            context.window_manager.clipboard = STATE.auth.user_code
            self.report({"INFO"}, "Sign-in code copied.")
        return {"FINISHED"}


class SEALPORT_OT_refresh(_Busy, bpy.types.Operator):
    """Reload the studio's asset catalogue"""

    bl_idname = "sealport.refresh"
    bl_label = "Refresh Catalogue"

    def execute(self, context: bpy.types.Context) -> set[str]:
        client = reported(self, lambda: get_client(context))
        if client is None:
            return {"CANCELLED"}
        start_job(
            "catalogue", "Loading the catalogue", lambda p, post: client.assets(), _set_catalogue
        )
        return {"FINISHED"}


def _asset_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    items = [
        (a["asset_id"], f"{a['name']} ({a['format']}, v{a['version']})", a.get("project", ""))
        for a in STATE.assets
    ]
    _asset_items.keep = items  # type: ignore[attr-defined]  # Blender needs the strings kept alive
    return items or [("", "No assets (sign in first)", "")]


class SEALPORT_OT_secure_import(_Busy, bpy.types.Operator):
    """Download, decrypt and verify the asset, then import it into a new collection"""

    bl_idname = "sealport.secure_import"
    bl_label = "Secure Import (Sealport)"
    bl_options = {"REGISTER"}

    asset_id: StringProperty(name="Asset ID", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    asset: EnumProperty(name="Asset", items=_asset_items)  # type: ignore[valid-type]

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if self.asset_id:
            return self.execute(context)
        if not STATE.me:
            self.report(
                {"ERROR"}, "Sign in first: open the Sealport tab in the 3D view sidebar (N)."
            )
            return {"CANCELLED"}
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        asset_id = self.asset_id or self.asset
        if not asset_id:
            wm = context.window_manager
            if 0 <= wm.sealport_index < len(wm.sealport_assets):
                asset_id = wm.sealport_assets[wm.sealport_index].asset_id
        if not asset_id:
            self.report({"ERROR"}, "Choose an asset to import.")
            return {"CANCELLED"}
        client = reported(self, lambda: get_client(context))
        if client is None:
            return {"CANCELLED"}
        out_dir = reported(self, lambda: import_dir(prefs(context), client.config))
        if out_dir is None:
            return {"CANCELLED"}

        def work(progress: Any, post: Any) -> Any:
            return client.secure_import(asset_id, out_dir, progress)

        def done(result: Any) -> None:
            if job.progress.cancelled:  # cancelled after the worker finished: import nothing
                result.path.unlink(missing_ok=True)
                client.audit_event(
                    "host.import_cancelled",
                    host="blender",
                    asset_id=asset_id,
                    delivery_id=result.manifest.delivery_id,
                )
                notify("WARNING", "Import cancelled. Nothing was changed.")
                return
            try:
                coll = import_verified(result)
            except SealportError as exc:
                client.audit_event(
                    "host.import_failed",
                    host="blender",
                    asset_id=asset_id,
                    delivery_id=result.manifest.delivery_id,
                    error=exc.message,
                )
                notify("ERROR", exc.message, exc.detail)
                return
            client.audit_event(
                "host.imported",
                host="blender",
                asset_id=asset_id,
                delivery_id=result.manifest.delivery_id,
                collection=coll.name,
                objects=len(coll.objects),
            )
            m = result.manifest
            notify(
                "INFO",
                f"Imported {m.name} v{m.version} ({m.format}): {len(coll.objects)} "
                f"object(s) in '{coll.name}', verified ({len(result.checks)} checks).",
            )

        job = start_job("import", "Import", work, done)
        return {"FINISHED"}


class SEALPORT_OT_verify_scene(bpy.types.Operator):
    """Re-check every Sealport object in this file against the audit log"""

    bl_idname = "sealport.verify_scene"
    bl_label = "Verify Scene"

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .verify_scene import verify_scene

        report = reported(self, lambda: verify_scene(get_client(context).audit))
        if report is None:
            return {"CANCELLED"}
        STATE.say("INFO" if report.ok else "WARNING", report.summary())
        self.report({"INFO"} if report.ok else {"WARNING"}, report.summary())
        return {"FINISHED"}


CLASSES = (
    SEALPORT_OT_report,
    SEALPORT_OT_sign_in,
    SEALPORT_OT_sign_out,
    SEALPORT_OT_cancel,
    SEALPORT_OT_open_verification,
    SEALPORT_OT_copy_code,
    SEALPORT_OT_refresh,
    SEALPORT_OT_secure_import,
    SEALPORT_OT_verify_scene,
)
