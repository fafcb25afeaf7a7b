"""The manifest's ``watermark`` object: what the client must find.

``{"scheme": "sealport-wm/v3", "key": b64(per-delivery key), "payload": hex,
"payload_bits": 64, "meshes_marked": n, "meshes_total": m, "reader": [...]}``.
``meshes_marked == 0`` tells the importer that "too_small" is expected. The scheme
names the reading frame (``keys.SCHEME_FRAMES``: v3 corner mean with even bins where
the mesh fills them, v2 corner mean with quantile bins, v1 area-weighted centre);
entries of all three are read, only v3 is written.

``reader`` (optional; older manifests have none): one item per mesh of the
delivered file in load order (:func:`~.files.load_meshes`), ``{"centre": [x, y,
z], "all_referenced": true}`` or ``null``, as the server's read-back of exactly
the bytes it sealed found them (:class:`~.mark.ReaderHint`). The client takes
the centre of meshes whose flag is true instead of its triangle pass; see
:mod:`sealport.watermark_check` for why that keeps the check honest.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

from ..errors import MalformedManifest
from .files import EmbedReport, FileVerifyResult
from .geometry import CentreKind
from .keys import SCHEME, SCHEME_FRAMES
from .mark import ReaderHint

MAX_READER_HINTS = 100_000
"""More mesh hints than this in one manifest is refused (a bound on parsing work)."""
_BAD = "The delivery's watermark record is invalid."


def manifest_entry(
    payload: bytes,
    key: bytes,
    report: EmbedReport | None,
    reader: Sequence[ReaderHint | None] | None = None,
) -> dict[str, Any]:
    """Build the manifest ``watermark`` object after ``embed_file`` (``reader``: the
    hints of the checked file, see :func:`reader_hints`)."""
    entry: dict[str, Any] = {
        "scheme": SCHEME,
        "key": base64.b64encode(key).decode("ascii"),
        "payload": payload.hex(),
        "payload_bits": 8 * len(payload),
        "meshes_marked": report.marked if report else 0,
        "meshes_total": report.total if report else 0,
    }
    if reader is not None:
        entry["reader"] = reader_json(reader)
    return entry


def reader_hints(result: FileVerifyResult) -> list[ReaderHint | None]:
    """The per-mesh hints a ``verify_file`` read-back found, in load order."""
    return [r.reader for r in result.meshes]


def reader_json(reader: Sequence[ReaderHint | None]) -> list[dict[str, Any] | None]:
    """The manifest form of ``reader`` (JSON floats round-trip float64 exactly)."""
    return [
        None
        if h is None
        else {"centre": [float(c) for c in h.centre], "all_referenced": bool(h.all_referenced)}
        for h in reader
    ]


def parse_manifest_entry(entry: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """Return (key, expected payload, meshes_marked); MalformedManifest if invalid."""
    try:
        if entry["scheme"] not in SCHEME_FRAMES:
            raise MalformedManifest(
                "This delivery uses an unknown watermark scheme.", str(entry["scheme"])
            )
        key = base64.b64decode(entry["key"], validate=True)
        payload = bytes.fromhex(entry["payload"])
        marked = int(entry["meshes_marked"])
        if len(key) != 32 or 8 * len(payload) != int(entry["payload_bits"]):
            raise ValueError("bad key or payload length")
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise MalformedManifest(_BAD, repr(exc)) from exc
    return key, payload, marked


def entry_frame(entry: dict[str, Any]) -> CentreKind:
    """The reading frame of a parsed entry's scheme (after :func:`parse_manifest_entry`;
    a delivery of an older scheme keeps being read in its own frame)."""
    return SCHEME_FRAMES[str(entry["scheme"])]


def parse_reader_hints(entry: dict[str, Any]) -> tuple[ReaderHint | None, ...] | None:
    """The entry's ``reader`` hints, strictly checked; None when absent (full reader).

    Each item is ``null`` or exactly ``{"centre": [3 finite numbers],
    "all_referenced": bool}``; anything else is MalformedManifest. Whether there is
    one per mesh is checked by ``verify_file``, which loads the meshes.
    """
    if "reader" not in entry:
        return None
    raw = entry["reader"]
    if not isinstance(raw, list) or len(raw) > MAX_READER_HINTS:
        raise MalformedManifest(_BAD, "reader hints must be a list of at most 100000")
    return tuple(_hint(item, i) for i, item in enumerate(raw))


def _hint(item: Any, i: int) -> ReaderHint | None:
    if item is None:
        return None
    if not isinstance(item, dict) or set(item) != {"centre", "all_referenced"}:
        raise MalformedManifest(_BAD, f"reader hint {i}: expected centre and all_referenced")
    centre, flag = item["centre"], item["all_referenced"]
    if not isinstance(flag, bool):
        raise MalformedManifest(_BAD, f"reader hint {i}: all_referenced must be true or false")
    if (
        not isinstance(centre, list)
        or len(centre) != 3
        or not all(_finite_number(c) for c in centre)
    ):
        raise MalformedManifest(_BAD, f"reader hint {i}: centre must be 3 finite numbers")
    x, y, z = (float(c) for c in centre)
    return ReaderHint((x, y, z), flag)


def _finite_number(c: Any) -> bool:
    """A JSON number (bool is not one), finite as a float64."""
    if isinstance(c, bool) or not isinstance(c, (int, float)):
        return False
    try:
        return math.isfinite(float(c))
    except OverflowError:  # an int too large for a float64
        return False
