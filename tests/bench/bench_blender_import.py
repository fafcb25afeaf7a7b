"""Benchmark: Secure Import of a ~100 MB GLB in Blender vs plain ``import_scene.gltf``.

Not a test (no timing asserts). Run from the repo's venv:

    python tests/bench/bench_blender_import.py [--mb 100] [--rounds 2] [--write-docs]

It starts the real reference server (TLS 1.3, loopback) and a private
gnome-keyring, writes a GLB of a triangulated grid (float32 positions, uint32
indices) of about --mb MB, adds it to the server, builds the extension zip
and starts the clean Blender (``build/blender-venv``, see tests/blender).
Inside that one Blender process, after installing the zip and signing in, it
times, interleaved, --rounds times each:

  plain    bpy.ops.import_scene.gltf(filepath=<the original file>)
  secure   click Secure Import -> delivery, download, decrypt, hash and format
           checks, watermark check, then the same glTF import, until the
           objects are in the scene (the add-on's timer is pumped every 50 ms)

Each round starts from an empty scene and purges orphan data. The ratio is
median(secure) / median(plain); target <= 1.3. ``--write-docs`` replaces the
section between <!-- blender:begin/end --> in docs/BENCHMARKS.md.

Each configuration (server watermarking on / off) runs in its own server and
Blender process, one after the other; its ratio is against the plain imports
of the same process (interleaved with it). Processes drift (up to ~20 % here
between two runs a minute apart), so pooling both processes' plain runs mixed
that drift into the ratio; the docs give the pooled figure too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- blender:begin -->", "<!-- blender:end -->"


def write_grid_glb(path: Path, target_mb: float) -> int:
    """A single-mesh GLB of an n x n vertex grid; returns the vertex count."""
    import numpy as np

    n = int((target_mb * 1e6 / 36) ** 0.5)  # 12 B position + 24 B of indices per vertex
    xs = np.linspace(-1, 1, n, dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    gz = (0.05 * np.sin(gx * 13) * np.cos(gy * 7)).astype(np.float32)
    pos = np.stack([gx, gz, gy], axis=-1).reshape(-1, 3)
    i = np.arange(n * n, dtype=np.uint32).reshape(n, n)[:-1, :-1].ravel()
    tris = np.stack([i, i + n, i + 1, i + 1, i + n, i + n + 1], axis=-1).astype(np.uint32).ravel()
    pos_b, idx_b = pos.tobytes(), tris.tobytes()
    gltf = {
        "asset": {"version": "2.0", "generator": "sealport bench"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "grid"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(pos_b) + len(idx_b)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_b), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos_b), "byteLength": len(idx_b), "target": 34963},
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": n * n,
                "type": "VEC3",
                "min": pos.min(0).tolist(),
                "max": pos.max(0).tolist(),
            },
            {"bufferView": 1, "componentType": 5125, "count": len(tris), "type": "SCALAR"},
        ],
    }
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    binary = pos_b + idx_b
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, total))
        fh.write(struct.pack("<I4s", len(js), b"JSON") + js)
        fh.write(struct.pack("<I4s", len(binary), b"BIN\0") + binary)
    return n * n


# --- inside Blender -------------------------------------------------------------------
def in_blender(spec_path: str) -> None:
    import bpy

    sys.path.insert(0, str(REPO / "tests" / "blender"))
    import driver

    spec = json.loads(Path(spec_path).read_text())
    driver.install(spec)
    driver.sign_in(spec)

    def fresh() -> None:
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.outliner.orphans_purge(do_recursive=True)

    import gc

    gc_time = [0.0, 0]  # seconds inside the cyclic GC, collections (this process)
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_start[0]
            gc_time[1] += 1

    gc.callbacks.append(on_gc)
    parent_stat = Path(f"/proc/{os.getppid()}/stat")
    tick = os.sysconf("SC_CLK_TCK")

    def parent_cpu() -> float:  # the bench host: its server threads (and pool refills)
        try:
            fields = parent_stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            return float("nan")

    import resource

    def probe() -> tuple[float, ...]:
        me = resource.getrusage(resource.RUSAGE_THREAD)
        return (
            time.perf_counter(),
            time.thread_time(),
            time.process_time(),
            parent_cpu(),
            gc_time[0],
            float(gc_time[1]),
            me.ru_utime,
            me.ru_stime,
            float(me.ru_minflt),
            float(me.ru_nivcsw),
            float(me.ru_nvcsw),
        )

    def cost(before: tuple[float, ...]) -> dict[str, float]:
        """Where an import's wall time went: this (main) thread's CPU, the other threads
        of Blender, the server's process, the cyclic GC."""
        after = probe()
        d = [b - a for a, b in zip(before, after, strict=True)]
        return {
            "wall": d[0],
            "main cpu": d[1],
            "other threads cpu": d[2] - d[1],
            "server cpu": d[3],
            "gc s": d[4],
            "gc runs": d[5],
            "main user": d[6],
            "main sys": d[7],
            "main page faults": d[8],
            "main preempted": d[9],
            "main waits": d[10],
        }

    def plain() -> float:
        fresh()
        t, start = time.perf_counter(), time.time()
        before = probe()
        bpy.ops.import_scene.gltf(filepath=spec["file"])
        plain_costs.append(cost(before))
        plain_spans.append((start, time.time()))
        return time.perf_counter() - t

    hooks = driver.mod("import_hooks").HOOKS
    real_gltf = hooks["glb"]

    def timed_gltf(path: Any) -> None:  # Blender's importer alone, inside the secure path
        w = time.perf_counter()
        before = probe()
        real_gltf(path)
        stages[-1]["importer s"] = time.perf_counter() - w
        secure_costs.append(cost(before))

    hooks["glb"] = timed_gltf

    def secure() -> float:
        fresh()
        stages.append({})
        t = time.perf_counter()
        bpy.ops.sealport.secure_import(asset_id=spec["asset_id"])
        seen = stages[-1]

        def idle_noting_stages() -> bool:
            job = driver.mod("jobs").running()
            if job is not None:
                seen.setdefault(job.stage, time.perf_counter() - t)
                if not getattr(job, "_bench_timed", False):
                    job._bench_timed = True
                    on_done = job.on_done

                    def timed_done(value: Any) -> None:  # the main-thread import
                        seen["host import"] = time.perf_counter() - t
                        on_done(value)
                        seen["host import ended"] = time.perf_counter() - t

                    job.on_done = timed_done
            return job is None

        driver.pump_until(idle_noting_stages, timeout=1800, draw=False)
        elapsed = time.perf_counter() - t
        msg = driver.last_message()
        assert msg and msg[0] == "INFO", msg
        return elapsed

    times: dict[str, list[float]] = {"plain": [], "secure": []}
    stages: list[dict[str, float]] = []
    plain_spans: list[tuple[float, float]] = []  # epoch: did a server refill overlap one?
    plain_costs: list[dict[str, float]] = []
    secure_costs: list[dict[str, float]] = []  # Blender's importer inside the secure path
    for _ in range(spec["rounds"]):
        times["plain"].append(plain())
        times["secure"].append(secure())
    verts = sum(len(o.data.vertices) for o in bpy.data.objects if o.type == "MESH")
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "times": times,
                "vertices": verts,
                "stages": stages,
                "plain_spans": plain_spans,
                "importer_costs": {"plain": plain_costs, "secure": secure_costs},
                "blender": bpy.app.version_string,
            }
        )
    )


# --- host side ------------------------------------------------------------------------
def run_config(
    args: argparse.Namespace, work: Path, glb: Path, zip_path: str, watermark: bool
) -> dict[str, Any]:
    """One server (with or without per-delivery watermarking) and one Blender process."""
    from sealport.server import ServerSettings
    from sealport.server.watermarking import disabled, make_hook

    from tests.blender.conftest import blender_env
    from tests.fixtures.secret_service import SecretService
    from tests.fixtures.server import start_sealport_server

    tag = "wm" if watermark else "nowm"
    hook_times: list[tuple[float, float]] = []
    check_times: list[tuple[float, float]] = []
    premarked = {} if args.premarked is None else {"premarked": args.premarked}
    studio_hook = make_hook(work / f"server-{tag}", **premarked)  # the default hook

    def timed_hook(src: Path, workdir: Path, info: dict[str, Any]) -> Any:
        """The server's default watermark hook, timed (wall, this thread's CPU): the
        marking, then its deferred check (which sealing runs beside the encryption)."""
        w, c = time.perf_counter(), time.thread_time()
        out = studio_hook(src, workdir, info)
        hook_times.append((time.perf_counter() - w, time.thread_time() - c))
        if len(out) < 3:
            return out
        path, entry, check = out

        def timed_check() -> Any:
            w2, c2 = time.perf_counter(), time.thread_time()
            try:
                return check()
            finally:
                check_times.append((time.perf_counter() - w2, time.thread_time() - c2))

        return path, entry, timed_check

    timed_hook.premarks = studio_hook.premarks  # type: ignore[attr-defined]  # the pool, as served
    settings = ServerSettings(
        device_interval=1,
        watermark=timed_hook if watermark else disabled,
        **{f"watermark_{k}": n for k, n in premarked.items()},
    )
    keyring = SecretService(root=work / f"keyring-{tag}")
    server = start_sealport_server(work / f"server-{tag}", settings=settings)
    try:
        asset = server.add_asset(glb, name="bench-grid", project="bench", fmt="glb")
        keyring.start_bus()
        keyring.start_keyring(unlock=True)
        home = work / f"profile-{tag}"
        home.mkdir()
        shutil.copy(server.client_config_path, home / "sealport.toml")
        spec = {
            "zip": zip_path,
            "config": str(home / "sealport.toml"),
            "ca_file": str(server.ca_file),
            "username": server.username,
            "password": server.password,
            "secrets_out": str(work / f"unused-{tag}.json"),
            "file": str(glb),
            "asset_id": asset.asset_id,
            "rounds": args.rounds,
            "out": str(work / f"bench-{tag}.json"),
        }
        (work / f"spec-{tag}.json").write_text(json.dumps(spec))
        done = subprocess.run(
            [str(args.blender_python), __file__, "--in-blender", str(work / f"spec-{tag}.json")],
            env=blender_env(work / f"blender-user-{tag}", keyring.subprocess_env()),
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise SystemExit(done.stdout[-3000:] + done.stderr[-5000:])
        res: dict[str, Any] = json.loads(Path(spec["out"]).read_text())
        res["hook_times"] = hook_times
        res["check_times"] = check_times
        pool = studio_hook.premarks  # type: ignore[attr-defined]
        res["refills"], res["refill_overlaps_plain"] = [], 0
        if pool is not None:  # None with --premarked 0: no background refills
            pool.wait_idle(600)
            res["refills"] = list(zip(pool.stats.wall, pool.stats.cpu, strict=True))
            res["refill_overlaps_plain"] = sum(
                1
                for a, b in pool.stats.spans
                for c, d in res["plain_spans"]
                if a < d and c < b  # a refill ran while a plain import ran
            )
        return res
    finally:
        server.stop()
        keyring.stop()


def row(label: str, times: list[float]) -> str:
    return f"| {label} | {', '.join(f'{t:.2f}' for t in times)} | {statistics.median(times):.2f} |"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument(
        "--note", default="", help="a sentence for the docs, e.g. 'Measured under load: ...'"
    )
    ap.add_argument(
        "--premarked",
        type=int,
        help="server's watermark_premarked (diagnostic: 0 = no background refill, every "
        "delivery marked and encrypted on request); default: the server's default",
    )
    ap.add_argument(
        "--blender-python", type=Path, default=REPO / "build" / "blender-venv" / "bin" / "python"
    )
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="sealport-bench-blender-", dir="/var/tmp"))
    try:
        glb = work / "grid.glb"
        verts = write_grid_glb(glb, args.mb)
        size_mb = glb.stat().st_size / 1e6
        print(f"GLB {size_mb:.1f} MB, {verts:,} vertices")
        zip_path = (
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "packaging" / "build_blender.py"),
                    "--platform",
                    "linux-x64",
                    "--out",
                    str(work / "dist"),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results = {wm: run_config(args, work, glb, zip_path, wm) for wm in (True, False)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()[0]
    on, off = results[True], results[False]
    # Each configuration has its own server and Blender process, run one after the
    # other: its Secure Import is compared with the plain imports of the same process
    # (interleaved with it), not with the other process's (which drift by up to ~20 %).
    plain_on = statistics.median(on["times"]["plain"])
    plain_off = statistics.median(off["times"]["plain"])
    ratio_on = statistics.median(on["times"]["secure"]) / plain_on
    ratio_off = statistics.median(off["times"]["secure"]) / plain_off

    def stages(res: dict[str, Any]) -> str:
        rounds = []
        for i, st in enumerate(res["stages"]):
            seen = ", ".join(f"{k} {v:.2f}" for k, v in st.items())
            rounds.append(f"round {i + 1}: {seen}, done {res['times']['secure'][i]:.2f}")
        return "; ".join(rounds)

    lines = [
        BEGIN,
        "## Blender: Secure Import vs plain glTF import",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {_cpus()} CPUs, "
        f"Blender {on['blender']} (bpy from PyPI, headless), Python 3.11; "
        f"`python tests/bench/bench_blender_import.py --mb {args.mb:g} --rounds {args.rounds} --write-docs`.",
        f"File: one GLB of {size_mb:.1f} MB ({verts:,} vertices, {2 * (int(verts**0.5) - 1) ** 2:,} "
        "triangles), served by the reference server over TLS 1.3 on loopback (server and "
        "Blender share the machine's CPUs). Two configurations, one after the other, each "
        "with its own server and Blender process; within a process plain and secure runs "
        "are interleaved, each from an empty scene. "
        f"1-minute load average at start / end: {load_start:.2f} / {load_end:.2f}."
        + (f" {args.note}" if args.note else ""),
        "",
        "| | runs (s) | median (s) |",
        "|---|---|---|",
        row("plain `import_scene.gltf` (Blender process 1)", on["times"]["plain"]),
        row(
            "Secure Import, server watermarks each delivery (default; process 1)",
            on["times"]["secure"],
        ),
        row("plain `import_scene.gltf` (Blender process 2)", off["times"]["plain"]),
        row("Secure Import, server watermarking off (process 2)", off["times"]["secure"]),
        "",
        f"**Ratio secure / plain: {ratio_on:.2f} with per-delivery watermarking, {ratio_off:.2f} "
        "without** (target <= 1.3; each the median Secure Import over the median plain import "
        "of the same Blender process, run interleaved with it; over all plain imports of both "
        f"processes: {statistics.median(on['times']['secure']) / statistics.median(on['times']['plain'] + off['times']['plain']):.2f} "
        f"and {statistics.median(off['times']['secure']) / statistics.median(on['times']['plain'] + off['times']['plain']):.2f}). Secure Import = delivery request (the server seals, and "
        "watermarks, a copy for this user), download, age decrypt, size and SHA-256 checks, GLB "
        "safe reader, watermark check, then the same glTF importer. All but the glTF import run "
        "off Blender's main thread.",
        "",
        "Where the time goes (seconds since the click when the add-on's progress first showed "
        "each stage; `request` lasts until the server's sealed delivery is ready, `host import` "
        "is when the verified file went to Blender's glTF importer on the main thread):",
        f"with watermarking: {stages(on)}. Without: {stages(off)}.",
        "",
        "Server watermarking (wall / CPU of its thread, s). On request, only when no copy "
        "was marked ahead (the first delivery; it also parses the asset and makes its embed "
        "plan): marking "
        + (", ".join(f"{w:.2f} / {c:.2f}" for w, c in on["hook_times"]) or "none")
        + "; its check of the written file, run beside the encryption: "
        + (", ".join(f"{w:.2f} / {c:.2f}" for w, c in on["check_times"]) or "none")
        + ". In the background after each delivery, marking and checking the next "
        "delivery's copy (server/premark.py, at lower CPU priority while the client "
        "downloads, checks and imports): "
        + (", ".join(f"{w:.2f} / {c:.2f}" for w, c in on["refills"]) or "none")
        + f"; refills that overlapped a plain import: {on['refill_overlaps_plain']}. "
        f"Secure Import rounds that took a pre-marked copy: {len(on['times']['secure']) - len(on['hook_times'])} "
        f"of {len(on['times']['secure'])}.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    for label, res in (("watermarking", on), ("no watermarking", off)):
        print(f"Blender's glTF importer, {label} (median [min-max] per round):")
        for kind, costs in res["importer_costs"].items():
            print(f"  {kind}:")
            for key in costs[0] if costs else ():
                vals = [c[key] for c in costs]
                print(
                    f"    {key:18s} {statistics.median(vals):7.3f} "
                    f"[{min(vals):.3f}-{max(vals):.3f}]"
                )
    if args.write_docs:
        text = DOC.read_text()
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        DOC.write_text(text)
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--in-blender":
        in_blender(sys.argv[2])
    else:
        raise SystemExit(main())
