"""`barfast run` end to end: the real CLI process against a real nginx and the embedded target."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from hdrh.histogram import HdrHistogram

from conftest import barfast_cmd


def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(barfast_cmd(*args), capture_output=True, text=True, timeout=timeout)


def test_count_equals_nginx_access_log(nginx) -> None:
    before = nginx.requests_logged()
    p = run("run", "-w", "1", "-n", "5000", "-c", "10", nginx.url, "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["schema"] == "barfast.report/1"
    req = rep["requests"]
    assert req["started"] == 5000
    assert req["completed"] == 5000
    assert req["errors"] == 0 and req["in_flight"] == 0
    assert rep["status"] == {"200": 5000}
    assert nginx.wait_logged(before + 5000) - before == req["completed"]
    # Every sample reached the histogram; nothing was dropped.
    assert rep["samples"] == {
        "aggregated": 5000,
        "dropped_by_ring": 0,
        "failures_without_sample": 0,
        "clamped_to_1h": {
            "latency": 0,
            "uncorrected": 0,
            "send_lag": 0,
            "connect": 0,
            "ttfb": 0,
            "tls": 0,
        },
        "snapshots_rejected": 0,
    }
    # every response has a time to first byte; each of the 10 connections a connect time
    assert rep["ttfb_ms"]["count"] == 5000
    assert 1 <= rep["connect_ms"]["count"] <= 10
    h = HdrHistogram.decode(rep["histogram"]["latency"].encode())
    assert h.get_total_count() == 5000
    assert 0 < rep["latency_ms"]["p50"] <= rep["latency_ms"]["p99"] <= rep["latency_ms"]["max"]
    assert sum(pt["requests"] for pt in rep["series"]) == 5000
    assert rep["workers"][0]["completed"] == 5000
    assert rep["rps"] > 0 and rep["transfer"]["bytes_rx"] > 5000 * len("hello world\n")


def test_text_report_and_output_file(nginx, tmp_path) -> None:
    out = tmp_path / "report.json"
    p = run("run", "-w", "1", "-n", "2000", "-c", "4", nginx.url, "-o", str(out), "--latency")
    assert p.returncode == 0, p.stderr
    text = p.stdout
    for needle in (
        f"test @ {nginx.url}",
        "1 worker and 4 connections, closed loop",
        "Latency",
        "99.999%",
        "Detailed percentile spectrum",
        "2000 requests in",
        "Requests/sec:",
        "Transfer/sec:",
        "Status: 200 2000",
        "Errors: none",
        "Samples dropped by ring: 0",
    ):
        assert needle in text, needle
    rep = json.loads(out.read_text())
    assert rep["requests"]["completed"] == 2000
    assert rep["config"]["url"] == nginx.url and rep["config"]["connections"] == 4


def test_status_and_open_loop_views(nginx) -> None:
    p = run("run", "-R", "2000", "-d", "1s", "-c", "4", nginx.url + "status/404", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert set(rep["status"]) == {"404"}
    done = rep["requests"]["completed"]
    # every one of the 2000 entries accounted for; how many completed depends on the CPU the
    # generator got (sends due when no connection was free at the end are not_sent)
    r = rep["requests"]
    assert r["started"] + r["not_sent"] == 2000, r
    assert 0 < done <= 2000, done
    for key in ("latency_ms", "latency_uncorrected_ms", "send_lag_ms"):
        assert rep[key]["count"] == done
    assert rep["latency_ms"]["p50"] >= rep["latency_uncorrected_ms"]["p50"]
    assert {"latency", "uncorrected", "send_lag"} <= set(rep["histogram"])
    assert rep["config"]["open_loop"] is True and rep["config"]["rate"] == 2000.0


def test_no_url_runs_the_embedded_target() -> None:
    p = run("run", "-d", "1s", "-c", "4", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["config"]["embedded_target"] is True
    assert rep["config"]["url"].startswith("http://127.0.0.1:")
    assert rep["requests"]["completed"] > 100
    assert rep["errors"] == {}
    assert 0.9 <= rep["duration_s"] <= 5.0  # not before the deadline; 5 s: a hang guard
    # closed-loop naps are on by default (the controller decides when); the probes alone nap
    assert rep["config"]["naps"] is True and rep["workers"][0]["nap_s"] > 0


def test_a_hopeless_rate_is_counted_in_bulk_and_said(tmp_path) -> None:
    # 1e9 req/s for 1 s against the embedded target with 2 connections: the run ends on time, every
    # schedule entry is accounted for, and the report says which failures have no sample.
    out = tmp_path / "r.json"
    t = time.monotonic()
    p = run(
        "run", "-w", "1", "-c", "2", "-R", "1e9", "-d", "1s", "--timeout", "200ms", "-o", str(out)
    )
    assert time.monotonic() - t < 30
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    req, err = rep["requests"], rep["errors"]
    assert req["started"] + req["not_sent"] == 1_000_000_000
    assert req["started"] == req["completed"] + err["timeout"] + req["in_flight"]
    bulk = rep["samples"]["failures_without_sample"]
    assert bulk > 9e8
    assert any("counted in bulk" in w and str(bulk) in w for w in rep["generator"]["warnings"])
    assert f"(and {bulk} failures counted without samples)" in p.stdout


def test_wakeups_are_counted(tmp_path) -> None:
    # An open loop at 200 req/s sleeps before every send (5 ms gaps, spin windows of tens of µs):
    # at least one voluntary context switch per request, which the report counts and prints.
    out = tmp_path / "r.json"
    p = run("run", "-w", "1", "-c", "4", "-R", "200", "-d", "1s", "-o", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    r = rep["requests"]
    assert r["started"] + r["not_sent"] == 200 and r["completed"] > 50, r
    per_req = rep["generator"]["wakeups_per_request"]
    assert per_req >= 0.9
    assert rep["workers"][0]["wakeups"] >= 0.9 * rep["requests"]["completed"]
    assert f"Generator wake-ups: {per_req:.2f} per request" in p.stdout


def test_naps_can_be_switched_off() -> None:
    p = run("run", "-d", "1s", "-c", "4", "--no-naps", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["config"]["naps"] is False
    assert rep["workers"][0]["nap_s"] == 0 and rep["workers"][0]["nap_share"] == 0
    assert rep["requests"]["completed"] > 100
    p = run("run", "-d", "500ms", "-c", "4", "--no-naps")
    assert p.returncode == 0, p.stderr
    assert "1 worker and 4 connections, closed loop, naps off" in p.stdout
    assert "naps on" not in p.stdout


def test_sigint_prints_partial_report_and_exits_130(nginx) -> None:
    before = nginx.requests_logged()
    proc = subprocess.Popen(
        barfast_cmd("run", "-d", "30s", "-c", "4", nginx.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the run has begun (load reaches nginx), however long start-up took on this machine
        assert nginx.wait_logged(before + 100, timeout_s=30) - before >= 100
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert stopped_in < 5.0
    assert "interrupted: partial report" in out
    assert "Requests/sec:" in out and "Status: 200" in out
    assert "Traceback" not in err


def test_sigint_without_url_stops_the_embedded_target() -> None:
    import socket

    proc = subprocess.Popen(
        barfast_cmd("run", "-d", "30s", "-c", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _load_started(proc.pid), "the run never reached its embedded target"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "interrupted: partial report" in out
    port = int(out.split("test @ http://127.0.0.1:")[1].split("/")[0])
    # The embedded target is gone: nothing listens on its port any more.
    with socket.socket() as s:
        s.settimeout(1.0)
        assert s.connect_ex(("127.0.0.1", port)) != 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _listening_port(pid: int) -> int | None:
    """The IPv4 port process `pid` listens on (from its socket inodes and /proc/net/tcp)."""
    import os

    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return None
    for f in _tcp_table():
        if f[3] == "0A" and f[9] in inodes:
            return int(f[1].rsplit(":", 1)[1], 16)
    return None


def _tcp_table() -> list[list[str]]:
    with open("/proc/net/tcp") as fh:
        return [line.split() for line in fh.readlines()[1:]]


def _load_started(pid: int, timeout_s: float = 30.0) -> bool:
    """Once a child of `pid` (the embedded target) holds an established connection: the workers
    connect only when the run begins."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for kid in _children(pid):
            port = _listening_port(kid)
            if port is not None and any(
                f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port for f in _tcp_table()
            ):
                return True
        time.sleep(0.05)
    return False


def test_embedded_target_dies_with_a_killed_generator() -> None:
    import os

    proc = subprocess.Popen(
        barfast_cmd("run", "-d", "30s", "-c", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        kids: list[int] = []
        while not kids and time.monotonic() < deadline:
            time.sleep(0.1)
            kids = _children(proc.pid)
        assert kids, "the embedded target was not started"
        time.sleep(1.0)
        proc.kill()  # SIGKILL: no handler runs, only PR_SET_PDEATHSIG can stop the server
        proc.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{kids[0]}"):
            with open(f"/proc/{kids[0]}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break  # a zombie is a dead process (its parent is gone; init reaps it)
            time.sleep(0.05)
        alive = os.path.exists(f"/proc/{kids[0]}")
        if alive:
            with open(f"/proc/{kids[0]}/stat") as f:
                alive = not f.read().split(") ")[1].startswith("Z")
        assert not alive, "the embedded target outlived its generator"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_gives_a_partial_report(nginx) -> None:
    before = nginx.requests_logged()
    proc = subprocess.Popen(
        barfast_cmd("run", "-d", "30s", "-c", "2", nginx.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert nginx.wait_logged(before + 100, timeout_s=30) - before >= 100  # the run began
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "interrupted: partial report" in out
