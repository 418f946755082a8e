# loop.pxi — the client event loop (one epoll set, the whole run under nogil), request accounting,
#   sample publishing, open-loop dispatch, and the Python-facing Engine class.
# Never: touches a Python object, allocates, or raises between run()'s `with nogil` start and end;
#   never retries a failed request (a failure is counted once and the connection replaced).
# Invariants: started == completed + (errors - err_not_sent) + in_flight at every loop iteration;
#   every finished or failed request publishes exactly one sample (seq 0,1,2,... incl. ring drops);
#   counters are written only by the loop thread (relaxed stores) and read with relaxed loads.
#
# What is timed (the measurement semantics; wrk2's README and Gil Tene's "How NOT to measure
# latency" are the rationale):
#   send_ns        CLOCK_MONOTONIC read just before the first write() of the request. Connection
#                  setup is not part of it: a request is sent only on an established connection.
#   first_byte_ns  read right after the first read() that returned bytes of this response.
#   done_ns        read right after the read() whose bytes let the parser finish the response (the
#                  same reading as first_byte_ns when the whole response came in one read), or when
#                  the error was detected for a failed request.
#                  Open loop, after a deferred pacing sleep (see LOOP_DEFER_MAX_BYTES): bytes that
#                  arrived while the loop slept are read late on purpose, so for those reads both
#                  come from the kernel's receive stamp of the data (SO_TIMESTAMPNS, when the last
#                  byte read arrived), converted to CLOCK_MONOTONIC (loop_rx_time); an impossible
#                  result (before send_ns, after the read) falls back to the read's own time.
#                  The same holds after a closed-loop nap (nap.pxi: taken only while a probe
#                  found that naps cost the server's throughput nothing).
#   intended_ns    closed loop: == send_ns (the next request starts when the previous one ends, so
#                  the loop's latency is "service time" and hides stalls: coordinated omission).
#                  open loop: the schedule's t_k (pacing.pxi), fixed before the request is sent and
#                  kept while it waits for a free connection. Latency from intended_ns is the
#                  corrected latency a user at that arrival rate would see; done_ns - send_ns is the
#                  uncorrected one; send_ns - intended_ns is the send lag (the generator's health).
# Timeouts (request: from send_ns; connect: from connect()) are checked by a scan of all slots
# every LOOP_SCAN_NS (10 ms), so they fire up to 10 ms late: that is their resolution.

from libc.stdlib cimport calloc, free
from libc.string cimport memset


cdef enum:
    LOOP_SCAN_NS = 10000000          # timeout/backoff scan period (timeout resolution)
    LOOP_MAX_WAIT_NS = 5000000       # longest epoll wait: stop() takes effect within ~5 ms
    LOOP_MAX_EVENTS = 256
    LOOP_READS_PER_EVENT = 64        # bound one connection's share of a pass (loop_rearm queues
                                     # what is left for the next pass)
    LOOP_BACKOFF_MIN_NS = 10000000   # first retry delay after a failed connect
    LOOP_BACKOFF_MAX_NS = 1000000000  # doubling up to this
    LOOP_STATUS_MAX = 1000           # status codes 0..999 are counted individually
    # Open-loop pacing: sleep in epoll_pwait2 until `spin_ns` before the next intended send, then
    # poll epoll with a zero timeout until it is due. hrtimer wake-ups are late, even with 1 ns timer
    # slack: measured on this project's 2-CPU VMs (benchmarks/README.md, "Open-loop pacing") a
    # timed epoll_pwait2 / clock_nanosleep / timerfd wake-up is late by ~15-40 µs at the median and
    # 30 µs to 2 ms at p99, and costs ~12-28 µs of CPU itself (all three alike;
    # benchmarks/wake_cost.c). So:
    #   - the spin window adapts (spin_auto, the default): it tracks the p99 of the measured
    #     lateness of our own timed wake-ups by stochastic approximation with fixed steps (up
    #     LOOP_SPIN_UP_NS when a wake-up was later than the window, down LOOP_SPIN_DOWN_NS when not:
    #     the drift is zero where P(late > window) = DOWN / (UP + DOWN) = 1 %), so one preempted
    #     wake-up of a few ms moves it by one step, not by its size; clamped to
    #     [LOOP_SPIN_MIN_NS, LOOP_SPIN_MAX_NS]. A fixed window can be set for benchmarks;
    #   - the loop spins only when the gap between the previous intended send and the next one is
    #     at least `spin_gap_factor` windows (LOOP_SPIN_GAP_FACTOR by default; so spinning takes
    #     at most 1/FACTOR of the time). At higher rates it sleeps until the send itself. Spinning
    #     from send to send there (factor 0, a benchmark knob) was measured twice. Alone on its
    #     CPU at 50k req/s it gives send-lag p50 0.2 µs instead of 14 µs and p99 13-44 µs instead
    #     of 45-68 µs (5 rounds), for +15 % CPU. But a spinning loop loses its CPU to any other
    #     runnable task in whole time slices, while a sleeping one preempts it on wake-up: two
    #     workers on one CPU gave lag p99 5.6 ms instead of 128 µs. Making the
    #     spin conditional on the loop's own run-queue wait (schedstat: spin until another task
    #     is seen waiting for this CPU, three variants of the test); with a CPU hog on the
    #     machine the first variant paid ms-long stalls before it noticed (send-lag p99 > 1 ms
    #     in 3 of 6 runs, against 42-437 µs with this rule), so it was reverted. A sleep costs
    #     ~15 µs of CPU here, about what a spin over such a gap costs, so sleeping loses little
    #     and never starves a neighbour.
    #     The process's own ring-draining thread runs under SCHED_BATCH (EngineRunner), so it no
    #     longer preempts the engine on wake-up; time spent spinning is counted (cnt.spin_ns) so
    #     that the CPU self-check does not take a chosen spin for saturation.
    #   - coalesce_ns (benchmark knob, 0 by default) trades lag for CPU: wake at most once per
    #     window after a send is due and send everything due then (each wake-up costs ~20 µs here).
    LOOP_SPIN_INIT_NS = 20000
    LOOP_SPIN_MIN_NS = 2000
    LOOP_SPIN_MAX_NS = 50000        # = the send-lag p99 target: a later wake-up misses it anyway
    LOOP_SPIN_UP_NS = 9900
    LOOP_SPIN_GAP_FACTOR = 2
    LOOP_SPIN_DOWN_NS = 100
    LOOP_LAG_ALLOW_NS = 10000
    # Open loop: a pacing sleep normally ends early whenever a response arrives, which costs a
    # second wake-up per request (~15-20 µs of CPU each on this project's VMs). A deferred sleep
    # waits on an empty epoll set instead, so only the send's own timer wakes the loop; then the
    # loop polls the real set and reads what arrived, timing it by the kernel's receive stamps
    # (What is timed, above). It is used only while that is harmless: stamps have been seen on
    # this run's sockets, no connect is pending, the request is at most this many bytes (its write
    # never waits for EPOLLOUT in practice) and no response so far filled the receive buffer in one
    # read (a larger body would sit in a full socket buffer and stall the server's writes while
    # the loop slept: the first such read turns deferral off for the rest of the run).
    LOOP_OPEN_BATCH = 256           # initial connections opened per pass (loop_ramp),
    LOOP_OPEN_SLICE_NS = 1000000    # and for at most about this long (connect() can be slow)
    LOOP_BACKLOG_WALK = 65536       # open loop: backlog entries failed one by one (a sample each)
                                    # per pass; the rest of the pass is counted in bulk
    LOOP_DEFER_MAX_BYTES = 16384
    LOOP_STAMP_TRIES = 1000         # reads without a stamp before deferral is given up
    LOOP_MAX_ENDPOINTS = 4096       # the sample's endpoint field is 16 bits; this bounds the table
    LOOP_MAX_RANGES = 8             # status check: at most this many inclusive [lo, hi] ranges
    LOOP_MAX_CHECKS = 16            # checks per endpoint
    CHK_STATUS = 1                  # the status is in one of the ranges
    CHK_HEADER = 2                  # field `a` (mode: exists, absent, equals b, contains b)
    CHK_BODY = 3                    # the body contains b
    CHK_JSON = 4                    # the body's value at dotted path `a` (exists, absent, equals b)
    CHK_EXISTS = 0
    CHK_ABSENT = 1
    CHK_EQUALS = 2
    CHK_CONTAINS = 3


# bf_check.h's evaluators are declared in check.pxi (included before this fragment).


# One response check of an endpoint (scenario/compile.py builds them); `failed` counts the
# responses it failed, `too_long` those failed because the body went past the kept prefix.
ctypedef struct loop_check_t:
    uint32_t kind
    uint32_t mode
    uint32_t nranges
    uint16_t lo[LOOP_MAX_RANGES]
    uint16_t hi[LOOP_MAX_RANGES]
    const char *a
    size_t alen
    const char *b
    size_t blen
    uint64_t failed
    uint64_t too_long


# One endpoint: a fixed request, its share of the traffic (Vose's alias method: column `i` keeps
# itself with probability keep / 2^32, else gives its `alias`, so a pick is one random number and
# one compare, O(1) whatever the number of endpoints), its status check, and exact counters
# (written by the loop thread only, read with relaxed loads like loop_counters_t).
ctypedef struct loop_ep_t:
    const char *req
    size_t req_len
    tpl_t *tpl               # NULL: req is sent as it is; else rendered per request (template.pxi)
    loop_check_t *checks     # its response checks (NULL: none beyond the status ranges below)
    uint32_t nchecks
    bint capture             # a check reads headers or body: the parser keeps them (http.pxi)
    bint head
    uint32_t alias
    uint64_t keep            # in [0, 2^32]; 2^32: always keep
    uint32_t nranges         # 0: no status check
    uint16_t lo[LOOP_MAX_RANGES]
    uint16_t hi[LOOP_MAX_RANGES]
    uint64_t started
    uint64_t completed
    uint64_t errors
    uint64_t check_failed


ctypedef struct loop_counters_t:
    uint64_t started         # requests begun (open loop: taken from the schedule; closed loop:
                             # by the connect or the write that begins them)
    uint64_t completed       # responses complete (any status)
    uint64_t errors          # failed requests, all kinds (incl. not_sent)
    uint64_t in_flight       # started and not finished
    uint64_t reconnects      # a slot opened again after an established connection ended
    uint64_t connects        # connections established
    uint64_t connect_attempts
    uint64_t connect_failures  # every failed connect, whether or not a request failed with it
    uint64_t bytes_rx
    uint64_t bytes_tx
    uint64_t samples         # samples produced (== next seq), published or dropped
    uint64_t ring_dropped    # samples the ring had no room for
    uint64_t bulk_failed     # open loop: backlog entries failed (timeout/not_sent) and counted in
                             # bulk, without a sample each (loop_fail_backlog)
    uint64_t conns_open      # sockets open now (incl. connecting)
    uint64_t conns_peak      # most sockets open at once
    uint64_t spin_ns         # open loop: time spent polling for a send that was not due yet (CPU
                             # the loop burnt by choice, not load it could not keep up with)
    uint64_t runq_wait_ns    # the loop thread's run-queue wait since t0 (runnable, but another
                             # task had the CPU; /proc/thread-self/schedstat); 0 where unavailable
    uint64_t check_failed    # completed responses whose status failed their endpoint's check
    uint64_t tls_full        # https: handshakes completed in full
    uint64_t tls_resumed     # https: handshakes that resumed the slot's previous session
    uint64_t err[BF_ERR__COUNT]


ctypedef struct tls_why_t:
    char text[TLS_REASON_MAX]
    uint64_t n               # 0: a free entry (written after the text)


ctypedef struct engine_t:
    int epfd
    int family               # AF_INET, AF_INET6 or AF_UNIX (--unix-socket)
    conn_addr_t addr
    socklen_t addrlen
    SSL_CTX *ssl_ctx         # https: the client context (tls.pxi; NULL: plain HTTP)
    const char *tls_sni      # the server name sent (NULL: none, the host is an IP literal)
    const char *tls_host     # the name or address the certificate must match
    bint tls_host_ip
    long tls_verify          # the first TLS failure's X509_V_* result (0: not verification)
    bint tls_noted           # tls_reason holds the first TLS failure's text
    char tls_reason[TLS_REASON_MAX]
    tls_why_t tls_whys[TLS_WHYS]  # TLS failures counted by reason (the first TLS_WHYS reasons)
    uint64_t tls_whys_other  # failures whose reason found no free entry
    conn_t *conns
    uint32_t nconns          # connections opened at the start
    uint32_t max_conns       # slots allocated (open loop may grow to this)
    uint32_t nslots          # slots in use
    uint32_t ramp_next       # next slot of the initial pool to open (loop_ramp)
    uint32_t *free_stack     # open loop: idle connected slots (entries may be stale)
    uint32_t nfree
    uint32_t n_connecting
    epoll_event *events
    ring_t *ring             # NULL: no ring (samples are counted, not published)
    loop_ep_t *eps           # the endpoints (at least one) and how many
    uint32_t neps
    size_t max_req_len       # the longest endpoint request
    uint64_t pick_rng        # xorshift64* state of the endpoint pick (seeded from `seed`)
    tpl_ctx_t tctx           # feeders, generator state and seq of templated requests
    char *wbufs              # max_conns write buffers of wcap bytes (NULL: no template)
    size_t wcap
    char *capbufs            # max_conns capture buffers (header block + max_body; NULL: none)
    uint32_t max_body        # body bytes a check may read (max_body_for_checks)
    bint data_stopped        # a unique feeder ran out: no request begins after the one that took
                             # its last row
    bint open_loop
    bint stopping            # set when the loop decided to end: no new requests begin
    bint no_pwait2           # epoll_pwait2 returned ENOSYS once: use epoll_wait
    uint32_t trigger         # EPOLLET | EPOLLRDHUP (the default) or 0 (level-triggered; a
                             # benchmark knob)
    uint64_t spin_ns         # pacing: poll instead of sleeping this close to a send
    bint spin_auto           # spin_ns follows the measured wake-up lateness (the default)
    uint64_t last_intended   # intended time of the last schedule entry taken (0: none yet)
    uint64_t coalesce_ns     # pacing: wake this long after a send is due (0: at its time)
    uint32_t spin_gap_factor  # pacing: spin only when sends are at least this many windows apart
    int sched_fd             # /proc/thread-self/schedstat of the loop thread, or -1
    long long sched_wait     # its run_delay at the last scan (-1: unreadable)
    uint64_t spin_up_ns      # adaptive window: step up on a late wake-up (sets the quantile)
    uint64_t lag_allow_ns    # adaptive window: a send this late or less does not count as late
    uint64_t pace_sleeps     # timed pacing sleeps that ended by their timeout (benchmark stats)
    uint64_t pace_late_sum   # their summed lateness past the wake target, ns
    int idle_epfd            # open loop: an empty epoll set, slept on by deferred pacing sleeps
    bint defer_reads         # open loop: deferred sleeps allowed (LOOP_DEFER_MAX_BYTES; knob)
    bint defer_off           # deferral found unsafe or unavailable for the rest of the run
    bint stamps_seen         # a receive stamp came back: the kernel stamps this run's sockets
    bint stamp_reads         # this pass reads what arrived during a deferred sleep: use stamps
    bint collect_pending     # a deferred sleep ended: the next wait polls for what arrived
    uint64_t defer_sleeps    # deferred pacing sleeps (benchmark stats)
    uint64_t naps            # closed-loop naps taken (benchmark stats)
    uint64_t ramp_done_ns    # when the last initial slot was opened (benchmark/test stats)
    uint64_t ramp_completed  # responses completed by then (benchmark/test stats)
    uint64_t rx_stamped      # reads timed by the kernel's receive stamp
    uint64_t rx_unstamped    # stamped reads that came back without a stamp
    uint64_t rx_stamp_bad    # stamps outside [send, now] (wall-clock step): timed by the read
    uint64_t requests        # bound on started requests (0: none)
    uint64_t duration_ns
    uint64_t timeout_ns
    uint64_t connect_timeout_ns
    uint64_t start_ns
    uint64_t t0_ns
    uint64_t end_ns          # t0 + duration, or PACING_END
    uint64_t seq             # next sample's seq
    int stop_flag            # engine.stop(): store-release by any thread, load-acquire by the loop
    pacing_t pacing
    http_memo_t memo         # the last header block parsed in full (http.pxi, "Head memo")
    bint memo_on             # the memo is used (the default; off: a benchmark knob)
    loop_counters_t cnt
    uint64_t status[LOOP_STATUS_MAX]
    flow_t *flows            # flows (user.pxi; NULL: a mix of independent requests)
    uint32_t nflows
    vu_t *vus                # flows: the user of each connection slot (max_conns)
    char *vu_vars            # flows: user i's variable v at (i * nvars + v) * FLOW_VAR_CAP
    uint32_t nvars
    char *vu_jars            # flows with cookies: user i's jar at i * FLOW_JAR_CAP
    uint32_t *theap          # flows: thinking users by due time (flow.pxi)
    uint32_t theap_n
    uint64_t iters           # flows: iterations started (`requests` bounds these, not requests)
    uint64_t vus_active      # flows: iterations in progress
    uint64_t iters_bulk_failed  # flows, open loop: iterations failed in bulk (loop_fail_backlog)
    nap_t nap                # closed loop: after a poll that found nothing, sleep nap.nap_ns
                             # on idle_epfd instead of on the sockets while nap.on (nap.pxi);
                             # last, so its probe arrays and log stay off the hot fields' lines


cdef inline void cnt_add(uint64_t *p, uint64_t v) noexcept nogil:
    # Single writer (the loop thread): a plain read plus a relaxed atomic store, no LOCK prefix;
    # counters() in another thread loads with relaxed ordering and never sees a torn value.
    bf_store_relaxed_u64(p, p[0] + v)


cdef inline void cnt_sub(uint64_t *p, uint64_t v) noexcept nogil:
    bf_store_relaxed_u64(p, p[0] - v)


# ------------------------------------------------------------------ samples and accounting

cdef void loop_publish(engine_t *e, uint64_t intended_ns, uint64_t send_ns, uint64_t first_ns,
                       uint64_t done_ns, uint32_t rx, uint32_t tx, uint32_t conn_id,
                       uint16_t endpoint, uint16_t status, uint8_t err, uint8_t flags,
                       int sys_errno, uint32_t connect_us=0) noexcept nogil:
    cdef bf_sample_t *s = NULL
    if e.ring != NULL:
        s = ring_claim(e.ring)
    if s != NULL:
        s.intended_ns = intended_ns
        s.send_ns = send_ns
        s.first_byte_ns = first_ns
        s.done_ns = done_ns
        s.seq = e.seq
        s.bytes_rx = rx
        s.bytes_tx = tx
        s.conn_id = conn_id
        s.endpoint = endpoint
        s.status = status
        s.error = err
        s.flags = flags
        s.sys_errno = <uint16_t>sys_errno
        s.connect_us = connect_us
        ring_commit(e.ring)
    elif e.ring != NULL:
        cnt_add(&e.cnt.ring_dropped, 1)
    e.seq += 1
    cnt_add(&e.cnt.samples, 1)


cdef inline uint32_t loop_pick(engine_t *e) noexcept nogil:
    """The next request's endpoint, by weight (alias table; xorshift64*, Vigna 2016)."""
    cdef uint64_t r
    cdef uint32_t col
    if e.neps == 1:
        return 0
    e.pick_rng ^= e.pick_rng >> 12
    e.pick_rng ^= e.pick_rng << 25
    e.pick_rng ^= e.pick_rng >> 27
    r = e.pick_rng * 2685821657736338717ULL
    col = <uint32_t>(((r >> 32) * e.neps) >> 32)
    if (r & 0xFFFFFFFFULL) < e.eps[col].keep:
        return col
    return e.eps[col].alias


cdef inline void loop_begin(engine_t *e, conn_t *c, uint64_t intended_ns, uint8_t flags) noexcept nogil:
    """A request starts on slot c (counted as started and in flight until loop_finish); its
    endpoint is picked now, so a request failed before its write still counts against one."""
    loop_begin_ep(e, c, loop_pick(e), intended_ns, flags)


cdef void loop_begin_ep(engine_t *e, conn_t *c, uint32_t i, uint64_t intended_ns,
                        uint8_t flags) noexcept nogil:
    """Endpoint i's request starts on slot c (a flow's user gives its own render context)."""
    cdef loop_ep_t *ep = &e.eps[i]
    c.ep = <uint16_t>i
    if ep.tpl == NULL:
        c.req = ep.req
        c.req_len = ep.req_len
    else:
        c.req = c.wbuf
        c.req_len = tpl_render(&e.tctx, ep.tpl, c.wbuf)
    cnt_add(&ep.started, 1)
    c.has_req = 1
    c.intended_ns = intended_ns
    c.send_ns = 0
    c.first_byte_ns = 0
    c.bytes_rx = 0
    c.bytes_tx = 0
    c.wpos = 0
    c.flags = flags
    http_resp_init(&c.parser, ep.head)
    c.parser.cap = c.capbuf if ep.capture else NULL
    cnt_add(&e.cnt.started, 1)
    cnt_add(&e.cnt.in_flight, 1)
    if e.tctx.data_out and not e.data_stopped:
        # The unique rows are used up: this request is the run's last. Closed loop: `requests`
        # bounds it now; open loop: the schedule ends here (entries not taken were never started).
        # Flows: no iteration begins after this one.
        e.data_stopped = 1
        e.requests = e.iters if e.nflows else e.cnt.started
        e.pacing.next_ns = PACING_END


cdef void loop_finish(engine_t *e, conn_t *c, uint8_t err, int sys_errno, uint16_t status,
                      uint64_t now) noexcept nogil:
    """The request on slot c ended (err == BF_ERR_NONE: completed): count it, publish its sample."""
    cdef uint64_t intended = c.intended_ns
    cdef loop_ep_t *ep = &e.eps[c.ep]
    cdef uint32_t k
    cdef bint ok
    if intended == 0:   # closed loop, failed before its write: from when its connect began
        intended = c.connect_ns if c.connect_ns else now
    c.has_req = 0
    cnt_sub(&e.cnt.in_flight, 1)
    if err == BF_ERR_NONE:
        cnt_add(&e.cnt.completed, 1)
        cnt_add(&ep.completed, 1)
        if status < LOOP_STATUS_MAX:
            cnt_add(&e.status[status], 1)
        ok = 1
        if ep.nranges:
            ok = 0
            for k in range(ep.nranges):
                if ep.lo[k] <= status <= ep.hi[k]:
                    ok = 1
                    break
        if ep.nchecks and loop_checks_fail(ep, &c.parser, status):
            ok = 0
        if ep.nranges or ep.nchecks:
            # A failed check is not a transport error: the response stays a completed one (in
            # the latency histograms); it is flagged and counted apart.
            if not ok:
                c.flags |= BF_FLAG_CHECK_FAIL
                cnt_add(&e.cnt.check_failed, 1)
                cnt_add(&ep.check_failed, 1)
    else:
        cnt_add(&e.cnt.errors, 1)
        cnt_add(&e.cnt.err[err], 1)
        cnt_add(&ep.errors, 1)
    if err == BF_ERR_NONE and (c.flags & BF_FLAG_NEW_CONN):
        sys_errno = c.tls_f16   # the connection's handshake time (barfast.h), 0 for plain HTTP
    loop_publish(e, intended, c.send_ns, c.first_byte_ns, now, c.bytes_rx, c.bytes_tx, c.id,
                 c.ep, status, err, c.flags, sys_errno,
                 c.connect_us if c.flags & BF_FLAG_NEW_CONN else 0)
    if e.nflows:
        user_result(e, c, err, now)


cdef bint loop_checks_fail(loop_ep_t *ep, const http_resp_t *p, uint16_t status) noexcept nogil:
    """Run the endpoint's checks on a complete response (p's capture holds its final header block
    and the kept body prefix); count each failure. 1 if any failed."""
    cdef uint32_t k, j
    cdef loop_check_t *ck
    cdef bint ok, too_long, bad = 0
    cdef const char *v = NULL
    cdef size_t vlen = 0
    cdef bf_json_value_t jv
    cdef int r, found
    cdef const char *body = p.cap + HTTP_MAX_HEADER_BYTES if p.cap != NULL else NULL
    for k in range(ep.nchecks):
        ck = &ep.checks[k]
        ok = 0
        too_long = 0
        if ck.kind == CHK_STATUS:
            for j in range(ck.nranges):
                if ck.lo[j] <= status <= ck.hi[j]:
                    ok = 1
                    break
        elif p.cap == NULL:
            ok = 0          # not reached: capture is on for every endpoint with such a check
        elif ck.kind == CHK_HEADER:
            found = bf_header_find(p.cap, p.head_len, ck.a, ck.alen, &v, &vlen)
            if ck.mode == CHK_EXISTS:
                ok = found
            elif ck.mode == CHK_ABSENT:
                ok = not found
            elif ck.mode == CHK_EQUALS:
                ok = found and vlen == ck.blen and memcmp(v, ck.b, vlen) == 0
            else:
                ok = found and bf_body_contains(v, vlen, ck.b, ck.blen)
        elif ck.kind == CHK_BODY:
            ok = bf_body_contains(body, p.body_len, ck.b, ck.blen)
            too_long = not ok and p.body_trunc
        else:
            r = bf_json_get(body, p.body_len, ck.a, ck.alen, p.body_trunc, &jv)
            if r == BF_JSON_TRUNCATED:
                too_long = 1
            elif ck.mode == CHK_EXISTS:
                ok = r == BF_JSON_FOUND
            elif ck.mode == CHK_ABSENT:
                ok = r == BF_JSON_MISSING
            else:
                ok = r == BF_JSON_FOUND and bf_json_equals(&jv, ck.b, ck.blen)
        if not ok:
            bad = 1
            cnt_add(&ck.failed, 1)
            if too_long:
                cnt_add(&ck.too_long, 1)
    return bad


cdef inline bint loop_can_start(engine_t *e, uint64_t now) noexcept nogil:
    """A new request (flows: a new iteration) may begin."""
    return (not e.stopping and now < e.end_ns
            and (e.requests == 0 or (e.iters if e.nflows else e.cnt.started) < e.requests))


# ------------------------------------------------------------------ connections

cdef inline void loop_free_push(engine_t *e, conn_t *c) noexcept nogil:
    if not c.in_free:
        c.in_free = 1
        e.free_stack[e.nfree] = c.id
        e.nfree += 1


cdef inline conn_t *loop_free_pop(engine_t *e) noexcept nogil:
    cdef conn_t *c
    while e.nfree:
        e.nfree -= 1
        c = &e.conns[e.free_stack[e.nfree]]
        c.in_free = 0
        if c.state == CONN_IDLE and not c.has_req and (e.nflows == 0 or not e.vus[c.id].active):
            return c
    return NULL


cdef void loop_close(engine_t *e, conn_t *c) noexcept nogil:
    """Drop the slot's socket (close(2) also removes it from the epoll set)."""
    if c.tls_up:
        if not bf_tls_reset(c.ssl):
            c.ssl = NULL
        c.tls_up = 0
    c.tls_hs = 0
    if c.fd >= 0:
        close(c.fd)
        c.fd = -1
        cnt_sub(&e.cnt.conns_open, 1)
    if c.state == CONN_CONNECTING:
        e.n_connecting -= 1
    c.state = CONN_CLOSED
    c.events = 0
    c.rlen = 0


cdef void loop_connect_failed(engine_t *e, conn_t *c, int err, uint64_t now,
                              uint8_t kind=BF_ERR_CONNECT) noexcept nogil:
    """A connect failed (refused, unreachable, timed out, socket() failed; `kind` BF_ERR_TLS: its
    TLS handshake failed): the request it was for fails (closed loop: the slot's; open loop: the
    oldest due one, if any), then the slot retries after a backoff (10 ms doubling to 1 s) so that
    a refused target does not spin."""
    cdef uint64_t t
    loop_close(e, c)
    cnt_add(&e.cnt.connect_failures, 1)
    if e.nflows:
        if not c.has_req:
            user_connect_failed(e, c, now)    # the user's next request (or a new iteration's)
    elif not c.has_req and e.pacing.next_ns <= now:
        # Open loop: the failure takes the oldest due request (keeping its intended time). With
        # none due it fails no request (it still shows in connect_failures), so `requests`
        # bounds started requests exactly in both modes.
        t = e.pacing.next_ns
        pacing_advance(&e.pacing)
        loop_begin(e, c, t, BF_FLAG_OPEN_LOOP)   # after the advance: it may end the schedule
    if c.has_req:
        loop_finish(e, c, kind, err, 0, now)
    c.backoff_ns = LOOP_BACKOFF_MIN_NS if c.backoff_ns == 0 else c.backoff_ns * 2
    if c.backoff_ns > LOOP_BACKOFF_MAX_NS:
        c.backoff_ns = LOOP_BACKOFF_MAX_NS
    c.state = CONN_BACKOFF
    c.deadline_ns = now + c.backoff_ns


cdef int loop_open(engine_t *e, conn_t *c, uint64_t now, bint setup) noexcept nogil:
    """Open a connection on slot c. Closed loop: the connect begins the slot's next request (the
    caller checked loop_can_start). The connect always completes through an EPOLLOUT event (even
    when connect() returns 0 at once), so nothing here recurses into sending. Returns 0, or the
    errno of socket() when `setup` (the initial pool: the caller raises it)."""
    cdef int fd = conn_socket(e.family)
    cdef int r, err
    if fd < 0:
        if setup:
            return -fd
        if not e.open_loop and not c.has_req:
            loop_open_begin(e, c, now)
        c.connect_ns = now
        loop_connect_failed(e, c, -fd, now)
        return 0
    if c.ever_connected:
        cnt_add(&e.cnt.reconnects, 1)
        c.ever_connected = 0   # count each replacement once, however many attempts it takes
    if e.defer_reads and not e.defer_off and bf_rx_stamps_on(fd) != 0:
        e.defer_off = 1        # a socket without stamps: no deferred sleeps from now on
    c.fd = fd
    c.gen += 1
    c.rlen = 0
    c.reqs_on_conn = 0
    c.tls_f16 = 0
    c.connect_ns = now
    c.deadline_ns = now + e.connect_timeout_ns
    cnt_add(&e.cnt.connect_attempts, 1)
    cnt_add(&e.cnt.conns_open, 1)
    if e.cnt.conns_open > e.cnt.conns_peak:
        cnt_add(&e.cnt.conns_peak, 1)
    c.state = CONN_CONNECTING
    e.n_connecting += 1
    if not e.open_loop and not c.has_req:
        loop_open_begin(e, c, now)
    r = connect(fd, <sockaddr *>&e.addr, e.addrlen)
    if r < 0 and errno != EINPROGRESS and errno != EINTR:
        loop_connect_failed(e, c, errno, now)
        return 0
    err = conn_epoll_set(e.epfd, c, EPOLL_CTL_ADD, EPOLLIN | EPOLLOUT, e.trigger)
    if err:
        loop_connect_failed(e, c, err, now)
    return 0


cdef inline void loop_open_begin(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """Closed loop: the connect begins the slot's next request. Not a flow's: its user begins
    (or goes on) once the connection is up (loop_next), so a think or an iteration never starts on
    a connection still being opened; a failed connect fails an active user's next step
    (user_connect_failed)."""
    if not e.nflows:
        loop_begin(e, c, 0, 0)


cdef void loop_reopen(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """A slot without a socket gets a new connection if the run still needs it."""
    if e.nflows and e.vus[c.id].active:
        # a user in the middle of an iteration (thinking, or its request failed) goes on
        if not e.stopping and now < e.end_ns:
            loop_open(e, c, now, 0)
        return
    if e.open_loop:
        # no new connections once the schedule is exhausted: nothing is left for them to carry
        if not e.stopping and now < e.end_ns and e.pacing.next_ns != PACING_END:
            loop_open(e, c, now, 0)
    elif loop_can_start(e, now):
        loop_open(e, c, now, 0)


cdef void loop_fail(engine_t *e, conn_t *c, uint8_t err, int sys_errno, uint64_t now) noexcept nogil:
    """The request on c failed: count it once (no retry), replace the connection."""
    loop_finish(e, c, err, sys_errno, 0, now)
    loop_close(e, c)
    loop_reopen(e, c, now)


# ------------------------------------------------------------------ write side

cdef void loop_send(engine_t *e, conn_t *c) noexcept nogil:
    """Write (the rest of) the slot's request. Write interest stays off unless the socket buffer is
    full: one epoll_ctl to add EPOLLOUT then, one to remove it when the request is out (wrk pays
    both on every request)."""
    cdef ssize_t n
    cdef int err
    if c.send_ns == 0:
        # The first write() attempt of this request (a retry after EAGAIN keeps this stamp).
        c.send_ns = clock_now_ns()   # see "What is timed" above
        if not e.open_loop and c.intended_ns == 0:
            c.intended_ns = c.send_ns   # (a flow's step after a think: its due time)
        if c.reqs_on_conn == 0:
            c.flags |= BF_FLAG_NEW_CONN
        c.reqs_on_conn += 1
        c.state = CONN_BUSY
    while c.wpos < c.req_len:
        if c.tls_up:
            n = loop_tls_send(e, c)
            if n <= 0:
                return          # waiting for EPOLLOUT, or the request failed
        else:
            n = bf_send(c.fd, c.req + c.wpos, c.req_len - c.wpos, MSG_NOSIGNAL)
        if n > 0:
            c.wpos += <size_t>n
            c.bytes_tx += <uint32_t>n
            cnt_add(&e.cnt.bytes_tx, <uint64_t>n)
            continue
        err = errno
        if n < 0 and err == EINTR:
            continue
        if n < 0 and err == EAGAIN:
            if not (c.events & EPOLLOUT):
                err = conn_epoll_set(e.epfd, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT, e.trigger)
                if err:
                    loop_fail(e, c, BF_ERR_WRITE, err, clock_now_ns())
            return
        loop_fail(e, c, BF_ERR_WRITE, err if n < 0 else ECONNRESET, clock_now_ns())
        return
    if c.events & EPOLLOUT:
        conn_epoll_set(e.epfd, c, EPOLL_CTL_MOD, EPOLLIN, e.trigger)


cdef ssize_t loop_tls_send(engine_t *e, conn_t *c) noexcept nogil:
    """One SSL_write_ex of the rest of the request (partial writes on): the bytes taken (> 0), or
    0 when it waits for EPOLLOUT (armed here) or the request failed (dealt with here)."""
    cdef size_t put = 0
    cdef int se = 0, err
    cdef int r = bf_tls_write(c.ssl, c.req + c.wpos, c.req_len - c.wpos, &put, &se)
    if r == BF_TLS_OK:
        return <ssize_t>put
    if r == BF_TLS_WANT_WRITE:
        if not (c.events & EPOLLOUT):
            err = conn_epoll_set(e.epfd, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT, e.trigger)
            if err:
                loop_fail(e, c, BF_ERR_WRITE, err, clock_now_ns())
        return 0
    if r == BF_TLS_SYSCALL or r == BF_TLS_EOF:
        loop_fail(e, c, BF_ERR_WRITE, se if se else ECONNRESET, clock_now_ns())
        return 0
    # a TLS failure, or a write that needs a read first (renegotiation: not offered, TLS >= 1.2
    # peers only send it when asked)
    loop_tls_note(e, c)
    loop_fail(e, c, BF_ERR_TLS, 0, clock_now_ns())
    return 0


cdef inline void loop_send_scheduled(engine_t *e, conn_t *c) noexcept nogil:
    """Open loop: the next schedule entry goes out on idle slot c, keeping its intended time."""
    cdef uint64_t t = e.pacing.next_ns
    pacing_advance(&e.pacing)
    e.last_intended = t
    if e.nflows:
        user_scheduled(e, c, t)     # the entry is a new iteration of a flow
        return
    loop_begin(e, c, t, BF_FLAG_OPEN_LOOP)
    loop_send(e, c)


cdef void loop_next(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """Slot c is connected and idle: give it work at once, in the same handler (no epoll round)."""
    c.state = CONN_IDLE
    if e.nflows:
        user_idle(e, c, now)
        return
    if e.open_loop:
        if e.pacing.next_ns <= now and not e.stopping:
            loop_send_scheduled(e, c)
        else:
            loop_free_push(e, c)
    elif c.has_req:
        loop_send(e, c)                 # the request begun by the connect
    elif loop_can_start(e, now):
        loop_begin(e, c, 0, 0)
        loop_send(e, c)


cdef void loop_dispatch(engine_t *e, uint64_t now) noexcept nogil:
    """Open loop: send every due schedule entry that has a free connection, in one pass (no timer
    syscall per request); grow the pool toward max_conns when entries are due and none is free."""
    cdef conn_t *c
    while e.pacing.next_ns <= now:
        c = loop_free_pop(e)
        if c == NULL:
            break
        loop_send_scheduled(e, c)
    # Not while a deferred sleep's arrivals are still unread: they may free a connection.
    if (e.pacing.next_ns <= now and e.nfree == 0 and e.n_connecting == 0
            and e.nslots < e.max_conns and not e.stopping and not e.collect_pending):
        c = &e.conns[e.nslots]
        e.nslots += 1
        loop_open(e, c, now, 0)


# ------------------------------------------------------------------ read side

cdef void loop_complete(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """The parser finished the response: count it, then keep the connection busy or replace it."""
    cdef bint keep = (c.parser.keep_alive and c.wpos == c.req_len and c.rlen == 0)
    # Left-over bytes after a complete response were never asked for (no pipelining): the stream
    # can't be trusted to be in sync, so the connection is closed (RFC 9112 §9.3 ties a response to
    # the request it answers, in order).
    if c.parser.interim_count:
        c.flags |= BF_FLAG_INTERIM
    if not keep:
        c.flags |= BF_FLAG_CONN_CLOSE
    loop_finish(e, c, BF_ERR_NONE, 0, <uint16_t>c.parser.status, now)
    if keep:
        loop_next(e, c, now)
    else:
        # `Connection: close` or HTTP/1.0 (RFC 9112 §9.6): the request is complete; open a new
        # connection (counted in reconnects).
        loop_close(e, c)
        loop_reopen(e, c, now)


cdef bint loop_parse(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """Feed rbuf to the parser. Returns 1 when the request ended (completed or failed) and the slot
    was dealt with, 0 when more bytes are needed."""
    cdef Py_ssize_t used
    while True:
        used = http_resp_feed_memo(&c.parser, &e.memo if e.memo_on else NULL, c.rbuf, c.rlen)
        if used > 0:
            c.rlen -= <size_t>used
            if c.rlen:
                memmove(c.rbuf, c.rbuf + used, c.rlen)
        if c.parser.state == HTTP_DONE:
            loop_complete(e, c, now)
            return 1
        if c.parser.state == HTTP_ERROR:
            loop_fail(e, c, BF_ERR_PARSE, 0, now)
            return 1
        if used <= 0 or c.rlen == 0:
            return 0


cdef void loop_on_eof(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    if not c.has_req:
        # An idle keep-alive connection closed by the server (its keepalive_timeout, a restart):
        # not a request failure; replace it.
        loop_close(e, c)
        loop_reopen(e, c, now)
    elif c.first_byte_ns and http_resp_eof(&c.parser) == 1:
        # A close-delimited body ends at EOF (RFC 9112 §6.3 item 8).
        c.parser.keep_alive = 0
        loop_complete(e, c, now)
    else:
        # Closed before the response was complete, including before its first byte on a reused
        # keep-alive connection: counted as `closed`, never retried (a retry would hide the
        # failure and skew the count the server saw).
        loop_fail(e, c, BF_ERR_CLOSED, 0, now)


cdef uint64_t loop_rx_time(engine_t *e, conn_t *c, uint64_t now, long long rx_real) noexcept nogil:
    """The time the bytes just read arrived, from their kernel receive stamp (CLOCK_REALTIME):
    the stamp less the wall clock's offset from CLOCK_MONOTONIC, read now as a tight pair (two
    monotonic readings around the wall-clock one, retried if preempted in between). A result
    outside [the request's send, now] is impossible (a wall-clock step between arrival and read):
    then the read's own time is used, which can only overstate the latency, and it is counted."""
    cdef uint64_t m1, m2, real, t
    cdef long long off
    cdef int tries
    if rx_real <= 0:
        e.rx_unstamped += 1
        if e.stamps_seen or e.rx_unstamped >= LOOP_STAMP_TRIES:
            e.defer_off = 1    # stamps went missing, or never came: stop deferring
        return now
    e.stamps_seen = 1
    for tries in range(4):
        m1 = clock_now_ns()
        real = clock_real_ns()
        m2 = clock_now_ns()
        if m2 - m1 < 2000:
            break
    off = <long long>real - <long long>(m1 + (m2 - m1) // 2)
    t = <uint64_t>(rx_real - off)
    if t > now or (c.has_req and t < c.send_ns):
        e.rx_stamp_bad += 1
        return now
    e.rx_stamped += 1
    return t


cdef void loop_rearm(engine_t *e, conn_t *c, int fd, uint32_t gen) noexcept nogil:
    """Edge-triggered epoll: the read loop stopped before a short read showed the socket drained
    (its per-event bound, a response that ended exactly at the end of a full buffer, or one that
    ended with the peer's FIN or an error already queued behind it), so no new edge may come for
    what is already waiting. A MOD re-polls the socket and queues the event again if anything
    is. Nothing to do if the slot's socket changed meanwhile."""
    cdef int err
    if not e.trigger or c.fd != fd or c.gen != gen:
        return
    err = conn_epoll_set(e.epfd, c, EPOLL_CTL_MOD, c.events, e.trigger)
    if err:
        if c.has_req:
            loop_fail(e, c, BF_ERR_READ, err, clock_now_ns())
        else:
            loop_close(e, c)
            loop_reopen(e, c, clock_now_ns())


cdef void loop_on_readable_tls(engine_t *e, conn_t *c) noexcept nogil:
    """loop_on_readable for a TLS connection. TLS connections are level-triggered with OpenSSL's
    read-ahead on: one SSL_read_ex takes what the socket has (one recv), and reading goes on only
    while OpenSSL holds bytes it has not returned yet (SSL_has_pending); anything still in the
    socket raises the next event, so no read ends in EAGAIN (wrk reads TLS the same way)."""
    cdef size_t got = 0, space
    cdef int r, se
    cdef uint64_t now
    while True:
        space = CONN_RBUF_SIZE - c.rlen
        se = 0
        r = bf_tls_read(c.ssl, c.rbuf + c.rlen, space, &got, &se)
        if r == BF_TLS_OK:
            now = clock_now_ns()   # first_byte_ns and/or done_ns (see "What is timed")
            cnt_add(&e.cnt.bytes_rx, <uint64_t>got)
            if not c.has_req:
                loop_close(e, c)   # bytes nobody asked for: the server is out of sync
                loop_reopen(e, c, now)
                return
            if c.first_byte_ns == 0:
                c.first_byte_ns = now
            c.bytes_rx += <uint32_t>got
            c.rlen += got
            if loop_parse(e, c, now):
                return
            if c.rlen >= CONN_RBUF_SIZE:
                loop_fail(e, c, BF_ERR_PARSE, 0, now)
                return
            if not SSL_has_pending(c.ssl):
                return
            continue
        if r == BF_TLS_WANT_READ:
            return
        now = clock_now_ns()
        if r == BF_TLS_EOF:
            loop_on_eof(e, c, now)
            return
        if r == BF_TLS_SYSCALL:
            if c.has_req:
                loop_fail(e, c, BF_ERR_READ, se, now)
            else:
                loop_close(e, c)
                loop_reopen(e, c, now)
            return
        loop_tls_note(e, c)        # an alert, a bad record, or a read that needs a write
        if c.has_req:
            loop_fail(e, c, BF_ERR_TLS, 0, now)
        else:
            loop_close(e, c)
            loop_reopen(e, c, now)
        return


cdef void loop_on_readable(engine_t *e, conn_t *c, uint32_t events) noexcept nogil:
    """Read what the socket has and feed it to the parser. It reads until a short read (the socket
    is drained: with EPOLLET any later byte, or a FIN, raises a new edge) or LOOP_READS_PER_EVENT
    reads. A short read is not the end when the event said the peer has shut down or the socket
    has an error (EPOLLRDHUP/HUP/ERR): then the FIN or the error sits behind the bytes already
    read and no new edge will come for it, so reading goes on until it returns 0, an error or
    EAGAIN."""
    cdef bint to_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0
    cdef ssize_t n
    cdef size_t space
    cdef int err, reads = 0
    cdef uint64_t now
    cdef long long rx_real = 0
    cdef bint stamped
    cdef int fd = c.fd
    cdef uint32_t gen = c.gen
    if c.tls_up:
        loop_on_readable_tls(e, c)
        return
    while True:
        space = CONN_RBUF_SIZE - c.rlen
        # Stamped reads: after a deferred sleep, and while waiting for the first stamp to show
        # that the kernel stamps this run's sockets.
        stamped = e.stamp_reads or (e.defer_reads and not e.defer_off and not e.stamps_seen)
        if stamped:
            n = bf_recv_stamped(c.fd, c.rbuf + c.rlen, space, &rx_real)
        else:
            n = bf_read(c.fd, c.rbuf + c.rlen, space)
        if n > 0:
            now = clock_now_ns()   # first_byte_ns and/or done_ns (see "What is timed")
            if stamped:
                now = loop_rx_time(e, c, now, rx_real)
            if <size_t>n == space and e.defer_reads:
                e.defer_off = 1    # a body that fills the buffer: never leave one waiting
            cnt_add(&e.cnt.bytes_rx, <uint64_t>n)
            if not c.has_req:
                # Bytes nobody asked for on an idle connection: the server is out of sync.
                loop_close(e, c)
                loop_reopen(e, c, now)
                return
            if c.first_byte_ns == 0:
                c.first_byte_ns = now
            c.bytes_rx += <uint32_t>n
            c.rlen += <size_t>n
            if loop_parse(e, c, now):
                if <size_t>n == space or to_end:
                    loop_rearm(e, c, fd, gen)   # more, or the FIN, may wait behind this read
                return
            if c.rlen >= CONN_RBUF_SIZE:
                # A header block that does not fit the buffer (the parser's limit is smaller, so
                # this is only a backstop).
                loop_fail(e, c, BF_ERR_PARSE, 0, now)
                return
            # A short read means the socket is drained: don't pay a read() that returns EAGAIN.
            # Anything that arrives later is a new edge.
            if <size_t>n < space and not to_end:
                return
            reads += 1
            if reads >= LOOP_READS_PER_EVENT:
                loop_rearm(e, c, fd, gen)
                return
            continue
        if n == 0:
            loop_on_eof(e, c, clock_now_ns())
            return
        err = errno
        if err == EINTR:
            continue
        if err == EAGAIN:
            return
        now = clock_now_ns()
        if c.has_req:
            loop_fail(e, c, BF_ERR_READ, err, now)
        else:
            loop_close(e, c)
            loop_reopen(e, c, now)
        return


cdef void loop_connected(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """The connection is usable (TCP established, and TLS done for https): count it, read only,
    and give it work."""
    cdef int err
    e.n_connecting -= 1
    c.state = CONN_IDLE
    c.ever_connected = 1
    c.backoff_ns = 0
    cnt_add(&e.cnt.connects, 1)
    err = conn_epoll_set(e.epfd, c, EPOLL_CTL_MOD, EPOLLIN, e.trigger)
    if err:
        if not c.has_req:
            loop_begin(e, c, now, 0)
        loop_fail(e, c, BF_ERR_CONNECT, err, now)
        return
    loop_next(e, c, now)


cdef void loop_tls_why(engine_t *e, const char *text) noexcept nogil:
    """Count one TLS failure under its reason (TLS_WHYS distinct ones; then `other`), and keep
    the first one's text apart for the one-line error."""
    cdef int i
    if not e.tls_noted:
        snprintf(e.tls_reason, TLS_REASON_MAX, "%s", text)
        e.tls_noted = 1
    for i in range(TLS_WHYS):
        if e.tls_whys[i].n == 0:
            snprintf(e.tls_whys[i].text, TLS_REASON_MAX, "%s", text)
            bf_store_relaxed_u64(&e.tls_whys[i].n, 1)
            return
        if strncmp(e.tls_whys[i].text, text, TLS_REASON_MAX) == 0:
            bf_store_relaxed_u64(&e.tls_whys[i].n, e.tls_whys[i].n + 1)
            return
    bf_store_relaxed_u64(&e.tls_whys_other, e.tls_whys_other + 1)


cdef void loop_tls_note(engine_t *e, conn_t *c) noexcept nogil:
    """A TLS failure on c (OpenSSL's error queue holds it): count its reason, drain the queue."""
    cdef char why[TLS_REASON_MAX]
    if not e.tls_noted:
        e.tls_verify = bf_tls_verify_code(c.ssl) if c.ssl != NULL else 0
    bf_tls_reason(c.ssl, why, TLS_REASON_MAX)
    loop_tls_why(e, why)


cdef void loop_tls_begin(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """TCP is up on an https connection: start the TLS handshake (the connect deadline still
    runs: a handshake that never ends fails as a TLS timeout)."""
    c.ssl = bf_tls_new(c.ssl, e.ssl_ctx, c.fd, e.tls_sni, e.tls_host, e.tls_host_ip, &c.sess)
    if c.ssl == NULL:
        loop_connect_failed(e, c, ENOMEM, now, BF_ERR_TLS)
        return
    c.tls_up = 1
    c.tls_hs = 1
    c.tls_ns = now
    loop_tls_step(e, c, now)


cdef void loop_tls_step(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """Drive the handshake one step: done -> connected; wants the socket readable or writable ->
    that interest (write interest only while the handshake needs it); else it failed."""
    cdef int se = 0, err = 0
    cdef uint32_t want
    cdef int r = bf_tls_handshake(c.ssl, &se)
    if r == BF_TLS_OK:
        c.tls_hs = 0
        c.tls_f16 = conn_f16_us(now - c.tls_ns)
        if SSL_session_reused(c.ssl):
            cnt_add(&e.cnt.tls_resumed, 1)
        else:
            cnt_add(&e.cnt.tls_full, 1)
        loop_connected(e, c, now)
        return
    if r == BF_TLS_WANT_READ or r == BF_TLS_WANT_WRITE:
        want = EPOLLIN | EPOLLOUT if r == BF_TLS_WANT_WRITE else EPOLLIN
        if c.events != want:
            err = conn_epoll_set(e.epfd, c, EPOLL_CTL_MOD, want, e.trigger)
        if err:
            loop_connect_failed(e, c, err, now, BF_ERR_TLS)
        return
    if r == BF_TLS_FAIL:
        loop_tls_note(e, c)
    elif r == BF_TLS_SYSCALL:   # the peer closed or reset the connection mid-handshake
        loop_tls_why(e, "connection reset during the TLS handshake")
    else:
        loop_tls_why(e, "connection closed during the TLS handshake")
    loop_connect_failed(e, c, se if r == BF_TLS_SYSCALL else 0, now, BF_ERR_TLS)


cdef void loop_on_event(engine_t *e, conn_t *c, uint32_t events) noexcept nogil:
    cdef int err, fd
    cdef uint64_t now
    if c.state == CONN_CONNECTING:
        if c.tls_hs:
            loop_tls_step(e, c, clock_now_ns())
        elif events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
            now = clock_now_ns()
            err = conn_connect_result(c)
            if err == 0 and (events & (EPOLLERR | EPOLLHUP)):
                err = ECONNRESET
            if err:
                loop_connect_failed(e, c, err, now)
                return
            c.connect_us = conn_us_up(now - c.connect_ns)
            if e.ssl_ctx != NULL:
                loop_tls_begin(e, c, now)
            else:
                loop_connected(e, c, now)
        return
    fd = c.fd
    if (events & EPOLLOUT) and c.state == CONN_BUSY and c.wpos < c.req_len:
        loop_send(e, c)
        if c.fd != fd:
            return
    if events & (EPOLLIN | EPOLLERR | EPOLLHUP):
        loop_on_readable(e, c, events)


cdef inline void loop_count_failed(engine_t *e, uint8_t err, bint started,
                                   uint64_t m) noexcept nogil:
    """Count m failed schedule entries as `err` (and as started, when a send was due for them)."""
    if started:
        cnt_add(&e.cnt.started, m)
    cnt_add(&e.cnt.errors, m)
    cnt_add(&e.cnt.err[err], m)


cdef void loop_fail_backlog(engine_t *e, uint64_t through, uint8_t err, bint started,
                            uint64_t now) noexcept nogil:
    """Open loop: fail every schedule entry due at or before `through` that no connection took, as
    `err`, counting it as started or not. The first LOOP_BACKLOG_WALK of a pass get a sample each;
    the rest are counted in bulk (pacing_skip_through, no sample: counted in cnt.bulk_failed and
    shown by the report). A rate far beyond the pool's reach (-R 1e9 against one connection) then
    costs one jump per pass, not one step per entry: the end of the run stays prompt."""
    cdef uint64_t t = e.pacing.next_ns, n = 0, m
    cdef uint32_t i
    while t != PACING_END and t <= through:
        if n == LOOP_BACKLOG_WALK:
            m = pacing_skip_through(&e.pacing, through)
            loop_count_failed(e, err, started, m)
            cnt_add(&e.cnt.bulk_failed, m)
            if e.nflows:
                cnt_add(&e.iters_bulk_failed, m)
            return
        loop_count_failed(e, err, started, 1)
        # Each failed entry is one request of the mix: it gets an endpoint by weight as if it had
        # begun (the bulk-counted rest above has none: the report shows them apart). Flows: an
        # iteration of a flow picked by weight, failed at its first request.
        i = user_backlog_failed(e) if e.nflows else loop_pick(e)
        cnt_add(&e.eps[i].errors, 1)
        if started:
            cnt_add(&e.eps[i].started, 1)
        loop_publish(e, t, 0, 0, now, 0, 0, 0xFFFFFFFFU, <uint16_t>i, 0, err, BF_FLAG_OPEN_LOOP, 0)
        pacing_advance(&e.pacing)
        t = e.pacing.next_ns
        n += 1


cdef void loop_expire_backlog(engine_t *e, uint64_t now) noexcept nogil:
    """Open loop: a schedule entry that has waited for a connection longer than the request
    timeout fails as a timeout (send_ns 0), so that a target nobody can connect to still lets a
    count-bounded run (-n with a rate, no duration) finish instead of waiting for connect retries
    to fail each entry one by one."""
    if now >= e.timeout_ns:
        loop_fail_backlog(e, now - e.timeout_ns, BF_ERR_TIMEOUT, 1, now)


cdef void loop_scan(engine_t *e, uint64_t now) noexcept nogil:
    """Connect and request timeouts, backoff expiries (every LOOP_SCAN_NS)."""
    cdef uint32_t i
    cdef conn_t *c
    loop_sched_check(e)
    if e.open_loop:
        loop_expire_backlog(e, now)
    for i in range(e.nslots):
        c = &e.conns[i]
        if c.state == CONN_CONNECTING:
            if now >= c.deadline_ns:
                if c.tls_hs:
                    loop_tls_why(e, "TLS handshake timed out")
                loop_connect_failed(e, c, ETIMEDOUT, now, BF_ERR_TLS if c.tls_hs else BF_ERR_CONNECT)
        elif c.state == CONN_BUSY:
            if c.send_ns and now > c.send_ns and now - c.send_ns >= e.timeout_ns:
                # No complete response within the request timeout: the connection is closed and
                # replaced (a late response must not be taken for the next request's).
                loop_fail(e, c, BF_ERR_TIMEOUT, 0, now)
        elif c.state == CONN_BACKOFF:
            if now >= c.deadline_ns:
                c.state = CONN_CLOSED
                loop_reopen(e, c, now)


# ------------------------------------------------------------------ the loop

cdef inline void loop_spin_learn(engine_t *e, uint64_t woke, uint64_t target) noexcept nogil:
    """A timed pacing sleep ended by its timeout at `woke` for `target`: learn its lateness."""
    cdef uint64_t late = woke - target if woke > target else 0
    cdef uint64_t m = e.spin_ns
    e.pace_sleeps += 1
    e.pace_late_sum += late
    if not e.spin_auto:
        return
    # `late` is past the wake target (send time - m): the send itself was late by late - m. A send
    # up to lag_allow_ns late counts as on time, so the window settles at the wake-up lateness's
    # p99 minus the allowance, and no spin is spent on precision the lag target does not need.
    if late > m + e.lag_allow_ns:
        m += e.spin_up_ns
    elif m > LOOP_SPIN_DOWN_NS:
        m -= LOOP_SPIN_DOWN_NS
    if m < LOOP_SPIN_MIN_NS:
        m = LOOP_SPIN_MIN_NS
    elif m > LOOP_SPIN_MAX_NS:
        m = LOOP_SPIN_MAX_NS
    e.spin_ns = m


cdef void loop_sched_check(engine_t *e) noexcept nogil:
    """Once per scan: add the loop thread's run-queue wait since the last scan to its counter (the
    report's cpu_wait_s: time the engine was runnable while another task held its CPU)."""
    cdef long long w = bf_schedstat_wait_ns(e.sched_fd)
    if w >= 0 and e.sched_wait >= 0 and w >= e.sched_wait:
        cnt_add(&e.cnt.runq_wait_ns, <uint64_t>(w - e.sched_wait))
    e.sched_wait = w


cdef inline bint loop_stamps_usable(engine_t *e) noexcept nogil:
    """Reads may be timed by receive stamps: on, seen on this run's sockets, not given up."""
    return e.defer_reads and e.stamps_seen and not e.defer_off


cdef inline bint loop_may_defer(engine_t *e) noexcept nogil:
    return (loop_stamps_usable(e) and e.n_connecting == 0
            and e.max_req_len <= LOOP_DEFER_MAX_BYTES)


cdef int loop_wait(engine_t *e, uint64_t now, uint64_t until, bint pacing_wait) noexcept nogil:
    """Wait for events until `until` (ns). Pacing waits sleep until spin_ns before the intended
    time, then poll with a zero timeout (the spin) until it is due."""
    cdef uint64_t delta
    cdef timespec ts
    cdef int n
    cdef bint deferred
    cdef bint nap = 0
    if e.collect_pending:
        e.collect_pending = 0
        e.stamp_reads = 1
        return bf_epoll_wait(e.epfd, e.events, LOOP_MAX_EVENTS, 0)
    if pacing_wait:
        # The caller's `now` predates this pass's sends (a few µs each): a relative timeout from it
        # would wake that much late, every time.
        now = clock_now_ns()
    if until <= now:
        return bf_epoll_wait(e.epfd, e.events, LOOP_MAX_EVENTS, 0)
    if e.nap.on and not e.no_pwait2 and loop_may_defer(e):   # nap.on: closed loops only
        # Closed-loop nap (nap.pxi decides when): poll; only if nothing is ready, sleep at most
        # nap_ns as a deferred sleep does (below): on the empty set, a timer wake-up on this CPU,
        # never one from the server's, and the next wait collects what arrived.
        n = bf_epoll_wait(e.epfd, e.events, LOOP_MAX_EVENTS, 0)
        if n != 0:
            return n
        nap = 1
    delta = until - now
    if nap and delta > e.nap.nap_ns:
        delta = e.nap.nap_ns
    if pacing_wait:
        if delta > e.spin_ns:
            delta -= e.spin_ns        # sleep until the window, then spin (or sleep) the rest
        elif until - e.last_intended >= e.spin_gap_factor * e.spin_ns:
            n = bf_epoll_wait(e.epfd, e.events, LOOP_MAX_EVENTS, 0)   # the spin: poll to the send
            if n == 0:
                cnt_add(&e.cnt.spin_ns, clock_now_ns() - now)
            return n
        # else: a gap shorter than the factor allows (a high rate): sleep until the send itself
    if not e.no_pwait2:
        # ns timeout: a wait for the scan or the deadline must not overshoot a send that becomes
        # due meanwhile (epoll_wait's int ms timeout rounds up by up to 1 ms).
        clock_ns_to_timespec(delta, &ts)
        # A deferred sleep (LOOP_DEFER_MAX_BYTES) waits on the empty set: only the timer ends it.
        deferred = nap or (pacing_wait and loop_may_defer(e))
        n = bf_epoll_pwait2(e.idle_epfd if deferred else e.epfd, e.events, LOOP_MAX_EVENTS, &ts)
        if n == 0 and pacing_wait:
            loop_spin_learn(e, clock_now_ns(), now + delta)
        if n == 0 and deferred:
            # The next wait collects what arrived meanwhile (read with its receive stamps), after
            # the caller's pass has sent what is due: the stamps keep those reads exact, so they
            # need not delay the sends.
            if nap:
                e.naps += 1
            else:
                e.defer_sleeps += 1
            e.collect_pending = 1
        if n >= 0 or errno != ENOSYS:   # kernel < 5.11: fall back to ms waits
            return n
        e.no_pwait2 = 1
    return bf_epoll_wait(e.epfd, e.events, LOOP_MAX_EVENTS, <int>((delta + 999999) // 1000000))


cdef int loop_ramp(engine_t *e, uint64_t now, bint setup) noexcept nogil:
    """Open the next LOOP_OPEN_BATCH slots of the initial pool; the loop calls it once per pass
    until the pool is open (both loops; the open loop's first batch opens before t0).
    connect() itself gets slow when ~10^4 connections share one destination (the kernel searches the
    ephemeral ports for a free 4-tuple: 15,000 connections took over a second here), and a pool
    opened in one go carried no load until the last connect: a 1 s run with -c 15000 completed
    nothing, and an open loop with -R 10000 -c 15000 began its schedule ~0.9 s late (send-lag p99
    830 ms). In batches (LOOP_OPEN_BATCH slots or LOOP_OPEN_SLICE_NS, whichever ends first), the
    first connections work while the rest open, and the run still ends on time. Returns socket()'s
    errno when `setup` (the first batch: run() raises it, nothing has run yet), else 0: in later
    batches a failing socket() counts as a connect error on its slot and is retried with backoff, as
    when a connection is replaced (Engine() raised the descriptor limit for the whole pool
    beforehand, so that takes ENFILE or descriptors taken by something else in the process)."""
    cdef uint32_t end = e.ramp_next + LOOP_OPEN_BATCH
    cdef uint64_t t_end = now + LOOP_OPEN_SLICE_NS
    cdef uint32_t first = e.ramp_next
    cdef int err
    if end > e.nconns:
        end = e.nconns
    if e.open_loop and not setup and e.pacing.next_ns < t_end:
        t_end = e.pacing.next_ns       # an open loop's next send comes first (at least one open)
    if e.theap_n and e.vus[e.theap[0]].due_ns < t_end:
        t_end = e.vus[e.theap[0]].due_ns    # and so does a flow's user whose think ends
    while e.ramp_next < end:
        if e.ramp_next > first:
            now = clock_now_ns()       # ~20 ns, against µs for a connect()
            if now >= t_end:
                break
        if not loop_can_start(e, now) or bf_load_acquire_int(&e.stop_flag):
            e.ramp_next = e.nconns      # no more requests wanted: the rest stay closed
            break
        err = loop_open(e, &e.conns[e.ramp_next], now, setup)
        e.ramp_next += 1
        if err:
            return err
    if e.ramp_next >= e.nconns:
        e.ramp_done_ns = clock_now_ns()
        e.ramp_completed = e.cnt.completed
        if not setup:
            nap_warm_from(&e.nap, e.ramp_done_ns)   # (the first batch precedes nap_start)
    return 0


cdef bint loop_done(engine_t *e, uint64_t now) noexcept nogil:
    if bf_load_acquire_int(&e.stop_flag) or now >= e.end_ns:
        return 1
    if e.open_loop:
        return e.pacing.next_ns == PACING_END and e.cnt.in_flight == 0 and e.vus_active == 0
    if e.nflows:
        return e.requests != 0 and e.iters >= e.requests and e.vus_active == 0
    return e.requests != 0 and e.cnt.started >= e.requests and e.cnt.in_flight == 0


cdef int loop_run(engine_t *e) noexcept nogil:
    """The whole run. Returns 0, or an errno when the initial connections could not even be
    created (socket() failing: EMFILE, ENFILE, ENOBUFS...) so that run() raises it: the pool's
    first batch (loop_ramp)."""
    cdef uint64_t now = clock_now_ns(), next_scan, until
    cdef uint32_t i
    cdef int n, j, err = 0
    cdef uint64_t key
    cdef conn_t *c
    cdef bint pacing_wait
    cdef unsigned long old_slack = 0
    e.t0_ns = e.start_ns if e.start_ns > now else now
    e.end_ns = e.t0_ns + e.duration_ns if e.duration_ns else PACING_END
    e.nslots = e.nconns
    e.ramp_next = 0
    if e.open_loop:
        # 1 ns timer slack for this thread: the default 50 µs slack lets the kernel defer our
        # wake-ups to coalesce timers (prctl(2) PR_SET_TIMERSLACK).
        old_slack = <unsigned long>prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
        prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        pacing_start(&e.pacing, e.t0_ns, e.end_ns)
        # Connect the pool's first batch before t0, so the first intended sends find
        # connections; the loop opens the rest (loop_ramp).
        err = loop_ramp(e, now, 1)
        if not err:
            clock_sleep_until(e.t0_ns, &e.stop_flag)
    else:
        clock_sleep_until(e.t0_ns, &e.stop_flag)
        now = clock_now_ns()
        err = loop_ramp(e, now, 1)     # the first batch; the loop opens the rest
    if err:
        # The machine refused resources before any load: undo (no request had begun on a slot
        # whose socket() failed) and report it as a setup failure.
        e.stopping = 1
        for i in range(e.nslots):
            loop_close(e, &e.conns[i])
        if e.open_loop:
            prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0)
        return err
    # The run-queue wait counts from here (t0): schedstat of this thread, read at every scan.
    e.sched_fd = bf_schedstat_open()
    e.sched_wait = bf_schedstat_wait_ns(e.sched_fd)
    next_scan = clock_now_ns() + LOOP_SCAN_NS
    nap_start(&e.nap, e.t0_ns)
    while True:
        now = clock_now_ns()
        if e.ramp_next < e.nconns:
            loop_ramp(e, now, 0)
        if e.theap_n:
            user_wake(e, now)           # thinking users whose pause is over
        if e.open_loop:
            loop_dispatch(e, now)
        elif now >= e.nap.next_ns and e.ramp_next >= e.nconns:
            nap_step(&e.nap, now, e.cnt.completed + e.cnt.errors,
                     loop_stamps_usable(e) and not e.no_pwait2)
        if loop_done(e, now):
            break
        if now >= next_scan:
            loop_scan(e, now)
            next_scan = now + LOOP_SCAN_NS
        until = next_scan
        if e.end_ns < until:
            until = e.end_ns
        if now + LOOP_MAX_WAIT_NS < until:
            until = now + LOOP_MAX_WAIT_NS
        if e.ramp_next < e.nconns:
            until = now                 # still opening the pool: poll, then open the next batch
        pacing_wait = 0
        if e.open_loop and e.pacing.next_ns <= until and (
                e.nfree > 0 or (e.n_connecting == 0 and e.nslots < e.max_conns)):
            if e.coalesce_ns:
                # benchmark knob: no spin, wake once per window after the first due send
                if e.pacing.next_ns + e.coalesce_ns < until:
                    until = e.pacing.next_ns + e.coalesce_ns
            else:
                until = e.pacing.next_ns
                pacing_wait = 1
        if e.theap_n and e.vus[e.theap[0]].due_ns < until:
            # A think ends first. A plain timed wait, no pacing spin: the send-lag line for steps
            # after a think is 1 ms, which the timer's wake-up lateness is well within, and the
            # spin doubled the CPU of 10,000 thinking users (benchmarks/README.md, Flows).
            until = e.vus[e.theap[0]].due_ns
        n = loop_wait(e, now, until, pacing_wait)
        for j in range(n):
            key = e.events[j].data.u64
            c = &e.conns[<uint32_t>(key & 0xFFFFFFFFULL)]
            if c.fd < 0 or c.gen != <uint32_t>(key >> 32):
                continue   # the socket this event was for is gone
            loop_on_event(e, c, e.events[j].events)
        e.stamp_reads = 0
    # The end. In-flight requests stay counted as in_flight (no sample: they did not finish).
    e.stopping = 1
    now = clock_now_ns()
    nap_set(&e.nap, 0, now)
    if e.open_loop:
        # Scheduled but never sent (no free connection before the end): counted and published,
        # never silently forgotten. The schedule is already cut at the deadline; after stop() only
        # entries that were due by now count.
        loop_fail_backlog(e, now, BF_ERR_NOT_SENT, 0, now)
        prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0)
    for i in range(e.nslots):
        loop_close(e, &e.conns[i])
    loop_sched_check(e)
    if e.sched_fd >= 0:
        close(e.sched_fd)
        e.sched_fd = -1
    return 0


# ------------------------------------------------------------------ Python surface

_ERROR_KEYS = ("none", "connect", "timeout", "read", "write", "parse", "closed", "not_sent", "tls")
# bf_flow.h BF_CAP_* results, by value
_CAPTURE_FAILURES = ("ok", "missing", "too_long", "bad_bytes", "truncated")


def _alias_table(weights):
    """Vose's alias method over `weights`: per column (keep, alias), keep scaled to 2^32. Exact up
    to the 2^-32 rounding of each column's keep probability."""
    cdef Py_ssize_t n = len(weights)
    total = float(sum(weights))
    scaled = [w * n / total for w in weights]
    keep = [1 << 32] * n
    alias = list(range(n))
    small = [i for i, p in enumerate(scaled) if p < 1.0]
    large = [i for i, p in enumerate(scaled) if p >= 1.0]
    while small and large:
        s = small.pop()
        g = large.pop()
        keep[s] = min(1 << 32, int(round(scaled[s] * (1 << 32))))
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    return list(zip(keep, alias))


def alias_table(weights) -> list:
    """Test hook: the engine's alias table for these weights, [(keep / 2^32, alias), ...]."""
    return [(k / float(1 << 32), a) for k, a in _alias_table([float(w) for w in weights])]


cdef class Engine:
    """One HTTP/1.1 load engine: one epoll loop over `connections` keep-alive connections, closed
    loop or (rate/stages) open loop. See _core.pyi for the full contract."""

    cdef engine_t *e
    cdef object _ring
    cdef bytes _request
    cdef list _requests       # the endpoints' request bytes (their buffers are read nogil)
    cdef list _data           # template blobs and ops, feeder arenas and offsets (read nogil)
    cdef bytes _tls_sni       # https: the strings the engine's tls_sni/tls_host point into
    cdef bytes _tls_host
    cdef bint _ran

    def __cinit__(self):
        self.e = NULL

    def __init__(self, ring, *, str addr, int port, int family, bytes request, bint head,
                 int connections, int max_connections=0, uint64_t requests=0,
                 uint64_t duration_ns=0, uint64_t timeout_ns, uint64_t connect_timeout_ns,
                 double rate=0.0, stages=(), int arrival=0, uint64_t seed=0,
                 uint64_t start_ns=0, endpoints=None, feeders=(), uint64_t seq_start=0,
                 uint64_t seq_step=1, uint32_t max_body=65536, str unix_path="", tls=None,
                 flows=(), uint32_t nvars=0):
        cdef engine_t *e
        cdef int rc
        cdef bytes a
        cdef uint32_t i, n, k
        if self.e != NULL:
            raise RuntimeError("Engine.__init__ called twice")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if not request:
            raise ValueError("request must not be empty")
        if unix_path:
            family = AF_UNIX
        if family not in (AF_INET, AF_INET6, AF_UNIX):
            raise ValueError(f"unsupported address family {family}")
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        if timeout_ns == 0 or connect_timeout_ns == 0:
            raise ValueError("timeouts must be positive")
        if arrival not in (PACING_ARRIVAL_CONSTANT, PACING_ARRIVAL_POISSON):
            raise ValueError(f"bad arrival {arrival}")
        if max_connections < connections:
            max_connections = connections
        e = <engine_t *>calloc(1, sizeof(engine_t))
        if e == NULL:
            raise MemoryError()
        self.e = e
        e.epfd = -1
        e.idle_epfd = -1
        e.family = family
        a = addr.encode("ascii")
        rc = 1
        if family == AF_UNIX:
            a = unix_path.encode()
            if len(a) >= sizeof(e.addr.un.sun_path) or b"\0" in a:
                raise ValueError(f"unix socket path: at most {sizeof(e.addr.un.sun_path) - 1} "
                                 f"bytes, no NUL ({unix_path!r})")
            e.addr.un.sun_family = AF_UNIX
            memcpy(e.addr.un.sun_path, <const char *>a, len(a))
            e.addrlen = sizeof(sockaddr_un)
        elif family == AF_INET:
            e.addr.v4.sin_family = AF_INET
            e.addr.v4.sin_port = htons(<uint16_t>port)
            rc = inet_pton(AF_INET, a, &e.addr.v4.sin_addr)
            e.addrlen = sizeof(sockaddr_in)
        else:
            e.addr.v6.sin6_family = AF_INET6
            e.addr.v6.sin6_port = htons(<uint16_t>port)
            rc = inet_pton(AF_INET6, a, &e.addr.v6.sin6_addr)
            e.addrlen = sizeof(sockaddr_in6)
        if rc != 1:
            raise ValueError(f"bad numeric address {addr!r} for family {family}")
        self._ring = ring
        if ring is not None:
            e.ring = &(<Ring?>ring).c
            if e.ring.hdr == NULL:
                raise ValueError("the ring is closed")
        self._request = request
        if endpoints is None:
            endpoints = [(request, head, 1.0, ())]
        endpoints = list(endpoints)
        n = len(endpoints)
        if not 1 <= n <= LOOP_MAX_ENDPOINTS:
            raise ValueError(f"endpoints: 1 to {LOOP_MAX_ENDPOINTS}, not {n}")
        e.eps = <loop_ep_t *>calloc(n, sizeof(loop_ep_t))
        if e.eps == NULL:
            raise MemoryError()
        e.neps = n
        self._requests = []
        self._data = []
        self._setup_feeders(list(feeders))
        e.tctx.rng = (seed ^ 0x9E3779B97F4A7C15ULL) or 1
        e.tctx.seq_next = seq_start
        e.tctx.seq_step = seq_step
        flows = list(flows)
        if flows:
            # the bounds the templates of flow steps are set up with (TPL_VAR, TPL_COOKIE)
            e.tctx.var_cap = FLOW_VAR_CAP
            e.tctx.jar_cap = FLOW_JAR_CAP
        weights = []
        for i in range(n):
            req, ep_head, weight, ranges = endpoints[i][:4]
            if len(endpoints[i]) > 4 and endpoints[i][4] is not None:
                self._setup_template(i, endpoints[i][4])
            if len(endpoints[i]) > 5 and endpoints[i][5]:
                self._setup_checks(i, list(endpoints[i][5]))
            if not isinstance(req, bytes) or not req:
                raise ValueError(f"endpoint {i}: the request must be non-empty bytes")
            if not weight > 0:
                raise ValueError(f"endpoint {i}: weight must be > 0")
            ranges = list(ranges)
            if len(ranges) > LOOP_MAX_RANGES:
                raise ValueError(f"endpoint {i}: at most {LOOP_MAX_RANGES} status ranges")
            self._requests.append(req)
            e.eps[i].req = <const char *>req
            e.eps[i].req_len = len(req)
            e.eps[i].head = ep_head
            e.eps[i].nranges = len(ranges)
            for k in range(len(ranges)):
                lo, hi = ranges[k]
                if not 0 <= lo <= hi <= 999:
                    raise ValueError(f"endpoint {i}: bad status range {lo}-{hi}")
                e.eps[i].lo[k] = lo
                e.eps[i].hi[k] = hi
            if e.eps[i].req_len > e.max_req_len:
                e.max_req_len = e.eps[i].req_len
            weights.append(float(weight))
        for i, (keep, alias) in enumerate(_alias_table(weights)):
            e.eps[i].keep = keep
            e.eps[i].alias = alias
        # Distinct from the Poisson stream for the same seed; never 0 (xorshift's fixed point).
        e.pick_rng = (seed ^ 0xD1B54A32D192ED03ULL) or 1
        if flows:
            self._setup_flows(flows, nvars)
        e.nconns = <uint32_t>connections
        e.max_conns = <uint32_t>max_connections
        e.requests = requests
        e.duration_ns = duration_ns
        e.timeout_ns = timeout_ns
        e.connect_timeout_ns = connect_timeout_ns
        e.start_ns = start_ns
        e.trigger = EPOLLET | EPOLLRDHUP
        e.memo_on = 1
        e.spin_ns = LOOP_SPIN_INIT_NS
        e.spin_gap_factor = LOOP_SPIN_GAP_FACTOR
        e.sched_fd = -1
        e.sched_wait = -1
        e.spin_up_ns = LOOP_SPIN_UP_NS
        e.lag_allow_ns = LOOP_LAG_ALLOW_NS
        e.spin_auto = 1
        e.open_loop = rate > 0.0 or bool(stages)
        nap_init(&e.nap)
        if e.open_loop:
            pacing_setup(&e.pacing, rate, stages, arrival, seed, requests)
            e.nap.nap_ns = 0
        else:
            e.pacing.next_ns = PACING_END
        _loop_ensure_fds(max_connections)
        e.conns = <conn_t *>calloc(e.max_conns, sizeof(conn_t))
        e.free_stack = <uint32_t *>calloc(e.max_conns, sizeof(uint32_t))
        e.events = <epoll_event *>calloc(LOOP_MAX_EVENTS, sizeof(epoll_event))
        if e.conns == NULL or e.free_stack == NULL or e.events == NULL:
            raise MemoryError()
        for i in range(e.max_conns):
            e.conns[i].fd = -1
            e.conns[i].id = i
        if e.nflows:
            e.vus = <vu_t *>calloc(e.max_conns, sizeof(vu_t))
            e.theap = <uint32_t *>calloc(e.max_conns, sizeof(uint32_t))
            if e.vus == NULL or e.theap == NULL:
                raise MemoryError()
            # calloc of this size maps zero pages: a user's memory is touched only by what it
            # captures and keeps
            if e.nvars:
                e.vu_vars = <char *>calloc(<size_t>e.max_conns * e.nvars, FLOW_VAR_CAP)
                if e.vu_vars == NULL:
                    raise MemoryError()
            for i in range(e.nflows):
                if e.flows[i].cookies:
                    e.vu_jars = <char *>calloc(e.max_conns, FLOW_JAR_CAP)
                    if e.vu_jars == NULL:
                        raise MemoryError()
                    break
            for i in range(e.max_conns):
                e.vus[i].heap_pos = FLOW_NO_HEAP
        if max_body < 1 or max_body > (1 << 24):
            raise ValueError("max_body: 1 byte to 16 MiB")
        e.max_body = max_body
        for i in range(e.neps):
            if e.eps[i].capture:
                # virtual memory: a connection's pages are touched only by the bytes it keeps
                e.capbufs = <char *>malloc(
                    e.max_conns * (<size_t>HTTP_MAX_HEADER_BYTES + max_body))
                if e.capbufs == NULL:
                    raise MemoryError()
                break
        for i in range(e.max_conns):
            e.conns[i].parser.cap_max = max_body
            if e.capbufs != NULL:
                e.conns[i].capbuf = e.capbufs + <size_t>i * (HTTP_MAX_HEADER_BYTES + max_body)
        if e.wcap:
            e.wbufs = <char *>malloc(e.max_conns * e.wcap)
            if e.wbufs == NULL:
                raise MemoryError()
            for i in range(e.max_conns):
                e.conns[i].wbuf = e.wbufs + <size_t>i * e.wcap
        e.epfd = epoll_create1(EPOLL_CLOEXEC)
        if e.epfd < 0:
            errors_raise(errno, "epoll_create1")
        # The open loop's deferred sleeps and the closed loop's naps sleep on an empty epoll set
        # and read what arrived meanwhile with its receive stamps.
        e.idle_epfd = epoll_create1(EPOLL_CLOEXEC)
        if e.idle_epfd < 0:
            errors_raise(errno, "epoll_create1")
        e.defer_reads = 1
        if tls is not None:
            self._setup_tls(dict(tls))

    def _setup_tls(self, dict tls):
        """https: the SSL_CTX (tls.pxi) and the names, from a dict: host (the certificate must
        match it), sni ("" for none), verify, cafile, certfile, keyfile, resume, alpn (wire
        format). TLS connections are level-triggered and read without receive stamps, so the
        deferred sleeps and naps (which time reads by those stamps) are off."""
        cdef engine_t *e = self.e
        host = str(tls.get("host") or "")
        if not host:
            raise ValueError("tls: the host the certificate must match is required")
        e.ssl_ctx = tls_ctx_new(bool(tls.get("verify", True)), str(tls.get("cafile") or ""),
                                str(tls.get("certfile") or ""), str(tls.get("keyfile") or ""),
                                bool(tls.get("resume", True)), bytes(tls.get("alpn") or b""))
        self._tls_host = host.encode()
        e.tls_host = self._tls_host
        try:
            import ipaddress
            ipaddress.ip_address(host)
            e.tls_host_ip = 1
        except ValueError:
            e.tls_host_ip = 0
        sni = str(tls.get("sni") or "")
        if sni:
            self._tls_sni = sni.encode()
            e.tls_sni = self._tls_sni
        e.trigger = 0
        e.defer_reads = 0
        e.defer_off = 1
        e.nap.nap_ns = 0

    def tls_info(self) -> dict:
        """https: handshakes in full and resumed (exact, like counters()), the first TLS
        failure's reason and X509 verification result, and the failures counted by reason."""
        cdef int i
        return {
            "full": bf_load_relaxed_u64(&self.e.cnt.tls_full),
            "resumed": bf_load_relaxed_u64(&self.e.cnt.tls_resumed),
            "reason": self.e.tls_reason.decode("utf-8", "replace") if self.e.tls_noted else "",
            "verify": self.e.tls_verify,
            # TLS failures by reason (a handshake or record that failed; same thread-safety)
            "reasons": {
                self.e.tls_whys[i].text.decode("utf-8", "replace"):
                    bf_load_relaxed_u64(&self.e.tls_whys[i].n)
                for i in range(TLS_WHYS) if bf_load_relaxed_u64(&self.e.tls_whys[i].n)
            },
            "other": bf_load_relaxed_u64(&self.e.tls_whys_other),
        }

    def __dealloc__(self):
        cdef engine_t *e = self.e
        cdef uint32_t i, k
        if e == NULL:
            return
        if e.conns != NULL:
            for i in range(e.max_conns):
                if e.conns[i].ssl != NULL:
                    bf_tls_free(e.conns[i].ssl)
                if e.conns[i].sess != NULL:
                    SSL_SESSION_free(e.conns[i].sess)
                if e.conns[i].fd >= 0:
                    close(e.conns[i].fd)
        if e.ssl_ctx != NULL:
            SSL_CTX_free(e.ssl_ctx)
        if e.epfd >= 0:
            close(e.epfd)
        if e.idle_epfd >= 0:
            close(e.idle_epfd)
        pacing_free(&e.pacing)
        if e.eps != NULL:
            for i in range(e.neps):
                free(e.eps[i].tpl)
                free(e.eps[i].checks)
        if e.flows != NULL:
            for i in range(e.nflows):
                if e.flows[i].steps != NULL:
                    for k in range(e.flows[i].nsteps):
                        free(e.flows[i].steps[k].caps)
                    free(e.flows[i].steps)
            free(e.flows)
        free(e.vus)
        free(e.theap)
        free(e.vu_vars)
        free(e.vu_jars)
        free(e.capbufs)
        if e.tctx.feeds != NULL:
            for i in range(e.tctx.nfeeds):
                free(e.tctx.feeds[i].var_max)
            free(e.tctx.feeds)
        free(e.wbufs)
        free(e.eps)
        free(e.conns)
        free(e.free_stack)
        free(e.events)
        free(e)
        self.e = NULL

    cdef _setup_feeders(self, list feeders):
        """Feeders: (arena bytes, offsets (uint32, native order, nrows * nvars + 1), nrows, nvars,
        order) each; the engine reads them in place (kept alive by self._data)."""
        cdef engine_t *e = self.e
        cdef feed_t *f
        cdef const uint32_t *off
        cdef uint32_t i, v, r, j
        cdef size_t m
        if len(feeders) > TPL_MAX_FEEDS:
            raise ValueError(f"at most {TPL_MAX_FEEDS} feeders")
        if not feeders:
            return
        e.tctx.feeds = <feed_t *>calloc(len(feeders), sizeof(feed_t))
        if e.tctx.feeds == NULL:
            raise MemoryError()
        e.tctx.nfeeds = len(feeders)
        for i in range(e.tctx.nfeeds):
            arena, offsets, nrows, nvars, order = feeders[i]
            if not isinstance(arena, bytes) or not isinstance(offsets, bytes):
                raise ValueError(f"feeder {i}: arena and offsets are bytes")
            if nrows < 1 or nvars < 1 or order not in (FEED_SEQUENTIAL, FEED_RANDOM, FEED_UNIQUE):
                raise ValueError(f"feeder {i}: bad shape ({nrows} rows, {nvars} values, order {order})")
            if len(offsets) != 4 * (nrows * nvars + 1):
                raise ValueError(f"feeder {i}: {len(offsets)} offset bytes for {nrows} x {nvars}")
            self._data += [arena, offsets]
            f = &e.tctx.feeds[i]
            f.arena = <const char *>arena
            f.off = off = <const uint32_t *><const char *>offsets
            f.nrows = nrows
            f.nvars = nvars
            f.order = order
            f.var_max = <uint32_t *>calloc(nvars, sizeof(uint32_t))
            if f.var_max == NULL:
                raise MemoryError()
            if off[0] != 0 or off[nrows * nvars] > len(arena):
                raise ValueError(f"feeder {i}: offsets outside the arena")
            for r in range(nrows):
                for v in range(nvars):
                    j = r * nvars + v
                    if off[j + 1] < off[j]:
                        raise ValueError(f"feeder {i}: offsets must not decrease")
                    m = off[j + 1] - off[j]
                    if m > f.var_max[v]:
                        f.var_max[v] = <uint32_t>m

    cdef _setup_flows(self, list flows, uint32_t nvars):
        """Flows: (weight, feeds mask, cookies, on_fail, steps) each; a step is (STEP_REQUEST,
        endpoint, captures) with captures (var, BF_CAP_* kind, a bytes, b bytes) each, or
        (STEP_THINK, THINK_*, a ns, b ns). The endpoints are already set up (their templates give
        each request step the variables it needs)."""
        cdef engine_t *e = self.e
        cdef flow_t *f
        cdef flow_step_t *st
        cdef flow_cap_t *cp
        cdef uint32_t i, k, j
        if not 1 <= len(flows) <= FLOW_MAX_FLOWS:
            raise ValueError(f"flows: 1 to {FLOW_MAX_FLOWS}")
        if nvars > FLOW_MAX_VARS:
            raise ValueError(f"at most {FLOW_MAX_VARS} flow variables")
        if e.neps + len(flows) > LOOP_MAX_ENDPOINTS:
            raise ValueError(f"endpoints and flows: at most {LOOP_MAX_ENDPOINTS} together")
        e.flows = <flow_t *>calloc(len(flows), sizeof(flow_t))
        if e.flows == NULL:
            raise MemoryError()
        e.nflows = len(flows)
        e.nvars = nvars
        weights = []
        for i in range(e.nflows):
            weight, feeds, cookies, on_fail, steps = flows[i]
            steps = list(steps)
            f = &e.flows[i]
            if not weight > 0:
                raise ValueError(f"flow {i}: weight must be > 0")
            if not 1 <= len(steps) <= FLOW_MAX_STEPS:
                raise ValueError(f"flow {i}: 1 to {FLOW_MAX_STEPS} steps")
            if on_fail not in (FLOW_RESTART, FLOW_SKIP):
                raise ValueError(f"flow {i}: bad on_fail {on_fail}")
            if feeds >> e.tctx.nfeeds:
                raise ValueError(f"flow {i}: feeds names a feeder beyond the {e.tctx.nfeeds} given")
            weights.append(float(weight))
            f.feeds = feeds
            f.cookies = bool(cookies)
            f.on_fail = on_fail
            f.first_ep = 0xFFFFFFFFU
            f.steps = <flow_step_t *>calloc(len(steps), sizeof(flow_step_t))
            if f.steps == NULL:
                raise MemoryError()
            f.nsteps = len(steps)
            for k in range(f.nsteps):
                st = &f.steps[k]
                step = steps[k]
                st.kind = step[0]
                if st.kind == STEP_THINK:
                    _, st.think, st.t_a, st.t_b = step
                    if st.think > THINK_EXPONENTIAL or (st.think == THINK_UNIFORM and st.t_b < st.t_a):
                        raise ValueError(f"flow {i} step {k}: bad think {tuple(step)}")
                    continue
                if st.kind != STEP_REQUEST:
                    raise ValueError(f"flow {i} step {k}: bad kind {st.kind}")
                _, st.ep, caps = step
                caps = list(caps)
                if st.ep >= e.neps:
                    raise ValueError(f"flow {i} step {k}: no endpoint {st.ep}")
                if f.first_ep == 0xFFFFFFFFU:
                    f.first_ep = st.ep
                if e.eps[st.ep].tpl != NULL:
                    st.needs = e.eps[st.ep].tpl.vars
                    if st.needs >> nvars:
                        raise ValueError(f"flow {i} step {k}: its template reads a variable >= {nvars}")
                if len(caps) > FLOW_MAX_CAPTURES:
                    raise ValueError(f"flow {i} step {k}: at most {FLOW_MAX_CAPTURES} captures")
                if caps or f.cookies:
                    e.eps[st.ep].capture = 1   # the parser keeps the head (and body) for them
                if caps:
                    st.caps = <flow_cap_t *>calloc(len(caps), sizeof(flow_cap_t))
                    if st.caps == NULL:
                        raise MemoryError()
                    st.ncaps = len(caps)
                for j in range(st.ncaps):
                    var, kind, a, b = caps[j]
                    cp = &st.caps[j]
                    if var >= nvars or kind not in (BF_CAP_HEADER, BF_CAP_JSON, BF_CAP_BETWEEN):
                        raise ValueError(f"flow {i} step {k}: bad capture {j}")
                    if not isinstance(a, bytes) or not isinstance(b, bytes):
                        raise ValueError(f"flow {i} step {k}: capture {j}'s arguments are bytes")
                    self._data += [a, b]
                    cp.var = var
                    cp.kind = kind
                    cp.a = <const char *>a
                    cp.alen = len(a)
                    cp.b = <const char *>b
                    cp.blen = len(b)
            if f.first_ep == 0xFFFFFFFFU:
                raise ValueError(f"flow {i}: no request step")
        for i, (keep, alias) in enumerate(_alias_table(weights)):
            e.flows[i].keep = keep
            e.flows[i].alias = alias

    def flow_counts(self) -> list:
        """Per flow: iterations started, completed, failed (exact, like endpoint_counts), steps
        skipped, cookies dropped, and per capture j in program order (repeats unrolled): cap_j_ok
        and cap_j_<reason> for each failure reason."""
        cdef uint32_t i, k, j, r, n
        cdef flow_t *f
        cdef flow_cap_t *cp
        out = []
        for i in range(self.e.nflows):
            f = &self.e.flows[i]
            d = {
                "iterations_started": bf_load_relaxed_u64(&f.started),
                "iterations_completed": bf_load_relaxed_u64(&f.completed),
                "iterations_failed": bf_load_relaxed_u64(&f.failed),
                "steps_skipped": bf_load_relaxed_u64(&f.skipped),
                "cookies_dropped": bf_load_relaxed_u64(&f.cookies_dropped),
            }
            n = 0
            for k in range(f.nsteps):
                for j in range(f.steps[k].ncaps):
                    cp = &f.steps[k].caps[j]
                    d[f"cap_{n}_ok"] = bf_load_relaxed_u64(&cp.ok)
                    for r in range(1, BF_CAP__COUNT):
                        d[f"cap_{n}_{_CAPTURE_FAILURES[r]}"] = bf_load_relaxed_u64(&cp.failed[r])
                    n += 1
            out.append(d)
        return out

    def flow_state(self) -> dict:
        """Flows: iterations in progress, users thinking, iterations failed in bulk."""
        return {
            "in_progress": bf_load_relaxed_u64(&self.e.vus_active),
            "thinking": self.e.theap_n,
            "bulk_failed": bf_load_relaxed_u64(&self.e.iters_bulk_failed),
        }

    cdef _setup_checks(self, uint32_t i, list checks):
        """Endpoint i's checks: (kind, mode, status ranges, a bytes, b bytes) each (CHK_*)."""
        cdef engine_t *e = self.e
        cdef loop_check_t *ck
        cdef uint32_t k, j
        if len(checks) > LOOP_MAX_CHECKS:
            raise ValueError(f"endpoint {i}: at most {LOOP_MAX_CHECKS} checks")
        e.eps[i].checks = <loop_check_t *>calloc(len(checks), sizeof(loop_check_t))
        if e.eps[i].checks == NULL:
            raise MemoryError()
        e.eps[i].nchecks = len(checks)
        for k in range(len(checks)):
            kind, mode, ranges, a, b = checks[k]
            ck = &e.eps[i].checks[k]
            if kind not in (CHK_STATUS, CHK_HEADER, CHK_BODY, CHK_JSON) or not 0 <= mode <= 3:
                raise ValueError(f"endpoint {i}: bad check {k} ({kind}, {mode})")
            if not isinstance(a, bytes) or not isinstance(b, bytes):
                raise ValueError(f"endpoint {i}: check {k}'s arguments are bytes")
            ranges = list(ranges)
            if len(ranges) > LOOP_MAX_RANGES or (kind == CHK_STATUS and not ranges):
                raise ValueError(f"endpoint {i}: check {k}: 1 to {LOOP_MAX_RANGES} status ranges")
            ck.kind = kind
            ck.mode = mode
            ck.nranges = len(ranges)
            for j in range(len(ranges)):
                lo, hi = ranges[j]
                if not 0 <= lo <= hi <= 999:
                    raise ValueError(f"endpoint {i}: bad status range {lo}-{hi}")
                ck.lo[j] = lo
                ck.hi[j] = hi
            self._data += [a, b]
            ck.a = <const char *>a
            ck.alen = len(a)
            ck.b = <const char *>b
            ck.blen = len(b)
            if kind != CHK_STATUS:
                e.eps[i].capture = 1

    cdef _setup_template(self, uint32_t i, tpl):
        """Endpoint i renders its request per request: tpl = (blob bytes, ops bytes: uint32
        quadruples kind, a, b, 0 in native order)."""
        cdef engine_t *e = self.e
        cdef tpl_t *t
        cdef int bad
        blob, ops = tpl
        if not isinstance(blob, bytes) or not isinstance(ops, bytes) or not ops or len(ops) % 16:
            raise ValueError(f"endpoint {i}: a template is (blob bytes, ops bytes of 16-byte ops)")
        t = <tpl_t *>calloc(1, sizeof(tpl_t))
        if t == NULL:
            raise MemoryError()
        e.eps[i].tpl = t
        self._data += [blob, ops]
        t.blob = <const char *>blob
        t.blob_len = len(blob)
        t.ops = <const tpl_op_t *><const char *>ops
        t.nops = len(ops) // 16
        bad = tpl_setup(t, &e.tctx)
        if bad:
            raise ValueError(f"endpoint {i}: bad template op {bad - 1}")
        if t.cap > e.wcap:
            e.wcap = t.cap
        if t.cap > e.max_req_len:
            e.max_req_len = t.cap

    def run(self) -> None:
        """Run to the deadline, the request count, or stop(); the GIL is released throughout."""
        cdef int rc
        if self._ran:
            raise RuntimeError("an Engine runs once; create a new one")
        self._ran = True
        if self.e.ring != NULL:
            if self.e.ring.hdr == NULL:
                raise ValueError("the ring was closed")
            # This thread's process produces from now on: continue from the header's positions.
            ring_producer_sync(self.e.ring)
        with nogil:
            rc = loop_run(self.e)
        if rc:
            errors_raise(rc, "cannot open connections")

    def stop(self) -> None:
        """Thread-safe; run() returns within a few ms (pending not-sent entries are counted)."""
        bf_store_release_int(&self.e.stop_flag, 1)

    def _set_spin_ns(self, spin_ns) -> None:
        """Benchmark knob: a fixed pacing spin window in ns, or None for the adaptive default.
        Set before run()."""
        if spin_ns is None:
            self.e.spin_ns = LOOP_SPIN_INIT_NS
            self.e.spin_auto = 1
        else:
            self.e.spin_ns = <uint64_t>spin_ns
            self.e.spin_auto = 0

    def _set_spin_quantile(self, double q) -> None:
        """Benchmark knob: the adaptive spin window tracks the (1 - q) quantile of the wake-up
        lateness (P(late > window) = q; default 0.01). Set before run()."""
        if not 0.0 < q < 1.0:
            raise ValueError("q must be in (0, 1)")
        self.e.spin_up_ns = <uint64_t>(LOOP_SPIN_DOWN_NS * (1.0 - q) / q + 0.5)

    def _set_defer_reads(self, bint on) -> None:
        """Benchmark knob: open-loop deferred pacing sleeps and closed-loop naps, both of which read
        what arrived while they slept by its receive stamps (LOOP_DEFER_MAX_BYTES; on by default).
        Off, no socket is stamped. Set before run()."""
        self.e.defer_reads = on

    def _set_edge_triggered(self, bint on) -> None:
        """Benchmark knob: edge-triggered epoll (EPOLLET, the default) or level-triggered. Set
        before run()."""
        self.e.trigger = (EPOLLET | EPOLLRDHUP) if on else 0

    def _set_closed_nap_ns(self, uint64_t nap_ns, bint auto=True) -> None:
        """Benchmark knob (closed loop): nap length in ns when a poll finds nothing (nap.pxi;
        default NAP_DEFAULT_NS). `auto` (the default): the controller decides when to nap; else
        nap always. 0: never nap (block on the sockets; the receive stamps stay on unless
        _set_defer_reads(False)). Set before run()."""
        if self.e.open_loop:
            return
        self.e.nap.nap_ns = nap_ns
        self.e.nap.auto = auto

    def _set_nap_control(self, uint64_t window_ns, uint32_t pairs, double keep,
                         hold_ns=None, abort=None) -> None:
        """Benchmark knob: the nap controller's probe window, window pairs per probe, the median
        on/off throughput ratio at which naps are kept, and (if given) a fixed hold between
        probes instead of NAP_HOLD_MIN_NS doubling to NAP_HOLD_MAX_NS (nap.pxi). Set before
        run()."""
        if window_ns == 0 or not 1 <= pairs <= NAP_PAIRS_MAX or not keep > 0.0:
            raise ValueError("bad nap control")
        self.e.nap.window_ns = window_ns
        self.e.nap.pairs = pairs
        self.e.nap.keep = keep
        if hold_ns is not None:
            self.e.nap.hold_ns = self.e.nap.hold_min_ns = self.e.nap.hold_max_ns = hold_ns
        if abort is not None:
            self.e.nap.abort = abort

    def _set_lag_allowance(self, uint64_t allow_ns) -> None:
        """Benchmark knob: the adaptive window counts a send up to `allow_ns` late as on time
        (default LOOP_LAG_ALLOW_NS; 0 aims every send at its intended ns). Set before run()."""
        self.e.lag_allow_ns = allow_ns

    def _set_spin_gap_factor(self, uint32_t factor) -> None:
        """Benchmark knob: spin only when consecutive sends are at least `factor` spin windows
        apart (default LOOP_SPIN_GAP_FACTOR; 0 spins at any rate). Set before run()."""
        self.e.spin_gap_factor = factor

    def _set_coalesce_ns(self, uint64_t coalesce_ns) -> None:
        """Benchmark knob: wake at most once per `coalesce_ns` after a send is due and send all
        that are due (no spin); 0 (the default) wakes for each send. Set before run()."""
        self.e.coalesce_ns = coalesce_ns

    def _pacing_stats(self) -> dict:
        """Benchmark stats (read after run()): the spin window at the end, how many timed pacing
        sleeps ended by their timeout, and their mean lateness past the wake target."""
        cdef engine_t *e = self.e
        return {
            "spin_ns": e.spin_ns,
            "spin_auto": bool(e.spin_auto),
            "timed_sleeps": e.pace_sleeps,
            "late_ns_mean": e.pace_late_sum / e.pace_sleeps if e.pace_sleeps else 0.0,
            "deferred_sleeps": e.defer_sleeps,
            "closed_naps": e.naps,
            "ramp_done_ns": e.ramp_done_ns,
            "ramp_completed": e.ramp_completed,
            "nap_on_s": nap_on_ns(&e.nap, clock_now_ns()) / 1e9,
            "nap_probes": e.nap.probes,
            "nap_probes_on": e.nap.probes_on,
            "nap_aborts": e.nap.aborts,
            "nap_log": [round(e.nap.log[i], 4) for i in range(e.nap.nlog)],
            "rx_stamped": e.rx_stamped,
            "rx_unstamped": e.rx_unstamped,
            "rx_stamp_bad": e.rx_stamp_bad,
            "defer_off": bool(e.defer_off),
        }

    def _set_head_memo(self, bint on) -> None:
        """Benchmark knob: reuse the parse of a header block equal to the last one (the default)
        or parse every header block. Set before run()."""
        self.e.memo_on = on

    def _head_memo_hits(self) -> int:
        """Benchmark stats (read after run()): responses whose header block matched the memo."""
        return self.e.memo.hits

    def now_ns(self) -> int:
        return clock_now_ns()

    def counters(self) -> dict:
        """Exact totals so far (relaxed atomic loads: safe while run() runs in another thread)."""
        cdef loop_counters_t *k = &self.e.cnt
        cdef int i
        d = {
            "started": bf_load_relaxed_u64(&k.started),
            "completed": bf_load_relaxed_u64(&k.completed),
            "errors": bf_load_relaxed_u64(&k.errors),
            "in_flight": bf_load_relaxed_u64(&k.in_flight),
            "not_sent": bf_load_relaxed_u64(&k.err[BF_ERR_NOT_SENT]),
            "reconnects": bf_load_relaxed_u64(&k.reconnects),
            "connects": bf_load_relaxed_u64(&k.connects),
            "connect_attempts": bf_load_relaxed_u64(&k.connect_attempts),
            "connect_failures": bf_load_relaxed_u64(&k.connect_failures),
            "bytes_rx": bf_load_relaxed_u64(&k.bytes_rx),
            "bytes_tx": bf_load_relaxed_u64(&k.bytes_tx),
            "samples": bf_load_relaxed_u64(&k.samples),
            "ring_dropped": bf_load_relaxed_u64(&k.ring_dropped),
            "bulk_failed": bf_load_relaxed_u64(&k.bulk_failed),
            "conns_open": bf_load_relaxed_u64(&k.conns_open),
            "conns_peak": bf_load_relaxed_u64(&k.conns_peak),
            "spin_ns": bf_load_relaxed_u64(&k.spin_ns),
            "runq_wait_ns": bf_load_relaxed_u64(&k.runq_wait_ns),
            "check_failed": bf_load_relaxed_u64(&k.check_failed),
            "tls_full": bf_load_relaxed_u64(&k.tls_full),
            "tls_resumed": bf_load_relaxed_u64(&k.tls_resumed),
            # 0, or 1 + the unique feeder whose rows ran out (the run's last request took its last)
            "data_out": self.e.tctx.data_out,
            # closed loop: time naps were on (nap.pxi); exact once run() returned
            "nap_on_ns": nap_on_ns(&self.e.nap, clock_now_ns()),
        }
        for i in range(1, BF_ERR__COUNT):
            d["err_" + _ERROR_KEYS[i]] = bf_load_relaxed_u64(&k.err[i])
        if self.e.nflows:
            # flows: iterations started, and open-loop entries failed in bulk as iterations
            d["iterations"] = bf_load_relaxed_u64(&self.e.iters)
            d["iterations_bulk_failed"] = bf_load_relaxed_u64(&self.e.iters_bulk_failed)
        return d

    def endpoint_counts(self) -> list:
        """Per endpoint (table order): started, completed, errors, check_failed (responses that
        failed any check), and per check k: check_failed_k, check_too_long_k (exact; same
        thread-safety as counters())."""
        cdef uint32_t i, k
        cdef loop_ep_t *ep
        out = []
        for i in range(self.e.neps):
            ep = &self.e.eps[i]
            d = {
                "started": bf_load_relaxed_u64(&ep.started),
                "completed": bf_load_relaxed_u64(&ep.completed),
                "errors": bf_load_relaxed_u64(&ep.errors),
                "check_failed": bf_load_relaxed_u64(&ep.check_failed),
            }
            for k in range(ep.nchecks):
                d[f"check_failed_{k}"] = bf_load_relaxed_u64(&ep.checks[k].failed)
                d[f"check_too_long_{k}"] = bf_load_relaxed_u64(&ep.checks[k].too_long)
            out.append(d)
        return out

    def status_counts(self) -> dict:
        """HTTP status -> responses completed with it (same thread-safety as counters())."""
        cdef int i
        cdef uint64_t v
        out = {}
        for i in range(LOOP_STATUS_MAX):
            v = bf_load_relaxed_u64(&self.e.status[i])
            if v:
                out[i] = v
        return out

    @property
    def open_loop(self) -> bool:
        return bool(self.e.open_loop)

    @property
    def t0_ns(self) -> int:
        """When the run began (start_ns, or the moment run() was called); 0 before run()."""
        return self.e.t0_ns


FD_HEADROOM = 64   # descriptors an engine's process needs besides its connections (epoll, ring...)


def _loop_ensure_fds(int needed):
    """Raise RLIMIT_NOFILE's soft limit toward the hard limit when the connections need it; fail
    early (EMFILE, through the errno converter) rather than with a storm of connect errors."""
    import resource
    want = needed + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            new = soft
        if new < want:
            errors_raise(EMFILE, f"{needed} connections need {want} file descriptors; the limit "
                                 f"is {new} (raise it with ulimit -n)")
