"""Verify Scene's shared logic: provenance must match the audit log and the file."""

from __future__ import annotations

from pathlib import Path

from sealport.audit import AuditLog
from sealport.scene_check import AuditIndex, check_node, summarize


def setup_log(tmp_path: Path) -> tuple[AuditLog, dict[str, str]]:
    f = tmp_path / "chair.obj"
    f.write_text("v 0 0 0\n")
    import hashlib

    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("manifest.verified", delivery_id="d1", manifest_sha256="m" * 64)
    log.append("import.verified", delivery_id="d1", sha256=sha)
    prov = {
        "sealport_delivery_id": "d1",
        "sealport_manifest_sha256": "m" * 64,
        "sealport_file_sha256": sha,
        "sealport_path": str(f),
    }
    return log, prov


def test_recorded_and_unchanged_is_ok(tmp_path: Path) -> None:
    log, prov = setup_log(tmp_path)
    assert check_node("n", prov, AuditIndex.from_log(log)).ok


def test_provenance_the_log_never_recorded(tmp_path: Path) -> None:
    log, prov = setup_log(tmp_path)
    forged = dict(prov, sealport_delivery_id="d2")
    assert check_node("n", forged, AuditIndex.from_log(log)).status == "not in audit log"


def test_file_changed_after_import(tmp_path: Path) -> None:
    log, prov = setup_log(tmp_path)
    Path(prov["sealport_path"]).write_text("v 1 1 1\n")
    assert check_node("n", prov, AuditIndex.from_log(log)).status == "modified"


def test_broken_chain_proves_nothing(tmp_path: Path) -> None:
    log, prov = setup_log(tmp_path)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text(lines[1])
    index = AuditIndex.from_log(log)
    assert index.problem and check_node("n", prov, index).status == "not in audit log"
    assert "could not trust the audit log" in summarize([], index)
