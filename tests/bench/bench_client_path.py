"""Benchmark: the client's critical path of a Secure Import after the manifest arrives.

Not a test (no timing asserts); nothing is written to docs/BENCHMARKS.md. Run:

    python tests/bench/bench_client_path.py [--mb 100] [--repeats 5] [--no-e2e]
        [--premarked 1 --pause 4]

On the ~100 MB grid GLB of tests/bench/bench_blender_import.py (``write_grid_glb``):

1. **reader**: the watermark check's stages on a marked copy (GLB read, the
   referenced-vertex + area-centre pass, norms, norm sort, whole ``_read_norms``,
   whole ``verify_file``; ``_read_norms`` and ``verify_file`` also with the server's
   signed reader hints, i.e. what the client runs for a manifest that carries
   them: no triangle pass), with the reader on 1 thread and on 2 threads
   (``sealport.watermark.parallel``), interleaved, wall and CPU (user + sys of the
   process, all threads) per repeat.
2. **e2e** (unless ``--no-e2e``): real reference server in a child process (TLS 1.3
   loopback, watermarking on, by default without pre-marked copies so that no
   background refill competes with the client), one signed-in client here; each round is
   a whole ``secure_import``; the importer's steps are timed (download alone,
   download + decrypt, format check, watermark check) for the four combinations
   of streaming decrypt on/off (``sealport.stream_decrypt.ENABLED``) and reader
   threads 1/2, interleaved; "decrypt tail" is download + decrypt minus the
   download alone (what the decrypt adds to the critical path).

The machine is shared: the 1-minute load average is printed with every row; prefer
the CPU columns and the minima when comparing, and re-run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "core")]

from tests.bench.bench_blender_import import write_grid_glb  # noqa: E402

SERVER = """
import sys, json, time
from pathlib import Path
from sealport.server import seed_demo, start_background
from sealport.server.store import add_asset
from sealport.server.settings import ServerSettings
data = Path(sys.argv[1]); glb = Path(sys.argv[2]); premarked = int(sys.argv[3])
user, password = seed_demo(data)
rec = add_asset(data, glb, name="grid", project="bench", fmt="glb")
srv = start_background(data, settings=ServerSettings(watermark_premarked=premarked))
print(json.dumps({"user": user, "password": password, "asset_id": rec.asset_id,
                  "ca": str(srv.ca_file)}), flush=True)
while True:
    time.sleep(3600)
"""


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def summary(rows: list[tuple[float, float]]) -> str:
    walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
    return (
        f"wall min {min(walls):.3f} med {statistics.median(walls):.3f}  "
        f"cpu min {min(cpus):.3f} med {statistics.median(cpus):.3f}"
    )


def bench_reader(marked: Path, key: bytes, payload: bytes, repeats: int) -> None:
    import numpy as np
    from sealport.watermark import (
        geometry,
        glb,
        mark,
        parallel,
        parse_reader_hints,
        reader_hints,
        verify_file,
    )
    from sealport.watermark.manifest import reader_json

    lay = glb.read(marked)
    assert lay is not None
    v, t = lay.meshes[0].vertices, lay.meshes[0].triangles
    centre = geometry.area_centre(v, t)
    keys = geometry.norms(v, centre).view(np.int64)
    # The hints as the client gets them: the server's read-back, through manifest JSON.
    signed = json.loads(
        json.dumps({"reader": reader_json(reader_hints(verify_file(marked, key, payload)))})
    )
    hints = parse_reader_hints(signed)
    assert hints is not None and hints[0] is not None and hints[0].all_referenced, hints
    stages: dict[str, Callable[[int], Any]] = {
        "glb.read": lambda n: glb.read(marked),
        "referenced + centre": lambda n: (
            (geometry.referenced(len(v), t), geometry.area_centre(v, t))
            if n == 1
            else parallel.referenced_and_centre(v, t, n)
        ),
        "norms": lambda n: parallel.norms(v, centre, n),
        "norm sort": lambda n: parallel.sort_keys(keys, n),
        "_read_norms": lambda n: mark._read_norms(v, t, threads=n),
        "_read_norms + hint": lambda n: mark._read_norms(v, t, threads=n, hint=hints[0]),
    }
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for name, fn in stages.items():
            for n in (1, 2):
                w, c, _ = timed(lambda fn=fn, n=n: fn(n))
                results.setdefault((name, n), []).append((w, c))
        for n in (1, 2):
            parallel.configure(n)
            w, c, r = timed(lambda: verify_file(marked, key, payload))
            assert r.status == "verified", r
            results.setdefault(("verify_file", n), []).append((w, c))
        for n in (1, 2):
            parallel.configure(n)
            w, c, r = timed(lambda: verify_file(marked, key, payload, reader=hints))
            assert r.status == "verified", r
            results.setdefault(("verify_file + hints", n), []).append((w, c))
    parallel.configure(None)
    print(f"reader, {len(v):,} vertices, {len(t):,} triangles, {repeats} repeats:")
    for (name, n), rows in results.items():
        print(f"  {name:22s} threads={n}  {summary(rows)}")
    print(f"  (load average {os.getloadavg()[0]:.2f})")


def bench_e2e(glb_path: Path, repeats: int, premarked: int, pause: float = 0.0) -> None:
    import sealport.importer as imp
    import sealport.stream_decrypt as sd
    from sealport.watermark import parallel

    from tests.bench.bench_download import signed_in_client

    work = Path(tempfile.mkdtemp(prefix="sealport-bench-client-"))
    (work / "server").mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'core'}"}
    cmd = [sys.executable, "-c", SERVER, str(work / "server"), str(glb_path), str(premarked)]
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=work, env=env)
    timing: dict[str, tuple[float, float]] = {}
    originals: dict[str, Any] = {}

    def wrap(name: str) -> None:
        fn = originals[name] = getattr(imp, name)

        def timed_step(*a: Any, **k: Any) -> Any:
            w, c, out = timed(lambda: fn(*a, **k))
            timing[name] = (w, c)
            return out

        setattr(imp, name, timed_step)

    try:
        assert srv.stdout is not None
        info = json.loads(srv.stdout.readline())
        client = signed_in_client(work, info)
        steps = (
            "request_delivery",
            "fetch_manifest",
            "verify_manifest",
            "download_and_decrypt",
            "download_ciphertext",
            "check_format",
            "check_watermark",
        )
        for name in steps:
            wrap(name)
        modes = [(False, 1), (True, 2), (True, 1), (False, 2)]
        rows: dict[tuple[bool, int], list[dict[str, float]]] = {}
        for i in range(repeats * len(modes) + 1):
            stream, threads = modes[i % len(modes)]
            sd.ENABLED = stream
            parallel.configure(threads)
            timing.clear()
            time.sleep(pause)  # lets the server's pool refill, as the time between imports does
            out = work / f"out{i}"
            w0, c0 = time.perf_counter(), time.process_time()
            result = client.secure_import(info["asset_id"], out)
            total, cpu = time.perf_counter() - w0, time.process_time() - c0
            assert result.watermark_status == "verified", result.watermark_status
            shutil.rmtree(out)
            if i == 0:
                continue  # warm-up
            dl = timing["download_ciphertext"][0]
            both = timing["download_and_decrypt"]
            rows.setdefault((stream, threads), []).append(
                {
                    "request (sealing)": timing["request_delivery"][0],
                    "manifest fetch+verify": timing["fetch_manifest"][0]
                    + timing["verify_manifest"][0],
                    "download": dl,
                    "decrypt tail": both[0] - dl,
                    "download+decrypt cpu": both[1],
                    "watermark": timing["check_watermark"][0],
                    "watermark cpu": timing["check_watermark"][1],
                    "format": timing["check_format"][0],
                    "whole import": total,
                    "whole import cpu": cpu,
                    "load": os.getloadavg()[0],
                }
            )
        print(
            f"e2e secure_import, server pre-marked copies {premarked}, {repeats} rounds per "
            "mode (seconds; median [min-max]):"
        )
        for (stream, threads), rs in rows.items():
            print(f"  streaming decrypt {'on ' if stream else 'off'}, reader threads {threads}:")
            for key in rs[0]:
                vals = [r[key] for r in rs]
                print(
                    f"    {key:22s} {statistics.median(vals):.3f} [{min(vals):.3f}-{max(vals):.3f}]"
                )
    finally:
        for name, fn in originals.items():
            setattr(imp, name, fn)
        sd.ENABLED = True
        parallel.configure(None)
        srv.kill()
        srv.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument(
        "--premarked",
        type=int,
        default=0,
        help="server's pre-marked copies per asset (default 0: marking in the request, so "
        "no background refill competes with the client's path being measured)",
    )
    ap.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds between rounds (with --premarked: time for the pool to refill)",
    )
    args = ap.parse_args()
    from sealport.watermark import derive_delivery_key, embed_file

    with tempfile.TemporaryDirectory(prefix="sealport-bench-") as tmp:
        src, marked = Path(tmp) / "grid.glb", Path(tmp) / "marked.glb"
        n = write_grid_glb(src, args.mb)
        key, payload = derive_delivery_key(b"s" * 32, "bench-delivery"), b"p" * 8
        embed_file(src, marked, payload, key)
        print(f"GLB {src.stat().st_size / 1e6:.1f} MB, {n:,} vertices; CPUs {os.cpu_count()}")
        bench_reader(marked, key, payload, args.repeats)
        if not args.no_e2e:
            bench_e2e(src, args.repeats, args.premarked, args.pause)


if __name__ == "__main__":
    main()
