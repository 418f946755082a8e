"""Thresholds on a run of 2 local and 2 remote workers (in network namespaces of their own, set up
by test_fanout_netns.Netns): they are evaluated on the merged result of all four, not per worker.

Needs root (ip netns); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import re

import pytest

from test_fanout_netns import HOSTS, SUBNET, ZMQ_PORT, Netns, _bf, netns  # noqa: F401

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def test_thresholds_merge_local_and_remote_workers(netns: Netns) -> None:  # noqa: F811
    target = f"{SUBNET}.{HOSTS['target']}:8080"
    serve = netns.spawn("target", *_bf("serve", "--addr", target, "--delay", "2ms"))
    assert serve.stdout is not None
    line = serve.stdout.readline()
    assert re.match(r"barfast serve: listening on http://", line), line
    coord_ep = f"tcp://{SUBNET}.{HOSTS['coord']}:{ZMQ_PORT}"
    coord = netns.spawn(
        "coord",
        *_bf(
            "run", f"http://{target}/",
            "--bind", coord_ep, "--expect-workers", "2", "-w", "2", "--wait-timeout", "30s",
            "-c", "8", "-n", "4000", "--json",
            "--threshold", "requests==4000",
            "--threshold", "requests<=1000",
            "--threshold", "p50<3ms",
            "--threshold", "p50<1ms",
            "--threshold", "error_rate<1%",
        ),
    )  # fmt: skip
    workers = [
        netns.spawn(w, *_bf("worker", "--connect", coord_ep, "--idle-timeout", "3s"))
        for w in ("w1", "w2")
    ]
    out, err = coord.communicate(timeout=90)
    assert coord.returncode == 99, err
    rep = json.loads(out)
    rows = rep["workers"]
    assert len(rows) == 4 and sum(1 for r in rows if r["local"]) == 2, rows
    assert all(0 < r["completed"] < 4000 for r in rows)
    assert sum(r["completed"] for r in rows) == 4000 == rep["requests"]["completed"]
    got = [(r["threshold"], r["passed"]) for r in rep["thresholds"]]
    assert got == [
        ("requests==4000", True),  # only the merged count is 4000; each worker ran ~1000
        ("requests<=1000", False),
        ("p50<3ms", True),
        ("p50<1ms", False),
        ("error_rate<1%", True),
    ], rep["thresholds"]
    # the merged histogram's p50, the one the report prints
    assert rep["thresholds"][2]["measured"] == rep["latency_ms"]["p50"]
    for w in workers:
        w.communicate(timeout=20)
        assert w.returncode == 0
