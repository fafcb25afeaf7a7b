"""The reference server app on a private, seeded data folder, for in-process tests.

Used by the server fuzz target and by tests/test_hostile_inputs.py: the real
``create_app`` with a user, a registered device, one small OBJ asset and a
valid access token (signed with the dev IdP's own key), watermarking off.
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OKPKey
from sealport.server import add_asset, add_user, create_app, prepare
from sealport.server.settings import API_AUDIENCE, ServerSettings
from sealport.server.watermarking import disabled

BASE = "https://testserver"
USER = "artist1"
DEVICE_KEY = "age1wuhc5y4aau5yam3ergk74tlgy6s6axql375ywnfcp6e33jdqv4eqdf373a"
CUBE = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


class SeededServer:
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
