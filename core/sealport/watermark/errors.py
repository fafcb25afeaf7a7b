"""Watermark errors (kept in the package so the shared errors module stays untouched)."""

from __future__ import annotations

from ..errors import SealportError


class WatermarkCapacityError(SealportError):
    """The mesh has too few usable vertices to carry the payload."""

    code = "watermark_capacity"


class WatermarkFormatError(SealportError):
    """The file format cannot be read or written by the watermark file layer."""

    code = "watermark_format"
