# ring.pxi — owns the lock-free SPSC sample ring: the 4096-byte shared header, the native producer
#   (ring_claim/ring_commit/ring_publish, batch reserve/advance) and the base `cdef class Ring`.
# Never: blocks, allocates or touches a Python object in a ring_* function (all noexcept nogil);
#   never moves a position backwards; never writes a slot the consumer has not released.
# Invariants: capacity is a power of two; positions are 64-bit and never wrap; slot = pos & mask;
#   0 <= prod_pos - cons_pos <= capacity; layout == docs/ring-format.md (change both or neither).
#
# Ordering (the perf ring buffer comment in kernel/events/ring_buffer.c;
# io_uring's liburing/barrier.h): the producer writes records with plain stores, then publishes
# them with ONE store-release of prod_pos; the consumer load-acquires prod_pos, reads the records,
# then store-releases cons_pos, which (C11 release orders earlier loads too) tells the producer the
# slots may be overwritten. The producer caches cons_pos and load-acquires it only when the cache
# says the ring is full, so a steady producer never touches the consumer's cache line.

from libc.string cimport memcpy

cdef extern from * nogil:
    """
    #include <stddef.h>
    #include <time.h>
    #include <sched.h>

    /* "BARFRING" as 8 ASCII bytes, read as a little-endian u64. */
    #define RING_MAGIC 0x474E495246524142ULL
    #define RING_VERSION 1u
    #define RING_HEADER_SIZE 4096u
    #define RING_LINE 128u

    /* The shared header: one 4096-byte page so that records start page-aligned.  Byte offsets are
     * part of docs/ring-format.md.  Lines 1-3 are 128 bytes apart: two 64-byte lines, because the
     * adjacent-line prefetcher fetches 128-byte pairs (Intel's optimization manual, "spatial
     * prefetcher"; Tachyon pads the same, Aeron to 64). */
    typedef struct ring_hdr_s {
        /* line 0 (0..127): written at creation; then only producer_pid / producer_done change */
        uint64_t magic;          /*   0 RING_MAGIC, written last at creation */
        uint32_t version;        /*   8 RING_VERSION */
        uint32_t record_size;    /*  12 sizeof(bf_sample_t) == 64 */
        uint64_t capacity;       /*  16 records, a power of two */
        uint64_t data_offset;    /*  24 byte offset of record 0 == RING_HEADER_SIZE */
        int64_t  producer_pid;   /*  32 pid of the producing process (0 unknown) */
        uint64_t created_ns;     /*  40 CLOCK_REALTIME ns at creation */
        int32_t  producer_done;  /*  48 0, then 1 (store-release) when the producer finished */
        uint32_t reserved0;      /*  52 zero */
        uint8_t  reserved1[72];  /*  56 zero */
        /* line 1 (128..255): written only by the producer */
        uint64_t prod_pos;       /* 128 records published so far (store-release) */
        uint8_t  pad1[120];
        /* line 2 (256..383): written only by the consumer */
        uint64_t cons_pos;       /* 256 records consumed so far (store-release) */
        uint8_t  pad2[120];
        /* line 3 (384..511): written only by the producer, rarely (only when dropping) */
        uint64_t dropped;        /* 384 records dropped because the ring was full (relaxed) */
        uint8_t  reserved2[4096 - 392];
    } ring_hdr_t;

    _Static_assert(sizeof(ring_hdr_t) == RING_HEADER_SIZE, "ring header must be one page");
    _Static_assert(offsetof(ring_hdr_t, producer_done) == 48, "ring header layout");
    _Static_assert(offsetof(ring_hdr_t, prod_pos) == 128, "ring header layout");
    _Static_assert(offsetof(ring_hdr_t, cons_pos) == 256, "ring header layout");
    _Static_assert(offsetof(ring_hdr_t, dropped) == 384, "ring header layout");

    /* Spin-wait hint: PAUSE on x86 (lets the sibling hyperthread run, avoids the memory-order
     * machine clear on loop exit), YIELD on arm64. */
    static inline void ring_cpu_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
    #else
        __asm__ __volatile__("" ::: "memory");
    #endif
    }

    static inline uint64_t ring_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }

    /* Waiting for the other side (bench/test loops only; the engine never waits on the ring).
     * Spin with PAUSE first, and only after RING_SPIN_NS of continuous waiting give the CPU away:
     * on a CPU shared with other runnable tasks sched_yield() can cost a whole CFS slice (ms),
     * which would measure the scheduler, not the ring.  Returns 0 once past deadline_ns. */
    #define RING_SPIN_NS 20000ull
    #define RING_BATCH_WAIT_NS 50000ull
    typedef struct { uint64_t spins, since_ns; } ring_wait_t;
    static inline void ring_wait_reset(ring_wait_t *w) { w->spins = 0; w->since_ns = 0; }
    static inline int ring_wait(ring_wait_t *w, uint64_t deadline_ns) {
        uint64_t now;
        if ((++w->spins & 63u) != 0) { ring_cpu_relax(); return 1; }
        now = ring_now_ns();
        if (w->since_ns == 0) w->since_ns = now;
        if (now > deadline_ns) return 0;
        if (now - w->since_ns > RING_SPIN_NS) sched_yield(); else ring_cpu_relax();
        return 1;
    }

    /* Deterministic record content from seq: every field depends on seq, so a torn or stale record
     * (half old, half new) differs from this in at least one field.  Bench and tests only. */
    static inline void ring_fill_from_seq(bf_sample_t *s, uint64_t seq) {
        s->intended_ns = seq;
        s->send_ns = seq * 3u + 1u;
        s->first_byte_ns = ~seq;
        s->done_ns = seq ^ 0x5a5a5a5a5a5a5a5aull;
        s->seq = seq;
        s->bytes_rx = (uint32_t)seq;
        s->bytes_tx = (uint32_t)(seq >> 32);
        s->conn_id = (uint32_t)(seq * 7u);
        s->endpoint = (uint16_t)(seq >> 3);
        s->status = (uint16_t)(100u + seq % 500u);
        s->error = (uint8_t)(seq % 8u);
        s->flags = (uint8_t)(seq >> 8);
        s->sys_errno = (uint16_t)(seq >> 16);
        s->connect_us = (uint32_t)(seq ^ (seq >> 32));
    }

    static inline int ring_check_seq(const bf_sample_t *s, uint64_t seq) {
        bf_sample_t e;
        ring_fill_from_seq(&e, seq);
        return __builtin_memcmp(s, &e, sizeof e) == 0;
    }
    """
    uint64_t RING_MAGIC
    uint32_t RING_VERSION
    uint32_t RING_HEADER_SIZE
    uint64_t RING_BATCH_WAIT_NS

    ctypedef struct ring_hdr_t:
        uint64_t magic
        uint32_t version
        uint32_t record_size
        uint64_t capacity
        uint64_t data_offset
        int64_t producer_pid
        uint64_t created_ns
        int32_t producer_done
        uint64_t prod_pos
        uint64_t cons_pos
        uint64_t dropped

    void ring_cpu_relax()
    uint64_t ring_now_ns()
    ctypedef struct ring_wait_t:
        uint64_t spins
        uint64_t since_ns
    void ring_wait_reset(ring_wait_t *w)
    int ring_wait(ring_wait_t *w, uint64_t deadline_ns)
    void ring_fill_from_seq(bf_sample_t *s, uint64_t seq)
    int ring_check_seq(const bf_sample_t *s, uint64_t seq)
    int sched_yield()


# Process-local handle.  Only the producer uses prod_pos/cons_cache; a consumer reads the header.
ctypedef struct ring_t:
    ring_hdr_t *hdr          # the shared header (NULL when unmapped)
    bf_sample_t *records     # record 0, at hdr + data_offset
    uint64_t mask            # capacity - 1
    uint64_t capacity
    uint64_t prod_pos        # local copy of hdr.prod_pos (only the producer writes it)
    uint64_t cons_cache      # last hdr.cons_pos the producer saw; re-read only when "full"


# ---------------------------------------------------------------- producer (hot, native)

cdef inline void ring_producer_sync(ring_t *r) noexcept nogil:
    """Reload the producer's local state from the header (on attach, or when a process takes over
    producing, e.g. after fork).  Relaxed is enough for prod_pos: only a producer writes it."""
    r.prod_pos = bf_load_relaxed_u64(&r.hdr.prod_pos)
    r.cons_cache = bf_load_acquire_u64(&r.hdr.cons_pos)


cdef inline void ring_count_dropped(ring_t *r, uint64_t n) noexcept nogil:
    # Single writer (the producer), so load+store needs no atomic RMW (no LOCK prefix).  Relaxed:
    # a later store-release of prod_pos or producer_done publishes it to a consumer that acquires.
    bf_store_relaxed_u64(&r.hdr.dropped, bf_load_relaxed_u64(&r.hdr.dropped) + n)


cdef inline bf_sample_t *ring_try_claim(ring_t *r) noexcept nogil:
    """The next free slot, or NULL when the ring is full (nothing counted)."""
    cdef uint64_t pos = r.prod_pos
    if pos - r.cons_cache >= r.capacity:
        # The cache says full: look at the real consumer position.  Acquire pairs with the
        # consumer's store-release of cons_pos, so its reads of the slot happened before we write.
        r.cons_cache = bf_load_acquire_u64(&r.hdr.cons_pos)
        # unsigned: a hostile cons_pos > pos makes this huge, i.e. "full", never an overrun
        if pos - r.cons_cache >= r.capacity:
            return NULL
    return &r.records[pos & r.mask]


cdef inline bf_sample_t *ring_claim(ring_t *r) noexcept nogil:
    """The next free slot to fill, then ring_commit(); or NULL when full (the drop is counted)."""
    cdef bf_sample_t *slot = ring_try_claim(r)
    if slot == NULL:
        ring_count_dropped(r, 1)
    return slot


cdef inline void ring_commit(ring_t *r) noexcept nogil:
    """Publish the slot returned by the last ring_claim (store-release of prod_pos)."""
    r.prod_pos += 1
    bf_store_release_u64(&r.hdr.prod_pos, r.prod_pos)


cdef inline bint ring_publish(ring_t *r, const bf_sample_t *s) noexcept nogil:
    """Copy one record in and publish it; 0 = the ring was full and the record was dropped."""
    cdef bf_sample_t *slot = ring_claim(r)
    if slot == NULL:
        return 0
    slot[0] = s[0]
    ring_commit(r)
    return 1


cdef inline uint64_t ring_reserve(ring_t *r, uint64_t want) noexcept nogil:
    """How many of `want` slots from prod_pos on are free (may be fewer; 0 when full).  Nothing is
    counted; fill them (they may wrap: index with & mask) then ring_advance()."""
    cdef uint64_t used = r.prod_pos - r.cons_cache
    if used > r.capacity or r.capacity - used < want:
        r.cons_cache = bf_load_acquire_u64(&r.hdr.cons_pos)
        used = r.prod_pos - r.cons_cache
        if used > r.capacity:      # hostile/corrupt consumer position: behave as full
            return 0
    if r.capacity - used < want:
        return r.capacity - used
    return want


cdef inline void ring_advance(ring_t *r, uint64_t n) noexcept nogil:
    """Publish n filled slots at once: one store-release for the whole batch."""
    r.prod_pos += n
    bf_store_release_u64(&r.hdr.prod_pos, r.prod_pos)


cdef inline uint64_t ring_copy_in(ring_t *r, const bf_sample_t *src, uint64_t n,
                                  bint count_dropped) noexcept nogil:
    """Copy up to n records into free slots (at most two memcpy), publish them with one
    store-release, count the rest as dropped (if count_dropped); returns the number accepted."""
    cdef uint64_t k = ring_reserve(r, n)
    cdef uint64_t idx = r.prod_pos & r.mask
    cdef uint64_t first = r.capacity - idx
    if first > k:
        first = k
    if k:
        memcpy(&r.records[idx], src, first * sizeof(bf_sample_t))
        if k > first:
            memcpy(&r.records[0], src + first, (k - first) * sizeof(bf_sample_t))
        ring_advance(r, k)
    if k < n and count_dropped:
        ring_count_dropped(r, n - k)
    return k


# ---------------------------------------------------------------- the mapping (Python-facing base)

cdef class Ring:
    """Base of barfast.ring.Ring: owns the mapping and the native handle `c` (engine uses ring.c).

    Construct through barfast.ring.Ring.create()/attach(), which validate the header first."""

    cdef ring_t c
    cdef object _mm                     # the mmap.mmap (anonymous or file-backed, MAP_SHARED)
    cdef unsigned char[::1] _view        # our (writable) buffer export of _mm: the base pointer

    def __cinit__(self):
        self.c.hdr = NULL
        self.c.records = NULL
        self.c.mask = 0
        self.c.capacity = 0
        self.c.prod_pos = 0
        self.c.cons_cache = 0
        self._mm = None

    def _bind(self, mm):
        """Take a mapping whose header the caller has validated; re-checks the bounds cheaply so
        that no call sequence from Python can make the native side read outside the mapping."""
        if self.c.hdr != NULL:
            raise ValueError("ring is already bound")
        cdef unsigned char[::1] view = mm
        cdef Py_ssize_t size = view.shape[0]
        if size < RING_HEADER_SIZE:
            raise ValueError("mapping smaller than the ring header")
        cdef ring_hdr_t *hdr = <ring_hdr_t *>&view[0]
        cdef uint64_t cap = hdr.capacity
        if (hdr.magic != RING_MAGIC or hdr.version != RING_VERSION
                or hdr.record_size != sizeof(bf_sample_t) or hdr.data_offset != RING_HEADER_SIZE
                or cap == 0 or (cap & (cap - 1)) != 0 or cap > (<uint64_t>1 << 40)
                or <uint64_t>size < RING_HEADER_SIZE + cap * sizeof(bf_sample_t)):
            raise ValueError("ring header failed validation")
        self._view = view
        self._mm = mm
        self.c.hdr = hdr
        self.c.records = <bf_sample_t *>(<char *>hdr + RING_HEADER_SIZE)
        self.c.capacity = cap
        self.c.mask = cap - 1
        ring_producer_sync(&self.c)

    def _unbind(self):
        """Forget the mapping: returns the mmap (the caller closes it when no view is left)."""
        mm = self._mm
        self.c.hdr = NULL
        self.c.records = NULL
        self.c.capacity = 0
        self.c.mask = 0
        self._view = None
        self._mm = None
        return mm

    cdef inline ring_hdr_t *_hdr(self) except NULL:
        if self.c.hdr == NULL:
            from barfast.ring import RingClosedError  # error path only (no import cycle at load)
            raise RingClosedError("ring is closed")
        return self.c.hdr

    @property
    def closed(self):
        return self.c.hdr == NULL

    # Header fields and positions (each an atomic access with the ordering the contract names).
    def _prod_pos(self):
        return bf_load_acquire_u64(&self._hdr().prod_pos)

    def _cons_pos(self):
        return bf_load_acquire_u64(&self._hdr().cons_pos)

    def _set_cons_pos(self, uint64_t pos):
        bf_store_release_u64(&self._hdr().cons_pos, pos)

    def _dropped(self):
        # acquire on producer_done first: a finished producer's last drops are then visible
        cdef ring_hdr_t *h = self._hdr()
        bf_load_acquire_int(<int *>&h.producer_done)
        return bf_load_relaxed_u64(&h.dropped)

    def _producer_done(self):
        return bf_load_acquire_int(<int *>&self._hdr().producer_done) != 0

    def _mark_producer_done(self):
        bf_store_release_int(<int *>&self._hdr().producer_done, 1)

    def _producer_pid(self):
        return self._hdr().producer_pid

    def _claim_producer(self, int64_t pid):
        """This process becomes the producer: record its pid, reload the producer's local state."""
        cdef ring_hdr_t *h = self._hdr()
        h.producer_pid = pid
        ring_producer_sync(&self.c)

    def _header_info(self):
        cdef ring_hdr_t *h = self._hdr()
        return {"magic": h.magic, "version": h.version, "record_size": h.record_size,
                "capacity": h.capacity, "data_offset": h.data_offset,
                "producer_pid": h.producer_pid, "created_ns": h.created_ns}

    def _publish_bytes(self, const unsigned char[::1] src not None, bint count_dropped=True):
        """Copy whole records from a contiguous buffer (len a multiple of 64) into the ring: as many
        as fit, one store-release, the rest counted as dropped (unless count_dropped is false: a
        producer that will retry them).  Returns the number accepted."""
        self._hdr()
        cdef Py_ssize_t nbytes = src.shape[0]
        if nbytes % sizeof(bf_sample_t):
            raise ValueError("buffer length is not a multiple of the record size")
        cdef uint64_t n = <uint64_t>nbytes // sizeof(bf_sample_t)
        cdef uint64_t k
        if n == 0:
            return 0
        with nogil:
            k = ring_copy_in(&self.c, <const bf_sample_t *>&src[0], n, count_dropped)
        return k


# ---------------------------------------------------------------- benchmark / stress helpers

def _bench_produce(Ring ring not None, uint64_t n, uint64_t batch=4096, bint single=False,
                   uint64_t first_seq=0, bint retry=True, double timeout_s=30.0, bint full=True):
    """Publish records seq = first_seq .. first_seq+n-1 under nogil.

    single=False: reserve up to `batch` slots, fill in place, one store-release per batch.
    single=True: ring_publish() one stack record at a time (store-release per record).
    retry=True: a full ring is waited out (benchmark/test producer; spins, then sched_yield);
    retry=False: the real producer rule, full -> drop + count.
    full=True: every field derived from seq (ring_fill_from_seq; torn records detectable);
    full=False: a 64-byte template copied per record with only seq changed (the benchmark: it
    measures the ring, not the arithmetic of the fill).
    Returns (published, dropped, t_first_ns, t_last_ns, timed_out)."""
    cdef ring_t *r = &ring.c
    ring._hdr()
    ring_producer_sync(r)
    cdef uint64_t seq = first_seq, end = first_seq + n, k, i, published = 0, dropped = 0
    cdef uint64_t t0, t1, deadline, timeout_ns = <uint64_t>(timeout_s * 1e9), pos, mask = r.mask
    cdef ring_wait_t w
    ring_wait_reset(&w)
    cdef bf_sample_t s
    cdef bf_sample_t *slot
    cdef bf_sample_t *recs = r.records
    cdef bint timed_out = False
    if batch == 0:
        batch = 1
    ring_fill_from_seq(&s, 0)
    with nogil:
        t0 = ring_now_ns()
        deadline = t0 + timeout_ns
        while seq < end:
            if single:
                if full:
                    ring_fill_from_seq(&s, seq)
                else:
                    s.seq = seq
                if retry and ring_try_claim(r) == NULL:
                    k = 0
                elif ring_publish(r, &s):
                    k = 1
                    published += 1
                    seq += 1
                else:
                    dropped += 1
                    seq += 1
                    continue
            else:
                k = end - seq
                if k > batch:
                    k = batch
                k = ring_reserve(r, k)
                if k:
                    pos = r.prod_pos  # a local: stores to records may alias ring_t's fields
                    if full:
                        for i in range(k):
                            ring_fill_from_seq(&recs[(pos + i) & mask], seq + i)
                    else:
                        for i in range(k):
                            slot = &recs[(pos + i) & mask]
                            slot[0] = s
                            slot.seq = seq + i
                    ring_advance(r, k)
                    seq += k
                    published += k
                elif not retry:
                    ring_count_dropped(r, 1)
                    dropped += 1
                    seq += 1
                    continue
            if k:
                ring_wait_reset(&w)
                continue
            if not ring_wait(&w, deadline):  # full and retrying: wait for the consumer
                timed_out = True
                break
        t1 = ring_now_ns()
    return published, dropped, t0, t1, timed_out


def _bench_consume(Ring ring not None, uint64_t n, bint check_all=True, bint until_done=False,
                   uint64_t first_seq=0, double timeout_s=30.0, uint64_t min_batch=0):
    """Consume under nogil and verify every record against ring_fill_from_seq.

    Reads whatever is published (whole batches), then one store-release of cons_pos per batch.
    until_done=False: stop after n records.  until_done=True: stop when the producer marked itself
    done and nothing is pending (n is then only an upper bound; seq gaps are counted).
    check_all: compare every byte of every record (torn/stale detection), else seq only.
    min_batch: when fewer records than this are pending, wait up to RING_BATCH_WAIT_NS for more
    (pausing without touching the shared lines) instead of chasing the producer record by record:
    every poll of prod_pos takes its cache line away from a producer that stores it per record.
    Returns dict(received, bad, gaps, first_bad, last_seq, t_first_ns, t_last_ns, timed_out)."""
    cdef ring_hdr_t *h = ring._hdr()
    cdef bf_sample_t *recs = ring.c.records
    cdef uint64_t mask = ring.c.mask, cap = ring.c.capacity
    cdef uint64_t cons = bf_load_relaxed_u64(&h.cons_pos), prod, i, avail
    cdef uint64_t expect = first_seq, received = 0, bad = 0, gaps = 0, first_bad = <uint64_t>-1
    cdef uint64_t t_first = 0, t_last = 0, deadline, seq, batch_wait = 0, now, j
    cdef ring_wait_t w
    ring_wait_reset(&w)
    cdef uint64_t timeout_ns = <uint64_t>(timeout_s * 1e9)
    cdef bf_sample_t *s
    cdef bint timed_out = False, corrupt = False
    with nogil:
        deadline = ring_now_ns() + timeout_ns
        while until_done or received < n:
            prod = bf_load_acquire_u64(&h.prod_pos)
            avail = prod - cons
            if avail > cap:
                corrupt = True
                break
            if avail == 0:
                if until_done and bf_load_acquire_int(<int *>&h.producer_done):
                    # done was released after the last prod_pos store: re-check once
                    if bf_load_acquire_u64(&h.prod_pos) == cons:
                        break
                    continue
                if not ring_wait(&w, deadline):
                    timed_out = True
                    break
                continue
            ring_wait_reset(&w)
            if avail < min_batch and (until_done or avail < n - received):
                now = ring_now_ns()
                if batch_wait == 0:
                    batch_wait = now
                if now - batch_wait < RING_BATCH_WAIT_NS and not (
                        until_done and bf_load_acquire_int(<int *>&h.producer_done)):
                    for j in range(64):
                        ring_cpu_relax()
                    continue
            batch_wait = 0
            if t_first == 0:
                t_first = ring_now_ns()
            if not until_done and avail > n - received:
                avail = n - received
            for i in range(avail):
                s = &recs[(cons + i) & mask]
                seq = s.seq
                if seq != expect:
                    if until_done and seq > expect:
                        gaps += seq - expect
                        expect = seq
                    else:
                        bad += 1
                        if first_bad == <uint64_t>-1:
                            first_bad = cons + i
                        expect = seq
                if check_all and not ring_check_seq(s, seq):
                    bad += 1
                    if first_bad == <uint64_t>-1:
                        first_bad = cons + i
                expect += 1
            cons += avail
            received += avail
            # one store-release per batch: our reads of it happen-before the producer reuses it
            bf_store_release_u64(&h.cons_pos, cons)
        t_last = ring_now_ns()
    if corrupt:
        raise ValueError("ring positions are corrupt (producer ahead by more than capacity)")
    return {"received": received, "bad": bad, "gaps": gaps,
            "first_bad": None if first_bad == <uint64_t>-1 else first_bad,
            "last_seq": expect - 1 if received else None,
            "t_first_ns": t_first, "t_last_ns": t_last, "timed_out": timed_out}


def _fill_records_from_seq(unsigned char[::1] dst not None, uint64_t first_seq):
    """Fill a contiguous buffer of whole records with ring_fill_from_seq (tests use it)."""
    cdef Py_ssize_t n = dst.shape[0] // sizeof(bf_sample_t), i
    cdef bf_sample_t *p = <bf_sample_t *>&dst[0] if dst.shape[0] else NULL
    for i in range(n):
        ring_fill_from_seq(&p[i], first_seq + i)
