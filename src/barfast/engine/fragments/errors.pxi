# errors.pxi — the one place an errno from a setup step (socket, epoll, rlimit) becomes an exception.
# Never: used per request (request failures are counters and sample error kinds, not exceptions).
# Invariants: the exception is OSError's errno-specific subclass (EMFILE -> OSError, ECONNREFUSED ->
#   ConnectionRefusedError, ...), carrying .errno, so callers can map causes to exit codes.

from libc.errno cimport errno
from libc.string cimport strerror


cdef object errors_oserror(int err, str what):
    """OSError(errno, message) for a failed setup step; OSError's constructor picks the subclass
    (PEP 3151), e.g. ConnectionRefusedError for ECONNREFUSED."""
    cdef bytes msg = strerror(err)
    return OSError(err, f"{what}: {msg.decode('utf-8', 'replace')}")


cdef int errors_raise(int err, str what) except -1:
    raise errors_oserror(err, what)
