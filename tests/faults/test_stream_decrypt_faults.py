"""Decrypt while downloading (sealport.stream_decrypt) end to end through the fault proxy.

A 4 MB asset from the real server (TLS 1.3 on loopback); the proxy cuts the payload's
connection once, 3 MB in, so the decoder has used bytes of the first body when the
client resumes. Checked: a Range resume streams to a byte-identical file; a server
that ignores the Range (here the Range header is removed on its way out, so the real
server answers 200 from byte 0) voids the decoder's work and the verified file is
decrypted instead; a tampered payload with a cut and a resume fails typed with nothing
left; a cancel while the decoder holds plaintext leaves nothing, and that plaintext was
only ever in a 0600 temp file. (Review 2026-11-25.)
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sealport import stream_decrypt
from sealport.errors import Cancelled, HashMismatch
from sealport.payload import TEMP_PREFIX
from sealport.progress import Progress

from .harness import (
    client_behind,
    count_resumes,
    leftovers,
    make_stl,
    sha256,
    start_server_behind,
)
from .proxy import Fault, FaultProxy

TRIANGLES = 80_000  # 4,000,084 bytes
CUT_AT = 3_000_000


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("stream-faults")
    proxy = FaultProxy(seed=1).start()
    server = start_server_behind(base / "server", proxy)
    asset = base / "mesh.stl"
    make_stl(asset, TRIANGLES)
    rec = server.add_asset(asset, name="stream-mesh", project="faults", fmt="stl")
    client = client_behind(server, base / "ws", timeout=2.0)
    try:
        yield {
            "proxy": proxy,
            "server": server,
            "client": client,
            "asset_id": rec.asset_id,
            "sha256": sha256(asset),
        }
    finally:
        server.stop()
        proxy.stop()


def _cut_once(proxy: FaultProxy) -> Callable[[int], Fault]:
    """Connections planned before the first cut fired are cut CUT_AT bytes in (only the
    payload's gets that far); later ones (the resume) pass."""
    before = proxy.fired["drop"]
    return lambda _i: Fault("drop", at=CUT_AT) if proxy.fired["drop"] == before else Fault("pass")


def _decrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per decrypt_payload call: False = the streaming decoder, True = the
    verified file decrypted afterwards (the fallback)."""
    calls: list[bool] = []
    real = stream_decrypt.decrypt_payload

    def counted(*args: Any, **kwargs: Any) -> Path:
        calls.append(kwargs.get("source") is None)
        return real(*args, **kwargs)

    monkeypatch.setattr(stream_decrypt, "decrypt_payload", counted)
    return calls


@pytest.fixture
def cut(rig: dict[str, Any]) -> Iterator[FaultProxy]:
    proxy: FaultProxy = rig["proxy"]
    proxy.drop_all()
    proxy.plan = _cut_once(proxy)
    fired = proxy.fired["drop"]
    try:
        yield proxy
    finally:
        proxy.plan = lambda _i: Fault("pass")
        proxy.drop_all()
    assert proxy.fired["drop"] > fired, "the cut never fired"


def test_cut_and_range_resume_streams_to_the_same_file(
    rig: dict[str, Any], cut: FaultProxy, tmp_path: Path, private_tmp: Path, monkeypatch: Any
) -> None:
    calls = _decrypt_calls(monkeypatch)
    answers = count_resumes(rig["client"])
    result = rig["client"].secure_import(rig["asset_id"], tmp_path / "out")
    assert answers[0] == 2  # the first answer and the resumed one
    assert sha256(result.path) == rig["sha256"]
    assert calls == [False]  # streamed, no second decrypt
    assert [p.name for p in (tmp_path / "out").iterdir()] == [result.path.name]
    assert leftovers(tmp_path / "none", private_tmp) == []


def test_a_server_ignoring_range_voids_the_decoders_work(
    rig: dict[str, Any], cut: FaultProxy, tmp_path: Path, private_tmp: Path, monkeypatch: Any
) -> None:
    client = rig["client"]
    calls = _decrypt_calls(monkeypatch)
    adapter = client.session.get_adapter(client.config.server_url)
    real_send = adapter.send
    ranges: list[str | None] = []

    def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if str(request.url).endswith("/payload"):
            ranges.append(request.headers.pop("Range", None))
        return real_send(request, **kwargs)

    monkeypatch.setattr(adapter, "send", send)
    result = client.secure_import(rig["asset_id"], tmp_path / "out")
    assert ranges[0] is None and ranges[1] is not None  # the client asked for a range
    assert sha256(result.path) == rig["sha256"]
    assert calls == [False, True]  # the decoder's bytes were void: verified file decrypted
    assert [p.name for p in (tmp_path / "out").iterdir()] == [result.path.name]
    assert leftovers(tmp_path / "none", private_tmp) == []


def test_tampered_payload_with_a_cut_and_resume_fails_typed(
    rig: dict[str, Any], cut: FaultProxy, tmp_path: Path, private_tmp: Path
) -> None:
    client, server = rig["client"], rig["server"]

    def flip(resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if resp.request.method == "POST" and resp.url.endswith("/deliveries") and resp.ok:
            path = Path(server.data_dir) / "deliveries" / f"{resp.json()['delivery_id']}.age"
            os.chmod(path, 0o600)
            data = bytearray(path.read_bytes())
            data[100_000] ^= 1
            path.write_bytes(bytes(data))
        return resp

    client.session.hooks["response"].append(flip)
    try:
        with pytest.raises(HashMismatch):
            client.secure_import(rig["asset_id"], tmp_path / "out")
    finally:
        client.session.hooks["response"].remove(flip)
    assert leftovers(tmp_path / "out", private_tmp) == []
    assert list((client.config.cache_dir / "deliveries").glob("*")) == []
    assert client.audit.records()[-1]["event"] == "import.failed"


def test_cancel_while_the_decoder_holds_plaintext(
    rig: dict[str, Any], tmp_path: Path, private_tmp: Path
) -> None:
    client = rig["client"]
    out = tmp_path / "out"
    modes: list[int] = []
    progress: Progress

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "download" and done > CUT_AT and not modes:
            deadline = (
                time.monotonic() + 20
            )  # rendezvous with the decoder thread, not a timing assert
            while not (temps := list(out.glob(f"{TEMP_PREFIX}*"))) and time.monotonic() < deadline:
                time.sleep(0.01)
            modes.extend(stat.S_IMODE(p.stat().st_mode) for p in temps)
            progress.cancel()

    progress = Progress(on_progress)
    with pytest.raises(Cancelled):
        client.secure_import(rig["asset_id"], out, progress=progress)
    assert modes == [0o600]  # the decoder's temp file existed mid-download, private
    assert leftovers(out, private_tmp) == []
    assert list((client.config.cache_dir / "deliveries").glob("*")) == []
