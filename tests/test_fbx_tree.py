"""Binary FBX node tree (formats/fbxtree.py) and FBX watermarking (watermark/fbxmesh.py).

Real files: the demo chair and the texture fixtures (Blender-written), plus a
dense mesh exported by real Blender (``bpy``) in this run. Hostile files are
made from them here: truncations, random byte flips, lying offsets, zlib
bombs, deep nesting. The reader may only ever answer with a tree or
FbxTreeError (never another exception, never a crash), and the FBX format
check must refuse them with a message that names the problem, also on the
in-DCC path where no child process is used.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import sealport
from sealport.errors import UnsafeAsset
from sealport.formats import check_file, fbxtree
from sealport.formats import isolated as isolated_mod
from sealport.formats.fbxtree import FbxTreeError, encode_array, parse, serialize
from sealport.watermark import (
    WatermarkFormatError,
    derive_delivery_key,
    embed_file,
    extract_file,
    load_meshes,
    verify_file,
)
from sealport.watermark.fbxmesh import meshes_of

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(sealport.__file__).resolve().parent / "demo_assets"
FIXTURES = Path(__file__).resolve().parent / "formats"
MESHES = ROOT.parent / "shared" / "meshes"
KEY = derive_delivery_key(b"studio-secret-for-fbx-tests-0123", "delivery-fbx")
PAYLOAD = bytes.fromhex("f0e1d2c3b4a59687")
REAL = [DEMO / "chair.fbx", *sorted(FIXTURES.glob("*.fbx"))]

BPY_EXPORT = """
import sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.ply_import(filepath=sys.argv[1])
bpy.ops.mesh.primitive_monkey_add(location=(0.3, 0, 0))  # a second, too small mesh
bpy.ops.export_scene.fbx(filepath=sys.argv[2])
"""
BPY_IMPORT = """
import sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.fbx(filepath=sys.argv[1])
print("VERTS", sorted(len(o.data.vertices) for o in bpy.data.objects if o.type == "MESH"))
"""


def _bpy(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def blender_fbx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared bunny plus Suzanne, exported to binary FBX by real Blender."""
    dst = tmp_path_factory.mktemp("fbx") / "bunny.fbx"
    _bpy(BPY_EXPORT, str(MESHES / "bunny.ply"), str(dst))
    return dst


@pytest.fixture(params=["child", "dcc"])
def check_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the FBX check as a plain Python (with the ufbx child) and as inside a DCC."""
    if request.param == "dcc":
        monkeypatch.setattr(isolated_mod, "python_available", lambda: False)
    return str(request.param)


def _raw_vertices(path: Path, dst: Path) -> Path:
    """Copy of ``path`` with every Vertices array stored raw (Blender compresses them)."""
    tree = parse(path.read_bytes())
    rep = {}
    for m in meshes_of(tree):
        p = m.vertices_prop
        rep[p.start] = encode_array(p.code, tree.array(p), 0)
    dst.write_bytes(serialize(tree, rep))
    return dst


# --- reading real files ------------------------------------------------------------------
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_round_trip_is_byte_identical(path: Path) -> None:
    data = path.read_bytes()
    tree = parse(data)
    assert tree.version == 7400 and tree.root(b"Objects") is not None
    assert serialize(tree) == data
    wide = serialize(tree, version=7500)  # 64-bit node headers
    tree64 = parse(wide)
    assert tree64.version == 7500 and serialize(tree64) == wide
    assert serialize(tree64, version=7400) == data
    for a, b in zip(meshes_of(tree), meshes_of(tree64), strict=True):
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.triangles, b.triangles)


@pytest.mark.parametrize("which", ["blender", *[p.name for p in REAL]])
def test_meshes_agree_with_ufbx(blender_fbx: Path, which: str) -> None:
    """Our counts equal those of an independent reader (ufbx, in its child process)."""
    import json

    path = blender_fbx if which == "blender" else next(p for p in REAL if p.name == which)
    proc = subprocess.run(
        [sys.executable, "-m", "sealport.formats.isolated", "fbx", str(path), str(1 << 30)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    facts = reply.get("report", {}).get("summary") or {}
    if not facts:  # ufbx refuses the texture fixtures by policy: it still reports nothing else
        assert "refused" in reply and which.startswith("texture_")
        return
    meshes = load_meshes(path)
    assert facts["meshes"] == len(meshes)
    assert facts["vertices"] == sum(len(v) for v, _ in meshes)
    assert facts["triangles"] == sum(len(t) for _, t in meshes)
    assert serialize(parse(path.read_bytes())) == path.read_bytes()


def test_version_7500_file_passes_the_check(tmp_path: Path, check_path: str) -> None:
    p = tmp_path / "wide.fbx"
    p.write_bytes(serialize(parse((DEMO / "chair.fbx").read_bytes()), version=7500))
    report = check_file(p, "fbx")
    assert report.summary["version"] == 7500 and report.summary["vertices"] > 0
    assert ("ufbx" in str(report.summary["reader"])) == (check_path == "child")


# --- hostile bytes -------------------------------------------------------------------------
def _parse_all(data: bytes) -> None:
    """What the check does: tree, meshes (arrays decoded), media names."""
    from sealport.formats.fbx import _tree_media

    tree = parse(data)
    meshes_of(tree)
    _tree_media(tree)


def test_truncation_and_byte_flips_only_raise_fbxtreeerror() -> None:
    data = (FIXTURES / "texture_embedded.fbx").read_bytes()
    rng = np.random.default_rng(20261125)
    nodes_end = parse(data).roots_end  # the footer after it is opaque padding
    cuts = set(rng.integers(0, nodes_end, 300).tolist()) | {0, 26, 27, 40, nodes_end - 1}
    for n in sorted(cuts):
        with pytest.raises(FbxTreeError):
            parse(data[:n])
    survived = 0
    for _ in range(400):
        buf = bytearray(data)
        for at in rng.integers(27, len(data), int(rng.integers(1, 4))):
            buf[at] = int(rng.integers(0, 256))
        try:
            _parse_all(bytes(buf))
            survived += 1
        except FbxTreeError:
            pass
    assert 0 < survived < 400  # flips in string/float payloads parse, flips in lengths do not


def _node(name: bytes, props: bytes, nprops: int, children: bytes, at: int) -> bytes:
    """One 7400 node at offset ``at`` (children given already placed after it)."""
    end = at + 13 + len(name) + len(props) + len(children)
    return struct.pack("<IIIB", end, nprops, len(props), len(name)) + name + props + children


def _file(body: bytes) -> bytes:
    return fbxtree.MAGIC + struct.pack("<I", 7400) + body + b"\0" * 13


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (struct.pack("<IIIB", 10**6, 0, 0, 1) + b"A", "does not fit"),
        (struct.pack("<IIIB", 30, 0, 0, 1) + b"A", "does not fit"),
        (struct.pack("<IIIB", 27 + 14 + 2, 1, 2, 1) + b"AI\x01", "truncated"),
        (struct.pack("<IIIB", 27 + 14 + 2, 1, 2, 1) + b"AQ\x00", "unknown type"),
        (struct.pack("<IIIB", 27 + 14 + 1, 5, 1, 1) + b"AC", "more properties"),
        (struct.pack("<IIIB", 27 + 14 + 3, 1, 3, 1) + b"AC\x00\x00", "wrong length"),
        (struct.pack("<IIIB", 27 + 14 + 5, 1, 5, 1) + b"AS\xff\0\0\0", "runs past"),
        (struct.pack("<IIIB", 27 + 14 + 20, 0, 0, 1) + b"A" + b"\1" * 20, "not closed"),
    ],
)
def test_bad_offsets_and_lengths(body: bytes, needle: str) -> None:
    with pytest.raises(FbxTreeError) as exc:
        parse(_file(body))
    assert needle in exc.value.problem, exc.value


def _array_prop(code: bytes, count: int, encoding: int, payload: bytes) -> bytes:
    return code + struct.pack("<III", count, encoding, len(payload)) + payload


def test_zlib_bombs_and_lying_arrays() -> None:
    def tree_with(prop: bytes) -> fbxtree.FbxTree:
        return parse(_file(_node(b"V", prop, 1, b"", 27)))

    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in ~64 KB
    with pytest.raises(FbxTreeError, match="impossible size"):
        tree_with(_array_prop(b"d", 1 << 24, 1, bomb[:100]))
    t = tree_with(_array_prop(b"d", 16, 1, bomb))  # declares 128 bytes, holds 64 MiB
    with pytest.raises(FbxTreeError, match="does not hold"):
        t.array(t.roots[0].props[0])
    t = tree_with(_array_prop(b"d", 4, 1, zlib.compress(b"\0" * 16)))  # holds too little
    with pytest.raises(FbxTreeError, match="does not hold"):
        t.array(t.roots[0].props[0])
    t = tree_with(_array_prop(b"d", 2, 1, b"not zlib at all!"))
    with pytest.raises(FbxTreeError, match="corrupt"):
        t.array(t.roots[0].props[0])
    with pytest.raises(FbxTreeError, match="does not match its count"):
        tree_with(_array_prop(b"i", 3, 0, b"\0" * 8))
    with pytest.raises(FbxTreeError, match="too large"):
        tree_with(_array_prop(b"d", 1 << 29, 1, b"\0" * (1 << 20)))
    with pytest.raises(FbxTreeError, match="unknown encoding"):
        tree_with(_array_prop(b"i", 1, 7, b"\0" * 4))
    t = tree_with(_array_prop(b"i", 3, 1, zlib.compress(struct.pack("<3i", 1, 2, -3))))
    assert t.array(t.roots[0].props[0]).tolist() == [1, 2, -3]


def test_depth_and_node_count_limits() -> None:
    depth = fbxtree.MAX_DEPTH + 2

    def build(level: int, at: int) -> bytes:
        if level == depth:
            return struct.pack("<IIIB", at + 14, 0, 0, 1) + b"N"
        child = build(level + 1, at + 14)
        end = at + 14 + len(child) + 13
        return struct.pack("<IIIB", end, 0, 0, 1) + b"N" + child + b"\0" * 13

    body = build(0, 27)
    with pytest.raises(FbxTreeError, match="nested too deeply"):
        parse(_file(body))
    flat = b"".join(struct.pack("<IIIB", 27 + 14 * (i + 1), 0, 0, 1) + b"N" for i in range(50))
    assert parse(_file(flat)).nodes == 50
    with pytest.raises(FbxTreeError, match="too many nodes"):
        parse(_file(flat), max_nodes=49)


def test_polygon_index_out_of_range_is_refused(tmp_path: Path, check_path: str) -> None:
    tree = parse((DEMO / "chair.fbx").read_bytes())
    geo = fbxtree.geometries(tree)[0]
    assert geo.polygons is not None
    pvi = tree.array(geo.polygons).copy()
    pvi[5] = 10**6
    bad = tmp_path / "bad.fbx"
    bad.write_bytes(serialize(tree, {geo.polygons.start: encode_array(b"i", pvi, 1)}))
    with pytest.raises(UnsafeAsset) as exc:
        check_file(bad, "fbx")
    assert "vertex that does not exist" in exc.value.message


def test_container_attacks_refused_in_both_paths(tmp_path: Path, check_path: str) -> None:
    data = (DEMO / "chair.fbx").read_bytes()
    p = tmp_path / "bad.fbx"
    for bad in (data[: len(data) // 2], data[:27] + bytes(range(256)) * 16, data[:-200]):
        p.write_bytes(bad)
        with pytest.raises(UnsafeAsset) as exc:
            check_file(p, "fbx")
        assert "Nothing was imported" in exc.value.message and str(p) in exc.value.detail


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("texture_embedded.fbx", True),
        ("texture_absolute.fbx", False),
        ("texture_outside.fbx", False),
    ],
)
def test_texture_policy_in_both_paths(name: str, ok: bool, check_path: str) -> None:
    if ok:
        assert check_file(FIXTURES / name, "fbx").summary["meshes"] == 1
    else:
        with pytest.raises(UnsafeAsset, match="instead of embedding"):
            check_file(FIXTURES / name, "fbx")


# --- watermarking FBX ------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["zlib", "raw"])
def test_embed_verify_round_trip(blender_fbx: Path, tmp_path: Path, encoding: str) -> None:
    src = blender_fbx if encoding == "zlib" else _raw_vertices(blender_fbx, tmp_path / "raw.fbx")
    dst = tmp_path / "marked.fbx"
    report = embed_file(src, dst, PAYLOAD, KEY)
    assert (report.marked, report.too_small, report.total) == (1, 1, 2)
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"
    found = extract_file(dst, KEY)
    assert found.status == "found" and found.payload == PAYLOAD
    assert extract_file(src, KEY).status == "not_found"
    # only the marked Vertices array changed; every other property is byte-identical
    a, b = parse(src.read_bytes()), parse(dst.read_bytes())
    marked = {m.vertices_prop.start for m in meshes_of(a) if len(m.vertices) > 5000}
    changed = 0
    for (_, na), (_, nb) in zip(a.walk(), b.walk(), strict=True):
        assert na.name == nb.name and len(na.props) == len(nb.props)
        for pa, pb in zip(na.props, nb.props, strict=True):
            same = a.data[pa.start : pa.end] == b.data[pb.start : pb.end]
            changed += not same
            assert same or pa.start in marked
            if pa.start in marked:
                assert (pa.code, pa.encoding, pa.count) == (pb.code, pb.encoding, pb.count)
    assert changed == 1
    check_file(dst, "fbx")  # still passes the full check, ufbx included


def test_marked_fbx_imports_in_blender(blender_fbx: Path, tmp_path: Path) -> None:
    dst = tmp_path / "marked.fbx"
    embed_file(blender_fbx, dst, PAYLOAD, KEY)
    out = _bpy(BPY_IMPORT, str(dst))
    want = sorted(len(v) for v, _ in load_meshes(blender_fbx))
    assert f"VERTS {want}" in out


def test_ascii_and_broken_fbx_cannot_be_marked(tmp_path: Path) -> None:
    src = tmp_path / "a.fbx"
    src.write_bytes(b"; FBX 7.4.0 project file\nFBXHeaderExtension:  {\n}\n")
    with pytest.raises(WatermarkFormatError, match="ASCII FBX"):
        embed_file(src, tmp_path / "b.fbx", PAYLOAD, KEY)
    src.write_bytes((DEMO / "chair.fbx").read_bytes()[:5000])
    with pytest.raises(WatermarkFormatError, match="could not be read"):
        load_meshes(src)
    with pytest.raises(WatermarkFormatError):
        embed_file(tmp_path / "missing.fbx", tmp_path / "c.fbx", PAYLOAD, KEY)


def test_fbx6_model_meshes_are_read() -> None:
    """FBX 6.1 stores the mesh in ``Objects/Model`` (name, class) instead of Geometry."""

    def s(x: bytes) -> bytes:
        return b"S" + struct.pack("<I", len(x)) + x

    verts = _array_prop(b"d", 9, 0, struct.pack("<9d", 0, 0, 0, 1, 0, 0, 0, 1, 0))
    polys = _array_prop(b"i", 3, 0, struct.pack("<3i", 0, 1, ~2))
    at = 27 + 13 + len(b"Objects")
    model_at = at
    at += 13 + len(b"Model") + len(s(b"Model::tri") + s(b"Mesh"))
    v = _node(b"Vertices", verts, 1, b"", at)
    p = _node(b"PolygonVertexIndex", polys, 1, b"", at + len(v))
    model = _node(b"Model", s(b"Model::tri") + s(b"Mesh"), 2, v + p + b"\0" * 13, model_at)
    objects = _node(b"Objects", b"", 0, model + b"\0" * 13, 27)
    data = fbxtree.MAGIC + struct.pack("<I", 6100) + objects + b"\0" * 13
    [mesh] = meshes_of(parse(data))
    assert mesh.vertices.shape == (3, 3) and mesh.triangles.tolist() == [[0, 1, 2]]


def test_server_reuses_one_parsed_fbx_for_many_deliveries(
    blender_fbx: Path, tmp_path: Path
) -> None:
    """The server's cache path: parse and plan once, mark each delivery with its own payload."""
    from sealport.watermark.files import embed_prepared, prepare_file

    prepared = prepare_file(blender_fbx, plan=True)
    assert prepared.fbx is not None and len(prepared.meshes()) == 2
    assert prepared.nbytes > blender_fbx.stat().st_size
    before = [v.copy() for v, _ in prepared.meshes()]
    outs = []
    for i, payload in enumerate((PAYLOAD, bytes(reversed(PAYLOAD)))):
        dst = tmp_path / f"d{i}.fbx"
        report = embed_prepared(prepared, dst, payload, KEY)
        assert (report.marked, report.total) == (1, 2)
        assert verify_file(dst, KEY, payload).status == "verified"
        outs.append(dst.read_bytes())
    assert outs[0] != outs[1]
    assert all(np.array_equal(a, v) for a, (v, _) in zip(before, prepared.meshes(), strict=True))


def test_array_declaring_zero_values_does_not_inflate_its_bomb() -> None:
    """zlib reads max_length 0 as "no limit": a 0-count array must not inflate 64 MiB."""
    import tracemalloc

    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    t = parse(_file(_node(b"V", _array_prop(b"d", 0, 1, bomb), 1, b"", 27)))
    tracemalloc.start()
    try:
        with pytest.raises(FbxTreeError, match="does not hold"):
            t.array(t.roots[0].props[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


# --- review finding 2b: memory bounded by the file's size --------------------------------------
def test_property_count_is_bounded_by_the_file_size(tmp_path: Path, check_path: str) -> None:
    """300,000 one-byte properties (600 KB) would build ~42 MB of objects: refused first."""
    import tracemalloc

    from tests.watermark.hostile import fbx_many_properties

    data = fbx_many_properties(300_000)
    tracemalloc.start()
    try:
        with pytest.raises(FbxTreeError, match="more nodes and properties"):
            parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # refused on the declared count, before building any
    path = tmp_path / "props.fbx"
    path.write_bytes(data)
    with pytest.raises(UnsafeAsset, match="more nodes and properties"):
        check_file(path, "fbx")
    # the same count in a file large enough to hold it honestly is read
    assert parse(fbx_many_properties(100_000)).props == 100_000


def test_zlib_arrays_are_bounded_per_file(tmp_path: Path, check_path: str) -> None:
    """Five meshes of zlib-compressed zeros (~40 KB file) expand to >64 MiB: refused,
    by the check, by the watermark reader, and the server delivers it unmarked."""
    from sealport.server.watermarking import mark_delivery
    from sealport.watermark.files import prepare_file

    from tests.watermark.hostile import fbx_zlib_geometries

    src = tmp_path / "bomb.fbx"
    src.write_bytes(fbx_zlib_geometries(5, 400_002))
    with pytest.raises(UnsafeAsset, match="expands to more than"):
        check_file(src, "fbx")
    with pytest.raises(WatermarkFormatError, match="expands to more than"):
        prepare_file(src, plan=True)
    work = tmp_path / "work"
    work.mkdir()
    out, entry = mark_delivery(tmp_path, src, work, {"delivery_id": "d-bomb", "format": "fbx"})
    assert out == src and entry["status"] == "unmarked" and "expands" in entry["reason"]
    assert fbxtree.memory_budget(src.stat().st_size) == fbxtree.MEMORY_FLOOR
    # one such mesh fits the floor and is read (budget is per file, not per array)
    tree = parse(fbx_zlib_geometries(1, 400_002))
    assert len(meshes_of(tree)) == 1 and 0 < tree.charged <= tree.budget


def test_prepared_fbx_size_counts_its_node_tree(tmp_path: Path) -> None:
    """The server cache's size of a parsed FBX includes the node objects (review 2c)."""
    import gc
    import tracemalloc

    from sealport.watermark.files import prepare_file

    from tests.watermark.hostile import FbxNode, fbx_bytes, fbx_geometry, triangles_pvi
    from tests.watermark.meshgen import blob

    v, f = blob(4, seed=3)
    props = [FbxNode(b"P", [b"S\x01\x00\x00\x00a", b"I\x01\x00\x00\x00"]) for _ in range(15_000)]
    objects = FbxNode(b"Objects", [], [fbx_geometry(7, v, triangles_pvi(f)), *props])
    src = tmp_path / "many-nodes.fbx"
    src.write_bytes(fbx_bytes([objects]))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        prepared = prepare_file(src)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert prepared.fbx is not None and prepared.fbx.tree.nodes > 15_000
    assert held > 2 * (src.stat().st_size + v.nbytes * 2)  # the premise: objects dominate
    assert 0.7 * held <= prepared.nbytes <= 1.5 * held, (prepared.nbytes, held)


# --- review finding 3: 32-bit offsets, several meshes, duplicate arrays ------------------------
def test_pre_7500_output_past_4_gib_is_a_typed_refusal(tmp_path: Path) -> None:
    """A 7400 file just under 4 GiB (a sparse blob) whose marked vertices compress worse:
    the rewrite would need offsets past 2**32. WatermarkFormatError, nothing written,
    and no 4 GiB copy is built first (it would not fit this test's memory)."""
    import mmap

    from sealport.watermark.fbxmesh import FbxPrepared
    from sealport.watermark.files import PreparedFile, embed_prepared

    from tests.watermark.hostile import FbxNode, fbx_bytes, fbx_geometry, triangles_pvi
    from tests.watermark.meshgen import blob

    v, f = blob(4, seed=5)
    v = v.astype(np.float32).astype(np.float64)  # float32-exact doubles compress well
    mesh = fbx_bytes([FbxNode(b"Objects", [], [fbx_geometry(9, v, triangles_pvi(f))])])
    body = mesh[:-13]  # the closing null record comes after the blob node
    name, slack = b"Blob", 64
    prefix = len(body) + 13 + len(name) + 5
    blob_len = fbxtree.NARROW_LIMIT - slack - 13 - prefix
    end = prefix + blob_len
    head = struct.pack("<IIIB", end, 1, 5 + blob_len, len(name)) + name
    src = tmp_path / "huge.fbx"
    with open(src, "wb") as fh:
        fh.write(body + head + b"R" + struct.pack("<I", blob_len))
        fh.seek(end)  # the blob stays a hole: no disk, no memory
        fh.write(b"\0" * 13)
    assert src.stat().st_size == fbxtree.NARROW_LIMIT - slack
    dst = tmp_path / "marked.fbx"
    with open(src, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        tree = parse(data)
        prepared = PreparedFile(src, fbx=FbxPrepared(tree, tuple(meshes_of(tree))))
        with pytest.raises(WatermarkFormatError, match="larger than FBX 7400 can address") as err:
            embed_prepared(prepared, dst, PAYLOAD, KEY)
        assert "cannot carry a watermark" in err.value.message
        assert str(fbxtree.NARROW_LIMIT) in err.value.detail
        del tree, prepared
    assert not dst.exists()
    small = tmp_path / "small.fbx"  # the same mesh without the blob is marked
    small.write_bytes(mesh)
    assert embed_file(small, dst, PAYLOAD, KEY).marked == 1
    assert verify_file(dst, KEY, PAYLOAD).status == "verified"


def test_every_mesh_is_marked_and_duplicate_lists_are_refused(
    tmp_path: Path, check_path: str
) -> None:
    """Each mesh has its own Geometry and each is marked; a Geometry with a second
    Vertices/PolygonVertexIndex (which Blender and ufbx ignore, another reader may
    not) is refused instead of marking or checking only the first."""
    from tests.watermark.hostile import (
        FbxNode,
        fbx_bytes,
        fbx_geometry,
        fbx_mesh_file,
        prop_array,
        triangles_pvi,
    )
    from tests.watermark.meshgen import blob

    a, b = blob(4, seed=21), blob(4, seed=22)
    src, dst = tmp_path / "two.fbx", tmp_path / "two-marked.fbx"
    src.write_bytes(fbx_mesh_file([a, b]))
    report = embed_file(src, dst, PAYLOAD, KEY)
    assert (report.marked, report.total) == (2, 2)
    result = verify_file(dst, KEY, PAYLOAD)
    assert result.status == "verified" and [m.status for m in result.meshes] == ["verified"] * 2
    for name in (b"Vertices", b"PolygonVertexIndex"):
        geo = fbx_geometry(5, a[0], triangles_pvi(a[1]))
        values = b[0].reshape(-1) if name == b"Vertices" else triangles_pvi(b[1])
        code = b"d" if name == b"Vertices" else b"i"
        geo.children.append(FbxNode(name, [prop_array(code, values, compress=True)]))
        bad = tmp_path / "dup.fbx"
        bad.write_bytes(fbx_bytes([FbxNode(b"Objects", [], [geo])]))
        with pytest.raises(UnsafeAsset, match=f"more than one {name.decode()} list"):
            check_file(bad, "fbx")
        with pytest.raises(WatermarkFormatError, match="more than one"):
            embed_file(bad, tmp_path / "dup-marked.fbx", PAYLOAD, KEY)


def test_non_finite_positions_go_out_unmarked(tmp_path: Path) -> None:
    """A NaN vertex: a typed refusal and an unmarked delivery (a ValueError escaped before)."""
    from sealport.server.watermarking import mark_delivery

    from tests.watermark.hostile import fbx_mesh_file
    from tests.watermark.meshgen import blob

    v, f = blob(4, seed=11)
    v[7] = np.nan
    src = tmp_path / "nan.fbx"
    src.write_bytes(fbx_mesh_file([(v, f)]))
    with pytest.raises(WatermarkFormatError, match="NaN or infinite"):
        load_meshes(src)
    work = tmp_path / "work"
    work.mkdir()
    out, entry = mark_delivery(tmp_path, src, work, {"delivery_id": "d-nan", "format": "fbx"})
    assert out == src and entry["status"] == "unmarked" and "NaN" in entry["reason"]
