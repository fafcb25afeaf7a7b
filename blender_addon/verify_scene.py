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
from sealport.scene_check import AuditIndex

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


def verify_scene(audit: Any) -> SceneReport:
    """``audit`` is the core's AuditLog (``verify()``, ``records()``)."""
    report = SceneReport()
    index = AuditIndex.from_log(audit)
    if index.problem:
        report.problems.append(index.problem)
        return report
    manifests, files = index.manifests, index.files
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
