# pacing.pxi — open-loop schedules: the intended send time of the k-th request (constant, stages, poisson).
# Never: allocates or calls into Python in pacing_advance(); never drops or reorders a schedule entry
#   (pacing_skip_through() passes over many at once, but returns exactly how many it passed).
# Invariants: intended times are non-decreasing; an entry's time depends only on (rate, stages,
#   arrival, seed, k), never on when it is actually sent, so a late request keeps its intended time
#   (one exception: after a Poisson schedule's bulk skip, later entries are a fresh draw).

from libc.math cimport sqrt, log, cos, INFINITY, llround
from libc.stdlib cimport malloc, free
from libc.string cimport memset

# How the schedule is computed. The rate r(t) (requests per ns) is piecewise linear: one segment per
# stage, ramping from the previous stage's target to this one's (k6's `stages`), or a single
# open-ended segment for a constant --rate. Its integral Λ(t) is the expected number of requests sent
# by time t. The k-th request (k = 0, 1, 2, ...) is due at t_k = Λ⁻¹(c_k) where
#   constant arrivals: c_k = k               (so t_k = t0 + k/rate exactly for a constant rate, wrk2's
#                                             schedule, but with ns resolution and no per-connection
#                                             split)
#   poisson arrivals:  c_k = c_{k-1} + E_k,  E_k ~ Exp(1) from a seeded splitmix64 stream (time-changing
#                                             a unit Poisson process by Λ⁻¹ gives a Poisson process of
#                                             intensity r(t), also while ramping)
# Inverting Λ on a segment with start rate r0 and slope 2a = (r1 - r0)/D solves
#   a τ² + r0 τ = x (x = c - Λ(segment start)) -> τ = 2x / (r0 + sqrt(r0² + 4 a x)),
# the cancellation-free root, exact also when a < 0 (ramping down) and when r0 = 0 (ramping up from 0).
# A request lands on segment i iff Λ_i <= c < Λ_{i+1}; zero-rate stretches have Λ_i == Λ_{i+1} and are
# skipped, so the schedule jumps over them. After the last stage, past end_ns (the run's deadline) or
# after `limit` entries, the schedule ends (PACING_END).

cdef enum:
    PACING_ARRIVAL_CONSTANT = 0
    PACING_ARRIVAL_POISSON = 1
    PACING_SKIP_WALK = 10000        # poisson: fewer expected entries than this are walked one by one

# The schedule's resolution is 1 ns, so a rate above one request per ns cannot be represented
# (config.py refuses it with a usage error; pacing_setup, so Engine(), with a ValueError).
cdef double PACING_MAX_RATE = 1e9

cdef uint64_t PACING_END = 0xFFFFFFFFFFFFFFFFULL


ctypedef struct pacing_seg_t:
    double start_ns     # segment start, ns after t0
    double dur_ns       # INFINITY for the open-ended constant segment
    double r0           # rate at the segment start, requests per ns
    double a            # half the slope: (r1 - r0) / (2 dur); 0 for constant segments
    double c0           # Λ at the segment start
    double c1           # Λ at the segment end (INFINITY when open-ended)


ctypedef struct pacing_t:
    pacing_seg_t *segs
    int nsegs
    int seg             # segment of the current entry (only moves forward)
    int arrival         # PACING_ARRIVAL_*
    uint64_t t0_ns      # absolute CLOCK_MONOTONIC time of Λ = 0
    uint64_t end_ns     # entries at or after this time do not exist (PACING_END: no time bound)
    uint64_t limit      # at most this many entries (0: unbounded)
    uint64_t k          # index of the current entry
    double c            # Λ-coordinate of the current entry
    uint64_t rng        # splitmix64 state (poisson)
    uint64_t next_ns    # intended time of entry k, or PACING_END


cdef inline uint64_t pacing_splitmix64(uint64_t *state) noexcept nogil:
    # splitmix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro): full-period, passes
    # BigCrush, 3 multiply/xor rounds: ample for arrival gaps.
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double pacing_exp1(uint64_t *state) noexcept nogil:
    # Exp(1) by inversion: u uniform in (0, 1] from the top 53 bits, -ln(u) (never ln(0)).
    cdef double u = (<double>((pacing_splitmix64(state) >> 11) + 1)) * (1.0 / 9007199254740992.0)
    return -log(u)


cdef uint64_t pacing_time_of(pacing_t *p, double c) noexcept nogil:
    """Absolute time of Λ-coordinate c (advancing p.seg), or PACING_END past the last segment."""
    cdef pacing_seg_t *s
    cdef double x, tau, disc
    while p.seg < p.nsegs and not (c < p.segs[p.seg].c1):
        p.seg += 1
    if p.seg >= p.nsegs:
        return PACING_END
    s = &p.segs[p.seg]
    x = c - s.c0
    if x <= 0.0:
        tau = 0.0
    elif s.a == 0.0:
        tau = x / s.r0
    else:
        disc = s.r0 * s.r0 + 4.0 * s.a * x
        if disc < 0.0:
            disc = 0.0
        tau = 2.0 * x / (s.r0 + sqrt(disc))
    if tau > s.dur_ns:
        tau = s.dur_ns
    return p.t0_ns + <uint64_t>llround(s.start_ns + tau)


cdef void pacing_refresh(pacing_t *p) noexcept nogil:
    cdef uint64_t t
    if p.limit and p.k >= p.limit:
        p.next_ns = PACING_END
        return
    t = pacing_time_of(p, p.c)
    if t != PACING_END and t >= p.end_ns:
        t = PACING_END
    p.next_ns = t


cdef inline void pacing_advance(pacing_t *p) noexcept nogil:
    """Move to the next entry: p.next_ns becomes its intended time (or PACING_END)."""
    if p.next_ns == PACING_END:
        return
    p.k += 1
    if p.arrival == PACING_ARRIVAL_POISSON:
        p.c += pacing_exp1(&p.rng)
    else:
        p.c += 1.0
    pacing_refresh(p)


cdef int pacing_setup(pacing_t *p, double rate, object stages, int arrival, uint64_t seed,
                      uint64_t limit) except -1:
    """Build the segments (Python level, once). Rates in requests per second; stages is a sequence of
    (duration_ns, end_rate). Call pacing_start() to anchor it at t0."""
    cdef int n, i
    cdef double prev, r, d, c = 0.0, start = 0.0
    stages = [(int(d_), float(r_)) for d_, r_ in stages]
    if rate > PACING_MAX_RATE or any(r_ > PACING_MAX_RATE for _, r_ in stages):
        raise ValueError("rates above 1e9 requests/s (one per ns) cannot be scheduled")
    n = len(stages) if stages else 1
    p.segs = <pacing_seg_t *>malloc(n * sizeof(pacing_seg_t))
    if p.segs == NULL:
        raise MemoryError()
    p.nsegs = n
    if not stages:
        if not rate > 0.0:
            raise ValueError("an open-loop schedule needs rate > 0 or stages")
        p.segs[0].start_ns = 0.0
        p.segs[0].dur_ns = INFINITY
        p.segs[0].r0 = rate / 1e9
        p.segs[0].a = 0.0
        p.segs[0].c0 = 0.0
        p.segs[0].c1 = INFINITY
    else:
        prev = rate if rate > 0.0 else stages[0][1]
        for i in range(n):
            d = stages[i][0]
            r = stages[i][1]
            if not d > 0 or r < 0 or prev < 0:
                raise ValueError(f"bad stage {stages[i]!r}")
            p.segs[i].start_ns = start
            p.segs[i].dur_ns = d
            p.segs[i].r0 = prev / 1e9
            p.segs[i].a = (r - prev) / 1e9 / (2.0 * d)
            p.segs[i].c0 = c
            c += (prev + r) / 2.0 / 1e9 * d
            p.segs[i].c1 = c
            start += d
            prev = r
    p.arrival = arrival
    p.limit = limit
    p.rng = seed ^ 0x6A09E667F3BCC909ULL  # distinct streams for seed 0 and other generators
    p.end_ns = PACING_END
    return 0


cdef double pacing_coord_at(pacing_t *p, uint64_t t) noexcept nogil:
    """Λ at absolute time t: the expected number of entries due before t (c1 of the last segment
    past it)."""
    cdef double x = <double>(t - p.t0_ns) if t > p.t0_ns else 0.0
    cdef double tau
    cdef int i = p.seg
    while i < p.nsegs and x >= p.segs[i].start_ns + p.segs[i].dur_ns:
        i += 1
    if i >= p.nsegs:
        return p.segs[p.nsegs - 1].c1
    tau = x - p.segs[i].start_ns
    if tau < 0.0:
        tau = 0.0
    return p.segs[i].c0 + p.segs[i].r0 * tau + p.segs[i].a * tau * tau


cdef double pacing_normal(uint64_t *state) noexcept nogil:
    """A standard normal draw (Box-Muller, one of the pair)."""
    cdef double u1 = (<double>((pacing_splitmix64(state) >> 11) + 1)) * (1.0 / 9007199254740992.0)
    cdef double u2 = (<double>(pacing_splitmix64(state) >> 11)) * (1.0 / 9007199254740992.0)
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2)


cdef inline uint64_t pacing_cap(pacing_t *p, uint64_t m) noexcept nogil:
    """At most m entries, and none past the schedule's count limit (-n with a rate)."""
    cdef uint64_t left
    if p.limit:
        left = p.limit - p.k if p.limit > p.k else 0
        if m > left:
            return left
    return m


cdef uint64_t pacing_skip_through(pacing_t *p, uint64_t t) noexcept nogil:
    """Pass over every entry due at or before t without visiting each; return how many. For the
    open loop's hopeless backlogs (loop.pxi, loop_fail_backlog): a rate far beyond what any
    connection pool serves would otherwise cost one step per entry, for ever.
    Constant arrivals (c_k = k) jump to the index directly, so the entries after the skip are
    exactly those of a one-by-one walk. Poisson arrivals draw the number of points of the unit
    Poisson process in the skipped Λ-interval (normal approximation; it is only used with at least
    PACING_SKIP_WALK expected) and restart the process at its end (memoryless): the schedule stays
    a Poisson process of the same intensity, but later entries are no longer those of the walk."""
    cdef uint64_t n = 0, m
    cdef double cT, L, draw
    if p.next_ns == PACING_END or p.next_ns > t:
        return 0
    if p.end_ns != PACING_END and t >= p.end_ns:
        t = p.end_ns - 1          # entries at or after end_ns do not exist
    cT = pacing_coord_at(p, t)
    if p.arrival == PACING_ARRIVAL_CONSTANT:
        # Entry k is due at Λ⁻¹(k): entries with k <= cT - 2 are surely due by t (the margin
        # covers the ns rounding of their times); the walk below settles the last one or two.
        if cT - 2.0 > p.c + 1.0:
            m = pacing_cap(p, <uint64_t>(cT - 2.0 - p.c))
            p.k += m
            p.c += <double>m
            n += m
            pacing_refresh(p)
    else:
        L = cT - p.c
        if L >= PACING_SKIP_WALK:
            # the current entry, plus the points in (p.c, cT]: Poisson(L) of them
            draw = L + sqrt(L) * pacing_normal(&p.rng)
            m = pacing_cap(p, 1 + (<uint64_t>llround(draw) if draw > 0.0 else 0))
            p.k += m
            n += m
            p.c = cT + pacing_exp1(&p.rng)     # the first point after cT
            pacing_refresh(p)
    while p.next_ns != PACING_END and p.next_ns <= t:
        pacing_advance(p)
        n += 1
    return n


cdef void pacing_start(pacing_t *p, uint64_t t0_ns, uint64_t end_ns) noexcept nogil:
    """Anchor the schedule at t0_ns (entry 0) and cut it at end_ns (PACING_END: no cut)."""
    p.t0_ns = t0_ns
    p.end_ns = end_ns
    p.seg = 0
    p.k = 0
    p.c = pacing_exp1(&p.rng) if p.arrival == PACING_ARRIVAL_POISSON else 0.0
    pacing_refresh(p)


cdef void pacing_free(pacing_t *p) noexcept nogil:
    free(p.segs)
    p.segs = NULL
    p.nsegs = 0


def pacing_times(double rate=0.0, stages=(), int arrival=0, uint64_t seed=0, uint64_t count=0,
                 uint64_t duration_ns=0, uint64_t requests=0) -> list:
    """Test hook: the intended send times (ns after t0) of the first `count` schedule entries (fewer
    if the schedule ends first: after `duration_ns`, after `requests` entries, or after the stages)."""
    cdef pacing_t p
    cdef list out = []
    cdef uint64_t t0 = 1000000000000ULL  # any origin; results are relative to it
    if count == 0 and duration_ns == 0 and requests == 0 and not stages:
        raise ValueError("unbounded schedule: give count, duration_ns, requests or stages")
    memset(&p, 0, sizeof(p))
    pacing_setup(&p, rate, stages, arrival, seed, requests)
    try:
        pacing_start(&p, t0, t0 + duration_ns if duration_ns else PACING_END)
        while p.next_ns != PACING_END and (count == 0 or <uint64_t>len(out) < count):
            out.append(p.next_ns - t0)
            pacing_advance(&p)
    finally:
        pacing_free(&p)
    return out


def pacing_skip(double rate=0.0, stages=(), int arrival=0, uint64_t seed=0,
                uint64_t duration_ns=0, uint64_t requests=0, uint64_t through_ns=0,
                uint64_t then=3) -> tuple:
    """Test hook: start the schedule, pass over every entry due at or before `through_ns` (ns after
    t0) with pacing_skip_through(), and return (how many it passed, the intended times of the next
    `then` entries, ns after t0)."""
    cdef pacing_t p
    cdef uint64_t t0 = 1000000000000ULL
    cdef uint64_t n
    cdef list after = []
    memset(&p, 0, sizeof(p))
    pacing_setup(&p, rate, stages, arrival, seed, requests)
    try:
        pacing_start(&p, t0, t0 + duration_ns if duration_ns else PACING_END)
        n = pacing_skip_through(&p, t0 + through_ns)
        while p.next_ns != PACING_END and <uint64_t>len(after) < then:
            after.append(p.next_ns - t0)
            pacing_advance(&p)
    finally:
        pacing_free(&p)
    return n, after
