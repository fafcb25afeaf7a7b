"""Pre-marked copies (server/premark.py): the next delivery is marked before it is asked for.

End to end over real TLS with the studio watermark hook: the second delivery of
an asset is the copy the pool marked after the first, under the id it was
marked with; it verifies on the client and traces to that delivery. The pool's
own rules (only verified marks pooled, bounds, bugs, private folder, restart)
are tested on the pool with real marking functions and files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trimesh
from sealport import age
from sealport.client import SealportClient
from sealport.server import ServerSettings, preseal
from sealport.server.premark import Premarked, PremarkPool
from sealport.server.sealing import payload_path, warm_premarks
from sealport.server.store import asset_path
from sealport.server.watermarking import (
    delivery_payload,
    disabled,
    load_secret,
    make_hook,
    premark_dir,
)
from sealport.trace import trace_file

from tests.fixtures.server import ServerHandle, start_sealport_server
from tests.test_secure_import import make_client, sign_in

MESHES = Path(__file__).resolve().parents[2] / "shared" / "meshes"


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_hook(tmp_path_factory.mktemp("pm") / "data")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hook: Any) -> Iterator[ServerHandle]:
    data = Path(hook.premarks.root).parents[1]
    handle = start_sealport_server(data, settings=ServerSettings(device_interval=1, watermark=hook))
    src = tmp_path_factory.mktemp("pm-src") / "bunny.glb"
    trimesh.load(MESHES / "bunny.ply", process=False).export(src)
    try:
        handle.add_asset(src, name="pm-bunny", project="pm", fmt="glb")
        yield handle
    finally:
        handle.stop()
        hook.premarks.close()


@pytest.fixture(scope="module")
def client(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> SealportClient:
    c = make_client(server, tmp_path_factory.mktemp("pm-ws"))
    sign_in(c, server, server.username, server.password)
    return c


def test_next_delivery_is_the_premarked_copy(
    server: ServerHandle, client: SealportClient, hook: Any, tmp_path: Path
) -> None:
    pool: PremarkPool = hook.premarks
    aid = server.ledger.asset_id_for("pm", "pm-bunny")
    assert aid is not None
    first = client.secure_import(aid, tmp_path / "a")  # nothing pooled yet: marked on request
    assert first.watermark_status == "verified"
    assert pool.wait_idle(120)
    assert len(pool) == 1
    (ready,) = [c for copies in pool._copies.values() for c in copies]
    assert ready.path.is_file() and ready.path.is_relative_to(premark_dir(server.data_dir))
    assert server.ledger.get_delivery(ready.delivery_id) is None  # not issued yet
    # Encrypted ahead: the pool holds no plaintext (the GLB's JSON is nowhere in it).
    asset = server.ledger.get_asset(aid, 1)
    assert asset is not None
    stored = asset_path(server.data_dir, asset).read_bytes()
    assert [p.name for p in premark_dir(server.data_dir).rglob("*") if p.is_file()] == [
        "payload.age"
    ]
    assert stored[20:120] not in ready.path.read_bytes()

    second = client.secure_import(aid, tmp_path / "b")
    assert second.manifest.delivery_id == ready.delivery_id
    assert second.watermark_status == "verified"
    # The delivered payload decrypts with the device identity to the marked file whose
    # hash and size the manifest records, and is the payload the manifest hashes.
    payload = payload_path(server.data_dir, ready.delivery_id).read_bytes()
    assert hashlib.sha256(payload).hexdigest() == second.manifest.payload.sha256
    plain = io.BytesIO()
    age.decrypt_stream(io.BytesIO(payload), plain, [client.device_key().identity])
    (entry,) = second.manifest.files
    assert hashlib.sha256(plain.getvalue()).hexdigest() == entry.sha256 == ready.body.plain_sha256
    assert len(plain.getvalue()) == entry.size and plain.getvalue() != stored
    assert second.path.read_bytes() == plain.getvalue()
    assert not ready.path.parent.exists()  # taken copies are deleted after sealing
    rec = server.ledger.get_delivery(ready.delivery_id)
    assert rec is not None and rec.username == server.username
    secret = load_secret(server.data_dir)
    assert secret is not None
    assert second.manifest.watermark is not None
    assert second.manifest.watermark["payload"] == delivery_payload(secret, rec.delivery_id).hex()
    # The leaked second copy names the second delivery, not the first.
    report = trace_file(second.path, server.data_dir)
    assert report.status == "found" and report.match is not None
    assert report.match.delivery_id == rec.delivery_id
    assert pool.wait_idle(120) and len(pool) == 1  # refilled for the next one


def test_a_restarted_server_premarks_recently_delivered_assets(
    server: ServerHandle, client: SealportClient, tmp_path: Path
) -> None:
    """The pool is memory plus a folder wiped at start: start-up re-queues what was delivered."""
    aid = server.ledger.asset_id_for("pm", "pm-bunny")
    assert aid is not None
    client.secure_import(aid, tmp_path / "c")  # the ledger has deliveries of this version
    fresh = make_hook(tmp_path / "other-data")  # a restarted server's hook (own pool folder)
    assert warm_premarks(server.data_dir, server.ledger, fresh) == 1
    assert fresh.premarks.wait_idle(120) and len(fresh.premarks) == 1
    assert warm_premarks(server.data_dir, server.ledger, None) == 0
    fresh.premarks.close()


def test_a_pooled_copy_whose_file_is_gone_is_marked_on_request(
    server: ServerHandle, client: SealportClient, hook: Any, tmp_path: Path
) -> None:
    """The pool folder was emptied behind the pool (another server process started on
    this data folder, an operator): the delivery is marked on request under a fresh id
    instead of failing with a 500 (review 2026-11-25)."""
    pool: PremarkPool = hook.premarks
    aid = server.ledger.asset_id_for("pm", "pm-bunny")
    assert aid is not None
    client.secure_import(aid, tmp_path / "a")
    assert pool.wait_idle(120) and len(pool) == 1
    (gone,) = [c for copies in pool._copies.values() for c in copies]
    gone.discard()
    result = client.secure_import(aid, tmp_path / "b")
    assert result.watermark_status == "verified"
    assert result.manifest.delivery_id != gone.delivery_id
    assert server.ledger.get_delivery(gone.delivery_id) is None
    assert pool.wait_idle(120)


@pytest.mark.parametrize("damage", ["truncated", "replaced", "header-written"])
def test_a_damaged_pooled_copy_is_marked_on_request(
    server: ServerHandle, client: SealportClient, hook: Any, tmp_path: Path, damage: str
) -> None:
    """A pooled ciphertext changed on disk since the pool wrote it is not finished: the
    delivery is marked and encrypted on request under a fresh id, and verifies."""
    pool: PremarkPool = hook.premarks
    aid = server.ledger.asset_id_for("pm", "pm-bunny")
    assert aid is not None
    assert pool.wait_idle(120)
    if len(pool) == 0:
        client.secure_import(aid, tmp_path / "warm")
        assert pool.wait_idle(120)
    (copy,) = [c for copies in pool._copies.values() for c in copies]
    if damage == "truncated":
        os.truncate(copy.path, copy.size - 1000)
    elif damage == "replaced":  # same length, another file (random bytes)
        other = copy.path.with_name("other")
        other.write_bytes(os.urandom(copy.size))
        os.replace(other, copy.path)
    else:  # something wrote into the header's place (or a finish was attempted before)
        with open(copy.path, "r+b") as fh:
            fh.write(b"age-encryption.org/v1\n")
    result = client.secure_import(aid, tmp_path / "b")
    assert result.watermark_status == "verified"
    assert result.manifest.delivery_id != copy.delivery_id
    assert server.ledger.get_delivery(copy.delivery_id) is None
    assert not copy.path.parent.exists()
    assert pool.wait_idle(120)


def test_pooled_deliveries_use_fresh_file_and_ephemeral_keys(
    server: ServerHandle, client: SealportClient, hook: Any, tmp_path: Path
) -> None:
    pool: PremarkPool = hook.premarks
    aid = server.ledger.asset_id_for("pm", "pm-bunny")
    assert aid is not None
    keys, headers = [], []
    for i in range(2):
        assert pool.wait_idle(120)
        if len(pool) == 0:
            client.secure_import(aid, tmp_path / f"warm{i}")
            assert pool.wait_idle(120)
        (copy,) = [c for copies in pool._copies.values() for c in copies]
        keys.append(bytes(copy.body.file_key))
        result = client.secure_import(aid, tmp_path / str(i))
        assert result.manifest.delivery_id == copy.delivery_id
        payload = payload_path(server.data_dir, copy.delivery_id).read_bytes()
        headers.append(payload[: preseal.HEADER_SIZE])
    assert keys[0] != keys[1]
    share = [h.split(b"\n")[1] for h in headers]
    assert share[0].startswith(b"-> X25519 ") and share[0] != share[1]
    assert pool.wait_idle(120)


# --- the pool's own rules, with real files --------------------------------------------------
SRC_BYTES = b"x" * 1000
INFO = {
    "asset_id": "a_1",
    "version": 1,
    "sha256": hashlib.sha256(SRC_BYTES).hexdigest(),
    "format": "glb",
}


def writes_copy(src: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    out = work / "marked.glb"
    out.write_bytes(src.read_bytes() + info["delivery_id"].encode())
    return out, {"status": "marked", "delivery": info["delivery_id"]}


def opened(copy: Premarked) -> bytes:
    """A pooled copy finished for a fresh device key and decrypted with it."""
    identity = age.generate_identity()
    preseal.finish(copy.body, age.identity_to_recipient(identity))
    out = io.BytesIO()
    with copy.path.open("rb") as fh:
        age.decrypt_stream(fh, out, [identity])
    return out.getvalue()


def ids() -> Any:
    n = iter(range(10**6))
    return lambda: f"d_{next(n):04d}"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "asset.glb"
    p.write_bytes(SRC_BYTES)
    return p


def test_pool_refills_takes_once_and_lives_in_a_private_folder(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "deliveries" / ".premarked"
    pool = PremarkPool(root, writes_copy, ids())
    assert pool.take(INFO) is None
    pool.refill(src, INFO)
    pool.refill(src, INFO)  # already queued / full: still one copy
    assert pool.wait_idle(30) and len(pool) == 1
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    got = pool.take(INFO)
    assert got is not None and opened(got).endswith(got.delivery_id.encode())
    assert pool.take(INFO) is None  # one copy, one delivery
    assert pool.take({**INFO, "version": 2}) is None  # another version is another key
    got.discard()
    assert not got.path.exists()
    pool.close()
    assert not root.exists()


def test_unmarkable_assets_are_not_pooled_and_not_retried(tmp_path: Path, src: Path) -> None:
    calls: list[str] = []

    def too_small(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        calls.append(info["delivery_id"])
        return s, {"status": "unmarked", "reason": "mesh too small"}

    pool = PremarkPool(tmp_path / "pm", too_small, ids())
    pool.refill(src, INFO)
    assert pool.wait_idle(30)
    pool.refill(src, INFO)
    assert pool.wait_idle(30)
    assert len(pool) == 0 and len(calls) == 1
    assert list((tmp_path / "pm").iterdir()) == []  # its work folder is gone
    pool.close()


def test_a_bug_in_marking_leaves_no_copy_and_the_worker_alive(
    tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"fail": True}

    def flaky(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        if state["fail"]:
            (work / "half.glb").write_bytes(b"partial")
            raise RuntimeError("boom")
        return writes_copy(s, work, info)

    pool = PremarkPool(tmp_path / "pm", flaky, ids())
    with caplog.at_level(logging.ERROR, logger="sealport.server.premark"):
        pool.refill(src, INFO)
        assert pool.wait_idle(30)
    assert len(pool) == 0 and "pre-marking asset a_1 v1 failed" in caplog.text
    assert list((tmp_path / "pm").iterdir()) == []  # the half-written copy is gone
    state["fail"] = False
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    pool.close()


def test_bounds_evict_least_recently_delivered_and_delete_files(tmp_path: Path, src: Path) -> None:
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids(), max_assets=2, max_bytes=10**6)
    for v in (1, 2, 3):
        pool.refill(src, {**INFO, "version": v})
        assert pool.wait_idle(30)
    assert len(pool) == 2 and pool.take(INFO) is None  # version 1 went first
    assert len(list((tmp_path / "pm").iterdir())) == 2
    small = PremarkPool(tmp_path / "pm2", writes_copy, ids(), max_bytes=1500)
    small.refill(src, INFO)
    small.refill(src, {**INFO, "version": 2})
    assert small.wait_idle(30)
    assert len(small) == 1 and small.nbytes <= 1500
    assert len(list((tmp_path / "pm2").iterdir())) == 1
    pool.close()
    small.close()


def test_copies_left_by_a_previous_run_are_deleted_at_start(tmp_path: Path) -> None:
    stale = tmp_path / "pm" / "d_old"
    stale.mkdir(parents=True)
    (stale / "marked.glb").write_bytes(b"never issued")
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids())
    assert not stale.exists()
    pool.close()


def test_premarking_can_be_turned_off(tmp_path: Path) -> None:
    assert make_hook(tmp_path / "d", premarked=0).premarks is None
    assert ServerSettings().watermark_premarked == 1


def test_close_drops_queued_refills(tmp_path: Path, src: Path) -> None:
    import threading

    release = threading.Event()
    marked: list[str] = []

    def slow(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        release.wait(10)
        marked.append(info["delivery_id"])
        return writes_copy(s, work, info)

    pool = PremarkPool(tmp_path / "pm", slow, ids())
    for v in range(5):
        pool.refill(src, {**INFO, "version": v})
    closer = threading.Thread(target=pool.close)
    closer.start()
    release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert len(marked) <= 1 and not (tmp_path / "pm").exists()
    pool.refill(src, INFO)  # a closed pool takes no more work
    assert len(pool) == 0


def test_pooled_copies_are_private_files_whatever_the_marker_wrote(
    tmp_path: Path, src: Path
) -> None:
    """SERVER_SECURITY.md: pooled copies are 0600 in 0700 folders; the marker writes
    with the process umask (0644 here), so the pool makes them private (review 2026-11-25)."""
    old = os.umask(0o022)
    try:
        pool = PremarkPool(tmp_path / "pm", writes_copy, ids())
        pool.refill(src, INFO)
        assert pool.wait_idle(30) and len(pool) == 1
    finally:
        os.umask(old)
    (copy,) = [c for copies in pool._copies.values() for c in copies]
    assert stat.S_IMODE(os.stat(copy.path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(copy.path).st_mode) == 0o600
    pool.close()


def test_refill_stats_stay_bounded(
    tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-running server refills after every delivery: its timing record must not
    grow with the number of deliveries (review 2026-11-25)."""
    from sealport.server import premark

    monkeypatch.setattr(premark, "STATS_KEPT", 3, raising=False)
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids())
    for _ in range(6):
        pool.refill(src, INFO)
        assert pool.wait_idle(30)
        got = pool.take(INFO)
        assert got is not None
        got.discard()
    assert len(pool.stats.wall) == len(pool.stats.cpu) == len(pool.stats.spans) == 3
    pool.close()


def test_a_copy_larger_than_the_byte_bound_is_marked_once(tmp_path: Path, src: Path) -> None:
    """A copy that alone exceeds ``max_bytes`` is evicted as soon as it is kept; the
    refill must not mark it again and again (it looped forever: ~4000 marks of a 1 kB
    file in 2 s, a multi-GB asset rewritten until the server stopped; review 2026-11-25)."""
    calls: list[str] = []

    def counting(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        calls.append(info["delivery_id"])
        return writes_copy(s, work, info)

    pool = PremarkPool(tmp_path / "pm", counting, ids(), max_bytes=500)
    try:
        pool.refill(src, INFO)
        assert pool.wait_idle(10)
        pool.refill(src, INFO)  # the next delivery: known not to fit, not marked again
        assert pool.wait_idle(10)
        assert len(calls) == 1 and len(pool) == 0
        assert list((tmp_path / "pm").iterdir()) == []
    finally:
        pool.close()


def test_only_the_copy_is_kept_and_counted(tmp_path: Path, src: Path) -> None:
    """A marker that re-embedded (quick mark failed its check) leaves the first file next
    to the one it returns; the pool keeps only the returned one, so ``max_bytes`` bounds
    what is on disk (review 2026-11-25)."""

    def reembedded(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        (work / "marked.glb").write_bytes(s.read_bytes())
        out = work / "marked-certified.glb"
        out.write_bytes(s.read_bytes() + info["delivery_id"].encode())
        return out, {"status": "marked"}

    pool = PremarkPool(tmp_path / "pm", reembedded, ids())
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    files = [p for p in (tmp_path / "pm").rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["payload.age"]  # the returned copy, encrypted
    (copy,) = [c for copies in pool._copies.values() for c in copies]
    assert opened(copy).endswith(b"d_0000")  # marked-certified, not the first file
    assert pool.nbytes == sum(p.stat().st_size for p in files)
    pool.close()


def test_a_file_that_is_not_the_recorded_one_is_not_pooled(
    tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Copies are keyed by the ledger's SHA-256; a store file replaced behind the ledger
    must not be pooled under that key (and served later, perhaps after the file was put
    back), and the recorded file pools again once restored (review 2026-11-25)."""
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids())
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    taken = pool.take(INFO)
    assert taken is not None
    taken.discard()
    src.unlink()
    src.write_bytes(b"y" * 1000)  # replaced behind the store
    with caplog.at_level(logging.WARNING, logger="sealport.server.premark"):
        pool.refill(src, INFO)
        assert pool.wait_idle(30)
    assert len(pool) == 0 and "not the recorded one" in caplog.text
    assert list((tmp_path / "pm").iterdir()) == []
    src.unlink()
    src.write_bytes(SRC_BYTES)  # put back
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    pool.close()


def test_a_marker_naming_a_missing_file_leaves_nothing(
    tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug after marking (here: the marker names a file it did not write) is logged
    and leaves no folder behind, like a bug inside marking (review 2026-11-25)."""

    def wrong_name(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        (work / "marked.glb").write_bytes(s.read_bytes())
        return work / "marked-other.glb", {"status": "marked"}

    pool = PremarkPool(tmp_path / "pm", wrong_name, ids())
    with caplog.at_level(logging.ERROR, logger="sealport.server.premark"):
        pool.refill(src, INFO)
        assert pool.wait_idle(30)
    assert len(pool) == 0 and "pre-marking asset a_1 v1 failed" in caplog.text
    assert list((tmp_path / "pm").iterdir()) == []
    pool.close()


def test_cache_builds_run_at_normal_priority_marking_at_idle(
    tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live request may wait on the parsed-asset build (the cache's gate), so that part
    must not be starved; the marking and the encryption of the copy only get CPU time
    nothing else wants. Encryption comes after the marker (and its read-back check)
    returned the marked plaintext."""
    import threading

    from sealport.server import premark

    real_seal = premark.seal_body

    def seal(plain: Path, out: Path) -> preseal.SealedBody:
        seen["seal"] = priority()
        assert plain.read_bytes().endswith(b"d_0000")  # the checked, marked plaintext
        return real_seal(plain, out)

    monkeypatch.setattr(premark, "seal_body", seal)

    def priority() -> tuple[int, int]:
        tid = threading.get_native_id()
        return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)

    seen: dict[str, tuple[int, int]] = {}

    def prepare(s: Path, info: dict[str, Any]) -> None:
        seen["prepare"] = priority()

    def mark(s: Path, work: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        seen["mark"] = priority()
        return writes_copy(s, work, info)

    normal = priority()
    pool = PremarkPool(tmp_path / "pm", mark, ids(), prepare=prepare)
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    assert seen["prepare"] == normal
    for step in ("mark", "seal"):
        policy, nice = seen[step]
        assert policy == os.SCHED_IDLE or nice == 19, seen
    assert priority() == normal
    pool.close()


def test_no_refill_when_the_disk_is_short(
    tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refill leaves ``min_free_bytes`` for live sealing: here more than the disk has."""
    import shutil as sh

    free = sh.disk_usage(tmp_path).free
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids(), min_free_bytes=free + 2**30)
    with caplog.at_level(logging.WARNING, logger="sealport.server.premark"):
        pool.refill(src, INFO)
        assert pool.wait_idle(30)
    assert len(pool) == 0 and "not pre-marking" in caplog.text
    assert list((tmp_path / "pm").iterdir()) == []
    pool.min_free_bytes = 0  # space again: the next delivery's refill pools a copy
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    pool.close()


# --- pooled copies are encrypted ahead (server/preseal.py) ----------------------------------
def pool_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_pool_holds_only_ciphertext_and_never_the_file_key(tmp_path: Path, src: Path) -> None:
    """After a refill the marked plaintext is gone: each copy's folder holds one age body
    behind a blank header; the file key is in memory only (not on disk, not in a repr)."""
    root = tmp_path / "pm"
    pool = PremarkPool(root, writes_copy, ids())
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    (copy,) = [c for copies in pool._copies.values() for c in copies]
    files = pool_files(root)
    assert list(files) == [root / copy.delivery_id / "payload.age"]
    (data,) = files.values()
    assert data[: preseal.HEADER_SIZE] == bytes(preseal.HEADER_SIZE)
    assert SRC_BYTES[:32] not in data and b"d_0000" not in data  # no plaintext
    key = bytes(copy.body.file_key)
    assert len(key) == age.FILE_KEY_SIZE and any(key)
    import base64

    for form in (key, key.hex().encode(), base64.b64encode(key).rstrip(b"=")):
        assert form not in data
    assert key.hex() not in repr(copy) and "file_key" not in repr(copy)
    marked = SRC_BYTES + b"d_0000"
    assert copy.body.plain_size == len(marked)
    assert copy.body.plain_sha256 == hashlib.sha256(marked).hexdigest()
    assert pool.nbytes == len(data)
    assert opened(copy) == marked
    copy.discard()
    assert not any(copy.body.file_key) and not copy.path.parent.exists()
    pool.close()


def test_each_pooled_copy_has_its_own_file_key_and_ephemeral_key(tmp_path: Path, src: Path) -> None:
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids(), per_asset=2)
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 2
    a, b = pool.take(INFO), pool.take(INFO)
    assert a is not None and b is not None
    assert bytes(a.body.file_key) != bytes(b.body.file_key)
    recipient = age.identity_to_recipient(age.generate_identity())
    preseal.finish(a.body, recipient)
    preseal.finish(b.body, recipient)  # the same device: still different shares
    ha, hb = (c.path.read_bytes()[: preseal.HEADER_SIZE].split(b"\n") for c in (a, b))
    assert ha[1].startswith(b"-> X25519 ") and ha[1] != hb[1]
    a.discard()
    b.discard()
    pool.close()


def test_stopping_the_pool_forgets_the_file_keys(tmp_path: Path, src: Path) -> None:
    pool = PremarkPool(tmp_path / "pm", writes_copy, ids())
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    (copy,) = [c for copies in pool._copies.values() for c in copies]
    pool.close()
    assert not any(copy.body.file_key) and not (tmp_path / "pm").exists()


# --- watermarking off: copies of the stored file encrypted ahead --------------------------
def test_a_pool_without_marking_encrypts_the_stored_file_ahead(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ps"
    pool = PremarkPool(root, None, ids())
    assert not pool.marking
    pool.refill(src, INFO)
    assert pool.wait_idle(30) and len(pool) == 1
    (copy,) = [c for copies in pool._copies.values() for c in copies]
    assert copy.watermark is None
    assert list(pool_files(root)) == [root / copy.delivery_id / "payload.age"]
    assert SRC_BYTES[:32] not in copy.path.read_bytes()
    assert (copy.body.plain_size, copy.body.plain_sha256) == (len(SRC_BYTES), INFO["sha256"])
    assert opened(copy) == SRC_BYTES
    assert src.read_bytes() == SRC_BYTES  # the stored file is read, never moved or deleted
    pool.close()


def test_a_pool_without_marking_pools_only_the_recorded_file(
    tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = PremarkPool(tmp_path / "ps", None, ids())
    src.write_bytes(b"y" * 1000)  # not the file whose SHA-256 the ledger records
    with caplog.at_level(logging.WARNING, logger="sealport.server.premark"):
        pool.refill(src, INFO)
        assert pool.wait_idle(30)
    assert len(pool) == 0 and "not the recorded one" in caplog.text
    assert list((tmp_path / "ps").iterdir()) == []
    pool.close()


def test_with_watermarking_off_the_next_delivery_is_encrypted_ahead(tmp_path: Path) -> None:
    """End to end over TLS: the second delivery is the copy the pool encrypted after the
    first; no watermark in the manifest, the file is the stored one byte for byte."""
    handle = start_sealport_server(
        tmp_path / "data", settings=ServerSettings(device_interval=1, watermark=disabled)
    )
    try:
        pool: PremarkPool = handle.running.app.state.premarks
        assert pool is not None and not pool.marking
        src = tmp_path / "bunny.glb"
        trimesh.load(MESHES / "bunny.ply", process=False).export(src)
        handle.add_asset(src, name="ps-bunny", project="ps", fmt="glb")
        aid = handle.ledger.asset_id_for("ps", "ps-bunny")
        assert aid is not None
        client = make_client(handle, tmp_path / "ws")
        sign_in(client, handle, handle.username, handle.password)
        first = client.secure_import(aid, tmp_path / "a")
        assert pool.wait_idle(120) and len(pool) == 1
        (ready,) = [c for copies in pool._copies.values() for c in copies]
        second = client.secure_import(aid, tmp_path / "b")
        assert second.manifest.delivery_id == ready.delivery_id != first.manifest.delivery_id
        assert second.manifest.watermark is None and second.watermark_status == "none"
        assert second.path.read_bytes() == src.read_bytes()
        payload = payload_path(handle.data_dir, ready.delivery_id).read_bytes()
        assert hashlib.sha256(payload).hexdigest() == second.manifest.payload.sha256
        assert not ready.path.parent.exists()
        assert pool.wait_idle(120) and len(pool) == 1
    finally:
        handle.stop()
    assert not (handle.data_dir / "deliveries" / ".presealed").exists()


def test_a_pool_must_match_the_watermark_setting(tmp_path: Path, hook: Any) -> None:
    """An unmarked copy must never go out where deliveries are marked (or the reverse)."""
    from sealport.server.sealing import presealed_pool, seal_delivery

    unmarked = presealed_pool(tmp_path, 1)
    assert unmarked is not None and presealed_pool(tmp_path, 0) is None
    kw: Any = {"asset": None, "device": None, "user": "u", "client_ip": "127.0.0.1"}
    with pytest.raises(ValueError, match="without marking"):
        seal_delivery(tmp_path, None, None, watermark=hook, premarks=unmarked, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="with marking"):
        seal_delivery(tmp_path, None, None, watermark=None, premarks=hook.premarks, **kw)  # type: ignore[arg-type]
    unmarked.close()
