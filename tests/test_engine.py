"""Engine tests against a real nginx (closed loop): exact counts, samples, stop, start time, setup
failures. Helpers used by the other test_engine_* files live here too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from barfast.engine import _core
from barfast.engine.kinds import FLAG_NEW_CONN, FLAG_OPEN_LOOP, ErrorKind
from barfast.ring import Ring

S = 1_000_000_000
MS = 1_000_000


def request_bytes(port: int, path: str = "/", method: str = "GET", extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: barfast-test\r\n"
        f"{extra}\r\n"
    ).encode()


def make_engine(
    port: int,
    ring: Ring | None = None,
    *,
    path: str = "/",
    method: str = "GET",
    connections: int = 4,
    timeout_ns: int = 2 * S,
    connect_timeout_ns: int = 1 * S,
    addr: str = "127.0.0.1",
    family: int = socket.AF_INET,
    **kw: object,
) -> _core.Engine:
    return _core.Engine(
        ring,
        addr=addr,
        port=port,
        family=family,
        request=request_bytes(port, path, method),
        head=method == "HEAD",
        connections=connections,
        timeout_ns=timeout_ns,
        connect_timeout_ns=connect_timeout_ns,
        **kw,
    )


def drain(ring: Ring) -> np.ndarray:
    """Copy out and consume every pending record."""
    first, second = ring.peek()
    out = np.concatenate([first.copy(), second.copy()])
    ring.consume(len(out))
    return out


def check_invariant(c: dict[str, int]) -> None:
    assert c["started"] == c["completed"] + (c["errors"] - c["err_not_sent"]) + c["in_flight"], c
    assert c["errors"] == sum(v for k, v in c.items() if k.startswith("err_")), c
    # every finished or failed request has a sample, or was a backlog failure counted in bulk
    assert c["samples"] + c["bulk_failed"] == c["completed"] + c["errors"], c


def run_timed(engine: _core.Engine) -> float:
    t = time.monotonic()
    engine.run()
    return time.monotonic() - t


# ---------------------------------------------------------------- nginx, closed loop


def test_closed_loop_count_matches_nginx_log(nginx) -> None:
    nginx.truncate_log()
    ring = Ring.create(1 << 15)
    n = 20_000
    eng = make_engine(nginx.port, ring, connections=10, requests=n, duration_ns=30 * S)
    eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["started"] == n
    assert c["completed"] == n and c["errors"] == 0 and c["in_flight"] == 0
    assert eng.status_counts() == {200: n}
    assert c["connects"] == 10 and c["reconnects"] == 0
    assert c["bytes_tx"] == n * len(request_bytes(nginx.port))
    assert nginx.wait_logged(n) == n  # nginx logs after it answers: wait_logged lets it catch up
    # nginx's head changes only with its Date line: nearly every response reuses the memo's parse
    assert eng._head_memo_hits() > n * 9 // 10

    s = drain(ring)
    assert len(s) == c["completed"] + c["errors"] == c["samples"]
    assert ring.dropped == 0 and c["ring_dropped"] == 0
    assert (s["seq"] == np.arange(n)).all()  # no gaps, in order
    assert (s["error"] == 0).all() and (s["status"] == 200).all()
    assert (s["intended_ns"] == s["send_ns"]).all()  # closed loop
    assert (s["send_ns"] <= s["first_byte_ns"]).all() and (s["first_byte_ns"] <= s["done_ns"]).all()
    assert (s["send_ns"] > 0).all()
    assert (s["bytes_tx"] == len(request_bytes(nginx.port))).all()
    assert (s["bytes_rx"] == c["bytes_rx"] // n).all()
    assert (s["conn_id"] < 10).all() and len(set(s["conn_id"].tolist())) == 10
    assert int(((s["flags"] & FLAG_NEW_CONN) != 0).sum()) == 10
    assert not (s["flags"] & FLAG_OPEN_LOOP).any()
    assert (s["endpoint"] == 0).all()
    new = (s["flags"] & FLAG_NEW_CONN) != 0
    # connect time: on the first request of each connection only, >= 1 µs, below the run's length
    assert (s["connect_us"][new] >= 1).all() and (s["connect_us"][new] < 10_000_000).all()
    assert (s["connect_us"][~new] == 0).all()


def test_a_large_pool_carries_load_while_it_opens(nginx) -> None:
    # The closed loop opens its pool in batches between event-loop passes (loop_ramp): with 3,000
    # connections, responses complete before the last connection is opened. Opened in one go,
    # nothing could complete until every connect() had returned, which
    # with ~10^4 connections to one destination took longer than a short run.
    eng = make_engine(nginx.port, None, connections=3000, duration_ns=1 * S)
    eng.run()
    c = eng.counters()
    check_invariant(c)
    st = eng._pacing_stats()
    # Every attempt connected, with no error. On a quiet machine the whole pool opens well within
    # the second; on a loaded one it may not (the run then ends first), so the pool's size is only
    # checked when the ramp finished, and what is asserted holds either way: responses completed
    # while connections were still being opened.
    assert c["connect_attempts"] == c["connects"] > 0 and c["errors"] == 0
    assert st["ramp_completed"] > 0 or st["ramp_done_ns"] == 0
    if st["ramp_done_ns"]:
        assert c["connects"] == 3000 and st["ramp_done_ns"] > eng.t0_ns
    assert c["completed"] > 0


def test_a_pool_is_not_opened_past_a_request_bound(nginx) -> None:
    eng = make_engine(nginx.port, None, connections=1000, requests=300, duration_ns=10 * S)
    eng.run()
    c = eng.counters()
    check_invariant(c)
    # the bound is reached with fewer connections when early ones finish while later ones open
    assert c["completed"] == 300 and 0 < c["connect_attempts"] <= 300


def test_duration_bounded_run_ends_on_time(nginx) -> None:
    eng = make_engine(nginx.port, None, connections=8, duration_ns=500 * MS)
    took = run_timed(eng)
    assert 0.49 <= took < 5.0, took  # never before the deadline; 5 s: a hang guard
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] > 100
    assert c["in_flight"] <= 8 and c["errors"] == 0
    assert c["conns_open"] == 0  # everything closed at the end


def test_status_codes_chunked_and_head(nginx) -> None:
    for path, method, status in (
        ("/status/404", "GET", 404),
        ("/chunked", "GET", 200),
        ("/", "HEAD", 200),
    ):
        eng = make_engine(nginx.port, None, path=path, method=method, connections=2, requests=200)
        eng.run()
        c = eng.counters()
        check_invariant(c)
        assert c["completed"] == 200 and c["errors"] == 0, (path, c)
        assert eng.status_counts() == {status: 200}


def test_stop_from_another_thread_and_live_counters(nginx) -> None:
    eng = make_engine(nginx.port, None, connections=4, duration_ns=30 * S)
    t = threading.Thread(target=eng.run)
    t.start()
    seen = []
    deadline = time.monotonic() + 10  # progress is certain; when it shows is the machine's call
    while len(seen) < 10 or (seen[-1] == seen[0] and time.monotonic() < deadline):
        time.sleep(0.02)
        c = eng.counters()
        seen.append(c["started"])
        assert c["started"] >= c["completed"]
    t0 = time.monotonic()
    eng.stop()
    t.join(2)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 2.0  # stop() takes effect within ~5 ms; 2 s: a hang guard
    assert seen == sorted(seen) and seen[-1] > seen[0]
    check_invariant(eng.counters())
    with pytest.raises(RuntimeError):
        eng.run()


def test_start_ns_delays_the_first_send(nginx) -> None:
    ring = Ring.create(1 << 12)
    start = _core.monotonic_ns() + 300 * MS
    eng = make_engine(nginx.port, ring, connections=2, requests=50, start_ns=start)
    eng.run()
    assert eng.t0_ns == start
    s = drain(ring)
    assert len(s) == 50
    first = int(s["send_ns"].min())
    # never before the start; after it by however long a busy machine keeps the loop waiting
    assert start <= first < start + 250 * MS, (first - start) / MS


def test_monotonic_clock() -> None:
    a = _core.monotonic_ns()
    b = time.monotonic_ns()
    c = _core.monotonic_ns()
    assert a <= b <= c  # the same clock as Python's time.monotonic_ns()


def test_too_many_connections_for_the_fd_limit_raises_oserror() -> None:
    code = (
        "import resource, socket\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "from barfast.engine import _core\n"
        "try:\n"
        "    _core.Engine(None, addr='127.0.0.1', port=9, family=socket.AF_INET, request=b'x',\n"
        "                 head=False, connections=1000, timeout_ns=1, connect_timeout_ns=1)\n"
        "except OSError as e:\n"
        "    print('errno', e.errno)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == f"errno {__import__('errno').EMFILE}", out.stderr


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_engine(80, None, addr="not-an-ip", requests=1)
    with pytest.raises(ValueError):
        make_engine(80, None, connections=0, requests=1)
    with pytest.raises(TypeError):
        make_engine(80, object(), requests=1)  # type: ignore[arg-type]


def test_rss_flat_over_many_requests(nginx) -> None:
    """No growth per request: the second 30k requests add (almost) nothing to the RSS."""

    def rss_kb() -> int:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    eng = make_engine(nginx.port, None, connections=4, requests=30_000)
    eng.run()
    before = rss_kb()
    eng = make_engine(nginx.port, None, connections=4, requests=30_000)
    eng.run()
    assert rss_kb() - before < 2048
    assert ErrorKind.NOT_SENT == 7
