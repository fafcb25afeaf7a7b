"""The local audit log detects every edit; rollback state refuses older versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sealport.audit import AuditLog
from sealport.errors import RollbackDetected
from sealport.rollback import RollbackState


def make_log(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("step", i=i)
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def test_intact_log_verifies(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    assert log.verify().ok and log.verify().records == 5
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_edit_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    ls = lines(log)
    rec = json.loads(ls[2])
    rec["data"]["i"] = 99
    ls[2] = json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n"
    log.path.write_text("".join(ls))
    v = log.verify()
    assert not v.ok and v.line == 3 and "edited" in v.problem


def test_delete_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    ls = lines(log)
    del ls[1]
    log.path.write_text("".join(ls))
    assert not log.verify().ok


def test_reorder_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    ls = lines(log)
    ls[1], ls[2] = ls[2], ls[1]
    log.path.write_text("".join(ls))
    assert not log.verify().ok


def test_truncation_detected(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.path.write_text("".join(lines(log)[:3]))
    v = log.verify()
    assert not v.ok and "head" in v.problem


def test_cli_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sealport.cli import main

    log = make_log(tmp_path)
    assert main(["audit", "verify", "--log", str(log.path)]) == 0
    log.path.write_text("".join(lines(log)[1:]))
    assert main(["audit", "verify", "--log", str(log.path)]) == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_rollback(tmp_path: Path) -> None:
    state = RollbackState(tmp_path / "rollback.json")
    state.check("a", 1)
    state.record("a", 3)
    state.check("a", 3)  # same version again is fine (re-download)
    state.check("a", 4)
    with pytest.raises(RollbackDetected, match="version 2"):
        state.check("a", 2)
    state.record("a", 2)  # never moves backwards
    assert RollbackState(tmp_path / "rollback.json").last_seen("a") == 3
