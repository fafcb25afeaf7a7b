"""Verify Scene: do the files behind imported nodes still match what was verified?

Pure Python (no Qt, no host): adapters collect each Sealport node's stored
provenance and this module re-hashes the file on disk and compares it with the
``sealport_file_sha256`` recorded at import. A changed or missing file means
someone replaced a verified asset after import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class NodeCheck:
    node: str
    path: str
    status: str
    """"ok", "modified", "missing" or "no provenance"."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_node(node: str, provenance: dict[str, str]) -> NodeCheck:
    path = provenance.get("sealport_path", "")
    expected = provenance.get("sealport_file_sha256", "")
    if not path or not expected:
        return NodeCheck(node, path, "no provenance")
    p = Path(path)
    if not p.is_file():
        return NodeCheck(node, path, "missing")
    return NodeCheck(node, path, "ok" if sha256_file(p) == expected else "modified")


def summarize(checks: list[NodeCheck]) -> str:
    """One artist-readable paragraph for the host's message box."""
    if not checks:
        return "No Sealport imports in this scene."
    bad = [c for c in checks if not c.ok]
    if not bad:
        return f"All {len(checks)} Sealport imports match the files that were verified."
    lines = [f"{len(bad)} of {len(checks)} Sealport imports no longer match:"]
    lines += [f"  {c.node}: {c.status} ({c.path})" for c in bad]
    lines.append("Re-import them with Secure Import.")
    return "\n".join(lines)
