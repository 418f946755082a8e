#!/usr/bin/env python3
"""The single-engine figure: one EngineRunner in this very process (no coordinator, no ZeroMQ, no
worker process), printing the same JSON report as `barfast run --json`.

bench_http.py runs it beside `barfast run -w 1` so that the fan-out's cost (issue 4: `-w 1` at
>= 0.98 x the single-engine throughput) is a ratio taken in the same run.

    python benchmarks/single_engine.py http://127.0.0.1:8080/ -c 50 -d 10s \
        [--level-triggered] [--no-head-memo] [--nap-us N]

The two flags turn session 5's engine changes off for A/B runs in bench_open_peers.py (tools
`bf-1proc-lt`, `bf-1proc-nomemo`, `bf-1proc-s4` = both off): level-triggered epoll
(Engine._set_edge_triggered(False)) and every header block parsed (Engine._set_head_memo(False)).
--nap-us N tries the closed-loop nap (Engine._set_closed_nap_ns; tools `bf-1proc-nap20`,
`bf-1proc-nap50`): after an empty poll, sleep N µs on a timer instead of on the sockets.
"""

from __future__ import annotations

import argparse
import os
import sys

# What `barfast` itself does before numpy loads (barfast/__main__.py): one OpenBLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from barfast.config import build_run_config
from barfast.local import run_local
from barfast.report import json as report_json
from barfast.runner import default_engine


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", default="10s")
    ap.add_argument("--level-triggered", action="store_true")
    ap.add_argument("--no-head-memo", action="store_true")
    ap.add_argument("--nap-us", type=int, default=0)
    args = ap.parse_args()
    cfg = build_run_config(
        args.url, connections=args.connections, duration=args.duration, workers=1
    )

    def factory(ring: object, plan: object, start_ns: int) -> object:
        eng = default_engine(ring, plan, start_ns)  # type: ignore[arg-type]
        eng._set_edge_triggered(not args.level_triggered)
        eng._set_head_memo(not args.no_head_memo)
        eng._set_closed_nap_ns(args.nap_us * 1000)  # 0: off, the default
        return eng

    report = run_local(cfg, engine_factory=factory).report
    sys.stdout.write(report_json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
