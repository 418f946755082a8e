/* bf_sys.h — raw system calls for the engine's per-request path.
 * Owns: bf_send, bf_read, bf_epoll_wait, bf_epoll_pwait2 (same contracts as the libc calls:
 *       -1 and errno on failure); bf_recv_stamped/bf_rx_stamps_on (a read that also returns the
 *       kernel's receive timestamp of the data); bf_schedstat_open/bf_schedstat_wait_ns (the loop
 *       thread's run-queue wait, read once per scan, not per request).
 * Why: glibc's send()/read()/epoll_wait()/epoll_pwait2() are pthread cancellation points, each
 *      wrapped in __pthread_enable_asynccancel/__pthread_disable_asynccancel; perf put those
 *      wrappers at ~1.6 % of a closed-loop request's CPU on this project's VMs. The engine never
 *      uses thread cancellation, so it calls the kernel directly.
 * Never: used for anything that may block without a timeout chosen by the engine.
 */
#ifndef BF_SYS_H
#define BF_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441   /* the same number on every architecture (Linux 5.11) */
#endif

#if defined(__x86_64__)
static inline long bf_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
static inline long bf_sysret(long r) {
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}
#define BF_SYSCALL(n, a1, a2, a3, a4, a5, a6) \
    bf_sysret(bf_syscall6((n), (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5), (long)(a6)))
#else
/* syscall(2) itself is not a cancellation point. */
#define BF_SYSCALL(n, a1, a2, a3, a4, a5, a6) syscall((n), (a1), (a2), (a3), (a4), (a5), (a6))
#endif

static inline ssize_t bf_send(int fd, const void *buf, size_t len, int flags) {
    return (ssize_t)BF_SYSCALL(SYS_sendto, fd, buf, len, flags, 0, 0);
}

static inline ssize_t bf_read(int fd, void *buf, size_t len) {
    return (ssize_t)BF_SYSCALL(SYS_read, fd, buf, len, 0, 0, 0);
}

static inline int bf_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    /* epoll_pwait with no signal mask is epoll_wait, and exists on every architecture */
    return (int)BF_SYSCALL(SYS_epoll_pwait, epfd, events, maxevents, timeout, 0, 8);
}

static inline int bf_epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
                                  const struct timespec *timeout) {
    return (int)BF_SYSCALL(SYS_epoll_pwait2, epfd, events, maxevents, timeout, 0, 8);
}

/* Ask the kernel to stamp this socket's received data (SO_TIMESTAMPNS: CLOCK_REALTIME ns of the
 * skb's arrival, socket(7)). 0 or -1 and errno. */
static inline int bf_rx_stamps_on(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
}

/* read() that also returns, in *rx_real_ns, the kernel's receive stamp of the data it read (for TCP,
 * that of the last segment consumed: when the last byte read arrived; tcp(7), socket(7)
 * SO_TIMESTAMPNS), CLOCK_REALTIME ns, or 0 when the data came without one (stamps not enabled yet:
 * the kernel turns them on asynchronously after the first bf_rx_stamps_on). */
static inline ssize_t bf_recv_stamped(int fd, void *buf, size_t len, long long *rx_real_ns) {
    struct iovec iov;
    struct msghdr m;
    struct cmsghdr *c;
    struct timespec ts;
    union {
        char b[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl;
    ssize_t n;
    iov.iov_base = buf;
    iov.iov_len = len;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof ctl.b;
    *rx_real_ns = 0;
    n = (ssize_t)BF_SYSCALL(SYS_recvmsg, fd, &m, 0, 0, 0, 0);
    if (n > 0 && !(m.msg_flags & MSG_CTRUNC)) {
        for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                memcpy(&ts, CMSG_DATA(c), sizeof ts);
                *rx_real_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
            }
        }
    }
    return n;
}

/* The calling thread's run-queue wait so far, in ns: the second field of
 * /proc/thread-self/schedstat ("run_time run_delay timeslices", Documentation/scheduler/
 * sched-stats.rst). Open the file once with bf_schedstat_open() in the thread it describes; -1
 * when the kernel has no schedstat (CONFIG_SCHED_INFO off) or the file cannot be read. Not on the
 * per-request path: the engine reads it once per timeout scan (10 ms). */
static inline int bf_schedstat_open(void) {
    return open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
}
static inline long long bf_schedstat_wait_ns(int fd) {
    char buf[96];
    ssize_t n;
    int i = 0;
    long long v = 0;
    if (fd < 0)
        return -1;
    n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    while (i < n && buf[i] >= '0' && buf[i] <= '9')   /* run_time */
        i++;
    if (i == 0 || buf[i] != ' ')
        return -1;
    i++;
    if (buf[i] < '0' || buf[i] > '9')
        return -1;
    while (i < n && buf[i] >= '0' && buf[i] <= '9')   /* run_delay */
        v = v * 10 + (buf[i++] - '0');
    return v;
}

#endif /* BF_SYS_H */
