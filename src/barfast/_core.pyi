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
