# cython: language_level=3, embedsignature=True
# distutils: language = c
"""barfast's one native extension: engine, ring, histogram recording, built-in server.

Assembled from small fragments in _engine/ (uvloop's layout): each `include` below owns one job.
One translation unit, so every cdef call between fragments is an inlinable C call.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t  # no-cython-lint (used by the includes)

include "_engine/contract.pxi"   # sample record, error kinds, flags, atomics (includes/barfast.h)
include "_engine/errors.pxi"     # errno -> exception for setup failures (one converter)
include "_engine/clock.pxi"      # CLOCK_MONOTONIC ns, precise sleeps
include "_engine/ring.pxi"       # lock-free SPSC mmap sample ring, native + Python API
include "_engine/hist.pxi"       # sample batches -> hdrh counts at C speed
include "_engine/http.pxi"       # incremental HTTP/1.1 response parser
include "_engine/pacing.pxi"     # open-loop schedules (intended send times)
include "_engine/conn.pxi"       # client connection state machine
include "_engine/nap.pxi"        # closed-loop nap controller (timer naps vs blocking on sockets)
include "_engine/loop.pxi"       # client epoll loop (nogil) and the Engine class
include "_engine/serve.pxi"      # built-in HTTP/1.1 target
