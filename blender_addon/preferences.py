"""Extension preferences: where the studio config is, or the three facts to build one.

Only locations and public facts live here (paths, URL, a root key
fingerprint); tokens and keys stay in the OS keyring through the core, so
saving the preferences never writes a secret.
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import StringProperty
from sealport.config import Config, load_config

PACKAGE = __package__ or "sealport"


class SealportPreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    config_file: StringProperty(  # type: ignore[valid-type]
        name="Studio config",
        description="The studio's sealport.toml (ask your pipeline TD). Leave empty to use the "
        "server settings below, or SEALPORT_CONFIG / the default profile",
        subtype="FILE_PATH",
    )
    server_url: StringProperty(  # type: ignore[valid-type]
        name="Server URL", description="https://… address of the studio's Sealport server"
    )
    ca_file: StringProperty(  # type: ignore[valid-type]
        name="Studio CA",
        description="PEM file of the CA that signs the server",
        subtype="FILE_PATH",
    )
    root_fingerprint: StringProperty(  # type: ignore[valid-type]
        name="Root fingerprint",
        description="SHA-256 of the studio root key (64 hex characters; `sealport serve` prints it)",
    )
    cache_dir: StringProperty(  # type: ignore[valid-type]
        name="Cache folder",
        description="Where verified files are kept for Blender to import (default: the profile's cache)",
        subtype="DIR_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        col = self.layout.column()
        col.prop(self, "config_file")
        box = col.box()
        box.label(text="Or, without a config file:")
        box.prop(self, "server_url")
        box.prop(self, "ca_file")
        box.prop(self, "root_fingerprint")
        col.prop(self, "cache_dir")


def prefs(context: bpy.types.Context | None = None) -> SealportPreferences:
    context = context or bpy.context
    return context.preferences.addons[PACKAGE].preferences


def profile_dir() -> Path:
    """The extension's own writable folder (holds a generated config and the rollback state)."""
    try:
        return Path(bpy.utils.extension_path_user(PACKAGE, create=True))
    except ValueError:  # registered as a plain add-on, not installed as an extension
        from sealport.paths import default_home

        return default_home()


def _abs(path: str) -> Path:
    return Path(bpy.path.abspath(path)).expanduser().resolve()


def client_config(p: SealportPreferences) -> Config:
    """Load the studio config the preferences point at (raises ConfigError with the fix)."""
    if p.config_file:
        return load_config(_abs(p.config_file))
    if not p.server_url:
        return load_config(None)
    home = profile_dir()
    lines = [
        "[idp]",
        f"issuer = {json.dumps(p.server_url.rstrip('/'))}",
        'client_id = "sealport"',
        "[server]",
        f"url = {json.dumps(p.server_url.rstrip('/'))}",
    ]
    if p.ca_file:
        lines.append(f"ca_file = {json.dumps(str(_abs(p.ca_file)))}")
    lines += ["[trust]", f"root_fingerprints = [{json.dumps(p.root_fingerprint.strip().lower())}]"]
    if p.cache_dir:
        lines += ["[paths]", f"cache_dir = {json.dumps(str(_abs(p.cache_dir)))}"]
    path = home / "sealport.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path)


def import_dir(p: SealportPreferences, config: Config) -> Path:
    return (_abs(p.cache_dir) if p.cache_dir else config.cache_dir) / "verified"
