"""Rollback protection: the last manifest version seen per asset.

Kept in the profile folder (not secret; its integrity comes from the signed
manifests it records). A version older than the last one seen is refused, so
a compromised mirror or a replayed manifest cannot push an old asset back.
"""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock

from .errors import RollbackDetected
from .paths import atomic_write_bytes


class RollbackState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock")

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {str(k): int(v) for k, v in data.items()}

    def last_seen(self, asset_id: str) -> int | None:
        return self._load().get(asset_id)

    def check(self, asset_id: str, version: int) -> None:
        last = self.last_seen(asset_id)
        if last is not None and version < last:
            raise RollbackDetected(
                f"The server offered version {version} of this asset, but this workstation "
                f"already had version {last}. Older versions are refused to stop tampering; "
                "nothing was imported. Tell your pipeline TD.",
                detail=f"asset {asset_id}: offered v{version} < last seen v{last}",
            )

    def record(self, asset_id: str, version: int) -> None:
        with self._lock:
            state = self._load()
            if version >= state.get(asset_id, -1):
                state[asset_id] = version
                atomic_write_bytes(self.path, json.dumps(state, sort_keys=True).encode())
