"""SIEM export of the ledger's events and alerts, hash-chained, and its verifier.

Why a chain: the studio's SIEM and the server's own disk both keep a copy of
who downloaded what. Each exported record carries the SHA-256 of the one
before it (like the client's audit log, :mod:`sealport.audit`), a head file
keeps the last sequence number and hash, and :func:`verify` re-walks both
output files *and* compares every record with the ledger row it came from.
So editing, deleting, reordering or cutting off records, in the export or in
the ledger database, is reported (``sealport admin verify-ledger``).

Outputs, written in lock step by a background thread woken after every
committed ledger event (so a slow disk or collector never delays a download;
:meth:`SiemExporter.catch_up` exports synchronously, e.g. before reading the
files, and :meth:`SiemExporter.close` drains before the ledger closes):

- ``DATA/siem/events.jsonl``: one canonical JSON record per line;
- ``DATA/siem/events.syslog``: the same record as an RFC 5424 line (facility
  13 "log audit"; severity 6 for events, 2 for alerts) with the chain in
  structured data ``[sealport@32473 seq= prev= hash=]`` and the record as MSG;
- optionally a syslog collector over UDP (one datagram per line) or TCP
  (RFC 6587 octet counting). Network delivery is best effort: a collector
  being down never blocks a download; the files remain the source of truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..paths import atomic_write_bytes, ensure_private_dir
from .ledger import Ledger

GENESIS = "0" * 64
FACILITY_LOG_AUDIT = 13
SEV_INFO, SEV_CRITICAL = 6, 2
SD_ID = "sealport@32473"
APP_NAME = "sealport"
ALERT_EVENT = "security_alert"
log = logging.getLogger("sealport.siem")

_SYSLOG = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
    r"\[" + re.escape(SD_ID) + r' seq="(?P<seq>\d+)" prev="(?P<prev>[0-9a-f]{64})" '
    r'hash="(?P<hash>[0-9a-f]{64})"\] (?P<msg>\{.*\})$'
)


def digest(record: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a record without its ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _row_record(row: dict[str, Any]) -> dict[str, Any]:
    """The exported view of one ``audit_events`` row (without chain fields)."""
    event = json.loads(row["event"]) if isinstance(row["event"], str) else row["event"]
    name = str(event.get("event", "")) if isinstance(event, dict) else ""
    return {
        "ledger_id": int(row["id"]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(row["received_at"]))),
        "kind": "alert" if name == ALERT_EVENT else "event",
        "source": row["source"],
        "username": row["username"],
        "device_id": row["device_id"],
        "sid": row["sid"],
        "client_ip": row["client_ip"],
        "event": event,
    }


def syslog_line(record: dict[str, Any], hostname: str | None = None) -> str:
    """RFC 5424 line for a chained record (no trailing newline)."""
    sev = SEV_CRITICAL if record["kind"] == "alert" else SEV_INFO
    pri = FACILITY_LOG_AUDIT * 8 + sev
    event = record["event"] if isinstance(record["event"], dict) else {}
    msgid = re.sub(r"[^!-~]", "_", str(event.get("event") or "-"))[:32] or "-"
    host = re.sub(r"[^!-~]", "_", hostname or socket.gethostname())[:255] or "-"
    sd = f'[{SD_ID} seq="{record["seq"]}" prev="{record["prev"]}" hash="{record["hash"]}"]'
    return f"<{pri}>1 {record['time']} {host} {APP_NAME} {os.getpid()} {msgid} {sd} " + canonical(
        record
    )


class SyslogSender:
    """Best-effort delivery of RFC 5424 lines to ``udp://host:port`` or ``tcp://host:port``."""

    def __init__(self, target: str) -> None:
        u = urlsplit(target)
        if u.scheme not in ("udp", "tcp") or not u.hostname or not u.port:
            raise ValueError(f"syslog target must be udp://host:port or tcp://host:port: {target}")
        self.scheme, self.addr = u.scheme, (u.hostname, u.port)
        self._sock: socket.socket | None = None
        self.failures = 0

    def send(self, line: str) -> None:
        data = line.encode("utf-8")
        try:
            if self.scheme == "udp":
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._sock.sendto(data, self.addr)
                return
            if self._sock is None:
                self._sock = socket.create_connection(self.addr, timeout=2.0)
            self._sock.sendall(str(len(data)).encode() + b" " + data)
        except OSError:
            self.failures += 1
            self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


POLL_SECONDS = 2.0
"""The export thread also wakes this often: events that other processes write into the
ledger (``sealport trace`` records every trace run) are exported without a server
event to trigger it (one indexed query when there is nothing new)."""


class SiemExporter:
    """Exports ledger events in order, once each, extending the chain."""

    def __init__(
        self, ledger: Ledger, data_dir: Path, *, files: bool = True, target: str | None = None
    ) -> None:
        self.ledger = ledger
        self.dir = Path(data_dir) / "siem"
        self.files = files
        self.sender = SyslogSender(target) if target else None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.failures = 0
        if files:
            ensure_private_dir(self.dir)

    def start(self) -> None:
        """Export in the background from now on (see :meth:`notify`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="siem-export", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        """Ledger listener: new events are waiting (cheap; the thread does the work)."""
        if self._thread is None:
            self.catch_up()
        else:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception as exc:  # keep exporting later events; the chain resumes from the head
                if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
                    return  # ledger closed without close() here: nothing can arrive; stop
                self.failures += 1
                log.exception("SIEM export failed; will retry on the next event")

    @property
    def jsonl_path(self) -> Path:
        return self.dir / "events.jsonl"

    @property
    def syslog_path(self) -> Path:
        return self.dir / "events.syslog"

    @property
    def head_path(self) -> Path:
        return self.dir / "head.json"

    def head(self) -> tuple[int, str, int]:
        """(seq, hash, last exported ledger id)."""
        try:
            h = json.loads(self.head_path.read_text("utf-8"))
            return int(h["seq"]), str(h["hash"]), int(h["ledger_id"])
        except FileNotFoundError:
            return 0, GENESIS, 0

    def catch_up(self) -> int:
        """Export every ledger event newer than the head; returns how many."""
        with self._lock:
            seq, prev, last_id = self.head()
            rows = self.ledger.query(
                "SELECT * FROM audit_events WHERE id>? ORDER BY id", (last_id,)
            )
            if not rows:
                return 0
            json_lines, syslog_lines = [], []
            for row in rows:
                rec = _row_record(dict(row))
                seq += 1
                rec["seq"] = seq
                rec["prev"] = prev
                rec["hash"] = prev = digest(rec)
                json_lines.append(canonical(rec))
                syslog_lines.append(syslog_line(rec))
                last_id = rec["ledger_id"]
            if self.files:
                _append(self.jsonl_path, json_lines)
                _append(self.syslog_path, syslog_lines)
                atomic_write_bytes(
                    self.head_path,
                    json.dumps({"seq": seq, "hash": prev, "ledger_id": last_id}).encode(),
                )
            if self.sender is not None:
                for line in syslog_lines:
                    self.sender.send(line)
            return len(rows)

    def close(self) -> None:
        """Stop the thread after a final export (call before the ledger closes); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(10)
            self._thread = None
        try:
            self.catch_up()
        finally:
            if self.sender is not None:
                self.sender.close()


def _append(path: Path, lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


# --- verification --------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerVerification:
    ok: bool
    records: int
    problems: tuple[str, ...] = ()


def _walk(lines: list[str], label: str, parse: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Re-walk one output file's chain; returns the good records and the first problem."""
    out: list[dict[str, Any]] = []
    seq, prev = 0, GENESIS
    for n, line in enumerate(lines, 1):
        try:
            rec = parse(line)
        except ValueError as exc:
            return out, [f"{label} line {n}: unreadable ({exc})"]
        if rec.get("seq") != seq + 1:
            return out, [f"{label} line {n}: records are missing or out of order"]
        if rec.get("prev") != prev:
            return out, [f"{label} line {n}: the hash chain is broken"]
        if rec.get("hash") != digest(rec):
            return out, [f"{label} line {n}: the record was edited"]
        seq, prev = rec["seq"], rec["hash"]
        out.append(rec)
    return out, []


def _parse_json(line: str) -> dict[str, Any]:
    rec = json.loads(line)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    return rec


def _parse_syslog(line: str) -> dict[str, Any]:
    m = _SYSLOG.match(line)
    if m is None:
        raise ValueError("not an RFC 5424 line of this exporter")
    rec = _parse_json(m.group("msg"))
    if (str(rec.get("seq")), rec.get("prev"), rec.get("hash")) != (
        m.group("seq"),
        m.group("prev"),
        m.group("hash"),
    ):
        raise ValueError("structured data and message disagree")
    return rec


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text("utf-8").split("\n") if ln]


def verify(data_dir: Path, ledger: Ledger | None = None) -> LedgerVerification:
    """Check the export chain, its head, both files against each other and against the ledger."""
    from .store import open_ledger

    own = ledger is None
    ledger = ledger or open_ledger(Path(data_dir))
    try:
        exp = SiemExporter(ledger, Path(data_dir), files=False)
        problems: list[str] = []
        records, p1 = _walk(_lines(exp.jsonl_path), "events.jsonl", _parse_json)
        problems += p1
        srecords, p2 = _walk(_lines(exp.syslog_path), "events.syslog", _parse_syslog)
        problems += p2
        head_seq, head_hash, head_id = exp.head()
        for label, recs in (("events.jsonl", records), ("events.syslog", srecords)):
            last = (recs[-1]["seq"], recs[-1]["hash"]) if recs else (0, GENESIS)
            if not problems and last != (head_seq, head_hash):
                problems.append(
                    f"{label} ends at record {last[0]} but the head says {head_seq} (truncated)"
                )
        if not problems and records != srecords:
            problems.append("events.jsonl and events.syslog disagree")
        rows = {
            int(r["id"]): dict(r)
            for r in ledger.query("SELECT * FROM audit_events WHERE id<=? ORDER BY id", (head_id,))
        }
        exported_ids = set()
        for rec in records:
            row = rows.get(int(rec.get("ledger_id", -1)))
            exported_ids.add(rec.get("ledger_id"))
            if row is None:
                problems.append(f"record {rec['seq']}: ledger event {rec['ledger_id']} is gone")
                break
            want = _row_record(row)
            got = {k: rec.get(k) for k in want}
            if got != want:
                problems.append(
                    f"record {rec['seq']}: ledger event {rec['ledger_id']} differs from the export"
                )
                break
        if not problems:
            missing = sorted(set(rows) - exported_ids)
            if missing:
                problems.append(f"ledger events {missing[:5]} are missing from the export")
            newer = ledger.one("SELECT COUNT(*) AS n FROM audit_events WHERE id>?", (head_id,))
            if newer and int(newer["n"]):
                problems.append(
                    f"{int(newer['n'])} ledger events are newer than the export head "
                    "(export truncated, or the server stopped before exporting them)"
                )
        return LedgerVerification(not problems, len(records), tuple(problems))
    finally:
        if own:
            ledger.close()
