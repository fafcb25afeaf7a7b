"""The small interface every DCC adapter implements.

Adapters (Blender, Houdini, Maya, the CLI) translate clicks into core calls
and hand a *verified* file to the host's own importer. Anything two adapters
would both need belongs in the core, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .importer import ImportResult


class Host(Protocol):
    name: str

    def import_verified_file(self, result: ImportResult) -> list[str]:
        """Import ``result.path`` with the host's importer; return created node names."""
        ...

    def report_progress(self, stage: str, done: int, total: int) -> None: ...

    def ask_yes_no(self, question: str) -> bool: ...

    def show_error(self, message: str, detail: str) -> None: ...

    def main_window(self) -> Any: ...


def provenance(result: ImportResult) -> dict[str, str]:
    """What adapters store on imported nodes (never secrets)."""
    m = result.manifest
    return {
        "sealport_asset_id": m.asset_id,
        "sealport_asset_name": m.name,
        "sealport_version": str(m.version),
        "sealport_delivery_id": m.delivery_id,
        "sealport_manifest_sha256": result.manifest_sha256,
        "sealport_file_sha256": m.file.sha256,
        "sealport_verified_at": result.verified_at,
        "sealport_watermark": result.watermark_status,
        "sealport_file": str(Path(result.path).name),
    }
