"""Helpers for the `barfast serve` tests: a Server running in a thread, and an h11-checked client."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import h11

from barfast.engine._core import Server


@contextlib.contextmanager
def running(host: str = "127.0.0.1", **kw: object) -> Iterator[Server]:
    """A real Server on a free port, its nogil loop in a background thread; stopped and joined after."""
    srv = Server(host, 0, **kw)  # type: ignore[arg-type]
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.stop()
        t.join(5)
        assert not t.is_alive(), "run() did not return within 5 s of stop()"
        srv.close()


def settled(srv: Server, key: str, want: int, timeout: float = 10.0) -> dict[str, int]:
    """The server's counters once `key` has reached `want` (or after `timeout`).

    The server counts a response after its write() returns, so a client can read the bytes before
    the count is bumped; reading counters right after the last response races with that."""
    deadline = time.monotonic() + timeout
    k = srv.counters()
    while k[key] < want and time.monotonic() < deadline:
        time.sleep(0.002)
        k = srv.counters()
    return k


def connect(srv: Server, timeout: float = 5.0) -> socket.socket:
    fam = socket.AF_INET6 if ":" in srv.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((srv.host, srv.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def get(path: str = "/", extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()


class Client:
    """Reads responses off a socket with h11 as the reference parser (it checks the framing).

    The test writes raw request bytes itself (so it can pipeline, split, or send garbage); `expect()`
    mirrors each request into h11's client state machine so that h11 knows e.g. HEAD has no body.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)
        self.cycles = 0

    def expect(self, method: str = "GET", body: bytes = b"") -> tuple[h11.Response, bytes]:
        if self.cycles:
            self.conn.start_next_cycle()
        self.cycles += 1
        headers = [("Host", "t")]
        if body:
            headers.append(("Content-Length", str(len(body))))
        self.conn.send(h11.Request(method=method, target="/", headers=headers))
        if body:
            self.conn.send(h11.Data(data=body))
        self.conn.send(h11.EndOfMessage())
        resp: h11.Response | None = None
        data = b""
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(1 << 16))
            elif isinstance(ev, h11.Response):
                resp = ev
            elif isinstance(ev, h11.Data):
                data += bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                assert resp is not None
                return resp, data
            else:
                raise AssertionError(f"unexpected h11 event {ev!r}")

    def at_eof(self) -> bool:
        """True when the server closed the connection (after the last response)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def header(resp: h11.Response, name: bytes) -> bytes | None:
    for n, v in resp.headers:
        if n == name.lower():
            return bytes(v)
    return None


def timed_get(sock: socket.socket) -> float:
    """Send one GET, read exactly one 12-byte-body response; return the latency in seconds."""
    t0 = time.perf_counter()
    sock.sendall(get())
    buf = b""
    while not buf.endswith(b"hello world\n"):
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        buf += chunk
    return time.perf_counter() - t0


@contextlib.contextmanager
def tcp_server(
    handler: Callable[[socket.socket, threading.Event], None], *, nodelay: bool = False
) -> Iterator[int]:
    """A listening socket on a free port; every accepted connection runs handler(conn, stop) in a
    thread (OSError ends it quietly; the connection is closed after). nodelay: TCP_NODELAY on each
    accepted connection, so a handler's separate sends leave as separate segments."""
    stop = threading.Event()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    ls.settimeout(0.05)
    threads: list[threading.Thread] = []

    def serve_one(conn: socket.socket) -> None:
        try:
            handler(conn, stop)
        except OSError:
            pass
        finally:
            conn.close()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if nodelay:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=serve_one, args=(conn,), daemon=True)
            t.start()
            threads.append(t)

    acc = threading.Thread(target=accept_loop, daemon=True)
    acc.start()
    try:
        yield ls.getsockname()[1]
    finally:
        stop.set()
        acc.join(2)
        ls.close()
        for t in threads:
            t.join(2)
