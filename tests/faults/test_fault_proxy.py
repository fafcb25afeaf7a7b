"""Secure imports through a fault-injecting TCP proxy (issue 6, "Faults").

For each fault mode a handful of imports of a 2 MB asset go through the proxy
with the fault injected at a random offset on most connections. Each import
must either complete with every check passing (the client resumes with Range)
or fail with a typed SealportError; an accepted file must be byte-identical
to the original; nothing may be left in the output folder or temp; the audit
chain must verify. The proxy's own counters prove the faults really fired.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    Tally,
    client_behind,
    count_resumes,
    import_once,
    leftovers,
    make_stl,
    sha256,
    start_server_behind,
)
from .proxy import Fault, FaultProxy, random_plan

TRIANGLES = 40_000  # 2,000,084 bytes
IMPORTS_PER_MODE = 3
TIMEOUT = 1.0  # client's server.timeout: a stall longer than this must be survived


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("faults")
    proxy = FaultProxy(seed=6).start()
    server = start_server_behind(base / "server", proxy)
    asset = base / "mesh.stl"
    make_stl(asset, TRIANGLES)
    rec = server.add_asset(asset, name="fault-mesh", project="faults", fmt="stl")
    client = client_behind(server, base / "ws", timeout=TIMEOUT)
    rig = {
        "proxy": proxy,
        "server": server,
        "client": client,
        "asset_id": rec.asset_id,
        "sha256": sha256(asset),
        "size": asset.stat().st_size,
        "resumes": count_resumes(client),
    }
    try:
        yield rig
    finally:
        server.stop()
        proxy.stop()


@pytest.mark.parametrize("mode", ["drop", "truncate", "bitflip", "stall", "reset"])
def test_imports_survive_or_fail_typed(
    rig: dict[str, Any], mode: str, tmp_path: Path, private_tmp: Path
) -> None:
    proxy: FaultProxy = rig["proxy"]
    client = rig["client"]
    proxy.drop_all()  # fresh connections, each planned under this mode
    fired_before = proxy.fired[mode]
    proxy.plan = random_plan(
        (mode,),
        span=int(rig["size"] * 1.2),
        probability=0.8,
        stall_seconds=TIMEOUT * 2,
        seed=zlib.crc32(mode.encode()),
    )
    out = tmp_path / "out"
    tally = Tally()
    try:
        for _ in range(IMPORTS_PER_MODE):
            proxy.drop_all()  # each import starts on a freshly planned connection
            import_once(client, rig["asset_id"], out, rig["sha256"], tally, rig["resumes"])
    finally:
        proxy.plan = lambda _i: Fault("pass")
        proxy.drop_all()
    assert tally.untyped == [], tally.untyped
    assert tally.corrupted == 0
    assert tally.total == IMPORTS_PER_MODE
    assert proxy.fired[mode] > fired_before, f"no {mode} fault fired"
    assert leftovers(out, private_tmp) == []
    assert list((client.config.cache_dir / "deliveries").glob("*")) == []
    assert client.audit.verify().ok
    events = [r["event"] for r in client.audit.records()]
    assert events.count("import.verified") + events.count("import.failed") >= tally.total


def test_faults_in_handshake_and_api_replies_are_typed(
    rig: dict[str, Any], tmp_path: Path, private_tmp: Path
) -> None:
    """Faults early in the stream hit the TLS handshake and the JSON replies.

    Regression: a connection cut between a reply's headers and its body used to
    escape the API client as a bare ``requests.ChunkedEncodingError``.
    """
    proxy: FaultProxy = rig["proxy"]
    client = rig["client"]
    proxy.plan = random_plan(
        ("drop", "truncate", "bitflip", "reset"), span=12_000, probability=1.0, seed=61
    )
    out = tmp_path / "out"
    tally = Tally()
    try:
        for _ in range(IMPORTS_PER_MODE * 2):
            proxy.drop_all()
            import_once(client, rig["asset_id"], out, rig["sha256"], tally, rig["resumes"])
    finally:
        proxy.plan = lambda _i: Fault("pass")
        proxy.drop_all()
    assert tally.untyped == [], tally.untyped
    assert tally.corrupted == 0 and tally.total == IMPORTS_PER_MODE * 2
    assert sum(tally.failed.values()) > 0, "no early fault made an import fail"
    assert leftovers(out, private_tmp) == []
    assert list((client.config.cache_dir / "deliveries").glob("*")) == []
    assert client.audit.verify().ok
    for rec in client.audit.records():  # damage in transit is not blamed on the certificate
        data = rec["data"]
        if rec["event"] == "import.failed" and _damaged(data.get("detail", "")):
            assert "certificate" not in data["error"] and "TLS 1.3" not in data["error"], data


def _damaged(detail: str) -> bool:
    low = detail.lower()
    return "bad record mac" in low or "eof occurred in violation" in low


def test_damage_in_transit_is_not_called_a_certificate_problem() -> None:
    """The OpenSSL texts seen through the proxy map to the 'damaged in transit' message."""
    import requests
    from sealport.transport import describe_request_error

    for text in (
        "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac",
        "EOF occurred in violation of protocol (_ssl.c:2427)",
    ):
        err = describe_request_error(requests.exceptions.SSLError(text), "https://x/")
        assert err.code == "tls" and "damaged or cut off in transit" in err.message
        assert "certificate" not in err.message and "TLS 1.3" not in err.message
    # The same EOF while connecting is a server that refuses TLS 1.3 (test_client_session).
    during_connect = requests.exceptions.SSLError(
        "HTTPSConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: / "
        "(Caused by SSLError(SSLEOFError(8, '[SSL: UNEXPECTED_EOF_WHILE_READING] EOF "
        "occurred in violation of protocol (_ssl.c:1006)')))"
    )
    assert "TLS 1.3" in describe_request_error(during_connect, "https://x/").message


def test_pass_through_completes_without_resume(rig: dict[str, Any], tmp_path: Path) -> None:
    """Control: with no fault the proxy is transparent and no resume is needed."""
    rig["proxy"].plan = lambda _i: Fault("pass")
    tally = Tally()
    import_once(
        rig["client"], rig["asset_id"], tmp_path / "out", rig["sha256"], tally, rig["resumes"]
    )
    assert tally.completed == 1 and tally.resumed == {0: 1}, tally
