"""JSON API replies cut mid-body, through the fault-injecting proxy (issue 2, transport).

urllib3's Retry only covers failures before a response; ``ApiClient.request``
retries a GET whose body broke off (twice, 0.5 s then 1 s) and never a POST
(a delivery POST creates a ledger record).

Aiming at one reply: the client here sends ``Connection: close``, so every
request has its own TCP connection and the proxy's connection index names the
request. A calibration import (no faults) records, per connection, the TLS
record sizes the proxy relayed and, from a response hook, which request that
connection carried and its Content-Length. The body's record is the one of
Content-Length + 22 bytes (TLS 1.3: 5-byte header, inner type byte, 16-byte
tag); a fault is then armed for the next N new connections inside the first
record of that length (``Fault.in_record``), whatever came before it.
Each retry logs a warning on ``sealport.api``; the tests assert those records,
which also proves the cut hit the body (a cut before the headers would be
urllib3's retry, not this one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sealport.api import BODY_RETRY_BACKOFF
from sealport.client import SealportClient
from sealport.config import load_config
from sealport.errors import Cancelled, SealportError, TransportError
from sealport.progress import Progress

from tests.test_secure_import import sign_in

from .harness import client_behind, leftovers, make_stl, sha256, start_server_behind
from .proxy import Fault, FaultProxy

TLS13_RECORD_OVERHEAD = 22
ATTEMPTS = 1 + len(BODY_RETRY_BACKOFF)


class ArmedPlan:
    """The proxy's plan: the next ``count`` new connections get ``fault``, the rest pass."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault = Fault("pass")
        self._left = 0

    def arm(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._fault, self._left = fault, count

    def disarm(self) -> None:
        self.arm(Fault("pass"), 0)

    def __call__(self, index: int) -> Fault:  # noqa: ARG002
        with self._lock:
            if self._left <= 0:
                return Fault("pass")
            self._left -= 1
            return self._fault


def _body_record(records: list[int], content_length: int) -> int:
    """The length of the TLS record that carries a reply's body (checked to be there)."""
    size = content_length + TLS13_RECORD_OVERHEAD
    assert records.count(size) == 1, f"no single body record of {size} bytes in {records}"
    return size


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("api-retry")
    plan = ArmedPlan()
    proxy = FaultProxy(plan=plan).start()
    server = start_server_behind(base / "server", proxy)
    asset = base / "mesh.stl"
    make_stl(asset, 200)
    rec = server.add_asset(asset, name="retry-mesh", project="faults", fmt="stl")
    client = client_behind(server, base / "ws")
    client.session.headers["Connection"] = "close"  # one request per connection

    seen: list[tuple[int, str, str, int]] = []

    def hook(resp: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(
            (
                proxy.connections - 1,
                resp.request.method,
                resp.url,
                int(resp.headers.get("Content-Length", -1)),
            )
        )
        return resp

    client.session.hooks["response"].append(hook)
    try:
        client.secure_import(rec.asset_id, base / "calibration")  # control: no faults
        client.session.hooks["response"].remove(hook)
        bodies: dict[str, int] = {}
        for index, method, url, length in seen:
            if method == "GET" and url.endswith("/manifest"):
                bodies["manifest"] = _body_record(proxy.records[index], length)
            if method == "POST" and url.endswith("/deliveries"):
                bodies["delivery"] = _body_record(proxy.records[index], length)
        assert set(bodies) == {"manifest", "delivery"}, seen
        yield {
            "proxy": proxy,
            "plan": plan,
            "server": server,
            "client": client,
            "asset_id": rec.asset_id,
            "sha256": sha256(asset),
            "bodies": bodies,
        }
    finally:
        server.stop()
        proxy.stop()


def _retries(caplog: pytest.LogCaptureFixture, suffix: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sealport.api" and "broke off mid-body" in r.getMessage()
        if suffix in r.getMessage()
    ]


def _cut(mode: str, body: int) -> Fault:
    """A fault inside the record of ``body`` bytes: the headers have arrived by then.

    truncate: FIN right before that record (no body at all); drop / reset: half-way in.
    """
    return Fault(mode, 0 if mode == "truncate" else body // 2, in_record=body)


@pytest.mark.parametrize("mode", ["drop", "truncate", "reset"])
def test_manifest_cut_once_mid_body_is_retried_and_import_succeeds(
    rig: dict[str, Any],
    mode: str,
    tmp_path: Path,
    private_tmp: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy: FaultProxy = rig["proxy"]
    client = rig["client"]
    caplog.set_level(logging.WARNING, logger="sealport.api")
    fired = proxy.fired[mode]
    try:
        result = _import_with_plan_after_delivery(rig, tmp_path / "out", mode, 1)
    finally:
        rig["plan"].disarm()
    assert sha256(result.path) == rig["sha256"]
    assert proxy.fired[mode] == fired + 1, f"the {mode} fault did not fire"
    assert len(_retries(caplog, "/manifest")) == 1, caplog.text
    events = [r["event"] for r in client.audit.records()]
    assert events[-1] == "import.verified"
    assert client.audit.verify().ok
    assert leftovers(tmp_path / "out", private_tmp) == [str(result.path)]


def test_retry_sends_a_fresh_dpop_proof(
    rig: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With DPoP, each attempt carries a new proof: the server's jti replay cache would
    answer a resent one with 401 (and the client would then refresh, hiding it)."""
    server = rig["server"]
    home = tmp_path / "ws-dpop"
    client_behind(server, home, sign=False)  # writes the profile and its config
    config = home / "sealport.toml"
    config.write_text(config.read_text().replace("[idp]\n", "[idp]\ndpop = true\n", 1))
    client = SealportClient(load_config(config), demo=True)
    client.session.headers["Connection"] = "close"
    sign_in(client, server, server.username, server.password)
    caplog.set_level(logging.WARNING, logger="sealport.api")
    refused: list[str] = []
    proofs: list[str] = []

    def watch(resp: Any, *args: Any, **kwargs: Any) -> Any:
        if resp.status_code == 401:
            refused.append(f"{resp.url} {resp.headers.get('WWW-Authenticate', '')}")
        if resp.url.endswith("/manifest"):
            proofs.append(resp.request.headers["DPoP"])
        return resp

    client.session.hooks["response"].append(watch)
    try:
        result = _import_with_plan_after_delivery(rig, tmp_path / "out", "drop", 1, client)
    finally:
        rig["plan"].disarm()
    assert sha256(result.path) == rig["sha256"]
    assert len(_retries(caplog, "/manifest")) == 1, caplog.text
    assert len(proofs) == 2 and proofs[0] != proofs[1], proofs
    assert refused == [], refused


def test_manifest_cut_every_time_fails_typed_nothing_imported(
    rig: dict[str, Any], tmp_path: Path, private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy: FaultProxy = rig["proxy"]
    client = rig["client"]
    caplog.set_level(logging.WARNING, logger="sealport.api")
    fired = proxy.fired["drop"]
    out = tmp_path / "out"
    with pytest.raises(SealportError) as info:
        try:
            _import_with_plan_after_delivery(rig, out, "drop", ATTEMPTS)
        finally:
            rig["plan"].disarm()
    err = info.value
    assert isinstance(err, TransportError) and err.code in ("transport", "tls"), err
    assert "/manifest" in err.detail
    assert proxy.fired["drop"] == fired + ATTEMPTS  # every attempt was cut
    assert len(_retries(caplog, "/manifest")) == len(BODY_RETRY_BACKOFF), caplog.text
    assert leftovers(out, private_tmp) == []
    assert list((client.config.cache_dir / "deliveries").glob("*")) == []
    last = client.audit.records()[-1]
    assert last["event"] == "import.failed" and last["data"]["code"] == err.code, last
    assert client.audit.verify().ok


def test_post_cut_mid_body_is_not_retried(
    rig: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A delivery POST whose reply breaks off fails at once: one request, one ledger row."""
    proxy: FaultProxy = rig["proxy"]
    client = rig["client"]
    server = rig["server"]
    caplog.set_level(logging.WARNING, logger="sealport.api")
    device_id = client.device_key().device_id
    user = client.user()
    rows = len(server.ledger.deliveries_for(user))
    connections = proxy.connections
    fired = proxy.fired["drop"]
    statuses: list[int] = []

    def headers_arrived(resp: Any, *args: Any, **kwargs: Any) -> Any:
        statuses.append(resp.status_code)
        return resp

    client.session.hooks["response"].append(headers_arrived)
    rig["plan"].arm(_cut("drop", rig["bodies"]["delivery"]), ATTEMPTS)  # a retry would be cut
    try:
        with pytest.raises(TransportError) as info:
            client.api.post(
                f"/api/v1/assets/{rig['asset_id']}/deliveries", {"device_id": device_id}
            )
    finally:
        rig["plan"].disarm()
        client.session.hooks["response"].remove(headers_arrived)
    assert statuses == [200], statuses  # one reply, and the cut came after its headers
    assert "/deliveries" in info.value.detail
    assert proxy.fired["drop"] == fired + 1
    assert proxy.connections == connections + 1, "the POST was sent again"
    assert len(server.ledger.deliveries_for(user)) == rows + 1
    assert _retries(caplog, "") == []


def test_cancel_ends_the_backoff_before_a_retry(
    rig: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """With a cancelled Progress the first broken body ends in Cancelled, not a retry."""
    proxy: FaultProxy = rig["proxy"]
    client = rig["client"]
    device_id = client.device_key().device_id
    delivery = client.api.post(
        f"/api/v1/assets/{rig['asset_id']}/deliveries", {"device_id": device_id}
    )
    progress = Progress()
    progress.cancel()
    connections = proxy.connections
    rig["plan"].arm(_cut("drop", rig["bodies"]["manifest"]), ATTEMPTS)
    try:
        with pytest.raises(Cancelled):
            client.api.get(delivery["manifest_url"], progress=progress)
    finally:
        rig["plan"].disarm()
    assert proxy.connections == connections + 1


def _import_with_plan_after_delivery(
    rig: dict[str, Any], out: Path, mode: str, count: int, client: Any = None
) -> Any:
    """Run one import with the plan armed only once the delivery POST has its reply."""
    client = client or rig["client"]
    plan: ArmedPlan = rig["plan"]
    fault = _cut(mode, rig["bodies"]["manifest"])
    plan.disarm()

    def arm_after_delivery(resp: Any, *args: Any, **kwargs: Any) -> Any:
        if resp.request.method == "POST" and resp.url.endswith("/deliveries"):
            plan.arm(fault, count)
        return resp

    client.session.hooks["response"].append(arm_after_delivery)
    try:
        return client.secure_import(rig["asset_id"], out)
    finally:
        client.session.hooks["response"].remove(arm_after_delivery)
