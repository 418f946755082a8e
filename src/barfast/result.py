"""Merger: snapshots from any number of workers -> one exact result -> the JSON report dict.

Exactness: every snapshot carries the HdrHistograms of the samples since that worker's previous
snapshot as V2 histoblobs (histoblob.py: binary with stored zlib blocks from workers; hdrh's base64
encode() output is read too). The merger decodes each into its non-zero (index, count) pairs and adds
those into its hdrh histograms' counts, keeping total/min/max exactly as hdrh's decode()+add() would
(same layout, so an element-wise add). The merged histogram is therefore exactly the histogram of all
samples, whatever the split across workers and intervals. Counters are cumulative per worker: the
merger keeps each worker's latest (highest seq) and sums those.

Cost (the coordinator merges 256 workers x 3 histograms a second; benchmarks/README.md): nothing is
allocated per histogram but the sparse pairs; hdrh's decode() would allocate and add 33,792 counts.

Untrusted input: add() checks the whole snapshot (field types, histoblob bounds: histoblob.py) and
that no merged count would pass INT64_MAX before merging any of it; a bad snapshot is refused whole
with a ProtocolError and counted in the report.

Per-second series: snapshot k of a worker covers second k of its run (runner.py); points from all
workers with the same second are added. Only the per-second p50/p90/p99 of the latency view are
reported, so a second keeps just a counts array (no hdrh object) while it can still receive
snapshots (SERIES_OPEN_S behind the newest second seen); then it is reduced to its percentiles
(`percentiles()`, hdrh's arithmetic) and freed, so memory stays flat in long runs. A snapshot
arriving later than that still adds its counts to the second (and to the merged histogram), but not
to that second's percentiles.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast._core import hist_add_sparse, hist_sparse_fits  # type: ignore[attr-defined]
from barfast.aggregate import HIST_VIEWS, new_histogram
from barfast.config import NS_PER_MS, NS_PER_S, RunConfig, format_duration
from barfast.histoblob import HistoblobDecoder, HistoblobError, SparseCounts
from barfast.status import ProtocolError

SCHEMA = "barfast.report/1"
SERIES_OPEN_S = 5
SEND_LAG_WARN_MS = 1.0
CPU_SATURATED = 0.9
CPU_WAIT_WARN = 0.1  # a worker runnable but off its CPU this share of the run: it was starved
CPU_SHARE_MIN_S = 0.1  # CPU shares need at least this long an interval (_worker_row)
REPORT_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99)
FULL_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0)
COUNTER_KEYS = ("started", "completed", "errors", "in_flight", "not_sent")
MAX_SECOND = 10**8  # ~3 years of seconds: a larger interval index is a broken or hostile peer
MAX_REJECT_REASONS = 5


def pct_key(p: float) -> str:
    return f"p{p:g}"


def add_hist(dst: HdrHistogram, src: HdrHistogram) -> None:
    """dst += src, exactly. Empty sources are skipped: hdrh's add() would set dst's min to 0."""
    if src.get_total_count():
        dst.add(src)


def decode_hist(blob: bytes | str) -> HdrHistogram:
    return HdrHistogram.decode(blob)


def add_sparse(dst: HdrHistogram, counts: np.ndarray, sc: SparseCounts) -> None:
    """dst += the decoded histogram `sc`, exactly as hdrh's `dst.add(HdrHistogram.decode(blob))`
    would (same counts, total, min and max; see test_histoblob.py), touching only sc's non-zero
    counts. `counts` is the uint64 view of dst.counts. dst must be fresh or only ever added to
    (its min_value is then sys.maxsize or a lowest equivalent value). Raises OverflowError (dst
    untouched) when a count would exceed INT64_MAX."""
    if not sc.total:
        return
    hist_add_sparse(counts, sc.idx, sc.val, sc.n)
    # hdrh: decode() sets the decoded histogram's min/max from its extreme non-zero indices, then
    # add() does total += ...; max = max(max, other max); min = min(get_min_value(), other min),
    # where get_min_value() is 0 when counts[0] > 0, else the lowest equivalent of min_value
    # (min_value itself here: always maxsize or a lowest equivalent value).
    dst.total_count += sc.total
    if sc.max_value > dst.max_value:
        dst.max_value = sc.max_value
    dst.min_value = 0 if counts[0] else min(dst.min_value, sc.min_value)


def percentiles(
    h: HdrHistogram, counts: np.ndarray, total: int, pcts: Iterable[float]
) -> dict[float, int]:
    """hdrh's get_percentile_to_value_dict() for a counts array of h's layout holding `total`
    samples, with a cumulative sum instead of a Python walk over every bucket (same float target
    arithmetic, same first index reaching it, same equivalent-value rounding)."""
    out: dict[float, int] = {}
    if not total:
        return out
    cum = np.cumsum(counts, dtype=np.uint64)
    for p in sorted(set(pcts)):
        if p > 100:
            break
        target = max(int((min(p, 100.0) * total / 100) + 0.5), 1)
        i = int(np.searchsorted(cum, target, side="left"))
        if i >= len(cum):
            break
        v = h.get_value_from_index(i)
        out[p] = h.get_highest_equivalent_value(v) if p else h.get_lowest_equivalent_value(v)
    return out


def ms(ns: float) -> float:
    return round(ns / NS_PER_MS, 6)


def mean_stdev(h: HdrHistogram) -> tuple[float, float]:
    """hdrh's get_mean_value() and get_stddev(), same arithmetic in the same order, but visiting only
    the non-zero counts (hdrh walks all 33,792 buckets in Python: ~90 ms per call at our layout)."""
    total = h.get_total_count()
    if not total:
        return 0.0, 0.0
    counts = np.frombuffer(h.counts, dtype=np.uint64)
    idx = np.flatnonzero(counts).tolist()
    cnt = counts[idx].tolist()
    half, shcm, um = h.sub_bucket_half_count, h.sub_bucket_half_count_magnitude, h.unit_magnitude
    medians = []
    for i in idx:
        bucket = (i >> shcm) - 1
        sub = (i & (half - 1)) + half
        if bucket < 0:
            sub -= half
            bucket = 0
        lowest = sub << (bucket + um)
        medians.append(lowest + ((1 << (um + bucket)) >> 1))
    acc = 0
    for m, c in zip(medians, cnt, strict=True):
        acc += c * m
    mean = float(acc) / total
    dev_total = 0.0
    for m, c in zip(medians, cnt, strict=True):
        dev = (m * 1.0) - mean
        dev_total += (dev * dev) * c
    return mean, math.sqrt(dev_total / total)


def latency_summary(
    h: HdrHistogram, pcts: tuple[float, ...] = REPORT_PERCENTILES
) -> dict[str, float | int]:
    """{min, mean, stdev, p50.., max} in milliseconds (values are hdrh's: 3 significant digits)."""
    n = h.get_total_count()
    out: dict[str, float | int] = {"count": int(n)}
    if not n:
        out.update({"min": 0.0, "mean": 0.0, "stdev": 0.0, "max": 0.0})
        out.update({pct_key(p): 0.0 for p in pcts})
        return out
    out["min"] = ms(h.get_min_value())
    mean, stdev = mean_stdev(h)
    out["mean"] = ms(mean)
    out["stdev"] = ms(stdev)
    vals = percentiles(h, np.frombuffer(h.counts, dtype=np.uint64), n, pcts)
    for p in pcts:
        out[pct_key(p)] = ms(vals[p])
    out["max"] = ms(h.get_max_value())
    return out


@dataclass
class _Second:
    requests: int = 0
    errors: int = 0
    samples: int = 0
    counts: np.ndarray | None = None  # latency counts of this second (uint64, the merged layout)
    total: int = 0  # samples in `counts`
    pcts: dict[str, float] | None = None  # set when closed


@dataclass
class _Worker:
    worker: int
    seq: int = -1
    final: bool = False
    lost: bool = False
    interrupted: bool = False
    elapsed_ns: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    ring: dict[str, int] = field(default_factory=dict)
    sys_errno: dict[str, dict[int, int]] = field(default_factory=dict)
    samples: int = 0
    snapshots: int = 0
    rejected: int = 0
    clamped: dict[str, int] = field(default_factory=dict)


class _Bad(Exception):
    """A snapshot field that is not what the protocol says (raised as ProtocolError by add())."""


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise _Bad(f"{what} is a bool, not an integer")
    try:
        return operator.index(v)
    except TypeError:
        raise _Bad(f"{what} is a {type(v).__name__}, not an integer") from None


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise _Bad(f"{what} is a {type(v).__name__}, not a number")
    return float(v)


def _map(v: Any, what: str) -> dict[Any, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Bad(f"{what} is a {type(v).__name__}, not a map")
    return v


def _int_key(k: Any, what: str) -> int:
    if isinstance(k, str):
        try:
            return int(k)
        except ValueError:
            raise _Bad(f"{what} has a non-numeric key {k[:20]!r}") from None
    return _int(k, f"{what} key")


def _str_int_map(v: Any, what: str) -> dict[str, int]:
    d = _map(v, what)
    for k, x in d.items():  # fast path: what protocol.decode() and the runner produce
        if type(k) is not str or type(x) is not int:
            return {str(k): _int(x, f"{what}.{k}") for k, x in d.items()}
    return dict(d)


def _int_int_map(v: Any, what: str) -> dict[int, int]:
    d = _map(v, what)
    for k, x in d.items():
        if type(k) is not int or type(x) is not int:
            return {_int_key(k, what): _int(x, f"{what}.{k}") for k, x in d.items()}
    return dict(d)


@dataclass
class _Parsed:
    """One snapshot, every field checked and converted (nothing is merged until all of it is)."""

    wid: int
    seq: int
    sec: int
    samples: int
    completed: int
    errors_n: int
    clamped: dict[str, int]
    hists: dict[str, SparseCounts]
    final: bool
    interrupted: bool
    elapsed_ns: int
    counters: dict[str, int]
    status: dict[int, int]
    errors: dict[str, int]
    cpu: dict[str, float]
    ring: dict[str, int]
    sys_errno: dict[str, dict[int, int]]


class Merger:
    """Adds snapshots (any worker, any order) into one exact result; `report()` renders the dict.

    A malformed snapshot (hostile or broken peer) is refused whole by add() with a ProtocolError and
    counted (`rejected`); nothing of it is merged."""

    def __init__(self) -> None:
        self.hists = {name: new_histogram() for name in HIST_VIEWS}
        # uint64 views of the hdrh counts buffers: sparse adds go straight into them.
        self._counts = {n: np.frombuffer(h.counts, dtype=np.uint64) for n, h in self.hists.items()}
        self._decoder = HistoblobDecoder(self.hists["latency"])
        self.workers: dict[int, _Worker] = {}
        self.seconds: dict[int, _Second] = {}
        self._newest_second = -1
        self.rejected = 0
        self.rejected_reasons: list[str] = []  # the first MAX_REJECT_REASONS, for the report

    # -- input ----------------------------------------------------------------------------------

    def add(self, snap: dict[str, Any]) -> None:
        """Merge one snapshot, or refuse it whole (ProtocolError, counted) when any field is bad."""
        try:
            p = self._parse(snap)
            for name, sc in p.hists.items():  # check every add before doing any
                if not hist_sparse_fits(self._counts[name], sc.idx, sc.val, sc.n):
                    raise _Bad(f"hist.{name} would overflow the merged counts (> 2^63 - 1)")
        except (_Bad, HistoblobError) as exc:
            self._reject(snap, str(exc))
            raise ProtocolError(f"snapshot refused: {exc}") from None
        self._apply(p)

    def _reject(self, snap: Any, reason: str) -> None:
        self.rejected += 1
        if len(self.rejected_reasons) < MAX_REJECT_REASONS:
            self.rejected_reasons.append(reason)
        wid = snap.get("worker") if isinstance(snap, dict) else None
        if isinstance(wid, int) and not isinstance(wid, bool):
            w = self.workers.get(wid)
            if w is None:
                w = self.workers[wid] = _Worker(wid)
            w.rejected += 1

    def _parse(self, snap: Any) -> _Parsed:
        if not isinstance(snap, dict):
            raise _Bad(f"a snapshot is a map, not a {type(snap).__name__}")
        g = snap.get
        hists: dict[str, SparseCounts] = {}
        for name, blob in _map(g("hist"), "hist").items():
            if name not in self.hists or not blob:
                continue  # a view this barfast does not merge (or an empty one)
            if not isinstance(blob, (bytes, str)):
                raise _Bad(f"hist.{name} is a {type(blob).__name__}, not bytes")
            try:
                hists[name] = self._decoder.decode(blob)
            except HistoblobError as exc:
                raise _Bad(f"hist.{name}: {exc}") from None
        sec = _int(g("interval", 0), "interval")
        if not 0 <= sec <= MAX_SECOND:
            raise _Bad(f"interval {sec} is outside 0..{MAX_SECOND}")
        return _Parsed(
            wid=_int(g("worker"), "worker"),
            seq=_int(g("seq", 0), "seq"),
            sec=sec,
            samples=_int(g("samples", 0), "samples"),
            completed=_int(g("interval_completed", 0), "interval_completed"),
            errors_n=_int(g("interval_errors", 0), "interval_errors"),
            clamped=_str_int_map(g("clamped"), "clamped"),
            hists=hists,
            final=bool(g("final")),
            interrupted=bool(g("interrupted")),
            elapsed_ns=_int(g("elapsed_ns", 0), "elapsed_ns"),
            counters=_str_int_map(g("counters"), "counters"),
            status=_int_int_map(g("status"), "status"),
            errors=_str_int_map(g("errors"), "errors"),
            cpu={str(k): _num(v, "cpu") for k, v in _map(g("cpu"), "cpu").items()},
            ring=_str_int_map(g("ring"), "ring"),
            sys_errno={
                str(k): _int_int_map(v, "sys_errno")
                for k, v in _map(g("sys_errno"), "sys_errno").items()
            },
        )

    def _apply(self, p: _Parsed) -> None:
        w = self.workers.get(p.wid)
        if w is None:
            w = self.workers[p.wid] = _Worker(p.wid)
        w.snapshots += 1
        w.samples += p.samples
        for name, n in p.clamped.items():
            w.clamped[name] = w.clamped.get(name, 0) + n
        # Histograms are interval deltas: always add, whatever the arrival order.
        point = self.seconds.get(p.sec)
        if point is None:
            point = self.seconds[p.sec] = _Second()
        point.requests += p.completed
        point.errors += p.errors_n
        point.samples += p.samples
        for name, sc in p.hists.items():
            add_sparse(self.hists[name], self._counts[name], sc)
            if name == "latency" and point.pcts is None and sc.total:
                # Only the per-second p50/p90/p99 are needed: a plain counts array, no hdrh object.
                if point.counts is None:
                    point.counts = np.zeros(len(self._counts[name]), dtype=np.uint64)
                hist_add_sparse(point.counts, sc.idx, sc.val, sc.n)  # <= merged: cannot overflow
                point.total += sc.total
        # Counters are cumulative: keep the newest of each worker.
        if p.seq >= w.seq:
            w.seq = p.seq
            w.final = w.final or p.final
            w.interrupted = w.interrupted or p.interrupted
            w.elapsed_ns = p.elapsed_ns
            w.counters = p.counters
            w.status = p.status
            w.errors = p.errors
            w.cpu = p.cpu
            w.ring = p.ring
            w.sys_errno = p.sys_errno
        if p.sec > self._newest_second:
            self._newest_second = p.sec
            self._close_old_seconds()
        elif point.pcts is None and p.sec < self._newest_second - SERIES_OPEN_S:
            # The first snapshot of a second that is already past the window: reduce it now, so
            # that snapshots for ever-older seconds cannot each keep a counts array alive.
            point.pcts = self._second_pcts(point)
            point.counts = None

    def worker_lost(self, worker_id: int) -> None:
        """Mark a worker lost: its data up to its last snapshot stays in the result."""
        w = self.workers.get(worker_id)
        if w is None:
            w = self.workers[worker_id] = _Worker(worker_id)
        w.lost = True

    def _close_old_seconds(self) -> None:
        for sec, point in self.seconds.items():
            if point.pcts is None and sec < self._newest_second - SERIES_OPEN_S:
                point.pcts = self._second_pcts(point)
                point.counts = None

    def _second_pcts(self, point: _Second) -> dict[str, float]:
        if point.counts is None or not point.total:
            return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0}
        v = percentiles(self.hists["latency"], point.counts, point.total, (50.0, 90.0, 99.0))
        return {"p50_ms": ms(v[50.0]), "p90_ms": ms(v[90.0]), "p99_ms": ms(v[99.0])}

    # -- queries (also for live progress) -------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Sum of every worker's latest cumulative counters."""
        out: dict[str, int] = {}
        for w in self.workers.values():
            for k, v in w.counters.items():
                out[k] = out.get(k, 0) + v
        return out

    def series_point(self, second: int) -> dict[str, Any] | None:
        point = self.seconds.get(second)
        if point is None:
            return None
        pcts = point.pcts if point.pcts is not None else self._second_pcts(point)
        return {"second": second, "requests": point.requests, "errors": point.errors, **pcts}

    def series(self) -> list[dict[str, Any]]:
        return [p for s in sorted(self.seconds) if (p := self.series_point(s)) is not None]

    @property
    def lost_workers(self) -> list[int]:
        return sorted(w.worker for w in self.workers.values() if w.lost)

    # -- the report -----------------------------------------------------------------------------

    def report(self, config_info: dict[str, Any]) -> dict[str, Any]:
        """The JSON report dict (schema barfast.report/1); see docs in report/json.py."""
        open_loop = bool(config_info.get("open_loop"))
        tot = self.totals()
        duration_ns = max((w.elapsed_ns for w in self.workers.values()), default=0)
        duration_s = duration_ns / NS_PER_S
        completed = tot.get("completed", 0)
        status: dict[str, int] = {}
        errors: dict[str, int] = {}
        errno_detail: dict[str, dict[str, int]] = {}
        for w in self.workers.values():
            for code, n in w.status.items():
                status[str(code)] = status.get(str(code), 0) + n
            for kind, n in w.errors.items():
                errors[kind] = errors.get(kind, 0) + n
            for kind, per in w.sys_errno.items():
                d = errno_detail.setdefault(kind, {})
                for e, n in per.items():
                    name = errno_name(e)
                    d[name] = d.get(name, 0) + n
        # Closed loop: intended == send, so the "actual send" view is the uncorrected histogram.
        main = self.hists["latency"] if open_loop else self.hists["uncorrected"]
        bytes_rx, bytes_tx = tot.get("bytes_rx", 0), tot.get("bytes_tx", 0)
        dropped = sum(
            max(
                w.ring.get("dropped", 0),
                w.ring.get("seq_gaps", 0),
                w.counters.get("ring_dropped", 0),
            )
            for w in self.workers.values()
        )
        bulk = sum(w.counters.get("bulk_failed", 0) for w in self.workers.values())
        cpu_user = sum(w.cpu.get("user_s", 0.0) for w in self.workers.values())
        cpu_sys = sum(w.cpu.get("sys_s", 0.0) for w in self.workers.values())
        wakeups = sum(int(w.cpu.get("wakeups", 0)) for w in self.workers.values())
        has_wakeups = any("wakeups" in w.cpu for w in self.workers.values())  # older workers: no
        rep: dict[str, Any] = {
            "schema": SCHEMA,
            "config": dict(config_info),
            "interrupted": any(w.interrupted for w in self.workers.values()),
            "duration_s": round(duration_s, 6),
            "requests": {k: int(tot.get(k, 0)) for k in COUNTER_KEYS},
            "status": dict(sorted(status.items())),
            "errors": dict(sorted(errors.items())),
            "errors_errno": errno_detail,
            "rps": round(completed / duration_s, 3) if duration_s > 0 else 0.0,
            "transfer": {
                "bytes_rx": int(bytes_rx),
                "bytes_tx": int(bytes_tx),
                "rx_per_s": round(bytes_rx / duration_s, 3) if duration_s > 0 else 0.0,
                "tx_per_s": round(bytes_tx / duration_s, 3) if duration_s > 0 else 0.0,
            },
            "latency_ms": latency_summary(main),
        }
        hist_out: dict[str, Any] = {
            "encoding": "HdrHistogram V2 compressed histoblob, base64 (hdrh HdrHistogram.decode)",
            "units": "ns",
            "layout": {"lowest": 1, "highest": 3600 * NS_PER_S, "significant_figures": 3},
            "latency": _text(main.encode()),
        }
        if open_loop:
            rep["latency_uncorrected_ms"] = latency_summary(self.hists["uncorrected"])
            rep["send_lag_ms"] = latency_summary(self.hists["send_lag"])
            hist_out["uncorrected"] = _text(self.hists["uncorrected"].encode())
            hist_out["send_lag"] = _text(self.hists["send_lag"].encode())
        rep["histogram"] = hist_out
        rep["series"] = self.series()
        clamped = {
            name: sum(w.clamped.get(name, 0) for w in self.workers.values()) for name in HIST_VIEWS
        }
        rep["samples"] = {
            "aggregated": sum(w.samples for w in self.workers.values()),
            "dropped_by_ring": int(dropped),
            # open loop: failed backlog entries counted without a sample each (loop_fail_backlog)
            "failures_without_sample": int(bulk),
            "clamped_to_1h": clamped,
            "snapshots_rejected": self.rejected,
        }
        rep["workers"] = [
            self._worker_row(w) for w in sorted(self.workers.values(), key=lambda w: w.worker)
        ]
        rep["workers_lost"] = self.lost_workers
        rep["generator"] = {
            "cpu_user_s": round(cpu_user, 6),
            "cpu_sys_s": round(cpu_sys, 6),
            "cpu_us_per_request": round((cpu_user + cpu_sys) * 1e6 / completed, 3)
            if completed
            else None,
            # voluntary context switches (sleeps, so wake-ups) of the workers per completed request
            "wakeups_per_request": round(wakeups / completed, 4)
            if completed and has_wakeups
            else None,
            "warnings": self._warnings(rep, open_loop, dropped, clamped),
        }
        return rep

    def _worker_row(self, w: _Worker) -> dict[str, Any]:
        el = w.elapsed_ns / NS_PER_S
        user, sys_ = w.cpu.get("user_s", 0.0), w.cpu.get("sys_s", 0.0)
        # CPU shares over the interval the CPU figures cover (set-up and final drain included; a
        # worker that sends no wall_s: the run's own time). Not over a shorter one than
        # CPU_SHARE_MIN_S: the kernel brings a running thread's CPU time up to date at its
        # scheduler tick (4 ms here), so a few-ms run measured 240 % of a CPU on a 2-CPU machine.
        cpu_el = w.cpu.get("wall_s", 0.0) or el
        if cpu_el < CPU_SHARE_MIN_S:
            cpu_el = 0.0  # shares: None
        spin = min(user + sys_, w.counters.get("spin_ns", 0) / NS_PER_S)
        wait = w.counters.get("runq_wait_ns", 0) / NS_PER_S
        nap = w.counters.get("nap_on_ns", 0) / NS_PER_S
        return {
            "worker": w.worker,
            **{k: int(w.counters.get(k, 0)) for k in COUNTER_KEYS},
            "bytes_rx": int(w.counters.get("bytes_rx", 0)),
            "elapsed_s": round(el, 6),
            "rps": round(w.counters.get("completed", 0) / el, 3) if el > 0 else 0.0,
            "cpu_user_s": round(user, 6),
            "cpu_sys_s": round(sys_, 6),
            "cpu_share": round((user + sys_) / cpu_el, 4) if cpu_el > 0 else None,
            "wakeups": int(w.cpu.get("wakeups", 0)),
            # Open loop: the part of that CPU spent polling for sends that were not due yet (the
            # pacing spin, chosen, not forced by load); busy = the rest, what the self-check uses.
            "cpu_spin_s": round(spin, 6),
            "cpu_busy_share": (
                round(max(0.0, user + sys_ - spin) / cpu_el, 4) if cpu_el > 0 else None
            ),
            # Time the engine thread was runnable but another task had its CPU (schedstat).
            "cpu_wait_s": round(wait, 6),
            "cpu_wait_share": round(wait / el, 4) if el > 0 else 0.0,
            # Closed loop: time naps were on (a poll that found nothing then sleeps on a timer
            # instead of blocking on the sockets; nap.pxi: only while probes find naps cost the
            # server's throughput nothing).
            "nap_s": round(nap, 6),
            "nap_share": round(min(nap / el, 1.0), 4) if el > 0 else 0.0,
            "samples": w.samples,
            "snapshots": w.snapshots,
            "snapshots_rejected": w.rejected,
            "final": w.final,
            "lost": w.lost,
        }

    def _warnings(
        self, rep: dict[str, Any], open_loop: bool, dropped: int, clamped: dict[str, int]
    ) -> list[str]:
        """The generator's self-check (issue 5 item 4) and other things a reader must not miss."""
        out = []
        busiest = max((row["cpu_busy_share"] or 0.0 for row in rep["workers"]), default=0.0)
        if open_loop:
            lag99 = rep["send_lag_ms"]["p99"]
            if lag99 > SEND_LAG_WARN_MS:
                msg = f"send lag p99 is {lag99:.3f} ms (> {SEND_LAG_WARN_MS:g} ms): requests left late"
                waited = max((row["cpu_wait_share"] for row in rep["workers"]), default=0.0)
                if busiest >= CPU_SATURATED / 2 or waited >= CPU_WAIT_WARN:
                    msg += ", so the generator, not the server, may be the bottleneck"
                else:
                    # The generator had CPU to spare: requests waited for a free connection because
                    # every connection was waiting on the server (the corrected view counts that).
                    msg += (
                        " while the generator had CPU to spare: every connection was busy waiting on "
                        "the server (more -c or --max-connections keeps the schedule)"
                    )
                out.append(msg)
        for row in rep["workers"]:
            if row["elapsed_s"] >= 0.5 and (row["cpu_busy_share"] or 0.0) >= CPU_SATURATED:
                spun = (
                    f" besides {row['cpu_spin_s']:.2f}s of pacing spin" if row["cpu_spin_s"] else ""
                )
                out.append(
                    f"worker {row['worker']} used {row['cpu_busy_share'] * 100:.0f}% of a CPU{spun}: "
                    "the generator, not the server, may be the bottleneck (add workers or CPUs)"
                )
            # An open loop that kept its schedule lost nothing by waiting (workers that spin for
            # their sends make each other wait on one CPU); a closed loop's rate is what it got.
            starved = not open_loop or rep["send_lag_ms"]["p99"] > SEND_LAG_WARN_MS
            if row["elapsed_s"] >= 0.5 and row["cpu_wait_share"] >= CPU_WAIT_WARN and starved:
                out.append(
                    f"worker {row['worker']} waited {row['cpu_wait_share'] * 100:.0f}% of the run for "
                    "a CPU another task held: the generator, not the server, may be the bottleneck "
                    "(fewer workers than CPUs, or keep the target off the workers' CPUs)"
                )
        if dropped:
            out.append(
                f"{dropped} samples were dropped by the ring: latency figures miss them "
                "(counts and status totals are still exact)"
            )
        bulk = rep["samples"]["failures_without_sample"]
        if bulk:
            out.append(
                f"{bulk} scheduled requests that no connection could take were counted in bulk "
                "(not_sent or timeout), without a sample each: the per-second series misses "
                "them (totals are exact); the rate is far beyond what the connections served"
            )
        for name, n in clamped.items():
            if n:
                out.append(f"{n} {name} values exceeded 1 h and were clamped to 1 h")
        if self.rejected:
            out.append(
                f"{self.rejected} malformed snapshot(s) were refused and are not in the result "
                f"(first: {self.rejected_reasons[0]})"
            )
        for wid in self.lost_workers:
            out.append(f"worker {wid} was lost: its data up to its last snapshot is included")
        return out


def _text(blob: bytes | str) -> str:
    return blob.decode("ascii") if isinstance(blob, bytes) else blob


def errno_name(e: int) -> str:
    import errno as _errno

    return _errno.errorcode.get(e, str(e))


def config_info(cfg: RunConfig, workers: int | None = None) -> dict[str, Any]:
    """What the report's `config` says about a run (times in seconds, as a user typed them)."""
    return {
        "url": cfg.target.url,
        "method": cfg.method,
        "connections": cfg.connections,
        "max_connections": cfg.max_connections,
        "workers": cfg.workers if workers is None else workers,
        "duration_s": cfg.duration_ns / NS_PER_S if cfg.duration_ns else None,
        "requests": cfg.requests or None,
        "rate": cfg.rate or None,
        "stages": [
            {
                "duration_s": s.duration_ns / NS_PER_S,
                "rate": s.rate,
                "text": f"{format_duration(s.duration_ns)}:{s.rate:g}",
            }
            for s in cfg.stages
        ],
        "arrival": cfg.arrival,
        "open_loop": cfg.open_loop,
        "naps": cfg.naps and not cfg.open_loop,
        "timeouts": {
            "request_s": cfg.timeout_ns / NS_PER_S,
            "connect_s": cfg.connect_timeout_ns / NS_PER_S,
        },
        "target": {"addr": cfg.target.addr, "port": cfg.target.port},
    }


def histogram_from_report(rep: dict[str, Any], view: str = "latency") -> HdrHistogram:
    """Decode one of the report's encoded histograms (ns)."""
    return HdrHistogram.decode(rep["histogram"][view].encode("ascii"))
