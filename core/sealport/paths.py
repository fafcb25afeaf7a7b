"""Where Sealport keeps its files on a workstation.

One *profile* is one folder (``SEALPORT_HOME`` or the platform default). It
holds the studio config, the audit log, rollback state, the refresh lock and
the download cache. Secrets are never written here (they live in the OS
keyring); the demo profile is the only exception and is labelled as such.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def default_home() -> Path:
    env = os.environ.get("SEALPORT_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
        return base / "Sealport"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Sealport"
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "sealport"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by this user."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32":
        os.chmod(path, 0o700)
    return path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if sys.platform != "win32":
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
