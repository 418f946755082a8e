"""Typed surface of barfast._core (the native extension). Docstrings live here."""

from __future__ import annotations

# --- ring (ring.pxi) ---

# --- hist (hist.pxi) ---

# --- http parser test hooks (http.pxi) ---

HTTP_LIMITS: dict[str, int]
"""Parser bounds: max_header_bytes (one header block), max_chunk_line_bytes, max_trailer_bytes."""

HTTP_ERRORS: tuple[str, ...]
"""Error code names indexed by the native HTTP_ERR_* value (0 is "none")."""

def parse_responses(
    data: bytes, splits: list[int] | None = None, head: bool = False
) -> list[dict[str, int | bool | str]]:
    """Test hook: run the native HTTP/1.1 response parser over `data` like the engine does.

    `data` is delivered in pieces cut at the offsets in `splits`; after each piece the parser is fed
    the unconsumed bytes (an incomplete header block stays in the buffer and the next piece is
    appended). Returns one dict per completed response: {"status", "keep_alive", "body_bytes",
    "interim" (1xx skipped), "header_bytes", "wire_bytes", "eof_complete"}; on a malformed response a
    final {"error": name} (a name from HTTP_ERRORS) and stops. At the end of `data`, if a response is
    in progress, the peer's close is simulated: a close-delimited body completes ("eof_complete":
    True), anything else gives {"error": "closed"}. `head=True` parses responses to HEAD requests.
    """

def http_parse_bench(data: bytes, iterations: int, head: bool = False) -> tuple[int, float]:
    """Parse `data` (complete responses back to back) `iterations` times in native code, nogil.

    Returns (responses per pass, mean ns per pass). Raises ValueError if `data` does not consist of
    complete, well-formed responses. For parser micro-benchmarks (wrap runs in the bench lock).
    """

# --- engine (loop.pxi, conn.pxi, pacing.pxi) ---

# --- server (serve.pxi) ---

class Server:
    """Built-in HTTP/1.1 target (`barfast serve`) on a nogil, level-triggered epoll loop.

    Binds and listens in the constructor (SO_REUSEADDR, backlog 4096; `host` must be an IPv4 or IPv6
    literal, else ValueError; bind errors raise OSError with the errno, e.g. EADDRINUSE). Port 0 picks
    a free port: read it from `port`.

    Every request gets the same prebuilt response for its status: status line, `Server: barfast`,
    `Content-Type: text/plain` and `Content-Length: N` (not for 204/304), `Connection: close` on the
    last response of a connection (or `Connection: keep-alive` for HTTP/1.0 keep-alive clients), then
    `body_size` bytes of "hello world\\n" repeated. No Date header: the response never changes. HEAD
    gets the same header block without the body. Request bodies (Content-Length) are skipped;
    Transfer-Encoding in a request -> 501; malformed requests -> 400; header blocks over 8 KiB -> 431;
    each of these closes the connection (half-close, then drain: RFC 9112 §9.6). Pipelined requests
    read together are answered with one write. Idle connections are never timed out.

    Faults (deterministic for `seed`):
      delay_ns        fixed delay of each response, from the moment its request is complete;
      delay_dist      0 none, 1 uniform in [delay_a_ns, delay_b_ns], 2 exponential with mean
                      delay_a_ns; added to delay_ns. Responses still leave in request order.
      stall_ns / stall_every_ns   the whole server freezes (no accept, read or write) for the LAST
                      stall_ns of every stall_every_ns period, counted from the first run().
      statuses        [(status, weight), ...]: weighted random status per response (200..599).
      close_every     close each connection after its Nth response (sent with Connection: close).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        body_size: int = 12,
        delay_ns: int = 0,
        delay_dist: int = 0,
        delay_a_ns: int = 0,
        delay_b_ns: int = 0,
        stall_ns: int = 0,
        stall_every_ns: int = 0,
        statuses: list[tuple[int, int]] | tuple[tuple[int, int], ...] = ((200, 1),),
        close_every: int = 0,
        seed: int = 0,
    ) -> None: ...
    @property
    def port(self) -> int:
        """The bound port (known right after construction)."""
    @property
    def host(self) -> str:
        """The host given to the constructor."""
    def run(self, duration_ns: int = 0) -> None:
        """Serve with the GIL released until duration_ns elapsed (0: no limit) or stop() is called.
        May be called again afterwards (connections persist). RuntimeError if already running/closed."""
    def stop(self) -> None:
        """Thread-safe; the current run() (or, if none is running, the next one) returns promptly."""
    def counters(self) -> dict[str, int]:
        """Safe from any thread while run() runs. Keys: requests (complete requests answered or
        queued), responses (fully written), connections (open now), connections_accepted,
        connections_closed, bytes_rx, bytes_tx, bad_requests (400/431/501 sent), stalls (stall
        windows entered while there was work), accept_errors, and the delay timer's self-check:
        delayed (delayed responses written), late_ns_sum / late_ns_max (time of their sendmsg minus
        their due time: how late the timer was)."""
    def status_counts(self) -> dict[int, int]:
        """Responses chosen per status (counted when queued), including zero counts."""
    def close(self) -> None:
        """Close the listening socket and every connection; free the buffers. Not while running."""
    def __enter__(self) -> Server: ...
    def __exit__(self, *exc: object) -> None: ...
