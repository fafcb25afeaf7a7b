"""The threaded watermark reader (sealport.watermark.parallel) equals the serial one bit for bit.

Why bit for bit: the server reads its marked file back with the same reader and the
client must see exactly what the server saw (a bin edge or a mean that moved in the
last bit could flip a marginal bin). So every comparison here is on the raw bytes of
the centre, the sorted norms and the weights, and on the full verify result.

``geometry._CENTRE_CHUNK`` is patched small in most tests so that meshes of a few
thousand triangles already span many blocks and the threads really split the work
(the serial path sums per block too, so both see the same blocks).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealport.watermark import derive_delivery_key, embed, geometry, mark, parallel, verify

from tests.watermark.meshgen import blob, bumpy_torus, unweld

MESHES = Path(__file__).resolve().parents[1].parent / "shared" / "meshes"
PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True)
def _restore_configuration():
    yield
    parallel.configure(None)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(geometry, "_CENTRE_CHUNK", 97)


def _same_norms(a: mark._Norms | None, b: mark._Norms | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.centre.tobytes() == b.centre.tobytes()
    assert a.rho.dtype == b.rho.dtype and a.rho.tobytes() == b.rho.tobytes()
    assert a.m == b.m
    assert (a.weight is None) == (b.weight is None)
    if a.weight is not None and b.weight is not None:
        assert np.array_equal(a.weight, b.weight)


def _check_all_paths(
    v: np.ndarray, t: np.ndarray, frame: geometry.CentreKind = "corner"
) -> mark._Norms | None:
    """One thread vs 2 and 3: the front end (in ``frame``), and its three parts
    against the plain serial functions of geometry (the independent reference)."""
    serial = mark._read_norms(v, t, threads=1, frame=frame)
    for k in (1, 2, 3):
        _same_norms(serial, mark._read_norms(v, t, threads=k, frame=frame))
        used, centre = parallel.referenced_and_centre(v, t, k)
        assert np.array_equal(used, geometry.corner_counts(len(v), t) > 0)
        assert centre.tobytes() == geometry.corner_centre(v, t).tobytes()
        used1, centre1 = parallel.referenced_and_centre(v, t, k, "area")  # scheme v1
        assert np.array_equal(used1, geometry.referenced(len(v), t))
        assert centre1.tobytes() == geometry.area_centre(v, t).tobytes()
        assert parallel.norms(v, centre, k).tobytes() == geometry.norms(v, centre).tobytes()
    return serial


# --- meshes with copies, near copies, tied norms, unreferenced vertices -----------------
@st.composite
def meshes(draw):
    """Random meshes built to hit every branch of the reader's front end."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(3, 3000))
    kind = draw(st.sampled_from(["random", "lattice", "symmetric"]))
    if kind == "random":
        v = rng.normal(size=(n, 3))
    elif kind == "lattice":  # few distinct coordinates: many exactly tied norms
        v = rng.integers(-3, 4, size=(n, 3)).astype(np.float64) * 0.25
    else:  # mirrored halves about the origin: equal norms at distinct positions
        half = rng.normal(size=(max(1, n // 2), 3))
        v = np.concatenate([half, -half, half * [1, -1, 1]])
    copies = draw(st.floats(0.0, 0.9))
    if copies and len(v) > 1:  # exporter copies: bitwise-equal positions
        pick = rng.integers(0, len(v), int(copies * len(v)))
        v = np.concatenate([v, v[pick]])
    if draw(st.booleans()):  # near copies: one ulp away (distinct positions, near ties)
        pick = rng.integers(0, len(v), max(1, len(v) // 5))
        v = np.concatenate([v, np.nextafter(v[pick], np.inf)])
    if draw(st.booleans()):
        v = v.astype(np.float32)
    n_tris = draw(st.integers(1, 4000))
    hi = len(v) if draw(st.booleans()) else max(1, len(v) // 2)  # unreferenced tail or not
    t = rng.integers(0, hi, size=(n_tris, 3))
    if draw(st.booleans()):
        t = t.astype(np.uint32)
    v = v[rng.permutation(len(v))] if draw(st.booleans()) else v
    return v, t


@PROPS
@given(meshes())
def test_threaded_front_end_is_bit_identical(small_blocks, mesh):
    v, t = mesh
    _check_all_paths(v, t)


@PROPS
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 20_000),
    st.sampled_from(["wide", "narrow", "constant", "floats"]),
    st.integers(2, 5),
)
def test_sort_keys_equals_numpy_sort(seed, n, kind, threads):
    rng = np.random.default_rng(seed)
    if kind == "wide":
        k = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    elif kind == "narrow":  # heavy duplicates, pivots land on runs of equal keys
        k = rng.integers(0, 3, n).astype(np.int64)
    elif kind == "constant":
        k = np.full(n, 7, np.int64)
    else:  # non-negative float64 norms, as the reader sorts them
        k = np.abs(rng.normal(size=n)).round(rng.integers(1, 6)).view(np.int64)
    got = parallel.sort_keys(k, threads)
    assert got.tobytes() == np.sort(k).tobytes()


def test_sort_keys_refuses_other_dtypes():
    with pytest.raises(ValueError):
        parallel.sort_keys(np.zeros(10), 2)


def test_soup_fallback_and_exporter_copies(small_blocks):
    """Triangle soup (every corner per triangle) goes through the pair sort; exporter
    copies and a symmetric box through the tie handling; all equal to the serial path.
    The box ties in v1's frame (its area centre is its centre of symmetry to the last
    bit; v2's frame is offset into general position, where it does not)."""
    v, f = blob(4, seed=5)
    soup = (v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3))
    assert mark._mostly_copies(soup[0])
    box = trimesh.creation.box().subdivide().subdivide().subdivide()
    bv, bf = np.asarray(box.vertices), np.asarray(box.faces)
    out = [_check_all_paths(*m) for m in (soup, unweld(v, f, 0.3, seed=2))]
    out.append(_check_all_paths(bv, bf, "area"))
    assert out[2] is not None and out[2].weight is not None and (out[2].weight > 1).any()


def _mesh_file(name: str) -> tuple[np.ndarray, np.ndarray]:
    m = trimesh.load(str(MESHES / name), process=False)
    return np.asarray(m.vertices), np.asarray(m.faces, np.int64)


@pytest.mark.parametrize("name", ["bunny.ply", "fandisk.obj", "suzanne.ply"])
def test_real_meshes(small_blocks, name):
    v, f = _mesh_file(name)
    for verts in (v, v.astype(np.float32)):
        assert _check_all_paths(verts, f) is not None


def test_verify_is_identical_on_a_marked_mesh_above_the_threshold():
    """End to end with the real block size: a marked mesh of more than
    PARALLEL_MIN_TRIANGLES triangles takes the threaded path by default, and the
    observation and verdict equal the one-thread run bit for bit."""
    v, t = bumpy_torus(400, 340, seed=9)  # 136,000 vertices, 272,000 triangles
    assert len(t) >= parallel.PARALLEL_MIN_TRIANGLES
    key, payload = derive_delivery_key(b"s" * 32, "d-par"), b"p" * 8
    marked = embed(v, t, payload, key).astype(np.float32)
    t32 = t.astype(np.uint32)
    assert parallel.threads_for(len(t32), None) == parallel.default_threads()
    one = mark._observe(marked, t32, key, 64, threads=1)
    two = mark._observe(marked, t32, key, 64, threads=2)
    assert one is not None and two is not None
    for a, b in zip(vars(one).values(), vars(two).values(), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    parallel.configure(1)
    r1 = verify(marked, t32, key, payload)
    parallel.configure(2)
    r2 = verify(marked, t32, key, payload)
    assert r1 == r2 and r1.status == "verified"


# --- configuration and the runner --------------------------------------------------------
def test_thread_count_configuration(monkeypatch):
    monkeypatch.delenv(parallel.ENV_THREADS, raising=False)
    assert parallel.configured_threads() == parallel.default_threads() <= 2
    monkeypatch.setenv(parallel.ENV_THREADS, "3")
    assert parallel.configured_threads() == 3
    monkeypatch.setenv(parallel.ENV_THREADS, "junk")
    assert parallel.configured_threads() == parallel.default_threads()
    parallel.configure(1)
    assert parallel.configured_threads() == 1
    assert parallel.threads_for(10**7, None) == 1
    assert parallel.threads_for(10, 4) == 4
    parallel.configure(None)
    monkeypatch.setenv(parallel.ENV_THREADS, "2")
    assert parallel.threads_for(10, None) == 1  # small meshes stay serial by default
    with pytest.raises(ValueError):
        parallel.configure(0)
    with pytest.raises(ValueError):
        parallel.threads_for(10, 0)


def test_run_all_waits_for_every_task_before_raising():
    """A failing task must not leave a worker writing into the caller's buffers."""
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow() -> str:
        started.set()
        release.wait(5)
        done.append("slow")
        return "slow"

    def fail() -> str:
        started.wait(5)
        release.set()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        parallel.run_all([fail, slow])
    assert done == ["slow"]
    assert parallel.run_all([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]


def test_helpers_run_at_the_callers_priority():
    """A niced caller (the server's background pre-marking) gets niced helpers, and a
    normal caller afterwards normal ones: no shared pool carries a priority over."""
    import os

    def nice_here() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen: dict[str, list[int]] = {}

    def niced_caller() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice_here() + 5)
        seen["niced"] = parallel.run_all([nice_here, nice_here, nice_here])

    t = threading.Thread(target=niced_caller)
    t.start()
    t.join()
    base = nice_here()
    assert seen["niced"] == [base + 5] * 3
    assert parallel.run_all([nice_here, nice_here]) == [base, base]
