"""`barfast compare`: verdicts with a bootstrap interval over the per-second histograms.

The default tests use results built from the aggregator with known latencies (deterministic); the
two runs against `barfast serve` are behind the `load` marker (their figures depend on the machine)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from barfast.engine.aggregate import RECORD_DTYPE, Aggregator
from barfast.report import compare
from barfast.result import Merger
from conftest import barfast_cmd
from serve_helpers import running

MS = 1_000_000
BASE_NS = 10**12


def built(scale: float, seed: int, seconds: int = 12, per_s: int = 3000) -> dict[str, Any]:
    """A closed-loop result of two endpoints whose latencies are lognormal x `scale`."""
    rng = np.random.default_rng(seed)
    agg, m = Aggregator(2), Merger()
    done = [0, 0]
    for sec in range(seconds):
        a = np.zeros(per_s, dtype=RECORD_DTYPE)
        a["intended_ns"] = a["send_ns"] = BASE_NS + sec * 10**9
        lat = (rng.lognormal(13.8, 0.3, per_s) * scale).astype(np.uint64)
        a["done_ns"] = a["send_ns"] + lat
        a["first_byte_ns"] = a["send_ns"] + lat // np.uint64(2)
        a["seq"] = np.arange(sec * per_s, (sec + 1) * per_s, dtype=np.uint64)
        a["endpoint"] = rng.integers(0, 2, per_s)
        a["status"] = 200
        agg.add(a)
        for e in (0, 1):
            done[e] += int((a["endpoint"] == e).sum())
        part = agg.take_interval(wire=True)
        t = agg.tally()
        m.add({
            "worker": 0, "seq": sec, "final": sec == seconds - 1, "interval": sec,
            "elapsed_ns": (sec + 1) * 10**9,
            "counters": {"started": t["samples"], "completed": t["completed"], "errors": 0},
            "status": dict(t["status"]), "errors": {}, "hist": part["hist"],
            "samples": part["samples"], "interval_completed": part["completed"],
            "interval_errors": part["errors"],
            "endpoints": [{"started": n, "completed": n, "errors": 0} for n in done],
            "endpoint_interval": part["endpoints"],
        })  # fmt: skip
    specs = [{"name": n, "weight": 1, "checks": []} for n in ("a", "b")]
    return m.report({"url": "http://x/", "open_loop": False, "endpoints": specs})


def _rows(rows: list[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    return {r["endpoint"]: r for r in rows if r["metric"] == metric}


def test_a_report_against_itself_is_no_detectable_change() -> None:
    rep = built(1.0, 1)
    rows = compare.compare(rep, rep)
    assert {r["endpoint"] for r in rows} == {"*", "a", "b"}
    for r in rows:
        assert r["verdict"] == "no detectable change", r
        assert r["change"] == 0.0
        assert r["ci_low"] <= 0.0 <= r["ci_high"]


def test_same_distribution_other_samples_is_no_detectable_change() -> None:
    rows = compare.compare(built(1.0, 1), built(1.0, 2))
    for r in rows:
        assert r["verdict"] == "no detectable change", r


def test_twice_the_latency_is_slower_with_the_right_size() -> None:
    rows = compare.compare(built(1.0, 1), built(2.0, 2))
    for name, r in _rows(rows, "p50").items():
        assert r["verdict"] == "slower", (name, r)
        assert 0.9 < r["change"] < 1.1  # +100 %, to hdrh's 3 significant digits and sampling
        assert r["ci_low"] > compare.MIN_EFFECT
    faster = compare.compare(built(2.0, 2), built(1.0, 1))
    assert all(r["verdict"] == "faster" for r in _rows(faster, "p99").values())


def _save(tmp: Path, name: str, rep: dict[str, Any]) -> str:
    p = tmp / name
    p.write_text(json.dumps(rep))
    return str(p)


def test_fail_on_exits_4_on_a_detected_change_past_the_limit(tmp_path: Path) -> None:
    base = _save(tmp_path, "base.json", built(1.0, 1))
    slow = _save(tmp_path, "slow.json", built(1.5, 2))
    p = subprocess.run(
        barfast_cmd("compare", base, slow, "--fail-on", "p99>+10%,rps<-50%"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 4, p.stderr
    assert "slower" in p.stdout
    assert "* p99 +" in p.stderr and "past p99>+10%" in p.stderr
    p = subprocess.run(
        barfast_cmd("compare", base, slow, "--fail-on", "p99>+80%", "--json"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["failed"] == [] and len(out["rows"]) == 15


@pytest.mark.parametrize("rule", ["p99", "p99>10", "p95>+10%", "p99=+10%", "rps>>1%"])
def test_bad_fail_on_rules_are_one_line_and_exit_2(tmp_path: Path, rule: str) -> None:
    base = _save(tmp_path, "base.json", built(1.0, 1, seconds=3, per_s=100))
    p = subprocess.run(
        barfast_cmd("compare", base, base, "--fail-on", rule),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "--fail-on" in p.stderr


def _serve_run(tmp: Path, name: str, delay_ms: int) -> str:
    out = tmp / name
    with running(delay_ns=delay_ms * MS) as srv:
        p = subprocess.run(
            barfast_cmd("run", f"http://127.0.0.1:{srv.port}/", "-c", "8", "-w", "1",
                        "-d", "8s", "-q", "-o", str(out)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return str(out)


@pytest.mark.load
def test_two_runs_of_the_same_config_are_no_detectable_change(tmp_path: Path) -> None:
    a = _serve_run(tmp_path, "a.json", 1)
    b = _serve_run(tmp_path, "b.json", 1)
    rows = compare.compare(json.loads(Path(a).read_text()), json.loads(Path(b).read_text()))
    for metric in ("p50", "p90"):
        assert _rows(rows, metric)["*"]["verdict"] == "no detectable change"


@pytest.mark.load
def test_serve_delay_2ms_against_1ms_is_slower_at_p50_by_about_the_delay(tmp_path: Path) -> None:
    a = _serve_run(tmp_path, "a.json", 1)
    b = _serve_run(tmp_path, "b.json", 2)
    base, new = json.loads(Path(a).read_text()), json.loads(Path(b).read_text())
    r = _rows(compare.compare(base, new), "p50")["*"]
    assert r["verdict"] == "slower"
    # p50 is the delay plus the loop's own time: +1 ms on ~1.1 ms is +60 % .. +100 %
    assert 0.6 < r["change"] < 1.0, r
    assert 0.8 < (r["new"] - r["base"]) < 1.2, r  # ms
