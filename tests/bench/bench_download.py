"""Benchmark: end-to-end secure import over loopback TLS 1.3 vs curl.

Not a test (no timing asserts). Run:

    python tests/bench/bench_download.py --size 1G [--runs 3] [--write-docs]

The reference server runs in its own process (so the client's peak RSS is the
client's alone). The asset is a binary STL of the requested size (a valid
file, so the client's STL safe reader runs too). Each run is a whole
``secure_import``: delivery request, sealing on the server (age encryption
of the whole file on request: pre-sealed copies are off here), manifest
verification, download with hashing, streaming decrypt with hashing, STL
check, atomic placement. The peer row is `curl`
fetching the same sealed payload over the same TLS 1.3 connection setup to
/dev/null (transfer only, no checks). ``--write-docs`` replaces the section
"## Download over loopback TLS" of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## Download over loopback TLS"
SERVER_SCRIPT = """
import sys, json, time
from pathlib import Path
from sealport.server import seed_demo, start_background
from sealport.server.settings import ServerSettings
from sealport.server.store import add_asset
from sealport.server.watermarking import disabled
data = Path(sys.argv[1]); stl = Path(sys.argv[2])
user, password = seed_demo(data)
rec = add_asset(data, stl, name="big", project="bench", fmt="stl")
# Transport benchmark: the forensic watermark (its own section) is switched off, and so
# are pre-sealed copies: every run encrypts on request (the pooled path is measured in
# the Blender and client-path benches).
srv = start_background(data, settings=ServerSettings(watermark=disabled, watermark_premarked=0))
print(json.dumps({"url": srv.url, "user": user, "password": password,
                  "asset_id": rec.asset_id, "ca": str(srv.ca_file)}), flush=True)
while True:
    time.sleep(3600)
"""


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.upper())
    if not m:
        raise SystemExit(f"bad size {text}")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def write_stl(path: Path, size: int) -> None:
    """A valid binary STL of about ``size`` bytes with random geometry."""
    import numpy as np

    n = max(1, (size - 84) // 50)
    rng = np.random.default_rng(1)
    with open(path, "wb") as fh:
        fh.write(b"sealport bench".ljust(80, b" "))
        fh.write(np.uint32(n).tobytes())
        dtype = np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
        step = 1 << 20
        for start in range(0, n, step):
            block = np.zeros(min(step, n - start), dtype=dtype)
            block["v"] = rng.random((len(block), 3, 3), dtype=np.float32)
            fh.write(block.tobytes())


def machine() -> str:
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", out).group(1).strip()  # type: ignore[union-attr]
    except Exception:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="sealport-bench-", dir="/var/tmp"))
    try:
        stl = work / "big.stl"
        # In a child process, so the generator's memory is not counted as the client's.
        import multiprocessing

        maker = multiprocessing.Process(target=write_stl, args=(stl, size))
        maker.start()
        maker.join()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(work / "server"), str(stl)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            info = json.loads(server.stdout.readline())  # type: ignore[union-attr]
            rows = run_client(work, info, args.runs, size)
        finally:
            server.terminate()
            server.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = render(rows, size)
    print(table)
    if args.write_docs:
        write_docs(table)
    return 0


def signed_in_client(work: Path, info: dict) -> Any:
    """A client in a demo profile under ``work/client``, signed in to the bench server
    (``work/server``) by approving its device code on the verification page."""
    import requests
    from sealport.client import SealportClient
    from sealport.config import load_config
    from sealport.demo import DEMO_MARKER, approve_via_page

    home = work / "client"
    home.mkdir()
    (home / DEMO_MARKER).write_text("bench profile\n")
    shutil.copy(work / "server" / "client.toml", home / "sealport.toml")
    client = SealportClient(load_config(home / "sealport.toml"), demo=True)
    approver = requests.Session()
    approver.trust_env = False
    approver.verify = info["ca"]

    def on_code(auth) -> None:  # type: ignore[no-untyped-def]
        threading.Thread(
            target=approve_via_page,
            args=(approver, auth.verification_uri, auth.user_code, info["user"], info["password"]),
            daemon=True,
        ).start()

    client.login(on_code)
    return client


def run_client(work: Path, info: dict, runs: int, size: int) -> dict[str, list[float]]:
    client = signed_in_client(work, info)
    ours, curl = [], []
    for i in range(runs + 1):
        out = work / f"out{i}"
        t0 = time.perf_counter()
        result = client.secure_import(info["asset_id"], out)
        elapsed = time.perf_counter() - t0
        # Peer: curl downloads the same sealed payload (a fresh delivery, not timed).
        d = client.api.post(
            f"/api/v1/assets/{info['asset_id']}/deliveries",
            {"device_id": client.device_key().device_id},
        )
        token = client.tokens.access_token()
        t1 = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-sS",
                "--tlsv1.3",
                "--cacert",
                info["ca"],
                "-o",
                "/dev/null",
                "-H",
                f"Authorization: Bearer {token}",
                client.api.url(d["payload_url"]),
            ],
            check=True,
        )
        curl_elapsed = time.perf_counter() - t1
        shutil.rmtree(out)
        subprocess.run(["sync"], check=False)
        if i == 0:
            continue  # warm-up
        ours.append(elapsed)
        curl.append(curl_elapsed)
        assert result.manifest.file.size == size or result.manifest.file.size > 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ours": ours, "curl": curl, "rss": [rss], "size": [result.manifest.file.size]}


def render(rows: dict[str, list[float]], size: int) -> str:
    real = rows["size"][0]
    ours, curl = statistics.median(rows["ours"]), statistics.median(rows["curl"])
    mbps = lambda t: real / t / 1e6  # noqa: E731
    return "\n".join(
        [
            f"{SECTION}",
            "",
            f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {machine()}; "
            f"`python tests/bench/bench_download.py --size {size >> 20}M --write-docs`; "
            f"median of {len(rows['ours'])} runs after a warm-up.",
            "",
            "| pipeline | MB/s | wall s | peak RSS MiB |",
            "|---|---|---|---|",
            f"| Sealport `secure_import` (seal on server + TLS download + hash + decrypt + hash "
            f"+ STL check + place), {real / 2**20:.0f} MiB STL | {mbps(ours):.0f} | {ours:.2f} "
            f"| {rows['rss'][0]:.0f} (client process) |",
            f"| peer: `curl --tlsv1.3` of the sealed payload to /dev/null (transfer only) "
            f"| {mbps(curl):.0f} | {curl:.2f} | n/a |",
            "",
            f"Ratio Sealport / curl transfer: {curl / ours:.2f}× (Sealport also seals on the "
            "server per delivery, which curl's row does not include). Server watermarking "
            "is off for this row; its cost is in the Watermark and Blender sections.",
            "",
        ]
    )


def write_docs(table: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    begin, end = "<!-- download:begin -->", "<!-- download:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
