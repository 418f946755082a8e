"""Per-endpoint results: latency, connect and ttfb histograms, status and error kinds per endpoint,
recorded in SampleRecorder, carried as interval deltas, merged exactly, and reported in the totals'
shape. Against hdrh as the reference, the engine's exact counters, and nginx's access log."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from barfast.engine._core import SampleRecorder
from barfast.engine.aggregate import (
    ENDPOINT_HISTS_MAX,
    HIST_HIGHEST_NS,
    RECORD_DTYPE,
    Aggregator,
    as_raw,
    new_histogram,
)
from barfast.engine.histoblob import to_hdrh
from barfast.engine.kinds import FLAG_NEW_CONN
from barfast.report.text import render
from barfast.result import Merger
from barfast.ring import Ring
from barfast.status import ProtocolError
from test_engine import check_invariant, drain, make_engine, request_bytes

BASE = 10**12


def records(rng: np.random.Generator, n: int, endpoints: int, seq0: int = 0) -> np.ndarray:
    """n samples over `endpoints` endpoints: mixed latencies, ttfb below them, a fifth on new
    connections (some of them errors after the connect), a tenth errors, statuses 200/404/500."""
    a = np.zeros(n, dtype=RECORD_DTYPE)
    a["intended_ns"] = BASE
    a["send_ns"] = BASE + rng.integers(0, 50_000, n).astype(np.uint64)
    lat = rng.lognormal(13, 1.5, n).astype(np.uint64) + np.uint64(60_000)
    a["done_ns"] = BASE + lat
    a["first_byte_ns"] = a["send_ns"] + (lat - np.uint64(50_000)) // np.uint64(2)
    a["seq"] = np.arange(seq0, seq0 + n, dtype=np.uint64)
    a["endpoint"] = rng.integers(0, endpoints, n)
    a["status"] = rng.choice([200, 200, 200, 404, 500], n)
    new = rng.random(n) < 0.2
    a["flags"][new] = FLAG_NEW_CONN
    a["connect_us"][new] = rng.integers(1, 5000, int(new.sum()))
    err = rng.random(n) < 0.1
    a["error"][err] = rng.choice([2, 3, 6], int(err.sum()))
    a["status"][err] = 0
    return a


def reference(values: Any) -> HdrHistogram:
    h = new_histogram()
    for v in values:
        assert h.record_value(min(int(v), HIST_HIGHEST_NS))
    return h


def same_counts(ours: HdrHistogram, ref: HdrHistogram) -> None:
    assert ours.get_total_count() == ref.get_total_count()
    assert bytes(memoryview(ours.counts)) == bytes(memoryview(ref.counts))
    assert ours.get_max_value() == ref.get_max_value()
    assert ours.get_min_value() == ref.get_min_value()


def views(a: np.ndarray) -> dict[str, np.ndarray]:
    """The reference values of each view for samples `a` (hist.pxi's measurement semantics)."""
    ok = (a["error"] == 0) & (a["status"] != 0)
    conn = ((a["flags"] & FLAG_NEW_CONN) != 0) & (a["connect_us"] > 0)
    return {
        "latency": (a["done_ns"] - a["intended_ns"])[ok],
        "ttfb": (a["first_byte_ns"] - a["send_ns"])[ok],
        "connect": a["connect_us"][conn].astype(np.uint64) * np.uint64(1000),
    }


# -- the recorder --------------------------------------------------------------------------------


def test_recorder_per_endpoint_matches_hdrh() -> None:
    # Four endpoints, one of which gets no sample; several batches, so blocks are opened in the
    # middle of a batch and the pass resumes there.
    rng = np.random.default_rng(5)
    a = records(rng, 6000, 3)
    a["endpoint"][a["endpoint"] == 2] = 3  # endpoint 2 stays empty
    agg = Aggregator(4)
    for part in np.array_split(a, 7):
        agg.add(part)
    assert agg.endpoints_open() == (3, 3)
    out = agg.take_interval()
    assert set(out["endpoints"]) == {0, 1, 3}
    for name, vals in views(a).items():
        same_counts(to_hdrh(out["hist"][name]), reference(vals))
    for e, got in out["endpoints"].items():
        mine = a[a["endpoint"] == e]
        ok = (mine["error"] == 0) & (mine["status"] != 0)
        assert got["samples"] == len(mine)
        assert got["completed"] == int(ok.sum())
        assert got["errors"] == int((mine["error"] != 0).sum())
        assert got["status"] == {int(k): int(v) for k, v in Counter(mine["status"][ok]).items()}
        kinds = Counter(mine["error"][mine["error"] != 0].tolist())
        labels = {2: "timeout", 3: "read", 6: "closed"}
        assert got["errors_by_kind"] == {labels[k]: v for k, v in kinds.items()}
        for name, vals in views(mine).items():
            same_counts(to_hdrh(got["hist"][name]), reference(vals))
    # the next interval starts empty, and only endpoints with samples are sent
    b = records(rng, 50, 3, seq0=6000)
    b["endpoint"] = 1
    agg.add(b)
    out = agg.take_interval()
    assert list(out["endpoints"]) == [1] and out["endpoints"][1]["samples"] == 50
    assert to_hdrh(out["endpoints"][1]["hist"]["latency"]).get_total_count() == int(
        ((b["error"] == 0) & (b["status"] != 0)).sum()
    )


def test_one_endpoint_keeps_nothing_beyond_the_totals() -> None:
    a = records(np.random.default_rng(1), 500, 1)
    for n in (0, 1):
        agg = Aggregator(n)
        agg.add(a)
        assert agg.endpoints_open() == (0, 0)
        out = agg.take_interval()
        assert out["endpoints"] == {}
        same_counts(to_hdrh(out["hist"]["connect"]), reference(views(a)["connect"]))


def test_endpoints_beyond_the_histogram_bound_get_counts_only() -> None:
    # endpoint_hists=2 of 4: endpoints 2 and 3 are counted (status, errors) but have no histograms;
    # the totals still hold every sample.
    h = [new_histogram() for _ in range(5)]
    rec = SampleRecorder(*h, endpoints=4, endpoint_hists=2, factory=new_histogram)
    a = records(np.random.default_rng(2), 2000, 4)
    rec.record(as_raw(a))
    assert rec.endpoints_open() == (4, 2)
    got = {e: (c, hs) for e, c, hs in rec.endpoints_interval()}
    assert got[0][1] is not None and got[1][1] is not None
    assert got[2][1] is None and got[3][1] is None
    rec.sync()
    assert sum(c["completed"] for c, _ in got.values()) == h[0].get_total_count()
    # a sample naming an endpoint outside the table is counted in the totals only
    b = records(np.random.default_rng(3), 10, 1, seq0=2000)
    b["endpoint"] = 9
    b["error"] = 0
    b["status"] = 200
    rec.record(as_raw(b))
    assert rec.tally()["endpoint_unknown"] == 10
    assert (
        sum(c["completed"] for _, c, _ in rec.endpoints_interval()) + 10 == rec.tally()["completed"]
    )


def test_memory_bound_is_what_the_comment_says() -> None:
    # aggregate.py: one histogram 264 KiB, an endpoint's three 792 KiB, the bound 99 MiB
    h = new_histogram()
    assert h.counts_len * 8 == 264 * 2**10
    assert 3 * h.counts_len * 8 * ENDPOINT_HISTS_MAX == 99 * 2**20


# -- snapshots and the merge ---------------------------------------------------------------------


class Worker:
    """The snapshots runner.EngineRunner sends (wire form), from sample batches."""

    def __init__(self, wid: int, endpoints: int):
        self.wid, self.n, self.seq = wid, endpoints, 0
        self.agg = Aggregator(endpoints)
        self.per: list[Counter[str]] = [Counter() for _ in range(endpoints)]

    def snapshot(self, batch: np.ndarray, interval: int, final: bool = False) -> dict[str, Any]:
        self.agg.add(batch)
        for e in range(self.n):
            mine = batch[batch["endpoint"] == e]
            self.per[e]["started"] += len(mine)
            self.per[e]["completed"] += int(((mine["error"] == 0) & (mine["status"] != 0)).sum())
            self.per[e]["errors"] += int((mine["error"] != 0).sum())
        part = self.agg.take_interval(wire=True)
        t = self.agg.tally()
        snap = {
            "worker": self.wid,
            "seq": self.seq,
            "final": final,
            "interval": interval,
            "elapsed_ns": (interval + 1) * 10**9,
            "counters": {
                "started": t["samples"],
                "completed": t["completed"],
                "errors": t["errors"],
            },
            "status": dict(t["status"]),
            "errors": {},
            "hist": part["hist"],
            "samples": part["samples"],
            "interval_completed": part["completed"],
            "interval_errors": part["errors"],
            "endpoints": [
                {"started": c["started"], "completed": c["completed"], "errors": c["errors"]}
                for c in self.per
            ],
            "endpoint_interval": part["endpoints"],
        }
        self.seq += 1
        return snap


SPECS = [{"name": n, "weight": 1, "checks": []} for n in ("a", "b", "c")]


def test_two_workers_merge_per_endpoint_exactly() -> None:
    rng = np.random.default_rng(11)
    m = Merger()
    allrec = []
    for wid in (0, 1):
        w = Worker(wid, 3)
        for sec in range(3):
            a = records(rng, 1500, 3, seq0=sec * 1500)
            allrec.append((sec, a))
            m.add(w.snapshot(a, sec, final=sec == 2))
    rep = m.report({"open_loop": True, "endpoints": SPECS})
    every = np.concatenate([a for _, a in allrec])
    for i, spec in enumerate(SPECS):
        mine = every[every["endpoint"] == i]
        ref = views(mine)
        for name in ("latency", "connect", "ttfb"):
            same_counts(m.endpoints[i].hists[name], reference(ref[name]))
        row = rep["endpoints"][spec["name"]]
        assert row["latency_ms"]["count"] == len(ref["latency"]) == row["requests"]["completed"]
        assert row["ttfb_ms"]["count"] == len(ref["ttfb"])
        assert row["connect_ms"]["count"] == len(ref["connect"])
        ok = (mine["error"] == 0) & (mine["status"] != 0)
        assert row["status"] == {str(k): v for k, v in sorted(Counter(mine["status"][ok]).items())}
        # the per-second p99 is hdrh's over that second's samples of that endpoint, all workers
        for point in row["series"]:
            sec_rec = np.concatenate([a for s, a in allrec if s == point["second"]])
            lat = views(sec_rec[sec_rec["endpoint"] == i])["latency"]
            assert point["requests"] == len(lat)
            want = reference(lat).get_value_at_percentile(99.0) / 1e6
            assert point["p99_ms"] == pytest.approx(want, abs=1e-6)
        assert [p["second"] for p in row["series"]] == [0, 1, 2]
    assert (
        sum(e["latency_ms"]["count"] for e in rep["endpoints"].values())
        == (rep["latency_ms"]["count"])
    )
    assert (
        sum(e["connect_ms"]["count"] for e in rep["endpoints"].values())
        == (rep["connect_ms"]["count"])
    )
    # one row per endpoint in the text report, with its percentiles
    text = render(rep)
    for spec in SPECS:
        row = rep["endpoints"][spec["name"]]
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  {spec['name']} "))
        assert (
            str(row["requests"]["completed"]) in line and line.count("ms") + line.count("us") >= 3
        ), line
    assert "Connect p50" in text and "TTFB p50" in text


def test_one_endpoint_reports_the_totals() -> None:
    m = Merger()
    w = Worker(0, 1)
    m.add(w.snapshot(records(np.random.default_rng(4), 800, 1), 0, final=True))
    rep = m.report({"open_loop": False, "endpoints": SPECS[:1]})
    row = rep["endpoints"]["a"]
    for key in ("status", "errors", "latency_ms", "connect_ms", "ttfb_ms"):
        assert row[key] == rep[key], key
    assert row["series"] == rep["series"]
    assert row["histogram"] == {k: rep["histogram"][k] for k in ("latency", "connect", "ttfb")}
    assert row["intervals"] == rep["intervals"]["seconds"]


def good_snapshot() -> dict[str, Any]:
    return Worker(0, 3).snapshot(records(np.random.default_rng(8), 400, 3), 0)


def _set(path: tuple[Any, ...], value: Any):
    def mutate(s: dict[str, Any]) -> None:
        d = s
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return mutate


def _blob_of(other: int):
    def mutate(s: dict[str, Any]) -> None:
        s["endpoint_interval"][0]["hist"]["latency"] = s["endpoint_interval"][other]["hist"][
            "latency"
        ]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (_set(("endpoint_interval",), [1, 2]), "endpoint_interval is a list, not a map"),
        (_set(("endpoint_interval", 7), {"samples": 0}), r"endpoint_interval\.7: endpoint index"),
        (_set(("endpoint_interval", "x"), {}), "non-numeric key"),
        (_set(("endpoint_interval", 0), "many"), "not a map"),
        (_set(("endpoint_interval", 0, "completed"), -1), "negative"),
        (_set(("endpoint_interval", 0, "samples"), 1), "exceed samples"),
        (_set(("endpoint_interval", 0, "status"), {200: 1}), "do not add up to completed"),
        (_set(("endpoint_interval", 0, "errors_by_kind"), {}), "do not add up to errors"),
        (_set(("endpoint_interval", 0, "status", 200), True), "bool"),
        (_set(("endpoint_interval", 0, "hist", "latency"), b"\x1c\x84junk"), "hist.latency"),
        (_set(("endpoint_interval", 0, "hist", "ttfb"), 5), "not bytes"),
        (_blob_of(1), "holds .* values, not completed's"),
        (_set(("endpoint_interval", 0, "hist"), {}), "hist.latency holds 0 values"),
    ],
)
def test_malformed_endpoint_sections_are_refused_whole(mutate: Any, match: str) -> None:
    m = Merger()
    snap = good_snapshot()
    bad = copy.deepcopy(snap)
    mutate(bad)
    with pytest.raises(ProtocolError, match=match):
        m.add(bad)
    assert m.rejected == 1 and m.endpoints == {} and m.hists["latency"].get_total_count() == 0
    m.add(snap)  # the good one still merges
    assert sum(e.samples for e in m.endpoints.values()) == 400


def test_histograms_beyond_the_bound_are_refused() -> None:
    snap = good_snapshot()
    snap["endpoints"] = [{"started": 0}] * (ENDPOINT_HISTS_MAX + 1)
    snap["endpoint_interval"][ENDPOINT_HISTS_MAX] = snap["endpoint_interval"].pop(0)
    with pytest.raises(ProtocolError, match=f"endpoints from {ENDPOINT_HISTS_MAX} on"):
        Merger().add(snap)


# -- real sockets ----------------------------------------------------------------------------------


def test_engine_samples_per_endpoint_add_up_to_the_exact_counters() -> None:
    # The built-in target closes every 7th response's connection, so many requests open a new
    # one: the connect histogram holds one value per connection that carried a request, per
    # endpoint that connection's first request picked.
    from serve_helpers import running

    with running("127.0.0.1", statuses=[(200, 3), (503, 1)], close_every=7, seed=2) as srv:
        eps = [
            (request_bytes(srv.port, f"/{p}"), False, w, ())
            for p, w in (("a", 5), ("b", 3), ("c", 1))
        ]
        ring = Ring.create(1 << 16)
        eng = make_engine(srv.port, ring, connections=6, requests=30_000, seed=3, endpoints=eps)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 30_000 and c["errors"] == 0, c
    s = drain(ring)
    assert len(s) == 30_000
    agg = Aggregator(3)
    agg.add(s)
    out = agg.take_interval()
    per = eng.endpoint_counts()
    new_conn = (s["flags"] & FLAG_NEW_CONN) != 0
    assert new_conn.sum() >= 30_000 // 7  # the target really closed them
    total_conn = to_hdrh(out["hist"]["connect"]).get_total_count()
    assert total_conn == int(new_conn.sum()) <= c["connects"]
    lat_sum = conn_sum = 0
    for i, e in out["endpoints"].items():
        lat = to_hdrh(e["hist"]["latency"]).get_total_count()
        assert lat == e["completed"] == per[i]["completed"]
        assert to_hdrh(e["hist"]["ttfb"]).get_total_count() == per[i]["completed"]
        conn = to_hdrh(e["hist"]["connect"]).get_total_count()
        assert conn == int((new_conn & (s["endpoint"] == i)).sum())
        assert sum(e["status"].values()) == per[i]["completed"]
        lat_sum += lat
        conn_sum += conn
    assert lat_sum == to_hdrh(out["hist"]["latency"]).get_total_count() == 30_000
    assert conn_sum == total_conn
    merged_503 = sum(e["status"].get(503, 0) for e in out["endpoints"].values())
    assert merged_503 == int((s["status"] == 503).sum()) > 0


def barfast(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barfast", *args], capture_output=True, text=True, timeout=timeout
    )


def test_two_workers_per_endpoint_results_against_nginx(nginx, tmp_path: Path) -> None:
    # -w 2 over three paths, one of which nginx answers 404: per endpoint, the merged status
    # counts are nginx's own (its access log, per path and status), every completed response is
    # in that endpoint's latency and ttfb histograms, and the endpoints add up to the totals.
    p = tmp_path / "s.yaml"
    p.write_text(
        textwrap.dedent(
            f"""
            target: {nginx.url}
            load: {{connections: 8, requests: 60000}}
            requests:
              - {{name: home, weight: 6, path: /home}}
              - {{name: missing, weight: 3, path: /status/404}}
              - {{name: order, weight: 1, post: /order, body: "x=1"}}
            """
        ).lstrip()
    )
    nginx.truncate_log()
    out = barfast("run", str(p), "-w", "2", "-o", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    n = 60_000
    assert rep["requests"]["completed"] == n and rep["errors"] == {}
    assert nginx.wait_logged(n) == n
    logged: dict[str, Counter[str]] = {}
    for line in (nginx.run_dir / "access.log").read_bytes().splitlines():
        m = re.search(rb'"[A-Z]+ (\S+) HTTP/1.1" (\d+) ', line)
        assert m, line
        logged.setdefault(m.group(1).decode(), Counter())[m.group(2).decode()] += 1
    eps = rep["endpoints"]
    paths = {"home": "/home", "missing": "/status/404", "order": "/order"}
    for name, e in eps.items():
        done = e["requests"]["completed"]
        assert e["status"] == dict(sorted(logged[paths[name]].items())), name
        assert e["latency_ms"]["count"] == e["ttfb_ms"]["count"] == done
        assert sum(pt["requests"] for pt in e["series"]) == done
        assert e["errors"] == {}
    assert eps["missing"]["status"] == {"404": eps["missing"]["requests"]["completed"]}
    for key in ("latency_ms", "ttfb_ms", "connect_ms"):
        assert sum(e[key]["count"] for e in eps.values()) == rep[key]["count"], key
    assert rep["connect_ms"]["count"] >= 8  # every connection's first request
    for code, k in rep["status"].items():
        assert sum(e["status"].get(code, 0) for e in eps.values()) == k
    # the text report: a row per endpoint under the totals, with its latency percentiles
    rows = [ln for ln in out.stdout.splitlines() if re.match(r"  (home|missing|order) ", ln)]
    assert len(rows) == 3, out.stdout
    assert "Connect p50" in out.stdout and "TTFB p50" in out.stdout


def test_endpoints_beyond_the_bound_report_counts_and_say_so() -> None:
    n = ENDPOINT_HISTS_MAX + 2
    a = records(np.random.default_rng(6), 600, 2)
    a["endpoint"][a["endpoint"] == 1] = n - 1  # endpoints 0 and the last one get samples
    w = Worker(0, n)
    m = Merger()
    m.add(w.snapshot(a, 0, final=True))
    specs = [{"name": f"e{i}", "weight": 1, "checks": []} for i in range(n)]
    rep = m.report({"open_loop": False, "endpoints": specs})
    last = rep["endpoints"][f"e{n - 1}"]
    mine = a[a["endpoint"] == n - 1]
    ok = (mine["error"] == 0) & (mine["status"] != 0)
    assert last["latency_ms"] is None and last["connect_ms"] is None and last["ttfb_ms"] is None
    assert sum(last["status"].values()) == int(ok.sum()) == last["requests"]["completed"]
    assert {p["p99_ms"] for p in last["series"]} == {None}
    assert rep["endpoints"]["e1"]["latency_ms"]["count"] == 0  # no samples: an empty summary
    assert any(f"from #{ENDPOINT_HISTS_MAX} on" in x for x in rep["generator"]["warnings"])
    row = next(ln for ln in render(rep).splitlines() if ln.startswith(f"  e{n - 1} "))
    assert row.split()[-3:] == ["-", "-", "-"], row
