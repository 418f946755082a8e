"""Open-loop pacing accuracy and cost: achieved/target rate, send lag p50/p99/p99.9, and generator
CPU per request (open loop vs a closed loop doing the same number of requests), against one nginx
worker on loopback.

    flock /tmp/barfast-bench.lock taskset -c 0 python benchmarks/bench_pacing.py --nginx-cpu 1 \
        [--quick] [--rates 1000,10000,50000,sustainable] [--spins auto,0,20] [--json FILE]

Pin it the way MEASURING.md says (nginx on CPU 1 via --nginx-cpu, this process on CPU 0 via
taskset) for figures that mean something; on a shared machine read the ratios, not the absolutes.

"sustainable" is 50 % of the closed-loop maximum measured at the start of each round, and "0.9x"
90 % of it. The
closed-loop reference (CPU per request at full speed, same connections) is measured at the start of
every round; each open-loop run's ratio uses its round's reference, and the summary gives medians
over rounds (MEASURING.md: alternate, quote medians). --spins lists pacing modes: "auto" (the engine's adaptive default), a fixed
spin window in µs, or "cN": no spin, one wake-up per N µs sending all that is due (lag for CPU). CPU is the engine thread's own (RUSAGE_THREAD): the ring drain is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import sys
import threading
from dataclasses import dataclass

import numpy as np
from nginx_target import Nginx

from barfast.engine import _core
from barfast.engine.runner import batch_policy
from barfast.ring import Ring

S = 1_000_000_000


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


@dataclass(frozen=True)
class Knobs:
    """A pacing mode's benchmark knobs (Engine._set_*); None keeps the engine's default."""

    spin_ns: int | None = None  # fixed spin window; None: adaptive
    coalesce_ns: int = 0
    gap: int | None = None  # spin gap factor
    quantile: float | None = None  # adaptive window's lateness quantile
    allow_ns: int | None = None  # lag allowance of the adaptive window
    defer: bool | None = None  # deferred pacing sleeps (reads timed by kernel receive stamps)
    edge: bool | None = None  # edge-triggered epoll (the engine's default)

    def apply(self, eng: object) -> None:
        """Set them on an engine, before run()."""
        eng._set_spin_ns(self.spin_ns)  # type: ignore[attr-defined]
        eng._set_coalesce_ns(self.coalesce_ns)  # type: ignore[attr-defined]
        if self.gap is not None:
            eng._set_spin_gap_factor(self.gap)  # type: ignore[attr-defined]
        if self.quantile is not None:
            eng._set_spin_quantile(self.quantile)  # type: ignore[attr-defined]
        if self.allow_ns is not None:
            eng._set_lag_allowance(self.allow_ns)  # type: ignore[attr-defined]
        if self.defer is not None:
            eng._set_defer_reads(self.defer)  # type: ignore[attr-defined]
        if self.edge is not None:
            eng._set_edge_triggered(self.edge)  # type: ignore[attr-defined]


def one_run(
    port: int,
    conns: int,
    duration_ns: int,
    rate: float,
    requests: int = 0,
    knobs: Knobs = Knobs(),
    drain_batch: bool = True,
) -> dict:
    ring = Ring.create(1 << 20)
    req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    eng = _core.Engine(
        ring,
        addr="127.0.0.1",
        port=port,
        family=socket.AF_INET,
        request=req,
        head=False,
        connections=conns,
        requests=requests,
        duration_ns=duration_ns,
        timeout_ns=5 * S,
        connect_timeout_ns=S,
        rate=rate,
    )
    knobs.apply(eng)
    out: dict = {}
    lags: list[np.ndarray] = []
    done = threading.Event()

    def runner() -> None:
        c0 = cpu_s()
        eng.run()
        out["cpu_s"] = cpu_s() - c0
        done.set()

    def take() -> None:
        a, b = ring.peek()
        for part in (a, b):
            ok = part[part["error"] == 0]
            lags.append(ok["send_ns"].astype(np.int64) - ok["intended_ns"].astype(np.int64))
        ring.consume(len(a) + len(b))

    th = threading.Thread(target=runner)
    th.start()
    # Like EngineRunner: the draining thread runs SCHED_BATCH (never preempts the engine on
    # wake-up) unless the mode says 'n' (normal policy, the behaviour before).
    with batch_policy() if drain_batch else contextlib.nullcontext():
        while not done.wait(0.05):
            take()
    th.join()
    take()
    c = eng.counters()
    lag = np.concatenate(lags) if lags else np.zeros(0, np.int64)
    out.update(c)
    out["pacing"] = eng._pacing_stats()
    out["lag"] = lag
    return out


class _TimedEngine:
    """The engine EngineRunner drives, with its thread's CPU measured around run() and the
    benchmark knobs applied before it (everything else is the engine's own)."""

    def __init__(self, engine: object) -> None:
        self._e = engine
        self.cpu_s = 0.0

    def run(self) -> None:
        c0 = cpu_s()
        try:
            self._e.run()  # type: ignore[attr-defined]
        finally:
            self.cpu_s = cpu_s() - c0

    def __getattr__(self, name: str) -> object:
        return getattr(self._e, name)


def product_run(
    port: int,
    conns: int,
    duration_ns: int,
    rate: float,
    knobs: Knobs = Knobs(),
    max_conns: int = 0,
) -> dict:
    """One run the way a worker does it: EngineRunner (the ring drained every 10 ms by the C-speed
    aggregator, under SCHED_BATCH, a snapshot a second) and the Merger's report. The send lag
    comes from the report's HdrHistogram (3 significant digits)."""
    from barfast.config import build_run_config
    from barfast.engine.runner import EngineRunner, default_engine
    from barfast.fanout.plan import split_plan
    from barfast.result import Merger, config_info

    cfg = build_run_config(
        f"http://127.0.0.1:{port}/",
        connections=conns,
        max_connections=max_conns,
        duration=f"{duration_ns}ns",
        rate=rate or None,
        workers=1,
    )
    timed: list[_TimedEngine] = []

    def factory(ring: object, plan: object, start_ns: int) -> _TimedEngine:
        eng = default_engine(ring, plan, start_ns)  # type: ignore[arg-type]
        knobs.apply(eng)
        timed.append(_TimedEngine(eng))
        return timed[-1]

    merger = Merger()
    EngineRunner(split_plan(cfg, 1)[0], merger.add, engine_factory=factory).run()
    rep = merger.report(config_info(cfg, workers=1))
    eng = timed[0]
    out: dict = dict(eng.counters())  # type: ignore[call-overload]
    out["cpu_s"] = eng.cpu_s
    out["pacing"] = eng._pacing_stats()
    lag = rep["send_lag_ms"] if rate else None
    out["lag_pcts_us"] = (
        [lag["p50"] * 1000, lag["p99"] * 1000, lag["p99.9"] * 1000] if lag else [float("nan")] * 3
    )
    return out


def closed_reference(port: int, conns: int, dur_ns: int, drain: str = "product") -> dict:
    run = product_run if drain == "product" else one_run
    cl = run(port, conns, dur_ns // 2, 0.0)
    return {
        "rps": cl["completed"] / (dur_ns / 2 / S),
        "cpu_us_per_req": cl["cpu_s"] / max(1, cl["completed"]) * 1e6,
    }


def rate_of(label: str, closed_rps: float) -> float:
    """'20000' -> 20000; 'sustainable' -> 50 % of the closed loop; '0.9x' -> 90 % of it."""
    if label == "sustainable":
        return closed_rps * 0.5
    if label.endswith("x"):
        return closed_rps * float(label[:-1])
    return float(label)


def parse_mode(text: str) -> tuple[Knobs, bool]:
    """'auto' -> adaptive window; '20' -> 20 µs fixed spin; 'c500' -> coalesce per 500 µs.
    A suffix 'gN' ('autog0'): spin gap factor N (2 is the engine's default; 0 spins at any rate).
    A suffix 'qP' ('autoq5'): the adaptive window tracks the (100 - P) % quantile of the wake-up
    lateness (the engine's default is q1). A suffix 'aN' ('autoa0'): lag allowance N µs (the
    engine's default is a10; a0: no allowance). A trailing 'x' ('autox'): no
    deferred pacing sleeps (every response wakes the loop). A trailing 'n'
    ('autog2n'): the draining thread runs under the normal policy
    instead of SCHED_BATCH. A trailing 'l' before it ('autol', 'autoxl'): level-triggered epoll.
    Returns (knobs, drain under SCHED_BATCH)."""
    batch = not text.endswith("n")
    text = text if batch else text[:-1]
    edge = None
    if text.endswith("l"):
        text, edge = text[:-1], False
    defer = None
    if text.endswith("x"):
        text, defer = text[:-1], False
    allow = None
    if "a" in text.replace("auto", ""):
        head, a = text.rsplit("a", 1)
        text, allow = head, int(float(a) * 1000)
    quantile = None
    if "q" in text:
        text, q = text.split("q")
        quantile = float(q) / 100
    gap = None
    if "g" in text:
        text, g = text.split("g")
        gap = int(g)
    spin, coalesce = _parse_spin(text)
    return Knobs(spin, coalesce, gap, quantile, allow, defer, edge), batch


def _parse_spin(text: str) -> tuple[int | None, int]:
    if text.startswith("c"):
        return None, int(float(text[1:]) * 1000)
    if text == "auto":
        return None, 0
    return int(float(text) * 1000), 0


def measure(
    port: int, conns: int, dur: int, rate: float, mode: str, drain: str = "product"
) -> dict:
    knobs, batch = parse_mode(mode)
    if drain == "product" and batch:
        o = product_run(port, conns, dur, rate, knobs)
        p = o["lag_pcts_us"]
    else:
        o = one_run(port, conns, dur, rate, knobs=knobs, drain_batch=batch)
        lag = o["lag"]
        p = np.percentile(lag, [50, 99, 99.9]) / 1000 if len(lag) else [float("nan")] * 3
    st = o["pacing"]
    return {
        "mode": mode,
        "rate": round(rate, 1),
        "achieved_over_target": o["completed"] / (rate * dur / S),
        "lag_p50_us": float(p[0]),
        "lag_p99_us": float(p[1]),
        "lag_p999_us": float(p[2]),
        "not_sent": int(o["not_sent"]),
        "cpu_us_per_req": o["cpu_s"] / max(1, o["completed"]) * 1e6,
        "spin_end_us": st["spin_ns"] / 1000,
        "wake_late_us_mean": st["late_ns_mean"] / 1000,
        # deferred pacing sleeps per request (only the send's timer woke the loop)
        "deferred_per_req": st["deferred_sleeps"] / max(1, o["completed"]),
        # the engine thread's run-queue wait: time another task held its CPU
        "runq_wait_share": o["runq_wait_ns"] / dur,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 s per run (CI smoke)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per run")
    ap.add_argument("--rates", default="1000,10000,50000,sustainable")
    ap.add_argument(
        "--spins",
        default="auto,0,20",
        help="pacing modes: auto, a fixed spin window in µs, or cN: coalesce sends per N µs",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds (modes alternate in each)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--nginx-cpu", type=int, default=None, help="the target's CPU (nginx or serve)")
    ap.add_argument(
        "--target",
        choices=["nginx", "serve"],
        default="nginx",
        help="serve: `barfast serve`, which has no periodic stalls of its own (nginx's ~1-2 ms "
        "ones exhaust the 50 connections at high rates and show up as send lag)",
    )
    ap.add_argument(
        "--drain",
        choices=["product", "raw"],
        default="product",
        help="product (default): the worker's own EngineRunner drains the ring and the report's "
        "histogram gives the lag; raw: a numpy drain every 50 ms keeps every sample's exact lag "
        "(its own CPU on the engine's CPU shows up as lag at ~100k req/s). Modes ending in 'n' "
        "always use raw",
    )
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    dur = int((1 if args.quick else args.seconds) * S)
    modes = args.spins.split(",")
    if args.target == "serve":
        from bench_http import ServeTarget

        nginx: Nginx | ServeTarget = ServeTarget(
            str(args.nginx_cpu if args.nginx_cpu is not None else 1)
        )
    else:
        nginx = Nginx(args.nginx_cpu)
    port = nginx.port
    runs: list[dict] = []
    closed: list[dict] = []
    try:
        for rnd in range(args.repeat):
            ref = closed_reference(port, args.connections, dur, args.drain)
            closed.append(ref)
            rates = [rate_of(r, ref["rps"]) for r in args.rates.split(",")]
            print(
                f"round {rnd}: closed loop {ref['rps']:.0f} req/s, "
                f"{ref['cpu_us_per_req']:.2f} µs CPU/request"
            )
            for i, rate in enumerate(rates):
                for mode in modes:
                    row = measure(port, args.connections, dur, rate, mode, args.drain)
                    row["round"] = rnd
                    row["rate_label"] = args.rates.split(",")[i]
                    row["cpu_ratio_open_closed"] = row["cpu_us_per_req"] / ref["cpu_us_per_req"]
                    runs.append(row)
                    print(
                        f"  {mode:>5} {rate:7.0f} ach {row['achieved_over_target']:.4f} lag "
                        f"{row['lag_p50_us']:.1f}/{row['lag_p99_us']:.1f}/{row['lag_p999_us']:.1f}"
                        f" µs cpu {row['cpu_us_per_req']:.2f} µs/req "
                        f"(x{row['cpu_ratio_open_closed']:.2f}) spin {row['spin_end_us']:.1f}"
                        f" runq {100 * row['runq_wait_share']:.1f}%"
                        f" deferred/req {row['deferred_per_req']:.2f}",
                        flush=True,
                    )
    finally:
        nginx.stop()
    keys = (
        "achieved_over_target",
        "lag_p50_us",
        "lag_p99_us",
        "lag_p999_us",
        "cpu_us_per_req",
        "cpu_ratio_open_closed",
        "spin_end_us",
    )
    summary = []
    print(f"\nmedians over {args.repeat} round(s), {dur / S:g} s per run, {args.connections} conns")
    print(
        f"{'mode':>5} {'rate':>11} {'achieved':>9} {'lag p50':>8} {'p99':>7} {'p99.9':>8} "
        f"{'cpu µs/req':>10} {'open/closed':>11} {'spin µs':>8}"
    )
    for label in args.rates.split(","):
        for mode in modes:
            sel = [r for r in runs if r["rate_label"] == label and r["mode"] == mode]
            med = {k: float(np.median([r[k] for r in sel])) for k in keys}
            med["rate"] = float(np.median([r["rate"] for r in sel]))
            med["not_sent_max"] = max(r["not_sent"] for r in sel)
            summary.append({"mode": mode, "rate_label": label, **med})
            print(
                f"{mode:>5} {label:>11} {med['achieved_over_target']:9.4f} "
                f"{med['lag_p50_us']:8.1f} {med['lag_p99_us']:7.1f} {med['lag_p999_us']:8.1f} "
                f"{med['cpu_us_per_req']:10.2f} {med['cpu_ratio_open_closed']:11.2f} "
                f"{med['spin_end_us']:8.1f}"
            )
    closed_cpu = float(np.median([c["cpu_us_per_req"] for c in closed]))
    closed_rps = float(np.median([c["rps"] for c in closed]))
    print(f"closed loop: median {closed_rps:.0f} req/s, {closed_cpu:.2f} µs CPU/request")
    if args.json:
        import json

        out = {
            "benchmark": "bench_pacing",
            "command": " ".join(sys.argv),
            "duration_s": dur / S,
            "connections": args.connections,
            "repeat": args.repeat,
            "closed_loop": {"runs": closed, "rps_median": closed_rps, "cpu_us_median": closed_cpu},
            "summary_medians": summary,
            "runs": runs,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
