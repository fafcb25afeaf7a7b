"""The manifest's ``watermark`` object: what the client must find.

``{"scheme": "sealport-wm/v1", "key": b64(per-delivery key), "payload": hex,
"payload_bits": 64, "meshes_marked": n, "meshes_total": m}``.
``meshes_marked == 0`` tells the importer that "too_small" is expected.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import MalformedManifest
from .files import EmbedReport
from .keys import SCHEME


def manifest_entry(payload: bytes, key: bytes, report: EmbedReport | None) -> dict[str, Any]:
    """Build the manifest ``watermark`` object after ``embed_file``."""
    return {
        "scheme": SCHEME,
        "key": base64.b64encode(key).decode("ascii"),
        "payload": payload.hex(),
        "payload_bits": 8 * len(payload),
        "meshes_marked": report.marked if report else 0,
        "meshes_total": report.total if report else 0,
    }


def parse_manifest_entry(entry: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """Return (key, expected payload, meshes_marked); MalformedManifest if invalid."""
    try:
        if entry["scheme"] != SCHEME:
            raise MalformedManifest(
                "This delivery uses an unknown watermark scheme.", str(entry["scheme"])
            )
        key = base64.b64decode(entry["key"], validate=True)
        payload = bytes.fromhex(entry["payload"])
        marked = int(entry["meshes_marked"])
        if len(key) != 32 or 8 * len(payload) != int(entry["payload_bits"]):
            raise ValueError("bad key or payload length")
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise MalformedManifest("The delivery's watermark record is invalid.", repr(exc)) from exc
    return key, payload, marked
