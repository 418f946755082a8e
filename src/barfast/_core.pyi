"""Typed surface of barfast._core (the native extension). Docstrings live here."""

from __future__ import annotations

import mmap
from typing import Any

# --- ring (ring.pxi) ---
# The public, documented API is barfast.ring.Ring (a subclass); these are the native primitives it
# and the benchmark use. Layout and ordering: docs/ring-format.md.

class Ring:
    """Base of barfast.ring.Ring: owns the MAP_SHARED mapping and the native handle `c` (ring_t)
    that the engine publishes through (ring_claim/ring_commit/ring_publish, all nogil)."""

    @property
    def closed(self) -> bool:
        """True once unbound (closed) in this process."""
    def _bind(self, mm: object) -> None:
        """Adopt a writable mapping holding a valid header (bounds re-checked; ValueError if not)."""
    def _unbind(self) -> mmap.mmap:
        """Forget the mapping and return the mmap object (the caller closes it)."""
    def _prod_pos(self) -> int:
        """Producer position, load-acquire."""
    def _cons_pos(self) -> int:
        """Consumer position, load-acquire."""
    def _set_cons_pos(self, pos: int) -> None:
        """Consumer position, store-release (after the consumed records were read)."""
    def _dropped(self) -> int:
        """The dropped counter (read after an acquire of producer_done)."""
    def _producer_done(self) -> bool:
        """producer_done, load-acquire."""
    def _mark_producer_done(self) -> None:
        """producer_done = 1, store-release."""
    def _producer_pid(self) -> int:
        """The header's producer_pid."""
    def _claim_producer(self, pid: int) -> None:
        """Record pid as the producer and reload the local producer state from the header."""
    def _header_info(self) -> dict[str, int]:
        """Line 0 of the header: magic, version, record_size, capacity, data_offset, producer_pid,
        created_ns."""
    def _publish_bytes(self, src: object, count_dropped: bool = True) -> int:
        """Copy whole 64-byte records from a contiguous buffer: as many as fit (at most two memcpy,
        one store-release), the rest counted as dropped (if count_dropped). Returns the number
        accepted."""

def _bench_produce(
    ring: Ring,
    n: int,
    batch: int = 4096,
    single: bool = False,
    first_seq: int = 0,
    retry: bool = True,
    timeout_s: float = 30.0,
) -> tuple[int, int, int, int, bool]:
    """Publish seq first_seq..first_seq+n-1 (every field derived from seq) under nogil, batched
    (one store-release per batch) or single (ring_publish per record). retry=True waits out a full
    ring (bench/test producer); retry=False drops and counts like the engine.
    Returns (published, dropped, t_first_ns, t_last_ns, timed_out)."""

def _bench_consume(
    ring: Ring,
    n: int,
    check_all: bool = True,
    until_done: bool = False,
    first_seq: int = 0,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Consume under nogil, verifying every record's seq (and with check_all every byte) against
    the producer's formula; one store-release per batch. until_done: stop when the producer is done
    and nothing is pending, counting seq gaps. Returns a dict: received, bad, gaps, first_bad,
    last_seq, t_first_ns, t_last_ns, timed_out."""

def _fill_records_from_seq(dst: object, first_seq: int) -> None:
    """Fill a contiguous writable buffer of whole records with the bench/test formula."""

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
        windows entered while there was work), accept_errors."""
    def status_counts(self) -> dict[int, int]:
        """Responses chosen per status (counted when queued), including zero counts."""
    def close(self) -> None:
        """Close the listening socket and every connection; free the buffers. Not while running."""
    def __enter__(self) -> Server: ...
    def __exit__(self, *exc: object) -> None: ...
