# serve.pxi — owns the built-in HTTP/1.1 target (`barfast serve`, class Server): socket, nogil epoll loop.
# Never: Python objects, allocation per request, exceptions or reordered responses inside run().
# Invariants: responses leave in request order (RFC 9112 §9.3.2); counters single-writer; C names srv_*.
#
# Bodies of requests are counted and skipped, never kept; epoll interest never changes per request.
#
# Speed by construction (the MEASURING.md floor): an unpipelined keep-alive request costs one read() and
# one sendmsg(); epoll is level-triggered and write interest (EPOLLOUT) is armed only while a write would
# block; pipelined requests found in one read are answered with ONE sendmsg of the concatenated responses
# (an iovec per prebuilt response, nothing is copied). Responses are built once per status at start.
#
# Faults, all deterministic for a seed: a fixed and/or random delay per response
# (per-connection FIFO + one global min-heap of due times, waited on with epoll_pwait2's ns timeout and
# 1 ns timer slack), a periodic whole-server stall, a weighted status mix, and close-every-N.

cdef extern from *:
    """
    #include <errno.h>
    #include <math.h>
    #include <poll.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    #include <time.h>
    #include <unistd.h>
    #include <arpa/inet.h>
    #include <netinet/in.h>
    #include <netinet/tcp.h>
    #include <sys/epoll.h>
    #include <sys/eventfd.h>
    #include <sys/prctl.h>
    #include <sys/socket.h>
    #include <sys/syscall.h>
    #include <sys/uio.h>

    #include "bf_sys.h"

    static int srv_have_pwait2 = 1;

    static inline uint64_t srv_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }

    /* epoll wait with a nanosecond timeout (< 0: forever). epoll_pwait2(2) takes a timespec, so a due
     * time is met to the hrtimer's precision instead of epoll_wait's whole milliseconds. Called raw
     * (bf_sys.h, as the client does) so the build does not need glibc >= 2.35; on kernels without it,
     * fall back to epoll_wait with the timeout rounded UP (never early, up to 1 ms late). */
    static int srv_epoll_wait_ns(int epfd, struct epoll_event *ev, int n, int64_t timeout_ns) {
        if (srv_have_pwait2) {
            struct timespec ts, *tp = NULL;
            if (timeout_ns >= 0) {
                ts.tv_sec = (time_t)(timeout_ns / 1000000000);
                ts.tv_nsec = (long)(timeout_ns % 1000000000);
                tp = &ts;
            }
            int r = bf_epoll_pwait2(epfd, ev, n, tp);
            if (r >= 0 || errno != ENOSYS) return r;
            srv_have_pwait2 = 0;
        }
        int ms = -1;
        if (timeout_ns >= 0) {
            int64_t m = (timeout_ns + 999999) / 1000000;
            ms = m > 86400000 ? 86400000 : (int)m;
        }
        return bf_epoll_wait(epfd, ev, n, ms);
    }

    /* Sleep until `until_ns` (CLOCK_MONOTONIC) or until the eventfd becomes readable (stop()).
     * Returns 1 when woken by the eventfd. ppoll(2) takes a timespec: ns resolution. */
    static int srv_sleep_until(int wakefd, uint64_t until_ns) {
        for (;;) {
            uint64_t now = srv_now_ns();
            if (now >= until_ns) return 0;
            uint64_t d = until_ns - now;
            struct timespec ts = { (time_t)(d / 1000000000ull), (long)(d % 1000000000ull) };
            struct pollfd p = { wakefd, POLLIN, 0 };
            int r = ppoll(&p, 1, &ts, NULL);
            if (r > 0) return 1;
        }
    }

    static inline void srv_set_timerslack(void) { prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); }

    /* Listening socket: SO_REUSEADDR, non-blocking, bound to a numeric IPv4 or IPv6 host.
     * Returns the fd, or -1 with errno set (EINVAL: not an IP literal). *bound_port gets the port. */
    static int srv_listen(const char *host, int port, int backlog, int *bound_port) {
        struct sockaddr_storage ss;
        socklen_t len;
        int family, one = 1;
        memset(&ss, 0, sizeof ss);
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            family = AF_INET; a4->sin_family = AF_INET; a4->sin_port = htons((uint16_t)port);
            len = sizeof *a4;
        } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            family = AF_INET6; a6->sin6_family = AF_INET6; a6->sin6_port = htons((uint16_t)port);
            len = sizeof *a6;
        } else {
            errno = EINVAL;
            return -1;
        }
        int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
            || bind(fd, (struct sockaddr *)&ss, len) < 0
            || listen(fd, backlog) < 0) {
            int e = errno; close(fd); errno = e; return -1;
        }
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) { int e = errno; close(fd); errno = e; return -1; }
        *bound_port = ntohs(family == AF_INET ? a4->sin_port : a6->sin6_port);
        return fd;
    }

    static inline int srv_accept(int lfd) {
        return accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }

    static inline void srv_nodelay(int fd) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }

    static inline int srv_epoll_set(int epfd, int op, int fd, uint32_t events, uint64_t tag) {
        struct epoll_event ev;
        ev.events = events;
        ev.data.u64 = tag;
        return epoll_ctl(epfd, op, fd, &ev);
    }

    /* sendmsg rather than writev only for MSG_NOSIGNAL: a peer that reset must give EPIPE, not SIGPIPE
     * (send(2)), even when the host process did not ignore SIGPIPE. */
    static inline ssize_t srv_sendv(int fd, struct iovec *iov, int n) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        return sendmsg(fd, &m, MSG_NOSIGNAL);
    }

    /* EAGAIN and EWOULDBLOCK are the same value on Linux but need not be (socket(7)). */
    static inline int srv_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }
    static inline void errno_set(int e) { errno = e; }

    static inline void srv_wake(int fd) { uint64_t one = 1; ssize_t r = write(fd, &one, 8); (void)r; }
    static inline void srv_drain(int fd) { uint64_t v; ssize_t r = read(fd, &v, 8); (void)r; }

    /* splitmix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for fault injection. */
    static inline uint64_t srv_rand(uint64_t *state) {
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    /* uniform in [0, 1) with 53 random bits */
    static inline double srv_rand01(uint64_t *state) { return (double)(srv_rand(state) >> 11) * 0x1.0p-53; }

    /* Single-writer counters: a relaxed store of (relaxed load + v) compiles to a plain add on x86-64
     * and arm64 (no lock prefix), yet other threads' relaxed loads are race-free. */
    static inline void srv_add(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
    }

    /* RFC 9110 §5.6.2 tchar */
    static const unsigned char srv_tchar_tab[256] = {
        ['!']=1,['#']=1,['$']=1,['%']=1,['&']=1,['\\'']=1,['*']=1,['+']=1,['-']=1,['.']=1,['^']=1,['_']=1,
        ['`']=1,['|']=1,['~']=1,
        ['0']=1,['1']=1,['2']=1,['3']=1,['4']=1,['5']=1,['6']=1,['7']=1,['8']=1,['9']=1,
        ['A']=1,['B']=1,['C']=1,['D']=1,['E']=1,['F']=1,['G']=1,['H']=1,['I']=1,['J']=1,['K']=1,['L']=1,
        ['M']=1,['N']=1,['O']=1,['P']=1,['Q']=1,['R']=1,['S']=1,['T']=1,['U']=1,['V']=1,['W']=1,['X']=1,
        ['Y']=1,['Z']=1,
        ['a']=1,['b']=1,['c']=1,['d']=1,['e']=1,['f']=1,['g']=1,['h']=1,['i']=1,['j']=1,['k']=1,['l']=1,
        ['m']=1,['n']=1,['o']=1,['p']=1,['q']=1,['r']=1,['s']=1,['t']=1,['u']=1,['v']=1,['w']=1,['x']=1,
        ['y']=1,['z']=1,
    };
    static inline int srv_is_tchar(unsigned char c) { return srv_tchar_tab[c]; }

    /* Case-insensitive compare of a validated token (no CTLs) with a lower-case literal. */
    static inline int srv_ieq(const unsigned char *a, const char *lit, size_t n) {
        for (size_t i = 0; i < n; i++) if ((a[i] | 0x20) != (unsigned char)lit[i]) return 0;
        return 1;
    }
    """
    ctypedef long srv_ssize_t "ssize_t"

    struct srv_iovec "iovec":
        void *iov_base
        size_t iov_len

    ctypedef union srv_epoll_data "epoll_data_t":
        uint64_t u64

    struct srv_epoll_event "epoll_event":
        uint32_t events
        srv_epoll_data data

    enum:
        SRV_EPOLLIN "EPOLLIN"
        SRV_EPOLLOUT "EPOLLOUT"
        SRV_EPOLLERR "EPOLLERR"
        SRV_EPOLLHUP "EPOLLHUP"
        SRV_EPOLL_CTL_ADD "EPOLL_CTL_ADD"
        SRV_EPOLL_CTL_MOD "EPOLL_CTL_MOD"
        SRV_EPOLL_CTL_DEL "EPOLL_CTL_DEL"
        SRV_EPOLL_CLOEXEC "EPOLL_CLOEXEC"
        SRV_EFD_NONBLOCK "EFD_NONBLOCK"
        SRV_EFD_CLOEXEC "EFD_CLOEXEC"
        SRV_EAGAIN "EAGAIN"
        SRV_EINTR "EINTR"
        SRV_ECONNABORTED "ECONNABORTED"
        SRV_EMFILE "EMFILE"
        SRV_ENFILE "ENFILE"
        SRV_ENOBUFS "ENOBUFS"
        SRV_ENOMEM "ENOMEM"
        SRV_SHUT_WR "SHUT_WR"
        SRV_EPIPE "EPIPE"

    int srv_errno "errno"
    uint64_t srv_now_ns() nogil
    int srv_epoll_wait_ns(int epfd, srv_epoll_event *ev, int n, int64_t timeout_ns) nogil
    int srv_sleep_until(int wakefd, uint64_t until_ns) nogil
    void srv_set_timerslack() nogil
    int srv_listen(const char *host, int port, int backlog, int *bound_port) nogil
    int srv_accept(int lfd) nogil
    void srv_nodelay(int fd) nogil
    int srv_epoll_set(int epfd, int op, int fd, uint32_t events, uint64_t tag) nogil
    srv_ssize_t srv_sendv(int fd, srv_iovec *iov, int n) nogil
    bint srv_would_block(int e) nogil
    void errno_set(int e) nogil
    void srv_wake(int fd) nogil
    void srv_drain(int fd) nogil
    uint64_t srv_rand(uint64_t *state) nogil
    double srv_rand01(uint64_t *state) nogil
    void srv_add(uint64_t *p, uint64_t v) nogil
    bint srv_is_tchar(unsigned char c) nogil
    bint srv_ieq(const unsigned char *a, const char *lit, size_t n) nogil
    int srv_epoll_create1 "epoll_create1"(int flags) nogil
    int srv_eventfd "eventfd"(unsigned int initval, int flags) nogil
    int srv_close_fd "close"(int fd) nogil
    int srv_shutdown "shutdown"(int fd, int how) nogil
    srv_ssize_t srv_read "read"(int fd, void *buf, size_t n) nogil
    void *srv_malloc "malloc"(size_t n) nogil
    void *srv_realloc "realloc"(void *p, size_t n) nogil
    void srv_free "free"(void *p) nogil
    void *srv_memcpy "memcpy"(void *d, const void *s, size_t n) nogil
    void *srv_memmove "memmove"(void *d, const void *s, size_t n) nogil
    void *srv_memset "memset"(void *d, int c, size_t n) nogil
    int srv_memcmp "memcmp"(const void *a, const void *b, size_t n) nogil
    void *srv_memmem "memmem"(const void *h, size_t hn, const void *n, size_t nn) nogil
    double srv_log "log"(double x) nogil
    char *srv_strerror "strerror"(int e) nogil


cdef enum:
    SRV_RBUF_SIZE = 8192        # per-connection receive buffer; also the request header limit (-> 431)
    SRV_QCAP = 128              # queued responses per connection (power of two); more waits in rbuf
    SRV_QMASK = SRV_QCAP - 1
    SRV_MAX_EVENTS = 256
    SRV_MAX_STATUSES = 16
    SRV_BACKLOG = 4096
    SRV_CONTIGUOUS_MAX = 16384  # bodies up to this size are stored after each header block (one iovec)
    SRV_TLS_WBUF = 262144       # TLS: bytes gathered for one SSL_write (16 records)
    # response table: 3 variants per status, then the error responses
    SRV_V_KEEP = 0              # HTTP/1.1 keep-alive: no Connection header (RFC 9112 §9.3 default)
    SRV_V_CLOSE = 1             # "Connection: close", the connection is closed after it
    SRV_V_KA10 = 2              # "Connection: keep-alive" for HTTP/1.0 clients that asked (ab -k)
    SRV_RESP_400 = SRV_MAX_STATUSES * 3
    SRV_RESP_431 = SRV_RESP_400 + 1
    SRV_RESP_501 = SRV_RESP_400 + 2
    SRV_NRESP = SRV_RESP_400 + 3
    # --sessions: s.extra holds the 401 (3 variants), then SRV_LOGINS login responses (3 each)
    SRV_LOGINS = 1024
    SRV_EXTRA_401 = 0
    SRV_EXTRA_LOGIN = 3
    SRV_NEXTRA = SRV_EXTRA_LOGIN + SRV_LOGINS * 3
    # request flags (what the parser learned), kept for a request whose body is still arriving
    SRV_REQ_HEAD = 4
    SRV_REQ_LOGIN = 8           # --sessions: POST /login
    SRV_REQ_DENY = 16           # --sessions: no valid token, or a token and cookie that disagree
    # queued response flags
    SRV_OUT_HEAD = 1            # send the header block only
    SRV_OUT_CLOSE = 2           # the client asked to close: close() right after this response
    SRV_OUT_LINGER = 4          # we close: half-close, then drain until EOF (RFC 9112 §9.6)
    # connection flags
    SRV_C_WBLOCK = 1            # due bytes are unsent; EPOLLOUT is armed
    SRV_C_RDEOF = 2             # the client half-closed; answer what is queued, then close
    SRV_C_NOMORE = 4            # a closing response is queued: parse nothing more
    SRV_C_LINGER = 8            # write side shut; reading and discarding until EOF or the linger timer
    # timer kinds
    SRV_T_RESP = 0
    SRV_T_LINGER = 1
    # epoll tags (data.u64): connection slot + SRV_TAG_BASE
    SRV_TAG_LISTEN = 0
    SRV_TAG_WAKE = 1
    SRV_TAG_BASE = 2

cdef uint64_t SRV_LINGER_NS = 2_000_000_000        # how long a lingering close waits for the client's FIN
cdef uint64_t SRV_ACCEPT_PAUSE_NS = 100_000_000     # accept backoff after EMFILE/ENFILE (nginx does 500 ms)

ctypedef struct srv_resp_t:
    char *a                     # header block (and the body when contiguous); owned
    uint32_t alen               # bytes of `a` for a full response
    uint32_t head_len           # bytes of `a` for HEAD (the header block)
    const char *b               # shared body when not contiguous (NULL otherwise)
    uint32_t blen
    uint32_t status

ctypedef struct srv_out_t:      # one queued response
    uint64_t due_ns             # 0: now; else CLOCK_MONOTONIC time it may be sent
    uint32_t resp               # index into srv_t.resp
    uint32_t flags              # SRV_OUT_*

ctypedef struct srv_conn_t:
    int fd
    uint32_t slot
    uint32_t gen                # bumped on close: timers carrying an older gen are stale
    uint32_t events             # current epoll interest
    uint32_t flags              # SRV_C_*
    uint32_t rlen               # bytes in rbuf
    uint32_t scan               # where the search for the end of the header block resumes
    uint32_t pend               # request flags of the request whose body is being skipped
    uint64_t body_left          # request body bytes still to skip
    uint64_t nresp              # responses queued on this connection (for close_every)
    uint32_t qhead
    uint32_t qcount
    uint32_t qoff               # bytes of the head response already written
    SSL *ssl                    # --tls-cert: the connection's TLS state (NULL: plain)
    bint hs                     # its handshake is not done yet
    srv_out_t q[SRV_QCAP]
    unsigned char rbuf[SRV_RBUF_SIZE]

ctypedef struct srv_timer_t:
    uint64_t due_ns
    uint32_t slot
    uint32_t gen                # low bit: kind (SRV_T_*), rest: connection gen << 1

ctypedef struct srv_req_t:
    int head
    int minor
    int close
    int keep_alive
    int te
    int64_t clen
    size_t tpos                 # the request target, and the Authorization and Cookie values
    size_t tlen                 # (offsets into the header block; len 0: none)
    size_t apos
    size_t alen
    size_t cpos
    size_t clen_cookie

ctypedef struct srv_counters_t:
    uint64_t requests
    uint64_t responses
    uint64_t connections_accepted
    uint64_t connections_closed
    uint64_t bytes_rx
    uint64_t bytes_tx
    uint64_t bad_requests
    uint64_t stalls
    uint64_t accept_errors
    uint64_t delayed            # delayed responses written (timer accuracy self-check below)
    uint64_t late_ns_sum        # sum over them of (time of the sendmsg - due time)
    uint64_t late_ns_max
    uint64_t tls_handshakes     # --tls-cert: handshakes completed, of which resumed
    uint64_t tls_resumed
    uint64_t tls_failures       # handshakes or records that failed (the connection is closed)
    uint64_t logins             # --sessions: tokens issued
    uint64_t authorized         # --sessions: requests with a valid token and matching cookie
    uint64_t rejected           # --sessions: requests answered 401
    uint64_t status[SRV_MAX_STATUSES]

ctypedef struct srv_t:
    int lfd
    int epfd
    int wakefd
    int stop
    int running
    int port
    # connections: slot -> conn (allocated on first use, kept for reuse), and a stack of free slots
    srv_conn_t **conns
    uint32_t *free_slots
    uint32_t cap
    uint32_t nfree
    # timers: binary min-heap on due_ns
    srv_timer_t *heap
    size_t heap_len
    size_t heap_cap
    # responses
    srv_resp_t resp[SRV_NRESP]
    char *body
    uint32_t nstatus
    uint64_t cum_weight[SRV_MAX_STATUSES]
    uint64_t total_weight
    # faults
    uint64_t delay_ns
    int delay_dist              # 0 none, 1 uniform [a, b], 2 exponential with mean a
    uint64_t delay_a_ns
    uint64_t delay_b_ns
    uint64_t stall_ns
    uint64_t stall_every_ns
    uint64_t stall_epoch_ns     # periods count from the first run()
    uint64_t close_every
    # --max-concurrency: at most max_conc requests in service; busy_until[k] is when service slot
    # k frees. With one fixed delay, slots taken round robin are an exact FIFO queue of max_conc
    # servers (the slot taken longest ago frees first), so the capacity is max_conc / delay.
    uint64_t *busy_until
    uint32_t max_conc
    uint32_t busy_next
    uint64_t rng
    uint64_t accept_resume_ns   # 0: accepting; else listen fd removed from epoll until then
    SSL_CTX *ssl_ctx            # --tls-cert (NULL: plain HTTP)
    char *tbuf                  # TLS: the due responses of one flush, gathered for one SSL_write
    srv_resp_t *extra           # --sessions: SRV_NEXTRA responses (NULL: off)
    uint64_t secret             # --sessions: the key of the tokens' check digits
    uint64_t login_next
    srv_counters_t c


# ----------------------------------------------------------------------------------------------- timers

cdef bint srv_heap_push(srv_t *s, uint64_t due, uint32_t slot, uint32_t gen) noexcept nogil:
    cdef size_t i, parent, ncap
    cdef srv_timer_t *h
    cdef srv_timer_t t
    if s.heap_len == s.heap_cap:  # rare: doubling
        ncap = s.heap_cap * 2 if s.heap_cap else 1024
        h = <srv_timer_t *>srv_realloc(s.heap, ncap * sizeof(srv_timer_t))
        if h == NULL:
            return 0
        s.heap = h
        s.heap_cap = ncap
    t.due_ns = due
    t.slot = slot
    t.gen = gen
    i = s.heap_len
    s.heap_len += 1
    while i > 0:
        parent = (i - 1) >> 1
        if s.heap[parent].due_ns <= due:
            break
        s.heap[i] = s.heap[parent]
        i = parent
    s.heap[i] = t
    return 1


cdef void srv_heap_pop(srv_t *s) noexcept nogil:
    cdef size_t i = 0, child, n
    cdef srv_timer_t last
    s.heap_len -= 1
    n = s.heap_len
    if n == 0:
        return
    last = s.heap[n]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and s.heap[child + 1].due_ns < s.heap[child].due_ns:
            child += 1
        if s.heap[child].due_ns >= last.due_ns:
            break
        s.heap[i] = s.heap[child]
        i = child
    s.heap[i] = last


# ------------------------------------------------------------------------------------------ connections

cdef srv_conn_t *srv_conn_get(srv_t *s) noexcept nogil:
    """A free connection struct from the pool; the pool doubles when empty (rare)."""
    cdef uint32_t ncap, i, slot
    cdef srv_conn_t **nc
    cdef uint32_t *nf
    cdef srv_conn_t *c
    if s.nfree == 0:
        ncap = s.cap * 2 if s.cap else 64
        nc = <srv_conn_t **>srv_realloc(s.conns, ncap * sizeof(srv_conn_t *))
        if nc == NULL:
            return NULL
        s.conns = nc
        nf = <uint32_t *>srv_realloc(s.free_slots, ncap * sizeof(uint32_t))
        if nf == NULL:
            return NULL
        s.free_slots = nf
        i = ncap
        while i > s.cap:  # push high slots first so low slots are reused first
            i -= 1
            s.conns[i] = NULL
            s.free_slots[s.nfree] = i
            s.nfree += 1
        s.cap = ncap
    slot = s.free_slots[s.nfree - 1]
    c = s.conns[slot]
    if c == NULL:
        c = <srv_conn_t *>srv_malloc(sizeof(srv_conn_t))
        if c == NULL:
            return NULL
        c.gen = 0
        c.slot = slot
        s.conns[slot] = c
    s.nfree -= 1
    c.fd = -1
    c.events = 0
    c.flags = 0
    c.rlen = 0
    c.scan = 0
    c.pend = 0
    c.body_left = 0
    c.nresp = 0
    c.qhead = 0
    c.qcount = 0
    c.qoff = 0
    c.ssl = NULL
    c.hs = 0
    return c


cdef void srv_close(srv_t *s, srv_conn_t *c) noexcept nogil:
    """Close and return to the pool. close() also removes the fd from the epoll set (epoll(7))."""
    if c.ssl != NULL:
        bf_tls_free(c.ssl)
        c.ssl = NULL
    srv_close_fd(c.fd)
    c.fd = -1
    c.gen += 1
    c.qcount = 0
    s.free_slots[s.nfree] = c.slot
    s.nfree += 1
    srv_add(&s.c.connections_closed, 1)


cdef void srv_interest(srv_t *s, srv_conn_t *c) noexcept nogil:
    """Set epoll interest from the state; a syscall only when it changes (never in the steady state)."""
    cdef uint32_t want
    if c.flags & SRV_C_LINGER:
        want = SRV_EPOLLIN
    elif c.flags & SRV_C_WBLOCK:
        want = SRV_EPOLLOUT             # backpressure: read nothing more until the client drains
    elif c.flags & SRV_C_RDEOF or c.rlen >= SRV_RBUF_SIZE:
        want = 0                        # waiting on timers (delayed responses) only
    else:
        want = SRV_EPOLLIN
    if want != c.events:
        srv_epoll_set(s.epfd, SRV_EPOLL_CTL_MOD, c.fd, want, c.slot + SRV_TAG_BASE)
        c.events = want


cdef void srv_linger(srv_t *s, srv_conn_t *c, uint64_t now) noexcept nogil:
    """Server-initiated close, RFC 9112 §9.6: half-close first, then read and discard until the client's
    FIN (or a timer), so that unread request bytes cannot make close() send a RST that destroys the
    response before the client read it."""
    # TLS: closed at once (a half-close under TLS would need a close_notify exchange first)
    if (c.ssl != NULL or c.flags & SRV_C_RDEOF
            or not srv_heap_push(s, now + SRV_LINGER_NS, c.slot, (c.gen << 1) | SRV_T_LINGER)):
        srv_close(s, c)
        return
    srv_shutdown(c.fd, SRV_SHUT_WR)
    c.flags = (c.flags | SRV_C_LINGER) & ~SRV_C_WBLOCK
    c.rlen = 0
    srv_interest(s, c)


# -------------------------------------------------------------------------------------------- requests

cdef int srv_parse_head(const unsigned char *p, size_t n, srv_req_t *r) noexcept nogil:
    """Parse one complete header block p[0:n] (ends with CRLF CRLF). Returns 0 or an error response index.

    Strict where it matters for framing (RFC 9112): request-line = method SP request-target SP
    HTTP-version CRLF (§3); field-line = field-name ":" OWS field-value OWS CRLF (§5), no obs-fold (§5.2:
    rejected with 400), bare LF rejected; Content-Length digits only, conflicting values -> 400 (§6.3);
    any Transfer-Encoding -> 501 (chunked request bodies are not implemented; §6.1 allows 501).
    """
    cdef size_t i = 0, start, vstart, vend, nlen, t0
    cdef const unsigned char *name
    cdef int64_t v
    r.head = 0
    r.minor = 1
    r.close = 0
    r.keep_alive = 0
    r.te = 0
    r.clen = -1
    r.apos = r.alen = r.cpos = r.clen_cookie = 0
    while i < n and srv_is_tchar(p[i]):
        i += 1
    if i == 0 or i >= n or p[i] != 32:
        return SRV_RESP_400
    if i == 4 and srv_memcmp(p, b"HEAD", 4) == 0:
        r.head = 1
    i += 1
    start = i
    while i < n and p[i] > 32 and p[i] != 127:
        i += 1
    if i == start or i >= n or p[i] != 32:
        return SRV_RESP_400
    r.tpos = start
    r.tlen = i - start
    i += 1
    if (n - i < 10 or srv_memcmp(p + i, b"HTTP/1.", 7) != 0 or p[i + 7] < 48 or p[i + 7] > 57
            or p[i + 8] != 13 or p[i + 9] != 10):
        return SRV_RESP_400
    r.minor = p[i + 7] - 48
    i += 10
    while True:
        if i + 1 >= n:
            return SRV_RESP_400
        if p[i] == 13:
            if p[i + 1] == 10:
                break
            return SRV_RESP_400
        start = i
        while i < n and srv_is_tchar(p[i]):
            i += 1
        if i == start or i >= n or p[i] != 58:  # also rejects obs-fold (line starts with SP/HT)
            return SRV_RESP_400
        name = p + start
        nlen = i - start
        i += 1
        while i < n and (p[i] == 32 or p[i] == 9):
            i += 1
        vstart = i
        while i < n and ((p[i] >= 32 and p[i] != 127) or p[i] == 9):
            i += 1
        if i + 1 >= n or p[i] != 13 or p[i + 1] != 10:
            return SRV_RESP_400
        vend = i
        while vend > vstart and (p[vend - 1] == 32 or p[vend - 1] == 9):
            vend -= 1
        i += 2
        if nlen == 14 and srv_ieq(name, b"content-length", 14):
            if vend == vstart or vend - vstart > 18:
                return SRV_RESP_400
            v = 0
            for t0 in range(vstart, vend):
                if p[t0] < 48 or p[t0] > 57:
                    return SRV_RESP_400
                v = v * 10 + (p[t0] - 48)
            if r.clen >= 0 and r.clen != v:
                return SRV_RESP_400
            r.clen = v
        elif nlen == 17 and srv_ieq(name, b"transfer-encoding", 17):
            r.te = 1
        elif nlen == 10 and srv_ieq(name, b"connection", 10):
            # comma-separated tokens (RFC 9110 §7.6.1)
            t0 = vstart
            while t0 < vend:
                while t0 < vend and (p[t0] == 32 or p[t0] == 9 or p[t0] == 44):
                    t0 += 1
                start = t0
                while t0 < vend and p[t0] != 44 and p[t0] != 32 and p[t0] != 9:
                    t0 += 1
                if t0 - start == 5 and srv_ieq(p + start, b"close", 5):
                    r.close = 1
                elif t0 - start == 10 and srv_ieq(p + start, b"keep-alive", 10):
                    r.keep_alive = 1
        elif nlen == 13 and srv_ieq(name, b"authorization", 13):
            r.apos = vstart
            r.alen = vend - vstart
        elif nlen == 6 and srv_ieq(name, b"cookie", 6):
            r.cpos = vstart
            r.clen_cookie = vend - vstart
    if r.te:
        return SRV_RESP_501
    return 0


# ------------------------------------------------------------------------------------------- sessions
# --sessions: POST /login issues a token and a cookie; every other request needs both, and they must
# agree. Token = 8 hex digits of the login's number k (mod SRV_LOGINS) + 16 hex check digits (a
# keyed hash of k): a token the server did not issue, a truncated or missing one, or one sent with
# another user's cookie (sid=<the same 8 digits>) is answered 401. Responses stay prebuilt: one per
# k, so 1,024 consecutive logins get distinct tokens.

cdef inline uint64_t srv_session_mac(uint64_t secret, uint64_t k) noexcept nogil:
    cdef uint64_t z = (k ^ secret) + 0x9E3779B97F4A7C15ULL   # splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline int srv_hex_val(unsigned char ch) noexcept nogil:
    if 48 <= ch <= 57:
        return ch - 48
    if 97 <= ch <= 102:
        return ch - 87
    return -1


cdef inline int64_t srv_hex_n(const unsigned char *p, int n) noexcept nogil:
    cdef int i, d
    cdef int64_t v = 0
    for i in range(n):
        d = srv_hex_val(p[i])
        if d < 0:
            return -1
        v = (v << 4) | d
    return v


cdef uint32_t srv_session_flags(srv_t *s, const unsigned char *p, const srv_req_t *r) noexcept nogil:
    """SRV_REQ_LOGIN, SRV_REQ_DENY or 0 (authorized) for a parsed request p (its header block)."""
    cdef const unsigned char *a
    cdef const unsigned char *ck
    cdef int64_t k
    cdef uint64_t mac = 0
    cdef int i, d
    cdef size_t j
    if (r.tlen == 6 or (r.tlen > 6 and p[r.tpos + 6] == 63)) and srv_memcmp(p + r.tpos, b"/login", 6) == 0:
        return SRV_REQ_LOGIN
    if r.alen != 31 or srv_memcmp(p + r.apos, b"Bearer ", 7) != 0:
        return SRV_REQ_DENY
    a = p + r.apos + 7
    k = srv_hex_n(a, 8)
    if k < 0 or k >= SRV_LOGINS:
        return SRV_REQ_DENY
    for i in range(16):
        d = srv_hex_val(a[8 + i])
        if d < 0:
            return SRV_REQ_DENY
        mac = (mac << 4) | <uint64_t>d
    if mac != srv_session_mac(s.secret, <uint64_t>k):
        return SRV_REQ_DENY
    ck = p + r.cpos
    j = 0
    while j + 12 <= r.clen_cookie:      # "sid=" + 8 digits, at the start or after "; "
        if (srv_memcmp(ck + j, b"sid=", 4) == 0 and (j == 0 or ck[j - 1] == 32 or ck[j - 1] == 59)
                and srv_memcmp(ck + j + 4, a, 8) == 0
                and (j + 12 == r.clen_cookie or ck[j + 12] == 59)):
            return 0
        j += 1
    return SRV_REQ_DENY


cdef bint srv_bad_prefix(const unsigned char *p, size_t n) noexcept nogil:
    """An incomplete header block that can already be rejected (binary garbage, a TLS hello...)."""
    cdef size_t i = 0
    if n == 0 or p[0] == 13:
        return 0
    while i < n and srv_is_tchar(p[i]):
        i += 1
    if i == n:
        return 0
    if p[i] != 32 or i == 0:
        return 1
    while i < n:
        if (p[i] < 32 and p[i] != 9 and p[i] != 10 and p[i] != 13) or p[i] == 127:
            return 1
        i += 1
    return 0


cdef inline uint64_t srv_due(srv_t *s, uint64_t now) noexcept nogil:
    cdef uint64_t d = s.delay_ns
    cdef double u
    if s.delay_dist == 1:
        d += s.delay_a_ns + <uint64_t>(<double>(s.delay_b_ns - s.delay_a_ns) * srv_rand01(&s.rng))
    elif s.delay_dist == 2:
        u = srv_rand01(&s.rng)
        d += <uint64_t>(-<double>s.delay_a_ns * srv_log(1.0 - u))
    return now + d if d else 0


cdef inline uint64_t srv_capped(srv_t *s, uint64_t now, uint64_t due) noexcept nogil:
    """With a concurrency cap, service starts when the next slot frees (FIFO): due moves later by
    the time the request queued. Due times stay in arrival order, so per connection too."""
    cdef uint32_t k
    cdef uint64_t start
    if not s.max_conc or not due:
        return due
    k = s.busy_next
    start = now if s.busy_until[k] < now else s.busy_until[k]
    due = start + (due - now)
    s.busy_until[k] = due
    s.busy_next = k + 1 if k + 1 < s.max_conc else 0
    return due


cdef void srv_push_out(srv_t *s, srv_conn_t *c, uint64_t due, uint32_t resp, uint32_t flags) noexcept nogil:
    cdef srv_out_t *o = &c.q[(c.qhead + c.qcount) & SRV_QMASK]
    o.resp = resp
    o.flags = flags
    if due and not srv_heap_push(s, due, c.slot, c.gen << 1):
        due = 0  # out of memory for the timer: answer now rather than never
    o.due_ns = due
    c.qcount += 1
    if flags & (SRV_OUT_CLOSE | SRV_OUT_LINGER):
        c.flags |= SRV_C_NOMORE


cdef void srv_respond(srv_t *s, srv_conn_t *c, uint64_t now, uint32_t req) noexcept nogil:
    """Queue the response to one complete request. req: SRV_V_* variant | SRV_REQ_HEAD."""
    cdef uint32_t idx = 0, variant = req & 3, flags = 0
    cdef uint64_t x
    if req & (SRV_REQ_LOGIN | SRV_REQ_DENY):
        srv_session_respond(s, c, now, req)
        return
    if s.extra != NULL:
        srv_add(&s.c.authorized, 1)
    if s.nstatus > 1:
        x = srv_rand(&s.rng) % s.total_weight
        while x >= s.cum_weight[idx]:
            idx += 1
    if variant == SRV_V_CLOSE:
        flags = SRV_OUT_CLOSE
    c.nresp += 1
    if s.close_every and c.nresp >= s.close_every and variant != SRV_V_CLOSE:
        variant = SRV_V_CLOSE
        flags = SRV_OUT_LINGER
    if req & SRV_REQ_HEAD:
        flags |= SRV_OUT_HEAD
    if s.delay_ns or s.delay_dist:
        now = srv_now_ns()  # the arrival time of THIS request, not of the epoll batch
        srv_push_out(s, c, srv_capped(s, now, srv_due(s, now)), idx * 3 + variant, flags)
    else:
        srv_push_out(s, c, 0, idx * 3 + variant, flags)
    srv_add(&s.c.requests, 1)
    srv_add(&s.c.status[idx], 1)


cdef void srv_session_respond(srv_t *s, srv_conn_t *c, uint64_t now, uint32_t req) noexcept nogil:
    """--sessions: a login's token, or a 401 (same Connection handling and delays as srv_respond)."""
    cdef uint32_t variant = req & 3, flags = 0, resp
    if variant == SRV_V_CLOSE:
        flags = SRV_OUT_CLOSE
    c.nresp += 1
    if s.close_every and c.nresp >= s.close_every and variant != SRV_V_CLOSE:
        variant = SRV_V_CLOSE
        flags = SRV_OUT_LINGER
    if req & SRV_REQ_HEAD:
        flags |= SRV_OUT_HEAD
    if req & SRV_REQ_LOGIN:
        resp = SRV_NRESP + SRV_EXTRA_LOGIN + <uint32_t>(s.login_next % SRV_LOGINS) * 3 + variant
        s.login_next += 1
        srv_add(&s.c.logins, 1)
    else:
        resp = SRV_NRESP + SRV_EXTRA_401 + variant
        srv_add(&s.c.rejected, 1)
    if s.delay_ns or s.delay_dist:
        now = srv_now_ns()
        srv_push_out(s, c, srv_capped(s, now, srv_due(s, now)), resp, flags)
    else:
        srv_push_out(s, c, 0, resp, flags)
    srv_add(&s.c.requests, 1)


cdef inline srv_resp_t *srv_resp_at(srv_t *s, uint32_t k) noexcept nogil:
    return &s.resp[k] if k < SRV_NRESP else &s.extra[k - SRV_NRESP]


cdef void srv_reject(srv_t *s, srv_conn_t *c, uint32_t resp) noexcept nogil:
    srv_push_out(s, c, 0, resp, SRV_OUT_LINGER)
    srv_add(&s.c.bad_requests, 1)


cdef bint srv_parse(srv_t *s, srv_conn_t *c, uint64_t now) noexcept nogil:
    """Turn every complete request in rbuf into a queued response. Returns 1 when it stopped because the
    queue is full (the rest waits in rbuf)."""
    cdef size_t pos = 0, rlen = c.rlen, take, e, start, hstart
    cdef unsigned char *buf = c.rbuf
    cdef unsigned char *hit
    cdef srv_req_t r
    cdef int err
    cdef uint32_t req
    cdef bint blocked = 0
    while pos < rlen:
        if c.flags & SRV_C_NOMORE:
            pos = rlen  # a closing response is queued: whatever else arrives is discarded
            break
        if c.qcount == SRV_QCAP:
            blocked = 1
            break
        if c.body_left:  # RFC 9112 §6.3: Content-Length bytes of body follow the header block
            take = rlen - pos
            if take > c.body_left:
                take = c.body_left
            pos += take
            c.body_left -= take
            if c.body_left:
                break
            srv_respond(s, c, now, c.pend)
            continue
        # RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the request-line
        while pos + 1 < rlen and buf[pos] == 13 and buf[pos + 1] == 10:
            pos += 2
        if pos >= rlen:
            break
        start = c.scan if c.scan > pos else pos
        hit = <unsigned char *>srv_memmem(buf + start, rlen - start, b"\r\n\r\n", 4)
        if hit == NULL:
            c.scan = rlen - 3 if rlen - pos > 3 else pos  # resume where the terminator could begin
            if rlen - pos >= SRV_RBUF_SIZE:
                srv_reject(s, c, SRV_RESP_431)  # RFC 6585 §5: header block larger than we accept
            elif srv_bad_prefix(buf + pos, rlen - pos):
                srv_reject(s, c, SRV_RESP_400)
            break
        e = <size_t>(hit - buf) + 4
        c.scan = e
        hstart = pos
        err = srv_parse_head(buf + pos, e - pos, &r)
        pos = e
        if err:
            srv_reject(s, c, err)
            continue
        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"
        if r.minor == 0:
            req = SRV_V_KA10 if r.keep_alive and not r.close else SRV_V_CLOSE
        else:
            req = SRV_V_CLOSE if r.close else SRV_V_KEEP
        if r.head:
            req |= SRV_REQ_HEAD
        if s.extra != NULL:
            req |= srv_session_flags(s, buf + hstart, &r)
        if r.clen > 0:
            c.body_left = <uint64_t>r.clen
            c.pend = req
            continue
        srv_respond(s, c, now, req)
    if pos:
        if pos < rlen:
            srv_memmove(buf, buf + pos, rlen - pos)
        c.rlen = <uint32_t>(rlen - pos)
        c.scan = <uint32_t>(c.scan - pos) if c.scan > pos else 0
    return blocked


# ------------------------------------------------------------------------------------------- responses

cdef srv_ssize_t srv_tls_sendv(srv_t *s, srv_conn_t *c, srv_iovec *iov, int niov) noexcept nogil:
    """The iovecs gathered into tbuf (up to SRV_TLS_WBUF: the rest waits, as after a short write)
    and written with one SSL_write_ex: bytes written, or -1 with errno (EAGAIN: wait for EPOLLOUT;
    a retry offers the same bytes again from the queue, as OpenSSL requires)."""
    cdef size_t off = 0, take, put = 0
    cdef int i, se = 0, r
    for i in range(niov):
        take = iov[i].iov_len
        if take > SRV_TLS_WBUF - off:
            take = SRV_TLS_WBUF - off
        srv_memcpy(s.tbuf + off, iov[i].iov_base, take)
        off += take
        if off == SRV_TLS_WBUF:
            break
    r = bf_tls_write(c.ssl, s.tbuf, off, &put, &se)
    if r == BF_TLS_OK:
        return <srv_ssize_t>put
    if r == BF_TLS_WANT_WRITE or r == BF_TLS_WANT_READ:
        errno_set(SRV_EAGAIN)
        return -1
    if r == BF_TLS_FAIL:
        srv_add(&s.c.tls_failures, 1)
        bf_tls_clear()
    errno_set(SRV_EPIPE)
    return -1


cdef int srv_flush(srv_t *s, srv_conn_t *c, uint64_t now) noexcept nogil:
    """Write every due response at the head of the queue with ONE sendmsg. Returns the number of
    responses completed, or -1 when the connection was closed or went lingering (the caller stops)."""
    cdef srv_iovec iov[2 * SRV_QCAP]
    cdef int niov = 0, done = 0
    cdef uint32_t i, off = c.qoff, alen, blen, oflags = 0
    cdef size_t total = 0, rem, ln
    cdef srv_ssize_t n
    cdef srv_out_t *o
    cdef srv_resp_t *rp
    cdef uint64_t sent_ns = 0, late
    if c.flags & SRV_C_WBLOCK:
        return 0
    for i in range(c.qcount):
        o = &c.q[(c.qhead + i) & SRV_QMASK]
        if o.due_ns > now:
            break  # HTTP/1.1 order: a later response never overtakes an earlier one
        rp = srv_resp_at(s, o.resp)
        if o.flags & SRV_OUT_HEAD:
            alen = rp.head_len
            blen = 0
        else:
            alen = rp.alen
            blen = rp.blen
        if off < alen:
            iov[niov].iov_base = rp.a + off
            iov[niov].iov_len = alen - off
            niov += 1
            if blen:
                iov[niov].iov_base = <void *>rp.b
                iov[niov].iov_len = blen
                niov += 1
        else:
            iov[niov].iov_base = <void *>(rp.b + (off - alen))
            iov[niov].iov_len = blen - (off - alen)
            niov += 1
        total += alen + blen - off
        off = 0
    if niov == 0:
        return 0
    if c.q[c.qhead].due_ns:
        sent_ns = srv_now_ns()
    n = srv_tls_sendv(s, c, iov, niov) if c.ssl != NULL else srv_sendv(c.fd, iov, niov)
    if n < 0:
        if srv_would_block(srv_errno) or srv_errno == SRV_EINTR:
            c.flags |= SRV_C_WBLOCK
            srv_interest(s, c)
            return 0
        srv_close(s, c)
        return -1
    srv_add(&s.c.bytes_tx, <uint64_t>n)
    if <size_t>n < total:
        c.flags |= SRV_C_WBLOCK  # a short write means the socket buffer is full: wait for EPOLLOUT
    rem = <size_t>n
    while c.qcount:
        o = &c.q[c.qhead]
        rp = srv_resp_at(s, o.resp)
        ln = (rp.head_len if o.flags & SRV_OUT_HEAD else rp.alen + rp.blen) - c.qoff
        if rem < ln:
            c.qoff += <uint32_t>rem
            break
        rem -= ln
        if o.due_ns and sent_ns:
            late = sent_ns - o.due_ns if sent_ns > o.due_ns else 0
            srv_add(&s.c.delayed, 1)
            srv_add(&s.c.late_ns_sum, late)
            if late > s.c.late_ns_max:
                bf_store_relaxed_u64(&s.c.late_ns_max, late)
        c.qoff = 0
        c.qhead = (c.qhead + 1) & SRV_QMASK
        c.qcount -= 1
        done += 1
        oflags = o.flags
        if oflags & (SRV_OUT_CLOSE | SRV_OUT_LINGER):
            break
    srv_add(&s.c.responses, <uint64_t>done)
    if oflags & SRV_OUT_CLOSE or (c.qcount == 0 and c.flags & SRV_C_RDEOF):
        srv_close(s, c)
        return -1
    if oflags & SRV_OUT_LINGER:
        srv_linger(s, c, now)
        return -1
    if c.flags & SRV_C_WBLOCK:
        srv_interest(s, c)
    return done


cdef void srv_progress(srv_t *s, srv_conn_t *c, uint64_t now) noexcept nogil:
    """Parse what was read, write what is due, set interest. Loops only while a full queue drains."""
    cdef bint blocked
    cdef int done
    while True:
        blocked = srv_parse(s, c, now)
        done = srv_flush(s, c, now)
        if done < 0:
            return
        if not (blocked and done > 0 and not (c.flags & SRV_C_WBLOCK)):
            break
    srv_interest(s, c)


cdef void srv_tls_handshake(srv_t *s, srv_conn_t *c, uint64_t now) noexcept nogil:
    """One step of a TLS connection's handshake: done -> read what came with it; wants the socket
    readable or writable -> that interest; else it failed and the connection is closed."""
    cdef int se = 0
    cdef uint32_t want
    cdef int r = bf_tls_handshake(c.ssl, &se)
    if r == BF_TLS_OK:
        c.hs = 0
        srv_add(&s.c.tls_handshakes, 1)
        if SSL_session_reused(c.ssl):
            srv_add(&s.c.tls_resumed, 1)
        srv_tls_read(s, c, now)   # a request may have come with the client's Finished
        return
    if r == BF_TLS_WANT_READ or r == BF_TLS_WANT_WRITE:
        want = SRV_EPOLLOUT if r == BF_TLS_WANT_WRITE else SRV_EPOLLIN
        if want != c.events:
            srv_epoll_set(s.epfd, SRV_EPOLL_CTL_MOD, c.fd, want, c.slot + SRV_TAG_BASE)
            c.events = want
        return
    srv_add(&s.c.tls_failures, 1)
    bf_tls_clear()
    srv_close(s, c)


cdef void srv_tls_read(srv_t *s, srv_conn_t *c, uint64_t now) noexcept nogil:
    """The TLS side of srv_on_event's read: SSL_read_ex until OpenSSL holds nothing more it read
    ahead (epoll is level-triggered: what is still in the socket raises the next event)."""
    cdef size_t got = 0
    cdef int se, r
    cdef uint32_t gen = c.gen
    while c.rlen < SRV_RBUF_SIZE:
        se = 0
        r = bf_tls_read(c.ssl, c.rbuf + c.rlen, SRV_RBUF_SIZE - c.rlen, &got, &se)
        if r == BF_TLS_OK:
            c.rlen += <uint32_t>got
            srv_add(&s.c.bytes_rx, <uint64_t>got)
            srv_progress(s, c, now)
            if c.gen != gen or c.ssl == NULL or not SSL_has_pending(c.ssl):
                return   # closed, or nothing more buffered
            continue
        if r == BF_TLS_WANT_READ:
            srv_interest(s, c)
            return
        if r == BF_TLS_EOF:
            c.flags |= SRV_C_RDEOF
            if c.qcount == 0:
                srv_close(s, c)
            else:
                srv_interest(s, c)
            return
        if r == BF_TLS_FAIL or r == BF_TLS_WANT_WRITE:
            srv_add(&s.c.tls_failures, 1)
            bf_tls_clear()
        srv_close(s, c)
        return


cdef void srv_on_event(srv_t *s, srv_conn_t *c, uint32_t ev, uint64_t now) noexcept nogil:
    cdef srv_ssize_t n
    if c.hs:
        srv_tls_handshake(s, c, now)
        return
    if c.flags & SRV_C_WBLOCK and ev & (SRV_EPOLLOUT | SRV_EPOLLERR | SRV_EPOLLHUP):
        c.flags &= ~SRV_C_WBLOCK
        srv_progress(s, c, now)  # a peer that reset makes sendmsg fail: the conn is closed there
        return
    if not (ev & (SRV_EPOLLIN | SRV_EPOLLERR | SRV_EPOLLHUP)):
        return
    if c.flags & SRV_C_LINGER:
        n = srv_read(c.fd, c.rbuf, SRV_RBUF_SIZE)
        if n > 0:
            srv_add(&s.c.bytes_rx, <uint64_t>n)
        elif n == 0 or not (srv_would_block(srv_errno) or srv_errno == SRV_EINTR):
            srv_close(s, c)
        return
    if c.flags & SRV_C_RDEOF or c.rlen >= SRV_RBUF_SIZE:
        # Interest is off while we wait on timers; only ERR/HUP get here: the peer is gone entirely.
        srv_close(s, c)
        return
    if c.ssl != NULL:
        srv_tls_read(s, c, now)
        return
    n = srv_read(c.fd, c.rbuf + c.rlen, SRV_RBUF_SIZE - c.rlen)
    if n > 0:
        c.rlen += <uint32_t>n
        srv_add(&s.c.bytes_rx, <uint64_t>n)
        srv_progress(s, c, now)
    elif n == 0:
        c.flags |= SRV_C_RDEOF
        if c.qcount == 0:
            srv_close(s, c)
        else:
            srv_interest(s, c)  # answer what is queued (the client may have half-closed), then close
    elif not (srv_would_block(srv_errno) or srv_errno == SRV_EINTR):
        srv_close(s, c)


cdef void srv_on_accept(srv_t *s, uint64_t now) noexcept nogil:
    """Accept until EAGAIN (nginx's multi_accept): one accept4 + one setsockopt + one epoll_ctl each."""
    cdef int fd, e
    cdef srv_conn_t *c
    while True:
        fd = srv_accept(s.lfd)
        if fd < 0:
            e = srv_errno
            if srv_would_block(e):
                return
            if e == SRV_EINTR or e == SRV_ECONNABORTED:
                continue
            srv_add(&s.c.accept_errors, 1)
            if e == SRV_EMFILE or e == SRV_ENFILE or e == SRV_ENOBUFS or e == SRV_ENOMEM:
                # Level-triggered: a listen socket we cannot drain would spin. Back off (as nginx does).
                srv_epoll_set(s.epfd, SRV_EPOLL_CTL_DEL, s.lfd, 0, SRV_TAG_LISTEN)
                s.accept_resume_ns = now + SRV_ACCEPT_PAUSE_NS
            return
        c = srv_conn_get(s)
        if c == NULL:
            srv_close_fd(fd)
            srv_add(&s.c.accept_errors, 1)
            continue
        srv_nodelay(fd)
        c.fd = fd
        c.events = SRV_EPOLLIN
        if srv_epoll_set(s.epfd, SRV_EPOLL_CTL_ADD, fd, SRV_EPOLLIN, c.slot + SRV_TAG_BASE) < 0:
            srv_close_fd(fd)
            c.fd = -1
            s.free_slots[s.nfree] = c.slot
            s.nfree += 1
            srv_add(&s.c.accept_errors, 1)
            continue
        srv_add(&s.c.connections_accepted, 1)
        if s.ssl_ctx != NULL:
            c.ssl = bf_tls_accept_new(s.ssl_ctx, fd)
            if c.ssl == NULL:
                srv_close(s, c)
                continue
            c.hs = 1


cdef void srv_on_timers(srv_t *s, uint64_t now) noexcept nogil:
    cdef srv_timer_t t
    cdef srv_conn_t *c
    while s.heap_len and s.heap[0].due_ns <= now:
        t = s.heap[0]
        srv_heap_pop(s)
        c = s.conns[t.slot]
        if c.fd < 0 or (c.gen << 1) != (t.gen & ~1u):
            continue  # stale: that connection was closed since
        if t.gen & SRV_T_LINGER:
            if c.flags & SRV_C_LINGER:
                srv_close(s, c)
        elif not (c.flags & SRV_C_LINGER):
            srv_progress(s, c, now)


cdef uint64_t srv_stall_end(srv_t *s, uint64_t now) noexcept nogil:
    """The stall occupies the LAST stall_ns of every stall_every_ns period counted from the first run():
    with 500ms/2s, the server works for 1.5 s, then freezes for 0.5 s, and so on. Returns when the
    current stall ends, or 0 when not stalled."""
    cdef uint64_t phase
    if s.stall_ns == 0 or now < s.stall_epoch_ns:
        return 0
    phase = (now - s.stall_epoch_ns) % s.stall_every_ns
    if phase >= s.stall_every_ns - s.stall_ns:
        return now + (s.stall_every_ns - phase)
    return 0


cdef int srv_run(srv_t *s, uint64_t duration_ns) noexcept nogil:
    """The loop. Returns 0, or -errno if epoll itself failed."""
    cdef srv_epoll_event evs[SRV_MAX_EVENTS]
    cdef uint64_t now, deadline = 0, nxt, stall_end, tag
    cdef int64_t timeout
    cdef int n, i, rc = 0
    srv_set_timerslack()  # prctl(2) PR_SET_TIMERSLACK: 1 ns instead of the default 50 µs, this thread
    now = srv_now_ns()
    if s.stall_epoch_ns == 0:
        s.stall_epoch_ns = now
    if duration_ns:
        deadline = now + duration_ns
    while not bf_load_acquire_int(&s.stop):
        nxt = s.heap[0].due_ns if s.heap_len else 0
        if deadline and (nxt == 0 or deadline < nxt):
            nxt = deadline
        if s.accept_resume_ns and (nxt == 0 or s.accept_resume_ns < nxt):
            nxt = s.accept_resume_ns
        if nxt == 0:
            timeout = -1
        elif nxt > now:
            timeout = <int64_t>(nxt - now)
        else:
            timeout = 0
        n = srv_epoll_wait_ns(s.epfd, evs, SRV_MAX_EVENTS, timeout)
        if n < 0:
            if srv_errno != SRV_EINTR:
                rc = -srv_errno
                break
            n = 0
        now = srv_now_ns()
        if bf_load_acquire_int(&s.stop):
            break
        stall_end = srv_stall_end(s, now)
        if stall_end:
            # Stop-the-world: nothing is accepted, read or written until the stall ends; what arrived
            # meanwhile is handled right after, so its latency is the remaining stall.
            srv_add(&s.c.stalls, 1)
            if deadline and deadline < stall_end:
                stall_end = deadline
            if srv_sleep_until(s.wakefd, stall_end):
                break
            now = srv_now_ns()
        if deadline and now >= deadline:
            break
        for i in range(n):
            tag = evs[i].data.u64
            if tag >= SRV_TAG_BASE:
                if s.conns[tag - SRV_TAG_BASE].fd >= 0:
                    srv_on_event(s, s.conns[tag - SRV_TAG_BASE], evs[i].events, now)
            elif tag == SRV_TAG_LISTEN:
                srv_on_accept(s, now)
            else:
                srv_drain(s.wakefd)
        if s.heap_len and s.heap[0].due_ns <= now:
            srv_on_timers(s, now)
        if s.accept_resume_ns and now >= s.accept_resume_ns:
            s.accept_resume_ns = 0
            srv_epoll_set(s.epfd, SRV_EPOLL_CTL_ADD, s.lfd, SRV_EPOLLIN, SRV_TAG_LISTEN)
    # stop() makes the current (or the next) run() return once
    srv_drain(s.wakefd)
    bf_store_release_int(&s.stop, 0)
    return rc


# ------------------------------------------------------------------------------------- Python surface

_SRV_BODY_PATTERN = b"hello world\n"


def _srv_reason(status):
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _srv_header_block(status, body_size, variant):
    """The fixed header set (no Date: the response never changes, so it is built once):
    status line, Server, Content-Type and Content-Length when the status has a body (not 204/304),
    and Connection only when it is not the HTTP/1.1 default."""
    lines = [f"HTTP/1.1 {status} {_srv_reason(status)}", "Server: barfast"]
    if status not in (204, 304):
        if body_size:
            lines.append("Content-Type: text/plain")
        lines.append(f"Content-Length: {body_size}")
    if variant == SRV_V_CLOSE:
        lines.append("Connection: close")
    elif variant == SRV_V_KA10:
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


cdef class Server:
    """Built-in HTTP/1.1 target on a nogil epoll loop. See _core.pyi for the documented surface."""

    cdef srv_t s
    cdef str _host

    def __cinit__(self):
        srv_memset(&self.s, 0, sizeof(srv_t))
        self.s.lfd = -1
        self.s.epfd = -1
        self.s.wakefd = -1

    def __init__(self, str host, int port, *, int body_size=12, delay_ns=0, int delay_dist=0,
                 delay_a_ns=0, delay_b_ns=0, stall_ns=0, stall_every_ns=0,
                 statuses=((200, 1),), close_every=0, seed=0, str tls_cert="", str tls_key="",
                 bint tls_resume=True, int max_concurrency=0, bint sessions=False):
        cdef int bound = 0, fd, k, variant
        cdef uint64_t cum = 0
        cdef bytes hb, full, bd
        if self.s.lfd >= 0:
            raise RuntimeError("Server is already initialised")
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        if not 0 <= body_size <= (1 << 30):
            raise ValueError("body_size must be within 0..1 GiB")
        if delay_ns < 0 or delay_a_ns < 0 or delay_b_ns < 0 or stall_ns < 0 or stall_every_ns < 0:
            raise ValueError("times must not be negative")
        if delay_dist not in (0, 1, 2):
            raise ValueError("delay_dist must be 0 (none), 1 (uniform) or 2 (exponential)")
        if delay_dist == 1 and delay_b_ns < delay_a_ns:
            raise ValueError("uniform delay needs delay_a_ns <= delay_b_ns")
        if delay_dist == 2 and delay_a_ns <= 0:
            raise ValueError("exponential delay needs a positive mean (delay_a_ns)")
        if stall_ns and not 0 < stall_ns < stall_every_ns:
            raise ValueError("stall needs 0 < stall_ns < stall_every_ns")
        statuses = [(int(st), int(w)) for st, w in statuses]
        if not 1 <= len(statuses) <= SRV_MAX_STATUSES:
            raise ValueError(f"between 1 and {SRV_MAX_STATUSES} statuses")
        for st, w in statuses:
            if not 200 <= st <= 599:
                raise ValueError(f"status {st} must be within 200..599")
            if w <= 0:
                raise ValueError(f"weight of status {st} must be positive")
        if close_every < 0:
            raise ValueError("close_every must not be negative")
        if max_concurrency < 0 or max_concurrency > (1 << 24):
            raise ValueError("max_concurrency must be within 0..16777216")
        if max_concurrency and (delay_ns <= 0 or delay_dist):
            raise ValueError("max_concurrency needs a fixed delay (delay_ns > 0, no delay_dist)")
        if max_concurrency:
            self.s.busy_until = <uint64_t *>srv_malloc(max_concurrency * sizeof(uint64_t))
            if self.s.busy_until == NULL:
                raise MemoryError()
            srv_memset(self.s.busy_until, 0, max_concurrency * sizeof(uint64_t))
            self.s.max_conc = max_concurrency
        self.s.delay_ns = delay_ns
        self.s.delay_dist = delay_dist
        self.s.delay_a_ns = delay_a_ns
        self.s.delay_b_ns = delay_b_ns
        self.s.stall_ns = stall_ns
        self.s.stall_every_ns = stall_every_ns
        self.s.close_every = close_every
        self.s.rng = <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF)
        # Prebuilt responses: per status, the three Connection variants.
        bd = (_SRV_BODY_PATTERN * (body_size // len(_SRV_BODY_PATTERN) + 1))[:body_size]
        contiguous = body_size <= SRV_CONTIGUOUS_MAX
        if not contiguous:
            self.s.body = <char *>srv_malloc(body_size)
            if self.s.body == NULL:
                raise MemoryError()
            srv_memcpy(self.s.body, <const char *>bd, body_size)
        self.s.nstatus = len(statuses)
        for k, (st, w) in enumerate(statuses):
            cum += w
            self.s.cum_weight[k] = cum
            bodyless = st in (204, 304)
            for variant in range(3):
                hb = _srv_header_block(st, body_size, variant)
                full = hb if bodyless or not contiguous else hb + bd
                self._set_resp(k * 3 + variant, st, full, len(hb),
                               body_size if not contiguous and not bodyless else 0)
        self.s.total_weight = cum
        for k, st in ((SRV_RESP_400, 400), (SRV_RESP_431, 431), (SRV_RESP_501, 501)):
            hb = (f"HTTP/1.1 {st} {_srv_reason(st)}\r\nServer: barfast\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n").encode("latin-1")
            self._set_resp(k, st, hb, len(hb), 0)
        if sessions:
            self._setup_sessions(seed)
        fd = srv_listen(host.encode("ascii", "replace"), port, SRV_BACKLOG, &bound)
        if fd < 0:
            k = srv_errno
            if k == 22:  # EINVAL from inet_pton: not an IP literal
                raise ValueError(f"host {host!r} is not an IPv4 or IPv6 address")
            raise OSError(k, srv_strerror(k).decode(errors="replace"))
        self.s.lfd = fd
        self.s.port = bound
        if tls_cert:
            try:
                self.s.ssl_ctx = tls_server_ctx_new(tls_cert, tls_key, tls_resume)
            except ValueError:
                self.close()
                raise
            self.s.tbuf = <char *>srv_malloc(SRV_TLS_WBUF)
            if self.s.tbuf == NULL:
                self.close()
                raise MemoryError()
        self._host = host
        self.s.epfd = srv_epoll_create1(SRV_EPOLL_CLOEXEC)
        self.s.wakefd = srv_eventfd(0, SRV_EFD_NONBLOCK | SRV_EFD_CLOEXEC)
        if (self.s.epfd < 0 or self.s.wakefd < 0
                or srv_epoll_set(self.s.epfd, SRV_EPOLL_CTL_ADD, fd, SRV_EPOLLIN, SRV_TAG_LISTEN) < 0
                or srv_epoll_set(self.s.epfd, SRV_EPOLL_CTL_ADD, self.s.wakefd, SRV_EPOLLIN,
                                 SRV_TAG_WAKE) < 0):
            k = srv_errno
            self.close()
            raise OSError(k, srv_strerror(k).decode(errors="replace"))

    cdef _set_resp(self, int k, int status, bytes a, int head_len, int blen):
        cdef char *p = <char *>srv_malloc(len(a))
        cdef srv_resp_t *rp = srv_resp_at(&self.s, k)
        if p == NULL:
            raise MemoryError()
        srv_memcpy(p, <const char *>a, len(a))
        rp.a = p
        rp.alen = len(a)
        rp.head_len = head_len
        rp.b = self.s.body if blen else NULL
        rp.blen = blen
        rp.status = status

    cdef _setup_sessions(self, seed):
        """--sessions: the 401 and the SRV_LOGINS login responses, prebuilt (srv_session_flags)."""
        cdef int k, variant
        self.s.extra = <srv_resp_t *>srv_malloc(SRV_NEXTRA * sizeof(srv_resp_t))
        if self.s.extra == NULL:
            raise MemoryError()
        srv_memset(self.s.extra, 0, SRV_NEXTRA * sizeof(srv_resp_t))
        self.s.secret = srv_session_mac(0x5E5510, <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF))
        conn = {SRV_V_KEEP: "", SRV_V_CLOSE: "Connection: close\r\n",
                SRV_V_KA10: "Connection: keep-alive\r\n"}
        for variant in range(3):
            hb = ("HTTP/1.1 401 Unauthorized\r\nServer: barfast\r\nWWW-Authenticate: Bearer\r\n"
                  f"Content-Length: 0\r\n{conn[variant]}\r\n").encode("latin-1")
            self._set_resp(SRV_NRESP + SRV_EXTRA_401 + variant, 401, hb, len(hb), 0)
        for k in range(SRV_LOGINS):
            token = f"{k:08x}{srv_session_mac(self.s.secret, k):016x}"
            body = f'{{"token":"{token}","user":{k}}}'.encode("ascii")
            for variant in range(3):
                hb = ("HTTP/1.1 200 OK\r\nServer: barfast\r\nContent-Type: application/json\r\n"
                      f"Set-Cookie: sid={k:08x}; Path=/; HttpOnly\r\n"
                      f"Content-Length: {len(body)}\r\n{conn[variant]}\r\n").encode("latin-1")
                self._set_resp(SRV_NRESP + SRV_EXTRA_LOGIN + k * 3 + variant, 200, hb + body,
                               len(hb), 0)

    def session_token(self, int k) -> str:
        """--sessions: the token login k (mod 1024) is issued (for tests and examples)."""
        k %= SRV_LOGINS
        return f"{k:08x}{srv_session_mac(self.s.secret, k):016x}"

    @property
    def port(self):
        return self.s.port

    @property
    def host(self):
        return self._host

    def run(self, uint64_t duration_ns=0):
        cdef int rc
        if self.s.lfd < 0:
            raise RuntimeError("Server is closed")
        if self.s.running:
            raise RuntimeError("Server.run() is already running")
        self.s.running = 1
        try:
            with nogil:
                rc = srv_run(&self.s, duration_ns)
        finally:
            self.s.running = 0
        if rc < 0:
            raise OSError(-rc, srv_strerror(-rc).decode(errors="replace"))

    def stop(self):
        bf_store_release_int(&self.s.stop, 1)
        if self.s.wakefd >= 0:
            srv_wake(self.s.wakefd)

    def counters(self):
        cdef srv_counters_t *c = &self.s.c
        cdef uint64_t acc = bf_load_relaxed_u64(&c.connections_accepted)
        cdef uint64_t clo = bf_load_relaxed_u64(&c.connections_closed)
        return {
            "requests": bf_load_relaxed_u64(&c.requests),
            "responses": bf_load_relaxed_u64(&c.responses),
            "connections": acc - clo if acc >= clo else 0,
            "connections_accepted": acc,
            "connections_closed": clo,
            "bytes_rx": bf_load_relaxed_u64(&c.bytes_rx),
            "bytes_tx": bf_load_relaxed_u64(&c.bytes_tx),
            "bad_requests": bf_load_relaxed_u64(&c.bad_requests),
            "stalls": bf_load_relaxed_u64(&c.stalls),
            "accept_errors": bf_load_relaxed_u64(&c.accept_errors),
            "delayed": bf_load_relaxed_u64(&c.delayed),
            "late_ns_sum": bf_load_relaxed_u64(&c.late_ns_sum),
            "late_ns_max": bf_load_relaxed_u64(&c.late_ns_max),
            "tls_handshakes": bf_load_relaxed_u64(&c.tls_handshakes),
            "tls_resumed": bf_load_relaxed_u64(&c.tls_resumed),
            "tls_failures": bf_load_relaxed_u64(&c.tls_failures),
            "logins": bf_load_relaxed_u64(&c.logins),
            "authorized": bf_load_relaxed_u64(&c.authorized),
            "rejected": bf_load_relaxed_u64(&c.rejected),
        }

    def status_counts(self):
        cdef uint32_t k
        out = {}
        for k in range(self.s.nstatus):
            st = self.s.resp[k * 3].status
            out[st] = out.get(st, 0) + bf_load_relaxed_u64(&self.s.c.status[k])
        if self.s.extra != NULL:  # --sessions: logins answer 200, anything else without a token 401
            out[200] = out.get(200, 0) + bf_load_relaxed_u64(&self.s.c.logins)
            out[401] = out.get(401, 0) + bf_load_relaxed_u64(&self.s.c.rejected)
        return out

    def close(self):
        cdef uint32_t i
        if self.s.running:
            raise RuntimeError("stop() the server and let run() return before close()")
        for i in range(self.s.cap):
            if self.s.conns[i] != NULL:
                if self.s.conns[i].ssl != NULL:
                    bf_tls_free(self.s.conns[i].ssl)
                    self.s.conns[i].ssl = NULL
                if self.s.conns[i].fd >= 0:
                    srv_close_fd(self.s.conns[i].fd)
                srv_free(self.s.conns[i])
                self.s.conns[i] = NULL
        srv_free(self.s.conns)
        srv_free(self.s.free_slots)
        self.s.conns = NULL
        self.s.free_slots = NULL
        self.s.cap = 0
        self.s.nfree = 0
        srv_free(self.s.heap)
        self.s.heap = NULL
        self.s.heap_len = 0
        self.s.heap_cap = 0
        for fd in (self.s.lfd, self.s.epfd, self.s.wakefd):
            if fd >= 0:
                srv_close_fd(fd)
        self.s.lfd = -1
        self.s.epfd = -1
        # wakefd stays numerically set to -1 last so a racing stop() never writes to a reused fd
        self.s.wakefd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        cdef int k
        if self.s.running:
            return  # cannot happen: run() holds a reference to self
        self.close()
        for k in range(SRV_NRESP):
            srv_free(self.s.resp[k].a)
            self.s.resp[k].a = NULL
        if self.s.extra != NULL:
            for k in range(SRV_NEXTRA):
                srv_free(self.s.extra[k].a)
            srv_free(self.s.extra)
            self.s.extra = NULL
        srv_free(self.s.body)
        self.s.body = NULL
        srv_free(self.s.tbuf)
        self.s.tbuf = NULL
        srv_free(self.s.busy_until)
        self.s.busy_until = NULL
        self.s.max_conc = 0
        if self.s.ssl_ctx != NULL:
            SSL_CTX_free(self.s.ssl_ctx)
            self.s.ssl_ctx = NULL
