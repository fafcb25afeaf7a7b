"""Response models of the resource API, so /openapi.json says what each endpoint returns.

Why: schemathesis (tests/server/test_openapi.py) checks every live response
against this description, and docs/openapi.json is generated from it; an
endpoint that answers something undeclared fails that test.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    """Every error of the resource API (PROTOCOL.md)."""

    error: str
    message: str


class MeOut(BaseModel):
    sub: str
    name: str
    roles: list[str]


class DeviceOut(BaseModel):
    device_id: str


class AssetOut(BaseModel):
    asset_id: str
    name: str
    project: str
    format: str
    version: int
    size: int
    created_by: str
    created_at: int


class AssetsOut(BaseModel):
    assets: list[AssetOut]


class DeliveryOut(BaseModel):
    delivery_id: str
    manifest_url: str
    payload_url: str


class DeliverySummary(BaseModel):
    delivery_id: str
    username: str
    asset_id: str
    version: int
    device_id: str
    issued_at: int
    expires_at: int


class DeliveriesOut(BaseModel):
    deliveries: list[DeliverySummary]


class AuditOut(BaseModel):
    accepted: int


class AlertOut(BaseModel):
    alert_id: str
    created_at: int
    kind: str
    username: str | None
    client_ip: str | None
    detail: dict[str, Any]


class AlertsOut(BaseModel):
    alerts: list[AlertOut]


_WHY = {
    400: "The request is malformed.",
    401: "No valid access token (sign in again; `session_revoked` when revoked).",
    403: "The role, MFA policy, workstation or network does not allow this.",
    404: "No such resource, or not yours.",
    409: "Conflicts with existing state.",
    413: "Too large.",
    416: "The Range cannot be satisfied.",
    429: "Rate limited; see Retry-After.",
}

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}},
}


def errors(
    *codes: int, ok: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: ``ok`` plus the listed error statuses with :class:`ErrorOut`."""
    out: dict[int | str, dict[str, Any]] = {**(ok or {})}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorOut, "description": _WHY[code]}
        if code == 429:
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


AUTHED = (400, 401, 403, 429)
"""Errors any authenticated endpoint can give (body/params, token, policy, rate)."""
