"""Load tests as pytest tests: barfast.run() returns a Result to assert on.

    pytest examples/test_load_example.py

The target here is `barfast serve` (barfast's own HTTP server) on a free port; point `target` at
your service instead. Assert on counts and on what your service promises (its p99), with bounds
that hold on a busy CI machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

import barfast


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    srv = subprocess.Popen(
        [sys.executable, "-m", "barfast", "serve", "--addr", "127.0.0.1:0", "-d", "60s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert srv.stdout is not None
    m = re.search(r"listening on (http://\S+)", srv.stdout.readline())
    assert m, "barfast serve did not start"
    yield m.group(1)
    srv.terminate()
    srv.wait(10)


def test_a_weighted_mix_holds_up(target: str) -> None:
    ok = barfast.Check.status_in("2xx")
    scenario = barfast.Scenario(
        target=target,
        requests=[
            barfast.Request("home", path="/", weight=4, checks=(ok,)),
            barfast.Request("item", path="/items/{{ seq }}", weight=1, checks=(ok,)),
        ],
    )
    r = barfast.run(scenario, requests=20_000, connections=8, workers=2)

    assert r.exit_code == 0
    assert r.errors == 0 and r.completed == r.requests == 20_000
    assert r.checks == {"passed": 20_000, "failed": 0}
    assert set(r.endpoints) == {"home", "item"}
    assert all(e.completed > 0 for e in r.endpoints.values())
    assert sum(e.completed for e in r.endpoints.values()) == r.completed
    assert r.latency is not None and 0 < r.latency.p50 <= r.latency.p99 <= r.latency.max
    assert r.latency.p99 < 2.0  # a hang guard here; your service's promise in your tests


def test_a_url_for_a_fixed_count(target: str) -> None:
    r = barfast.run(target, requests=1_000, connections=2, workers=1)
    assert r.status == {200: 1_000}
    assert r.percentile(100) == pytest.approx(r.latency.max, rel=1e-3)
