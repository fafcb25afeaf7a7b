"""The local tamper-evident audit log (hash-chained JSON lines).

Every step of an import appends one record. Each record carries the SHA-256
of the previous one, so editing, deleting or reordering any line breaks the
chain; a separate head file (last sequence number and hash) makes cutting
records off the end detectable too. Several DCCs may append at once, so
appends take a file lock. Records never contain secrets or tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .paths import atomic_write_bytes

GENESIS = "0" * 64


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    records: int
    problem: str = ""
    line: int = 0


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._lock = FileLock(str(path) + ".lock")

    def _head(self) -> tuple[int, str]:
        try:
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(head["seq"]), str(head["hash"])
        except FileNotFoundError:
            return 0, GENESIS

    def append(self, event: str, **data: Any) -> dict[str, Any]:
        """Append one record; returns it (with its hash) for forwarding to the server."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            seq, prev = self._head()
            record: dict[str, Any] = {
                "seq": seq + 1,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "event": event,
                "data": data,
                "prev": prev,
            }
            record["hash"] = _digest(record)
            line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            atomic_write_bytes(
                self.head_path, json.dumps({"seq": record["seq"], "hash": record["hash"]}).encode()
            )
            return record

    def verify(self) -> AuditVerification:
        """Re-walk the chain; report the first broken line."""
        seq, prev = 0, GENESIS
        if not self.path.exists():
            head_seq, _ = self._head()
            if head_seq:
                return AuditVerification(False, 0, "the log file is missing but its head exists")
            return AuditVerification(True, 0)
        with open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                except ValueError:
                    return AuditVerification(False, seq, "a line is not valid JSON", lineno)
                if record.get("seq") != seq + 1:
                    return AuditVerification(
                        False, seq, "records are missing or out of order", lineno
                    )
                if record.get("prev") != prev:
                    return AuditVerification(False, seq, "the hash chain is broken", lineno)
                if record.get("hash") != _digest(record):
                    return AuditVerification(False, seq, "a record was edited", lineno)
                seq, prev = record["seq"], record["hash"]
        head_seq, head_hash = self._head()
        if (head_seq, head_hash) != (seq, prev):
            return AuditVerification(
                False, seq, f"the log ends at record {seq} but its head says {head_seq}", seq
            )
        return AuditVerification(True, seq)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
