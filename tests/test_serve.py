"""The built-in target's HTTP/1.1 behaviour over real loopback sockets, checked with h11."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barfast.engine._core import Server
from serve_helpers import Client, connect, get, header, running, settled


def test_keep_alive_sequence() -> None:
    with running() as srv:
        s = connect(srv)
        c = Client(s)
        for _ in range(5):
            s.sendall(get())
            resp, body = c.expect()
            assert resp.status_code == 200
            assert body == b"hello world\n"
            assert header(resp, b"connection") is None  # HTTP/1.1 default: persistent
            assert header(resp, b"content-length") == b"12"
        s.close()
        k = settled(srv, "responses", 5)
    assert k["requests"] == k["responses"] == 5
    assert k["connections_accepted"] == 1
    assert k["bad_requests"] == 0


def test_pipelined_requests_in_one_write() -> None:
    with running(body_size=5) as srv:
        s = connect(srv)
        methods = ["GET", "HEAD", "GET", "GET", "HEAD", "GET"] * 5
        s.sendall(b"".join(get(method=m) for m in methods))
        c = Client(s)
        for m in methods:
            resp, body = c.expect(m)
            assert resp.status_code == 200
            assert body == (b"" if m == "HEAD" else b"hello")
        assert settled(srv, "responses", len(methods))["responses"] == len(methods)


def test_pipelined_beyond_queue_and_large_bodies() -> None:
    """300 pipelined requests (more than the 128-response queue) with 100 kB bodies that the client
    reads slowly: exercises the full-queue backpressure, short writes and EPOLLOUT."""
    n, size = 300, 100_000
    with running(body_size=size) as srv:
        s = connect(srv, timeout=10)
        s.sendall(get() * n)
        time.sleep(0.2)  # let the socket buffers fill up
        c = Client(s)
        for _ in range(n):
            resp, body = c.expect()
            assert resp.status_code == 200
            assert len(body) == size
        assert body[:12] == b"hello world\n"
        k = settled(srv, "responses", n)
        assert k["responses"] == n
        assert k["bytes_tx"] > n * size


def test_request_with_body_split_across_writes() -> None:
    with running() as srv:
        s = connect(srv)
        payload = b"x" * 20_000  # larger than the receive buffer: skipped over several reads
        s.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n" + payload[:5])
        time.sleep(0.05)
        s.sendall(payload[5:] + get())
        c = Client(s)
        resp, body = c.expect("POST", payload)
        assert resp.status_code == 200 and body == b"hello world\n"
        resp, body = c.expect()
        assert resp.status_code == 200 and body == b"hello world\n"
        assert srv.counters()["bad_requests"] == 0


def test_head_has_headers_but_no_body() -> None:
    with running(body_size=1000) as srv:
        s = connect(srv)
        s.sendall(get(method="HEAD") + get())
        c = Client(s)
        resp, body = c.expect("HEAD")
        assert header(resp, b"content-length") == b"1000" and body == b""
        resp, body = c.expect()
        assert len(body) == 1000


def test_connection_close() -> None:
    with running() as srv:
        s = connect(srv)
        s.sendall(get(extra="Connection: close\r\n"))
        c = Client(s)
        resp, body = c.expect()
        assert resp.status_code == 200 and body == b"hello world\n"
        assert header(resp, b"connection") == b"close"
        assert c.at_eof()


def test_http10_closes_unless_keep_alive() -> None:
    with running() as srv:
        s = connect(srv)
        s.sendall(get(version="1.0"))
        c = Client(s)
        resp, _ = c.expect()
        assert header(resp, b"connection") == b"close"
        assert c.at_eof()

        s = connect(srv)
        c = Client(s)
        for _ in range(3):  # ab -k style: HTTP/1.0 + Connection: keep-alive
            s.sendall(get(version="1.0", extra="Connection: Keep-Alive\r\n"))
            resp, body = c.expect()
            assert header(resp, b"connection") == b"keep-alive" and body == b"hello world\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            400,
        ),  # a TLS hello: rejected before CRLFCRLF
        (b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400),  # obs-fold (RFC 9112 §5.2)
        (b"GET / HTTP/1.1\r\nHost t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
)
def test_bad_requests_get_an_error_and_a_close(request_bytes: bytes, status: int) -> None:
    with running() as srv:
        s = connect(srv)
        s.sendall(get() + request_bytes)
        c = Client(s)
        resp, _ = c.expect()
        assert resp.status_code == 200  # what came before the garbage is still answered
        resp, _ = c.expect()
        assert resp.status_code == status
        assert header(resp, b"connection") == b"close"
        assert c.at_eof()
        assert srv.counters()["bad_requests"] == 1


def test_half_closed_client_still_gets_its_responses() -> None:
    with running(delay_ns=20_000_000) as srv:
        s = connect(srv)
        s.sendall(get() * 3)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 3


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv_ctx = running("::1")
        srv = srv_ctx.__enter__()
    except OSError as exc:
        pytest.skip(f"::1 unavailable: {exc}")
    try:
        s = connect(srv)
        s.sendall(get())
        resp, _ = Client(s).expect()
        assert resp.status_code == 200
    finally:
        srv_ctx.__exit__(None, None, None)


def test_run_returns_at_deadline_and_on_stop() -> None:
    srv = Server("127.0.0.1", 0)
    assert 0 < srv.port < 65536
    t0 = time.monotonic()
    srv.run(200_000_000)
    assert 0.19 < time.monotonic() - t0 < 5.0  # not before the deadline; 5 s: a hang guard
    srv.stop()  # stop() before run(): the next run() returns at once
    t0 = time.monotonic()
    srv.run(10_000_000_000)
    assert time.monotonic() - t0 < 5.0  # at once, not after the 10 s deadline
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    # served a request: the thread is inside run() (a fixed sleep could end before it got there)
    with connect(srv) as s:
        s.sendall(get())
        assert Client(s).expect()[0].status_code == 200
    with pytest.raises(RuntimeError):
        srv.run()
    srv.stop()
    t.join(5)  # stop() wakes the loop at once; 5 s: a hang guard
    assert not t.is_alive()
    srv.close()
    with pytest.raises(RuntimeError):
        srv.run()


def test_bind_errors() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            Server("127.0.0.1", busy.getsockname()[1])
    with pytest.raises(ValueError):
        Server("localhost", 0)
    with pytest.raises(ValueError):
        Server("127.0.0.1", 0, statuses=[(100, 1)])


def test_counters_add_up() -> None:
    with running() as srv:
        socks = [connect(srv) for _ in range(4)]
        for s in socks:
            s.sendall(get() * 10)
        for s in socks:
            c = Client(s)
            for _ in range(10):
                c.expect()
            s.close()
        deadline = time.monotonic() + 10  # the server sees the closes at once; 10 s: a guard
        while srv.counters()["connections"] and time.monotonic() < deadline:
            time.sleep(0.01)
        k = srv.counters()
    assert k["requests"] == k["responses"] == 40
    assert k["connections_accepted"] == k["connections_closed"] == 4
    assert k["bytes_rx"] == 40 * len(get())
    assert k["bytes_tx"] % 40 == 0 and k["bytes_tx"] > 40 * 12


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_against_the_server() -> None:
    with running() as srv:
        out = subprocess.run(
            ["wrk", "-t1", "-c10", "-d1s", f"http://127.0.0.1:{srv.port}/"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        k = srv.counters()
    rps = float(out.split("Requests/sec:")[1].split()[0])
    done = int(out.split(" requests in ")[0].split()[-1])
    assert rps > 0 and done > 0
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    assert k["responses"] >= done and k["bad_requests"] == 0


def test_background_server_helper() -> None:
    from barfast.serve.server import BackgroundServer

    with BackgroundServer(body_size=4) as bg:
        host, port = bg.url.split("//")[1].rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(get())
            resp, body = Client(s).expect()
        assert resp.status_code == 200 and body == b"hell"
    bg.stop()  # idempotent
    with pytest.raises(RuntimeError):
        bg.server.run()


def test_lingering_close_is_bounded() -> None:
    """After a 400 the server half-closes and drains; a client that never closes is dropped after the
    linger timer (2 s) instead of holding the connection forever."""
    with running() as srv:
        s = connect(srv)
        s.sendall(b"BAD\x00\r\n\r\n")
        c = Client(s)
        resp, _ = c.expect()
        assert resp.status_code == 400
        assert c.at_eof()  # our FIN arrives right after the response
        assert srv.counters()["connections"] == 1  # still draining the client's side
        deadline = time.monotonic() + 10  # the 2 s linger timer, with room for a busy machine
        while srv.counters()["connections"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.counters()["connections"] == 0
        s.close()


def test_out_of_file_descriptors_backs_off_and_recovers() -> None:
    """With RLIMIT_NOFILE exhausted, accept() fails with EMFILE: the server must neither spin on the
    level-triggered listening socket nor stop serving, and accepts again once fds are free."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    from conftest import barfast_cmd

    proc = subprocess.Popen(
        barfast_cmd("serve", "--addr", "127.0.0.1:0", "-d", "20s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip().rstrip("/").rsplit(":", 1)[1])
        socks = []
        for _ in range(80):  # more than the server can hold; the kernel queues the rest
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        time.sleep(0.3)
        with open(f"/proc/{proc.pid}/stat") as f:
            t0 = sum(int(x) for x in f.read().split()[13:15])
        time.sleep(1.0)
        with open(f"/proc/{proc.pid}/stat") as f:
            t1 = sum(int(x) for x in f.read().split()[13:15])
        assert t1 - t0 < 30, "the server spins while out of file descriptors"  # ticks of 10 ms
        socks[0].sendall(get())  # an accepted connection is still served
        assert Client(socks[0]).expect()[0].status_code == 200
        for s in socks[:60]:
            s.close()
        last = socks[-1]  # queued in the backlog until fds were freed
        last.sendall(get())
        assert Client(last).expect()[0].status_code == 200
        proc.terminate()
        assert proc.wait(5) == 0
    finally:
        proc.kill()
        proc.wait(5)


_REQ = st.sampled_from(["GET", "HEAD", "POST"]).flatmap(
    lambda m: st.tuples(
        st.just(m), st.binary(max_size=3000) if m == "POST" else st.just(b""), st.booleans()
    )
)


@settings(max_examples=25, deadline=None)
@given(reqs=st.lists(_REQ, min_size=1, max_size=12), cuts=st.lists(st.integers(1, 400), max_size=8))
def test_pipelined_stream_cut_anywhere(
    reqs: list[tuple[str, bytes, bool]], cuts: list[int]
) -> None:
    """Any mix of GET/HEAD/POST-with-body, pipelined, sent in arbitrary pieces: one response each,
    in order, framed correctly (h11), whatever the read boundaries on the server were."""
    stream = b""
    for method, body, blank in reqs:
        extra = f"Content-Length: {len(body)}\r\n" if method == "POST" else ""
        stream += (b"\r\n" if blank else b"") + get(method=method, extra=extra) + body
    with running() as srv:
        s = connect(srv)
        pos = 0
        for cut in cuts:
            s.sendall(stream[pos : pos + cut])
            pos += cut
            time.sleep(0.001)
        s.sendall(stream[pos:])
        c = Client(s)
        for method, body, _ in reqs:
            resp, data = c.expect(method, body)
            assert resp.status_code == 200
            assert data == (b"" if method == "HEAD" else b"hello world\n")
        assert srv.counters()["bad_requests"] == 0
