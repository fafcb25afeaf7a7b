"""Verify Scene: does every Sealport object in the .blend still match what was verified?

For each object carrying provenance, the audit log must hold the matching
``manifest.verified`` and ``import.verified`` records (same delivery, manifest
hash and file hash), and its geometry must hash as it did on import. Objects
that sit in a Sealport collection without provenance were added afterwards.
The audit chain itself is re-walked first: a broken chain proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy

from .import_hooks import GEOMETRY_KEY, geometry_sha256


@dataclass
class SceneReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"Verify Scene: all {self.checked} Sealport objects match the audit log."
        head = f"Verify Scene: {len(self.problems)} problem(s) in {self.checked} objects: "
        return head + "; ".join(self.problems[:5]) + ("; …" if len(self.problems) > 5 else "")


def _audit_index(records: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """delivery_id -> manifest sha256, delivery_id -> file sha256."""
    manifests: dict[str, str] = {}
    files: dict[str, str] = {}
    for r in records:
        data = r.get("data", {})
        if r.get("event") == "manifest.verified":
            manifests[str(data.get("delivery_id"))] = str(data.get("manifest_sha256"))
        elif r.get("event") == "import.verified":
            files[str(data.get("delivery_id"))] = str(data.get("sha256"))
    return manifests, files


def verify_scene(audit: Any) -> SceneReport:
    """``audit`` is the core's AuditLog (``verify()``, ``records()``)."""
    report = SceneReport()
    chain = audit.verify()
    if not chain.ok:
        report.problems.append(f"the audit log is broken ({chain.problem}, line {chain.line})")
        return report
    manifests, files = _audit_index(audit.records())
    for obj in bpy.data.objects:
        sealed_colls = [c for c in obj.users_collection if "sealport_asset_id" in c]
        if "sealport_delivery_id" not in obj:
            if sealed_colls:
                report.checked += 1
                report.problems.append(
                    f"'{obj.name}' was added to '{sealed_colls[0].name}' without provenance"
                )
            continue
        report.checked += 1
        delivery = str(obj["sealport_delivery_id"])
        if manifests.get(delivery) != obj.get("sealport_manifest_sha256"):
            report.problems.append(f"'{obj.name}' has no matching verified manifest in the log")
        elif files.get(delivery) != obj.get("sealport_file_sha256"):
            report.problems.append(f"'{obj.name}' has no matching verified import in the log")
        elif obj.get(GEOMETRY_KEY) != geometry_sha256(obj):
            report.problems.append(f"'{obj.name}' was changed since it was imported")
    return report
