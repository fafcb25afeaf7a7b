"""Verify Scene: do imported nodes still match what was verified?

Host-agnostic, shared by every adapter. Each adapter collects its Sealport
nodes' stored provenance (see :func:`sealport.host.provenance`); this module
checks it against the local audit log (the delivery's verified manifest and
file hashes must be recorded there, in an intact hash chain) and re-hashes
the file on disk. A changed or missing file, or provenance the log never
recorded, means something was replaced or added after import. Hosts add
their own geometry checks on top (Blender hashes mesh data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


@dataclass(frozen=True)
class NodeCheck:
    node: str
    path: str
    status: str
    """"ok", "modified", "missing", "no provenance" or "not in audit log"."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class AuditIndex:
    """What the local audit log says was verified, by delivery id."""

    manifests: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    """Non-empty when the log's hash chain is broken: then it proves nothing."""

    @classmethod
    def from_log(cls, audit: Any) -> AuditIndex:
        """``audit`` is a :class:`sealport.audit.AuditLog`."""
        chain = audit.verify()
        if not chain.ok:
            return cls(problem=f"the audit log is broken ({chain.problem}, line {chain.line})")
        manifests: dict[str, str] = {}
        files: dict[str, str] = {}
        for r in audit.records():
            data = r.get("data", {})
            if r.get("event") == "manifest.verified":
                manifests[str(data.get("delivery_id"))] = str(data.get("manifest_sha256"))
            elif r.get("event") == "import.verified":
                files[str(data.get("delivery_id"))] = str(data.get("sha256"))
        return cls(manifests, files)

    def recorded(self, provenance: dict[str, str]) -> bool:
        delivery = provenance.get("sealport_delivery_id", "")
        return (
            not self.problem
            and self.manifests.get(delivery) == provenance.get("sealport_manifest_sha256")
            and self.files.get(delivery) == provenance.get("sealport_file_sha256")
        )


def check_node(node: str, provenance: dict[str, str], index: AuditIndex | None = None) -> NodeCheck:
    """Check one node; with ``index``, its provenance must also be in the audit log."""
    path = provenance.get("sealport_path", "")
    expected = provenance.get("sealport_file_sha256", "")
    if not path or not expected:
        return NodeCheck(node, path, "no provenance")
    if index is not None and not index.recorded(provenance):
        return NodeCheck(node, path, "not in audit log")
    p = Path(path)
    if not p.is_file():
        return NodeCheck(node, path, "missing")
    return NodeCheck(node, path, "ok" if sha256_file(p) == expected else "modified")


def local_audit_index() -> AuditIndex:
    """The index of this workstation's audit log (from the studio config)."""
    from .audit import AuditLog
    from .config import load_config
    from .errors import ConfigError

    try:
        return AuditIndex.from_log(AuditLog(load_config().audit_log))
    except ConfigError as exc:
        return AuditIndex(problem=f"the audit log could not be found ({exc.message})")


def summarize(checks: list[NodeCheck], index: AuditIndex | None = None) -> str:
    """One artist-readable paragraph for the host's message box."""
    if index is not None and index.problem:
        return f"Verify Scene could not trust the audit log: {index.problem}. Tell your TD."
    if not checks:
        return "No Sealport imports in this scene."
    bad = [c for c in checks if not c.ok]
    if not bad:
        return f"All {len(checks)} Sealport imports match the files that were verified."
    lines = [f"{len(bad)} of {len(checks)} Sealport imports no longer match:"]
    lines += [f"  {c.node}: {c.status} ({c.path})" for c in bad]
    lines.append("Re-import them with Secure Import.")
    return "\n".join(lines)
