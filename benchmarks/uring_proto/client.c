/* client.c -- closed-loop HTTP/1.1 keep-alive load generator, epoll vs io_uring CPU/request experiment.
 *
 * Build:  gcc -O2 -Wall -o client client.c          (raw io_uring syscalls; no liburing)
 * Run:    taskset -c 0 ./client MODE PORT [CONNS=50] [SECONDS=5]
 * MODE:
 *   epoll     nonblocking sockets, level-triggered EPOLLIN, epoll_pwait2 (256 events), one read() +
 *             one send() per request, no epoll_ctl per request, as barfast's engine
 *             does (EPOLL_ET=1 below makes it edge-triggered, like the engine).
 *   uring     io_uring only: SINGLE_ISSUER|DEFER_TASKRUN, registered files, registered ring fd,
 *             provided buffer ring + multishot IORING_OP_RECV, IORING_OP_SEND with
 *             IOSQE_CQE_SKIP_SUCCESS, one io_uring_enter(submit all, wait>=1) per loop iteration.
 *   uring1    as uring but one-shot IORING_OP_RECV into a per-connection buffer (re-armed per request).
 *   hybrid    epoll for readiness + read(); the pass's sends batched as io_uring SEND SQEs, one
 *             io_uring_enter (no wait) per pass.
 *   uringr    as uring (multishot recv into the provided buffer ring, one io_uring_enter per
 *             pass) but each request sent at once with a sendto() syscall, as barfast sends
 *             (is the receive side alone worth it?).
 * Env knobs for epoll: EPOLL_ET=1 (edge-triggered, as barfast's engine), SLEEP_US=n
 *   (never block on the sockets: after an empty poll, sleep n µs on an empty epoll set), STAMPS=1
 *   (SO_TIMESTAMPNS on every socket, never read: what turning on receive stamps costs).
 * Env knobs for all modes: LAT=1 (latency percentiles), WORK_NS=n (n ns user work per response),
 * CC_ALGO=reno|cubic (setsockopt TCP_CONGESTION; the default here is bbr).
 * Env knobs for uring modes: URING_NODEFER=1 (no DEFER_TASKRUN/SINGLE_ISSUER), URING_NOREGRING=1
 *   (no registered ring fd), URING_NOFIXED=1 (plain fds), URING_SENDCQE=1 (send CQEs not skipped),
 *   URING_WAITNR=k (io_uring_enter min_complete=k: with DEFER_TASKRUN the task is woken only once
 *   k completions are pending; a batching/latency trade-off, default 1), URING_MINWAIT=us (bound
 *   that wait: kernel min_wait_usec, 6.12+; after us, return with >= 1 CQE), URING_TS_US=us (plain
 *   io_uring_enter timeout via IORING_ENTER_EXT_ARG, e.g. 5000 like barfast's epoll wait).
 * Output: one line: mode, requests, req/s, CPU us/request (getrusage user+sys over the timed loop),
 *   user/sys split, syscalls/request made by the loop (counted by the program itself).
 * The response size is learned from one blocking request (headers + Content-Length) at start; the
 * loop then only counts bytes (every response has that same size).
 * Harness in this directory: nginx.conf (shared bench config on port 18181; start with
 *   nginx -c $PWD/nginx.conf -p /tmp/uring-ngx/), bench.sh ROUNDS SECS MODE[:ENV=V,...]... (alternating
 *   rounds, each run under flock /tmp/barfast-bench.lock, CPU from /usr/bin/time), analyze.py FILE
 *   (per-round ratios vs epoll and wrk, medians). The measured figures and the conclusion are in
 *   benchmarks/README.md ("io_uring prototype"). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/time_types.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

#define MAXC 1024
#define NBUFS 256
#define BUFSZ 4096
#define die(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static char req[256];
static int req_len, resp_len, nconn, port;
static int fds[MAXC];
static int got[MAXC];
static uint64_t completed, nsys;
static char rbuf[MAXC][2048];
/* LAT=1: per-request latency (send -> response complete), 1 us buckets; costs 2 clock reads/req. */
static int lat_on;
static uint64_t sent_at[MAXC];
static uint32_t hist[100000];
static inline uint64_t now_ns(void);
#define SENT(i) do { if (lat_on) sent_at[i] = now_ns(); } while (0)
/* WORK_NS=n: burn n ns of user CPU per completed response (stand-in for barfast's per-request
 * user-space work: parser, timestamps, sample ring), so batching per wait resembles barfast's. */
static uint64_t work_ns;
#define WORK() do { if (work_ns) { uint64_t _e = now_ns() + work_ns; while (now_ns() < _e) ; } } while (0)
#define DONE(i) do { WORK(); if (lat_on) { uint64_t d = (now_ns() - sent_at[i]) / 1000; hist[d < 99999 ? d : 99999]++; } } while (0)

static inline uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int connect_one(int nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (void *)&a, sizeof a)) die("connect: %s", strerror(errno));
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const char *cc = getenv("CC_ALGO");   /* e.g. CC_ALGO=reno: per-socket TCP_CONGESTION */
    if (cc && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, strlen(cc))) die("TCP_CONGESTION %s: %s", cc, strerror(errno));
    if (getenv("STAMPS") && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one))
        die("SO_TIMESTAMPNS: %s", strerror(errno));   /* STAMPS=1: receive stamps on (not read) */
    if (nonblock) fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* One blocking request: find end of headers + Content-Length -> fixed response size. */
static void learn_resp_len(void) {
    int fd = connect_one(0); char b[8192]; int n = 0;
    if (write(fd, req, req_len) != req_len) die("write");
    for (;;) {
        int r = read(fd, b + n, sizeof b - 1 - n); if (r <= 0) die("read"); n += r; b[n] = 0;
        char *e = strstr(b, "\r\n\r\n"); if (!e) continue;
        char *cl = strcasestr(b, "\r\nContent-Length:"); if (!cl) die("no content-length");
        int total = (int)(e + 4 - b) + atoi(cl + 17);
        if (n >= total) { resp_len = total; break; }
    }
    close(fd);
}

static struct rusage ru0, ru1;
static uint64_t t0, t1;
static void start_clock(void) { getrusage(RUSAGE_SELF, &ru0); t0 = now_ns(); }
static double tv(struct timeval a) { return a.tv_sec * 1e6 + a.tv_usec; }
static void report(const char *mode) {
    t1 = now_ns(); getrusage(RUSAGE_SELF, &ru1);
    double us = tv(ru1.ru_utime) - tv(ru0.ru_utime), ss = tv(ru1.ru_stime) - tv(ru0.ru_stime);
    double secs = (t1 - t0) / 1e9;
    printf("%-7s reqs=%llu rps=%.0f cpu_us_per_req=%.3f user=%.3f sys=%.3f syscalls_per_req=%.3f\n",
           mode, (unsigned long long)completed, completed / secs, (us + ss) / completed,
           us / completed, ss / completed, (double)nsys / completed);
    if (lat_on) {
        double q[] = { 0.5, 0.9, 0.99, 0.999 }; uint64_t acc = 0; int k = 0;
        printf("  latency_us");
        for (int b = 0; b < 100000 && k < 4; b++) {
            acc += hist[b];
            while (k < 4 && acc >= q[k] * completed) { printf(" p%g=%d", q[k] * 100, b); k++; }
        }
        printf(" mean=%.1f\n", 1e6 * nconn / (completed / secs));
    }
}

/* ---------------- epoll ---------------- */
static inline long sys_send(int i) { nsys++; SENT(i); return syscall(SYS_sendto, fds[i], req, req_len, MSG_NOSIGNAL, NULL, 0); }

static void run_epoll(double dur) {
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        fds[i] = connect_one(1);
        struct epoll_event ev = { .events = EPOLLIN | (getenv("EPOLL_ET") ? EPOLLET : 0), .data.u32 = i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct epoll_event evs[256];
    struct timespec to = { 0, 5000000 };
    /* SLEEP_US=n: never block on the sockets; when a poll finds nothing,
     * sleep n µs on an empty epoll set (a timer wake-up on this CPU, no wake-up from the server's
     * CPU), then poll again with a zero timeout. */
    const char *sl = getenv("SLEEP_US");
    long sleep_us = sl ? atol(sl) : 0;
    int idle_ep = epoll_create1(0);
    struct timespec zero = { 0, 0 }, nap = { 0, sleep_us * 1000 };
    int polled_empty = 0;
    start_clock();
    uint64_t end = t0 + (uint64_t)(dur * 1e9);
    for (int i = 0; i < nconn; i++) if (sys_send(i) != req_len) die("send");
    while (now_ns() < end) {
        nsys++;
        int n;
        if (sleep_us && polled_empty) {
            syscall(SYS_epoll_pwait2, idle_ep, evs, 256, &nap, NULL, 8);
            nsys++;
        }
        n = syscall(SYS_epoll_pwait2, ep, evs, 256, sleep_us ? &zero : &to, NULL, 8);
        polled_empty = n == 0;
        if (n < 0) { if (errno == EINTR) continue; die("epoll_pwait2: %s", strerror(errno)); }
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            nsys++;
            long r = syscall(SYS_read, fds[i], rbuf[i], sizeof rbuf[i]);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; die("read %ld", r); }
            got[i] += r;
            if (got[i] >= resp_len) {
                got[i] -= resp_len; completed++; DONE(i);
                if (sys_send(i) != req_len) die("send");
            }
        }
    }
    report("epoll");
}

/* ---------------- io_uring plumbing ---------------- */
static int ring_fd, enter_fd;
static unsigned enter_flags;
static unsigned *sq_tail_p, *sq_mask_p, *sq_array, sq_tail;
static struct io_uring_sqe *sqes;
static unsigned *cq_head_p, *cq_tail_p, cq_mask;
static struct io_uring_cqe *cqes;
static unsigned to_submit;
static int use_fixed = 1, skip_send_cqe = 1, sync_send = 0;
static struct io_uring_buf_ring *br;
static char *bufpool;
static unsigned br_tail, br_mask;

static void ring_init(int defer) {
    struct io_uring_params p; memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    if (defer) p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    else p.flags |= IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = 4096;
    ring_fd = syscall(__NR_io_uring_setup, 512, &p);
    if (ring_fd < 0) die("io_uring_setup: %s", strerror(errno));
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) die("need SINGLE_MMAP");
    size_t sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t czs = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (czs > sz) sz = czs;
    char *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
    if (m == MAP_FAILED) die("mmap ring");
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) die("mmap sqes");
    sq_tail_p = (unsigned *)(m + p.sq_off.tail); sq_mask_p = (unsigned *)(m + p.sq_off.ring_mask);
    sq_array = (unsigned *)(m + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++) sq_array[i] = i;
    sq_tail = *sq_tail_p;
    cq_head_p = (unsigned *)(m + p.cq_off.head); cq_tail_p = (unsigned *)(m + p.cq_off.tail);
    cq_mask = *(unsigned *)(m + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(m + p.cq_off.cqes);
    enter_fd = ring_fd; enter_flags = 0;
    if (!getenv("URING_NOREGRING")) {
        struct io_uring_rsrc_update up = { .offset = -1U, .data = ring_fd };
        if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_RING_FDS, &up, 1) == 1) {
            enter_fd = up.offset; enter_flags = IORING_ENTER_REGISTERED_RING;
        }
    }
    if (getenv("URING_NOFIXED")) use_fixed = 0;
    if (getenv("URING_SENDCQE")) skip_send_cqe = 0;
}

static void register_files(void) {
    if (!use_fixed) return;
    if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_FILES, fds, nconn) < 0)
        die("register files: %s", strerror(errno));
}

static void pbuf_init(void) {
    br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    bufpool = aligned_alloc(4096, (size_t)NBUFS * BUFSZ); memset(bufpool, 0, (size_t)NBUFS * BUFSZ);
    struct io_uring_buf_reg reg; memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br; reg.ring_entries = NBUFS; reg.bgid = 0;
    if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        die("register pbuf ring: %s", strerror(errno));
    br_mask = NBUFS - 1; br_tail = 0;
    for (int i = 0; i < NBUFS; i++) {
        struct io_uring_buf *b = &br->bufs[br_tail++ & br_mask];
        b->addr = (uint64_t)(uintptr_t)(bufpool + (size_t)i * BUFSZ); b->len = BUFSZ; b->bid = i;
    }
    __atomic_store_n(&br->tail, (uint16_t)br_tail, __ATOMIC_RELEASE);
}
static inline void pbuf_recycle(unsigned bid) {
    struct io_uring_buf *b = &br->bufs[br_tail++ & br_mask];
    b->addr = (uint64_t)(uintptr_t)(bufpool + (size_t)bid * BUFSZ); b->len = BUFSZ; b->bid = bid;
}
static inline void pbuf_publish(void) { __atomic_store_n(&br->tail, (uint16_t)br_tail, __ATOMIC_RELEASE); }

static inline struct io_uring_sqe *get_sqe(void) {
    struct io_uring_sqe *s = &sqes[sq_tail & *sq_mask_p];
    sq_tail++; to_submit++;
    memset(s, 0, sizeof *s);
    return s;
}
enum { T_RECV = 1, T_SEND = 2 };
static inline void prep_fd(struct io_uring_sqe *s, int i) {
    if (use_fixed) { s->fd = i; s->flags |= IOSQE_FIXED_FILE; } else s->fd = fds[i];
}
static inline void q_send(int i) {
    struct io_uring_sqe *s = get_sqe();
    SENT(i);
    s->opcode = IORING_OP_SEND; prep_fd(s, i);
    s->addr = (uint64_t)(uintptr_t)req; s->len = req_len; s->msg_flags = MSG_NOSIGNAL;
    if (skip_send_cqe) s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    s->user_data = ((uint64_t)T_SEND << 32) | i;
}
static inline void q_recv_multi(int i) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_RECV; prep_fd(s, i);
    s->flags |= IOSQE_BUFFER_SELECT; s->buf_group = 0; s->ioprio = IORING_RECV_MULTISHOT;
    s->user_data = ((uint64_t)T_RECV << 32) | i;
}
static inline void q_recv_one(int i) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_RECV; prep_fd(s, i);
    s->addr = (uint64_t)(uintptr_t)rbuf[i]; s->len = sizeof rbuf[i];
    s->user_data = ((uint64_t)T_RECV << 32) | i;
}
/* URING_MINWAIT=us (kernel >= 6.12, IORING_FEAT_MIN_TIMEOUT): pass min_wait_usec in
 * io_uring_getevents_arg (the 6.1 header calls that field `pad`): wait up to `us` for
 * min_complete CQEs, then return as soon as >= 1 is there (bounded batching delay). */
static unsigned min_wait_us;
static struct __kernel_timespec ext_ts = { 1, 0 };
static struct io_uring_getevents_arg ext_arg;
static inline int enter(unsigned min_complete, unsigned flags) {
    __atomic_store_n(sq_tail_p, sq_tail, __ATOMIC_RELEASE);
    unsigned n = to_submit; to_submit = 0; nsys++;
    int r;
    if (min_wait_us && (flags & IORING_ENTER_GETEVENTS))
        r = syscall(__NR_io_uring_enter, enter_fd, n, min_complete, flags | enter_flags | IORING_ENTER_EXT_ARG,
                    &ext_arg, sizeof ext_arg);
    else
        r = syscall(__NR_io_uring_enter, enter_fd, n, min_complete, flags | enter_flags, NULL, 0);
    if (r < 0 && errno != EINTR && errno != ETIME) die("io_uring_enter: %s", strerror(errno));
    return r;
}

/* uringr: the request goes out with a sendto() syscall now; otherwise as a SEND SQE. */
static inline void send_req(int i) {
    if (!sync_send) { q_send(i); return; }
    if (sys_send(i) != req_len) die("send");
}

static void run_uring(double dur, int multishot) {
    for (int i = 0; i < nconn; i++) fds[i] = connect_one(1);
    ring_init(!getenv("URING_NODEFER"));
    register_files();
    if (multishot) pbuf_init();
    for (int i = 0; i < nconn; i++) multishot ? q_recv_multi(i) : (void)0;
    enter(0, 0);
    start_clock();
    uint64_t end = t0 + (uint64_t)(dur * 1e9);
    unsigned waitnr = getenv("URING_WAITNR") ? atoi(getenv("URING_WAITNR")) : 1;
    if (waitnr < 1 || waitnr > (unsigned)nconn) waitnr = 1;
    if (getenv("URING_MINWAIT")) {
        min_wait_us = atoi(getenv("URING_MINWAIT"));
        ext_arg.pad = min_wait_us; ext_arg.ts = (uint64_t)(uintptr_t)&ext_ts;
    }
    if (getenv("URING_TS_US")) {  /* plain timeout (like barfast's 5 ms epoll_pwait2 timeout) */
        long us = atol(getenv("URING_TS_US"));
        ext_ts.tv_sec = us / 1000000; ext_ts.tv_nsec = (us % 1000000) * 1000;
        ext_arg.ts = (uint64_t)(uintptr_t)&ext_ts; min_wait_us = 1; ext_arg.pad = 0;  /* min_wait_us only flags EXT_ARG use */
    }
    for (int i = 0; i < nconn; i++) { send_req(i); if (!multishot) q_recv_one(i); }
    while (now_ns() < end) {
        enter(waitnr, IORING_ENTER_GETEVENTS);
        unsigned head = *cq_head_p, tail = __atomic_load_n(cq_tail_p, __ATOMIC_ACQUIRE);
        int recycled = 0;
        for (; head != tail; head++) {
            struct io_uring_cqe *c = &cqes[head & cq_mask];
            int i = (uint32_t)c->user_data, t = c->user_data >> 32;
            int res = c->res; unsigned fl = c->flags;
            if (t == T_SEND) { if (res != req_len) die("send cqe res=%d", res); continue; }
            if (multishot) {
                if (fl & IORING_CQE_F_BUFFER) { pbuf_recycle(fl >> IORING_CQE_BUFFER_SHIFT); recycled = 1; }
                if (!(fl & IORING_CQE_F_MORE)) q_recv_multi(i);  /* re-arm (ENOBUFS etc.) */
                if (res == -ENOBUFS) continue;
            }
            if (res <= 0) die("recv cqe res=%d", res);
            got[i] += res;
            if (got[i] >= resp_len) {
                got[i] -= resp_len; completed++; DONE(i);
                send_req(i);
                if (!multishot) q_recv_one(i);
            } else if (!multishot) q_recv_one(i);
        }
        __atomic_store_n(cq_head_p, head, __ATOMIC_RELEASE);
        if (recycled) pbuf_publish();
    }
    report(sync_send ? "uringr" : multishot ? "uring" : "uring1");
}

static void run_hybrid(double dur) {
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        fds[i] = connect_one(1);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    ring_init(!getenv("URING_NODEFER"));
    register_files();
    struct epoll_event evs[256];
    struct timespec to = { 0, 5000000 };
    start_clock();
    uint64_t end = t0 + (uint64_t)(dur * 1e9);
    for (int i = 0; i < nconn; i++) q_send(i);
    enter(0, 0);
    while (now_ns() < end) {
        nsys++;
        int n = syscall(SYS_epoll_pwait2, ep, evs, 256, &to, NULL, 8);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_pwait2: %s", strerror(errno)); }
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            nsys++;
            long r = syscall(SYS_read, fds[i], rbuf[i], sizeof rbuf[i]);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; die("read %ld", r); }
            got[i] += r;
            if (got[i] >= resp_len) { got[i] -= resp_len; completed++; DONE(i); q_send(i); }
        }
        if (to_submit) enter(0, 0);
        /* reap (only error/unskipped CQEs arrive) */
        unsigned head = *cq_head_p, tail = __atomic_load_n(cq_tail_p, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *c = &cqes[head & cq_mask];
            if (c->res != req_len) die("hybrid send cqe res=%d", c->res);
        }
        __atomic_store_n(cq_head_p, head, __ATOMIC_RELEASE);
    }
    report("hybrid");
}

int main(int argc, char **argv) {
    if (argc < 3) die("usage: %s epoll|uring|uring1|hybrid PORT [CONNS] [SECONDS]", argv[0]);
    port = atoi(argv[2]);
    nconn = argc > 3 ? atoi(argv[3]) : 50;
    double dur = argc > 4 ? atof(argv[4]) : 5;
    if (nconn > MAXC) die("too many conns");
    signal(SIGPIPE, SIG_IGN);
    lat_on = getenv("LAT") != NULL;
    work_ns = getenv("WORK_NS") ? atoll(getenv("WORK_NS")) : 0;
    req_len = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    learn_resp_len();
    if (!strcmp(argv[1], "epoll")) run_epoll(dur);
    else if (!strcmp(argv[1], "uring")) run_uring(dur, 1);
    else if (!strcmp(argv[1], "uring1")) run_uring(dur, 0);
    else if (!strcmp(argv[1], "hybrid")) run_hybrid(dur);
    else if (!strcmp(argv[1], "uringr")) { sync_send = 1; run_uring(dur, 1); }
    else die("unknown mode %s", argv[1]);
    return 0;
}
