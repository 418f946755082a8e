# clock.pxi — the monotonic clock (integer ns) and precise waiting until an absolute time.
# Never: uses wall-clock time (CLOCK_REALTIME jumps) or floating-point seconds inside the core, except
#   clock_real_ns() to turn the kernel's receive stamps (CLOCK_REALTIME) into monotonic time at the
#   moment they are read (loop.pxi, loop_rx_time).
# Invariants: every timestamp in the core is CLOCK_MONOTONIC ns from clock_now_ns(); it never decreases.

from posix.time cimport (clock_gettime, clock_nanosleep, timespec, CLOCK_MONOTONIC,
                         CLOCK_REALTIME)


cdef extern from "time.h" nogil:
    enum: TIMER_ABSTIME


# Below this distance from the target, clock_sleep_until() spins on the clock instead of sleeping:
# a nanosleep wake-up on a shared VM is late by tens of µs even with 1 ns timer slack
# (prctl(2) PR_SET_TIMERSLACK), so the last stretch is spent reading the vDSO clock (~20 ns a read).
cdef enum:
    CLOCK_SPIN_NS = 50000


cdef inline uint64_t clock_now_ns() noexcept nogil:
    # clock_gettime(CLOCK_MONOTONIC) is served by the vDSO on Linux: no syscall, ~20 ns
    # (vdso(7)). CLOCK_MONOTONIC is not slewed backwards and is shared by all processes on the host,
    # so start_ns values computed by a coordinator are meaningful in every local worker.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline uint64_t clock_real_ns() noexcept nogil:
    # CLOCK_REALTIME, vDSO: only to convert a kernel receive stamp (loop_rx_time).
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline void clock_ns_to_timespec(uint64_t ns, timespec *ts) noexcept nogil:
    ts.tv_sec = <long>(ns // 1000000000ULL)
    ts.tv_nsec = <long>(ns % 1000000000ULL)


cdef void clock_sleep_until(uint64_t target_ns, const int *stop_flag) noexcept nogil:
    """Return at target_ns (within ~1 µs) or as soon as *stop_flag becomes non-zero (checked every
    10 ms while sleeping). Sleeps with clock_nanosleep(TIMER_ABSTIME) (no drift from computing a
    relative delay) and spins only for the last CLOCK_SPIN_NS."""
    cdef timespec ts
    cdef uint64_t now = clock_now_ns()
    cdef uint64_t wake
    while now + CLOCK_SPIN_NS < target_ns:
        if stop_flag != NULL and bf_load_acquire_int(stop_flag):
            return
        wake = target_ns - CLOCK_SPIN_NS
        if wake > now + 10_000_000:
            wake = now + 10_000_000
        clock_ns_to_timespec(wake, &ts)
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)
        now = clock_now_ns()
    while now < target_ns:
        now = clock_now_ns()


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in integer nanoseconds: the clock of every sample timestamp."""
    return clock_now_ns()
