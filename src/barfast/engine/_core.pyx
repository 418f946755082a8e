# cython: language_level=3, embedsignature=True
# distutils: language = c
"""barfast's one native extension: engine, ring, histogram recording, built-in server.

Assembled from small fragments in fragments/ (uvloop's layout): each `include` below owns one job.
One translation unit, so every cdef call between fragments is an inlinable C call.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t  # no-cython-lint (used by the includes)

include "fragments/contract.pxi"   # sample record, error kinds, flags, atomics (include/barfast.h)
include "fragments/errors.pxi"     # errno -> exception for setup failures (one converter)
include "fragments/clock.pxi"      # CLOCK_MONOTONIC ns, precise sleeps
include "fragments/ring.pxi"       # lock-free SPSC mmap sample ring, native + Python API
include "fragments/hist.pxi"       # sample batches -> hdrh counts at C speed
include "fragments/http.pxi"       # incremental HTTP/1.1 response parser
include "fragments/check.pxi"      # response checks on captured bytes (include/bf_check.h)
include "fragments/pacing.pxi"     # open-loop schedules (intended send times)
include "fragments/template.pxi"   # request templates: feeders and generators, rendered per request
include "fragments/tls.pxi"        # OpenSSL for the client loop (include/bf_tls.h), its SSL_CTX
include "fragments/conn.pxi"       # client connection state machine
include "fragments/flow.pxi"       # flows: step programs, per-user state, think timers
include "fragments/nap.pxi"        # closed-loop nap controller (timer naps vs blocking on sockets)
include "fragments/loop.pxi"       # client epoll loop (nogil) and the Engine class
include "fragments/user.pxi"       # a flow's virtual users in the loop (steps, captures, thinks)
include "fragments/serve.pxi"      # built-in HTTP/1.1 target
