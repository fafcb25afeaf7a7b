"""Transport and session failures, seen from the client, against the real server.

Each ends in a typed error whose message says what to do: wrong CA, TLS 1.2
only, expired access token (refreshed once, silently), revoked refresh token
(sign in again), revoked session, no real keyring.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sealport.errors import LoginRequired, SessionRevoked, TLSError
from sealport.server.settings import ServerSettings
from sealport.transport import describe_request_error

from tests.test_secure_import import make_client, sign_in


def test_server_cert_not_from_studio_ca(sealport_server_factory: Any, tmp_path: Path) -> None:
    server = sealport_server_factory(foreign_ca=True)
    client = make_client(server, tmp_path / "ws")
    with pytest.raises(TLSError, match="not from your studio's certificate authority"):
        client.login(lambda auth: None)
    last = client.audit.records()[-1]
    assert last["event"] == "login.failed" and last["data"]["code"] == "tls"


def test_system_ca_bundle_in_the_environment_is_not_trusted(
    sealport_server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE naming a bundle that holds the server's (foreign) CA must not
    widen the studio-only trust: requests would load it into our context otherwise."""
    server = sealport_server_factory(foreign_ca=True)
    foreign_ca = server.data_dir.parent / (server.data_dir.name + "-foreign-ca") / "ca.pem"
    assert foreign_ca.is_file()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign_ca))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(foreign_ca))
    client = make_client(server, tmp_path / "ws")
    for _ in range(2):  # the first connection and a new one after the pool is cleared
        with pytest.raises(TLSError, match="not from your studio's certificate authority"):
            client.login(lambda auth: None)
        client.session.close()
    ctx = client.session.get_adapter(server.url)._ctx
    assert ctx.cert_store_stats()["x509_ca"] == 1  # the studio CA only


def test_trust_context_is_not_reloaded_per_connection(
    sealport_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = make_client(sealport_server, tmp_path / "ws")
    url = sealport_server.url + "/.well-known/openid-configuration"
    for _ in range(2):
        assert client.session.get(url, timeout=10).status_code == 200
        client.session.close()  # the next request opens a new TLS connection
    ctx = client.session.get_adapter(sealport_server.url)._ctx
    assert ctx.cert_store_stats()["x509_ca"] == 1


def _server_cert_sha256(server: Any) -> str:
    import hashlib

    pem = (server.data_dir / "ca" / "server.pem").read_text()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _pinned_client(server: Any, home: Path, pin: str) -> Any:
    from sealport.client import SealportClient
    from sealport.config import load_config
    from sealport.demo import DEMO_MARKER

    home.mkdir(parents=True)
    (home / DEMO_MARKER).write_text("test profile\n")
    text = Path(server.client_config_path).read_text()
    (home / "sealport.toml").write_text(
        text.replace("[server]\n", f'[server]\npin_sha256 = "{pin}"\n')
    )
    return SealportClient(load_config(home / "sealport.toml"), demo=True)


def test_pinned_server_certificate(sealport_server: Any, tmp_path: Path) -> None:
    """server.pin_sha256 (SHA-256 of the server certificate's DER): the right pin
    connects, any other is refused with a typed TLS error, even from the studio CA."""
    url = sealport_server.url + "/api/v1/assets"
    good = _pinned_client(sealport_server, tmp_path / "good", _server_cert_sha256(sealport_server))
    assert good.session.get(url, timeout=10).status_code == 401  # TLS fine; no token sent
    bad = _pinned_client(sealport_server, tmp_path / "bad", "ab" * 32)
    with pytest.raises(requests.exceptions.SSLError) as raw:
        bad.session.get(url, timeout=10)
    err = describe_request_error(raw.value, url)  # what the API client raises
    assert isinstance(err, TLSError) and "pinned" in err.message
    assert "Fingerprints did not match" in err.detail


def test_server_offering_only_tls12(sealport_server_factory: Any, tmp_path: Path) -> None:
    server = sealport_server_factory(tls_max_version=ssl.TLSVersion.TLSv1_2)
    client = make_client(server, tmp_path / "ws")
    with pytest.raises(TLSError, match="TLS 1.3"):
        client.login(lambda auth: None)
    assert client.audit.records()[-1]["event"] == "login.failed"


def test_plain_http_refused(sealport_server: Any, tmp_path: Path) -> None:
    client = make_client(sealport_server, tmp_path / "ws")
    with pytest.raises(TLSError, match="HTTPS"):
        client.session.get(sealport_server.url.replace("https://", "http://"))


def test_expired_access_token_is_refreshed_once(
    sealport_server_factory: Any, tmp_path: Path
) -> None:
    server = sealport_server_factory(
        settings=ServerSettings(device_interval=1, access_token_ttl=2, jwt_leeway=0)
    )
    client = make_client(server, tmp_path / "ws")
    sign_in(client, server, server.username, server.password)
    first = client.tokens.access_token()
    time.sleep(3)
    # The cached token looks fresh to the client clock skew-wise only if skew < ttl;
    # force the client to present the expired one: the server answers 401 and the
    # API client refreshes once, silently.
    client.tokens._access, client.tokens._access_expires = first, time.monotonic() + 3600
    assert client.assets()
    assert client.tokens.access_token() != first


def test_revoked_refresh_token_asks_to_sign_in_again(sealport_server: Any, tmp_path: Path) -> None:
    client = make_client(sealport_server, tmp_path / "ws")
    sign_in(client, sealport_server, sealport_server.username, sealport_server.password)
    record = client.tokens._load()
    http = sealport_server.session()
    resp = http.post(
        f"{sealport_server.url}/oauth/revoke",
        data={
            "token": record.refresh_token,
            "token_type_hint": "refresh_token",
            "client_id": "sealport",
        },
    )
    assert resp.status_code == 200
    client.tokens._access = None
    with pytest.raises((LoginRequired, SessionRevoked), match="[Ss]ign in again"):
        client.assets()
    assert not client.tokens.is_signed_in()


def test_keyring_backend_unavailable_fails_closed(sealport_server: Any, tmp_path: Path) -> None:
    """Outside the demo profile, no Secret Service means a clear error, not a plaintext file."""
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env.update(
        HOME=str(tmp_path),
        XDG_DATA_HOME=str(tmp_path / "data"),
        SEALPORT_CONFIG=str(sealport_server.client_config_path),
        PYTHON_KEYRING_BACKEND="",
        DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sealport.cli", "login", "--no-browser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "keyring" in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.cfg")), "a plaintext keyring file was written"
    from sealport.audit import AuditLog
    from sealport.config import load_config

    log = AuditLog(load_config(Path(sealport_server.client_config_path)).audit_log)
    assert any(r["event"] == "secrets.unavailable" for r in log.records())
