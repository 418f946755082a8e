#!/usr/bin/env python3
"""Memory stays flat: RSS of a process running the whole worker pipeline (engine, ring, aggregator,
per-second histograms, merger) sampled once a second, against requests completed so far.

Target: RSS grows < 5 MB between 1 M and 5 M requests (with --scenario: the mix of bench_http.py,
three weighted endpoints templated from a 10,000-row CSV with status checks, 1 M to 10 M). Runs the
built-in target (`barfast serve`) pinned to the last CPU unless a URL is given.

    python benchmarks/bench_memory.py                       # 5 M requests, 50 connections
    python benchmarks/bench_memory.py --scenario -n 10000000
    python benchmarks/bench_memory.py --quick               # 300 k requests: the script still works
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from barfast.config import build_run_config
from barfast.engine.inprocess import run_local
from barfast.serve.embedded import embedded_target

HERE = Path(__file__).resolve().parent


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url", nargs="?")
    ap.add_argument("-n", "--requests", type=int, default=5_000_000)
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scenario", action="store_true", help="the bench_http.py scenario mix")
    ap.add_argument("--out", default=str(HERE / "results" / "memory.json"))
    args = ap.parse_args()
    if args.quick:
        args.requests = 300_000
    points: list[tuple[int, int]] = []

    def on_snapshot(s: dict) -> None:
        points.append((int(s["counters"]["completed"]), rss_kib()))

    def go(url: str) -> dict:
        opts = dict(connections=args.connections, requests=args.requests, workers=1)
        if not args.scenario:
            return run_local(build_run_config(url, **opts), on_snapshot=on_snapshot).report
        sys.path.insert(0, str(HERE))
        from bench_http import SCENARIO, write_rows

        from barfast.scenario.compile import compile_run
        from barfast.scenario.load import load_scenario

        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "mix.yaml").write_text(SCENARIO.format(url=url))
            write_rows(Path(d))
            sc = load_scenario(Path(d) / "mix.yaml")
            cfg = compile_run(sc, **opts)
            return run_local(cfg, on_snapshot=on_snapshot).report

    t0 = time.monotonic()
    if args.url:
        report = go(args.url)
    else:
        with embedded_target() as url:
            report = go(url)
    wall = time.monotonic() - t0
    completed = report["requests"]["completed"]
    print(f"{completed:,} requests in {wall:.1f}s; RSS (MiB) by requests completed:")
    for n, kib in points:
        print(f"  {n:>10,}  {kib / 1024:8.1f}")

    def rss_at(n: int) -> int:
        return next((kib for done, kib in points if done >= n), points[-1][1])

    lo, hi = min(1_000_000, args.requests // 5), args.requests
    growth_mib = (rss_at(hi) - rss_at(lo)) / 1024
    print(f"RSS growth between {lo:,} and {hi:,} requests: {growth_mib:+.2f} MiB (target < 5 MiB)")
    if args.scenario and args.out == str(HERE / "results" / "memory.json"):
        args.out = str(HERE / "results" / "memory-scenario.json")
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps({"from": lo, "to": hi, "growth_mib": growth_mib, "points": points}, indent=1)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
