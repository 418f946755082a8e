# flow.pxi — flows: the compiled step programs, the per-user (per-connection) state, think-time
#   draws and the think-timer heap. The engine integration (what a user does when its connection
#   is idle, when a response completes, when a think ends) is in user.pxi.
# Never: allocates, touches a Python object or blocks (all noexcept nogil); never keeps a request in
#   flight while a user thinks (the connection stays open, idle).
# Invariants: a user (vu_t) is active from the start of an iteration to its end, and each started
#   iteration ends exactly once, completed or failed (or is in progress when the run stops); the
#   heap holds exactly the thinking users, ordered by due time.
#
# A flow is a flat program of steps (scenario/compile.py unrolls `repeat` at compile time, so no step
# loops): a request step sends its endpoint's request (a template rendered with the user's feeder
# rows, variables and cookie jar) and, on the complete response, runs its captures; a think step
# pauses the user. One user per connection slot: connection i carries user i.

from libc.math cimport log

cdef extern from "bf_flow.h" nogil:
    enum:
        BF_CAP_HEADER
        BF_CAP_JSON
        BF_CAP_BETWEEN
        BF_CAP_OK
        BF_CAP_MISSING
        BF_CAP_TOO_LONG
        BF_CAP_BAD_BYTES
        BF_CAP_TRUNCATED
        BF_CAP__COUNT
    int bf_capture(int kind, const char *head, size_t hlen, const char *body, size_t blen,
                   int truncated, const char *a, size_t alen, const char *b, size_t b_len,
                   char *out, size_t cap, size_t *len)
    uint32_t bf_cookie_update(char *jar, size_t *jlen, size_t cap, const char *block, size_t len)


cdef enum:
    FLOW_MAX_FLOWS = 64
    FLOW_MAX_STEPS = 1024          # per flow, after `repeat` is unrolled
    FLOW_MAX_VARS = 64             # per run (a bit each in tpl_t.vars and vu_t.have)
    FLOW_MAX_CAPTURES = 16         # per step
    FLOW_VAR_CAP = 4096            # bytes of one captured value (a longer one fails as too long)
    FLOW_JAR_CAP = 4096            # bytes of one user's cookies ("n1=v1; n2=v2")
    STEP_REQUEST = 1
    STEP_THINK = 2
    THINK_CONSTANT = 0             # a
    THINK_UNIFORM = 1              # uniform in [a, b]
    THINK_EXPONENTIAL = 2          # exponential with mean a
    FLOW_RESTART = 0               # a failed capture ends the iteration (failed)
    FLOW_SKIP = 1                  # ... skips the steps that use the variable (iteration failed)
    FLOW_NO_HEAP = 0xFFFFFFFF


# One capture of a request step: its response's header / JSON value / text between markers goes
# into variable `var`. ok and failed[reason] count every evaluation (exact, loop thread only).
ctypedef struct flow_cap_t:
    uint32_t var
    uint32_t kind                  # BF_CAP_HEADER, BF_CAP_JSON, BF_CAP_BETWEEN
    const char *a
    size_t alen
    const char *b
    size_t blen
    uint64_t ok
    uint64_t failed[BF_CAP__COUNT]


ctypedef struct flow_step_t:
    uint32_t kind                  # STEP_*
    uint32_t ep                    # request: the endpoint (engine_t.eps index)
    uint32_t think                 # think: THINK_*
    uint64_t t_a                   # think: ns
    uint64_t t_b
    flow_cap_t *caps
    uint32_t ncaps
    uint64_t needs                 # request: the variables its template reads


ctypedef struct flow_t:
    flow_step_t *steps
    uint32_t nsteps
    uint32_t first_ep              # the endpoint of its first request step
    uint64_t feeds                 # feeders drawn once per iteration (bit f: feeder f)
    bint cookies                   # a cookie jar per user
    int on_fail                    # FLOW_RESTART or FLOW_SKIP
    uint32_t alias                 # its share of new iterations (alias table, as loop_ep_t)
    uint64_t keep
    uint64_t started               # iterations begun
    uint64_t completed             # ended with every request completed, checked and captured
    uint64_t failed                # ended with a failed request, check or capture
    uint64_t skipped               # FLOW_SKIP: request steps skipped for a missing variable
    uint64_t cookies_dropped       # Set-Cookie pairs that did not fit the jar


# One virtual user: the connection slot of the same index runs it.
ctypedef struct vu_t:
    uint32_t flow
    uint32_t pc                    # the next step
    uint32_t cur                   # the step whose request is in flight
    bint active                    # in an iteration
    bint failed                    # the iteration has failed (it runs on in FLOW_SKIP mode)
    bint thinking                  # in the heap, waiting for due_ns
    uint64_t start_ns              # the iteration's start (open loop: its schedule time)
    uint64_t next_ns               # intended time of the next request step (0: its send time)
    uint64_t due_ns
    uint64_t have                  # the variables captured in this iteration
    uint32_t heap_pos
    size_t jar_len
    uint32_t var_len[FLOW_MAX_VARS]
    uint32_t rows[TPL_MAX_FEEDS]   # this iteration's row of each feeder in the flow's `feeds`


cdef inline uint64_t flow_think_ns(tpl_ctx_t *x, const flow_step_t *st) noexcept nogil:
    """A think step's pause: constant, uniform in [a, b], or exponential with mean a (capped at
    50 means, so one draw cannot stall a user for the rest of a run)."""
    cdef double u
    if st.think == THINK_UNIFORM:
        u = (tpl_rand(x) >> 11) * (1.0 / 9007199254740992.0)             # [0, 1)
        return st.t_a + <uint64_t>(u * <double>(st.t_b - st.t_a))
    if st.think == THINK_EXPONENTIAL:
        u = ((tpl_rand(x) >> 11) + 1) * (1.0 / 9007199254740992.0)    # (0, 1]
        u = -log(u)
        if u > 50.0:
            u = 50.0
        return <uint64_t>(u * st.t_a)
    return st.t_a


cdef inline void flow_draw_rows(tpl_ctx_t *x, uint64_t mask, uint32_t *rows) noexcept nogil:
    """One row of every feeder in mask, as tpl_render draws them (and with the same data_out)."""
    cdef uint32_t f
    cdef feed_t *fd
    for f in range(x.nfeeds):
        if not (mask >> f) & 1:
            continue
        fd = &x.feeds[f]
        if fd.order == FEED_RANDOM:
            rows[f] = <uint32_t>(((tpl_rand(x) >> 32) * fd.nrows) >> 32)
        elif fd.order == FEED_UNIQUE:
            rows[f] = <uint32_t>fd.next
            fd.next += 1
            if fd.next >= fd.nrows and x.data_out == 0:
                x.data_out = f + 1
        else:
            rows[f] = <uint32_t>(fd.next % fd.nrows)
            fd.next += 1


# ------------------------------------------------------------------ think timers: a binary min-heap
# of user (slot) ids by due_ns; each user knows its position (heap_pos), so nothing is searched.

cdef inline bint flow_heap_less(const vu_t *vus, uint32_t a, uint32_t b) noexcept nogil:
    return vus[a].due_ns < vus[b].due_ns


cdef inline void flow_heap_put(vu_t *vus, uint32_t *heap, uint32_t pos, uint32_t id) noexcept nogil:
    heap[pos] = id
    vus[id].heap_pos = pos


cdef void flow_heap_push(vu_t *vus, uint32_t *heap, uint32_t *n, uint32_t id) noexcept nogil:
    cdef uint32_t pos = n[0], parent
    n[0] += 1
    while pos > 0:
        parent = (pos - 1) // 2
        if not flow_heap_less(vus, id, heap[parent]):
            break
        flow_heap_put(vus, heap, pos, heap[parent])
        pos = parent
    flow_heap_put(vus, heap, pos, id)


cdef uint32_t flow_heap_pop(vu_t *vus, uint32_t *heap, uint32_t *n) noexcept nogil:
    """Remove and return the first user (the caller checked n > 0)."""
    cdef uint32_t top = heap[0], last, pos = 0, child
    n[0] -= 1
    vus[top].heap_pos = FLOW_NO_HEAP
    if n[0] == 0:
        return top
    last = heap[n[0]]
    while True:
        child = 2 * pos + 1
        if child >= n[0]:
            break
        if child + 1 < n[0] and flow_heap_less(vus, heap[child + 1], heap[child]):
            child += 1
        if not flow_heap_less(vus, heap[child], last):
            break
        flow_heap_put(vus, heap, pos, heap[child])
        pos = child
    flow_heap_put(vus, heap, pos, last)
    return top


# ---- Python test hooks (not used by the engine) ---------------------------------------------

FLOW_CAPTURE_CODES = ("ok", "missing", "too_long", "bad_bytes", "truncated")
FLOW_CAPTURE_KINDS = {"header": BF_CAP_HEADER, "json": BF_CAP_JSON, "between": BF_CAP_BETWEEN}


def flow_capture(str kind, head, body, a, b=b"", bint truncated=False, size_t cap=FLOW_VAR_CAP):
    """bf_capture: (code name, the captured value or None) from a header block and a body."""
    cdef bytes h = bytes(head)
    cdef bytes bd = bytes(body)
    cdef bytes x = bytes(a)
    cdef bytes y = bytes(b)
    cdef bytearray out = bytearray(cap + 1)
    cdef size_t n = 0
    cdef int code = bf_capture(FLOW_CAPTURE_KINDS[kind], h, len(h), bd, len(bd), truncated,
                               x, len(x), y, len(y), out, cap, &n)
    return FLOW_CAPTURE_CODES[code], bytes(out[:n]) if code == BF_CAP_OK else None


def flow_cookie_update(jar, head, size_t cap=FLOW_JAR_CAP):
    """bf_cookie_update: (the jar after the header block's Set-Cookie fields, pairs dropped)."""
    cdef bytes j = bytes(jar)
    cdef bytes h = bytes(head)
    cdef bytearray buf = bytearray(max(cap, len(j)) + 1)
    cdef size_t n = len(j)
    cdef uint32_t dropped
    buf[:n] = j
    dropped = bf_cookie_update(buf, &n, cap, h, len(h))
    return bytes(buf[:n]), dropped


def flow_escape(value, int esc):
    """tpl_var's escaping of a variable: 0 as it is, 1 for a request target, 2 in a JSON string."""
    cdef bytes v = bytes(value)
    cdef bytearray out = bytearray(6 * len(v) + 1)
    cdef size_t n
    if esc == 1:
        n = bf_flow_escape_target(v, len(v), out)
    elif esc == 2:
        n = bf_flow_escape_json(v, len(v), out)
    else:
        return v
    return bytes(out[:n])
