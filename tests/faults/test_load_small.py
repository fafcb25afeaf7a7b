"""A small version of the load test (tests/bench/bench_load.py) for the default suite.

8 concurrent clients, each with its own profile and account: device-flow
sign-in through the verification page, two listings, one secure import, all
against a server in its own process. Asserts no errors and that the ledger
recorded every delivery exactly once (nothing lost, nothing doubled). No
latency asserts: the figures are for docs/RESILIENCE.md, not for pass/fail.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.bench_load import ledger_ok, run_load


def test_eight_concurrent_clients_nothing_lost_or_doubled(tmp_path: Path) -> None:
    fig = run_load(8, lists=2, imports=1, budget=120, base=tmp_path)
    assert fig["errors"] == {} and fig["hung_clients"] == 0, fig
    assert fig["operations"]["sign_in"]["count"] == 8
    assert fig["operations"]["import"]["count"] == 8
    led = fig["ledger"]
    assert led["deliveries_in_ledger"] == led["deliveries_handed_to_clients"] == 8
    assert ledger_ok(fig), led
