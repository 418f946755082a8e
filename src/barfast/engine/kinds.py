"""Request error kinds, mirroring `enum bf_error_e` in engine/include/barfast.h (values are a ring contract)."""

from __future__ import annotations

from enum import IntEnum


class ErrorKind(IntEnum):
    NONE = 0
    CONNECT = 1  # connect() failed or the connect timeout fired
    TIMEOUT = 2  # no complete response within the request timeout
    READ = 3  # read() failed (ECONNRESET, ...)
    WRITE = 4  # write() failed (EPIPE, ...)
    PARSE = 5  # malformed response
    CLOSED = 6  # peer closed before the response was complete
    NOT_SENT = 7  # open loop: scheduled but never sent before the run ended
    TLS = 8  # TLS handshake or record failure (verification, alert, bad record)

    @property
    def label(self) -> str:
        return self.name.lower()


FLAG_NEW_CONN = 0x01
FLAG_CONN_CLOSE = 0x02
FLAG_OPEN_LOOP = 0x04
FLAG_INTERIM = 0x08
FLAG_CHECK_FAIL = 0x10  # a complete response whose status failed its endpoint's check
