# conn.pxi — one client connection: its slot struct (fd, receive buffer, parser, timestamps) and the
#   socket/epoll declarations and syscalls the loop drives it with (socket, connect, send, read).
# Never: allocates, blocks, or raises (all noexcept nogil; sockets are O_NONBLOCK); never copies a
#   response body out of rbuf (bodies are counted by the parser and dropped).
# Invariants: fd == -1 iff state is CONN_CLOSED or CONN_BACKOFF; 0 <= rlen <= CONN_RBUF_SIZE; a slot
#   carries at most one request at a time (has_req); gen changes with every new socket, so a stale
#   epoll event for a previous socket of the same slot is recognised and ignored.

from posix.unistd cimport read, close
from libc.errno cimport (errno, EAGAIN, EINTR, EINPROGRESS, ETIMEDOUT, ECONNRESET, EMFILE,
                         ENOSYS)
from libc.string cimport memmove
from libc.stdlib cimport calloc


cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr *addr, socklen_t len)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    enum:
        AF_INET
        AF_INET6
        AF_UNIX
        SOCK_STREAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_ERROR
        MSG_NOSIGNAL

cdef extern from "netinet/in.h" nogil:
    enum:
        IPPROTO_TCP
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        int sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        int sin6_family
        uint16_t sin6_port
        in6_addr sin6_addr
    uint16_t htons(uint16_t v)

cdef extern from "sys/un.h" nogil:
    struct sockaddr_un:
        int sun_family
        char sun_path[108]

cdef extern from "netinet/tcp.h" nogil:
    enum:
        TCP_NODELAY

cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char *src, void *dst)

cdef extern from "sys/epoll.h" nogil:
    # The real header's packed struct epoll_event (12 bytes on x86-64) is used, never redefined
    # (a hand-written copy gets the packing wrong on x86-64).
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLET
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)

cdef extern from "bf_sys.h" nogil:
    # The per-request calls without glibc's cancellation-point wrappers (see the header).
    # bf_epoll_pwait2 (Linux 5.11) takes a timespec, so pacing waits are not rounded up to whole
    # milliseconds as epoll_wait's int timeout is (wrk2's ±1 ms limit); raw, so no glibc 2.35 needed.
    ssize_t bf_send(int fd, const void *buf, size_t n, int flags)
    ssize_t bf_read(int fd, void *buf, size_t n)
    ssize_t bf_recv_stamped(int fd, void *buf, size_t n, long long *rx_real_ns)
    int bf_rx_stamps_on(int fd)
    int bf_epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    int bf_epoll_pwait2(int epfd, epoll_event *events, int maxevents, const timespec *timeout)
    int bf_schedstat_open()
    long long bf_schedstat_wait_ns(int fd)

cdef extern from "sys/prctl.h" nogil:
    enum:
        PR_SET_TIMERSLACK
        PR_GET_TIMERSLACK
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5)


cdef enum:
    # 16 KiB: a whole typical response (headers + small body) arrives in one read(); the parser's
    # header limit must stay below it so an oversized header block is an error, not a stall.
    CONN_RBUF_SIZE = 16384

    CONN_CLOSED = 0       # no socket; the loop reopens the slot when it needs it
    CONN_BACKOFF = 1      # no socket; a connect failed, retry at deadline_ns
    CONN_CONNECTING = 2   # connect() in progress: EPOLLOUT armed, deadline_ns = connect deadline
    CONN_IDLE = 3         # connected, no request (open loop: waiting in the free stack)
    CONN_BUSY = 4         # a request is being written and/or its response is being read


ctypedef union conn_addr_t:
    sockaddr_in v4
    sockaddr_in6 v6
    sockaddr_un un


ctypedef struct conn_t:
    int fd
    int state              # CONN_*
    uint32_t id            # slot index (the sample's conn_id)
    uint32_t gen           # socket generation, in the upper half of epoll_data.u64
    uint32_t events        # the epoll interest currently registered
    bint has_req           # a request is started on this slot and not yet finished
    bint in_free           # listed in the engine's free stack (the entry may be stale)
    bint ever_connected    # a connection on this slot was established before (-> reconnects)
    uint8_t flags          # BF_FLAG_* of the current request
    uint16_t ep            # endpoint of the current request (index into engine_t.eps)
    const char *req        # its serialised request (the endpoint's bytes, or wbuf) and their length
    size_t req_len
    char *wbuf             # a templated request is rendered here (NULL: the run has no template)
    char *capbuf           # the parser keeps what checks read here (NULL: no check reads it)
    uint32_t reqs_on_conn  # requests sent on the current connection (0 -> BF_FLAG_NEW_CONN)
    size_t wpos            # bytes of the request written so far
    size_t rlen            # unconsumed bytes at the start of rbuf
    uint64_t intended_ns   # the current request's intended send time (open loop: from the schedule)
    uint64_t send_ns       # just before its first write() (0: not written yet)
    uint64_t first_byte_ns  # first read() that returned bytes of its response (0: none yet)
    uint64_t connect_ns    # when the current connect() began
    uint32_t connect_us    # how long it took to be established (µs, rounded up, >= 1)
    uint64_t deadline_ns   # CONNECTING: connect deadline; BACKOFF: when to retry
    uint64_t backoff_ns    # current retry delay after failed connects (0 after a success)
    uint32_t bytes_rx      # response bytes read for the current request
    uint32_t bytes_tx      # request bytes written for the current request
    SSL *ssl               # https: the connection's TLS state, reset and kept for the slot's next
                           # connection (NULL: plain HTTP, or none made yet)
    bint tls_up            # ssl belongs to the current connection (handshake begun)
    SSL_SESSION *sess      # https: the slot's newest session, resumed by its next connection
    bint tls_hs            # CONN_CONNECTING: TCP is up, the TLS handshake is under way
    uint64_t tls_ns        # when the handshake began
    uint16_t tls_f16       # its duration for the sample (bf_f16_us; 0: none on this connection)
    http_resp_t parser
    char rbuf[CONN_RBUF_SIZE]


cdef inline uint32_t conn_us_up(uint64_t ns) noexcept nogil:
    """A connect time in µs for the sample: rounded up (so an established connection is >= 1 and 0
    keeps meaning "no connect on this sample"), saturating at 2^32-1 (71 minutes)."""
    cdef uint64_t us = (ns + 999) // 1000
    if us == 0:
        return 1
    return <uint32_t>us if us < 0xFFFFFFFFULL else <uint32_t>0xFFFFFFFFULL


cdef inline uint64_t conn_epoll_key(conn_t *c) noexcept nogil:
    return (<uint64_t>c.gen << 32) | c.id


cdef inline int conn_epoll_set(int epfd, conn_t *c, int op, uint32_t events,
                               uint32_t trigger) noexcept nogil:
    """Register/modify the slot's epoll interest (`trigger`: 0, or EPOLLET | EPOLLRDHUP); 0 or an
    errno. A MOD re-polls the socket, so with EPOLLET it also re-arms an edge for data already
    waiting."""
    cdef epoll_event ev
    ev.events = events | trigger
    ev.data.u64 = conn_epoll_key(c)
    if epoll_ctl(epfd, op, c.fd, &ev) < 0:
        return errno
    c.events = events
    return 0


cdef inline int conn_socket(int family) noexcept nogil:
    """A non-blocking stream socket; TCP ones get TCP_NODELAY (a small request must leave now,
    not after Nagle's 40 ms delayed-ACK wait: RFC 896, tcp(7)); returns fd, or -errno."""
    cdef int one = 1
    cdef int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        return -errno
    if family != AF_UNIX:
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
    return fd


cdef inline uint16_t conn_f16_us(uint64_t ns) noexcept nogil:
    """A duration in µs as bf_f16_us (barfast.h): exact below 2048 µs, then 11 bits of mantissa
    (0.05 %, finer than the histograms' 3 significant digits), rounded up, >= 1."""
    cdef uint64_t us = (ns + 999) // 1000
    cdef uint32_t ex = 0
    if us == 0:
        return 1
    if us < 2048:
        return <uint16_t>us
    while (us >> ex) >= 4096:
        ex += 1
    if ((us >> ex) << ex) != us:
        us += (<uint64_t>1 << ex)            # round up
        while (us >> ex) >= 4096:
            ex += 1
    if ex + 1 > 31:
        return 0xFFFF
    return <uint16_t>(((ex + 1) << 11) | ((us >> ex) - 2048))


cdef inline int conn_connect_result(conn_t *c) noexcept nogil:
    """After EPOLLOUT/EPOLLERR on a connecting socket: 0 = connected, else the connect errno
    (connect(2): "use getsockopt(2) to read the SO_ERROR option")."""
    cdef int err = 0
    cdef socklen_t len = sizeof(err)
    if getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0:
        return errno
    return err


def f16_us(uint64_t ns) -> int:
    """Test hook: conn_f16_us (a duration in ns as the sample's 16-bit handshake time)."""
    return conn_f16_us(ns)
