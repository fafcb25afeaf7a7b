"""Fuzz the reference server's request bodies, in-process (FastAPI TestClient).

The input is ``[endpoint byte][content-type byte][body...]``; the body is
POSTed to one of the endpoints that read a body from the network - device
authorization, token, revoke (form bodies, dev IdP), device registration,
delivery creation, audit upload (JSON bodies, resource API; sent with a
valid access token so the body parser is reached) - with one of a few
content types. Contract: any 5xx answer (an unhandled exception inside the
app) is a finding; 2xx/4xx are correct handling.

The app is the real one (``create_app``) on a private data folder with a
seeded user, device and asset, watermarking disabled (it would only make
each sealed delivery slower, not the body parsing different).
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from _harness import fuzz, instrumented

with instrumented():
    from sealport.server import add_asset, add_user, create_app, prepare
    from sealport.server.settings import API_AUDIENCE, ServerSettings
    from sealport.server.watermarking import disabled

from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OKPKey

BASE = "https://testserver"
USER = "artist1"
DEVICE_KEY = "age1wuhc5y4aau5yam3ergk74tlgy6s6axql375ywnfcp6e33jdqv4eqdf373a"
CUBE = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"

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


class _Server:
    """The app, a client and a valid token; built once per fuzzing process."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sealport-fuzz-server-"))
        atexit.register(shutil.rmtree, self.dir, True)
        data = self.dir / "data"
        prepared = prepare(data, BASE)
        add_user(data, USER, secrets.token_urlsafe(12), roles=("artist",))
        cube = self.dir / "cube.obj"
        cube.write_bytes(CUBE)
        self.asset = add_asset(data, cube, name="cube", project="fuzz", fmt="obj").asset_id
        settings = ServerSettings(public_url=BASE, watermark=disabled)
        self.app = create_app(prepared.data_dir, settings=settings, keys=prepared.keys)
        self.client = TestClient(self.app, base_url=BASE, raise_server_exceptions=False)
        key = OKPKey.import_key(json.loads((data / "idp" / "signing.jwk").read_text()))
        now = int(time.time())
        claims = {
            "iss": BASE,
            "sub": USER,
            "aud": API_AUDIENCE,
            "exp": now + 7 * 24 * 3600,
            "iat": now,
            "jti": "fuzz",
            "scope": "openid offline_access profile",
            "amr": ["pwd"],
            "roles": ["artist"],
            "sid": "fuzz-session",
            "name": USER,
        }
        token = jwt.encode({"alg": "EdDSA", "kid": key.kid}, claims, key, algorithms=["EdDSA"])
        self.auth = {"Authorization": f"Bearer {token}"}
        r = self.client.post("/api/v1/devices", json={"public_key": DEVICE_KEY}, headers=self.auth)
        assert r.status_code == 200, r.text
        self.device_id = r.json()["device_id"]


SERVER = _Server()


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
