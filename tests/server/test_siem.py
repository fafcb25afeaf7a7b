"""SIEM export: JSON lines + RFC 5424 syslog (file, real UDP and TCP listeners), and
the server-side chain check (`sealport admin verify-ledger`) against every kind of
tampering: edit, delete, reorder, truncate, in the export files and in the ledger.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sealport import age
from sealport.cli import main as cli_main
from sealport.server import ServerSettings
from sealport.server.siem import digest, verify

from tests.fixtures.server import start_sealport_server

# RFC 5424 §6 ABNF, written out independently of the exporter's own parser.
RFC5424 = re.compile(
    r"^<(?P<pri>[0-9]{1,3})>(?P<version>[1-9][0-9]{0,2}) "
    r"(?P<ts>-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})) "
    r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    r"(?P<sd>-|(\[[^ =\]\"]{1,32}( [^ =\]\"]{1,32}=\"([^\"\\\]]|\\[\"\\\]])*\")*\])+)"
    r"( (?P<msg>.*))?$"
)


def _parse(line: str) -> dict[str, Any]:
    m = RFC5424.match(line)
    assert m, f"not RFC 5424: {line[:200]}"
    assert int(m["pri"]) <= 191 and m["version"] == "1"
    assert m["app"] == "sealport"
    return {"pri": int(m["pri"]), "sd": m["sd"], "record": json.loads(m["msg"])}


class _Collector:
    """A real syslog collector on loopback (UDP datagrams or RFC 6587 octet-counted TCP)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lines: list[str] = []
        self.got = threading.Condition()
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        if kind == "tcp":
            self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        return f"{self.kind}://127.0.0.1:{self.port}"

    def _add(self, line: str) -> None:
        with self.got:
            self.lines.append(line)
            self.got.notify_all()

    def _run(self) -> None:
        while not self._stop:
            try:
                if self.kind == "udp":
                    data, _ = self.sock.recvfrom(65535)
                    self._add(data.decode("utf-8"))
                    continue
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp, args=(conn,), daemon=True).start()

    def _tcp(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            conn.settimeout(0.5)
            while not self._stop:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buf += chunk
                while b" " in buf:
                    length, _, rest = buf.partition(b" ")
                    n = int(length)
                    if len(rest) < n:
                        break
                    self._add(rest[:n].decode("utf-8"))
                    buf = rest[n:]

    def wait_for(self, pred: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        with self.got:
            self.got.wait_for(lambda: pred(self.lines), timeout=timeout)
            return list(self.lines)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self.thread.join(5)


def _activity(srv: Any) -> None:
    """Sign in, register a workstation, take a delivery, send a client audit record."""
    api = srv.api(srv.login()["access_token"])
    pub = age.identity_to_recipient(age.generate_identity())
    dev = api.post(f"{srv.url}/api/v1/devices", json={"public_key": pub}).json()["device_id"]
    asset = srv.ledger.asset_id_for("test", "cube")
    r = api.post(f"{srv.url}/api/v1/assets/{asset}/deliveries", json={"device_id": dev})
    assert r.status_code == 200, r.text
    r = api.post(f"{srv.url}/api/v1/audit", json={"events": [{"event": "import_ok", "n": 1}]})
    assert r.status_code == 200


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_syslog_to_a_real_collector(tmp_path: Path, kind: str) -> None:
    collector = _Collector(kind)
    srv = start_sealport_server(
        tmp_path / "data",
        settings=ServerSettings(device_interval=1, siem_syslog_target=collector.target),
    )
    try:
        _activity(srv)
        srv.running.app.state.siem.catch_up()  # the export runs on a background thread
        file_lines = (srv.data_dir / "siem" / "events.syslog").read_text().splitlines()
        got = collector.wait_for(lambda ls: len(ls) >= len(file_lines))
    finally:
        srv.stop()
        collector.close()
    assert got[: len(file_lines)] == file_lines
    parsed = [_parse(line) for line in got]
    prev = "0" * 64
    for p in parsed:
        rec = p["record"]
        assert rec["prev"] == prev and rec["hash"] == digest(rec)
        assert f'seq="{rec["seq"]}"' in p["sd"] and f'hash="{rec["hash"]}"' in p["sd"]
        assert p["pri"] == 13 * 8 + (2 if rec["kind"] == "alert" else 6)
        prev = rec["hash"]
    names = [p["record"]["event"].get("event") for p in parsed]
    assert {"login", "device_registered", "delivery_sealed", "import_ok"} <= set(names)


def test_jsonl_and_syslog_files_carry_the_same_chain(tmp_path: Path) -> None:
    srv = start_sealport_server(tmp_path / "data")
    try:
        _activity(srv)
        srv.running.app.state.siem.catch_up()
        d = srv.data_dir / "siem"
        jsonl = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
        syslog = [_parse(x)["record"] for x in (d / "events.syslog").read_text().splitlines()]
        head = json.loads((d / "head.json").read_text())
        n_events = len(srv.ledger.audit_events())
    finally:
        srv.stop()
    assert jsonl == syslog and len(jsonl) == n_events
    assert [r["seq"] for r in jsonl] == list(range(1, len(jsonl) + 1))
    assert head == {"seq": jsonl[-1]["seq"], "hash": jsonl[-1]["hash"], "ledger_id": n_events}
    assert not any("access_token" in json.dumps(r) for r in jsonl)


# --- tampering -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A stopped server's data folder with a few dozen exported events."""
    data = tmp_path_factory.mktemp("siem") / "data"
    srv = start_sealport_server(data)
    try:
        _activity(srv)
        _activity(srv)
    finally:
        srv.stop()
    yield data


def _copy(exported: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(exported, dst)
    return dst


def _rewrite(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


def _edit_json(line: str) -> str:
    rec = json.loads(line)
    rec["username"] = "somebody-else"
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def _edit_syslog(line: str) -> str:
    return line.replace('"username":"', '"username":"x', 1)


def _edit_rehash(line: str) -> str:
    rec = json.loads(line)
    rec["client_ip"] = "203.0.113.9"
    rec["hash"] = digest(rec)
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


TAMPER = {
    "edit": lambda ls, f: ls[:3] + [f(ls[3])] + ls[4:],
    "delete": lambda ls, f: ls[:3] + ls[4:],
    "reorder": lambda ls, f: ls[:3] + [ls[4], ls[3]] + ls[5:],
    "truncate": lambda ls, f: ls[:-2],
}


def test_clean_export_verifies(exported: Path, tmp_path: Path) -> None:
    data = _copy(exported, tmp_path)
    result = verify(data)
    assert result.ok, result.problems
    assert result.records >= 10
    assert cli_main(["admin", "verify-ledger", "--data", str(data)]) == 0


@pytest.mark.parametrize("kind", sorted(TAMPER))
@pytest.mark.parametrize("file", ["events.jsonl", "events.syslog"])
def test_tampered_export_is_detected(exported: Path, tmp_path: Path, kind: str, file: str) -> None:
    data = _copy(exported, tmp_path)
    edit = _edit_json if file.endswith("jsonl") else _edit_syslog
    _rewrite(data / "siem" / file, lambda ls: TAMPER[kind](ls, edit))
    result = verify(data)
    assert not result.ok
    text = " ".join(result.problems)
    expected = {
        "edit": "edited",
        "delete": "missing or out of order",
        "reorder": "missing or out of order",
        "truncate": "truncated",
    }[kind]
    assert expected in text, result.problems
    assert cli_main(["admin", "verify-ledger", "--data", str(data)]) == 1


def test_edit_with_recomputed_hash_breaks_the_chain(exported: Path, tmp_path: Path) -> None:
    data = _copy(exported, tmp_path)
    _rewrite(data / "siem" / "events.jsonl", lambda ls: ls[:3] + [_edit_rehash(ls[3])] + ls[4:])
    result = verify(data)
    assert not result.ok and "hash chain is broken" in " ".join(result.problems)


def test_truncation_with_a_rewritten_head_is_caught_by_the_ledger(
    exported: Path, tmp_path: Path
) -> None:
    data = _copy(exported, tmp_path)
    for name in ("events.jsonl", "events.syslog"):
        _rewrite(data / "siem" / name, lambda ls: ls[:-3])
    last = json.loads((data / "siem" / "events.jsonl").read_text().splitlines()[-1])
    (data / "siem" / "head.json").write_text(
        json.dumps({"seq": last["seq"], "hash": last["hash"], "ledger_id": last["ledger_id"]})
    )
    result = verify(data)
    assert not result.ok and "newer than the export head" in " ".join(result.problems)


@pytest.mark.parametrize(
    "sql,expected",
    [
        ("UPDATE audit_events SET username='mallory' WHERE id=4", "differs from the export"),
        ("DELETE FROM audit_events WHERE id=4", "is gone"),
    ],
    ids=["edit", "delete"],
)
def test_tampered_ledger_is_detected(exported: Path, tmp_path: Path, sql: str, expected: str):
    data = _copy(exported, tmp_path)
    con = sqlite3.connect(data / "ledger.sqlite")
    with con:
        con.execute(sql)
    con.close()
    result = verify(data)
    assert not result.ok and expected in " ".join(result.problems), result.problems


def test_export_thread_picks_up_other_writers_and_stops_with_its_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The export thread polls, so an event another process writes (``sealport trace``)
    is exported without a server event; once its ledger is closed (an app dropped
    without ``close()``) it stops instead of logging an error every poll."""
    import sealport.server.siem as siem_mod
    from sealport.server.ledger import Ledger

    monkeypatch.setattr(siem_mod, "POLL_SECONDS", 0.05)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    exporter = siem_mod.SiemExporter(ledger, tmp_path)
    exporter.start()
    other = Ledger(tmp_path / "ledger.sqlite")  # a second writer, as another process is
    other.add_audit([{"event": "trace.run"}], source="trace", username="admin")
    other.close()
    for _ in range(200):
        if verify(tmp_path, ledger).ok and exporter.head()[0] == 1:
            break
        threading.Event().wait(0.05)
    assert exporter.head()[0] == 1 and verify(tmp_path, ledger).ok
    with caplog.at_level("ERROR", logger="sealport.siem"):
        ledger.close()
        assert exporter._thread is not None
        exporter._thread.join(timeout=5)
    assert not exporter._thread.is_alive()
    assert not [r for r in caplog.records if r.name == "sealport.siem"]
