"""Open-loop pacing accuracy and cost: achieved/target rate, send lag p50/p99/p99.9, and generator
CPU per request (open loop vs a closed loop doing the same number of requests), against one nginx
worker on loopback.

    flock /tmp/barfast-bench.lock python benchmarks/bench_pacing.py [--quick] [--rates 1000,10000]

Pin it the way MEASURING.md says (nginx on CPU 1 via --nginx-cpu, this process on CPU 0 via
taskset) for figures that mean something; on a shared machine read the ratios, not the absolutes.
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
    if spin_ns is not None:
        eng._set_spin_ns(spin_ns)
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
    out["lag"] = lag
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 s per rate (CI smoke)")
    ap.add_argument("--rates", default="1000,10000,50000")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--nginx-cpu", type=int, default=None)
    ap.add_argument("--spin-us", type=float, default=None, help="override the pacing spin window")
    args = ap.parse_args()
    dur = (1 if args.quick else 5) * S
    proc, port = start_nginx(args.nginx_cpu)
    try:
        print(
            f"{'rate':>8} {'achieved/target':>16} {'lag p50 µs':>11} {'lag p99 µs':>11} "
            f"{'lag p99.9 µs':>13} {'not_sent':>9} {'cpu µs/req open':>16} "
            f"{'closed':>8} {'ratio':>6}"
        )
        for rate in (float(r) for r in args.rates.split(",")):
            spin = None if args.spin_us is None else int(args.spin_us * 1000)
            o = one_run(port, args.connections, dur, rate, spin_ns=spin)
            target = rate * dur / S
            # closed loop doing the same number of requests (its own pace): CPU per request
            cl = one_run(port, args.connections, 0, 0.0, requests=max(1, o["completed"]))
            lag = o["lag"]
            p = np.percentile(lag, [50, 99, 99.9]) / 1000 if len(lag) else [float("nan")] * 3
            cpu_open = o["cpu_s"] / max(1, o["completed"]) * 1e6
            cpu_closed = cl["cpu_s"] / max(1, cl["completed"]) * 1e6
            print(
                f"{rate:8.0f} {o['completed'] / target:16.4f} {p[0]:11.1f} {p[1]:11.1f} "
                f"{p[2]:13.1f} {o['not_sent']:9d} {cpu_open:16.2f} {cpu_closed:8.2f} "
                f"{cpu_open / cpu_closed:6.2f}"
            )
            sys.stdout.flush()
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
