"""What the panel shows between redraws: who is signed in, the code to type, the catalogue.

Lives in Python memory only, never in the .blend or the preferences: it
holds no token (those stay in the keyring, behind the core's client) and is
rebuilt by signing in or refreshing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import bpy.utils.previews


@dataclass
class Session:
    client: Any = None
    """sealport.client.SealportClient, built from the preferences on first use."""
    client_key: tuple[str, ...] = ()
    """The preference values the client was built from."""
    me: dict[str, Any] = field(default_factory=dict)
    auth: Any = None
    """The pending DeviceAuthorization (user code, URI, deadline) while signing in."""
    assets: list[dict[str, Any]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    """(level, text) reported to the artist, newest last (the panel shows the last)."""
    previews: Any = None
    qr_preview: Any = None
    """The QR image (an ImagePreview; its icon_id is 0 in background Blender, which has no icons)."""
    qr_dir: str = ""

    def say(self, level: str, text: str) -> None:
        self.messages = (self.messages + [(level, text)])[-20:]

    def seconds_left(self) -> int:
        return max(0, int(self.auth.expires_at - time.monotonic())) if self.auth else 0

    def show_code(self, auth: Any) -> None:
        """Main thread: keep the code and render its QR (verification URI) as a preview icon."""
        import segno

        uri = auth.verification_uri_complete or auth.verification_uri
        if self.previews is None:
            self.previews = bpy.utils.previews.new()
        self.clear_code()
        self.auth = auth
        # Previews load lazily, so the PNG lives until the code is cleared.
        self.qr_dir = tempfile.mkdtemp(prefix="sealport-qr-")
        png = Path(self.qr_dir) / "qr.png"
        segno.make(uri, error="m").save(str(png), scale=8, border=2)
        self.qr_preview = self.previews.load("qr", str(png), "IMAGE")

    def clear_code(self) -> None:
        self.auth = None
        self.qr_preview = None
        if self.previews is not None:
            self.previews.clear()
        if self.qr_dir:
            shutil.rmtree(self.qr_dir, ignore_errors=True)
            self.qr_dir = ""

    def close(self) -> None:
        self.clear_code()
        if self.previews is not None:
            bpy.utils.previews.remove(self.previews)
            self.previews = None
        self.client = None
        self.auth = None
        self.me = {}
        self.assets = []


STATE = Session()
