"""Open-loop pacing accuracy and cost: achieved/target rate, send lag p50/p99/p99.9, and generator
CPU per request (open loop vs a closed loop doing the same number of requests), against one nginx
worker on loopback.

    flock /tmp/barfast-bench.lock taskset -c 0 python benchmarks/bench_pacing.py --nginx-cpu 1 \
        [--quick] [--rates 1000,10000,50000,sustainable] [--spins auto,0,20] [--json FILE]

Pin it the way MEASURING.md says (nginx on CPU 1 via --nginx-cpu, this process on CPU 0 via
taskset) for figures that mean something; on a shared machine read the ratios, not the absolutes.

"sustainable" is 50 % of the closed-loop maximum measured at the start. The closed-loop reference
(CPU per request at full speed, 50 connections) is measured before and after the open-loop runs; the
ratio uses their mean. --spins lists pacing modes: "auto" (the engine's adaptive default), a fixed
spin window in µs, or "cN": no spin, one wake-up per N µs sending all that is due (lag for CPU). CPU is the engine thread's own (RUSAGE_THREAD): the ring drain is not counted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from barfast import _core
from barfast.ring import Ring

S = 1_000_000_000

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
{affinity}
pid {run}/nginx.pid;
error_log {run}/error.log;
worker_rlimit_nofile 65535;
events {{ worker_connections 20000; use epoll; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "hello world\\n"; }} }}
}}
"""


def start_nginx(cpu: int | None) -> tuple[subprocess.Popen[bytes], int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    run = tempfile.mkdtemp(prefix="bench-pacing-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aff = f"worker_cpu_affinity {1 << cpu:b};" if cpu is not None else ""
    conf = os.path.join(run, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(run=run, port=port, affinity=aff))
    proc = subprocess.Popen([nginx, "-c", conf, "-p", run], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("nginx did not start")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


def one_run(
    port: int,
    conns: int,
    duration_ns: int,
    rate: float,
    requests: int = 0,
    spin_ns: int | None = None,
    coalesce_ns: int = 0,
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
    eng._set_spin_ns(spin_ns)
    eng._set_coalesce_ns(coalesce_ns)
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


def closed_reference(port: int, conns: int, dur_ns: int) -> dict:
    cl = one_run(port, conns, dur_ns, 0.0)
    return {
        "rps": cl["completed"] / (dur_ns / S),
        "cpu_us_per_req": cl["cpu_s"] / max(1, cl["completed"]) * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 s per run (CI smoke)")
    ap.add_argument("--rates", default="1000,10000,50000,sustainable")
    ap.add_argument(
        "--spins",
        default="auto,0,20",
        help="auto, fixed windows in µs, or cN: coalesce sends once per N µs",
    )
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--nginx-cpu", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    dur = (1 if args.quick else 3) * S
    proc, port = start_nginx(args.nginx_cpu)
    rows: list[dict] = []
    try:
        ref0 = closed_reference(port, args.connections, dur)
        rates = [
            ref0["rps"] * 0.5 if r == "sustainable" else float(r) for r in args.rates.split(",")
        ]
        print(
            f"closed loop: {ref0['rps']:.0f} req/s, {ref0['cpu_us_per_req']:.2f} µs CPU/request; "
            f"sustainable = {rates[-1]:.0f} req/s"
        )
        print(
            f"{'spin':>5} {'rate':>7} {'achieved/target':>16} {'lag p50 µs':>11} {'p99 µs':>8} "
            f"{'p99.9 µs':>9} {'not_sent':>9} {'cpu µs/req':>11} {'spin end µs':>12} "
            f"{'wake late µs':>13}"
        )
        for spin_txt in args.spins.split(","):
            spin: int | None = None
            coalesce = 0
            if spin_txt.startswith("c"):  # cN: coalesce sends, one wake per N µs (no spin)
                coalesce = int(float(spin_txt[1:]) * 1000)
            elif spin_txt != "auto":
                spin = int(float(spin_txt) * 1000)
            for rate in rates:
                o = one_run(port, args.connections, dur, rate, spin_ns=spin, coalesce_ns=coalesce)
                target = rate * dur / S
                lag = o["lag"]
                p = np.percentile(lag, [50, 99, 99.9]) / 1000 if len(lag) else [float("nan")] * 3
                cpu_open = o["cpu_s"] / max(1, o["completed"]) * 1e6
                st = o["pacing"]
                row = {
                    "spin": spin_txt,
                    "rate": round(rate, 1),
                    "achieved_over_target": round(o["completed"] / target, 5),
                    "lag_us": {"p50": p[0], "p99": p[1], "p99.9": p[2]},
                    "not_sent": o["not_sent"],
                    "cpu_us_per_req": round(cpu_open, 3),
                    "spin_end_us": st["spin_ns"] / 1000,
                    "wake_late_us_mean": round(st["late_ns_mean"] / 1000, 2),
                    "timed_sleeps": st["timed_sleeps"],
                }
                rows.append(row)
                print(
                    f"{spin_txt:>5} {rate:7.0f} {row['achieved_over_target']:16.4f} {p[0]:11.1f} "
                    f"{p[1]:8.1f} {p[2]:9.1f} {o['not_sent']:9d} {cpu_open:11.2f} "
                    f"{row['spin_end_us']:12.1f} {row['wake_late_us_mean']:13.1f}"
                )
                sys.stdout.flush()
        ref1 = closed_reference(port, args.connections, dur)
    finally:
        proc.terminate()
        proc.wait()
    closed_cpu = (ref0["cpu_us_per_req"] + ref1["cpu_us_per_req"]) / 2
    print(
        f"closed loop after: {ref1['rps']:.0f} req/s, {ref1['cpu_us_per_req']:.2f} µs CPU/request; "
        f"mean {closed_cpu:.2f}"
    )
    print("CPU per request open / closed:")
    for row in rows:
        row["cpu_ratio_open_closed"] = round(row["cpu_us_per_req"] / closed_cpu, 3)
        print(
            f"  spin {row['spin']:>5} rate {row['rate']:8.0f}: {row['cpu_ratio_open_closed']:.2f}"
        )
    if args.json:
        import json

        out = {
            "benchmark": "bench_pacing",
            "duration_s": dur / S,
            "connections": args.connections,
            "closed_loop": {"before": ref0, "after": ref1, "cpu_us_per_req_mean": closed_cpu},
            "runs": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
