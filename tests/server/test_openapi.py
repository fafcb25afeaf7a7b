"""The OpenAPI description: committed copy is current, and the live server keeps to it.

schemathesis (a test dependency) generates requests from /openapi.json of a
real TLS server and checks every answer: no 5xx, status code, content type,
headers and body all as documented. It runs twice, signed in with a real
device-flow token and anonymous, with a small fixed example budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sealport.server.openapi import build, dump, reference_app

from tests.fixtures.server import ServerHandle, start_sealport_server

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def _schemathesis() -> str:
    exe = Path(sys.executable).with_name("schemathesis")
    assert exe.exists(), (
        "schemathesis is missing: pip install -e '.[test]' (it is in the test extra)"
    )
    return str(exe)


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = reference_app(tmp_path_factory.mktemp("openapi") / "data")
    try:
        return build(app)
    finally:
        app.state.ledger.close()


def test_committed_openapi_matches_the_app(doc: dict[str, Any]) -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text("utf-8")
    assert committed == dump(doc), (
        "docs/openapi.json is stale: python -m sealport.server.openapi > docs/openapi.json"
    )


def test_every_route_is_described(doc: dict[str, Any]) -> None:
    undescribed = [
        f"{m.upper()} {p}"
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
        if op.get("x-undescribed")
    ]
    assert not undescribed, f"describe these in sealport/server/openapi.py: {undescribed}"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)
            if path.startswith("/api/"):
                assert {"401", "429"} <= set(op["responses"]), (method, path)


def test_live_server_served_document_is_the_committed_one(sealport_server) -> None:
    r = sealport_server.session().get(f"{sealport_server.url}/openapi.json", timeout=30)
    assert r.status_code == 200
    served = r.json()
    assert (
        served["paths"].keys()
        == json.loads((ROOT / "docs" / "openapi.json").read_text("utf-8"))["paths"].keys()
    )


def _run(handle, token: str | None, tmp_path: Path, examples: int, phases: str) -> None:
    cmd = [
        _schemathesis(),
        "run",
        f"{handle.url}/openapi.json",
        "--tls-verify",
        str(handle.ca_file),
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--phases",
        phases,
        "--seed",
        "6",
        "--workers",
        "1",
        "--no-shrink",
        "--request-timeout",
        "20",
    ]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "generated" in r.stdout, r.stdout[-3000:]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """Its own server: fuzzing writes audit events and may trip rate limits."""
    srv = start_sealport_server(tmp_path_factory.mktemp("schemathesis") / "data")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("signed_in", [True, False], ids=["token", "anonymous"])
def test_schemathesis_against_live_tls_server(
    fuzzed_server: ServerHandle, tmp_path: Path, signed_in: bool
) -> None:
    token = fuzzed_server.login()["access_token"] if signed_in else None
    _run(fuzzed_server, token, tmp_path, examples=3, phases="fuzzing")


@pytest.mark.slow
@pytest.mark.parametrize("signed_in", [True, False], ids=["token", "anonymous"])
def test_schemathesis_coverage_phase(sealport_server_factory, tmp_path: Path, signed_in) -> None:
    srv = sealport_server_factory()
    token = srv.login()["access_token"] if signed_in else None
    _run(srv, token, tmp_path, examples=25, phases="examples,coverage,fuzzing")
