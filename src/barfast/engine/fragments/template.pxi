# template.pxi — request templates: static byte segments plus slots, rendered per request into the
#   connection's write buffer from feeders (rows loaded once into native memory) and generators.
# Never: allocates, touches a Python object or reads a feeder outside its rows while rendering;
#   writes more than tpl_t.cap bytes (the bound is computed here, at setup, from the ops and data).
# Invariants: a request takes one row of each feeder it names (every slot of that feeder in the request
#   shows the same row) and one `seq` value; unique rows are handed out once, then the context says
#   it ran out (data_out) and the loop starts no more requests.
#
# A template is a list of ops compiled in Python (scenario/template.py) over one static blob. With a
# templated body the head holds a TPL_CLEN op: the body is rendered first, past the head's bound,
# its length written as the head's Content-Length, then moved up behind the head (one memmove of the
# body, never a second render).

from libc.string cimport memmove

cdef extern from "bf_flow.h" nogil:
    size_t bf_flow_escape_target(const char *v, size_t n, char *out)
    size_t bf_flow_escape_json(const char *v, size_t n, char *out)

cdef enum:
    TPL_STATIC = 1   # a: offset in the blob, b: length
    TPL_FEED = 2     # a: feeder, b: value variant (a column as it is escaped for where it goes)
    TPL_SEQ = 3      # the request's sequence number: start + k * step (disjoint across workers)
    TPL_RANDINT = 4  # uniform in [a, b] (a <= b < 2^32)
    TPL_HEX = 5      # a lowercase hex digits
    TPL_ALNUM = 6    # a characters of [0-9A-Za-z]
    TPL_UUID = 7     # a random (version 4) UUID, 36 characters
    TPL_TIME_S = 8   # the Unix time, seconds (CLOCK_REALTIME, read once per request)
    TPL_TIME_MS = 9  # the same, milliseconds
    TPL_CLEN = 10    # the rendered body's length, decimal (only in the head of a templated body)
    TPL_VAR = 11     # flows: the user's variable a, escaped as b (TPL_ESC_*); see flow.pxi
    TPL_COOKIE = 12  # flows: "Cookie: <the user's jar>\r\n" when the jar is not empty
    TPL__KINDS = 13

    TPL_ESC_RAW = 0            # a variable as it is (a header value, a raw body)
    TPL_ESC_TARGET = 1         # percent-encoded where a request target cannot carry the byte
    TPL_ESC_JSON = 2           # escaped inside a JSON string

    TPL_MAX_FEEDS = 64         # feeders one run may use (a bit each in tpl_t.feeds)
    TPL_MAX_RUN = 4096         # longest random hex/alnum string
    TPL_DEC_MAX = 20           # digits of 2^64 - 1

    FEED_SEQUENTIAL = 0        # rows in order, wrapping
    FEED_RANDOM = 1            # a uniformly random row per request
    FEED_UNIQUE = 2            # rows in order, each once; then the run stops


ctypedef struct tpl_op_t:
    uint32_t kind
    uint32_t a
    uint32_t b
    uint32_t pad


ctypedef struct tpl_t:
    const char *blob
    size_t blob_len
    const tpl_op_t *ops
    uint32_t nops
    uint32_t body_op        # ops[body_op:] are the body when clen (else nops)
    bint clen               # the head has a TPL_CLEN op: render the body first
    bint needs_time         # some op reads the wall clock
    bint needs_seq
    uint64_t feeds          # bit f: the template reads feeder f
    uint64_t vars           # bit v: the template reads flow variable v
    size_t head_cap         # bound on the rendered head (ops[:body_op])
    size_t cap              # bound on the whole rendered request


ctypedef struct feed_t:
    const char *arena       # every value of every row, back to back
    const uint32_t *off     # value (row r, variant v) = arena[off[r*nvars+v] : off[r*nvars+v+1]]
    uint32_t nrows
    uint32_t nvars
    int order               # FEED_*
    uint64_t next           # sequential/unique: the next row
    uint32_t *var_max       # longest value of each variant (the render bound)


ctypedef struct tpl_ctx_t:
    feed_t *feeds
    uint32_t nfeeds
    uint64_t rng            # xorshift64* for random rows and generators (never 0)
    uint64_t seq_next       # the next request's {{ seq }}
    uint64_t seq_step
    uint32_t data_out       # 0, or 1 + the unique feeder that ran out of rows
    uint32_t rows[TPL_MAX_FEEDS]   # this request's row of each feeder it reads
    # A flow step's request (flow.pxi sets these around tpl_render, NULL/0 otherwise): the feeders
    # in vu_mask take the user's rows of this iteration instead of a draw; TPL_VAR and TPL_COOKIE
    # read the user's variables and jar. var_cap and jar_cap bound them (set once, for tpl_setup).
    const uint32_t *vu_rows
    uint64_t vu_mask
    const char *vars        # variable v at vars[v * var_cap : v * var_cap + var_len[v]]
    const uint32_t *var_len
    const char *jar
    size_t jar_len
    uint32_t var_cap
    uint32_t jar_cap


cdef inline uint64_t tpl_rand(tpl_ctx_t *x) noexcept nogil:
    x.rng ^= x.rng >> 12
    x.rng ^= x.rng << 25
    x.rng ^= x.rng >> 27
    return x.rng * 2685821657736338717ULL


cdef inline size_t tpl_dec(char *out, uint64_t v) noexcept nogil:
    cdef char tmp[TPL_DEC_MAX]
    cdef size_t n = 0, i
    while True:
        tmp[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef const char *TPL_HEXDIG = b"0123456789abcdef"
cdef const char *TPL_ALNUM62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


cdef inline size_t tpl_hex(tpl_ctx_t *x, char *out, uint32_t n) noexcept nogil:
    cdef uint32_t i
    cdef uint64_t r = 0
    for i in range(n):
        if i % 16 == 0:
            r = tpl_rand(x)
        out[i] = TPL_HEXDIG[r & 15]
        r >>= 4
    return n


cdef inline size_t tpl_alnum(tpl_ctx_t *x, char *out, uint32_t n) noexcept nogil:
    cdef uint32_t i
    cdef uint64_t r = 0
    for i in range(n):
        if i % 2 == 0:
            r = tpl_rand(x)
        # 32 random bits scaled to 0..61 (Lemire's multiply-shift; bias below 2^-26)
        out[i] = TPL_ALNUM62[((r & 0xFFFFFFFFULL) * 62) >> 32]
        r >>= 32
    return n


cdef inline size_t tpl_uuid(tpl_ctx_t *x, char *out) noexcept nogil:
    cdef uint8_t b[16]
    cdef uint64_t r0 = tpl_rand(x), r1 = tpl_rand(x)
    cdef int i, k = 0
    for i in range(8):
        b[i] = <uint8_t>(r0 >> (8 * i))
        b[8 + i] = <uint8_t>(r1 >> (8 * i))
    b[6] = (b[6] & 0x0F) | 0x40     # version 4 (RFC 9562 §5.4)
    b[8] = (b[8] & 0x3F) | 0x80     # variant 10
    for i in range(16):
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[k] = 45             # '-'
            k += 1
        out[k] = TPL_HEXDIG[b[i] >> 4]
        out[k + 1] = TPL_HEXDIG[b[i] & 15]
        k += 2
    return 36


cdef size_t tpl_run_ops(tpl_ctx_t *x, const tpl_t *t, uint32_t i0, uint32_t i1, char *out,
                        uint64_t seq, uint64_t now_ns, size_t clen) noexcept nogil:
    """Render ops[i0:i1] at out; returns the bytes written (<= the bound tpl_setup computed)."""
    cdef size_t pos = 0, n
    cdef uint32_t i, j
    cdef const tpl_op_t *op
    cdef const feed_t *f
    for i in range(i0, i1):
        op = &t.ops[i]
        if op.kind == TPL_STATIC:
            memcpy(out + pos, t.blob + op.a, op.b)
            pos += op.b
        elif op.kind == TPL_FEED:
            f = &x.feeds[op.a]
            j = x.rows[op.a] * f.nvars + op.b
            n = f.off[j + 1] - f.off[j]
            memcpy(out + pos, f.arena + f.off[j], n)
            pos += n
        elif op.kind == TPL_SEQ:
            pos += tpl_dec(out + pos, seq)
        elif op.kind == TPL_RANDINT:
            pos += tpl_dec(out + pos, op.a + (tpl_rand(x) >> 32) * (<uint64_t>op.b - op.a + 1) // (1ULL << 32))
        elif op.kind == TPL_HEX:
            pos += tpl_hex(x, out + pos, op.a)
        elif op.kind == TPL_ALNUM:
            pos += tpl_alnum(x, out + pos, op.a)
        elif op.kind == TPL_UUID:
            pos += tpl_uuid(x, out + pos)
        elif op.kind == TPL_TIME_S:
            pos += tpl_dec(out + pos, now_ns // 1000000000ULL)
        elif op.kind == TPL_TIME_MS:
            pos += tpl_dec(out + pos, now_ns // 1000000ULL)
        elif op.kind == TPL_CLEN:
            pos += tpl_dec(out + pos, clen)
        elif op.kind == TPL_VAR:
            pos += tpl_var(x, op.a, op.b, out + pos)
        elif op.kind == TPL_COOKIE:
            if x.jar_len:
                memcpy(out + pos, b"Cookie: ", 8)
                memcpy(out + pos + 8, x.jar, x.jar_len)
                memcpy(out + pos + 8 + x.jar_len, b"\r\n", 2)
                pos += 10 + x.jar_len
    return pos


cdef inline size_t tpl_var(const tpl_ctx_t *x, uint32_t v, uint32_t esc, char *out) noexcept nogil:
    """Flow variable v (empty when the user has none yet: only a skipped step's would be, and
    skipped steps are not sent), escaped for where it goes."""
    cdef const char *p
    cdef size_t n
    if x.vars == NULL:
        return 0
    p = x.vars + <size_t>v * x.var_cap
    n = x.var_len[v]
    if esc == TPL_ESC_TARGET:
        return bf_flow_escape_target(p, n, out)
    if esc == TPL_ESC_JSON:
        return bf_flow_escape_json(p, n, out)
    memcpy(out, p, n)
    return n


cdef size_t tpl_render(tpl_ctx_t *x, const tpl_t *t, char *out) noexcept nogil:
    """One request from template t into out (at least t.cap bytes): take this request's rows, seq
    and clock, then render. Sets x.data_out when a unique feeder hands out its last row."""
    cdef uint32_t f
    cdef feed_t *fd
    cdef uint64_t seq = 0, now_ns = 0
    cdef size_t blen, hlen
    cdef timespec ts
    for f in range(x.nfeeds):
        if not (t.feeds >> f) & 1:
            continue
        if (x.vu_mask >> f) & 1:
            x.rows[f] = x.vu_rows[f]    # the user's row of this iteration (flow.pxi)
            continue
        fd = &x.feeds[f]
        if fd.order == FEED_RANDOM:
            x.rows[f] = <uint32_t>(((tpl_rand(x) >> 32) * fd.nrows) >> 32)
        elif fd.order == FEED_UNIQUE:
            # the loop starts no request once data_out is set, so next < nrows here
            x.rows[f] = <uint32_t>fd.next
            fd.next += 1
            if fd.next >= fd.nrows and x.data_out == 0:
                x.data_out = f + 1
        else:
            x.rows[f] = <uint32_t>(fd.next % fd.nrows)
            fd.next += 1
    if t.needs_seq:
        seq = x.seq_next
        x.seq_next += x.seq_step
    if t.needs_time:
        clock_gettime(CLOCK_REALTIME, &ts)
        now_ns = <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec
    if not t.clen:
        return tpl_run_ops(x, t, 0, t.nops, out, seq, now_ns, 0)
    blen = tpl_run_ops(x, t, t.body_op, t.nops, out + t.head_cap, seq, now_ns, 0)
    hlen = tpl_run_ops(x, t, 0, t.body_op, out, seq, now_ns, blen)
    memmove(out + hlen, out + t.head_cap, blen)
    return hlen + blen


cdef int tpl_setup(tpl_t *t, const tpl_ctx_t *x) noexcept nogil:
    """Check t's ops against the blob and the feeders and compute its bounds (head_cap, cap).
    Returns 0, or 1 + the index of the first bad op."""
    cdef uint32_t i
    cdef size_t m, total = 0, head = 0
    cdef const tpl_op_t *op
    t.feeds = 0
    t.vars = 0
    t.clen = 0
    t.needs_time = 0
    t.needs_seq = 0
    t.body_op = t.nops
    for i in range(t.nops):
        op = &t.ops[i]
        if op.kind == TPL_STATIC:
            if <size_t>op.a + op.b > t.blob_len:
                return i + 1
            m = op.b
        elif op.kind == TPL_FEED:
            if op.a >= x.nfeeds or op.b >= x.feeds[op.a].nvars:
                return i + 1
            t.feeds |= 1ULL << op.a
            m = x.feeds[op.a].var_max[op.b]
        elif op.kind == TPL_SEQ:
            t.needs_seq = 1
            m = TPL_DEC_MAX
        elif op.kind == TPL_RANDINT:
            if op.a > op.b:
                return i + 1
            m = TPL_DEC_MAX
        elif op.kind == TPL_HEX or op.kind == TPL_ALNUM:
            if op.a > TPL_MAX_RUN:
                return i + 1
            m = op.a
        elif op.kind == TPL_UUID:
            m = 36
        elif op.kind == TPL_TIME_S or op.kind == TPL_TIME_MS:
            t.needs_time = 1
            m = TPL_DEC_MAX
        elif op.kind == TPL_CLEN:
            if t.clen:
                return i + 1
            t.clen = 1
            t.body_op = op.a    # the first op of the body
            if t.body_op <= i or t.body_op > t.nops:
                return i + 1
            m = TPL_DEC_MAX
        elif op.kind == TPL_VAR:
            if op.a >= 64 or op.b > TPL_ESC_JSON or x.var_cap == 0:
                return i + 1
            t.vars |= 1ULL << op.a
            m = <size_t>x.var_cap * (6 if op.b == TPL_ESC_JSON else 3 if op.b == TPL_ESC_TARGET else 1)
        elif op.kind == TPL_COOKIE:
            if i >= t.body_op or x.jar_cap == 0:
                return i + 1
            m = 10 + <size_t>x.jar_cap
        else:
            return i + 1
        if i < t.body_op:
            head += m
        total += m
    t.head_cap = head
    t.cap = total   # a templated body is rendered at head_cap: it ends by head + body bound
    return 0
