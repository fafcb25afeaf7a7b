"""The asset store on disk and the admin operations that fill it.

Files live at ``store/<asset_id>/<version>/<filename>`` and are immutable:
a new upload of the same (project, name) becomes a new version, so a
delivery can always name exactly what it sealed and clients can refuse
rollbacks. Plain functions so the CLI (``sealport admin ...``) and tests call
the same code.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ..paths import ensure_private_dir
from .idp import create_user
from .ledger import AssetRecord, Ledger

FORMATS = ("usd", "usda", "usdc", "usdz", "fbx", "obj", "stl", "glb", "3mf")
DEMO_USER = "demo"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def open_ledger(data_dir: Path) -> Ledger:
    ensure_private_dir(data_dir)
    return Ledger(data_dir / "ledger.sqlite")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def format_from_name(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def asset_path(data_dir: Path, rec: AssetRecord) -> Path:
    return data_dir / "store" / rec.asset_id / str(rec.version) / rec.filename


def add_asset(
    data_dir: Path,
    file: Path,
    *,
    name: str,
    project: str = "default",
    fmt: str | None = None,
    version: int | None = None,
    created_by: str = "admin",
    ledger: Ledger | None = None,
) -> AssetRecord:
    """Copy ``file`` into the store as a new version of (project, name)."""
    file = Path(file)
    if not file.is_file():
        raise ValueError(f"{file} is not a file")
    fmt = (fmt or format_from_name(file)).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not _SAFE_NAME.match(file.name):
        raise ValueError(f"file name {file.name!r}: use letters, digits, '.', '-', '_' only")
    own = ledger is None
    led = ledger or open_ledger(data_dir)
    try:
        asset_id = led.asset_id_for(project, name) or "a_" + secrets.token_hex(8)
        if version is None:
            version = led.latest_version(asset_id) + 1
        if version < 1 or led.get_asset(asset_id, version) is not None:
            raise ValueError(f"version {version} of {project}/{name} exists or is invalid")
        dest_dir = data_dir / "store" / asset_id / str(version)
        dest_dir.mkdir(parents=True, exist_ok=False)
        dest = dest_dir / file.name
        shutil.copyfile(file, dest)
        dest.chmod(0o444)
        rec = AssetRecord(
            asset_id=asset_id,
            version=version,
            name=name,
            project=project,
            format=fmt,
            filename=file.name,
            size=dest.stat().st_size,
            sha256=_sha256_file(dest),
            created_by=created_by,
            created_at=int(time.time()),
        )
        led.add_asset(rec)
        return rec
    finally:
        if own:
            led.close()


def add_user(
    data_dir: Path,
    username: str,
    password: str,
    *,
    name: str | None = None,
    roles: Sequence[str] = ("artist",),
    mfa: bool = False,
    ledger: Ledger | None = None,
) -> None:
    """Create or update a development-IdP user (password stored as a scrypt hash)."""
    own = ledger is None
    led = ledger or open_ledger(data_dir)
    try:
        create_user(led, username, password, name=name, roles=roles, mfa=mfa)
    finally:
        if own:
            led.close()


def demo_assets_dir() -> Path | None:
    """The packaged demo assets folder (with catalog.json), if it is installed."""
    folder = Path(str(resources.files("sealport").joinpath("demo_assets")))
    return folder if (folder / "catalog.json").is_file() else None


def seed_demo(data_dir: Path, *, password: str | None = None) -> tuple[str, str]:
    """Add the demo user and every catalogued demo asset; returns (username, password).

    Idempotent for assets (an unchanged file is not added again); the demo
    user's password is reset to a fresh random one unless given.
    """
    password = password or secrets.token_urlsafe(12)
    led = open_ledger(data_dir)
    try:
        create_user(led, DEMO_USER, password, name="Demo Artist", roles=("artist",), mfa=True)
        folder = demo_assets_dir()
        if folder is not None:
            catalog = json.loads((folder / "catalog.json").read_text("utf-8"))
            entries = catalog["assets"] if isinstance(catalog, dict) else catalog
            for entry in entries:
                src = folder / entry["file"]
                project = entry.get("project", "demo")
                asset_id = led.asset_id_for(project, entry["name"])
                latest = led.get_asset(asset_id) if asset_id else None
                if latest is not None and latest.sha256 == _sha256_file(src):
                    continue
                add_asset(
                    data_dir,
                    src,
                    name=entry["name"],
                    project=project,
                    fmt=entry.get("format"),
                    created_by=entry.get("created_by", "demo-generator"),
                    ledger=led,
                )
    finally:
        led.close()
    return DEMO_USER, password
