"""Merge exactness, plan splitting, report fields and units, text rendering."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from barfast.config import build_run_config
from barfast.engine.aggregate import RECORD_DTYPE, Aggregator, new_histogram
from barfast.fanout.plan import WorkerPlan, split_plan
from barfast.report import json as report_json
from barfast.report.text import render
from barfast.result import SCHEMA, Merger, config_info, histogram_from_report, mean_stdev


def samples(lat, lag=None, status=200, error=0, seq0=0) -> np.ndarray:
    n = len(lat)
    a = np.zeros(n, dtype=RECORD_DTYPE)
    a["intended_ns"] = 10**12
    a["send_ns"] = 10**12 + np.asarray(lag if lag is not None else [0] * n, dtype=np.uint64)
    a["done_ns"] = 10**12 + np.asarray(lat, dtype=np.uint64)
    a["seq"] = np.arange(seq0, seq0 + n, dtype=np.uint64)
    a["status"] = status
    a["error"] = error
    a["bytes_rx"] = 120
    a["bytes_tx"] = 40
    return a


class FakeWorker:
    """Builds the snapshots runner.EngineRunner would send, from sample batches (no engine)."""

    def __init__(self, wid: int):
        self.wid = wid
        self.agg = Aggregator()
        self.seq = 0
        self.elapsed_ns = 0

    def snapshot(self, batch: np.ndarray, interval: int, final: bool = False) -> dict:
        self.agg.add(batch)
        part = self.agg.take_interval()
        t = self.agg.tally()
        self.elapsed_ns = (interval + 1) * 10**9
        counters = {
            "started": t["samples"],
            "completed": t["completed"],
            "errors": t["errors"],
            "in_flight": 0,
            "not_sent": 0,
            "bytes_rx": t["bytes_rx"],
            "bytes_tx": t["bytes_tx"],
            "ring_dropped": 0,
        }
        snap = {
            "worker": self.wid,
            "seq": self.seq,
            "final": final,
            "interval": interval,
            "elapsed_ns": self.elapsed_ns,
            "counters": counters,
            "status": dict(t["status"]),
            "errors": {"connect": t["error"].get(1, 0)} if t["error"].get(1) else {},
            "hist": part["hist"],
            "samples": part["samples"],
            "cpu": {"user_s": 0.1 * (interval + 1), "sys_s": 0.05 * (interval + 1)},
            "interval_completed": part["completed"],
            "interval_errors": part["errors"],
            "clamped": part["clamped"],
            "ring": {"dropped": 0, "seq_gaps": t["seq_gaps"], "samples_total": t["samples"]},
        }
        self.seq += 1
        return snap


lat_st = st.lists(st.integers(0, 5 * 10**9), min_size=1, max_size=300)


@settings(max_examples=12, deadline=None)
@given(lat_st, st.integers(1, 4), st.integers(1, 3), st.randoms(use_true_random=False))
def test_merge_is_exact(lat: list[int], nworkers: int, nintervals: int, rnd: random.Random) -> None:
    lag = [v // 7 for v in lat]
    every = samples(lat, lag)
    ref = Aggregator()
    ref.add(every)
    ref_part = ref.take_interval()
    # Deal samples to workers and intervals at random, then deliver snapshots in random order.
    owner = [(rnd.randrange(nworkers), rnd.randrange(nintervals)) for _ in lat]
    snaps = []
    for w in range(nworkers):
        fw = FakeWorker(w)
        for k in range(nintervals):
            idx = [i for i, o in enumerate(owner) if o == (w, k)]
            batch = every[idx]
            batch["seq"] = np.arange(len(idx)) + sum(
                1 for i, o in enumerate(owner) if o[0] == w and o[1] < k
            )
            snaps.append(fw.snapshot(batch, k, final=(k == nintervals - 1)))
    rnd.shuffle(snaps)
    m = Merger()
    for s in snaps:
        m.add(s)
    for view in ("latency", "uncorrected", "send_lag"):
        expect = HdrHistogram.decode(ref_part["hist"][view])
        got = m.hists[view]
        assert got.get_total_count() == expect.get_total_count() == len(lat)
        assert bytes(memoryview(got.counts)) == bytes(memoryview(expect.counts))
        assert got.get_min_value() == expect.get_min_value()
        assert got.get_max_value() == expect.get_max_value()
        assert got.encode() == expect.encode()
    rep = m.report({"open_loop": True, "url": "http://x/"})
    assert rep["requests"]["completed"] == len(lat)
    assert rep["status"] == {"200": len(lat)}
    assert rep["samples"]["aggregated"] == len(lat)
    assert rep["transfer"]["bytes_rx"] == 120 * len(lat)
    assert sum(p["requests"] for p in rep["series"]) == len(lat)
    assert [p["second"] for p in rep["series"]] == list(range(nintervals))
    for p in rep["series"]:
        assert p["requests"] == sum(1 for _, k in owner if k == p["second"])
    assert sum(w["completed"] for w in rep["workers"]) == len(lat)
    back = histogram_from_report(rep)
    assert back.get_total_count() == len(lat)
    assert back.get_value_at_percentile(99) == HdrHistogram.decode(
        ref_part["hist"]["latency"]
    ).get_value_at_percentile(99)


@settings(max_examples=5, deadline=None)
@given(st.lists(st.integers(0, 10**10), min_size=0, max_size=200))
def test_mean_stdev_equals_hdrh(values: list[int]) -> None:
    h = new_histogram()
    for v in values:
        h.record_value(v)
    assert mean_stdev(h) == (h.get_mean_value(), h.get_stddev())


def _report(open_loop: bool, lat_ns: list[int], lag_ns: list[int] | None = None) -> dict:
    m = Merger()
    fw = FakeWorker(0)
    m.add(fw.snapshot(samples(lat_ns, lag_ns), 0))
    err = samples([0, 0, 0], error=1, status=0, seq0=len(lat_ns))
    m.add(fw.snapshot(err, 1, final=True))
    cfg = build_run_config(
        "http://127.0.0.1:8080/", connections=4, duration="2s", rate=100.0 if open_loop else None
    )
    return m.report(config_info(cfg))


def test_report_fields_and_units() -> None:
    lat = [1_000_000] * 90 + [10_000_000] * 10  # 1 ms x90, 10 ms x10
    rep = _report(False, lat)
    assert rep["schema"] == SCHEMA
    for key in ("config", "duration_s", "requests", "status", "errors", "rps", "transfer"):
        assert key in rep
    assert rep["config"]["url"] == "http://127.0.0.1:8080/"
    assert rep["config"]["connections"] == 4 and rep["config"]["duration_s"] == 2.0
    assert rep["config"]["timeouts"] == {"request_s": 10.0, "connect_s": 3.0}
    assert rep["duration_s"] == 2.0
    assert rep["requests"]["completed"] == 100 and rep["requests"]["errors"] == 3
    assert rep["errors"] == {"connect": 3}
    assert rep["rps"] == 50.0
    lm = rep["latency_ms"]
    assert set(lm) >= {"min", "mean", "stdev", "p50", "p75", "p90", "p99", "p99.9", "p99.99", "max"}
    assert lm["p50"] == pytest.approx(1.0, rel=1e-3)
    assert lm["p99"] == pytest.approx(10.0, rel=1e-3)
    assert lm["max"] == pytest.approx(10.0, rel=1e-3)
    assert lm["mean"] == pytest.approx(1.9, rel=1e-2)
    assert "latency_uncorrected_ms" not in rep  # closed loop: one view
    assert rep["histogram"]["units"] == "ns"
    assert rep["histogram"]["latency"].startswith("HISTF")
    assert rep["samples"]["dropped_by_ring"] == 0
    assert rep["generator"]["cpu_us_per_request"] == pytest.approx(0.3 * 1e6 / 100)
    json.loads(report_json.dumps(rep))  # JSON-serialisable as is


def test_open_loop_views_and_send_lag_warning() -> None:
    lat = [5_000_000] * 100
    lag = [2_000_000] * 100  # 2 ms late: the generator is behind
    rep = _report(True, lat, lag)
    assert rep["latency_ms"]["p50"] == pytest.approx(5.0, rel=1e-3)
    assert rep["latency_uncorrected_ms"]["p50"] == pytest.approx(3.0, rel=1e-3)
    assert rep["send_lag_ms"]["p99"] == pytest.approx(2.0, rel=1e-3)
    assert any("send lag p99" in w for w in rep["generator"]["warnings"])
    # Little CPU used (0.15 s over 2 s): the lag came from busy connections, and the warning says so.
    assert any("every connection was busy" in w for w in rep["generator"]["warnings"])
    text = render(rep, latency=True)
    assert "corrected" in text and "uncorrected" in text and "Send lag" in text
    assert "Warning: send lag p99" in text
    assert "99.999%" in text and "Detailed percentile spectrum" in text
    ok = _report(True, lat, [1000] * 100)
    assert not any("send lag" in w for w in ok["generator"]["warnings"])


def test_cpu_saturation_warning() -> None:
    m = Merger()
    fw = FakeWorker(3)
    s = fw.snapshot(samples([1000] * 10), 0, final=True)
    s["cpu"] = {"user_s": 0.7, "sys_s": 0.25}  # 95 % of the 1 s it ran
    m.add(s)
    rep = m.report({"open_loop": False})
    assert any("worker 3 used 95% of a CPU" in w for w in rep["generator"]["warnings"])


def test_cpu_shares_cover_the_cpu_figures_interval_and_not_a_few_ticks() -> None:
    """A worker's CPU share divides its CPU by the wall time those CPU figures cover (wall_s: set-up,
    run and final drain), and is None below CPU_SHARE_MIN_S: the kernel updates a running thread's
    CPU time at its tick, so `barfast run -n 5` showed 240 % of a CPU on a 2-CPU machine."""
    m = Merger()
    s = FakeWorker(1).snapshot(samples([1000] * 10), 0, final=True)
    s["cpu"] = {"user_s": 0.5, "sys_s": 0.1, "wall_s": 1.2}  # the run itself took 1 s
    m.add(s)
    row = m.report({"open_loop": False})["workers"][0]
    assert row["cpu_share"] == pytest.approx(0.5) and row["cpu_busy_share"] == pytest.approx(0.5)
    m = Merger()
    for w in (1, 2):  # two workers: the text report then has a row per worker
        s = FakeWorker(w).snapshot(samples([1000] * 10), 0, final=True)
        s["cpu"] = {"user_s": 0.0027, "sys_s": 0.0007, "wall_s": 0.0014}  # measured, -n 5
        m.add(s)
    rep = m.report({"open_loop": False})
    for row in rep["workers"]:
        assert row["cpu_share"] is None and row["cpu_busy_share"] is None
    assert not any("of a CPU" in w for w in rep["generator"]["warnings"])
    assert render(rep, latency=False).count("CPU    -") == 2


def test_pacing_spin_is_not_saturation() -> None:
    """An open loop at a high rate spins between sends (engine counter spin_ns): that CPU was
    chosen, not forced by load, so it does not trigger the saturation warning; real work does."""
    m = Merger()
    fw = FakeWorker(2)
    s = fw.snapshot(samples([1000] * 10), 0, final=True)
    s["cpu"] = {"user_s": 0.6, "sys_s": 0.38}  # 98 % of the 1 s it ran ...
    s["counters"]["spin_ns"] = 400_000_000  # ... of which 0.4 s polling for sends not yet due
    m.add(s)
    rep = m.report({"open_loop": False})
    row = rep["workers"][0]
    assert row["cpu_share"] == pytest.approx(0.98) and row["cpu_spin_s"] == pytest.approx(0.4)
    assert row["cpu_busy_share"] == pytest.approx(0.58)
    assert not any("of a CPU" in w for w in rep["generator"]["warnings"])
    # The text report's CPU line says how much of the generator's CPU was that spin.
    assert "us per request (incl. 0.40s of pacing spin)" in render(rep, latency=False)
    s2 = FakeWorker(2).snapshot(samples([1000] * 10), 0, final=True)
    s2["cpu"] = {"user_s": 0.6, "sys_s": 0.38}
    s2["counters"]["spin_ns"] = 10_000_000
    m2 = Merger()
    m2.add(s2)
    warnings = m2.report({"open_loop": False})["generator"]["warnings"]
    assert any("worker 2 used 97% of a CPU besides 0.01s of pacing spin" in w for w in warnings)


def test_worker_lost_keeps_data() -> None:
    m = Merger()
    a, b = FakeWorker(0), FakeWorker(1)
    m.add(a.snapshot(samples([1000] * 5), 0))
    m.add(b.snapshot(samples([2000] * 7), 0))
    m.add(a.snapshot(samples([1000] * 5, seq0=5), 1, final=True))
    m.worker_lost(1)
    rep = m.report({"open_loop": False})
    assert rep["requests"]["completed"] == 17
    assert rep["workers_lost"] == [1]
    assert [w["lost"] for w in rep["workers"]] == [False, True]
    assert any("worker 1 was lost" in w for w in rep["generator"]["warnings"])


def test_text_render_sections() -> None:
    rep = _report(False, [1_500_000] * 50)
    text = render(rep, latency=False)
    for needle in (
        "Running 2.00s test @ http://127.0.0.1:8080/",
        "4 connections",
        "Latency",
        "50%",
        "99%",
        "Requests/sec:",
        "Transfer/sec:",
        "Status: 200 50",
        "Errors: connect 3",
        "Samples dropped by ring: 0",
    ):
        assert needle in text, needle
    assert "99.999%" not in text


def test_json_write(tmp_path) -> None:
    rep = _report(False, [1000])
    p = tmp_path / "r.json"
    report_json.write(rep, str(p))
    assert json.loads(p.read_text())["schema"] == SCHEMA


# -- plans ------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 500),
    st.integers(1, 64),
    st.one_of(st.none(), st.integers(1, 10_000)),
    st.one_of(st.none(), st.floats(0.5, 1e6)),
)
def test_split_plan_adds_up(conns: int, n: int, reqs: int | None, rate: float | None) -> None:
    cfg = build_run_config(
        "http://127.0.0.1:8080/", connections=conns, requests=reqs, rate=rate, workers=n
    )
    plans = split_plan(cfg, n)
    assert 1 <= len(plans) <= n
    assert len(plans) == min(n, conns, reqs or n)
    assert sum(p.connections for p in plans) == conns
    assert all(p.connections >= 1 for p in plans)
    assert max(p.connections for p in plans) - min(p.connections for p in plans) <= 1
    if reqs:
        assert sum(p.requests for p in plans) == reqs and all(p.requests >= 1 for p in plans)
    else:
        assert all(p.requests == 0 for p in plans)
    if rate:
        assert sum(p.rate for p in plans) == pytest.approx(rate, rel=1e-9)
    assert [p.worker_index for p in plans] == list(range(len(plans)))
    assert len({p.seed for p in plans}) == len(plans)


def test_split_plan_stages_and_roundtrip() -> None:
    cfg = build_run_config(
        "http://127.0.0.1:8080/", connections=10, stages="1s:100,2s:300", max_connections=25
    )
    plans = split_plan(cfg, 3)
    assert [p.connections for p in plans] == [4, 3, 3]
    assert [p.max_connections for p in plans] == [9, 8, 8]
    assert sum(p.stages[1][1] for p in plans) == pytest.approx(300.0)
    assert plans[0].stages[0] == (10**9, pytest.approx(40.0))
    assert all(p.open_loop for p in plans)
    d = plans[1].to_dict()
    import msgpack

    back = WorkerPlan.from_dict(msgpack.unpackb(msgpack.packb(d)))
    assert back == plans[1]
    assert back.request.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")


def test_text_lists_workers_when_several_or_lost() -> None:
    m = Merger()
    a, b = FakeWorker(0), FakeWorker(1)
    m.add(a.snapshot(samples([1000] * 5), 0, final=True))
    m.add(b.snapshot(samples([2000] * 7), 0))
    m.worker_lost(1)
    cfg = build_run_config("http://127.0.0.1:8080/", connections=4, duration="1s", workers=2)
    text = render(m.report(config_info(cfg, workers=2)))
    lines = [ln for ln in text.splitlines() if ln.startswith("    ")]
    assert "Workers:" in text
    assert any(" 0 " in ln and "5 completed" in ln and "LOST" not in ln for ln in lines)
    assert any(" 1 " in ln and "7 completed" in ln and "LOST" in ln for ln in lines)
    # One worker that finished: the merged lines already say it all, no Workers section.
    single = Merger()
    single.add(FakeWorker(0).snapshot(samples([1000] * 3), 0, final=True))
    assert "Workers:" not in render(single.report(config_info(cfg, workers=1)))


def test_cpu_wait_is_reported_and_blamed_when_it_cost_something() -> None:
    """A worker whose engine thread waited for a CPU another task held (engine counter
    runq_wait_ns, from schedstat) shows it; the self-check blames it in a closed loop (the rate is
    what the worker got) from 10 % of the run, and in an open loop only when the schedule
    slipped."""

    def merged(open_loop: bool, lag_ns: int) -> dict:
        m = Merger()
        for wid, wait_ns in ((1, 300_000_000), (2, 50_000_000)):  # of a 1 s run: 30 % and 5 %
            s = FakeWorker(wid).snapshot(samples([1000] * 10, [lag_ns] * 10), 0, final=True)
            s["counters"]["runq_wait_ns"] = wait_ns
            m.add(s)
        return m.report({"open_loop": open_loop})

    rep = merged(False, 0)
    one, two = rep["workers"]
    assert one["cpu_wait_s"] == pytest.approx(0.3) and one["cpu_wait_share"] == pytest.approx(0.3)
    assert two["cpu_wait_share"] == pytest.approx(0.05)
    warnings = rep["generator"]["warnings"]
    assert any("worker 1 waited 30% of the run for a CPU" in w for w in warnings), warnings
    assert not any("worker 2 waited" in w for w in warnings), warnings
    text = render(rep, latency=False)
    assert ", waited 30% for a CPU" in text and ", waited 5% for a CPU" in text
    # Open loop: on schedule (lag 10 µs) the wait cost nothing; late (2 ms) it is blamed.
    assert not any("for a CPU" in w for w in merged(True, 10_000)["generator"]["warnings"])
    late = merged(True, 2_000_000)["generator"]["warnings"]
    assert any("send lag p99" in w and "generator, not the server" in w for w in late), late
    assert any("worker 1 waited 30%" in w for w in late), late
