"""Server watermark hook: per-asset cache of the parsed file (bounded, keyed by content)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sealport
import trimesh
from sealport.server.watermarking import make_hook, settle
from sealport.server.wm_cache import PreparedCache
from sealport.watermark import parse_manifest_entry, verify_file
from sealport.watermark.files import PreparedFile

from tests.watermark.meshgen import blob

DEMO = Path(sealport.__file__).parent / "demo_assets"


@dataclass(frozen=True)
class Blob:
    nbytes: int
    tag: str = ""


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    p = tmp_path / name
    p.write_bytes(data)
    return p, hashlib.sha256(data).hexdigest()


def test_hits_after_the_first_build_and_lru_bounds(tmp_path: Path) -> None:
    cache: PreparedCache[Blob] = PreparedCache(max_bytes=250, max_entries=2)
    builds: list[str] = []

    def build(p: Path) -> Blob:
        builds.append(p.name)
        return Blob(100, p.name)

    files = [_file(tmp_path, f"a{i}", bytes([i]) * 10) for i in range(3)]
    a, b, c = files
    assert cache.get(a[0], "A", 1, a[1], build).tag == "a0"
    assert cache.get(a[0], "A", 1, a[1], build).tag == "a0"
    assert (cache.hits, cache.misses, builds) == (1, 1, ["a0"])
    cache.get(b[0], "B", 1, b[1], build)
    cache.get(a[0], "A", 1, a[1], build)  # a is now the most recent
    cache.get(c[0], "C", 1, c[1], build)  # 300 bytes > 250: b (least recent) goes
    assert len(cache) == 2 and cache.nbytes == 200
    cache.get(a[0], "A", 1, a[1], build)
    cache.get(b[0], "B", 1, b[1], build)
    assert builds == ["a0", "a1", "a2", "a1"]
    # Another version of the same asset is another entry.
    cache.get(a[0], "A", 2, a[1], build)
    assert builds[-1] == "a0"


def test_entry_larger_than_the_budget_is_served_not_kept(tmp_path: Path) -> None:
    cache: PreparedCache[Blob] = PreparedCache(max_bytes=50)
    p, sha = _file(tmp_path, "big", b"x")
    assert cache.get(p, "A", 1, sha, lambda _: Blob(51)).nbytes == 51
    assert len(cache) == 0 and cache.nbytes == 0


def test_changed_or_mismatching_file_is_not_served_from_cache(tmp_path: Path) -> None:
    cache: PreparedCache[Blob] = PreparedCache()
    p, sha = _file(tmp_path, "f", b"one")
    n = [0]

    def build(_: Path) -> Blob:
        n[0] += 1
        return Blob(1, str(n[0]))

    assert cache.get(p, "A", 1, sha, build).tag == "1"
    p.write_bytes(b"two")  # replaced behind the store's back: its hash is not the record's
    os.utime(p, ns=(1, 1))
    assert cache.get(p, "A", 1, sha, build).tag == "2"
    assert cache.get(p, "A", 1, sha, build).tag == "3"  # never cached: hash mismatch
    assert len(cache) == 1


def test_concurrent_deliveries_build_once(tmp_path: Path) -> None:
    cache: PreparedCache[Blob] = PreparedCache()
    p, sha = _file(tmp_path, "f", b"data")
    started = threading.Event()
    release = threading.Event()
    calls = []

    def build(_: Path) -> Blob:
        calls.append(1)
        started.set()
        release.wait(10)
        return Blob(1)

    out: list[Blob] = []
    threads = [
        threading.Thread(target=lambda: out.append(cache.get(p, "A", 1, sha, build)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    assert started.wait(10)
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(out) == 4 and len({id(o) for o in out}) == 1


@pytest.fixture()
def glb_asset(tmp_path: Path) -> tuple[Path, str]:
    v, f = blob(4, seed=21)
    p = tmp_path / "asset.glb"
    trimesh.Trimesh(v, f, process=False).export(str(p))
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def test_hook_marks_each_delivery_from_one_parse(tmp_path: Path, glb_asset) -> None:
    src, sha = glb_asset
    cache: PreparedCache[PreparedFile] = PreparedCache()
    hook = make_hook(tmp_path / "data", cache)
    entries: list[tuple[Path, dict[str, Any]]] = []
    for i in range(3):
        work = tmp_path / f"w{i}"
        work.mkdir()
        info = {"delivery_id": f"d_{i}", "asset_id": "a_1", "version": 1, "sha256": sha}
        entries.append(settle(hook(src, work, {**info, "format": "glb"})))
    assert (cache.misses, cache.hits, len(cache)) == (1, 2, 1)
    payloads = set()
    for path, entry in entries:
        assert path != src and "status" not in entry  # "unmarked" would say why
        key, payload, marked = parse_manifest_entry(entry)
        assert marked == 1 and verify_file(path, key, payload).status == "verified"
        payloads.add(payload)
    assert len(payloads) == 3
    assert not np.array_equal(
        np.fromfile(entries[0][0], np.uint8), np.fromfile(entries[1][0], np.uint8)
    )


def test_hook_without_a_content_hash_parses_per_delivery(tmp_path: Path, glb_asset) -> None:
    src, _ = glb_asset
    cache: PreparedCache[PreparedFile] = PreparedCache()
    hook = make_hook(tmp_path / "data", cache)
    path, entry = settle(
        hook(src, tmp_path, {"delivery_id": "d_x", "asset_id": "a", "format": "glb"})
    )
    assert "status" not in entry and path != src and len(cache) == 0 and cache.misses == 0


def test_cached_plan_and_certified_fallback_for_a_lumpy_mesh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The demo gear (CAD-like, lumpy norm histogram): the quick O(N) apply of the
    # cached plan does not read back, so the hook re-embeds with the certified
    # read-back loop and the delivery still goes out verified.
    src = tmp_path / "gear.stl"
    shutil.copyfile(DEMO / "gear.stl", src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache: PreparedCache[PreparedFile] = PreparedCache()
    hook = make_hook(tmp_path / "data", cache)
    info = {"delivery_id": "d_gear", "asset_id": "a_gear", "version": 3, "sha256": sha}
    with caplog.at_level("INFO", logger="sealport.server.watermarking"):
        path, entry = settle(hook(src, tmp_path, {**info, "format": "stl"}))
    assert "certified embed" in caplog.text
    prepared = cache.get(src, "a_gear", 3, sha, lambda p: pytest.fail("rebuilt"))
    assert prepared.stl is not None and len(prepared.plans) == 1
    assert prepared.plans[0] is not None
    assert prepared.nbytes > prepared.stl.nbytes  # the plan counts against the bound
    key, payload, _ = parse_manifest_entry(entry)
    assert verify_file(path, key, payload).status == "verified"


def test_racing_builders_of_one_key_are_counted_once() -> None:
    """If two builds of one key both land (a failed build freed the gate), bytes stay true."""
    from sealport.server.wm_cache import PreparedCache

    class Entry:
        nbytes = 40

    cache: PreparedCache[Entry] = PreparedCache(max_bytes=100, max_entries=8)
    key = ("a", 1, "0" * 64, 1, 2, 3, 4)
    cache._put(key, Entry())  # type: ignore[arg-type]
    cache._put(key, Entry())  # type: ignore[arg-type]
    assert len(cache) == 1 and cache.nbytes == 40
