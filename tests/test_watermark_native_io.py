"""Watermark mesh I/O without trimesh (GLB, binary STL): byte-exact rewrite, shared
accessors, fallbacks to the general reader, refusals."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from sealport.formats.glb import check_glb
from sealport.formats.stl import check_stl
from sealport.watermark import (
    WatermarkFormatError,
    derive_delivery_key,
    embed_file,
    extract_file,
    load_meshes,
    verify_file,
)
from sealport.watermark import glb as wm_glb
from sealport.watermark import stl as wm_stl
from sealport.watermark.files import embed_prepared, prepare_file

from tests.watermark.meshgen import blob

SECRET = b"studio-secret-for-glb-io-tests-01"
KEY = derive_delivery_key(SECRET, "delivery-glb")
PAYLOAD = bytes.fromhex("fedcba9876543210")


def _glb(doc: dict[str, Any], binary: bytes, extra_chunk: bytes = b"") -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js
    body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    if extra_chunk:
        body += struct.pack("<I4s", len(extra_chunk), b"XTRA") + extra_chunk
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _interleaved_two_primitives(v: np.ndarray, f: np.ndarray) -> tuple[bytes, bytes, bytes]:
    """POSITION+NORMAL interleaved (stride 24), two primitives sharing the positions
    (u16 and u32 indices), a fake image in its own view, and an unknown chunk."""
    n = len(v)
    inter = np.zeros((n, 6), "<f4")
    inter[:, :3] = v
    inter[:, 3:] = np.float32(0.577)
    half = len(f) // 2
    i16 = f[:half].astype("<u2").tobytes()
    i16 += b"\0" * (-len(i16) % 4)
    i32 = f[half:].astype("<u4").tobytes()
    image = bytes(range(256)) * 8
    parts = [inter.tobytes(), i16, i32, image]
    offs = np.cumsum([0] + [len(p) for p in parts]).tolist()
    doc = {
        "asset": {"version": "2.0"},
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [
            {
                "primitives": [
                    {"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2},
                    {"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 3},
                ]
            }
        ],
        "images": [{"bufferView": 3, "mimeType": "image/png"}],
        "buffers": [{"byteLength": offs[-1]}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(parts[0]), "byteStride": 24},
            {"buffer": 0, "byteOffset": offs[1], "byteLength": len(parts[1])},
            {"buffer": 0, "byteOffset": offs[2], "byteLength": len(parts[2])},
            {"buffer": 0, "byteOffset": offs[3], "byteLength": len(parts[3])},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3",
             "min": v.min(0).tolist(), "max": v.max(0).tolist()},
            {"bufferView": 0, "byteOffset": 12, "componentType": 5126, "count": n, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5123, "count": half * 3, "type": "SCALAR"},
            {"bufferView": 2, "componentType": 5125, "count": (len(f) - half) * 3, "type": "SCALAR"},
        ],
    }  # fmt: skip
    return _glb(doc, b"".join(parts), extra_chunk=b"keep-me!"), inter[:, 3:].tobytes(), image


@pytest.fixture(scope="module")
def mesh() -> tuple[np.ndarray, np.ndarray]:
    v, f = blob(4, seed=11)  # 2,562 vertices: above the 1,866 floor
    return v.astype(np.float32), f


def test_interleaved_shared_positions_rewritten_in_place(tmp_path: Path, mesh) -> None:
    v, f = mesh
    data, normals, image = _interleaved_two_primitives(v, f)
    src, dst = tmp_path / "src.glb", tmp_path / "dst.glb"
    src.write_bytes(data)

    layout = wm_glb.read(src)
    assert layout is not None and len(layout.meshes) == 1  # shared accessor = one mesh
    assert np.array_equal(layout.meshes[0].vertices, v)
    assert np.array_equal(layout.meshes[0].triangles.astype(np.int64), f)

    report = embed_file(src, dst, PAYLOAD, KEY)
    assert (report.marked, report.total) == (1, 1)
    check_glb(dst, max_bytes=1 << 30)  # still passes the safe reader
    out = wm_glb.read(dst)
    assert out is not None
    moved = out.meshes[0].vertices
    assert not np.array_equal(moved, v) and np.abs(moved - v).max() < 0.01
    acc = out.doc["accessors"][0]
    assert acc["min"] == moved.min(0).tolist() and acc["max"] == moved.max(0).tolist()
    # Everything but the positions is byte-identical: normals, indices, image, extra chunk.
    raw = dst.read_bytes()
    assert raw.endswith(struct.pack("<I4s", 8, b"XTRA") + b"keep-me!")
    bin_start = out.json_end + 8
    inter = np.frombuffer(raw, "<f4", count=len(v) * 6, offset=bin_start).reshape(-1, 6)
    assert inter[:, 3:].tobytes() == normals
    assert image in raw
    assert np.array_equal(out.meshes[0].triangles, layout.meshes[0].triangles)
    # trimesh (the general reader) sees the same positions; the mark reads back.
    scene = trimesh.load(str(dst), force="scene", process=False)
    assert all(
        np.array_equal(np.asarray(g.vertices, np.float32), moved) for g in scene.geometry.values()
    )
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"
    r = extract_file(dst, KEY)
    assert r.status == "found" and r.payload == PAYLOAD
    assert extract_file(src, KEY).status == "not_found"


def test_prepared_file_is_reused_per_delivery(tmp_path: Path, mesh) -> None:
    v, f = mesh
    src = tmp_path / "src.glb"
    trimesh.Trimesh(v, f, process=False).export(str(src))
    prepared = prepare_file(src)
    assert prepared.glb is not None and prepared.nbytes > 0
    before = prepared.glb.meshes[0].vertices.copy()
    for i in range(2):
        key = derive_delivery_key(SECRET, f"d{i}")
        payload = bytes([i]) * 8
        dst = tmp_path / f"d{i}.glb"
        embed_prepared(prepared, dst, payload, key)
        assert verify_file(dst, key, payload).status == "verified"
        assert verify_file(dst, KEY, PAYLOAD).status == "not_found"
    assert np.array_equal(prepared.glb.meshes[0].vertices, before)  # cache never written


def test_load_meshes_matches_trimesh(tmp_path: Path, mesh) -> None:
    v, f = mesh
    src = tmp_path / "t.glb"
    trimesh.Trimesh(v, f, process=False).export(str(src))
    [(lv, lf)] = load_meshes(src)
    assert lv.dtype == np.float64 and lf.dtype == np.int64
    g = next(iter(trimesh.load(str(src), force="scene", process=False).geometry.values()))
    assert np.array_equal(lv, np.asarray(g.vertices)) and np.array_equal(lf, g.faces)


def _simple_doc(n: int, n_idx: int, *, mode: Any = 4) -> dict[str, Any]:
    return {
        "asset": {"version": "2.0"},
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": mode}]}],
        "buffers": [{"byteLength": n * 12 + n_idx * 4}],
        "bufferViews": [
            {"buffer": 0, "byteLength": n * 12},
            {"buffer": 0, "byteOffset": n * 12, "byteLength": n_idx * 4},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5125, "count": n_idx, "type": "SCALAR"},
        ],
    }


def test_index_past_the_vertices_is_refused(tmp_path: Path, mesh) -> None:
    v, f = mesh
    bad = f.astype("<u4").copy()
    bad[5, 1] = len(v) + 7
    path = tmp_path / "bad.glb"
    path.write_bytes(_glb(_simple_doc(len(v), bad.size), v.tobytes() + bad.tobytes()))
    with pytest.raises(WatermarkFormatError):
        wm_glb.read(path)
    with pytest.raises(WatermarkFormatError):
        verify_file(path, KEY, PAYLOAD)


def test_accessor_past_the_chunk_is_refused_by_the_safe_reader(tmp_path: Path, mesh) -> None:
    v, f = mesh
    doc = _simple_doc(len(v), f.size)
    doc["accessors"][0]["count"] = len(v) + 1000  # reads past its view
    path = tmp_path / "long.glb"
    path.write_bytes(_glb(doc, v.tobytes() + f.astype("<u4").tobytes()))
    with pytest.raises(WatermarkFormatError) as err:
        wm_glb.read(path)
    assert "safety check" in err.value.message


def test_uncovered_layouts_fall_back_to_the_general_reader(tmp_path: Path, mesh) -> None:
    v, f = mesh
    # A triangle strip: the direct reader declines; the general path still reads the file.
    path = tmp_path / "strip.glb"
    path.write_bytes(
        _glb(_simple_doc(len(v), f.size, mode=5), v.tobytes() + f.astype("<u4").tobytes())
    )
    assert wm_glb.read(path) is None
    assert prepare_file(path).glb is None
    # A data-URI buffer (trimesh export of .gltf embeds base64): no BIN chunk to patch.
    doc = _simple_doc(len(v), f.size)
    payload = base64.b64encode(v.tobytes() + f.astype("<u4").tobytes()).decode()
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + payload
    uri_path = tmp_path / "uri.glb"
    uri_path.write_bytes(_glb(doc, b""))
    assert wm_glb.read(uri_path) is None
    dst = tmp_path / "uri-marked.glb"
    embed_file(uri_path, dst, PAYLOAD, KEY)  # trimesh path writes a normal GLB
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"


def test_binary_stl_read_and_patched_like_trimesh(tmp_path: Path, mesh) -> None:
    v, f = mesh
    src, dst = tmp_path / "s.stl", tmp_path / "d.stl"
    trimesh.Trimesh(v, f, process=False).export(str(src))
    tri = wm_stl.read(src)
    assert tri is not None
    g = trimesh.load(str(src), process=False)
    assert np.array_equal(tri.vertices, np.asarray(g.vertices, np.float32))
    assert np.array_equal(tri.triangles, g.faces)
    [(lv, lf)] = load_meshes(src)
    assert lv.dtype == np.float64 and np.array_equal(lf, g.faces)
    header = src.read_bytes()[:80]
    assert embed_file(src, dst, PAYLOAD, KEY).marked == 1
    out = dst.read_bytes()
    assert len(out) == src.stat().st_size and out[:80] == header
    check_stl(dst, max_bytes=1 << 30)
    m = trimesh.load(str(dst), process=False)
    moved = np.asarray(m.vertices)
    assert (
        not np.array_equal(moved, np.asarray(g.vertices))
        and np.abs(moved - g.vertices).max() < 0.01
    )
    stored = np.frombuffer(out, wm_stl.RECORD, offset=84)["normal"]
    assert np.allclose(stored, m.face_normals, atol=1e-5)  # facet normals follow the vertices
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"


def test_ascii_stl_falls_back_to_the_general_reader(tmp_path: Path, mesh) -> None:
    v, f = mesh
    src, dst = tmp_path / "a.stl", tmp_path / "b.stl"
    src.write_bytes(
        trimesh.exchange.stl.export_stl_ascii(trimesh.Trimesh(v, f, process=False)).encode()
    )
    assert wm_stl.read(src) is None
    embed_file(src, dst, PAYLOAD, KEY)
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("accessors", "count"),
        ("accessors", "byteOffset"),
        ("accessors", "componentType"),
        ("accessors", "bufferView"),
        ("bufferViews", "byteOffset"),
        ("bufferViews", "byteLength"),
        ("bufferViews", "byteStride"),
        ("buffers", "byteLength"),
    ],
)
def test_hostile_numbers_are_refused_or_read_in_bounds(
    tmp_path: Path, mesh, where: str, field: str
) -> None:
    """Every adversarial value either reads cleanly or is a WatermarkFormatError."""
    v, f = mesh
    base = _simple_doc(len(v), f.size)
    binary = v.tobytes() + f.astype("<u4").tobytes()
    for value in (-1, 0, 1, 3, 4, 13, 2**31, 2**63, 1.5, "7", None, True):
        for index in range(len(base[where])):
            doc = json.loads(json.dumps(base))
            doc[where][index][field] = value
            path = tmp_path / "h.glb"
            path.write_bytes(_glb(doc, binary))
            try:
                layout = wm_glb.read(path)
            except WatermarkFormatError:
                continue
            if layout is not None:
                for m in layout.meshes:
                    assert m.vertices.shape[1] == 3
                    assert m.triangles.size == 0 or int(m.triangles.max()) < len(m.vertices)


# --- review finding 1: POSITION bytes shared with other data ------------------------------
def _aliased(v: np.ndarray, f: np.ndarray, case: str) -> bytes:
    """A valid GLB whose POSITION bytes are also read by something else."""
    doc = _simple_doc(len(v), f.size)
    n = len(v)
    if case == "u8 indices":  # a second primitive indexing with the position bytes
        doc["accessors"].append(
            {"bufferView": 0, "componentType": 5121, "count": 3000, "type": "SCALAR"}
        )
        doc["meshes"][0]["primitives"].append({"attributes": {"POSITION": 0}, "indices": 2})
    elif case == "normals":  # NORMAL reads the very same floats
        doc["accessors"].append(
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3"}
        )
        doc["meshes"][0]["primitives"][0]["attributes"]["NORMAL"] = 2
    elif case == "image":  # an image view over the last 1 KB of positions
        doc["bufferViews"].append({"buffer": 0, "byteOffset": n * 12 - 1024, "byteLength": 1024})
        doc["images"] = [{"bufferView": 2, "mimeType": "image/png"}]
    elif case == "sparse":  # sparse values of another accessor stored in the position bytes
        doc["accessors"].append(
            {
                "componentType": 5126,
                "count": 10,
                "type": "SCALAR",
                "sparse": {
                    "count": 2,
                    "indices": {"bufferView": 1, "componentType": 5125},
                    "values": {"bufferView": 0, "byteOffset": 40},
                },
            }
        )
    return _glb(doc, v.tobytes() + f.astype("<u4").tobytes())


@pytest.mark.parametrize("case", ["u8 indices", "normals", "image", "sparse"])
def test_positions_sharing_bytes_with_other_data_go_out_unmarked(
    tmp_path: Path, mesh, case: str
) -> None:
    """Patching shared bytes would change the other data: refuse to mark, deliver as is."""
    from sealport.server.watermarking import mark_delivery

    v, f = mesh
    src = tmp_path / "aliased.glb"
    src.write_bytes(_aliased(v, f, case))
    original = src.read_bytes()
    check_glb(src, max_bytes=1 << 30)  # valid glTF: importing aliased reads harms nothing
    with pytest.raises(WatermarkFormatError) as err:
        wm_glb.read(src)
    assert "cannot carry a watermark" in err.value.message
    assert "share bytes" in err.value.message and str(src) in err.value.detail
    with pytest.raises(WatermarkFormatError):
        prepare_file(src, plan=True)
    work = tmp_path / "work"
    work.mkdir()
    out, entry = mark_delivery(tmp_path, src, work, {"delivery_id": "d-alias", "format": "glb"})
    assert out == src and src.read_bytes() == original  # delivered whole, nothing patched
    assert entry["status"] == "unmarked" and "share bytes" in entry["reason"]
    assert not list(work.iterdir())


def test_interleaved_and_neighbouring_data_are_not_aliasing(tmp_path: Path, mesh) -> None:
    """No false refusals: attributes interleaved in one stride, views that only touch."""
    v, f = mesh
    data, _, _ = _interleaved_two_primitives(v, f)
    src = tmp_path / "inter.glb"
    src.write_bytes(data)
    assert wm_glb.read(src) is not None
    doc = _simple_doc(len(v), f.size)
    doc["bufferViews"].append({"buffer": 0, "byteOffset": len(v) * 12, "byteLength": 64})
    doc["images"] = [{"bufferView": 2, "mimeType": "image/png"}]  # starts right after
    src.write_bytes(_glb(doc, v.tobytes() + f.astype("<u4").tobytes()))
    assert wm_glb.read(src) is not None


# --- review finding 2a: one index accessor, many primitives -------------------------------
def test_shared_index_accessor_is_decoded_once(tmp_path: Path, mesh) -> None:
    """100 primitives drawing one index accessor: one decoded copy, not 100."""
    import tracemalloc

    from tests.watermark.hostile import glb_shared_indices

    v, f = mesh
    src = tmp_path / "shared.glb"
    src.write_bytes(glb_shared_indices(v, f, 100))
    index_bytes = f.size * 4
    tracemalloc.start()
    try:
        layout = wm_glb.read(src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert layout is not None and len(layout.meshes) == 1
    assert np.array_equal(layout.meshes[0].triangles.astype(np.int64), f)  # counted once
    # positions + one index copy + JSON; 100 copies would be ~100 * index_bytes
    assert peak < v.nbytes + 4 * index_bytes + (1 << 20), peak
    assert layout.nbytes - layout.json_nbytes == v.nbytes + index_bytes  # shared array once
    check_glb(src, max_bytes=1 << 30)
    dst = tmp_path / "marked.glb"
    assert embed_file(src, dst, PAYLOAD, KEY).marked == 1
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"


# --- review finding 2c: the cache counts the parsed JSON, not only the arrays ------------
def _held(build):  # type: ignore[no-untyped-def]
    """(result, bytes it keeps alive) measured with tracemalloc."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        return result, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_prepared_glb_size_counts_its_json_and_bounds_the_cache(tmp_path: Path, mesh) -> None:
    """A GLB whose JSON (15,000 nodes) holds far more than its arrays."""
    import hashlib

    from sealport.server.wm_cache import PreparedCache

    v, f = mesh
    doc = _simple_doc(len(v), f.size)
    doc["nodes"] = [{"name": f"node {i}", "translation": [i, 0.5, 1.5]} for i in range(15_000)]
    src = tmp_path / "many-nodes.glb"
    src.write_bytes(_glb(doc, v.tobytes() + f.astype("<u4").tobytes()))
    prepared, held = _held(lambda: prepare_file(src))
    arrays = v.nbytes + f.size * 4
    assert held > 10 * arrays  # the premise: the JSON dominates
    assert 0.8 * held <= prepared.nbytes <= 1.6 * held, (prepared.nbytes, held)
    # a cache whose budget the arrays alone would fit keeps nothing of this entry
    cache: PreparedCache[Any] = PreparedCache(max_bytes=held // 2)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache.get(src, "asset", 1, sha, prepare_file)
    assert len(cache) == 0 and cache.nbytes == 0
    small = PreparedCache[Any](max_bytes=4 * held)
    small.get(src, "asset", 1, sha, prepare_file)
    assert len(small) == 1 and small.nbytes == prepared.nbytes


# --- review finding 3: NaN/Infinity, non-integer modes ----------------------------------
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_nan_and_infinity_are_refused(tmp_path: Path, mesh, token: str) -> None:
    """Python's json accepts them; JSON and glTF do not, and the marker would write them back."""
    from sealport.errors import UnsafeAsset

    v, f = mesh
    doc = _simple_doc(len(v), f.size)
    doc["accessors"][0]["min"] = ["__placeholder__", 0, 0]
    data = _glb(doc, v.tobytes() + f.astype("<u4").tobytes())
    path = tmp_path / "nan.glb"
    path.write_bytes(data.replace(b'"__placeholder__"', token.encode().ljust(17)))
    with pytest.raises(UnsafeAsset, match="NaN or Infinity|too large to represent"):
        check_glb(path, max_bytes=1 << 30)
    with pytest.raises(WatermarkFormatError):
        wm_glb.read(path)


def test_non_finite_positions_go_out_unmarked(tmp_path: Path, mesh) -> None:
    """A NaN in the BIN positions: a typed refusal (it escaped as ValueError before)."""
    from sealport.server.watermarking import mark_delivery

    v, f = mesh
    bad = v.copy()
    bad[7] = np.nan
    src = tmp_path / "nan-bin.glb"
    src.write_bytes(_glb(_simple_doc(len(v), f.size), bad.tobytes() + f.astype("<u4").tobytes()))
    with pytest.raises(WatermarkFormatError) as err:
        wm_glb.read(src)
    assert "NaN or infinite" in err.value.detail
    work = tmp_path / "work"
    work.mkdir()
    out, entry = mark_delivery(tmp_path, src, work, {"delivery_id": "d-nan", "format": "glb"})
    assert out == src and entry["status"] == "unmarked"


@pytest.mark.parametrize("mode", ["4", 4.0, 7, -1, True, None, [4]])
def test_primitive_mode_must_be_a_gltf_mode(tmp_path: Path, mesh, mode: Any) -> None:
    """glTF modes are the integers 0-6: anything else is refused, not read as 0 faces."""
    from sealport.errors import UnsafeAsset

    v, f = mesh
    path = tmp_path / "mode.glb"
    path.write_bytes(
        _glb(_simple_doc(len(v), f.size, mode=mode), v.tobytes() + f.astype("<u4").tobytes())
    )
    with pytest.raises(UnsafeAsset, match="invalid drawing mode"):
        check_glb(path, max_bytes=1 << 30)
    with pytest.raises(WatermarkFormatError, match="invalid drawing mode"):
        wm_glb.read(path)
    for good in range(7):
        path.write_bytes(
            _glb(_simple_doc(len(v), f.size, mode=good), v.tobytes() + f.astype("<u4").tobytes())
        )
        report = check_glb(path, max_bytes=1 << 30)
        assert report.summary["faces"] == (len(f) if good == 4 else 0)


def test_a_tangle_of_overlapping_accessors_is_refused_with_bounded_work(tmp_path: Path) -> None:
    """20 interleaved POSITION accessors and 50,001 byte accessors over the same stride:
    none collide, but checking every overlapping pair has a cap (1 M pairs) -> refused."""
    from sealport.watermark.glbalias import MAX_PAIRS

    n, stride, others = 999, 252, 50_001
    assert 20 * others > MAX_PAIRS
    accessors: list[dict[str, Any]] = [
        {"bufferView": 0, "byteOffset": 12 * s, "componentType": 5126, "count": n, "type": "VEC3"}
        for s in range(20)
    ]
    accessors += [
        {"bufferView": 0, "byteOffset": 245, "componentType": 5121, "count": n, "type": "SCALAR"}
    ] * others
    doc = {
        "asset": {"version": "2.0"},
        "meshes": [{"primitives": [{"attributes": {"POSITION": s}} for s in range(20)]}],
        "buffers": [{"byteLength": stride * n}],
        "bufferViews": [{"buffer": 0, "byteLength": stride * n, "byteStride": stride}],
        "accessors": accessors,
    }
    rng = np.random.default_rng(5)
    path = tmp_path / "tangle.glb"
    path.write_bytes(_glb(doc, rng.normal(size=stride * n // 4).astype("<f4").tobytes()))
    check_glb(path, max_bytes=1 << 30)
    with pytest.raises(WatermarkFormatError, match="too many of its accessors overlap"):
        wm_glb.read(path)
    doc["accessors"] = accessors[: 20 + 1000]  # the same layout, checkable: no refusal
    path.write_bytes(_glb(doc, rng.normal(size=stride * n // 4).astype("<f4").tobytes()))
    layout = wm_glb.read(path)
    assert layout is not None and len(layout.meshes) == 20
