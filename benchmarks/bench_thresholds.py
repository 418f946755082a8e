"""Threshold evaluation on a 64-worker merged result, and the live window's cost per second.

    python benchmarks/bench_thresholds.py [--workers 64] [--seconds 10] [--endpoints 8] [--repeat 20]
        [--out benchmarks/results/thresholds.json]
    python benchmarks/bench_thresholds.py --quick        # CI: 8 workers, 2 s, no results file

Each simulated worker is a real Aggregator (the worker's own recorder, engine/aggregate.py) fed with
open-loop sample records: lognormal latencies around 1 ms with a tail, 2 % errors, 200/404/500
statuses, a fifth on new connections, spread over --endpoints endpoints. Per second it takes its
interval exactly as a worker does (wire-encoded histoblobs, per-endpoint parts) into the snapshot a
worker sends; the real Merger adds every snapshot. Then, on that merged result:

- **end of run**: scopes resolved and 10 thresholds evaluated (p99, p99.9, mean, max, error_rate,
  http_error_rate, rps, send_lag_p99, p95 of one endpoint, error_rate of a tag over 3 endpoints)
  — what `barfast run` does after the last snapshot. Target: < 50 ms.
- **live window**: Watch.tick() with 3 abort_on_fail thresholds (whole run, an endpoint, a tag)
  over a 10 s window, which the coordinator calls once a second; before each tick every worker's
  next second is merged (not timed), so each window holds fresh data. Its cost / 1 s is the share
  of a CPU it takes. Target: < 2 %.

Figures are the median and the best of --repeat timed passes (time.perf_counter), in this process.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "thresholds.json"
SAMPLES_PER_SECOND = 4000  # per worker: 256k req/s over 64 workers
BASE_NS = 10**12
THRESHOLDS = [
    "p99<50ms",
    "p99.9<200ms",
    "mean<5ms",
    "max<1s",
    "error_rate<5%",
    "http_error_rate<50%",
    "rps>1000",
    "send_lag_p99<1ms",
    "p95{endpoint=ep1}<20ms",
    "error_rate{tier=back}<5%",
]
WATCHED = [
    "p99<50ms, abort_on_fail, window=10s",
    "p99{endpoint=ep2}<50ms, abort_on_fail, window=10s",
    "error_rate{tier=back}<50%, abort_on_fail, window=10s",
]


def batch(rng: np.random.Generator, n: int, endpoints: int, seq0: int, sec: int) -> np.ndarray:
    from barfast.engine.aggregate import RECORD_DTYPE
    from barfast.engine.kinds import FLAG_NEW_CONN

    a = np.zeros(n, dtype=RECORD_DTYPE)
    t0 = BASE_NS + sec * 10**9
    a["intended_ns"] = t0 + np.sort(rng.integers(0, 10**9, n)).astype(np.uint64)
    lag = rng.lognormal(9, 1.0, n).astype(np.uint64)  # ~8 us send lag
    a["send_ns"] = a["intended_ns"] + lag
    lat = rng.lognormal(13.8, 0.6, n).astype(np.uint64) + np.uint64(100_000)
    a["done_ns"] = a["send_ns"] + lat
    a["first_byte_ns"] = a["send_ns"] + lat // np.uint64(2)
    a["seq"] = np.arange(seq0, seq0 + n, dtype=np.uint64)
    a["endpoint"] = rng.integers(0, endpoints, n)
    a["status"] = rng.choice([200] * 18 + [404, 500], n)
    new = rng.random(n) < 0.2
    a["flags"][new] = FLAG_NEW_CONN
    a["connect_us"][new] = rng.integers(50, 3000, int(new.sum()))
    err = rng.random(n) < 0.02
    a["error"][err] = rng.choice([2, 3, 6], int(err.sum()))
    a["status"][err] = 0
    return a


class SimWorker:
    """One worker's Aggregator and the snapshot it sends each second (runner.py's shape)."""

    def __init__(self, wid: int, endpoints: int) -> None:
        from barfast.engine.aggregate import Aggregator

        self.wid, self.n, self.seq = wid, endpoints, 0
        self.agg = Aggregator(endpoints)
        self.per: list[Counter[str]] = [Counter() for _ in range(endpoints)]

    def snapshot(self, a: np.ndarray, sec: int, final: bool) -> dict[str, Any]:
        self.agg.add(a)
        ok = (a["error"] == 0) & (a["status"] != 0)
        for e in range(self.n):
            mine = a["endpoint"] == e
            self.per[e]["started"] += int(mine.sum())
            self.per[e]["completed"] += int((mine & ok).sum())
            self.per[e]["errors"] += int((mine & ~ok).sum())
        part = self.agg.take_interval(wire=True)
        t = self.agg.tally()
        snap = {
            "worker": self.wid, "seq": self.seq, "final": final, "interval": sec,
            "elapsed_ns": (sec + 1) * 10**9,
            "counters": {"started": t["samples"], "completed": t["completed"],
                         "errors": t["errors"], "in_flight": 0, "not_sent": 0},
            "status": dict(t["status"]), "errors": {}, "hist": part["hist"],
            "samples": part["samples"], "interval_completed": part["completed"],
            "interval_errors": part["errors"],
            "endpoints": [dict(c) for c in self.per],
            "endpoint_interval": part["endpoints"],
            "cpu": {"user_s": 0.5, "sys_s": 0.3},
        }  # fmt: skip
        self.seq += 1
        return snap


def build(workers: int, seconds: int, endpoints: int) -> tuple[Any, list[Any], float]:
    """The merged result of `workers` x `seconds` snapshots; also the per-second Merger states
    (for the live window) and the time the merging took."""
    from barfast.result import Merger

    rng = np.random.default_rng(1)
    sims = [SimWorker(w, endpoints) for w in range(workers)]
    m = Merger()
    merge_s = 0.0
    for sec in range(seconds):
        for s in sims:
            a = batch(rng, SAMPLES_PER_SECOND, endpoints, sec * SAMPLES_PER_SECOND, sec)
            snap = s.snapshot(a, sec, final=sec == seconds - 1)
            t0 = time.perf_counter()
            m.add(snap)
            merge_s += time.perf_counter() - t0
    return m, sims, merge_s


def endpoints_of(n: int) -> list[Any]:
    from barfast.slo.evaluate import Endpoint

    return [
        Endpoint(f"ep{i}", {"tier": "back" if i % 3 == 0 else "front"}, False) for i in range(n)
    ]


def end_of_run(m: Any, endpoints: int) -> tuple[list[dict[str, Any]], float]:
    from barfast.slo.evaluate import evaluate, resolve
    from barfast.slo.figures import cumulative
    from barfast.slo.grammar import parse_thresholds

    t0 = time.perf_counter()
    plan = resolve(parse_thresholds(THRESHOLDS), endpoints_of(endpoints), {}, True, True)
    figs = [
        cumulative(m, plan.scopes[i], plan.views(i), plan.checked, plan.main_view, endpoints)
        for i in range(len(plan.thresholds))
    ]
    rows = evaluate(plan, figs, m.hists["latency"])
    return rows, time.perf_counter() - t0


def live_tick(m: Any, sims: list[SimWorker], first: int, endpoints: int, ticks: int) -> list[float]:
    """Seconds per Watch.tick() over `ticks` ticks (a 10 s window kept), each after one more
    second of snapshots from every worker was merged (untimed): every window has new data."""
    from barfast.slo.evaluate import resolve
    from barfast.slo.grammar import parse_thresholds
    from barfast.slo.watch import Watch

    rng = np.random.default_rng(2)
    plan = resolve(parse_thresholds(WATCHED), endpoints_of(endpoints), {}, True, True)
    w = Watch(plan)
    out = []
    for k in range(ticks):
        sec = first + k
        for s in sims:
            m.add(s.snapshot(batch(rng, SAMPLES_PER_SECOND, endpoints, sec * SAMPLES_PER_SECOND,
                                   sec), sec, final=False))  # fmt: skip
        t0 = time.perf_counter()
        reason = w.tick(m, float(sec + 1))
        out.append(time.perf_counter() - t0)
        assert reason is None, reason  # thresholds chosen to hold: every tick evaluates all three
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--endpoints", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="8 workers, 2 s, 3 repeats; no file")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.quick:
        args.workers, args.seconds, args.repeat = 8, 2, 3
    t0 = time.perf_counter()
    m, sims, merge_s = build(args.workers, args.seconds, args.endpoints)
    built_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    times = []
    for _ in range(args.repeat):
        rows, dt = end_of_run(m, args.endpoints)
        times.append(dt)
    completed = m.totals().get("completed", 0)
    ticks = live_tick(m, sims, args.seconds, args.endpoints, max(args.repeat, 12))
    end_ms = statistics.median(times) * 1e3
    tick_ms = statistics.median(ticks) * 1e3
    print(
        f"merged result: {args.workers} workers x {args.seconds} s, {args.endpoints} endpoints, "
        f"{completed:,} completed requests (built in {built_s:.1f} s, Merger.add {merge_s:.2f} s)"
    )
    for r in rows:
        print(f"  {'ok  ' if r['passed'] else 'FAIL'} {r['threshold']:<28} {r['measured_text']}")
    print(
        f"end-of-run evaluation of {len(THRESHOLDS)} thresholds: median {end_ms:.2f} ms, "
        f"best {min(times) * 1e3:.2f} ms (target < 50 ms: {'met' if end_ms < 50 else 'NOT met'})"
    )
    print(
        f"live window tick ({len(WATCHED)} abort_on_fail thresholds, once a second): median "
        f"{tick_ms:.2f} ms = {tick_ms / 10:.2f} % of a CPU (target < 2 %: "
        f"{'met' if tick_ms < 20 else 'NOT met'})"
    )
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": platform.platform(),
                    "python": sys.version.split()[0],
                    "workers": args.workers,
                    "seconds": args.seconds,
                    "endpoints": args.endpoints,
                    "completed": int(completed),
                    "thresholds": THRESHOLDS,
                    "end_of_run_ms": {
                        "median": round(end_ms, 3),
                        "best": round(min(times) * 1e3, 3),
                    },
                    "tick_ms": {"median": round(tick_ms, 3), "best": round(min(ticks) * 1e3, 3)},
                    "tick_cpu_share": round(tick_ms / 1000, 5),
                    "watched": WATCHED,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
