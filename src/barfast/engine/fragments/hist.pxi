# hist.pxi — recording sample batches into hdrh counts buffers at C speed (SampleRecorder), totals and
#   per endpoint, and decoding/adding V2 histoblob counts sparsely for the coordinator's merge.
# Never: allocates, raises or touches a Python object per sample or per count (an endpoint's first
#   sample ends the C pass once, so Python can open that endpoint, and the pass resumes); never changes
#   the hdrh bucket layout; never writes a merged count before every index and sum of the input is checked.
# Invariants: counts written are bit-identical to hdrh's record_value(min(v, highest)); min/max/total
#   are pushed back into the hdrh objects by sync() so encode()/decode() work unchanged; decoded
#   counts are HdrHistogram_c's (indices < counts_len, merged counts <= INT64_MAX).
#
# Why this exists: hdrh records in pure Python (~0.7 us per value), far too slow
# for one engine's output. The bucket math below is HdrHistogram_c's `counts_index_for`, applied
# through a typed memoryview straight onto the ctypes array that hdrh encodes from.
#
# What is recorded (measurement semantics; times are CLOCK_MONOTONIC ns taken by the engine):
#   corrected   = done_ns - intended_ns  (from when the schedule wanted the request sent: wrk2's fix for
#                                         coordinated omission; equals `uncorrected` in closed loop)
#   uncorrected = done_ns - send_ns      (from the first byte handed to the kernel)
#   send lag    = send_ns - intended_ns  (how late the generator itself was: its health signal)
#   ttfb        = first_byte_ns - send_ns (time to first byte: the server's think time plus one
#                                         round trip, without the transfer of the rest)
#   connect     = connect_us * 1000      (connect() to established, once per connection: on the sample
#                                         of its first request, BF_FLAG_NEW_CONN with connect_us > 0)
#   tls         = sys_errno as bf_f16_us (the TLS handshake, once per https connection: on the sample
#                                         of its first request when it completed)
# Latency, send lag and ttfb take only samples that completed with an HTTP status (error == 0,
# status != 0). Error samples are counted by kind (and their bytes counted) but never put in a
# latency histogram: a refused connect's "latency" measures nothing about the server's responses.
# The connect view takes every NEW_CONN sample, errors included: the connection was established
# whatever became of its first request (a refused connect carries no NEW_CONN and no connect_us).
# Values above the histogram's highest trackable value are clamped to it and counted (`clamped`);
# a negative difference (cannot happen with one monotonic clock, but a ring is a public format) is
# recorded as 0 and counted (`negative`).
#
# Per endpoint (a scenario with more than one endpoint): corrected latency, connect, ttfb and tls
# histograms of the totals' layout (in open loop also uncorrected latency and send lag, so each
# endpoint's coordinated omission can be seen; in closed loop they would repeat the corrected view
# and zero), and per-interval status and error-kind counts, all cleared at each take so a snapshot
# carries interval deltas the coordinator adds exactly. An endpoint's block is allocated at its
# first sample (one that never gets a sample costs one pointer): ~8.5 KiB of counts plus, below the
# `endpoint_hists` bound, four (open loop: six) hdrh histograms (aggregate.py says what that bound
# costs). A sample whose endpoint lies outside the table is counted (`endpoint_unknown`) in the
# totals only.

from libc.string cimport memset
from libc.stdlib cimport calloc, free
from sys import maxsize as _HIST_MAXSIZE


cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil

cdef enum:
    HIST_VIEWS = 6            # corrected, uncorrected, send lag, connect, ttfb, tls
    HIST_LAT = 0
    HIST_UNC = 1
    HIST_LAG = 2
    HIST_CONN = 3
    HIST_TTFB = 4
    HIST_TLS = 5
    HIST_EP_VIEWS = 6         # per endpoint: corrected, connect, ttfb, tls, uncorrected, send lag
    HIST_EP_CLOSED_VIEWS = 4  # closed loop: the first four
    HIST_EP_LAT = 0
    HIST_EP_CONN = 1
    HIST_EP_TTFB = 2
    HIST_EP_TLS = 3
    HIST_EP_UNC = 4
    HIST_EP_LAG = 5
    HIST_MAX_ENDPOINTS = 4096  # the engine's endpoint table bound
    HIST_STATUS_SLOTS = 1000  # HTTP status 0..999; anything else lands in slot 0
    HIST_ERROR_SLOTS = 16     # bf_error_t values; >= 16 lands in slot 15
    HIST_ERRNO_SLOTS = 256    # sys_errno per error kind (Linux errnos are < 134); larger -> slot 0


ctypedef struct hist_t:
    uint64_t *counts          # the hdrh ctypes counts array (kept alive by SampleRecorder); NULL: none
    Py_ssize_t counts_len
    int unit_mag              # unit_magnitude
    int shcm                  # sub_bucket_half_count_magnitude
    uint64_t sub_mask         # sub_bucket_mask
    uint64_t sub_half         # sub_bucket_half_count
    uint64_t highest          # highest_trackable_value: larger values are clamped to it
    int64_t min_idx           # lowest index with a count, -1 when empty
    int64_t max_idx           # highest index with a count, -1 when empty
    uint64_t total
    uint64_t raw_min          # exact extremes of the values recorded (hdrh keeps these too)
    uint64_t raw_max
    uint64_t clamped


cdef inline Py_ssize_t hist_index(const hist_t *h, uint64_t v) noexcept nogil:
    # HdrHistogram_c counts_index_for(): the bucket is the power of two containing v (at least the
    # first bucket, hence `| sub_mask`), the sub-bucket is v scaled down to that bucket's resolution.
    cdef int pow2ceil = 64 - __builtin_clzll(v | h.sub_mask)
    cdef int bucket = pow2ceil - h.unit_mag - (h.shcm + 1)
    cdef uint64_t sub = v >> (bucket + h.unit_mag)
    return <Py_ssize_t>((<uint64_t>(bucket + 1) << h.shcm) + (sub - h.sub_half))


cdef inline void hist_record(hist_t *h, uint64_t v) noexcept nogil:
    if v > h.highest:
        v = h.highest
        h.clamped += 1
    cdef Py_ssize_t i = hist_index(h, v)
    h.counts[i] += 1
    h.total += 1
    if h.min_idx < 0 or i < h.min_idx:
        h.min_idx = i
    if i > h.max_idx:
        h.max_idx = i
    if h.total == 1 or v < h.raw_min:
        h.raw_min = v
    if v > h.raw_max:
        h.raw_max = v


cdef inline void hist_clear(hist_t *h) noexcept nogil:
    # Only the touched range can be non-zero: zeroing it is cheaper than hdrh's Python reset() loop.
    if h.max_idx >= 0:
        memset(h.counts + h.min_idx, 0, <size_t>(h.max_idx - h.min_idx + 1) * sizeof(uint64_t))
    h.min_idx = -1
    h.max_idx = -1
    h.total = 0
    h.raw_min = 0
    h.raw_max = 0
    h.clamped = 0


cdef object hist_bind(hist_t *v, object h):
    """Point v at hdrh histogram h's counts buffer; returns the memoryview that keeps it alive."""
    cdef uint64_t[::1] mv
    if h.get_word_size() != 8:
        raise ValueError("SampleRecorder needs 64-bit hdrh counts (word_size=8)")
    if h.get_total_count() != 0:
        raise ValueError("SampleRecorder needs empty histograms")
    mv = h.counts
    if mv.shape[0] != h.counts_len:
        raise ValueError("hdrh counts buffer does not match counts_len")
    v.counts = &mv[0]
    v.counts_len = h.counts_len
    v.unit_mag = h.unit_magnitude
    v.shcm = h.sub_bucket_half_count_magnitude
    v.sub_mask = h.sub_bucket_mask
    v.sub_half = h.sub_bucket_half_count
    v.highest = h.highest_trackable_value
    v.min_idx = -1
    v.max_idx = -1
    v.total = 0
    v.raw_min = 0
    v.raw_max = 0
    v.clamped = 0
    if hist_index(v, v.highest) >= h.counts_len:
        raise ValueError("highest_trackable_value does not fit the counts array")
    return mv


cdef void hist_sync(const hist_t *v, object h):
    """Push v's min/max/total into the hdrh object h."""
    if v.total:
        h.set_internal_tacking_values(v.min_idx, v.max_idx, v.total)
        # set_internal_tacking_values stores bucket-equivalent extremes; hdrh's own record_value
        # keeps the exact ones, and so do we.
        h.min_value = v.raw_min
        h.max_value = v.raw_max
    else:
        h.set_internal_tacking_values(-1, -1, 0)
        h.min_value = _HIST_MAXSIZE
        h.max_value = 0


ctypedef struct hist_tally_t:
    uint64_t samples          # records seen
    uint64_t completed        # error == 0 and a status: recorded in the histograms
    uint64_t errors           # error != 0
    uint64_t no_status        # error == 0 but status == 0 (a producer bug; counted, not recorded)
    uint64_t negative         # differences < 0, recorded as 0
    uint64_t endpoint_unknown  # endpoint id outside the table (a producer bug; totals only)
    uint64_t bytes_rx
    uint64_t bytes_tx
    uint64_t seq_gaps         # samples missing according to seq (the ring dropped them)
    uint64_t iterations       # flow iteration records (BF_FLAG_ITERATION; not requests)
    uint64_t status[HIST_STATUS_SLOTS]
    uint64_t error[HIST_ERROR_SLOTS]
    uint64_t sys_errno[HIST_ERROR_SLOTS][HIST_ERRNO_SLOTS]


ctypedef struct hist_ep_t:
    hist_t views[HIST_EP_VIEWS]   # counts == NULL: beyond the endpoint_hists bound, not recorded
    uint64_t samples              # this interval: records of this endpoint (0: nothing to send)
    uint64_t completed
    uint64_t errors
    uint64_t status[HIST_STATUS_SLOTS]
    uint64_t error[HIST_ERROR_SLOTS]


cdef inline uint64_t hist_diff(uint64_t later, uint64_t earlier, hist_tally_t *t) noexcept nogil:
    if later >= earlier:
        return later - earlier
    t.negative += 1
    return 0


cdef Py_ssize_t hist_record_batch(hist_t *views, hist_tally_t *t, uint64_t *next_seq,
                                  hist_ep_t **eps, Py_ssize_t n_eps,
                                  const bf_sample_t *s, Py_ssize_t n) noexcept nogil:
    """One pass over n records: tallies for all, histogram values for completed ones, per endpoint
    too when n_eps > 0. Returns how many records were taken: fewer than n when record k's endpoint
    has no block yet (nothing of record k is counted then; the caller opens it and resumes at k)."""
    cdef Py_ssize_t k
    cdef int kind
    cdef uint64_t v, lat, ttfb, unc, lag
    cdef const bf_sample_t *r
    cdef hist_ep_t *ep = NULL
    for k in range(n):
        r = s + k
        if n_eps:
            if r.endpoint < n_eps:
                ep = eps[r.endpoint]
                if ep == NULL:
                    return k
                ep.samples += 1
            else:
                ep = NULL
                t.endpoint_unknown += 1
        t.samples += 1
        # seq is the producer's own 0,1,2,... counter: a jump means the ring dropped records.
        if r.seq > next_seq[0]:
            t.seq_gaps += r.seq - next_seq[0]
        if r.seq >= next_seq[0]:
            next_seq[0] = r.seq + 1
        if r.flags & BF_FLAG_ITERATION:
            # A flow iteration, not a request: only its flow's slot records it (its duration as
            # the slot's latency, ttfb 0 so the slot's views agree on the count), never the totals.
            t.iterations += 1
            if ep != NULL:
                ep.completed += 1
                ep.status[r.status if r.status < HIST_STATUS_SLOTS else 0] += 1
                if ep.views[HIST_EP_LAT].counts != NULL:
                    hist_record(&ep.views[HIST_EP_LAT], hist_diff(r.done_ns, r.intended_ns, t))
                    hist_record(&ep.views[HIST_EP_TTFB], 0)
            continue
        t.bytes_rx += r.bytes_rx
        t.bytes_tx += r.bytes_tx
        if (r.flags & BF_FLAG_NEW_CONN) and r.connect_us:
            v = <uint64_t>r.connect_us * 1000
            hist_record(&views[HIST_CONN], v)
            if ep != NULL and ep.views[HIST_EP_CONN].counts != NULL:
                hist_record(&ep.views[HIST_EP_CONN], v)
        if r.error != 0:
            kind = r.error if r.error < HIST_ERROR_SLOTS else HIST_ERROR_SLOTS - 1
            t.errors += 1
            t.error[kind] += 1
            if r.sys_errno:
                t.sys_errno[kind][r.sys_errno if r.sys_errno < HIST_ERRNO_SLOTS else 0] += 1
            if ep != NULL:
                ep.errors += 1
                ep.error[kind] += 1
            continue
        if r.status == 0:
            t.no_status += 1
            continue
        t.completed += 1
        t.status[r.status if r.status < HIST_STATUS_SLOTS else 0] += 1
        lat = hist_diff(r.done_ns, r.intended_ns, t)
        ttfb = hist_diff(r.first_byte_ns, r.send_ns, t)
        hist_record(&views[HIST_LAT], lat)
        unc = hist_diff(r.done_ns, r.send_ns, t)
        lag = hist_diff(r.send_ns, r.intended_ns, t)
        hist_record(&views[HIST_UNC], unc)
        hist_record(&views[HIST_LAG], lag)
        hist_record(&views[HIST_TTFB], ttfb)
        if (r.flags & BF_FLAG_NEW_CONN) and r.sys_errno:
            v = hist_f16_ns(r.sys_errno)
            hist_record(&views[HIST_TLS], v)
            if ep != NULL and ep.views[HIST_EP_TLS].counts != NULL:
                hist_record(&ep.views[HIST_EP_TLS], v)
        if ep != NULL:
            ep.completed += 1
            ep.status[r.status if r.status < HIST_STATUS_SLOTS else 0] += 1
            if ep.views[HIST_EP_LAT].counts != NULL:
                hist_record(&ep.views[HIST_EP_LAT], lat)
                hist_record(&ep.views[HIST_EP_TTFB], ttfb)
                if ep.views[HIST_EP_UNC].counts != NULL:
                    hist_record(&ep.views[HIST_EP_UNC], unc)
                    hist_record(&ep.views[HIST_EP_LAG], lag)
    return n


_HIST_VIEW_NAMES = ("latency", "uncorrected", "send_lag", "connect", "ttfb", "tls")
_HIST_EP_VIEW_NAMES = ("latency", "connect", "ttfb", "tls", "uncorrected", "send_lag")


cdef inline uint64_t hist_f16_ns(uint16_t code) noexcept nogil:
    """A bf_f16_us duration (barfast.h) in ns."""
    cdef uint32_t ex = code >> 11
    if ex == 0:
        return <uint64_t>code * 1000
    return ((<uint64_t>2048 + (code & 0x7FF)) << (ex - 1)) * 1000


cdef class SampleRecorder:
    """Records 64-byte sample records into six hdrh.HdrHistogram objects, and per endpoint into
    four more each (see _core.pyi)."""

    cdef hist_t views[HIST_VIEWS]
    cdef hist_tally_t _tally
    cdef uint64_t next_seq
    cdef hist_ep_t **eps           # n_eps pointers, NULL until the endpoint's first sample
    cdef Py_ssize_t n_eps          # 0: no per-endpoint recording (the totals are the endpoint)
    cdef Py_ssize_t ep_hists       # endpoints below this index get histograms
    cdef int ep_views              # histograms per endpoint: HIST_EP_VIEWS (open loop) or 4
    cdef object _factory           # () -> an empty hdrh histogram for an endpoint
    cdef object _hists             # the hdrh objects (keep their counts buffers alive)
    cdef object _buffers           # the typed memoryviews the pointers come from
    cdef dict _ep_hists            # endpoint -> its hdrh objects (ep_views of them)

    def __cinit__(self, latency, uncorrected, send_lag, connect, ttfb, tls=None, *,
                  Py_ssize_t endpoints=0, Py_ssize_t endpoint_hists=0, factory=None,
                  bint endpoint_open_loop=False):
        cdef int i
        if tls is None:   # a caller that does not read TLS handshakes: a private histogram
            tls = type(latency)(latency.lowest_trackable_value, latency.highest_trackable_value,
                                latency.significant_figures)
        hists = (latency, uncorrected, send_lag, connect, ttfb, tls)
        self._hists = hists
        self._buffers = []
        self._ep_hists = {}
        self.eps = NULL
        self.n_eps = 0
        self.ep_views = HIST_EP_VIEWS if endpoint_open_loop else HIST_EP_CLOSED_VIEWS
        memset(&self._tally, 0, sizeof(hist_tally_t))
        self.next_seq = 0
        for i in range(HIST_VIEWS):
            self._buffers.append(hist_bind(&self.views[i], hists[i]))
        if not 0 <= endpoints <= HIST_MAX_ENDPOINTS:
            raise ValueError(f"endpoints: 0 to {HIST_MAX_ENDPOINTS}")
        if endpoint_hists < 0:
            raise ValueError("endpoint_hists must be >= 0")
        if endpoints > 1:
            if endpoint_hists and factory is None:
                raise ValueError("per-endpoint histograms need a factory")
            self.eps = <hist_ep_t **>calloc(<size_t>endpoints, sizeof(hist_ep_t *))
            if self.eps == NULL:
                raise MemoryError()
            self.n_eps = endpoints
            self.ep_hists = min(endpoint_hists, endpoints)
            self._factory = factory

    def __dealloc__(self):
        cdef Py_ssize_t e
        if self.eps != NULL:
            for e in range(self.n_eps):
                free(self.eps[e])
            free(self.eps)
            self.eps = NULL

    cdef int _open_endpoint(self, Py_ssize_t e) except -1:
        cdef hist_ep_t *ep = <hist_ep_t *>calloc(1, sizeof(hist_ep_t))
        cdef int i
        if ep == NULL:
            raise MemoryError()
        try:
            if e < self.ep_hists:
                hs = tuple(self._factory() for _ in range(self.ep_views))
                for i in range(self.ep_views):
                    self._buffers.append(hist_bind(&ep.views[i], hs[i]))
                self._ep_hists[e] = hs
        except BaseException:
            free(ep)
            raise
        self.eps[e] = ep
        return 0

    def record(self, const uint8_t[::1] raw not None):
        """Record a batch given as raw bytes (n * 64); returns the number of records."""
        cdef Py_ssize_t n = raw.shape[0] // sizeof(bf_sample_t)
        cdef Py_ssize_t done = 0
        cdef Py_ssize_t k
        cdef const bf_sample_t *s
        if raw.shape[0] % sizeof(bf_sample_t):
            raise ValueError(f"batch is {raw.shape[0]} bytes, not a multiple of {sizeof(bf_sample_t)}")
        if n == 0:
            return 0
        s = <const bf_sample_t *>&raw[0]
        while done < n:
            with nogil:
                k = hist_record_batch(self.views, &self._tally, &self.next_seq, self.eps,
                                      self.n_eps, s + done, n - done)
            done += k
            if done < n:
                self._open_endpoint(s[done].endpoint)  # stopped at an endpoint's first sample
        return n

    def sync(self):
        """Push min/max/total into the hdrh objects (call before reading or encoding them)."""
        cdef int i
        cdef Py_ssize_t e
        for i in range(HIST_VIEWS):
            hist_sync(&self.views[i], self._hists[i])
        for e, hs in self._ep_hists.items():
            for i in range(self.ep_views):
                hist_sync(&self.eps[e].views[i], hs[i])

    def clear_histograms(self):
        """Zero the histograms (counts and min/max/total) and the endpoints' interval counts;
        tallies are kept."""
        cdef int i
        cdef Py_ssize_t e
        cdef hist_ep_t *ep
        for i in range(HIST_VIEWS):
            hist_clear(&self.views[i])
        for e in range(self.n_eps):
            ep = self.eps[e]
            if ep == NULL or not ep.samples:
                continue
            if ep.views[0].counts != NULL:
                for i in range(self.ep_views):
                    hist_clear(&ep.views[i])
            ep.samples = ep.completed = ep.errors = 0
            memset(ep.status, 0, HIST_STATUS_SLOTS * sizeof(uint64_t))
            memset(ep.error, 0, HIST_ERROR_SLOTS * sizeof(uint64_t))
        self.sync()

    def clamped(self):
        """{view name: values clamped to the highest trackable value} since the last clear."""
        return {_HIST_VIEW_NAMES[i]: self.views[i].clamped for i in range(HIST_VIEWS)}

    def endpoints_interval(self):
        """Endpoints with samples since the last clear, in table order: a list of (endpoint,
        {samples, completed, errors, status {code: n}, error {kind value: n}}, its three hdrh
        histograms (latency, connect, ttfb, tls, and in open loop uncorrected and send_lag; synced) or
        None beyond the endpoint_hists bound)."""
        cdef Py_ssize_t e
        cdef int i
        cdef hist_ep_t *ep
        out = []
        for e in range(self.n_eps):
            ep = self.eps[e]
            if ep == NULL or not ep.samples:
                continue
            hs = self._ep_hists.get(e)
            if hs is not None:
                for i in range(self.ep_views):
                    hist_sync(&ep.views[i], hs[i])
            out.append((e, {
                "samples": ep.samples,
                "completed": ep.completed,
                "errors": ep.errors,
                "status": {i: ep.status[i] for i in range(HIST_STATUS_SLOTS) if ep.status[i]},
                "error": {i: ep.error[i] for i in range(HIST_ERROR_SLOTS) if ep.error[i]},
            }, hs))
        return out

    def endpoints_open(self):
        """How many endpoints have a block, and how many of them have histograms."""
        cdef Py_ssize_t e
        cdef Py_ssize_t n = 0
        for e in range(self.n_eps):
            if self.eps[e] != NULL:
                n += 1
        return n, len(self._ep_hists)

    def tally(self):
        """Cumulative counts over every record seen (never cleared)."""
        cdef int i
        cdef hist_tally_t *t = &self._tally
        return {
            "samples": t.samples,
            "completed": t.completed,
            "errors": t.errors,
            "no_status": t.no_status,
            "negative": t.negative,
            "endpoint_unknown": t.endpoint_unknown,
            "bytes_rx": t.bytes_rx,
            "bytes_tx": t.bytes_tx,
            "seq_gaps": t.seq_gaps,
            "iterations": t.iterations,
            "next_seq": self.next_seq,
            "status": {i: t.status[i] for i in range(HIST_STATUS_SLOTS) if t.status[i]},
            "error": {i: t.error[i] for i in range(HIST_ERROR_SLOTS) if t.error[i]},
            "sys_errno": {
                i: {e: t.sys_errno[i][e] for e in range(HIST_ERRNO_SLOTS) if t.sys_errno[i][e]}
                for i in range(HIST_ERROR_SLOTS) if t.error[i]
            },
        }


# --- Merging V2 histoblobs (coordinator side; barfast/histoblob.py does base64, zlib, headers) ---
# Why: decoding each snapshot's histograms with hdrh allocates a fresh 33,792-entry counts array per
# histogram and then adds all of it (~130 us each). The varint stream of a one-second histogram holds
# only a few thousand non-zero counts, so we decode it into a sparse (index, count) list and add only
# those. Everything from the network is checked before anything is written: a varint may not run past
# the buffer, an index may not reach counts_len, the total may not wrap, and no merged count may exceed
# INT64_MAX (the V2 format's ZigZag encoding cannot carry more, so the merged result stays encodable).
#
# Wire format (HdrHistogram_c src/hdr_histogram_log.c, `_apply_to_counts` / `zig_zag_decode_i64`):
# ZigZag LEB128 varints, at most 9 bytes, the 9th byte contributing all 8 of its
# bits (HdrHistogram_c; hdrh's pyhdrh masks that byte to 7 bits, so it misreads counts >= 2^62). A
# negative value -k is a run of k zero counts; a value >= 0 is the count at the current index.

cdef enum:
    HIST_DEC_OK = 0
    HIST_DEC_TRUNCATED = 1      # the last varint is cut short
    HIST_DEC_INDEX = 2          # a count or a zero run lands beyond counts_len
    HIST_DEC_TOTAL = 3          # the counts add up to more than 2^64 - 1

_HIST_DEC_ERRORS = {
    HIST_DEC_TRUNCATED: "truncated varint",
    HIST_DEC_INDEX: "counts run past the end of the histogram",
    HIST_DEC_TOTAL: "total count overflows 64 bits",
}


cdef int hist_decode_sparse(const uint8_t *p, Py_ssize_t n, Py_ssize_t counts_len,
                            int64_t *idx, uint64_t *val, Py_ssize_t *n_out,
                            uint64_t *total_out) noexcept nogil:
    """Varints p[0:n] -> the non-zero counts as (idx[k], val[k]), k < *n_out, indices ascending.
    idx and val must hold counts_len entries (each entry consumes at least one index)."""
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t m = 0
    cdef uint64_t index = 0            # <= counts_len between varints
    cdef uint64_t total = 0
    cdef uint64_t raw, b, run, count
    cdef int shift, nbytes
    while pos < n:
        b = p[pos]
        pos += 1
        if b < 0x80:
            raw = b                    # one-byte varint: most counts and short zero runs
        else:
            raw = b & 0x7F
            shift = 7
            nbytes = 1
            while True:
                if pos >= n:
                    return HIST_DEC_TRUNCATED
                b = p[pos]
                pos += 1
                nbytes += 1
                if nbytes == 9:
                    raw |= b << 56     # the 9th byte is a full byte (no continuation bit)
                    break
                raw |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
        if raw & 1:
            run = (raw >> 1) + 1       # ZigZag: odd raw = -(raw >> 1) - 1, i.e. a run of zeros
            if run > <uint64_t>counts_len - index:
                return HIST_DEC_INDEX
            index += run
        else:
            count = raw >> 1           # <= INT64_MAX by construction
            if index >= <uint64_t>counts_len:
                return HIST_DEC_INDEX
            if count:
                if total + count < total:
                    return HIST_DEC_TOTAL
                total += count
                idx[m] = <int64_t>index
                val[m] = count
                m += 1
            index += 1
    n_out[0] = m
    total_out[0] = total
    return HIST_DEC_OK


def hist_decode_varints(const uint8_t[::1] data not None, Py_ssize_t offset, Py_ssize_t counts_len,
                        int64_t[::1] idx not None, uint64_t[::1] val not None):
    """Decode the varint counts in data[offset:] into idx/val (each at least counts_len long).
    Returns (entries, total, min_index, max_index), indices -1 when there are no non-zero counts;
    raises ValueError naming the defect when the stream is malformed."""
    cdef Py_ssize_t m = 0
    cdef uint64_t total = 0
    cdef int err
    if counts_len <= 0 or idx.shape[0] < counts_len or val.shape[0] < counts_len:
        raise ValueError("scratch buffers are shorter than counts_len")
    if offset < 0 or offset > data.shape[0]:
        raise ValueError("offset outside the buffer")
    if offset == data.shape[0]:
        return 0, 0, -1, -1
    with nogil:
        err = hist_decode_sparse(&data[offset], data.shape[0] - offset, counts_len,
                                 &idx[0], &val[0], &m, &total)
    if err != HIST_DEC_OK:
        raise ValueError(_HIST_DEC_ERRORS[err])
    if m == 0:
        return 0, 0, -1, -1
    return m, total, idx[0], idx[m - 1]


cdef bint hist_sparse_fits_c(const uint64_t *dst, Py_ssize_t dst_len, const int64_t *idx,
                             const uint64_t *val, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef int64_t i
    cdef uint64_t limit = <uint64_t>0x7FFFFFFFFFFFFFFF
    for k in range(n):
        i = idx[k]
        if i < 0 or i >= dst_len or val[k] > limit or dst[i] > limit - val[k]:
            return False
    return True


def hist_sparse_fits(const uint64_t[::1] dst not None, const int64_t[::1] idx not None,
                     const uint64_t[::1] val not None, Py_ssize_t n):
    """True when every idx[k] (k < n) lies inside dst and dst[idx[k]] + val[k] <= INT64_MAX."""
    cdef bint ok
    if n < 0 or n > idx.shape[0] or n > val.shape[0]:
        return False
    if n == 0:
        return True
    with nogil:
        ok = hist_sparse_fits_c(&dst[0], dst.shape[0], &idx[0], &val[0], n)
    return ok


def hist_add_sparse(uint64_t[::1] dst not None, const int64_t[::1] idx not None,
                    const uint64_t[::1] val not None, Py_ssize_t n):
    """dst[idx[k]] += val[k] for k < n. Checks first and raises OverflowError (dst untouched) when an
    index lies outside dst or a count would exceed INT64_MAX."""
    cdef Py_ssize_t k
    if n < 0 or n > idx.shape[0] or n > val.shape[0]:
        raise ValueError("n exceeds the sparse arrays")
    if n == 0:
        return
    with nogil:
        if not hist_sparse_fits_c(&dst[0], dst.shape[0], &idx[0], &val[0], n):
            with gil:
                raise OverflowError(
                    "histogram counts would exceed INT64_MAX (or an index lies outside the counts)")
        for k in range(n):
            dst[idx[k]] += val[k]


def f16_ns(uint16_t code) -> int:
    """Test hook: hist_f16_ns (the sample's 16-bit handshake time back in ns)."""
    return hist_f16_ns(code)
