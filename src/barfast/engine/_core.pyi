"""Typed surface of barfast.engine._core (the native extension). Docstrings live here."""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

FD_HEADROOM: int
"""File descriptors an engine's process needs besides its connections; Engine() raises the soft
RLIMIT_NOFILE toward the hard limit to fit connections + FD_HEADROOM, or fails with EMFILE."""

# --- ring (ring.pxi) ---
# The public, documented API is barfast.ring.Ring (a subclass); these are the native primitives it
# and the benchmark use. Layout and ordering: docs/ring-format.md.

class Ring:
    """Base of barfast.ring.Ring: owns the MAP_SHARED mapping and the native handle `c` (ring_t)
    that the engine publishes through (ring_claim/ring_commit/ring_publish, all nogil)."""

    @property
    def closed(self) -> bool:
        """True once unbound (closed) in this process."""
    def _bind(self, mm: object) -> None:
        """Adopt a writable mapping with a valid header (bounds re-checked: ValueError if not)."""
    def _unbind(self) -> mmap.mmap:
        """Forget the mapping and return the mmap object (the caller closes it)."""
    def _prod_pos(self) -> int:
        """Producer position, load-acquire."""
    def _cons_pos(self) -> int:
        """Consumer position, load-acquire."""
    def _set_cons_pos(self, pos: int) -> None:
        """Consumer position, store-release (after the consumed records were read)."""
    def _dropped(self) -> int:
        """The dropped counter (read after an acquire of producer_done)."""
    def _producer_done(self) -> bool:
        """producer_done, load-acquire."""
    def _mark_producer_done(self) -> None:
        """producer_done = 1, store-release."""
    def _producer_pid(self) -> int:
        """The header's producer_pid."""
    def _claim_producer(self, pid: int) -> None:
        """Record pid as the producer and reload the local producer state from the header."""
    def _header_info(self) -> dict[str, int]:
        """Line 0 of the header: magic, version, record_size, capacity, data_offset, producer_pid,
        created_ns."""
    def _publish_bytes(self, src: object, count_dropped: bool = True) -> int:
        """Copy whole 64-byte records from a contiguous buffer: as many as fit (at most two memcpy,
        one store-release), the rest counted as dropped (if count_dropped). Returns the number
        accepted."""

def _bench_produce(
    ring: Ring,
    n: int,
    batch: int = 4096,
    single: bool = False,
    first_seq: int = 0,
    retry: bool = True,
    timeout_s: float = 30.0,
    full: bool = True,
) -> tuple[int, int, int, int, bool]:
    """Publish seq first_seq..first_seq+n-1 (every field derived from seq) under nogil, batched
    (one store-release per batch) or single (ring_publish per record). retry=True waits out a full
    ring (bench/test producer); retry=False drops and counts like the engine.
    Returns (published, dropped, t_first_ns, t_last_ns, timed_out)."""

def _bench_consume(
    ring: Ring,
    n: int,
    check_all: bool = True,
    until_done: bool = False,
    first_seq: int = 0,
    timeout_s: float = 30.0,
    min_batch: int = 0,
) -> dict[str, Any]:
    """Consume under nogil, verifying every record's seq (and with check_all every byte) against
    the producer's formula; one store-release per batch. until_done: stop when the producer is done
    and nothing is pending, counting seq gaps. min_batch: with fewer pending, wait (<= 50 us) for
    more instead of chasing the producer record by record. Returns a dict: received, bad, gaps,
    first_bad, last_seq, t_first_ns, t_last_ns, timed_out."""

def _fill_records_from_seq(dst: object, first_seq: int) -> None:
    """Fill a contiguous writable buffer of whole records with the bench/test formula."""

# --- hist (hist.pxi) ---

class SampleRecorder:
    """Records 64-byte sample records (bf_sample_t, barfast.ring.RECORD_DTYPE) into five
    hdrh.histogram.HdrHistogram objects at C speed, writing straight into their counts buffers.

    The counts are bit-identical to hdrh's own record_value(min(v, highest_trackable_value)), so
    encode()/decode()/add() work unchanged. One pass per record: samples with error == 0 and a status
    record corrected = done_ns - intended_ns, uncorrected = done_ns - send_ns,
    send_lag = send_ns - intended_ns and ttfb = first_byte_ns - send_ns (ns); every sample with
    BF_FLAG_NEW_CONN and connect_us > 0 records connect = connect_us * 1000; error samples are
    otherwise only counted (by kind and sys_errno); values above the top are clamped to it and
    counted; negative differences record 0 and are counted.

    With endpoints > 1, per endpoint too: latency (corrected), connect, ttfb and tls histograms, and
    with endpoint_open_loop also uncorrected and send lag (made by `factory()` at the endpoint's
    first sample, for endpoints below `endpoint_hists`) and interval status and error-kind counts.
    """

    def __init__(
        self,
        latency: Any,
        uncorrected: Any,
        send_lag: Any,
        connect: Any,
        ttfb: Any,
        *,
        endpoints: int = 0,
        endpoint_hists: int = 0,
        factory: Callable[[], Any] | None = None,
        endpoint_open_loop: bool = False,
    ) -> None:
        """Five EMPTY hdrh histograms with 64-bit counts (word_size 8); layouts may differ.
        endpoints: the endpoint table's size (0 or 1: no per-endpoint recording)."""
    def record(self, raw: Any) -> int:
        """Record a batch given as a contiguous uint8 buffer of n * 64 bytes (e.g.
        `batch.view(np.uint8)`; read-only buffers are fine). Releases the GIL; returns n."""
    def sync(self) -> None:
        """Set the hdrh objects' min/max/total (exact extremes) from what was recorded; call before
        reading, encoding or adding them."""
    def clear_histograms(self) -> None:
        """Zero the histograms (only the touched index range) and the endpoints' interval counts,
        and sync; tallies are kept."""
    def clamped(self) -> dict[str, int]:
        """{"latency"|"uncorrected"|"send_lag"|"connect"|"ttfb": values clamped to the top} since
        the last clear."""
    def endpoints_interval(self) -> list[tuple[int, dict[str, Any], tuple[Any, Any, Any] | None]]:
        """Endpoints with samples since the last clear, in table order: (endpoint, {samples,
        completed, errors, status {code: n}, error {kind value: n}}, its (latency, connect, ttfb)
        hdrh histograms, synced, or None beyond endpoint_hists)."""
    def endpoints_open(self) -> tuple[int, int]:
        """(endpoints with a block, endpoints with histograms)."""
    def tally(self) -> dict[str, Any]:
        """Cumulative over every record: samples, completed, errors, no_status, negative,
        endpoint_unknown, bytes_rx, bytes_tx, seq_gaps (records missing by seq: ring drops),
        next_seq, status {code: n}, error {kind value: n}, sys_errno {kind value: {errno: n}}."""

def hist_decode_varints(
    data: bytes, offset: int, counts_len: int, idx: Any, val: Any
) -> tuple[int, int, int, int]:
    """Decode the V2 ZigZag LEB128 counts in data[offset:] (HdrHistogram_c semantics; the 9th byte
    carries 8 bits) into idx (int64) / val (uint64) arrays of at least counts_len entries: the
    non-zero counts, indices ascending. Returns (entries, total, min_index, max_index), indices -1
    when empty. ValueError on a truncated varint, an index reaching counts_len, or a total > 2^64-1."""

def hist_sparse_fits(dst: Any, idx: Any, val: Any, n: int) -> bool:
    """True when every idx[k] (k < n) lies in dst (uint64) and dst[idx[k]] + val[k] <= INT64_MAX."""

def hist_add_sparse(dst: Any, idx: Any, val: Any, n: int) -> None:
    """dst[idx[k]] += val[k] for k < n, after checking as hist_sparse_fits does; OverflowError with
    dst untouched otherwise. Releases the GIL."""

# --- http parser test hooks (http.pxi) ---

HTTP_LIMITS: dict[str, int]
"""Parser bounds: max_header_bytes (one header block), max_chunk_line_bytes, max_trailer_bytes."""

HTTP_ERRORS: tuple[str, ...]
"""Error code names indexed by the native HTTP_ERR_* value (0 is "none")."""

def parse_responses(
    data: bytes,
    splits: list[int] | None = None,
    head: bool = False,
    memo: bool = False,
    keep: int | None = None,
) -> list[dict[str, Any]]:
    """Test hook: run the native HTTP/1.1 response parser over `data` like the engine does.

    `data` is delivered in pieces cut at the offsets in `splits`; after each piece the parser is fed
    the unconsumed bytes (an incomplete header block stays in the buffer and the next piece is
    appended). Returns one dict per completed response: {"status", "keep_alive", "body_bytes",
    "interim" (1xx skipped), "header_bytes", "wire_bytes", "eof_complete"}; on a malformed response a
    final {"error": name} (a name from HTTP_ERRORS) and stops. At the end of `data`, if a response is
    in progress, the peer's close is simulated: a close-delimited body completes ("eof_complete":
    True), anything else gives {"error": "closed"}. `head=True` parses responses to HEAD requests.
    `keep=N` captures as the engine does for response checks: each result also has "head" (the
    final header block's bytes), "body" (the first N payload bytes, de-chunked) and
    "body_truncated" (the body was longer).
    `memo=True` parses with one head memo for the whole call, as the engine does (the results
    must be the same).
    """

def http_parse_bench(
    data: bytes, iterations: int, head: bool = False, memo: bool = False
) -> tuple[int, float]:
    """Parse `data` (complete responses back to back) `iterations` times in native code, nogil.

    Returns (responses per pass, mean ns per pass). Raises ValueError if `data` does not consist of
    complete, well-formed responses. For parser micro-benchmarks (wrap runs in the bench lock).
    """

# --- response checks (check.pxi over include/bf_check.h): test hooks ---

CHECK_JSON_CODES: tuple[str, ...]
"""bf_json_get result names indexed by code: found, missing, invalid, too_deep, truncated."""

CHECK_JSON_TYPES: tuple[str, ...]
"""JSON value type names indexed by the native BF_JSON_* type (0 is "none": not found)."""

CHECK_JSON_MAX_DEPTH: int
"""Containers open at once beyond which bf_json_get answers too_deep."""

def check_header(block: bytes, name: bytes) -> bytes | None:
    """Test hook (bf_header_find): the value, OWS-trimmed, of the first field of the header block
    (status line, field lines, blank line) named `name` case-insensitively; None if there is none."""

def check_body_contains(body: bytes, needle: bytes) -> bool:
    """Test hook (bf_body_contains): memmem semantics; an empty needle is always contained."""

def check_json_get(
    body: bytes, path: bytes, truncated: bool = False
) -> tuple[int, int, bytes | None]:
    """Test hook (bf_json_get): walk `body` along the dotted `path` (b"" = the whole document).

    Returns (code, type, raw bytes of the value found or None), code and type indexing
    CHECK_JSON_CODES and CHECK_JSON_TYPES. `truncated`: body is a prefix of a longer one, so running
    off its end answers truncated instead of invalid. Semantics: include/bf_check.h.
    """

def check_json_equals(
    body: bytes, path: bytes, expected: bytes, truncated: bool = False
) -> tuple[int, bool]:
    """Test hook (bf_json_get then bf_json_equals): (code, whether the value found equals the JSON
    text `expected`); False unless code is found. Semantics: include/bf_check.h."""

# --- engine (loop.pxi, conn.pxi, pacing.pxi) ---

def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in integer ns (vDSO clock_gettime): the clock of every sample timestamp, the
    same clock as time.monotonic_ns()."""

def pacing_times(
    rate: float = 0.0,
    stages: Any = (),
    arrival: int = 0,
    seed: int = 0,
    count: int = 0,
    duration_ns: int = 0,
    requests: int = 0,
) -> list[int]:
    """Test hook: the open-loop schedule's intended send times (ns after t0) of the first `count`
    entries, or all of them when the schedule is bounded by duration_ns, requests or stages.
    stages: (duration_ns, end_rate) ramps (k6 semantics); arrival 0 constant, 1 poisson."""

def pacing_skip(
    rate: float = 0.0,
    stages: Any = (),
    arrival: int = 0,
    seed: int = 0,
    duration_ns: int = 0,
    requests: int = 0,
    through_ns: int = 0,
    then: int = 3,
) -> tuple[int, list[int]]:
    """Test hook: start the schedule, pass over every entry due at or before `through_ns` (ns after
    t0) in bulk (pacing_skip_through, as the open loop does with a hopeless backlog) and return (how
    many it passed, the intended times of the next `then` entries)."""

def alias_table(weights: list[float]) -> list[tuple[float, int]]:
    """Test hook: the engine's alias table, [(keep probability, alias), ...] per column."""

class Engine:
    """The native HTTP/1.1 load engine: one epoll loop (the whole run without the GIL) over
    `connections` keep-alive connections; closed loop, or open loop when rate > 0 or stages.

    Every finished or failed request publishes one 64-byte sample into `ring` (None: counted only)
    with seq 0, 1, 2, ... (gaps = ring drops); exact totals are kept as counters.
    Closed loop: intended_ns == send_ns. Open loop: intended_ns is the schedule's t_k (kept while
    the request waits for a free connection); BF_FLAG_OPEN_LOOP is set; entries still unsent at
    the end are counted as not_sent and published with error NOT_SENT (send_ns 0).
    Errors are counted by kind and never retried: connect (sys_errno; connect timeout ->
    ETIMEDOUT; retried after a 10 ms..1 s doubling backoff; the request it was for fails: closed
    loop the slot's, open loop the oldest due one, if any),
    timeout (request timeout from send_ns, checked every 10 ms; the connection is replaced), read,
    write, parse, closed (peer closed before the response was complete, also before its first
    byte on a reused connection). Open loop: an entry that waited for a connection longer than
    the request timeout fails as a timeout with send_ns 0. `Connection: close` / HTTP/1.0: completed, then reconnect
    (counted in reconnects).
    """

    def __init__(
        self,
        ring: Ring | None,
        *,
        addr: str,
        port: int,
        family: int,
        request: bytes,
        head: bool,
        connections: int,
        max_connections: int = 0,
        requests: int = 0,
        duration_ns: int = 0,
        timeout_ns: int,
        connect_timeout_ns: int,
        rate: float = 0.0,
        stages: list[tuple[int, float]] | tuple[tuple[int, float], ...] = (),
        arrival: int = 0,
        seed: int = 0,
        start_ns: int = 0,
        endpoints: list[tuple[Any, ...]] | None = None,
        feeders: list[tuple[bytes, bytes, int, int, int]] | tuple[()] = (),
        seq_start: int = 0,
        seq_step: int = 1,
        max_body: int = 65536,
        unix_path: str = "",
        tls: dict[str, Any] | None = None,
        flows: list[tuple[Any, ...]] | tuple[()] = (),
        nvars: int = 0,
    ) -> None:
        """unix_path: connect to this unix socket instead (addr/port then only go unused).
        tls: https, {host, sni, verify, cafile, certfile, keyfile, resume, alpn} (tls.pxi; the
        SSL_CTX is built here, ValueError with OpenSSL's reason on a bad file).
        addr: numeric IPv4/IPv6 address; family: socket.AF_INET/AF_INET6; request: the whole
        serialised request, sent verbatim; head: the request is HEAD (responses have no body).
        requests: stop after that many were STARTED (0: no bound); duration_ns: from the start
        (0: no bound); start_ns: CLOCK_MONOTONIC time to begin (0: now), so workers start
        together. max_connections (open loop): grow up to this many when all are busy.
        Raises ValueError for bad arguments, OSError (EMFILE) when the fd limit cannot fit the
        connections, TypeError when ring is not a Ring.
        endpoints: [(request, head, weight, status_ranges), ...] (at most 4096): each request
        picks one by weight (alias table, a PRNG seeded from `seed`); a completed response whose
        status is outside its endpoint's non-empty ranges is flagged FLAG_CHECK_FAIL and counted
        in `check_failed`. None: one endpoint, (request, head, 1, no check). A fifth element
        (blob, ops) makes the endpoint a template rendered per request (template.pxi; ops are
        16-byte (kind, a, b, 0) records compiled by scenario/template.py).
        feeders: (arena, offsets, nrows, nvars, order) each, read in place by templates; a unique
        feeder that runs out ends the run after the request that took its last row (counters()
        "data_out" = 1 + its index). seq_start/seq_step: the {{ seq }} values, start + k * step. A sixth element of an endpoint:
        its checks, (kind, mode, status ranges, a, b) each (loop.pxi CHK_*); header/body/JSON checks
        read the final header block and the first max_body body bytes of each response.
        flows: (weight, feeds mask, cookies, on_fail, steps) each (flow.pxi, user.pxi): each
        connection slot runs a virtual user through iterations of a flow picked by weight; the
        endpoints are the flows' request steps (a step (1, endpoint, captures), a think (2, kind,
        a_ns, b_ns)); `requests` then bounds iterations, and a rate is iterations per second.
        nvars: the captured variables' count (captures name them by index)."""

    def tls_info(self) -> dict[str, Any]:
        """https: {full, resumed} handshakes, the first TLS failure's reason and X509 result."""

    def endpoint_counts(self) -> list[dict[str, int]]:
        """Per endpoint, in table order: started, completed, errors, check_failed (exact)."""

    def flow_counts(self) -> list[dict[str, int]]:
        """Per flow: iterations_started/completed/failed, steps_skipped, cookies_dropped, and per
        capture j (program order): cap_j_ok, cap_j_missing, cap_j_too_long, cap_j_bad_bytes,
        cap_j_truncated (exact; same thread-safety as counters())."""

    def flow_state(self) -> dict[str, int]:
        """Flows: in_progress (iterations), thinking (users), bulk_failed (iterations)."""

    def run(self) -> None:
        """Run to the deadline, the request count or stop(); releases the GIL throughout. Once per
        Engine. At the end started == completed + (errors - err_not_sent) + in_flight (in_flight:
        requests cut off by the deadline or stop(), no sample). Raises OSError (via the errno
        converter) when not even the first sockets could be created (EMFILE, ENFILE, ...)."""

    def stop(self) -> None:
        """Thread-safe; returns at once; run() returns within ~5 ms."""

    def now_ns(self) -> int:
        """CLOCK_MONOTONIC ns (same as monotonic_ns())."""

    def counters(self) -> dict[str, int]:
        """Totals so far, safe to call while run() runs in another thread (relaxed atomic loads):
        started, completed, errors, in_flight, not_sent, reconnects, connects, connect_attempts,
        connect_failures (all failed connects; err_connect counts the requests that failed with one),
        bytes_rx, bytes_tx, samples, ring_dropped, conns_open, conns_peak, spin_ns (open loop: ns
        spent polling for a send that was not due yet, the pacing spin), runq_wait_ns (the loop
        thread's run-queue wait since t0, from /proc/thread-self/schedstat; 0 where unavailable),
        and err_<kind> for
        connect, timeout, read, write, parse, closed, not_sent. connects == 0 after a run means no
        load could be generated."""

    def status_counts(self) -> dict[int, int]:
        """HTTP status (0..999) -> completed responses with it; same thread-safety."""

    @property
    def open_loop(self) -> bool: ...
    @property
    def t0_ns(self) -> int:
        """When the run began (start_ns, or when run() was called); 0 before run()."""

    def _set_spin_ns(self, spin_ns: int | None) -> None:
        """Benchmark knob: a fixed open-loop pacing spin window in ns, or None for the default
        adaptive window (tracks the p99 of measured wake-up lateness, 2..50 µs). Before run()."""

    def _set_defer_reads(self, on: bool) -> None:
        """Benchmark knob: open-loop deferred pacing sleeps and closed-loop naps (on by default;
        reads that follow either are timed by the kernel's receive stamps). Off, the sockets are
        not stamped at all. Before run()."""

    def _set_head_memo(self, on: bool) -> None:
        """Benchmark knob: reuse the parse of a header block equal byte for byte to the last one
        parsed in full (the default), or parse every header block. Before run()."""

    def _head_memo_hits(self) -> int:
        """Benchmark stats, after run(): responses whose header block was the memorised one
        (byte for byte the last block parsed in full), so its parse was reused."""

    def _set_edge_triggered(self, on: bool) -> None:
        """Benchmark knob: the connections on edge-triggered epoll (EPOLLET, the default) or on
        level-triggered epoll. Before run()."""

    def _set_closed_nap_ns(self, nap_ns: int, auto: bool = True) -> None:
        """Benchmark knob, closed loop only: the nap (default 20 µs; 0: never nap). While naps are
        on, a poll that found nothing is followed by a sleep of nap_ns on an empty epoll set instead
        of one on the sockets, and what arrived meanwhile is timed by its kernel receive stamps.
        auto (the default): the controller (nap.pxi) turns naps on only while probes find they
        cost the server's throughput nothing; False: naps always. Before run()."""

    def _set_nap_control(
        self,
        window_ns: int,
        pairs: int,
        keep: float,
        hold_ns: int | None = None,
        abort: float | None = None,
    ) -> None:
        """Benchmark knob: the nap controller's probe window (20 ms), window pairs per probe (6),
        the median on/off throughput ratio that keeps naps (0.99), a fixed hold between probes
        (default: 0.5 s doubling to 8 s) and the single-pair ratio that ends a probe (0.75)."""

    def _set_lag_allowance(self, allow_ns: int) -> None:
        """Benchmark knob: the adaptive window counts a send up to allow_ns late as on time
        (default 10 µs; 0: aim every send at its intended ns). Before run()."""

    def _set_spin_gap_factor(self, factor: int) -> None:
        """Benchmark knob: spin only when sends are >= factor windows apart (default 2; 0: at any
        gap). Before run()."""

    def _set_spin_quantile(self, q: float) -> None: ...
    def _set_coalesce_ns(self, coalesce_ns: int) -> None:
        """Benchmark knob: wake at most once per coalesce_ns after a send is due and send all that
        are due (no spin); 0 (default) wakes for each send. Before run()."""

    def _pacing_stats(self) -> dict[str, Any]:
        """After run(): {spin_ns (window at the end), spin_auto, timed_sleeps (pacing sleeps that
        ended by their timeout), late_ns_mean (their mean lateness past the wake target),
        deferred_sleeps, closed_naps (naps taken), nap_on_s (time naps were on), nap_probes,
        nap_probes_on (probes that decided for naps), nap_aborts, nap_log (each probe's median
        on/off ratio; 0.0: aborted), rx_stamped, rx_unstamped, rx_stamp_bad, defer_off}."""

class _NapController:
    """Test hook: the closed loop's nap controller (nap.pxi) driven by hand."""

    def __init__(self, window_ns: int = ..., pairs: int = ...) -> None: ...
    def start(self, t0: int) -> None: ...
    def step(self, now: int, done: int, able: bool = True) -> None:
        """Call when now >= next_ns; done: requests finished so far."""
    def on_ns(self, now: int) -> int: ...
    @property
    def on(self) -> bool: ...
    @property
    def probing(self) -> bool: ...
    @property
    def next_ns(self) -> int: ...
    @property
    def hold_ns(self) -> int: ...
    @property
    def stats(self) -> dict[str, Any]: ...

# --- server (serve.pxi) ---

class Server:
    """Built-in HTTP/1.1 target (`barfast serve`) on a nogil, level-triggered epoll loop.

    Binds and listens in the constructor (SO_REUSEADDR, backlog 4096; `host` must be an IPv4 or IPv6
    literal, else ValueError; bind errors raise OSError with the errno, e.g. EADDRINUSE). Port 0 picks
    a free port: read it from `port`.

    Every request gets the same prebuilt response for its status: status line, `Server: barfast`,
    `Content-Type: text/plain` and `Content-Length: N` (not for 204/304), `Connection: close` on the
    last response of a connection (or `Connection: keep-alive` for HTTP/1.0 keep-alive clients), then
    `body_size` bytes of "hello world\\n" repeated. No Date header: the response never changes. HEAD
    gets the same header block without the body. Request bodies (Content-Length) are skipped;
    Transfer-Encoding in a request -> 501; malformed requests -> 400; header blocks over 8 KiB -> 431;
    each of these closes the connection (half-close, then drain: RFC 9112 §9.6). Pipelined requests
    read together are answered with one write. Idle connections are never timed out.

    Faults (deterministic for `seed`):
      delay_ns        fixed delay of each response, from the moment its request is complete;
      delay_dist      0 none, 1 uniform in [delay_a_ns, delay_b_ns], 2 exponential with mean
                      delay_a_ns; added to delay_ns. Responses still leave in request order.
      stall_ns / stall_every_ns   the whole server freezes (no accept, read or write) for the LAST
                      stall_ns of every stall_every_ns period, counted from the first run().
      statuses        [(status, weight), ...]: weighted random status per response (200..599).
      close_every     close each connection after its Nth response (sent with Connection: close).
      max_concurrency at most this many requests in service (needs a fixed delay_ns): the others
                      queue in arrival order for the next free slot, so capacity = N / delay.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        body_size: int = 12,
        delay_ns: int = 0,
        delay_dist: int = 0,
        delay_a_ns: int = 0,
        delay_b_ns: int = 0,
        stall_ns: int = 0,
        stall_every_ns: int = 0,
        statuses: list[tuple[int, int]] | tuple[tuple[int, int], ...] = ((200, 1),),
        close_every: int = 0,
        seed: int = 0,
        tls_cert: str = "",
        tls_key: str = "",
        tls_resume: bool = True,
        max_concurrency: int = 0,
        sessions: bool = False,
    ) -> None:
        """sessions: POST /login answers a token ({"token": ..., "user": k}) and a cookie
        (sid=...); every other request needs `Authorization: Bearer <token>` and that cookie, both
        from one login, else 401 (counters logins, authorized, rejected).
        tls_cert (PEM chain; tls_key: its key, default in the same file): serve HTTPS, the
        handshake driven by the same loop, session tickets on unless tls_resume is False (then
        no ticket and no session cache: every handshake is full). ValueError for a bad file."""
    @property
    def port(self) -> int:
        """The bound port (known right after construction)."""
    @property
    def host(self) -> str:
        """The host given to the constructor."""
    def run(self, duration_ns: int = 0) -> None:
        """Serve with the GIL released until duration_ns elapsed (0: no limit) or stop() is called.
        May be called again afterwards (connections persist). RuntimeError if already running/closed."""
    def stop(self) -> None:
        """Thread-safe; the current run() (or, if none is running, the next one) returns promptly."""
    def counters(self) -> dict[str, int]:
        """Safe from any thread while run() runs. Keys: requests (complete requests answered or
        queued), responses (fully written), connections (open now), connections_accepted,
        connections_closed, bytes_rx, bytes_tx, bad_requests (400/431/501 sent), stalls (stall
        windows entered while there was work), accept_errors, and the delay timer's self-check:
        delayed (delayed responses written), late_ns_sum / late_ns_max (time of their sendmsg minus
        their due time: how late the timer was); with TLS tls_handshakes, tls_resumed and
        tls_failures (handshakes or records that failed; the connection is closed)."""
    def status_counts(self) -> dict[int, int]:
        """Responses chosen per status (counted when queued), including zero counts."""
    def session_token(self, k: int) -> str:
        """sessions: the token the k-th login (mod 1024) is issued."""
    def close(self) -> None:
        """Close the listening socket and every connection; free the buffers. Not while running."""
    def __enter__(self) -> Server: ...
    def __exit__(self, *exc: object) -> None: ...

def f16_us(ns: int) -> int:
    """Test hook: a duration in ns as the sample's 16-bit handshake time (barfast.h bf_f16_us)."""

def f16_ns(code: int) -> int:
    """Test hook: a bf_f16_us code back in ns."""
