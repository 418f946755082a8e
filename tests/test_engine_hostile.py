"""Misbehaving servers written here with Python sockets on 127.0.0.1 port 0: each failure is
classified as the right error kind, with no crash and no hang (pytest-timeout guards the hang)."""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time

import numpy as np
import pytest

from barfast.engine.kinds import FLAG_CONN_CLOSE, ErrorKind
from barfast.ring import Ring
from serve_helpers import tcp_server as server
from test_engine import MS, S, check_invariant, drain, make_engine, run_timed

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def read_request(conn: socket.socket, buf: bytearray) -> bool:
    """Read one request head (our requests have no body) into nothing; False on EOF."""
    while b"\r\n\r\n" not in buf:
        try:
            data = conn.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        buf += data
    del buf[: buf.index(b"\r\n\r\n") + 4]
    return True


def respond_forever(response: bytes, close_after: bool = False):
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        while not stop.is_set() and read_request(conn, buf):
            conn.sendall(response)
            if close_after:
                return

    return handler


def kinds(samples: np.ndarray) -> set[int]:
    return set(samples["error"].tolist())


# ---------------------------------------------------------------- connect failures


def test_refused_counts_connect_errors_with_errno_and_ends_on_time() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ring = Ring.create(1 << 12)
    eng = make_engine(port, ring, connections=3, duration_ns=400 * MS)
    took = run_timed(eng)
    assert 0.39 < took < 5.0  # not before the deadline; 5 s: a hang guard
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 0 and c["connects"] == 0
    assert c["err_connect"] == c["errors"] > 0
    # backoff (10 ms doubling): a handful of attempts per connection, not a spin
    assert c["connect_attempts"] <= 3 * 8
    s = drain(ring)
    assert len(s) == c["errors"]
    assert kinds(s) == {ErrorKind.CONNECT}
    assert set(s["sys_errno"].tolist()) == {errno.ECONNREFUSED}
    assert (s["send_ns"] == 0).all() and (s["done_ns"] >= s["intended_ns"]).all()


def test_refused_with_a_request_count_stops_after_n_failures() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eng = make_engine(port, None, connections=2, requests=6, duration_ns=20 * S)
    took = run_timed(eng)
    assert took < 5
    c = eng.counters()
    check_invariant(c)
    assert c["started"] == 6 and c["err_connect"] == 6 and c["in_flight"] == 0


def test_connect_timeout_is_a_connect_error_with_etimedout() -> None:
    # A listener whose accept queue is full drops new SYNs (Linux tcp_conn_request: "listen queue
    # overflow"), so our connect() stays in SYN_SENT until the connect timeout fires.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.05)
        ring = Ring.create(1 << 8)
        eng = make_engine(
            port, ring, connections=1, duration_ns=450 * MS, connect_timeout_ns=100 * MS
        )
        took = run_timed(eng)
    finally:
        for f in fillers:
            f.close()
        ls.close()
    assert took < 3.0
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 0 and c["connects"] == 0 and c["err_connect"] >= 2
    s = drain(ring)
    assert set(s["sys_errno"].tolist()) == {errno.ETIMEDOUT}
    waited = s["done_ns"] - s["intended_ns"]
    # never before the timeout; after it by the 10 ms scan plus however long a busy machine keeps
    # the loop off its CPU
    assert (waited >= 100 * MS).all() and (waited < 300 * MS).all()


# ---------------------------------------------------------------- failures mid-request


def test_reset_is_a_read_error_or_closed() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn, bytearray())
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with server(handler) as port:
        ring = Ring.create(1 << 12)
        eng = make_engine(port, ring, connections=2, requests=20, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 0 and c["started"] == 20
    assert c["err_read"] + c["err_closed"] + c["err_write"] == 20
    s = drain(ring)
    assert kinds(s) <= {ErrorKind.READ, ErrorKind.CLOSED, ErrorKind.WRITE}
    reads = s[s["error"] == ErrorKind.READ]
    assert set(reads["sys_errno"].tolist()) <= {errno.ECONNRESET}


def test_garbage_is_a_parse_error() -> None:
    with server(respond_forever(b"SPAM AND EGGS\r\n\r\n")) as port:
        eng = make_engine(port, None, connections=2, requests=10, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["err_parse"] == 10 and c["completed"] == 0


def test_truncated_body_then_close_is_closed() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few bytes"
    with server(respond_forever(resp, close_after=True)) as port:
        eng = make_engine(port, None, connections=2, requests=10, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["err_closed"] == 10 and c["completed"] == 0


def test_close_before_any_byte_on_a_reused_connection_is_closed() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        if read_request(conn, buf):
            conn.sendall(OK)
        read_request(conn, buf)  # the second request: read it, then close without a word

    with server(handler) as port:
        eng = make_engine(port, None, connections=1, requests=10, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 5 and c["err_closed"] == 5  # never retried
    assert c["reconnects"] == 4


def test_slow_drip_completes() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        while read_request(conn, buf):
            for i in range(len(OK)):
                conn.sendall(OK[i : i + 1])
                time.sleep(0.003)

    with server(handler) as port:
        ring = Ring.create(1 << 8)
        eng = make_engine(port, ring, connections=1, requests=3, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 3 and c["errors"] == 0
    s = drain(ring)
    took = s["done_ns"] - s["send_ns"]
    assert (took > len(OK) * 2 * MS).all()  # the drip is in the latency
    ttfb = s["first_byte_ns"] - s["send_ns"]
    # first byte early, completion late: the two are stamped by different reads (a loop kept off
    # its CPU for the whole drip could only read it all at once)
    assert (s["first_byte_ns"] < s["done_ns"]).all()
    assert (ttfb > 0).all()


def test_never_answers_times_out_and_replaces_the_connection() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn, bytearray())
        stop.wait(5)

    with server(handler) as port:
        ring = Ring.create(1 << 8)
        eng = make_engine(port, ring, connections=1, duration_ns=700 * MS, timeout_ns=200 * MS)
        took = run_timed(eng)
    assert took < 3.0
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 0 and 2 <= c["err_timeout"] <= 3
    assert c["in_flight"] == 1  # the one waiting at the deadline
    assert c["reconnects"] >= 2
    s = drain(ring)
    waited = s["done_ns"] - s["send_ns"]
    # resolution of the timeout scan: 10 ms (plus scheduling delay on a busy machine)
    assert (waited >= 200 * MS).all() and (waited < 400 * MS).all()


def test_one_megabyte_header_is_a_parse_error() -> None:
    resp = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nContent-Length: 0\r\n\r\n"
    with server(respond_forever(resp)) as port:
        eng = make_engine(port, None, connections=1, requests=3, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["err_parse"] == 3 and c["completed"] == 0


# ---------------------------------------------------------------- valid but unusual framing


def test_connection_close_responses_complete_and_reconnect() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    with server(respond_forever(resp, close_after=True)) as port:
        ring = Ring.create(1 << 8)
        eng = make_engine(port, ring, connections=2, requests=40, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 40 and c["errors"] == 0
    assert c["reconnects"] == 38 and c["connects"] == 40
    s = drain(ring)
    assert (s["flags"] & FLAG_CONN_CLOSE).all()


def test_http10_close_delimited_body_completes() -> None:
    resp = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    with server(respond_forever(resp, close_after=True)) as port:
        ring = Ring.create(1 << 8)
        eng = make_engine(port, ring, connections=1, requests=5, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 5 and c["errors"] == 0
    assert eng.status_counts() == {200: 5}
    s = drain(ring)
    assert (s["bytes_rx"] == len(resp)).all()


def test_chunked_with_extensions_trailers_and_interim() -> None:
    resp = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    with server(respond_forever(resp)) as port:
        ring = Ring.create(1 << 8)
        eng = make_engine(port, ring, connections=2, requests=30, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 30 and c["errors"] == 0 and c["reconnects"] == 0
    assert eng.status_counts() == {201: 30}
    s = drain(ring)
    assert (s["flags"] & 0x08).all()  # BF_FLAG_INTERIM


def test_response_split_across_many_reads() -> None:
    """A response bigger than the 16 KiB receive buffer, in one Content-Length body."""
    body = b"x" * 200_000
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with server(respond_forever(resp)) as port:
        eng = make_engine(port, None, connections=2, requests=20, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 20 and c["errors"] == 0
    assert c["bytes_rx"] == 20 * len(resp)


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    ls = socket.socket(socket.AF_INET6)
    try:
        ls.bind(("::1", 0))
    except OSError as exc:
        ls.close()
        pytest.skip(f"no ::1 here: {exc}")
    ls.listen(8)
    port = ls.getsockname()[1]

    def serve() -> None:
        conn, _ = ls.accept()
        with conn:
            buf = bytearray()
            while read_request(conn, buf):
                conn.sendall(OK)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        eng = make_engine(
            port, None, addr="::1", family=socket.AF_INET6, connections=1, requests=50
        )
        eng.run()
    finally:
        t.join(2)
        ls.close()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 50 and c["errors"] == 0


def test_stop_before_run_returns_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eng = make_engine(port, None, connections=2, duration_ns=10 * S)
    eng.stop()
    assert run_timed(eng) < 2.0  # at once, not after the 10 s deadline; 2 s: a hang guard
    c = eng.counters()
    check_invariant(c)
    assert c["started"] == 0 and c["connect_attempts"] == 0


def test_large_request_body_is_written_across_epollout() -> None:
    """A request far larger than the socket buffer: send() returns EAGAIN, the engine arms
    EPOLLOUT and finishes the write when the server drains it."""
    from barfast.engine import _core

    body = b"b" * (8 << 20)

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        while not stop.is_set():
            while b"\r\n\r\n" not in buf:
                data = conn.recv(1 << 16)
                if not data:
                    return
                buf += data
            del buf[: buf.index(b"\r\n\r\n") + 4]
            while len(buf) < len(body):
                time.sleep(0.001)  # a slow reader
                data = conn.recv(1 << 16)
                if not data:
                    return
                buf += data
            del buf[: len(body)]
            conn.sendall(OK)

    with server(handler) as port:
        req = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        eng = _core.Engine(
            None,
            addr="127.0.0.1",
            port=port,
            family=socket.AF_INET,
            request=req,
            head=False,
            connections=1,
            requests=3,
            duration_ns=30 * S,
            timeout_ns=20 * S,
            connect_timeout_ns=S,
        )
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 3 and c["errors"] == 0
    assert c["bytes_tx"] == 3 * len(req)


# ---------------------------------------------------------------- edge-triggered epoll


def run_triggered(port: int, edge: bool, **kw: int) -> tuple[dict[str, int], float]:
    """Run a 20 s-bounded engine on edge- or level-triggered epoll: (counters, seconds taken)."""
    eng = make_engine(port, None, duration_ns=20 * S, **kw)
    eng._set_edge_triggered(edge)
    took = run_timed(eng)
    c = eng.counters()
    check_invariant(c)
    return c, took


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_bodies_longer_than_one_events_reads_complete(edge: bool) -> None:
    """A 3 MiB body is more than one event's reads (64 x 16 KiB): with EPOLLET the rest is
    already queued and no new edge comes for it, so the loop must re-arm the socket (loop_rearm)
    or the request stalls until its timeout."""
    body = 3 << 20
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body + b"x" * body

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        buf = bytearray()
        while not stop.is_set() and read_request(conn, buf):
            conn.sendall(resp)

    with server(handler) as port:
        c, took = run_triggered(port, edge, connections=1, requests=6, timeout_ns=3 * S)
    assert c["completed"] == 6 and c["errors"] == 0, c
    assert c["bytes_rx"] >= 6 * body
    assert took < 3.0


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_a_fin_queued_behind_the_bytes_is_seen(edge: bool) -> None:
    """The server writes part of a response and closes at once, so the bytes and the FIN can
    arrive before one epoll report: a short read is then not the end (EPOLLRDHUP), and the
    request must fail as `closed` at once, not wait for its timeout."""
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few bytes"
    with server(respond_forever(resp, close_after=True)) as port:
        c, took = run_triggered(port, edge, connections=2, requests=40, timeout_ns=5 * S)
    assert c["err_closed"] == 40 and c["completed"] == 0, c  # a missed FIN ends as a timeout
    assert took < 4.5  # and before even one 5 s timeout could have fired


def test_head_memo_keeps_alternating_heads_apart() -> None:
    """Responses in pairs of two different heads (A A B B A A ...): the engine's head memo takes
    the second of each pair from the memo (exactly 20 hits in 40) and never mixes up the two."""
    a = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    b = b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\nX-Pad: 1\r\n\r\nnot found!!\n"

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        i = 0
        while not stop.is_set() and read_request(conn, buf):
            conn.sendall(a if (i // 2) % 2 == 0 else b)
            i += 1

    with server(handler) as port:
        eng = make_engine(port, None, connections=1, requests=40, duration_ns=10 * S)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == 40 and c["errors"] == 0, c
    assert eng.status_counts() == {200: 20, 404: 20}
    assert c["bytes_rx"] == 20 * len(a) + 20 * len(b)
    assert eng._head_memo_hits() == 20
