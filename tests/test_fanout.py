"""Fan-out with real processes, real sockets, real kills: `barfast run -w N` against nginx, worker
loss, coordinator loss, Ctrl-C, failing workers, remote workers with CURVE on loopback.

Counts are checked against nginx's own access log (conftest.nginx); worker pids are found by
scanning /proc for the coordinator's children, so nothing here trusts barfast's own word alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import barfast_cmd, children, free_port

pytestmark = pytest.mark.slow


# --- helpers ---------------------------------------------------------------------------------------
def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_worker(pid: int) -> bool:
    """A local worker: forked (named barfast-worker, spawn.py) or started as `-m barfast.fanout.worker`."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == "barfast-worker" or "barfast.fanout.worker" in cmdline(pid)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"  # a zombie sends nothing


def worker_pids(coord_pid: int, n: int, timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [p for p in children(coord_pid) if is_worker(p)]
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{n} workers of {coord_pid} did not appear")


def wait_requests(nginx, start: int, at_least: int, timeout_s: float = 20.0) -> None:
    if nginx.wait_logged(start + at_least, timeout_s) - start < at_least:
        raise AssertionError("the load did not reach nginx")


def stable_after(nginx, wait_s: float, window_s: float) -> tuple[int, int]:
    time.sleep(wait_s)
    a = nginx.requests_logged()
    time.sleep(window_s)
    return a, nginx.requests_logged()


def start(*args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        barfast_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def finish(p: subprocess.Popen[str], timeout_s: float = 60.0) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"barfast did not finish:\n{err}") from None
    return p.returncode, out, err


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- local fan-out ---------------------------------------------------------------------------------
def test_two_workers_count_equals_nginx(nginx) -> None:
    before = nginx.requests_logged()
    code, out, err = finish(start("run", "-w", "2", "-c", "4", "-n", "20000", "--json", nginx.url))
    assert code == 0, err
    rep = json.loads(out)
    served = nginx.wait_logged(before + 20000) - before
    assert rep["requests"]["completed"] == 20000 == served
    rows = rep["workers"]
    assert len(rows) == 2
    assert sum(r["completed"] for r in rows) == 20000
    assert sorted(r["completed"] for r in rows) == [10000, 10000]  # -n split with no remainder lost
    assert all(r["local"] and not r["lost"] for r in rows)
    assert rep["workers_lost"] == []
    assert len({r["pid"] for r in rows}) == 2


@pytest.mark.parametrize("spawn_mode", ["fork", "exec"])
def test_workers_forked_or_exec_count_equals_nginx(nginx, spawn_mode: str) -> None:
    """Local workers are forked from the coordinator by default (spawn.py) and started as
    `python -m barfast.fanout.worker` with BARFAST_LOCAL_WORKERS=exec; both give the same exact run."""
    env = {**os.environ, "BARFAST_LOCAL_WORKERS": spawn_mode}
    before = nginx.requests_logged()
    p = start("run", "-w", "2", "-c", "4", "-n", "100000", "--json", nginx.url, env=env)
    try:
        pids = worker_pids(p.pid, 2)
        execd = ["barfast.fanout.worker" in cmdline(w) for w in pids]
        code, out, err = finish(p)
    finally:
        kill_all([p.pid])
    assert code == 0, err
    assert execd == [spawn_mode == "exec"] * 2  # a forked worker has the coordinator's cmdline
    rep = json.loads(out)  # one document: a forked child printed nothing of the coordinator's
    assert rep["requests"]["completed"] == 100000 == nginx.wait_logged(before + 100000) - before
    assert sorted(r["pid"] for r in rep["workers"]) == sorted(pids)
    assert sorted(r["completed"] for r in rep["workers"]) == [50000, 50000]


def test_odd_split_keeps_remainders(nginx) -> None:
    before = nginx.requests_logged()
    code, out, err = finish(start("run", "-w", "3", "-c", "3", "-n", "1001", "--json", nginx.url))
    assert code == 0, err
    rep = json.loads(out)
    assert rep["requests"]["completed"] == 1001 == nginx.wait_logged(before + 1001) - before
    assert sorted(r["completed"] for r in rep["workers"]) == [333, 334, 334]


def test_sigkill_one_worker_run_goes_on(nginx) -> None:
    before = nginx.requests_logged()
    p = start("run", "-w", "2", "-c", "2", "-d", "5s", "--json", nginx.url)
    try:
        pids = worker_pids(p.pid, 2)
        wait_requests(nginx, before, 100)
        # A snapshot is due 1 s into the run; 2.5 s leaves room for a busy machine to deliver it
        # (the row's "snapshots" count below says whether one came).
        time.sleep(2.5)
        os.kill(pids[0], signal.SIGKILL)
        code, out, err = finish(p)
    finally:
        kill_all([p.pid])
    assert code == 3, err
    assert "lost" in err
    rep = json.loads(out)
    lost = [r for r in rep["workers"] if r["lost"]]
    assert len(lost) == 1 and lost[0]["pid"] == pids[0]
    assert rep["workers_lost"] == [lost[0]["worker"]]
    assert lost[0]["snapshots"] >= 1, lost
    assert lost[0]["completed"] > 0  # its data up to the last snapshot is kept
    survivor = [r for r in rep["workers"] if not r["lost"]][0]
    assert survivor["final"]
    assert rep["requests"]["completed"] == lost[0]["completed"] + survivor["completed"]
    # nginx saw everything we counted, plus what the killed worker did after its last snapshot
    assert (
        nginx.wait_logged(before + rep["requests"]["completed"]) - before
        >= (rep["requests"]["completed"])
    )
    assert not alive(pids[0]) and not alive(pids[1])


def test_sigkill_coordinator_stops_all_load(nginx) -> None:
    before = nginx.requests_logged()
    p = start("run", "-w", "2", "-c", "2", "-d", "30s", "-q", nginx.url)
    pids: list[int] = []
    try:
        pids = worker_pids(p.pid, 2)
        wait_requests(nginx, before, 200)
        p.kill()
        p.wait(5)
        a, b = stable_after(nginx, 3.0, 1.0)
        assert a == b, f"nginx still received {b - a} requests 3 s after the coordinator died"
        assert not any(alive(w) for w in pids)
    finally:
        kill_all([p.pid, *pids])
        p.communicate()


@pytest.mark.parametrize("whom", ["coordinator", "process group"])
def test_ctrl_c_partial_report_and_exit_130(nginx, whom: str) -> None:
    """SIGINT to the coordinator, or to its whole process group as a terminal's Ctrl-C sends it
    (the workers, forked or not, ignore it and wait for the coordinator's STOP)."""
    before = nginx.requests_logged()
    # start_new_session: its own process group, as a shell's job
    p = start("run", "-w", "2", "-c", "2", "-d", "30s", "--json", nginx.url, start_new_session=True)
    pids: list[int] = []
    try:
        pids = worker_pids(p.pid, 2)
        wait_requests(nginx, before, 200)
        time.sleep(1.2)
        if whom == "coordinator":
            p.send_signal(signal.SIGINT)
        else:
            os.killpg(p.pid, signal.SIGINT)
        code, out, err = finish(p, 15)
    finally:
        kill_all([p.pid, *pids])
    assert code == 130, err
    rep = json.loads(out)
    assert rep["interrupted"] is True
    done = rep["requests"]["completed"]
    served = nginx.wait_logged(before + done) - before
    assert done > 0
    # Every worker stopped and sent its final snapshot: what we count is what nginx answered, except
    # requests in flight at the stop (at most one per connection).
    assert done <= served <= done + 2
    assert all(r["final"] for r in rep["workers"])
    time.sleep(0.5)
    assert not any(alive(w) for w in pids)


def test_local_worker_that_cannot_start_is_reported(nginx) -> None:
    from barfast.config import build_run_config
    from barfast.fanout.coordinator import Coordinator
    from barfast.status import NoLoadError

    cfg = build_run_config(nginx.url, requests=10, workers=1)
    broken = [sys.executable, "-c", "import sys; sys.exit('worker import failed: no engine here')"]
    coord = Coordinator(cfg, local_workers=1, worker_cmd=broken)
    try:
        with pytest.raises(NoLoadError, match="no engine here"):
            coord.run()
    finally:
        coord.close()


def test_local_worker_that_cannot_be_started_is_one_line(nginx) -> None:
    """The worker's program cannot be run at all (here: no such file): a NoLoadError naming the
    worker and the errno's text, not an internal error."""
    from barfast.config import build_run_config
    from barfast.fanout.coordinator import Coordinator
    from barfast.status import NoLoadError

    cfg = build_run_config(nginx.url, requests=10, workers=2)
    coord = Coordinator(cfg, local_workers=2, worker_cmd=["/nonexistent/barfast-worker"])
    try:
        with pytest.raises(NoLoadError, match="cannot start local worker 1 of 2: No such file"):
            coord.run()
    finally:
        coord.close()


def test_expected_workers_that_never_come(tmp_path: Path) -> None:
    port = free_port()
    t0 = time.monotonic()
    code, _, err = finish(
        start(
            "run",
            "--bind",
            f"tcp://127.0.0.1:{port}",
            "--expect-workers",
            "2",
            "--wait-timeout",
            "1s",
            "-n",
            "10",
            f"http://127.0.0.1:{free_port()}/",
        )
    )
    assert code == 3
    assert "only 0 of 2 remote workers" in err
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--expect-workers", "1"], "--bind"),
        (["--bind", "tcp://127.0.0.1:1"], "--expect-workers"),
        (["--bind", "udp://x", "--expect-workers", "1"], "bad --bind"),
        (["-w", "0"], "--workers"),
        (["--bind", "tcp://127.0.0.1:5", "--expect-workers", "1", "--curve-secret", "x"], "CURVE"),
    ],
)
def test_bad_fanout_options(args: list[str], fragment: str) -> None:
    code, _, err = finish(start("run", *args, "-n", "1", "http://127.0.0.1:9/"))
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err


# --- a protocol-speaking peer (a real process on a real socket) --------------------------------------
PEER = textwrap.dedent(
    """
    import sys, time, zmq, msgpack
    from barfast.fanout import protocol
    from barfast.fanout.protocol import MsgKind
    endpoint, mode = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 1000
    s.connect(endpoint)
    hello = {"pid": 1, "host": "peer", "cpus": 1}
    if mode == "version":
        s.send(msgpack.packb([protocol.PROTOCOL_VERSION + 7, int(MsgKind.HELLO), hello]))
    else:
        s.send(protocol.encode(MsgKind.HELLO, hello))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not s.poll(100):
            continue
        frame = s.recv()
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolError as exc:
            print("peer got:", exc, file=sys.stderr, flush=True)
            break
        if msg.kind == MsgKind.ERROR:
            print("peer got:", msg.body["reason"], file=sys.stderr, flush=True)
            break
        if msg.kind == MsgKind.PLAN:
            s.send(protocol.encode(MsgKind.ERROR, {"reason": "engine failed: cannot open sockets (EMFILE)", "code": 3}))
            break
    s.close()
    ctx.term()
    """
)


def _peer(tmp_path: Path, endpoint: str, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    return subprocess.Popen(
        [sys.executable, str(script), endpoint, mode], stderr=subprocess.PIPE, text=True
    )


def test_worker_error_is_printed_and_exit_3(tmp_path: Path) -> None:
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    peer = _peer(tmp_path, ep, "error")
    try:
        code, _, err = finish(
            start(
                "run",
                "--bind",
                ep,
                "--expect-workers",
                "1",
                "--wait-timeout",
                "10s",
                "-n",
                "5",
                f"http://127.0.0.1:{free_port()}/",
            )
        )
    finally:
        peer.kill()
        peer.communicate()
    assert code == 3
    assert "cannot open sockets (EMFILE)" in err
    assert "Traceback" not in err


def test_protocol_version_mismatch_is_refused_naming_both(tmp_path: Path) -> None:
    from barfast.fanout.protocol import PROTOCOL_VERSION

    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    peer = _peer(tmp_path, ep, "version")
    try:
        code, _, err = finish(
            start(
                "run",
                "--bind",
                ep,
                "--expect-workers",
                "1",
                "--wait-timeout",
                "2s",
                "-n",
                "5",
                f"http://127.0.0.1:{free_port()}/",
            )
        )
        _, peer_err = peer.communicate(timeout=15)
    finally:
        peer.kill()
    assert code == 3
    assert f"protocol {PROTOCOL_VERSION + 7}" in err and f"protocol {PROTOCOL_VERSION}" in err
    # the peer was told too, in a message it could still recognise as a version mismatch
    assert "version mismatch" in peer_err


# --- remote workers on loopback ----------------------------------------------------------------------
def _keys(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "keys"
    for n in names:
        subprocess.run(barfast_cmd("keys", n, "--dir", str(d)), check=True, capture_output=True)
    return d


def _stderr_until(p: subprocess.Popen[str], needle: str, timeout_s: float = 30.0) -> str:
    """p's stderr up to and including the first line holding `needle` (or what came before EOF or
    timeout_s: the caller's assertion on it then fails)."""
    import select

    assert p.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([p.stderr], [], [], left)[0]:
            break
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            break
    return "".join(lines)


def test_keys_command(tmp_path: Path) -> None:
    d = _keys(tmp_path, "alpha")
    pub, sec = d / "alpha.key", d / "alpha.key_secret"
    assert pub.is_file() and sec.is_file()
    assert sec.stat().st_mode & 0o777 == 0o600
    assert "secret-key" in sec.read_text() and "secret-key" not in pub.read_text()
    r = subprocess.run(
        barfast_cmd("keys", "alpha", "--dir", str(d)), capture_output=True, text=True
    )
    assert r.returncode == 2 and "already exists" in r.stderr
    r = subprocess.run(barfast_cmd("keys", "../x", "--dir", str(d)), capture_output=True, text=True)
    assert r.returncode == 2 and "bad key name" in r.stderr


def test_remote_workers_with_curve_and_a_refused_one(nginx, tmp_path: Path) -> None:
    d = _keys(tmp_path, "coord", "w1", "w2", "intruder")
    clients = tmp_path / "clients"
    clients.mkdir()
    for n in ("w1", "w2"):
        (clients / f"{n}.key").write_bytes((d / f"{n}.key").read_bytes())
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"

    def worker(n: str) -> subprocess.Popen[str]:
        return start(
            "worker",
            "--connect",
            ep,
            "--curve-secret",
            str(d / f"{n}.key_secret"),
            "--curve-server",
            str(d / "coord.key"),
            "--idle-timeout",
            "15s",
        )

    workers = [worker("intruder")]
    before = nginx.requests_logged()
    coord = None
    try:
        coord = start(
            "run",
            "--bind",
            ep,
            "--expect-workers",
            "2",
            "--wait-timeout",
            "20s",
            "--curve-secret",
            str(d / "coord.key_secret"),
            "--curve-clients",
            str(clients),
            "-c",
            "4",
            "-n",
            "4000",
            "--json",
            nginx.url,
        )
        # The intruder knocks first: the good workers start only once the coordinator has said
        # it refused it, so it cannot have taken a good worker's place (nor been too late to be
        # refused before the run ended). Without the refusal, the coordinator's wait times out.
        head = _stderr_until(coord, "refused worker from")
        workers += [worker("w1"), worker("w2")]
        code, out, err = finish(coord)
        err = head + err
        icode, _, ierr = finish(workers[0], 20)
    finally:
        kill_all([w.pid for w in workers] + ([coord.pid] if coord else []))
        for w in workers:
            w.communicate()
    assert code == 0, err
    rep = json.loads(out)
    assert rep["requests"]["completed"] == 4000 == nginx.wait_logged(before + 4000) - before
    assert [r["local"] for r in rep["workers"]] == [False, False]
    assert "refused worker from 127.0.0.1: not authorised" in err
    assert icode == 2 and "not authorised" in ierr


def test_remote_worker_stops_load_when_coordinator_vanishes(nginx) -> None:
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    w = start("worker", "--connect", ep, "--idle-timeout", "20s")
    before = nginx.requests_logged()
    coord = start(
        "run", "--bind", ep, "--expect-workers", "1", "-c", "2", "-d", "30s", "-q", nginx.url
    )
    head = ""
    try:
        wait_requests(nginx, before, 200)
        coord.kill()  # not the worker's parent: only the heartbeat timeout can stop it
        coord.wait(5)
        # The worker says so once it has stopped its engine (WORKER_LOST_AFTER_S of silence):
        # from then on nginx gets nothing but the requests that were in flight (one per
        # connection). Waiting for that line, not for a fixed time, keeps a busy machine's
        # delays out of it; a worker that never noticed would keep its 30 s run going.
        head = _stderr_until(w, "coordinator silent", timeout_s=20)
        assert "coordinator silent" in head, head
        a, b = stable_after(nginx, 0.0, 1.0)
        assert b - a <= 2, f"nginx still received {b - a} requests after the worker stopped"
    finally:
        kill_all([coord.pid])
        w.send_signal(signal.SIGTERM)
        _, err = w.communicate(timeout=10)
    assert "coordinator silent" in head + err


def test_fail_on_worker_loss_stops_the_run(nginx) -> None:
    before = nginx.requests_logged()
    p = start(
        "run", "-w", "2", "-c", "2", "-d", "20s", "--fail-on-worker-loss", "--json", nginx.url
    )
    pids: list[int] = []
    try:
        pids = worker_pids(p.pid, 2)
        wait_requests(nginx, before, 100)
        time.sleep(1.2)
        t0 = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        code, out, err = finish(p, 30)
        took = time.monotonic() - t0
    finally:
        kill_all([p.pid, *pids])
    assert code == 3, err
    assert took < 8, f"the run went on for {took:.1f} s after the loss"
    assert "--fail-on-worker-loss" in err
    rep = json.loads(out)
    assert len(rep["workers_lost"]) == 1
    assert rep["requests"]["completed"] == sum(r["completed"] for r in rep["workers"])


@pytest.mark.load
def test_million_requests_two_workers_equal_nginx(nginx) -> None:
    """-w 2 -n 1000000: the merged count equals nginx's count."""
    before = nginx.requests_logged()
    code, out, err = finish(
        start("run", "-w", "2", "-c", "50", "-n", "1000000", "--json", nginx.url), 600
    )
    assert code == 0, err
    rep = json.loads(out)
    assert (
        rep["requests"]["completed"] == 1_000_000 == nginx.wait_logged(before + 1_000_000) - before
    )
    assert sum(r["completed"] for r in rep["workers"]) == 1_000_000
