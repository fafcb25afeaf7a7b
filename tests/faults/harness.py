"""Shared set-up for the fault and load tests: a real server behind the proxy.

The server is started with ``public_url`` = the proxy's URL, as a server
behind a load balancer would be: the issuer, the manifest and payload URLs
and the generated client.toml all name the proxy, so *every* client request
(OIDC discovery, token refresh, API, payload) crosses the proxy. Only the
verification page (the "browser" in :meth:`ServerHandle.approve`) talks to
the server directly.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealport.client import SealportClient
from sealport.config import load_config
from sealport.demo import DEMO_MARKER
from sealport.errors import SealportError
from sealport.payload import TEMP_PREFIX
from sealport.server import ServerSettings, seed_demo, start_background
from sealport.server.watermarking import disabled as no_watermark

from tests.fixtures.server import NO_RATE_LIMITS, TEST_USER, ServerHandle
from tests.test_secure_import import sign_in

from .proxy import FaultProxy


def make_stl(path: Path, triangles: int, seed: int = 1) -> bytes:
    """A valid binary STL of ``triangles`` random triangles (50 bytes each)."""
    rng = random.Random(seed)
    out = bytearray(b"sealport fault-test mesh".ljust(80, b" "))
    out += struct.pack("<I", triangles)
    for _ in range(triangles):
        vals = [rng.uniform(-1, 1) for _ in range(12)]
        out += struct.pack("<12fH", *vals, 0)
    path.write_bytes(bytes(out))
    return bytes(out)


def unthrottled(**changes: Any) -> ServerSettings:
    """Server settings for resilience and load runs: no watermark, no rate limits.

    These runs measure transport resilience and throughput; the rate limits and
    the download-spike response (which would revoke a bench account after 100
    deliveries) are tested on their own and would only hide what is measured here.
    """
    base = {"device_interval": 1, "watermark": no_watermark, **NO_RATE_LIMITS}
    base.update(changes)
    return ServerSettings(**base)


def start_server_behind(
    data_dir: Path,
    proxy: FaultProxy,
    *,
    settings: ServerSettings | None = None,
    port: int = 0,
    users: dict[str, str] | None = None,
) -> ServerHandle:
    """Start the real server (TLS 1.3, loopback) with the proxy as its public URL.

    Forensic watermarking is off by default here so that every accepted file
    can be compared byte for byte with the original asset (an independent
    check, not the manifest's own hash).

    ``users`` (username -> password) are re-used on a restart of the same data
    folder instead of seeding new ones.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = users is None
    if fresh:
        demo_user, demo_password = seed_demo(data_dir)
        users = {demo_user: demo_password}
    running = start_background(
        data_dir,
        port=port,
        settings=settings or unthrottled(),
        public_url=proxy.url,
    )
    proxy.upstream = ("127.0.0.1", running.port)
    handle = ServerHandle(running, TEST_USER, "", users=dict(users or {}))
    if fresh:
        handle.password = handle.add_user(TEST_USER, name="Fault Tester", roles=("artist",))
    else:
        handle.password = handle.users[TEST_USER]
    return handle


def client_behind(
    server: ServerHandle,
    home: Path,
    *,
    timeout: float = 2.0,
    sign: bool = True,
    extra_toml: str = "",
) -> SealportClient:
    """A demo-profile client whose config names the proxy, signed in unless ``sign=False``.

    Like ``tests.test_secure_import.make_client``, plus a short ``server.timeout``
    so a stalled connection is given up (and resumed) quickly.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("test profile\n")
    text = Path(server.client_config_path).read_text()
    text = text.replace("[server]\n", f"[server]\ntimeout = {timeout}\n", 1) + extra_toml
    (home / "sealport.toml").write_text(text)
    client = SealportClient(load_config(home / "sealport.toml"), demo=True)
    if sign:
        sign_in(client, server, server.username, server.password)
    return client


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class Tally:
    """What happened to a batch of imports through the proxy."""

    completed: int = 0
    resumed: Counter[int] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    corrupted: int = 0
    untyped: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.completed + sum(self.failed.values()) + len(self.untyped)


def count_resumes(client: Any) -> list[int]:
    """Count the payload answers (200 or 206) this client receives.

    One per attempt: an import that needed N answers resumed (with Range, or
    from byte 0 when less than one 1 MiB block had been written) N - 1 times.
    """
    box = [0]

    def hook(resp: Any, *args: Any, **kwargs: Any) -> Any:
        if resp.status_code in (200, 206) and resp.url.endswith("/payload"):
            box[0] += 1
        return resp

    client.session.hooks["response"].append(hook)
    return box


def import_once(
    client: Any,
    asset_id: str,
    out: Path,
    original_sha256: str,
    tally: Tally,
    resumes: list[int] | None = None,
) -> None:
    """One secure import; classify the outcome and check the file that was accepted."""
    before = resumes[0] if resumes else 0
    try:
        result = client.secure_import(asset_id, out)
    except SealportError as exc:
        tally.failed[exc.code] += 1
        tally.messages[f"{exc.code}: {exc.message}"] += 1
        return
    except Exception as exc:  # noqa: BLE001 - counted as a defect, reported by the caller
        tally.untyped.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
        return
    if sha256(result.path) != original_sha256:
        tally.corrupted += 1
    tally.completed += 1
    tally.resumed[max(0, resumes[0] - before - 1) if resumes else 0] += 1
    result.path.unlink()


def leftovers(out: Path, *others: Path) -> list[str]:
    """Plaintext temp files anywhere in ``out``, and any file at all in ``others``."""
    found = [str(p) for p in out.rglob(f"{TEMP_PREFIX}*")] if out.exists() else []
    found += [str(p) for p in out.rglob("*") if p.is_file()] if out.exists() else []
    for d in others:
        if d.exists():
            found += [str(p) for p in d.rglob("*") if p.is_file()]
    return sorted(set(found))
