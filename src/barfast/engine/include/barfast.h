/* barfast.h — the C-level contracts shared by every fragment of the core.
 * Owns: the 64-byte sample record, the error kinds, the sample flags, memory-ordered atomics.
 * Never: depends on Python.h; the layout here is part of docs/ring-format.md (change both or neither).
 * Invariants: sizeof(bf_sample_t) == 64, little-endian field order as written, no implicit padding.
 */
#ifndef BARFAST_H
#define BARFAST_H

#include <stdint.h>

#ifndef BARFAST_DEBUG
#define BARFAST_DEBUG 0
#endif

/* One finished (or failed) request.  All times are CLOCK_MONOTONIC nanoseconds. */
typedef struct bf_sample_s {
    uint64_t intended_ns;    /*  0: when the schedule wanted it sent (== send_ns in closed loop) */
    uint64_t send_ns;        /*  8: first byte of the request handed to the kernel (0: never sent) */
    uint64_t first_byte_ns;  /* 16: first byte of the response read (0: none) */
    uint64_t done_ns;        /* 24: response complete, or the moment the error was detected */
    uint64_t seq;            /* 32: per-producer sample sequence number, 0,1,2,... (gaps = drops) */
    uint32_t bytes_rx;       /* 40: response bytes read for this request (headers + body) */
    uint32_t bytes_tx;       /* 44: request bytes written */
    uint32_t conn_id;        /* 48: connection slot index inside the producing engine */
    uint16_t endpoint;       /* 52: endpoint id (0 while there is one URL) */
    uint16_t status;         /* 54: HTTP status code, 0 when no final status was parsed */
    uint8_t  error;          /* 56: bf_error_t, 0 = none */
    uint8_t  flags;          /* 57: BF_FLAG_* bits */
    uint16_t sys_errno;      /* 58: errno for connect/read/write/tls errors; on a completed request
                              *     that opened a TLS connection (NEW_CONN, error 0): its handshake
                              *     time as bf_f16_us (below); else 0 */
    uint32_t connect_us;     /* 60: BF_FLAG_NEW_CONN: its connection's connect() to established, µs
                              *     (rounded up, >= 1; saturates at 2^32-1); else 0 */
} bf_sample_t;

_Static_assert(sizeof(bf_sample_t) == 64, "sample record must be 64 bytes");

/* Error kinds.  Values are part of the ring contract. */
enum bf_error_e {
    BF_ERR_NONE = 0,
    BF_ERR_CONNECT = 1,     /* connect() failed or the connect timeout fired (sys_errno says which) */
    BF_ERR_TIMEOUT = 2,     /* no complete response within the request timeout */
    BF_ERR_READ = 3,        /* read() failed (ECONNRESET, ...) */
    BF_ERR_WRITE = 4,       /* write() failed (EPIPE, ECONNRESET, ...) */
    BF_ERR_PARSE = 5,       /* malformed response (bad status line, bad lengths, oversized headers) */
    BF_ERR_CLOSED = 6,      /* peer closed the connection before the response was complete */
    BF_ERR_NOT_SENT = 7,    /* open loop: the run ended before a scheduled request could be sent */
    BF_ERR_TLS = 8,         /* TLS handshake or record failure (verification, alert, bad record) */
    BF_ERR__COUNT = 9
};

/* bf_f16_us: a duration in µs in 16 bits. exp = code >> 11: 0 -> code µs exactly (< 2048 µs);
 * else (2048 + (code & 0x7FF)) << (exp - 1) µs (11 bits of mantissa: 0.05 %), rounded up. */

#define BF_FLAG_NEW_CONN   0x01  /* this request was the first on a freshly opened connection */
#define BF_FLAG_CONN_CLOSE 0x02  /* the connection was closed after this response */
#define BF_FLAG_OPEN_LOOP  0x04  /* intended_ns comes from a schedule (open loop) */
#define BF_FLAG_INTERIM    0x08  /* one or more 1xx interim responses preceded the final one */
#define BF_FLAG_CHECK_FAIL 0x10  /* a complete response whose status failed its endpoint's check */
#define BF_FLAG_ITERATION  0x20  /* not a request: a flow iteration ended (endpoint = the flow's
                                  * slot after the endpoints, intended_ns its start, done_ns its end,
                                  * status 1 completed / 2 failed; no bytes, never an error) */

/* Memory-ordered atomics (GCC/Clang __atomic builtins).  On x86-64 acquire/release compile to plain
 * moves plus a compiler barrier; on arm64 to ldar/stlr.  Loads never take RELEASE and stores never take
 * ACQUIRE (GCC manual, "__atomic Builtins"). */
static inline uint64_t bf_load_acquire_u64(const volatile uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint64_t bf_load_relaxed_u64(const volatile uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void bf_store_release_u64(volatile uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void bf_store_relaxed_u64(volatile uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline uint64_t bf_fetch_add_relaxed_u64(volatile uint64_t *p, uint64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline int bf_load_acquire_int(const volatile int *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void bf_store_release_int(volatile int *p, int v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

#endif /* BARFAST_H */
