"""Local faults (issue 6): disk full, unwritable folders, server restart, clock skew.

Real mechanisms, no mocks:

- disk full: a small tmpfs mounted on the cache folder or the output folder
  (real ENOSPC from the kernel); a read-only bind mount (EROFS); a folder path
  that runs through a regular file (ENOTDIR). These need ``mount``, i.e. root
  or CAP_SYS_ADMIN; chmod would not bite as root. Without the privilege the
  tests fail with a message saying so (they never skip).
- server restart: the payload connection is held by the fault proxy after
  1.6 MB, the server is stopped and a new one started on the same port and data
  folder, then the old connection is cut (its queued bytes die with it); the
  client's Range resume must complete against the new process.
- clock skew: the client's manifest checks run with a shifted ``now`` on both
  sides of ``trust.clock_skew_seconds``; the server's token check is probed on
  both sides of ``jwt_leeway`` with tokens signed by the IdP's real key.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sealport.errors import LocalIOError, ManifestExpired, SealportError
from sealport.manifest import verify_envelope
from sealport.payload import TEMP_PREFIX
from sealport.server import ServerSettings
from sealport.trust import TrustPolicy

from tests.faults.harness import client_behind, make_stl, sha256, start_server_behind
from tests.faults.proxy import Fault, FaultProxy, wait_until

TRIANGLES = 40_000  # 2 MB asset: larger than the small filesystems below


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"mount {' '.join(args)} failed: {proc.stderr.strip()}. The local fault tests need "
            "root (CAP_SYS_ADMIN) to mount a small tmpfs / read-only bind mount."
        )


@contextmanager
def small_fs(path: Path, size: str = "256k") -> Iterator[Path]:
    """A tiny tmpfs on ``path``: writes past ``size`` fail with ENOSPC."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted onto itself read-only: writes fail with EROFS."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("localfaults")
    proxy = FaultProxy().start()
    server = start_server_behind(base / "server", proxy)
    asset = base / "big.stl"
    make_stl(asset, TRIANGLES)
    rec = server.add_asset(asset, name="local-faults-big", project="faults", fmt="stl")
    try:
        yield {"proxy": proxy, "server": server, "asset_id": rec.asset_id, "base": base}
    finally:
        server.stop()
        proxy.stop()


def _client(rig: dict[str, Any], home: Path, extra_toml: str = "") -> Any:
    return client_behind(rig["server"], home, timeout=10, extra_toml=extra_toml)


@pytest.fixture(scope="module")
def shared(rig: dict[str, Any]) -> Any:
    """One signed-in client for the disk tests (each test mounts over its folders)."""
    return _client(rig, rig["base"] / "ws-shared")


def assert_failed_clean(client: Any, out: Path, code: str) -> None:
    left = [p for p in out.rglob("*")] if out.exists() else []
    assert left == [], f"left behind in the output folder: {left}"
    cache = client.config.cache_dir / "deliveries"
    assert not cache.exists() or list(cache.iterdir()) == []
    last = client.audit.records()[-1]
    assert last["event"] == "import.failed" and last["data"]["code"] == code
    assert client.audit.verify().ok


# --- disk full / unwritable ----------------------------------------------------------------
def test_cache_disk_full(rig: dict[str, Any], shared: Any, tmp_path: Path) -> None:
    client = shared
    out = tmp_path / "out"
    with small_fs(client.config.cache_dir), pytest.raises(LocalIOError) as err:
        client.secure_import(rig["asset_id"], out)
    assert "disk is full" in err.value.message.lower()
    assert_failed_clean(client, out, "local_io")


def test_output_disk_full(rig: dict[str, Any], shared: Any, tmp_path: Path) -> None:
    client = shared
    out = tmp_path / "out"
    with small_fs(out), pytest.raises(LocalIOError) as err:
        client.secure_import(rig["asset_id"], out)
    assert "disk is full" in err.value.message.lower()
    assert str(out) in err.value.message
    assert_failed_clean(client, out, "local_io")


def test_cache_read_only(rig: dict[str, Any], shared: Any, tmp_path: Path) -> None:
    client = shared
    (client.config.cache_dir / "deliveries").mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    with read_only(client.config.cache_dir), pytest.raises(LocalIOError) as err:
        client.secure_import(rig["asset_id"], out)
    assert "download folder" in err.value.message
    assert_failed_clean(client, out, "local_io")


def test_output_read_only(rig: dict[str, Any], shared: Any, tmp_path: Path) -> None:
    client = shared
    out = tmp_path / "out"
    with read_only(out), pytest.raises(LocalIOError) as err:
        client.secure_import(rig["asset_id"], out)
    assert str(out) in err.value.message
    assert_failed_clean(client, out, "local_io")


def test_cache_folder_under_a_regular_file(rig: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    client = _client(rig, tmp_path / "ws", f'\n[paths]\ncache_dir = "{blocker}/cache"\n')
    out = tmp_path / "out"
    with pytest.raises(LocalIOError) as err:
        client.secure_import(rig["asset_id"], out)
    assert "download folder" in err.value.message and err.value.detail
    assert_failed_clean(client, out, "local_io")


def test_output_folder_under_a_regular_file(
    rig: dict[str, Any], shared: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    client = shared
    with pytest.raises(LocalIOError) as err:
        client.secure_import(rig["asset_id"], blocker / "out")
    assert str(blocker / "out") in err.value.message
    last = client.audit.records()[-1]
    assert last["event"] == "import.failed" and last["data"]["code"] == "local_io"


# --- server restart mid-download -----------------------------------------------------------
def test_server_restart_mid_download(tmp_path: Path) -> None:
    proxy = FaultProxy().start()
    server = start_server_behind(tmp_path / "server", proxy)
    asset = tmp_path / "big.stl"
    make_stl(asset, TRIANGLES, seed=7)
    rec = server.add_asset(asset, name="restart-big", project="faults", fmt="stl")
    client = client_behind(server, tmp_path / "ws", timeout=20)
    seen: list[tuple[int, str, str]] = []
    client.session.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.status_code, r.url, r.request.headers.get("Range", "")))
    )
    # Hold every connection's server->client stream after 1.6 MB: only the payload gets there
    # (past the first 1 MiB block the client writes, so there is a partial file to resume).
    proxy.drop_all()
    proxy.plan = lambda _i: Fault("stall", at=1_600_000, stall_seconds=60)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = client.secure_import(rec.asset_id, tmp_path / "out")
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    second = None
    try:
        assert wait_until(lambda: proxy.fired["stall"] >= 1 or not worker.is_alive(), 30)
        assert proxy.fired["stall"] == 1, f"the payload never reached 1.6 MB: {box}"
        port = server.running.port
        server.stop()  # the old process's connection dies mid-payload
        proxy.plan = lambda _i: Fault("pass")
        second = start_server_behind(tmp_path / "server", proxy, port=port, users=server.users)
        # The old process is gone and with it its connection: the bytes it had already
        # queued in socket buffers are lost, as when a server crashes or is redeployed.
        proxy.drop_all()
        proxy.release_stalls()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        proxy.release_stalls()
        if second is not None:
            second.stop()
        proxy.stop()
    if "error" in box:
        # Acceptable only as a typed failure, with nothing left behind.
        assert isinstance(box["error"], SealportError), repr(box["error"])
        assert list((tmp_path / "out").glob("*")) == []
        err = box["error"]
        pytest.fail(f"resume after restart failed (typed): {err.code}: {err.detail}")
    result = box["result"]
    assert sha256(result.path) == sha256(asset)
    resumed = [s for s in seen if s[0] == 206]
    assert resumed and resumed[0][2].startswith("bytes="), f"no Range resume: {seen}"
    assert list((tmp_path / "out").glob(f"{TEMP_PREFIX}*")) == []
    assert client.audit.verify().ok


# --- clock skew ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def envelope(rig: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real signed manifest envelope for a real delivery, and who it is for."""
    client = _client(rig, tmp_path_factory.mktemp("skew") / "ws")
    key = client.device_key()
    delivery = client.api.post(
        f"/api/v1/assets/{rig['asset_id']}/deliveries", {"device_id": key.device_id}
    )
    env = client.api.get(delivery["manifest_url"])
    policy = TrustPolicy(client.config.root_fingerprints, (), client.config.clock_skew_seconds)
    vm = verify_envelope(
        env, policy=policy, now=_now(), user=client.user(), recipient=key.recipient
    )
    return {
        "env": env,
        "policy": policy,
        "user": client.user(),
        "recipient": key.recipient,
        "issued_at": vm.manifest.issued_at,
        "expires_at": vm.manifest.expires_at,
    }


def _now() -> int:
    import time

    return int(time.time())


def _verify(e: dict[str, Any], now: int) -> None:
    verify_envelope(e["env"], policy=e["policy"], now=now, user=e["user"], recipient=e["recipient"])


def test_default_clock_skew_tolerance_is_120s(envelope: dict[str, Any]) -> None:
    assert envelope["policy"].clock_skew == 120


@pytest.mark.parametrize("inside", [True, False])
def test_client_clock_ahead_manifest_expiry(envelope: dict[str, Any], inside: bool) -> None:
    """Client clock ahead of the server: the manifest looks expired beyond the tolerance."""
    skew = envelope["policy"].clock_skew
    now = envelope["expires_at"] + (skew - 1 if inside else skew + 1)
    if inside:
        _verify(envelope, now)
    else:
        with pytest.raises(ManifestExpired, match="expired"):
            _verify(envelope, now)


@pytest.mark.parametrize("inside", [True, False])
def test_client_clock_behind_manifest_issued_in_future(
    envelope: dict[str, Any], inside: bool
) -> None:
    """Client clock behind the server: the manifest looks issued in the future."""
    skew = envelope["policy"].clock_skew
    now = envelope["issued_at"] - (skew - 1 if inside else skew + 1)
    if inside:
        _verify(envelope, now)
    else:
        with pytest.raises(ManifestExpired, match="future"):
            _verify(envelope, now)


@pytest.mark.parametrize(("offset", "accepted"), [(-10, True), (-90, False), (+60, True)])
def test_server_token_expiry_leeway(sealport_server: Any, offset: int, accepted: bool) -> None:
    """The server accepts an access token up to ``jwt_leeway`` (30 s) past its ``exp``.

    A token whose ``exp`` lies 10 s in the server's past (IdP clock behind, or
    a slow request) is still honoured; 90 s past is refused as expired.
    """
    assert ServerSettings().jwt_leeway == 30
    now = _now()
    token = sealport_server.mint_token(exp=now + offset, iat=now + offset - 300)
    r = sealport_server.api(token).get(f"{sealport_server.url}/api/v1/me", timeout=30)
    if accepted:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 401
        assert "expired" in r.json()["message"].lower()
