#!/usr/bin/env python3
"""The single-engine figure: one EngineRunner in this very process (no coordinator, no ZeroMQ, no
worker process), printing the same JSON report as `barfast run --json`.

bench_http.py runs it beside `barfast run -w 1` so that the fan-out's cost (`-w 1` should reach
>= 0.98 x the single-engine throughput) is a ratio taken in the same run.

    python benchmarks/single_engine.py http://127.0.0.1:8080/ -c 50 -d 10s \
        [--level-triggered] [--no-head-memo] [--naps auto|off|always] [--nap-us N] \
        [--no-stamps] [--nap-keep R]

The flags turn engine choices off or on for A/B runs in bench_open_peers.py (tools `bf-1proc-*`):
level-triggered epoll (Engine._set_edge_triggered(False)); every header block parsed
(Engine._set_head_memo(False)); the closed-loop naps (nap.pxi) decided by the controller (auto,
the default), never taken (off) or taken after every empty poll (always), N µs long (default 20);
--no-stamps: no receive stamps on the sockets either (so no naps); --nap-keep: the controller's
keep ratio. The engine's nap statistics go to stderr as one line `nap-stats: {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# What `barfast` itself does before numpy loads (barfast/__main__.py): one OpenBLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from barfast.config import build_run_config
from barfast.engine.inprocess import run_local
from barfast.engine.runner import default_engine
from barfast.report import json as report_json


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", default="10s")
    ap.add_argument("--level-triggered", action="store_true")
    ap.add_argument("--no-head-memo", action="store_true")
    ap.add_argument("--naps", choices=("auto", "off", "always"), default="auto")
    ap.add_argument("--nap-us", type=int, default=20)
    ap.add_argument("--no-stamps", action="store_true")
    ap.add_argument("--nap-keep", type=float, default=None)
    ap.add_argument("--nap-window-ms", type=float, default=20.0)
    ap.add_argument("--nap-pairs", type=int, default=6)
    ap.add_argument("--nap-hold-ms", type=float, default=None)
    ap.add_argument("--nap-abort", type=float, default=None)
    args = ap.parse_args()
    cfg = build_run_config(
        args.url, connections=args.connections, duration=args.duration, workers=1
    )

    engines: list = []

    def factory(ring: object, plan: object, start_ns: int) -> object:
        eng = default_engine(ring, plan, start_ns)  # type: ignore[arg-type]
        eng._set_edge_triggered(not args.level_triggered)
        eng._set_head_memo(not args.no_head_memo)
        nap_ns = 0 if args.naps == "off" else args.nap_us * 1000
        eng._set_closed_nap_ns(nap_ns, args.naps == "auto")
        if args.no_stamps:
            eng._set_defer_reads(False)
        if any(v is not None for v in (args.nap_keep, args.nap_hold_ms, args.nap_abort)):
            hold = None if args.nap_hold_ms is None else int(args.nap_hold_ms * 1e6)
            keep = 0.99 if args.nap_keep is None else args.nap_keep
            eng._set_nap_control(
                int(args.nap_window_ms * 1e6), args.nap_pairs, keep, hold, args.nap_abort
            )
        engines.append(eng)
        return eng

    report = run_local(cfg, engine_factory=factory).report
    sys.stdout.write(report_json.dumps(report) + "\n")
    for eng in engines:
        st = eng._pacing_stats()
        keys = ("closed_naps", "nap_on_s", "nap_probes", "nap_probes_on", "nap_aborts", "nap_log")
        sys.stderr.write("nap-stats: " + json.dumps({k: st[k] for k in keys}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
