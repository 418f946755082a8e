# user.pxi — a flow's virtual users in the event loop: what user i (on connection slot i) does when
#   its connection is idle, when a response of its step completes or fails, and when a think ends.
# Never: allocates, touches a Python object or blocks; never sends a step while its user thinks,
#   never lets an iteration end twice.
# Invariants (flows): iters == sum(flow.started); flow.started == completed + failed + the active
#   users' iterations (+ none lost: at the end, in-progress iterations are reported as such);
#   every request of a step is a request of the engine's accounting (started, completed, errors).
#
# Intended times (coordinated omission): an iteration's first step is due at its schedule time (open
# loop) or at its send (closed loop: a user begins when its connection is up); every later step is
# due when the previous response completed plus the think times between them, in both loops, so a
# late step (a stalled generator, a think timer that fired late) shows as send lag and in the
# corrected latency.


cdef inline uint32_t user_pick_flow(engine_t *e) noexcept nogil:
    """A new iteration's flow, by weight (the alias method, as loop_pick)."""
    cdef uint64_t r
    cdef uint32_t col
    if e.nflows == 1:
        return 0
    e.pick_rng ^= e.pick_rng >> 12
    e.pick_rng ^= e.pick_rng << 25
    e.pick_rng ^= e.pick_rng >> 27
    r = e.pick_rng * 2685821657736338717ULL
    col = <uint32_t>(((r >> 32) * e.nflows) >> 32)
    if (r & 0xFFFFFFFFULL) < e.flows[col].keep:
        return col
    return e.flows[col].alias


cdef void user_start(engine_t *e, conn_t *c, uint64_t start_ns) noexcept nogil:
    """User c.id begins an iteration (start_ns: open loop its schedule time, else now)."""
    cdef vu_t *u = &e.vus[c.id]
    cdef flow_t *f
    u.flow = user_pick_flow(e)
    f = &e.flows[u.flow]
    u.pc = 0
    u.active = 1
    u.failed = 0
    u.thinking = 0
    u.have = 0
    u.jar_len = 0
    u.start_ns = start_ns
    u.next_ns = start_ns if e.open_loop else 0
    if f.feeds:
        flow_draw_rows(&e.tctx, f.feeds, u.rows)
    cnt_add(&f.started, 1)
    cnt_add(&e.iters, 1)
    cnt_add(&e.vus_active, 1)
    if e.tctx.data_out and not e.data_stopped:
        # A unique feeder's last row: this iteration is the run's last to begin.
        e.data_stopped = 1
        e.requests = e.iters
        e.pacing.next_ns = PACING_END


cdef void user_end(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """User c.id's iteration ends (completed unless it failed): counted, and its duration published
    as an iteration record (BF_FLAG_ITERATION) into the flow's slot after the endpoints."""
    cdef vu_t *u = &e.vus[c.id]
    cdef flow_t *f = &e.flows[u.flow]
    u.active = 0
    cnt_sub(&e.vus_active, 1)
    if u.failed:
        cnt_add(&f.failed, 1)
    else:
        cnt_add(&f.completed, 1)
    loop_publish(e, u.start_ns, u.start_ns, u.start_ns, now, 0, 0, c.id,
                 <uint16_t>(e.neps + u.flow), 2 if u.failed else 1, 0,
                 BF_FLAG_ITERATION | (BF_FLAG_OPEN_LOOP if e.open_loop else 0), 0)


cdef bint user_begin(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """Slot c has no request: its user begins its next request step (closed loop: a new iteration
    first when it has none and the run allows one). Think steps on the way put the user to sleep.
    1: a request was begun on c (c.has_req), 0: the user thinks or has nothing to do."""
    cdef vu_t *u = &e.vus[c.id]
    cdef flow_t *f
    cdef flow_step_t *st
    cdef uint64_t d, base
    while True:
        if not u.active:
            if e.open_loop or not loop_can_start(e, now):
                return 0
            user_start(e, c, now)
        if u.thinking:
            return 0
        f = &e.flows[u.flow]
        if u.pc >= f.nsteps:
            user_end(e, c, now)
            continue
        st = &f.steps[u.pc]
        u.pc += 1
        if st.kind == STEP_THINK:
            d = flow_think_ns(&e.tctx, st)
            base = u.next_ns if u.next_ns else now
            if d == 0:
                continue
            u.next_ns = base + d
            u.due_ns = u.next_ns
            u.thinking = 1
            flow_heap_push(e.vus, e.theap, &e.theap_n, c.id)
            return 0
        if st.needs & ~u.have:
            cnt_add(&f.skipped, 1)      # FLOW_SKIP: a variable it needs was not captured
            continue
        u.cur = u.pc - 1
        e.tctx.vu_rows = u.rows
        e.tctx.vu_mask = f.feeds
        e.tctx.vars = e.vu_vars + <size_t>c.id * e.nvars * FLOW_VAR_CAP if e.vu_vars != NULL else NULL
        e.tctx.var_len = u.var_len
        e.tctx.jar = e.vu_jars + <size_t>c.id * FLOW_JAR_CAP if e.vu_jars != NULL else NULL
        e.tctx.jar_len = u.jar_len if f.cookies else 0
        loop_begin_ep(e, c, st.ep, u.next_ns, BF_FLAG_OPEN_LOOP if e.open_loop else 0)
        e.tctx.vu_rows = NULL
        e.tctx.vu_mask = 0
        e.tctx.vars = NULL
        e.tctx.jar = NULL
        e.tctx.jar_len = 0
        u.next_ns = 0
        return 1


cdef void user_result(engine_t *e, conn_t *c, uint8_t err, uint64_t now) noexcept nogil:
    """The request of user c.id's current step ended (loop_finish): on a complete response take
    its cookies and captures; a failed request, check or capture fails the iteration. A failed
    request ends it (the connection is replaced); a failed capture ends it too (FLOW_RESTART) or
    lets it skip the steps that need the variable (FLOW_SKIP)."""
    cdef vu_t *u = &e.vus[c.id]
    cdef flow_t *f = &e.flows[u.flow]
    cdef flow_step_t *st = &f.steps[u.cur]
    cdef const http_resp_t *p = &c.parser
    cdef flow_cap_t *cp
    cdef uint32_t k
    cdef int r
    cdef size_t n
    cdef char *out
    cdef uint32_t dropped
    if not u.active:
        return              # not reached: every request of a flow run belongs to an iteration
    if err != BF_ERR_NONE:
        u.failed = 1
        user_end(e, c, now)
        return
    if c.flags & BF_FLAG_CHECK_FAIL:
        u.failed = 1
    if p.cap != NULL:
        if f.cookies and e.vu_jars != NULL:
            dropped = bf_cookie_update(e.vu_jars + <size_t>c.id * FLOW_JAR_CAP, &u.jar_len,
                                       FLOW_JAR_CAP, p.cap, p.head_len)
            if dropped:
                cnt_add(&f.cookies_dropped, dropped)
        for k in range(st.ncaps):
            cp = &st.caps[k]
            out = e.vu_vars + (<size_t>c.id * e.nvars + cp.var) * FLOW_VAR_CAP
            r = bf_capture(cp.kind, p.cap, p.head_len, p.cap + HTTP_MAX_HEADER_BYTES, p.body_len,
                           p.body_trunc, cp.a, cp.alen, cp.b, cp.blen, out, FLOW_VAR_CAP, &n)
            if r == BF_CAP_OK:
                u.var_len[cp.var] = <uint32_t>n
                u.have |= 1ULL << cp.var
                cnt_add(&cp.ok, 1)
            else:
                cnt_add(&cp.failed[r], 1)
                u.failed = 1
                if f.on_fail == FLOW_RESTART:
                    u.pc = f.nsteps     # the iteration ends (failed) before its next step
    u.next_ns = now         # the next step is due now (plus the think times before it)


cdef void user_idle(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """loop_next for flows: slot c is connected and idle. Its user sends its next step; or, open
    loop and between iterations, it takes the next due schedule entry or waits in the free stack."""
    if c.has_req:
        loop_send(e, c)                 # closed loop: the request begun by the connect
        return
    if user_begin(e, c, now):
        loop_send(e, c)
        return
    if e.open_loop and not e.vus[c.id].active:
        if e.pacing.next_ns <= now and not e.stopping:
            loop_send_scheduled(e, c)
        else:
            loop_free_push(e, c)


cdef void user_scheduled(engine_t *e, conn_t *c, uint64_t t) noexcept nogil:
    """Open loop: the schedule entry due at t starts an iteration on idle slot c's user."""
    user_start(e, c, t)
    if user_begin(e, c, t):
        loop_send(e, c)
    elif not e.vus[c.id].active:
        loop_free_push(e, c)            # a flow whose every step was skipped or zero


cdef void user_connect_failed(engine_t *e, conn_t *c, uint64_t now) noexcept nogil:
    """Slot c's connect failed with no request on it. Its user's next step fails with it (an
    active user), or (open loop) the oldest due schedule entry does, as a new iteration. Else no
    request fails: the failure still counts in connect_failures."""
    cdef uint64_t t
    if not e.vus[c.id].active:
        if not e.open_loop or e.pacing.next_ns > now:
            return
        t = e.pacing.next_ns
        pacing_advance(&e.pacing)
        user_start(e, c, t)
    user_begin(e, c, now)


cdef void user_wake(engine_t *e, uint64_t now) noexcept nogil:
    """Users whose think is over go on: at once on an idle connection, else when theirs is up."""
    cdef uint32_t id
    cdef conn_t *c
    while e.theap_n and e.vus[e.theap[0]].due_ns <= now:
        id = flow_heap_pop(e.vus, e.theap, &e.theap_n)
        e.vus[id].thinking = 0
        e.last_intended = e.vus[id].due_ns     # the pacing spin's gap rule (loop_wait)
        c = &e.conns[id]
        if e.stopping:
            continue
        if c.state == CONN_IDLE and not c.has_req:
            if user_begin(e, c, now):
                loop_send(e, c)
            elif e.open_loop and not e.vus[id].active:
                loop_free_push(e, c)
        # a connection being replaced (closed, connecting, backing off): loop_next runs the step
        # once it is up


cdef uint32_t user_backlog_failed(engine_t *e) noexcept nogil:
    """Open loop: a schedule entry no connection took fails as an iteration of a flow picked by
    weight (started and failed); returns the endpoint of its first request, which fails with it."""
    cdef flow_t *f = &e.flows[user_pick_flow(e)]
    cnt_add(&f.started, 1)
    cnt_add(&f.failed, 1)
    cnt_add(&e.iters, 1)
    return f.first_ep
