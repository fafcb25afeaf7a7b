"""A few hundred secure imports through the fault-injecting proxy (issue 6, "Faults").

Run from the repository root::

    .venv/bin/python -m tests.bench.bench_faults --imports 300 --budget 300

Every connection the client opens gets, with probability ``--p``, one fault
(drop, truncate, bitflip, stall, reset; uniformly) at a random offset of its
server->client stream in [0, 1.2 x payload size), or with probability
``--early`` in [0, 16 kB) where the handshake and the JSON replies are. The client's
``server.timeout`` is 1 s and stalls last 2 s. Reported: imports completed
(and after how many Range resumes), failed with a typed error (by code),
untyped exceptions, accepted files whose SHA-256 differs from the original
asset (must be 0), plaintext or temp leftovers (must be 0), and the faults
the proxy actually injected. Exits non-zero if a must-be-0 figure is not 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.faults.harness import (  # noqa: E402
    Tally,
    client_behind,
    count_resumes,
    import_once,
    leftovers,
    make_stl,
    sha256,
    start_server_behind,
)
from tests.faults.proxy import MODES, Fault, FaultProxy, random_plan  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imports", type=int, default=300)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds (stop early)")
    ap.add_argument("--p", type=float, default=0.5, help="fault probability per connection")
    ap.add_argument("--triangles", type=int, default=40_000, help="STL size (50 B each)")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--early", type=float, default=0.3, help="share of faults in the first 16 kB")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="sealport-bench-faults-"))
    tmp = base / "tmp"
    tmp.mkdir()
    tempfile.tempdir = str(tmp)  # anything the client writes to temp would show up here
    proxy = FaultProxy(seed=args.seed).start()
    server = start_server_behind(base / "server", proxy)
    asset = base / "mesh.stl"
    make_stl(asset, args.triangles)
    original = sha256(asset)
    rec = server.add_asset(asset, name="bench-mesh", project="bench", fmt="stl")
    client = client_behind(server, base / "ws", timeout=1.0)
    resumes = count_resumes(client)
    faults = tuple(m for m in MODES if m != "pass")
    proxy.plan = random_plan(
        faults,
        span=int(asset.stat().st_size * 1.2),
        probability=args.p,
        stall_seconds=2.0,
        seed=args.seed,
        early=args.early,
    )
    out = base / "out"
    tally = Tally()
    started = time.monotonic()
    try:
        while tally.total < args.imports and time.monotonic() - started < args.budget:
            proxy.drop_all()
            import_once(client, rec.asset_id, out, original, tally, resumes)
            found = leftovers(out, tmp)
            if found:
                tally.leftovers += found
                for f in found:
                    Path(f).unlink(missing_ok=True)
    finally:
        proxy.plan = lambda _i: Fault("pass")
        elapsed = time.monotonic() - started
        server.stop()
        proxy.stop()
    orphans = list((client.config.cache_dir / "deliveries").glob("*"))
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''} "
        f"Python {platform.python_version()} {platform.system()} {platform.release()}",
        "imports": tally.total,
        "seconds": round(elapsed, 1),
        "payload_bytes": asset.stat().st_size,
        "fault_probability_per_connection": args.p,
        "connections": proxy.connections,
        "faults_injected": dict(sorted(proxy.fired.items())),
        "completed": tally.completed,
        "completed_by_resumes": {str(k): v for k, v in sorted(tally.resumed.items())},
        "failed_typed": dict(sorted(tally.failed.items())),
        "failed_messages": dict(tally.messages.most_common()),
        "untyped": len(tally.untyped),
        "untyped_examples": tally.untyped[:5],
        "accepted_corrupted": tally.corrupted,
        "leftovers": len(tally.leftovers),
        "orphan_ciphertext": len(orphans),
        "audit_chain_ok": client.audit.verify().ok,
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    bad = figures["accepted_corrupted"] or figures["leftovers"] or figures["untyped"]
    return 1 if bad or not figures["audit_chain_ok"] or orphans else 0


if __name__ == "__main__":
    raise SystemExit(main())
