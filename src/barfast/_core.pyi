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

# --- engine (loop.pxi, conn.pxi, pacing.pxi) ---

# --- server (serve.pxi) ---
