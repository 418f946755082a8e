"""Open loop against closed loop at the same request rate: what the open loop's pacing costs per
request, with the rate itself held equal.

    flock /tmp/barfast-bench.lock taskset -c 0 python benchmarks/bench_same_rate.py \
        [--delays 50ms,5ms,2.5ms,1ms] [--connections 50] [--nginx-connections 1,2,8] \
        [--seconds 3] [--repeat 3] [--json FILE]

Two kinds of target, each pinned to --server-cpu (default 1):
- for each delay D, `barfast serve --delay D`. A closed loop with C connections against it makes
  about C / D requests a second: the server's latency, not the generator, sets that rate, as it does
  for a service that is not saturated. Its delay timer releases responses in small bursts (it wakes
  late by ~40 µs), so the closed loop often reads several per wake-up;
- nginx (one worker) with N connections for each N in --nginx-connections: at 1-2 connections its
  round trip sets the rate and responses come one by one; at 8 it is near its maximum.
Then an open loop runs at the rate the closed loop achieved (`-R` that rate, the same connections,
up to twice as many when all are busy), against the same server. Closed and open alternate in every
round; the summary gives medians of per-round ratios (MEASURING.md).

CPU is the engine thread's own (RUSAGE_THREAD), as in bench_pacing.py, and also the whole
process's (the engine, its ring-draining thread and this script's idle main thread). Both loops
run the product's default engine (EngineRunner, default knobs: naps and deferred sleeps decide for
themselves).

bench_pacing.py compares the open loop with a closed loop at the server's *maximum* rate, where the
closed loop batches many responses per wake-up. This benchmark asks a different question: given
the rate, how much does pacing add? At these rates both loops pay about one wake-up per request,
which on this project's VMs costs more than the request itself (benchmarks/wake_cost.c).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

import numpy as np
from bench_http import ServeTarget, target_pids
from bench_http import proc_cpu_s as pids_cpu_s
from bench_pacing import product_run
from nginx_target import Nginx

from barfast.config import parse_duration

S = 1_000_000_000


def proc_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one(srv: Nginx | ServeTarget, conns: int, dur_ns: int, rate: float) -> dict:
    pids = target_pids(srv)
    p0, s0 = proc_cpu_s(), pids_cpu_s(pids)
    o = product_run(srv.port, conns, dur_ns, rate, max_conns=2 * conns if rate else 0)
    proc, server = proc_cpu_s() - p0, pids_cpu_s(pids) - s0
    done = max(1, o["completed"])
    st = o["pacing"]
    return {
        "rate": rate,
        "rps": o["completed"] / (dur_ns / S),
        "started": o["started"],
        "completed": o["completed"],
        "errors": o["errors"],
        "not_sent": o["not_sent"],
        "conns_peak": o["conns_peak"],
        "cpu_us_per_req": o["cpu_s"] / done * 1e6,
        "proc_cpu_us_per_req": proc / done * 1e6,
        # the server's CPU per request (/proc ticks, 10 ms resolution): who pays the wake-ups
        "server_cpu_us_per_req": server / done * 1e6,
        "lag_p50_us": o["lag_pcts_us"][0],
        "lag_p99_us": o["lag_pcts_us"][1],
        "nap_on_share": st.get("nap_on_s", 0.0) / (dur_ns / S),
        "deferred_per_req": st["deferred_sleeps"] / done,
    }


def segments(args: argparse.Namespace) -> list[tuple[str, int, object]]:
    """(label, connections, server factory) for every target the arguments ask for."""
    out: list[tuple[str, int, object]] = []
    for delay in filter(None, args.delays.split(",")):
        parse_duration(delay)  # a bad value fails here, before a server starts
        out.append(
            (
                f"serve {delay}",
                args.connections,
                lambda d=delay: ServeTarget(args.server_cpu, ("--delay", d)),
            )
        )
    for n in filter(None, args.nginx_connections.split(",")):
        out.append((f"nginx c{n}", int(n), lambda: Nginx(int(args.server_cpu))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delays", default="50ms,5ms,2.5ms,1ms", help="'' for none")
    ap.add_argument("--connections", type=int, default=50, help="against barfast serve")
    ap.add_argument("--nginx-connections", default="1,2,8", help="'' for none")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dur = int(args.seconds * S)
    rows: list[dict] = []
    segs = segments(args)
    for label, conns, start in segs:
        srv = start()  # type: ignore[operator]
        try:
            for rnd in range(args.repeat):
                cl = one(srv, conns, dur, 0.0)
                op = one(srv, conns, dur, cl["rps"])
                row = {
                    "target": label,
                    "connections": conns,
                    "round": rnd,
                    "closed": cl,
                    "open": op,
                    "cpu_ratio": op["cpu_us_per_req"] / cl["cpu_us_per_req"],
                    "proc_cpu_ratio": op["proc_cpu_us_per_req"] / cl["proc_cpu_us_per_req"],
                    "achieved": op["started"] / (cl["rps"] * dur / S),
                }
                rows.append(row)
                print(
                    f"{label:>12} r{rnd}: closed {cl['rps']:7.0f}/s {cl['cpu_us_per_req']:6.2f}"
                    f" µs (proc {cl['proc_cpu_us_per_req']:6.2f}, server "
                    f"{cl['server_cpu_us_per_req']:5.1f}, naps {100 * cl['nap_on_share']:.0f}%) |"
                    f" open ach {row['achieved']:.4f} {op['cpu_us_per_req']:6.2f} µs (proc "
                    f"{op['proc_cpu_us_per_req']:6.2f}, server {op['server_cpu_us_per_req']:5.1f})"
                    f" lag p50/p99 {op['lag_p50_us']:.1f}/{op['lag_p99_us']:.1f} µs, "
                    f"{op['conns_peak']} conns | open/closed {row['cpu_ratio']:.3f}",
                    flush=True,
                )
        finally:
            srv.stop()
    print(
        f"\nmedians over {args.repeat} round(s), {args.seconds:g} s per run; CPU per request "
        "in µs (engine thread; server: its process)"
    )
    head = (
        f"{'target':>12} {'rate':>7} {'closed':>7} {'open':>7} {'open/closed':>11} "
        f"{'proc':>6} {'srv closed':>10} {'srv open':>8} {'achieved':>8} {'lag p99':>8}"
    )
    print(head)
    summary = []
    for label, conns, _ in segs:
        sel = [r for r in rows if r["target"] == label]

        def med(f, sel=sel):  # type: ignore[no-untyped-def]
            return float(np.median([f(r) for r in sel]))

        m = {
            "target": label,
            "connections": conns,
            "rate": med(lambda r: r["closed"]["rps"]),
            "closed_cpu_us": med(lambda r: r["closed"]["cpu_us_per_req"]),
            "open_cpu_us": med(lambda r: r["open"]["cpu_us_per_req"]),
            "cpu_ratio": med(lambda r: r["cpu_ratio"]),
            "proc_cpu_ratio": med(lambda r: r["proc_cpu_ratio"]),
            "server_closed_cpu_us": med(lambda r: r["closed"]["server_cpu_us_per_req"]),
            "server_open_cpu_us": med(lambda r: r["open"]["server_cpu_us_per_req"]),
            "achieved": med(lambda r: r["achieved"]),
            "lag_p99_us": med(lambda r: r["open"]["lag_p99_us"]),
        }
        summary.append(m)
        print(
            f"{label:>12} {m['rate']:7.0f} {m['closed_cpu_us']:7.2f} {m['open_cpu_us']:7.2f} "
            f"{m['cpu_ratio']:11.3f} {m['proc_cpu_ratio']:6.3f} "
            f"{m['server_closed_cpu_us']:10.1f} {m['server_open_cpu_us']:8.1f} "
            f"{m['achieved']:8.4f} {m['lag_p99_us']:8.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "benchmark": "bench_same_rate",
                    "command": " ".join(sys.argv),
                    "summary_medians": summary,
                    "runs": rows,
                },
                f,
                indent=1,
            )
            f.write("\n")


if __name__ == "__main__":
    main()
