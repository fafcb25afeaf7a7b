"""Signed reader hints: the server's read-back centre lets the client skip its triangle pass.

What is pinned here:

- With the true hint, the reader's result is bit for bit the one without it
  (random meshes as in test_watermark_parallel, the real meshes, after a JSON
  round trip of the hint); the triangle pass runs exactly when the hint does not
  say "every vertex referenced".
- The server puts the hints of the file it checked into the manifest, on request
  and for pre-marked copies, over real TLS, and the import verifies; a mesh with
  unreferenced vertices is flagged false and takes the full path.
- A re-signed manifest with a wrong centre blocks the import (WatermarkMismatch,
  nothing imported, audited); malformed hints are MalformedManifest; a manifest
  without hints (older servers) still verifies.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from hypothesis import given
from sealport import trust
from sealport.client import SealportClient
from sealport.errors import MalformedManifest, WatermarkMismatch
from sealport.manifest import MANIFEST_PREFIX
from sealport.server import ServerSettings
from sealport.server.premark import PremarkPool
from sealport.server.watermarking import make_hook, mark_delivery
from sealport.watermark import (
    ReaderHint,
    derive_delivery_key,
    embed,
    mark,
    parallel,
    parse_manifest_entry,
    parse_reader_hints,
    reader_hints,
    verify,
    verify_file,
)
from sealport.watermark.manifest import reader_json
from sealport.watermark_check import MISMATCH_MESSAGE

from tests.fixtures.server import ServerHandle, start_sealport_server
from tests.test_secure_import import (
    assert_nothing_imported,
    is_manifest,
    make_client,
    on_response,
    rewrite_manifest,
    sign_in,
)
from tests.test_watermark_parallel import PROPS, meshes

MESHES = Path(__file__).resolve().parents[2] / "shared" / "meshes"
KEY = derive_delivery_key(b"h" * 32, "d-hints")
PAYLOAD = b"hintsOK!"


def _round_trip(hint: ReaderHint | None) -> ReaderHint | None:
    """The hint as the client gets it: manifest JSON, parsed strictly."""
    entry = json.loads(json.dumps({"reader": reader_json([hint])}))
    parsed = parse_reader_hints(entry)
    assert parsed is not None and len(parsed) == 1
    return parsed[0]


def _same(a: mark._Norms | None, b: mark._Norms | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.centre.tobytes() == b.centre.tobytes()
    assert a.rho.dtype == b.rho.dtype and a.rho.tobytes() == b.rho.tobytes()
    assert a.m == b.m and a.all_referenced == b.all_referenced
    assert (a.weight is None) == (b.weight is None)
    if a.weight is not None and b.weight is not None:
        assert np.array_equal(a.weight, b.weight)


@pytest.fixture
def triangle_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reader's triangle passes (the real function still runs)."""
    calls: list[int] = []
    real = parallel.referenced_and_centre

    def counted(points: np.ndarray, tris: np.ndarray, threads: int, *frame: Any) -> Any:
        calls.append(len(tris))
        return real(points, tris, threads, *frame)

    monkeypatch.setattr(parallel, "referenced_and_centre", counted)
    return calls


# --- the reader with a hint equals the reader without ---------------------------------------
@PROPS
@given(meshes())
def test_true_hint_gives_the_same_norms_bit_for_bit(triangle_passes: list[int], mesh: Any) -> None:
    v, t = mesh
    start = len(triangle_passes)  # the fixture lives across hypothesis examples
    full = mark._read_norms(v, t)
    assert len(triangle_passes) == start + 1
    if full is None:
        return
    c = full.centre
    hint = _round_trip(ReaderHint((float(c[0]), float(c[1]), float(c[2])), full.all_referenced))
    hinted = mark._read_norms(v, t, hint=hint)
    _same(full, hinted)
    # The pass is skipped exactly when the hint says every vertex is referenced.
    assert len(triangle_passes) == start + (1 if full.all_referenced else 2)


@pytest.mark.parametrize("name", ["bunny.ply", "fandisk.obj", "suzanne.ply"])
def test_real_meshes_verify_the_same_with_the_hint(triangle_passes: list[int], name: str) -> None:
    m = trimesh.load(str(MESHES / name), process=False)
    v, f = np.asarray(m.vertices), np.asarray(m.faces, np.int64)
    variants = [v, v.astype(np.float32)]
    if name != "suzanne.ply":  # too small to carry a mark: read as is (too_small)
        variants.append(embed(v, f, PAYLOAD, KEY).astype(np.float32))
    for verts in variants:
        full = verify(verts, f, KEY, PAYLOAD)
        assert full.reader is not None
        before = len(triangle_passes)
        hinted = verify(verts, f, KEY, PAYLOAD, hint=_round_trip(full.reader))
        assert len(triangle_passes) == before + (0 if full.reader.all_referenced else 1)
        assert hinted == full  # every field, incl. confidence, bit errors and the hint
        o1 = mark._observe(verts, f, KEY, 64)
        o2 = mark._observe(verts, f, KEY, 64, hint=full.reader)
        assert (o1 is None) == (o2 is None)
        if o1 is not None and o2 is not None:
            for a, b in zip(vars(o1).values(), vars(o2).values(), strict=True):
                assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_wrong_centre_reads_no_mark() -> None:
    m = trimesh.load(str(MESHES / "bunny.ply"), process=False)
    v, f = np.asarray(m.vertices), np.asarray(m.faces, np.int64)
    marked = embed(v, f, PAYLOAD, KEY)
    true = verify(marked, f, KEY, PAYLOAD)
    assert true.status == "verified" and true.reader is not None
    size = float(np.ptp(v, axis=0).max())
    x, y, z = true.reader.centre
    wrong = ReaderHint((x + 0.3 * size, y, z), True)
    assert verify(marked, f, KEY, PAYLOAD, hint=wrong).status != "verified"


# --- strict parsing ------------------------------------------------------------------------
GOOD = {"centre": [0.5, -1.25, 3], "all_referenced": True}


@pytest.mark.parametrize(
    "reader",
    [
        {"0": GOOD},
        "[]",
        [GOOD, 7],
        [{"centre": [0.5, -1.25, 3]}],
        [dict(GOOD, extra=1)],
        [dict(GOOD, centre=[0.5, -1.25])],
        [dict(GOOD, centre=[0.5, -1.25, 3, 4])],
        [dict(GOOD, centre=[0.5, float("nan"), 3])],
        [dict(GOOD, centre=[0.5, float("inf"), 3])],
        [dict(GOOD, centre=[0.5, "1", 3])],
        [dict(GOOD, centre=[0.5, True, 3])],
        [dict(GOOD, centre=[0.5, 10**400, 3])],
        [dict(GOOD, centre="0.5,1,3")],
        [dict(GOOD, all_referenced=1)],
        [dict(GOOD, all_referenced="true")],
        [None] * 100_001,
    ],
)
def test_malformed_hints_are_refused(reader: Any) -> None:
    with pytest.raises(MalformedManifest) as exc:
        parse_reader_hints({"reader": reader})
    assert exc.value.message == "The delivery's watermark record is invalid."


def test_valid_hints_parse_and_absent_means_none() -> None:
    assert parse_reader_hints({}) is None
    assert parse_reader_hints({"reader": [GOOD, None]}) == (
        ReaderHint((0.5, -1.25, 3.0), True),
        None,
    )


def test_hints_for_another_number_of_meshes_are_malformed(tmp_path: Path) -> None:
    path, entry = mark_delivery(
        tmp_path / "data", _bunny_glb(tmp_path / "b.glb"), _dir(tmp_path / "w"), _info()
    )
    key, payload, _ = parse_manifest_entry(entry)
    hints = parse_reader_hints(entry)
    assert hints is not None and len(hints) == 1
    assert verify_file(path, key, payload, reader=hints).status == "verified"
    for wrong in ((), hints * 2):
        with pytest.raises(MalformedManifest) as exc:
            verify_file(path, key, payload, reader=wrong)
        assert "reader hints for" in exc.value.detail


# --- the server's hints ----------------------------------------------------------------------
def _dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _info() -> dict[str, Any]:
    return {"delivery_id": "d_hints_unit", "format": "glb"}


def _bunny_glb(dst: Path) -> Path:
    trimesh.load(MESHES / "bunny.ply", process=False).export(dst)
    return dst


def _two_mesh_glb(dst: Path) -> Path:
    """Fandisk (every vertex referenced) and the bunny (25 vertices no triangle uses)."""
    scene = trimesh.Scene()
    for name in ("fandisk.obj", "bunny.ply"):
        scene.add_geometry(trimesh.load(MESHES / name, process=False), geom_name=name)
    scene.export(dst)
    return dst


def test_marked_entry_carries_the_hints_of_the_written_file(tmp_path: Path) -> None:
    src = _two_mesh_glb(tmp_path / "two.glb")
    path, entry = mark_delivery(tmp_path / "data", src, _dir(tmp_path / "w"), _info())
    key, payload, marked = parse_manifest_entry(entry)
    assert marked == 2 and path != src
    hints = parse_reader_hints(json.loads(json.dumps(entry)))
    full = verify_file(path, key, payload)
    assert full.status == "verified"
    assert hints == tuple(reader_hints(full))  # the read-back of exactly this file
    assert [h.all_referenced for h in hints if h is not None] == [True, False]
    assert len(json.dumps(entry["reader"])) < 250  # small


# --- end to end over real TLS --------------------------------------------------------------
@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_hook(tmp_path_factory.mktemp("rh") / "data")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hook: Any) -> Iterator[ServerHandle]:
    data = Path(hook.premarks.root).parents[1]
    handle = start_sealport_server(data, settings=ServerSettings(device_interval=1, watermark=hook))
    src = _two_mesh_glb(tmp_path_factory.mktemp("rh-src") / "two.glb")
    try:
        handle.add_asset(src, name="rh-two", project="rh", fmt="glb")
        yield handle
    finally:
        handle.stop()
        hook.premarks.close()


@pytest.fixture(scope="module")
def client(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> SealportClient:
    c = make_client(server, tmp_path_factory.mktemp("rh-ws"))
    sign_in(c, server, server.username, server.password)
    return c


@pytest.fixture
def hooked(client: SealportClient) -> Iterator[SealportClient]:
    before = list(client.session.hooks["response"])
    yield client
    client.session.hooks["response"][:] = before


def _aid(server: ServerHandle) -> str:
    aid = server.ledger.asset_id_for("rh", "rh-two")
    assert aid is not None
    return aid


def _resign(
    server: ServerHandle, change: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Edit the watermark entry in place, then re-sign with the server's real delivery key."""
    delivery = trust.load_private_key(Path(server.data_dir) / "keys" / "delivery.key")

    def edit(env: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(base64.b64decode(env["manifest"]))
        change(body["watermark"])
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        env["manifest"] = base64.b64encode(data).decode()
        env["signature"] = base64.b64encode(delivery.sign(MANIFEST_PREFIX + data)).decode()
        return env

    return edit


def _tamper(client: SealportClient, server: ServerHandle, change: Callable[[Any], None]) -> None:
    on_response(client, is_manifest, lambda r: rewrite_manifest(r, _resign(server, change)))


def _check_hints(result: Any) -> None:
    """The manifest's hints are what the client's own full read of the file finds."""
    wm = result.manifest.watermark
    assert result.watermark_status == "verified"
    key, payload, _ = parse_manifest_entry(wm)
    hints = parse_reader_hints(wm)
    assert hints == tuple(reader_hints(verify_file(result.path, key, payload)))
    assert [h.all_referenced for h in hints if h is not None] == [True, False]


def test_on_request_and_premarked_deliveries_carry_hints_and_verify(
    server: ServerHandle, client: SealportClient, hook: Any, tmp_path: Path
) -> None:
    pool: PremarkPool = hook.premarks
    first = client.secure_import(_aid(server), tmp_path / "a")  # marked on request
    _check_hints(first)
    assert pool.wait_idle(120) and len(pool) == 1
    (ready,) = [c for copies in pool._copies.values() for c in copies]
    second = client.secure_import(_aid(server), tmp_path / "b")  # the pooled copy
    assert second.manifest.delivery_id == ready.delivery_id
    _check_hints(second)
    assert client.audit.records()[-1]["event"] == "import.verified"


def test_a_signed_wrong_centre_blocks_the_import(
    hooked: SealportClient, server: ServerHandle, tmp_path: Path
) -> None:
    def shift(wm: dict[str, Any]) -> None:
        hint = wm["reader"][0]
        assert hint["all_referenced"] is True  # fandisk: its centre is taken as is
        hint["centre"][0] += 1.0  # about a third of the fandisk

    _tamper(hooked, server, shift)
    with pytest.raises(WatermarkMismatch) as exc:
        hooked.secure_import(_aid(server), tmp_path / "out")
    assert exc.value.message == MISMATCH_MESSAGE
    assert_nothing_imported(hooked, tmp_path / "out", "watermark_mismatch")


@pytest.mark.parametrize(
    "change",
    [
        lambda wm: wm["reader"].pop(),  # one hint for two meshes
        lambda wm: wm["reader"][0].update(centre=[0.0, math.nan, 0.0]),
        lambda wm: wm["reader"][1].update(all_referenced="yes"),
    ],
    ids=["count", "nan", "flag"],
)
def test_malformed_signed_hints_are_refused(
    hooked: SealportClient, server: ServerHandle, tmp_path: Path, change: Any
) -> None:
    _tamper(hooked, server, change)
    with pytest.raises(MalformedManifest):
        hooked.secure_import(_aid(server), tmp_path / "out")
    assert_nothing_imported(hooked, tmp_path / "out", "malformed_manifest")


def test_a_manifest_without_hints_still_verifies(
    hooked: SealportClient, server: ServerHandle, tmp_path: Path
) -> None:
    _tamper(hooked, server, lambda wm: wm.pop("reader"))
    result = hooked.secure_import(_aid(server), tmp_path / "out")
    assert result.watermark_status == "verified"
    assert result.manifest.watermark is not None and "reader" not in result.manifest.watermark
