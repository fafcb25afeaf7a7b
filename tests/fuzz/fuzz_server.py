"""Fuzz the reference server's request bodies, in-process (FastAPI TestClient).

The input is ``[endpoint byte][content-type byte][body...]``; the body is
POSTed to one of the endpoints that read a body from the network - device
authorization, token, revoke (form bodies, dev IdP), device registration,
delivery creation, audit upload (JSON bodies, resource API; sent with a
valid access token so the body parser is reached), the device approval page
- with one of a few content types. Contract: any 5xx answer (an unhandled
exception inside the app) is a finding; 2xx/4xx are correct handling.

The app is the real one (``create_app``, see server_app.py) on a private data
folder, watermarking disabled (it would only make each sealed delivery slower,
not the body parsing different).
"""

from __future__ import annotations

from _harness import fuzz, instrumented

with instrumented():
    from server_app import SeededServer

ENDPOINTS = (
    "/oauth/device_authorization",
    "/oauth/token",
    "/oauth/revoke",
    "/api/v1/devices",
    "/api/v1/assets/{asset}/deliveries",
    "/api/v1/audit",
    "/device",
)
CONTENT_TYPES = (
    "application/x-www-form-urlencoded",
    "application/json",
    "multipart/form-data; boundary=sealportfuzz",
    "text/plain",
    "",
)

SERVER = SeededServer()


def one(data: bytes) -> None:
    if len(data) < 2:
        return
    path = ENDPOINTS[data[0] % len(ENDPOINTS)].format(asset=SERVER.asset)
    ctype = CONTENT_TYPES[data[1] % len(CONTENT_TYPES)]
    body = data[2:].replace(b"@DEVICE@", SERVER.device_id.encode())
    headers = dict(SERVER.auth) if path.startswith("/api/") else {}
    if ctype:
        headers["Content-Type"] = ctype
    r = SERVER.client.post(path, content=body, headers=headers)
    if r.status_code >= 500:
        raise AssertionError(f"POST {path} ({ctype!r}) -> {r.status_code}: {r.text[:500]}")


if __name__ == "__main__":
    fuzz(one)
