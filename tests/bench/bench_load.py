"""Load test on loopback (issue 6, "Load"): concurrent clients sign in, list, download.

Run from the repository root::

    .venv/bin/python -m tests.bench.bench_load --clients 50 --budget 300

The reference server runs in its own process (``serve_forever``, the code
behind ``sealport serve``, default settings except a 1 s device-flow poll
interval), so client threads and server do not share a GIL. Each client is a
thread with its own demo-marked profile folder (DemoFileStore), its own user
account, and does: device-flow sign-in approved through the verification page,
``--lists`` catalogue listings, ``--imports`` secure imports of a small STL
(with the server's default forensic watermark). Bounded by ``--budget``
seconds: clients stop starting operations when it runs out.

Reported: p50/p99/max latency per operation, throughput, errors by code.
Then the server ledger is checked: every delivery a client was handed exists
exactly once in ``deliveries`` and has exactly one ``delivery_sealed`` server
audit event; no ledger delivery is unaccounted for; every verified import the
clients performed arrived exactly once as a client ``import.verified`` event.
``run_load`` is also used by the (small) default-suite test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sealport.client import SealportClient  # noqa: E402
from sealport.config import load_config  # noqa: E402
from sealport.demo import DEMO_MARKER, approve_via_page  # noqa: E402
from sealport.errors import SealportError  # noqa: E402
from sealport.server import add_asset, add_user, seed_demo  # noqa: E402

from tests.faults.harness import make_stl  # noqa: E402

SERVER_SCRIPT = """
import sys
from pathlib import Path
from sealport.server import ServerSettings, serve_forever
serve_forever(Path(sys.argv[1]), "127.0.0.1", int(sys.argv[2]),
              settings=ServerSettings(device_interval=1))
"""


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    handed_out: list[str] = field(default_factory=list)
    """delivery ids the server answered to clients' POST /deliveries"""
    verified: list[str] = field(default_factory=list)
    """delivery ids of imports the clients verified"""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def time(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latencies[op].append(seconds)

    def error(self, op: str, code: str) -> None:
        with self.lock:
            self.errors[f"{op}:{code}"] += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``serve_forever`` in a child process on a fixed loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "server.log", "w")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", SERVER_SCRIPT, str(data_dir), str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (data_dir / "client.toml").exists() or not self._up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start, see {self.log.name}")
            time.sleep(0.1)

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _client(server: ServerProcess, home: Path) -> SealportClient:
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("load-test profile\n")
    (home / "sealport.toml").write_text((server.data_dir / "client.toml").read_text())
    return SealportClient(load_config(home / "sealport.toml"), demo=True)


def _run_client(
    i: int,
    server: ServerProcess,
    base: Path,
    user: tuple[str, str],
    asset_id: str,
    lists: int,
    imports: int,
    deadline: float,
    start: threading.Barrier,
    res: Results,
) -> None:
    username, password = user
    ca = str(server.data_dir / "ca" / "ca.pem")
    try:
        client = _client(server, base / f"ws{i}")
    except SealportError as exc:
        res.error("setup", exc.code)
        return

    def hook(resp: requests.Response, *a: Any, **k: Any) -> requests.Response:
        if resp.request.method == "POST" and resp.url.endswith("/deliveries") and resp.ok:
            with res.lock:
                res.handed_out.append(resp.json()["delivery_id"])
        return resp

    client.session.hooks["response"].append(hook)
    start.wait()
    # --- sign in: device flow, approved on the verification page by a "browser" ---------
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = ca
    approve_errors: list[BaseException] = []

    def on_code(auth: Any) -> None:
        def approve() -> None:
            try:
                approve_via_page(browser, auth.verification_uri, auth.user_code, *user)
            except BaseException as exc:  # noqa: BLE001 - reported as an error
                approve_errors.append(exc)

        threading.Thread(target=approve, daemon=True).start()

    t0 = time.monotonic()
    try:
        client.login(on_code)
    except SealportError as exc:
        res.error("sign_in", exc.code)
        return
    res.time("sign_in", time.monotonic() - t0)
    if approve_errors:
        res.error("sign_in", "approval_page")
    for _ in range(lists):
        if time.monotonic() > deadline:
            return
        t0 = time.monotonic()
        try:
            assets = client.assets()
            assert any(a["asset_id"] == asset_id for a in assets)
        except SealportError as exc:
            res.error("list", exc.code)
            continue
        res.time("list", time.monotonic() - t0)
    out = base / f"out{i}"
    for _ in range(imports):
        if time.monotonic() > deadline:
            return
        t0 = time.monotonic()
        try:
            result = client.secure_import(asset_id, out)
        except SealportError as exc:
            res.error("import", exc.code)
            continue
        res.time("import", time.monotonic() - t0)
        with res.lock:
            res.verified.append(result.manifest.delivery_id)
        result.path.unlink()
    client.flush_audit()
    del username, password


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def check_ledger(db: Path, users: list[str], res: Results) -> dict[str, Any]:
    """Compare what clients saw with what the server recorded."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(users))
        ledger = [
            r[0]
            for r in con.execute(
                f"SELECT delivery_id FROM deliveries WHERE username IN ({marks})", users
            )
        ]
        sealed: Counter[str] = Counter()
        client_verified: Counter[str] = Counter()
        for source, event in con.execute(
            f"SELECT source, event FROM audit_events WHERE username IN ({marks})", users
        ):
            ev = json.loads(event)
            if source == "server" and ev.get("event") == "delivery_sealed":
                sealed[ev.get("delivery_id")] += 1
            if source == "client" and ev.get("event") == "import.verified":
                client_verified[(ev.get("data") or {}).get("delivery_id")] += 1
    finally:
        con.close()
    handed = Counter(res.handed_out)
    return {
        "deliveries_handed_to_clients": len(res.handed_out),
        "deliveries_in_ledger": len(ledger),
        "lost": sorted(set(handed) - set(ledger)),
        "unaccounted_in_ledger": sorted(set(ledger) - set(handed)),
        "double_recorded": sorted(d for d, n in Counter(ledger).items() if n > 1),
        "handed_twice": sorted(d for d, n in handed.items() if n > 1),
        "sealed_events_not_once": sorted(d for d in handed if sealed[d] != 1),
        "verified_imports": len(res.verified),
        "client_verified_events_not_once": sorted(
            d for d in res.verified if client_verified[d] != 1
        ),
        "client_verified_events_for_unknown": sorted(set(client_verified) - set(res.verified)),
    }


def run_load(
    clients: int, *, lists: int = 3, imports: int = 2, budget: float = 300.0, base: Path
) -> dict[str, Any]:
    data = base / "server"
    data.mkdir(parents=True)
    seed_demo(data)
    users = [(f"load{i:03d}", secrets.token_urlsafe(10)) for i in range(clients)]
    for name, pw in users:
        add_user(data, name, pw, roles=("artist",))
    stl = base / "load.stl"
    make_stl(stl, 4000)  # 200 KB
    asset_id = add_asset(data, stl, name="load-mesh", project="load", fmt="stl").asset_id
    server = ServerProcess(data)
    res = Results()
    barrier = threading.Barrier(clients)
    started = time.monotonic()
    deadline = started + budget
    threads = [
        threading.Thread(
            target=_run_client,
            args=(i, server, base, users[i], asset_id, lists, imports, deadline, barrier, res),
            daemon=True,
        )
        for i in range(clients)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, deadline + 120 - time.monotonic()))
        hung = sum(t.is_alive() for t in threads)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    ledger = check_ledger(data / "ledger.sqlite", [u for u, _ in users], res)
    ops = {
        op: {
            "count": len(v),
            "p50_s": round(_pct(v, 50), 3),
            "p99_s": round(_pct(v, 99), 3),
            "max_s": round(max(v), 3),
        }
        for op, v in sorted(res.latencies.items())
    }
    total_ops = sum(len(v) for v in res.latencies.values())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}",
        "clients": clients,
        "per_client": {"sign_in": 1, "lists": lists, "imports": imports},
        "seconds": round(elapsed, 1),
        "operations": ops,
        "throughput_ops_per_s": round(total_ops / elapsed, 2),
        "imports_per_s": round(len(res.latencies.get("import", [])) / elapsed, 2),
        "errors": dict(res.errors),
        "hung_clients": hung,
        "ledger": ledger,
    }


def ledger_ok(fig: dict[str, Any]) -> bool:
    led = fig["ledger"]
    keys = (
        "lost",
        "unaccounted_in_ledger",
        "double_recorded",
        "handed_twice",
        "sealed_events_not_once",
        "client_verified_events_not_once",
        "client_verified_events_for_unknown",
    )
    return all(not led[k] for k in keys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--lists", type=int, default=3)
    ap.add_argument("--imports", type=int, default=2)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="sealport-bench-load-"))
    fig = run_load(
        args.clients, lists=args.lists, imports=args.imports, budget=args.budget, base=base
    )
    text = json.dumps(fig, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if ledger_ok(fig) and not fig["errors"] and not fig["hung_clients"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
