# hist.pxi — recording sample batches into hdrh counts buffers at C speed (SampleRecorder), and
#   decoding/adding V2 histoblob counts sparsely for the coordinator's merge (hist_*_sparse, varints).
# Never: allocates, raises or touches a Python object per sample or per count; never changes the hdrh
#   bucket layout; never writes a merged count before every index and sum of the input is checked.
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
# Only samples that completed with an HTTP status (error == 0, status != 0) enter the histograms.
# Error samples are counted by kind (and their bytes counted) but never put in a latency histogram:
# a refused connect's "latency" measures nothing about the server's responses.
# Values above the histogram's highest trackable value are clamped to it and counted (`clamped`);
# a negative difference (cannot happen with one monotonic clock, but a ring is a public format) is
# recorded as 0 and counted (`negative`).

from libc.string cimport memset
from sys import maxsize as _HIST_MAXSIZE


cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil

cdef enum:
    HIST_VIEWS = 3            # corrected, uncorrected, send lag
    HIST_STATUS_SLOTS = 1000  # HTTP status 0..999; anything else lands in slot 0
    HIST_ERROR_SLOTS = 16     # bf_error_t values; >= 16 lands in slot 15
    HIST_ERRNO_SLOTS = 256    # sys_errno per error kind (Linux errnos are < 134); larger -> slot 0


ctypedef struct hist_t:
    uint64_t *counts          # the hdrh ctypes counts array (kept alive by SampleRecorder)
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


ctypedef struct hist_tally_t:
    uint64_t samples          # records seen
    uint64_t completed        # error == 0 and a status: recorded in the histograms
    uint64_t errors           # error != 0
    uint64_t no_status        # error == 0 but status == 0 (a producer bug; counted, not recorded)
    uint64_t negative         # differences < 0, recorded as 0
    uint64_t bytes_rx
    uint64_t bytes_tx
    uint64_t seq_gaps         # samples missing according to seq (the ring dropped them)
    uint64_t status[HIST_STATUS_SLOTS]
    uint64_t error[HIST_ERROR_SLOTS]
    uint64_t sys_errno[HIST_ERROR_SLOTS][HIST_ERRNO_SLOTS]


cdef inline uint64_t hist_diff(uint64_t later, uint64_t earlier, hist_tally_t *t) noexcept nogil:
    if later >= earlier:
        return later - earlier
    t.negative += 1
    return 0


cdef void hist_record_batch(hist_t *views, hist_tally_t *t, uint64_t *next_seq,
                            const bf_sample_t *s, Py_ssize_t n) noexcept nogil:
    """One pass over n records: tallies for all, three histogram values for completed ones."""
    cdef Py_ssize_t k
    cdef int kind
    cdef const bf_sample_t *r
    for k in range(n):
        r = s + k
        t.samples += 1
        t.bytes_rx += r.bytes_rx
        t.bytes_tx += r.bytes_tx
        # seq is the producer's own 0,1,2,... counter: a jump means the ring dropped records.
        if r.seq > next_seq[0]:
            t.seq_gaps += r.seq - next_seq[0]
        if r.seq >= next_seq[0]:
            next_seq[0] = r.seq + 1
        if r.error != 0:
            kind = r.error if r.error < HIST_ERROR_SLOTS else HIST_ERROR_SLOTS - 1
            t.errors += 1
            t.error[kind] += 1
            if r.sys_errno:
                t.sys_errno[kind][r.sys_errno if r.sys_errno < HIST_ERRNO_SLOTS else 0] += 1
            continue
        if r.status == 0:
            t.no_status += 1
            continue
        t.completed += 1
        t.status[r.status if r.status < HIST_STATUS_SLOTS else 0] += 1
        hist_record(&views[0], hist_diff(r.done_ns, r.intended_ns, t))
        hist_record(&views[1], hist_diff(r.done_ns, r.send_ns, t))
        hist_record(&views[2], hist_diff(r.send_ns, r.intended_ns, t))


_HIST_VIEW_NAMES = ("latency", "uncorrected", "send_lag")


cdef class SampleRecorder:
    """Records 64-byte sample records into three hdrh.HdrHistogram objects (see _core.pyi)."""

    cdef hist_t views[HIST_VIEWS]
    cdef hist_tally_t _tally
    cdef uint64_t next_seq
    cdef object _hists          # the hdrh objects (keep their counts buffers alive)
    cdef object _buffers        # the typed memoryviews the pointers come from

    def __cinit__(self, latency, uncorrected, send_lag):
        cdef uint64_t[::1] mv
        cdef int i
        hists = (latency, uncorrected, send_lag)
        self._hists = hists
        self._buffers = []
        memset(&self._tally, 0, sizeof(hist_tally_t))
        self.next_seq = 0
        for i in range(HIST_VIEWS):
            h = hists[i]
            if h.get_word_size() != 8:
                raise ValueError("SampleRecorder needs 64-bit hdrh counts (word_size=8)")
            if h.get_total_count() != 0:
                raise ValueError("SampleRecorder needs empty histograms")
            mv = h.counts
            if mv.shape[0] != h.counts_len:
                raise ValueError("hdrh counts buffer does not match counts_len")
            self._buffers.append(mv)
            self.views[i].counts = &mv[0]
            self.views[i].counts_len = h.counts_len
            self.views[i].unit_mag = h.unit_magnitude
            self.views[i].shcm = h.sub_bucket_half_count_magnitude
            self.views[i].sub_mask = h.sub_bucket_mask
            self.views[i].sub_half = h.sub_bucket_half_count
            self.views[i].highest = h.highest_trackable_value
            self.views[i].min_idx = -1
            self.views[i].max_idx = -1
            self.views[i].total = 0
            self.views[i].raw_min = 0
            self.views[i].raw_max = 0
            self.views[i].clamped = 0
            if hist_index(&self.views[i], self.views[i].highest) >= h.counts_len:
                raise ValueError("highest_trackable_value does not fit the counts array")

    def record(self, const uint8_t[::1] raw not None):
        """Record a batch given as raw bytes (n * 64); returns the number of records."""
        cdef Py_ssize_t n = raw.shape[0] // sizeof(bf_sample_t)
        if raw.shape[0] % sizeof(bf_sample_t):
            raise ValueError(f"batch is {raw.shape[0]} bytes, not a multiple of {sizeof(bf_sample_t)}")
        if n == 0:
            return 0
        with nogil:
            hist_record_batch(self.views, &self._tally, &self.next_seq,
                              <const bf_sample_t *>&raw[0], n)
        return n

    def sync(self):
        """Push min/max/total into the hdrh objects (call before reading or encoding them)."""
        cdef int i
        for i in range(HIST_VIEWS):
            h = self._hists[i]
            if self.views[i].total:
                h.set_internal_tacking_values(self.views[i].min_idx, self.views[i].max_idx,
                                              self.views[i].total)
                # set_internal_tacking_values stores bucket-equivalent extremes; hdrh's own
                # record_value keeps the exact ones, and so do we.
                h.min_value = self.views[i].raw_min
                h.max_value = self.views[i].raw_max
            else:
                h.set_internal_tacking_values(-1, -1, 0)
                h.min_value = _HIST_MAXSIZE
                h.max_value = 0

    def clear_histograms(self):
        """Zero the three histograms (counts and min/max/total); tallies are kept."""
        cdef int i
        for i in range(HIST_VIEWS):
            hist_clear(&self.views[i])
        self.sync()

    def clamped(self):
        """{view name: values clamped to the highest trackable value} since the last clear."""
        return {_HIST_VIEW_NAMES[i]: self.views[i].clamped for i in range(HIST_VIEWS)}

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
            "bytes_rx": t.bytes_rx,
            "bytes_tx": t.bytes_tx,
            "seq_gaps": t.seq_gaps,
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
