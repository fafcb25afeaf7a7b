"""The server's SQLite ledger: who exists, who holds which device, who got what.

One connection guarded by a lock (the dev server is one process; WAL lets
admin commands in another process read and write meanwhile). Secrets that
act as bearer credentials (refresh tokens, device codes) are stored only as
SHA-256 hashes, so a copy of the database cannot be replayed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    mfa INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,  -- the token's sub (the IdP may be external)
    public_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    format TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (asset_id, version)
);
CREATE INDEX IF NOT EXISTS assets_by_name ON assets(project, name);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_size INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    watermark TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    amr TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    sid TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL  -- active | rotated | revoked
);
CREATE INDEX IF NOT EXISTS refresh_by_sid ON refresh_tokens(sid);
CREATE TABLE IF NOT EXISTS device_codes (
    device_code_hash TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    requester_ip TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    interval INTEGER NOT NULL,
    last_poll REAL,
    status TEXT NOT NULL,  -- pending | approved | denied | redeemed
    username TEXT,
    approver_ip TEXT,
    sid TEXT
);
CREATE TABLE IF NOT EXISTS revoked_sids (
    sid TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    source TEXT NOT NULL,  -- client | server
    username TEXT,
    device_id TEXT,
    sid TEXT,
    client_ip TEXT,
    event TEXT NOT NULL
);
"""


def sha256_hex(text: str) -> str:
    """Hash of a bearer secret as stored in the ledger."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class UserRecord:
    username: str
    name: str
    password_hash: str
    roles: tuple[str, ...]
    mfa: bool
    disabled: bool

    @property
    def sub(self) -> str:
        return self.username


@dataclass(frozen=True)
class AssetRecord:
    asset_id: str
    version: int
    name: str
    project: str
    format: str
    filename: str
    size: int
    sha256: str
    created_by: str
    created_at: int

    def public(self) -> dict[str, Any]:
        """The fields /api/v1/assets shows."""
        return {
            "asset_id": self.asset_id,
            "name": self.name,
            "project": self.project,
            "format": self.format,
            "version": self.version,
            "size": self.size,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    username: str
    public_key: str
    name: str
    created_at: int


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str
    username: str
    asset_id: str
    version: int
    device_id: str
    recipient: str
    manifest_sha256: str
    payload_sha256: str
    payload_size: int
    issued_at: int
    expires_at: int
    client_ip: str
    watermark: str | None


class Ledger:
    """Thin typed access to the SQLite file; every write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(SCHEMA)
        self.audit_listeners: list[Callable[[], object]] = []
        """Called after every committed :meth:`add_audit` (the SIEM export hooks in here)."""

    def ensure_schema(self, sql: str) -> None:
        """Create the tables of a server module that keeps its own (idempotent DDL)."""
        with self._lock:
            self._conn.executescript(sql)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: check-then-update sequences stay atomic."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # --- users -------------------------------------------------------------------
    def put_user(
        self, username: str, name: str, password_hash: str, roles: tuple[str, ...], mfa: bool
    ) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO users(username, name, password_hash, roles, mfa, created_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(username) DO UPDATE SET name=excluded.name, "
                "password_hash=excluded.password_hash, roles=excluded.roles, mfa=excluded.mfa",
                (username, name, password_hash, json.dumps(list(roles)), int(mfa), _now()),
            )

    def get_user(self, username: str) -> UserRecord | None:
        row = self.one("SELECT * FROM users WHERE username=?", (username,))
        if row is None:
            return None
        return UserRecord(
            row["username"],
            row["name"],
            row["password_hash"],
            tuple(json.loads(row["roles"])),
            bool(row["mfa"]),
            bool(row["disabled"]),
        )

    # --- devices -----------------------------------------------------------------
    def device_by_key(self, public_key: str) -> DeviceRecord | None:
        row = self.one("SELECT * FROM devices WHERE public_key=?", (public_key,))
        return DeviceRecord(**dict(row)) if row else None

    def get_device(self, device_id: str) -> DeviceRecord | None:
        row = self.one("SELECT * FROM devices WHERE device_id=?", (device_id,))
        return DeviceRecord(**dict(row)) if row else None

    def add_device(self, rec: DeviceRecord) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO devices(device_id, username, public_key, name, created_at) "
                "VALUES (?,?,?,?,?)",
                (rec.device_id, rec.username, rec.public_key, rec.name, rec.created_at),
            )

    # --- assets ------------------------------------------------------------------
    def asset_id_for(self, project: str, name: str) -> str | None:
        row = self.one(
            "SELECT asset_id FROM assets WHERE project=? AND name=? LIMIT 1", (project, name)
        )
        return str(row["asset_id"]) if row else None

    def latest_version(self, asset_id: str) -> int:
        row = self.one("SELECT MAX(version) AS v FROM assets WHERE asset_id=?", (asset_id,))
        return int(row["v"]) if row and row["v"] is not None else 0

    def add_asset(self, rec: AssetRecord) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO assets(asset_id, version, name, project, format, filename, size, "
                "sha256, created_by, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.asset_id,
                    rec.version,
                    rec.name,
                    rec.project,
                    rec.format,
                    rec.filename,
                    rec.size,
                    rec.sha256,
                    rec.created_by,
                    rec.created_at,
                ),
            )

    def get_asset(self, asset_id: str, version: int | None = None) -> AssetRecord | None:
        if version is None:
            version = self.latest_version(asset_id)
        row = self.one("SELECT * FROM assets WHERE asset_id=? AND version=?", (asset_id, version))
        return AssetRecord(**dict(row)) if row else None

    def list_latest_assets(self) -> list[AssetRecord]:
        rows = self.query(
            "SELECT a.* FROM assets a JOIN (SELECT asset_id, MAX(version) AS v FROM assets "
            "GROUP BY asset_id) m ON a.asset_id=m.asset_id AND a.version=m.v "
            "ORDER BY a.project, a.name"
        )
        return [AssetRecord(**dict(r)) for r in rows]

    # --- deliveries --------------------------------------------------------------
    def add_delivery(self, rec: DeliveryRecord) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO deliveries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.delivery_id,
                    rec.username,
                    rec.asset_id,
                    rec.version,
                    rec.device_id,
                    rec.recipient,
                    rec.manifest_sha256,
                    rec.payload_sha256,
                    rec.payload_size,
                    rec.issued_at,
                    rec.expires_at,
                    rec.client_ip,
                    rec.watermark,
                ),
            )

    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        row = self.one("SELECT * FROM deliveries WHERE delivery_id=?", (delivery_id,))
        return DeliveryRecord(**dict(row)) if row else None

    def deliveries_for(self, username: str) -> list[DeliveryRecord]:
        rows = self.query(
            "SELECT * FROM deliveries WHERE username=? ORDER BY issued_at", (username,)
        )
        return [DeliveryRecord(**dict(r)) for r in rows]

    # --- sessions / revocation ---------------------------------------------------
    def is_sid_revoked(self, sid: str) -> bool:
        return self.one("SELECT 1 FROM revoked_sids WHERE sid=?", (sid,)) is not None

    def revoke_sid(self, sid: str, reason: str) -> None:
        """Kill a session: its refresh tokens stop working, its access tokens too."""
        with self.tx() as c:
            revoke_sid_in(c, sid, reason)

    # --- audit -------------------------------------------------------------------
    def add_audit(
        self,
        events: list[dict[str, Any]],
        *,
        source: str,
        username: str | None,
        device_id: str | None = None,
        sid: str | None = None,
        client_ip: str | None = None,
    ) -> int:
        now = _now()
        with self.tx() as c:
            for ev in events:
                dev = device_id
                if dev is None and isinstance(ev.get("device_id"), str):
                    dev = ev["device_id"][:128]
                c.execute(
                    "INSERT INTO audit_events(received_at, source, username, device_id, sid, "
                    "client_ip, event) VALUES (?,?,?,?,?,?,?)",
                    (now, source, username, dev, sid, client_ip, json.dumps(ev, sort_keys=True)),
                )
        for listener in list(self.audit_listeners):
            listener()
        return len(events)

    def audit_events(self, username: str | None = None) -> list[dict[str, Any]]:
        if username is None:
            rows = self.query("SELECT * FROM audit_events ORDER BY id")
        else:
            rows = self.query(
                "SELECT * FROM audit_events WHERE username=? ORDER BY id", (username,)
            )
        out = []
        for r in rows:
            d = dict(r)
            d["event"] = json.loads(d["event"])
            out.append(d)
        return out


def revoke_sid_in(c: sqlite3.Connection, sid: str, reason: str) -> None:
    """Revoke inside an open transaction (see :meth:`Ledger.tx`)."""
    c.execute(
        "INSERT OR IGNORE INTO revoked_sids(sid, revoked_at, reason) VALUES (?,?,?)",
        (sid, _now(), reason),
    )
    c.execute("UPDATE refresh_tokens SET status='revoked' WHERE sid=?", (sid,))


def _now() -> int:
    return int(time.time())
