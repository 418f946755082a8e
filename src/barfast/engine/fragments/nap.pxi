# nap.pxi — the closed loop's nap controller: when a poll finds nothing to read, does the loop block
#   on its sockets (woken by the next response) or nap a few µs on a timer and then read what arrived?
# Never: reads a clock or a socket itself (the loop passes the time and its finished count); never
#   keeps naps on after a probe in which they cost more throughput than NAP_KEEP_RATIO allows.
# Invariants: `on` changes only at a window or hold edge, and on_ns counts exactly the time it was 1;
#   each probe alternates naps off/on in ABBA-ordered window pairs and ends in exactly one decision.
#
# Why naps (benchmarks/README.md, "Closed loop in steady state"): a closed loop that
# blocks on its sockets is woken by the next response, and on this project's VMs a wake-up costs
# 15-28 µs of CPU, partly on the *server's* CPU (the sender of the packet does the wake-up). Against
# a saturated server empty polls are rare (the report's wake-ups: 0.018 sleeps per request against nginx
# with naps off, 0.010-0.013 with naps on), but each costs both sides a wake-up. A loop
# that naps on a timer instead (an empty epoll set: no socket event wakes it) lets responses pile up
# and reads them in one pass, timed by their kernel receive stamps (loop.pxi, "What is timed"), so no
# latency is invented. Against a saturated server this cut our CPU per request by ~6 % and raised
# its throughput slightly (fewer wake-ups on its CPU, fuller batches).
# Why a controller: a nap delays each pick-up by up to the nap plus the timer's lateness (d, 35-60 µs
# here). A saturated server's queue absorbs that delay, but a server that is not saturated (few
# connections, a long round trip R) then serves the loop d / (R + d) less: ~6 % at R = 500 µs. One
# operating point cannot tell the two cases apart (X = N / R either way), so the controller tries
# both. A probe alternates windows with naps off and on (ABBA order, so a linear drift of the
# machine's speed cancels within each pair of pairs), compares the finished requests per second of
# the two windows of each pair, and keeps naps on only when the median on/off ratio is at least
# NAP_KEEP_RATIO. A second pair below NAP_ABORT_RATIO ends the probe at once (naps off), so a
# server that naps hurt badly pays for two windows, not the whole probe (one such pair can be a
# preempted window: 3 of 8 saturated runs had one). The decision holds for
# NAP_HOLD_MIN_NS, doubling up to NAP_HOLD_MAX_NS while probes keep deciding the same; then it is
# probed again (the server's state can change within a run).
# The thresholds, from single-pair on/off ratios (bench_open_peers.py, 20 ms windows, one engine
# on CPU 0, the server on CPU 1; ~120-200 pairs each):
#   nginx, 50 connections (saturated):         median 1.007-1.030, 5th pct 0.96-0.99, min 0.79
#   nginx, 16 / 8 / 2 connections:             median 0.933 / 0.674 / 0.459
#   barfast serve --delay 300us, 4 / 50 conns: median 0.925 / 0.878
#   nginx, 200 connections, generator and nginx unpinned (wake-ups on loopback pull them onto one
#   CPU, the engine then waits ~37 % of the run for it): 0.85-0.87 in some runs, > 1 in others
# So a saturated server with its own CPU gains from naps; every unsaturated case loses more than
# 5 %, and so can a generator that shares its CPU with the server (a nap hands the CPU over). The
# median of 6 pairs falls below NAP_KEEP_RATIO (0.99) when a saturated server's probe is unlucky
# (a few % of probes; the next probe follows after NAP_HOLD_MIN_NS), and two pairs fall below
# NAP_ABORT_RATIO (0.75) only where naps cut throughput by a quarter or more.
# At low rates a 20 ms window holds few completions and the ratios are noisy (a window with none
# counts as no loss), but a slow closed loop has a long cycle R, so a nap's cost d / (R + d) is
# then small (0.4 % at R = 10 ms) and either decision is harmless.

cdef enum:
    NAP_DEFAULT_NS = 20000          # nap length (20 and 50 µs measure alike: bf-1proc-napN)
    NAP_WARM_NS = 100000000         # first probe this long after t0 (connections up, caches warm)
    NAP_WINDOW_NS = 20000000        # one probe window
    NAP_PAIRS = 6                   # window pairs per probe (12 windows, ~240 ms)
    NAP_PAIRS_MAX = 32
    NAP_RETRY_NS = 20000000         # naps not possible yet (no receive stamp seen): look again
    NAP_LOG = 256                   # probe outcomes kept for benchmarks

cdef uint64_t NAP_HOLD_MIN_NS = 500000000ULL
cdef uint64_t NAP_HOLD_MAX_NS = 8000000000ULL
cdef double NAP_KEEP_RATIO = 0.99   # naps may cost at most 1 % of the throughput (the median)
cdef double NAP_ABORT_RATIO = 0.75  # a second pair this much worse: off at once


ctypedef struct nap_t:
    uint64_t nap_ns          # nap length; 0: the loop never naps
    bint auto                # the controller decides (the default); else naps always when nap_ns
    bint on                  # naps in effect now
    bint probing
    uint32_t pairs           # window pairs per probe
    uint32_t win             # probe: current window, 0 .. 2 * pairs - 1
    uint32_t bad             # probe: pairs below `abort` so far
    uint64_t window_ns
    double keep              # NAP_KEEP_RATIO (a knob for benchmarks)
    double abort             # NAP_ABORT_RATIO (a knob for benchmarks)
    uint64_t next_ns         # nap_step acts at or after this time
    uint64_t t0              # probe: the current window's start
    uint64_t done0           # probe: finished requests at the window's start
    double prev_rate         # probe: the first window of the current pair, finished per ns
    double ratio[NAP_PAIRS_MAX]   # probe: on/off rate ratio of each pair so far
    uint64_t hold_ns         # current hold length
    uint64_t hold_min_ns     # NAP_HOLD_MIN_NS, NAP_HOLD_MAX_NS (knobs for benchmarks)
    uint64_t hold_max_ns
    bint last                # the last decision (when probes > 0)
    uint64_t since           # when `on` last became 1
    uint64_t on_ns           # time with naps on, up to `since`
    uint64_t probes          # probes ended (with a decision)
    uint64_t probes_on       # of them, deciding for naps
    uint64_t aborts          # ended early by a second pair below NAP_ABORT_RATIO
    uint32_t nlog
    float log[NAP_LOG]       # median ratio of each ended probe (0: aborted), the first NAP_LOG


cdef void nap_init(nap_t *n) noexcept nogil:
    n.nap_ns = NAP_DEFAULT_NS
    n.auto = 1
    n.pairs = NAP_PAIRS
    n.window_ns = NAP_WINDOW_NS
    n.keep = NAP_KEEP_RATIO
    n.abort = NAP_ABORT_RATIO
    n.hold_ns = NAP_HOLD_MIN_NS
    n.hold_min_ns = NAP_HOLD_MIN_NS
    n.hold_max_ns = NAP_HOLD_MAX_NS


cdef void nap_start(nap_t *n, uint64_t t0) noexcept nogil:
    """The run begins at t0: a fixed setting takes effect, the controller waits NAP_WARM_NS."""
    n.on = 0
    if n.nap_ns and not n.auto:
        n.on = 1
        n.since = t0
    n.next_ns = t0 + NAP_WARM_NS if n.nap_ns and n.auto else 0xFFFFFFFFFFFFFFFFULL


cdef inline void nap_warm_from(nap_t *n, uint64_t now) noexcept nogil:
    """No probe until NAP_WARM_NS after `now`: the closed loop's pool finished opening (loop_ramp),
    and its throughput still rises while the last connects complete, which would bias the first
    window pairs. Called before the first probe only (nap_step does not run while the pool opens)."""
    if n.nap_ns and n.auto and n.next_ns < now + NAP_WARM_NS:
        n.next_ns = now + NAP_WARM_NS


cdef inline void nap_set(nap_t *n, bint on, uint64_t now) noexcept nogil:
    if on and not n.on:
        n.since = now
    elif n.on and not on:
        n.on_ns += now - n.since
    n.on = on


cdef inline bint nap_window_on(uint32_t w) noexcept nogil:
    # ABBA: pair p = w / 2 runs (off, on) when p is even, (on, off) when odd.
    return ((w & 1) ^ ((w >> 1) & 1)) != 0


cdef void nap_decide(nap_t *n, bint on, float logged, uint64_t now) noexcept nogil:
    n.probing = 0
    nap_set(n, on, now)
    if n.probes and on == n.last:
        n.hold_ns = n.hold_ns * 2 if n.hold_ns * 2 < n.hold_max_ns else n.hold_max_ns
    else:
        n.hold_ns = n.hold_min_ns
    n.last = on
    n.next_ns = now + n.hold_ns
    n.probes += 1
    if on:
        n.probes_on += 1
    if n.nlog < NAP_LOG:
        n.log[n.nlog] = logged
        n.nlog += 1


cdef double nap_median(double *v, uint32_t k) noexcept nogil:
    """Median of v[0..k) (k >= 1), sorting v in place (insertion sort: k <= NAP_PAIRS_MAX)."""
    cdef uint32_t i, j
    cdef double x
    for i in range(1, k):
        x = v[i]
        j = i
        while j > 0 and v[j - 1] > x:
            v[j] = v[j - 1]
            j -= 1
        v[j] = x
    if k & 1:
        return v[k // 2]
    return 0.5 * (v[k // 2 - 1] + v[k // 2])


cdef void nap_step(nap_t *n, uint64_t now, uint64_t done, bint able) noexcept nogil:
    """Called by the loop when now >= n.next_ns. `done`: requests finished so far (completed and
    failed); `able`: naps are possible at all (receive stamps seen, deferral not given up)."""
    cdef double rate, on_rate, off_rate, r
    cdef uint32_t p
    if not able:
        nap_set(n, 0, now)
        n.probing = 0
        n.next_ns = now + NAP_RETRY_NS
        return
    if not n.probing:
        n.probing = 1
        n.win = 0
        n.bad = 0
        nap_set(n, nap_window_on(0), now)
        n.t0 = now
        n.done0 = done
        n.next_ns = now + n.window_ns
        return
    rate = <double>(done - n.done0) / <double>(now - n.t0) if now > n.t0 else 0.0
    if n.win & 1 == 0:
        n.prev_rate = rate
    else:
        on_rate = rate if n.on else n.prev_rate
        off_rate = n.prev_rate if n.on else rate
        if off_rate > 0.0:
            r = on_rate / off_rate
        else:
            r = 1.0 if on_rate == 0.0 else 2.0   # nothing finished without naps
        p = n.win >> 1
        n.ratio[p] = r
        if r < n.abort:
            n.bad += 1
        if n.bad == 2:
            n.aborts += 1
            nap_decide(n, 0, 0.0, now)
            return
        if p + 1 == n.pairs:
            r = nap_median(n.ratio, n.pairs)
            nap_decide(n, r >= n.keep, <float>r, now)
            return
    n.win += 1
    nap_set(n, nap_window_on(n.win), now)
    n.t0 = now
    n.done0 = done
    n.next_ns = now + n.window_ns


cdef uint64_t nap_on_ns(nap_t *n, uint64_t now) noexcept nogil:
    """Time with naps on so far (`now`: the end of the run, or the present)."""
    return n.on_ns + (now - n.since if n.on else 0)


cdef class _NapController:
    """Test hook: the nap controller driven by hand (time and finished counts given by the test)."""

    cdef nap_t n

    def __cinit__(self, uint64_t window_ns=NAP_WINDOW_NS, uint32_t pairs=NAP_PAIRS):
        if window_ns == 0 or not 1 <= pairs <= NAP_PAIRS_MAX:
            raise ValueError("bad nap control")
        nap_init(&self.n)
        self.n.window_ns = window_ns
        self.n.pairs = pairs

    def start(self, uint64_t t0) -> None:
        nap_start(&self.n, t0)

    def step(self, uint64_t now, uint64_t done, bint able=True) -> None:
        nap_step(&self.n, now, done, able)

    def on_ns(self, uint64_t now) -> int:
        return nap_on_ns(&self.n, now)

    @property
    def on(self) -> bool:
        return bool(self.n.on)

    @property
    def probing(self) -> bool:
        return bool(self.n.probing)

    @property
    def next_ns(self) -> int:
        return self.n.next_ns

    @property
    def hold_ns(self) -> int:
        return self.n.hold_ns

    @property
    def stats(self) -> dict:
        return {"probes": self.n.probes, "probes_on": self.n.probes_on, "aborts": self.n.aborts,
                "log": [self.n.log[i] for i in range(self.n.nlog)]}
