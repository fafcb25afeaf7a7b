"""Oversized request bodies are refused with 413 before the server buffers them.

The server answers 413 and closes as soon as it knows the body is too large;
a client still sending then often sees the broken connection instead of the
413 (standard HTTP behaviour for early responses). Either outcome is a
refusal; the server must also still answer afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import requests


def refused(send: Callable[[], requests.Response], server: Any) -> None:
    try:
        resp = send()
    except requests.exceptions.ConnectionError:
        pass  # refused mid-upload; requests never read the 413
    else:
        assert resp.status_code == 413 and resp.json()["error"] == "request_too_large"
    assert server.session().get(f"{server.url}/oauth/jwks", timeout=30).ok


def test_declared_oversized_body_refused(sealport_server: Any) -> None:
    http = sealport_server.session()
    refused(
        lambda: http.post(
            f"{sealport_server.url}/oauth/token",
            data=b"x" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        ),
        sealport_server,
    )


def test_declared_oversized_small_probe_sees_413(sealport_server: Any) -> None:
    """Content-Length alone decides: a client that sends only headers reads the 413."""
    import socket
    import ssl

    host, port = "127.0.0.1", int(sealport_server.url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(sealport_server.ca_file))
    with socket.create_connection((host, port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(
                b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 50000000\r\n\r\n"
            )
            reply = tls.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_chunked_oversized_body_refused(sealport_server: Any) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for _ in range(64):
            yield b"y" * 65536

    http = sealport_server.session()
    token = sealport_server.login()["access_token"]
    refused(
        lambda: http.post(
            f"{sealport_server.url}/api/v1/audit",
            data=chunks(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=30,
        ),
        sealport_server,
    )


def test_normal_body_passes(sealport_server: Any) -> None:
    http = sealport_server.session()
    resp = http.post(
        f"{sealport_server.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope", "client_id": "sealport"},
        timeout=30,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
