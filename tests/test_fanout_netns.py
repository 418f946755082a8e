"""A remote run across network namespaces: coordinator, two worker hosts, an intruder and the target
each in their own namespace, joined by veth pairs to a bridge in a hub namespace. Addresses are in
10.213.0.0/24 and exist only inside the namespaces this test creates; the host's interfaces are
never touched. CURVE is on; the intruder's key is not authorised and its refusal must be reported.

Needs root (ip netns). Skips with the reason otherwise. Everything is torn down in the finalizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import NGINX, NGINX_CONF
from test_fanout import _stderr_until

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SUBNET = "10.213.0"
HOSTS = {"coord": 1, "target": 2, "w1": 11, "w2": 12, "intruder": 13}
ZMQ_PORT = 5555  # inside namespaces of our own: no clash with anything on the host
HTTP_PORT = 8080


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


class Netns:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.names: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []

    def ns(self, host: str) -> str:
        return f"bf{self.tag}-{host}"

    def add(self, name: str) -> None:
        r = _ip("netns", "add", name)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        self.names.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")

    def run(self, name: str, *cmd: str) -> None:
        r = subprocess.run(
            ["ip", "netns", "exec", name, *cmd], capture_output=True, text=True, timeout=10
        )
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} in {name}: {r.stderr.strip()}")

    def build(self, hosts: dict[str, int] | None = None) -> None:
        """A hub namespace with a bridge, and one namespace per host joined to it at SUBNET.last."""
        hub = self.ns("hub")
        self.add(hub)
        self.run(hub, "ip", "link", "add", "br0", "type", "bridge")
        self.run(hub, "ip", "link", "set", "br0", "up")
        for i, (host, last) in enumerate((HOSTS if hosts is None else hosts).items()):
            name = self.ns(host)
            self.add(name)
            # Create the pair inside the hub, then move one end: nothing appears on the host.
            self.run(hub, "ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0")
            self.run(hub, "ip", "link", "set", "eth0", "netns", name)
            self.run(hub, "ip", "link", "set", f"p{i}", "master", "br0")
            self.run(hub, "ip", "link", "set", f"p{i}", "up")
            self.run(name, "ip", "addr", "add", f"{SUBNET}.{last}/24", "dev", "eth0")
            self.run(name, "ip", "link", "set", "eth0", "up")

    def spawn(self, host: str, *cmd: str, **kw) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )
        self.procs.append(p)
        return p

    def teardown(self) -> None:
        # Kill by namespace membership first (nginx's workers, anything a test started), then
        # collect our Popen objects: their pipes close only when every holder is gone.
        for name in reversed(self.names):
            for pid in _ip("netns", "pids", name).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                p.communicate(timeout=5)
        for name in reversed(self.names):
            _ip("netns", "del", name)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    n = Netns()
    try:
        n.build()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        n.teardown()
        pytest.skip(f"cannot create network namespaces here: {exc}")
    yield n
    n.teardown()
    left = _ip("netns", "list").stdout
    assert n.tag not in left, f"namespaces left behind: {left}"


def _bf(*args: str) -> list[str]:
    return [sys.executable, "-m", "barfast", *args]


def _nginx_in(n: Netns, run_dir: Path) -> Path:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    conf = NGINX_CONF.format(run=run_dir, port=HTTP_PORT).replace(
        "127.0.0.1:", f"{SUBNET}.{HOSTS['target']}:"
    )
    (run_dir / "nginx.conf").write_text(conf)
    n.spawn("target", NGINX, "-c", str(run_dir / "nginx.conf"), "-p", str(run_dir))
    log = run_dir / "access.log"
    deadline = time.monotonic() + 10
    while not (run_dir / "nginx.pid").exists():
        if time.monotonic() > deadline:
            raise AssertionError("nginx did not start in the target namespace")
        time.sleep(0.05)
    return log


def test_remote_run_across_namespaces_with_curve(netns: Netns, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for name in ("coord", "w1", "w2", "intruder"):
        subprocess.run(_bf("keys", name, "--dir", str(keys)), check=True, capture_output=True)
    clients = tmp_path / "clients"
    clients.mkdir()
    for name in ("w1", "w2"):
        (clients / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    log = _nginx_in(netns, run_dir)
    coord_ep = f"tcp://{SUBNET}.{HOSTS['coord']}:{ZMQ_PORT}"
    coord = netns.spawn(
        "coord",
        *_bf(
            "run",
            "--bind", coord_ep,
            "--expect-workers", "2",
            "--wait-timeout", "30s",
            "--curve-secret", str(keys / "coord.key_secret"),
            "--curve-clients", str(clients),
            "-c", "4",
            "-n", "6000",
            "--json",
            f"http://{SUBNET}.{HOSTS['target']}:{HTTP_PORT}/",
        ),
    )  # fmt: skip
    intruder = netns.spawn(
        "intruder",
        *_bf("worker", "--connect", coord_ep, "--idle-timeout", "20s",
             "--curve-secret", str(keys / "intruder.key_secret"),
             "--curve-server", str(keys / "coord.key")),
    )  # fmt: skip
    # The intruder knocks first: it must not take a good worker's place. The good workers start
    # once the coordinator has said it refused the intruder, not after a guess at how long that
    # takes on a busy machine.
    head = _stderr_until(coord, "refused worker from")
    workers = [
        netns.spawn(
            w,
            *_bf(
                "worker",
                "--connect",
                coord_ep,
                "--idle-timeout",
                "3s",
                "--curve-secret",
                str(keys / f"{w}.key_secret"),
                "--curve-server",
                str(keys / "coord.key"),
            ),
        )  # fmt: skip
        for w in ("w1", "w2")
    ]
    out, err = coord.communicate(timeout=60)
    err = head + err
    assert coord.returncode == 0, err
    rep = json.loads(out)
    # nginx writes a request's log line after its response: wait for the lines to catch up
    deadline = time.monotonic() + 10
    while (served := log.read_bytes().count(b"\n")) < 6000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rep["requests"]["completed"] == 6000 == served
    rows = rep["workers"]
    assert len(rows) == 2 and not any(r["local"] for r in rows)
    assert sum(r["completed"] for r in rows) == 6000
    assert f"refused worker from {SUBNET}.{HOSTS['intruder']}: not authorised" in err
    _, ierr = intruder.communicate(timeout=20)
    assert intruder.returncode == 2 and "not authorised" in ierr
    for w in workers:  # each served its run, then idles out
        w.communicate(timeout=20)
        assert w.returncode == 0
