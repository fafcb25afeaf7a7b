"""Oversized request bodies are refused with 413 before the server buffers them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def test_declared_oversized_body_refused(sealport_server: Any) -> None:
    http = sealport_server.session()
    resp = http.post(
        f"{sealport_server.url}/oauth/token",
        data=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert resp.status_code == 413 and resp.json()["error"] == "request_too_large"


def test_chunked_oversized_body_refused(sealport_server: Any) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for _ in range(64):
            yield b"y" * 65536

    http = sealport_server.session()
    token = sealport_server.login()["access_token"]
    resp = http.post(
        f"{sealport_server.url}/api/v1/audit",
        data=chunks(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 413


def test_normal_body_passes(sealport_server: Any) -> None:
    http = sealport_server.session()
    resp = http.post(
        f"{sealport_server.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope", "client_id": "sealport"},
        timeout=30,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
