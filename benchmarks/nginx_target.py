"""The benchmarks' target: nginx with one worker (optionally pinned), on a free loopback port.

The same shape as ../shared/bench/nginx.conf (keep-alive unlimited, tiny fixed response), but with a
free port and a private run folder so benchmarks never collide with anything else on the machine.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = """
worker_processes 1;
{affinity}
daemon off;
master_process on;
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
  server {{
    listen 127.0.0.1:{port} backlog=4096 reuseport;
    location / {{ return 200 "hello world\\n"; }}
    location = /__nginx_status {{ stub_status; }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"bench: nothing listens on port {port}")


class Nginx:
    """A running nginx; `stop()` (or the context manager) ends it and removes its folder."""

    def __init__(self, cpu: int | None = None):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.tmp = tempfile.TemporaryDirectory(prefix="barfast-bench-nginx-")
        self.port = free_port()
        affinity = f"worker_cpu_affinity {1 << cpu:b};" if cpu is not None else ""
        conf = Path(self.tmp.name) / "nginx.conf"
        conf.write_text(CONF.format(run=self.tmp.name, port=self.port, affinity=affinity))
        self.proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", self.tmp.name], stderr=subprocess.DEVNULL
        )
        try:
            wait_port(self.port)
        except SystemExit:
            self.stop()
            raise

    def requests_served(self) -> int:
        """nginx's own count of requests handled so far (stub_status; this read counts as one)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /__nginx_status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        # "...server accepts handled requests\n N N N\n..."
        line = data.split(b"server accepts handled requests", 1)[1].split(b"\n")[1]
        return int(line.split()[2])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.tmp.cleanup()

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
