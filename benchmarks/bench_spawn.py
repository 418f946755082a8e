#!/usr/bin/env python3
"""What starting local workers costs: forked from the coordinator (default) against a new interpreter
per worker (BARFAST_LOCAL_WORKERS=exec), alternating, in one run.

For each run of `barfast run -w N ... --json --quiet` against nginx (one worker on the last CPU; the
run on CPU 0 with `taskset -c 0`) it takes the CPU of the whole process tree (getrusage
RUSAGE_CHILDREN) minus the report's generator CPU (the engines' own), i.e. what the run pays
outside its engines: interpreters, imports, the coordinator's loop and merge. It prints the median
per mode and the median wall time.

    python benchmarks/bench_spawn.py                        # -w 1 -d 1s and -w 2 -n 1, 6 rounds
    python benchmarks/bench_spawn.py --quick                # CI: 1 round of -w 2 -n 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench_http import timed
from nginx_target import Nginx

MODES = ("fork", "exec")


def one_run(url: str, mode: str, args: list[str]) -> tuple[float, float]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BARFAST_LOCAL_WORKERS": mode}
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "barfast", "run", *args]
    cmd += ["-c", "50", "--json", "--quiet", url]
    t0 = time.monotonic()
    out, cpu = timed(cmd, 120, env=env)
    wall = time.monotonic() - t0
    gen = json.loads(out)["generator"]
    return cpu - (gen["cpu_user_s"] + gen["cpu_sys_s"]), wall


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="1 round of -w 2 -n 100")
    a = ap.parse_args()
    cases = [["-w", "1", "-d", "1s"], ["-w", "2", "-n", "1"]]
    if a.quick:
        a.rounds, cases = 1, [["-w", "2", "-n", "100"]]
    last_cpu = max(len(os.sched_getaffinity(0)) - 1, 0)
    with Nginx(last_cpu) as nginx:
        url = f"http://127.0.0.1:{nginx.port}/"
        for case in cases:
            res: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            for i in range(a.rounds):
                for mode in MODES if i % 2 == 0 else reversed(MODES):
                    res[mode].append(one_run(url, mode, case))
            for mode in MODES:
                cpu = statistics.median(c for c, _ in res[mode])
                wall = statistics.median(w for _, w in res[mode])
                print(
                    f"{' '.join(case):12s} {mode}: CPU outside the engines {cpu:.3f} s, wall {wall:.2f} s"
                    f"  (median of {a.rounds})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
