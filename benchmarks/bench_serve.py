#!/usr/bin/env python3
"""Is `barfast serve` fast enough not to be the bottleneck? It against one nginx worker, same load.

Each server is pinned to the last CPU and the load generator to CPU 0. The generator is wrk (50
connections, unpipelined) and h2load --h1 -m16 (pipelined, which saturates one nginx worker). The
servers alternate A B B A ... for --pairs rounds. The figure is the median of the per-pair ratios
serve / nginx of the generator's req/s (the target: serve sustains at least what nginx does).

    python benchmarks/bench_serve.py [--pairs 3] [--duration 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench_http import ServeTarget, cpus
from nginx_target import Nginx

HERE = Path(__file__).resolve().parent


def load(url: str, tool: str, dur: int, cpu: str) -> float:
    if tool == "wrk":
        cmd = ["wrk", "-t1", "-c50", f"-d{dur}s", url]
        pattern = r"Requests/sec:\s+([\d.]+)"
    else:
        cmd = ["h2load", "--h1", "-m16", "-c", "50", "-D", str(dur), url]
        pattern = r"finished in [\d.]+m?s, ([\d.]+) req/s"
    out = subprocess.run(
        ["taskset", "-c", cpu, *cmd], capture_output=True, text=True, check=True, timeout=dur + 30
    ).stdout
    return float(re.search(pattern, out).group(1))  # type: ignore[union-attr]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "serve.json"))
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.duration = 1, 1
    gen_cpu, srv_cpu = cpus()
    tools = [t for t in ("wrk", "h2load") if shutil.which(t)]
    rows: dict[str, dict[str, list[float]]] = {t: {"nginx": [], "serve": []} for t in tools}
    for i in range(args.pairs):
        order = ["nginx", "serve"] if i % 2 == 0 else ["serve", "nginx"]
        for server in order:
            target = Nginx(int(srv_cpu)) if server == "nginx" else ServeTarget(srv_cpu)
            try:
                for t in tools:
                    rps = load(f"http://127.0.0.1:{target.port}/", t, args.duration, gen_cpu)
                    rows[t][server].append(rps)
                    print(f"pair {i + 1} {t:7s} -> {server:6s} {rps:>10,.0f} req/s", flush=True)
            finally:
                target.stop()
    summary = {}
    for t in tools:
        ratio = statistics.median(
            s / n for s, n in zip(rows[t]["serve"], rows[t]["nginx"], strict=True)
        )
        summary[t] = ratio
        print(f"{t:7s} serve / nginx req/s, median of {args.pairs} pairs: {ratio:.3f}")
    if not args.quick:
        Path(args.out).write_text(
            json.dumps({"runs": rows, "serve_over_nginx": summary}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
