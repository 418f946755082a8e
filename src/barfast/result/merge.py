"""Merger: snapshots from any number of workers -> one exact result (summary.py renders the report dict).

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
workers with the same second are added. A second keeps, for the latency, uncorrected and send-lag
views (INTERVAL_VIEWS), the snapshots' sparse (index, count) parts while it can still receive
snapshots (SERIES_OPEN_S behind the newest second seen); then each view is reduced to one encoded
interval histogram (intervals.py: a few hundred bytes) and the latency view to its p50/p90/p99/max
(`percentiles()`, hdrh's arithmetic), so memory stays flat in long runs. A snapshot arriving later
than that is added to the decoded blob and the second is reduced again: the intervals always add up
to the merged histograms exactly, and the figures are those of the blobs.

Per endpoint (a mix of more than one endpoint): each snapshot's `endpoint_interval` (snapshot.py)
holds interval deltas of the endpoints that got samples: their latency, connect and ttfb histograms
are added exactly like the totals' (hdrh objects made at an endpoint's first histogram), their status
and error-kind counts summed. Their per-second series keeps requests, errors, the latency interval
histogram and its p50/p90/p99/max: while a second is open, an endpoint's latency counts are kept as
the snapshots' sparse (index, count) pairs, not as a dense array (a few KiB per endpoint-second
instead of 264 KiB), and encoded when the second closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.engine._core import hist_sparse_fits  # type: ignore[attr-defined]
from barfast.engine.aggregate import HIST_VIEWS, new_histogram
from barfast.engine.histoblob import HistoblobDecoder, HistoblobError
from barfast.result.hist import add_sparse
from barfast.result.intervals import IntervalCodec, Parts
from barfast.result.snapshot import BadSnapshot, EndpointPart, Parsed, parse
from barfast.status import ProtocolError

SERIES_OPEN_S = 5
# Views whose per-second histograms the result keeps (the report's `intervals`): latency and, for
# open loop, its uncorrected view and the send lag.
INTERVAL_VIEWS = ("latency", "uncorrected", "send_lag")
# An endpoint's per-second views beyond its latency (open loop only) and their series keys.
OPEN_LOOP_VIEWS = {"uncorrected": "p99_uncorrected_ms", "send_lag": "send_lag_p99_ms"}
MAX_REJECT_REASONS = 5


@dataclass(slots=True)
class EndpointSecond:
    """One endpoint in one second: its latency counts as sparse parts while open, a blob of a few
    hundred bytes once closed (intervals.py)."""

    requests: int = 0
    errors: int = 0
    latency: Parts = field(default_factory=Parts)
    figures: dict[str, float | None] | None = None  # set when closed: p50/p90/p99/max_ms
    # open loop: the uncorrected latency and the send lag, so each endpoint's coordinated omission
    # is visible per second (OPEN_LOOP_VIEWS); their p99s once closed
    open_views: dict[str, Parts] = field(default_factory=dict)
    open_p99: dict[str, float | None] | None = None


@dataclass
class Second:
    requests: int = 0
    errors: int = 0
    samples: int = 0
    views: dict[str, Parts] = field(default_factory=dict)  # INTERVAL_VIEWS with counts
    pcts: dict[str, float] | None = None  # set when closed (latency view)
    endpoints: dict[int, EndpointSecond] = field(default_factory=dict)


@dataclass
class EndpointSums:
    """One endpoint over every worker and interval (merged deltas)."""

    hists: dict[str, HdrHistogram] = field(default_factory=dict)  # made at the first counts
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # uint64 views of their counts
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: int = 0


@dataclass
class WorkerState:
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
    endpoints: list[dict[str, int]] | None = None
    tls_failure: str = ""
    tls_reasons: dict[str, int] = field(default_factory=dict)


class Merger:
    """Adds snapshots (any worker, any order) into one exact result; `report()` renders the dict.

    A malformed snapshot (hostile or broken peer) is refused whole by add() with a ProtocolError and
    counted (`rejected`); nothing of it is merged."""

    def __init__(self) -> None:
        self.hists = {name: new_histogram() for name in HIST_VIEWS}
        # uint64 views of the hdrh counts buffers: sparse adds go straight into them.
        self._counts = {n: np.frombuffer(h.counts, dtype=np.uint64) for n, h in self.hists.items()}
        self._decoder = HistoblobDecoder(self.hists["latency"])
        self._codec = IntervalCodec(self.hists["latency"])
        self.workers: dict[int, WorkerState] = {}
        self.seconds: dict[int, Second] = {}
        self.endpoints: dict[int, EndpointSums] = {}  # per endpoint index, from endpoint_interval
        self._newest_second = -1
        self.rejected = 0
        self.rejected_reasons: list[str] = []  # the first MAX_REJECT_REASONS, for the report

    # -- input ----------------------------------------------------------------------------------

    def add(self, snap: dict[str, Any]) -> None:
        """Merge one snapshot, or refuse it whole (ProtocolError, counted) when any field is bad."""
        try:
            p = parse(snap, self.hists, self._decoder)
            for name, sc in p.hists.items():  # check every add before doing any
                if not hist_sparse_fits(self._counts[name], sc.idx, sc.val, sc.n):
                    raise BadSnapshot(f"hist.{name} would overflow the merged counts (> 2^63 - 1)")
            for i, part in (p.endpoint_parts or {}).items():
                have = self.endpoints.get(i)
                for name, sc in part.hists.items():
                    dst = have.counts.get(name) if have is not None else None
                    if dst is not None and not hist_sparse_fits(dst, sc.idx, sc.val, sc.n):
                        raise BadSnapshot(
                            f"endpoint_interval.{i}.hist.{name} would overflow the merged counts"
                        )
        except (BadSnapshot, HistoblobError) as exc:
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
                w = self.workers[wid] = WorkerState(wid)
            w.rejected += 1

    def _apply(self, p: Parsed) -> None:
        w = self.workers.get(p.wid)
        if w is None:
            w = self.workers[p.wid] = WorkerState(p.wid)
        w.snapshots += 1
        w.samples += p.samples
        for name, n in p.clamped.items():
            w.clamped[name] = w.clamped.get(name, 0) + n
        # Histograms are interval deltas: always add, whatever the arrival order.
        point = self.seconds.get(p.sec)
        if point is None:
            point = self.seconds[p.sec] = Second()
        point.requests += p.completed
        point.errors += p.errors_n
        point.samples += p.samples
        for name, sc in p.hists.items():
            add_sparse(self.hists[name], self._counts[name], sc)
            if name in INTERVAL_VIEWS and sc.total:
                parts = point.views.get(name)
                if parts is None:
                    parts = point.views[name] = Parts()
                parts.add(sc)  # the decoder's own copies (histoblob.py)
        for i, part in (p.endpoint_parts or {}).items():
            self._apply_endpoint(i, part, point)
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
            w.tls_failure = p.tls_failure or w.tls_failure
            if p.tls_reasons is not None:
                w.tls_reasons = p.tls_reasons  # cumulative, like the counters
            if p.endpoints is not None:
                w.endpoints = p.endpoints
        if p.sec > self._newest_second:
            self._newest_second = p.sec
            self._close_old_seconds()
        elif point.pcts is not None or p.sec < self._newest_second - SERIES_OPEN_S:
            # A snapshot for a second already closed, or already past the window: reduce it now
            # (again), so that its blob and figures include this snapshot and snapshots for
            # ever-older seconds cannot each keep their parts alive.
            self._close(point)

    def _apply_endpoint(self, i: int, part: EndpointPart, point: Second) -> None:
        sums = self.endpoints.get(i)
        if sums is None:
            sums = self.endpoints[i] = EndpointSums()
        sums.samples += part.samples
        for code, n in part.status.items():
            sums.status[code] = sums.status.get(code, 0) + n
        for kind, n in part.errors_by_kind.items():
            sums.errors[kind] = sums.errors.get(kind, 0) + n
        for name, sc in part.hists.items():
            if name not in sums.hists:
                h = sums.hists[name] = new_histogram()
                sums.counts[name] = np.frombuffer(h.counts, dtype=np.uint64)
            add_sparse(sums.hists[name], sums.counts[name], sc)
        es = point.endpoints.get(i)
        if es is None:
            es = point.endpoints[i] = EndpointSecond()
        es.requests += part.completed
        es.errors += part.errors
        lat = part.hists.get("latency")
        if lat is not None:
            es.latency.add(lat)
        for name in OPEN_LOOP_VIEWS:
            view = part.hists.get(name)
            if view is not None:
                es.open_views.setdefault(name, Parts()).add(view)

    def worker_lost(self, worker_id: int) -> None:
        """Mark a worker lost: its data up to its last snapshot stays in the result."""
        w = self.workers.get(worker_id)
        if w is None:
            w = self.workers[worker_id] = WorkerState(worker_id)
        w.lost = True

    def _close_old_seconds(self) -> None:
        for sec, point in self.seconds.items():
            if point.pcts is None and sec < self._newest_second - SERIES_OPEN_S:
                self._close(point)

    def _close(self, point: Second) -> None:
        """Reduce a second to its blobs and figures (again, after a late snapshot)."""
        for name, parts in point.views.items():
            if parts.blob is not None and not parts.idx:
                continue  # closed, and nothing arrived since
            figs = self._codec.reduce(parts)
            if name == "latency":
                point.pcts = _totals_figures(figs)
        if point.pcts is None:
            point.pcts = _totals_figures(self._codec.figures(*Parts().combined()))
        for es in point.endpoints.values():
            if es.figures is None or es.latency.idx:
                es.figures = self._codec.reduce(es.latency)
            if es.open_views and (
                es.open_p99 is None or any(p.idx for p in es.open_views.values())
            ):
                es.open_p99 = {
                    OPEN_LOOP_VIEWS[n]: self._codec.reduce(p)["p99_ms"]
                    for n, p in es.open_views.items()
                }

    def _second_pcts(self, point: Second) -> dict[str, float]:
        if point.pcts is not None:
            return point.pcts
        lat = point.views.get("latency")
        return _totals_figures(self._codec.figures(*(lat or Parts()).combined()))

    def _endpoint_figures(self, es: EndpointSecond) -> dict[str, float | None]:
        if es.figures is not None and not es.latency.idx:
            figs = es.figures
        else:
            figs = self._codec.figures(*es.latency.combined())
        if not es.open_views:
            return figs
        if es.open_p99 is not None and not any(p.idx for p in es.open_views.values()):
            return {**figs, **es.open_p99}
        return {
            **figs,
            **{
                OPEN_LOOP_VIEWS[n]: self._codec.figures(*p.combined())["p99_ms"]
                for n, p in es.open_views.items()
            },
        }

    def interval_blobs(self) -> dict[int, dict[str, str]]:
        """Per second: the blob of each INTERVAL_VIEWS view with counts (closing every second)."""
        out: dict[int, dict[str, str]] = {}
        for sec in sorted(self.seconds):
            point = self.seconds[sec]
            self._close(point)
            out[sec] = {n: p.blob for n, p in point.views.items() if p.blob is not None}
        return out

    def endpoint_interval_blobs(self) -> dict[int, dict[int, dict[str, str]]]:
        """Per endpoint index, per second: its latency blob (and in open loop its uncorrected and
        send-lag blobs) by view name (closing every second)."""
        out: dict[int, dict[int, dict[str, str]]] = {}
        for sec in sorted(self.seconds):
            point = self.seconds[sec]
            self._close(point)
            for i, es in sorted(point.endpoints.items()):
                if es.latency.blob is not None:
                    views = {"latency": es.latency.blob}
                    for name, p in es.open_views.items():
                        if p.blob is not None:
                            views[name] = p.blob
                    out.setdefault(i, {})[sec] = views
        return out

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
        pcts = self._second_pcts(point)
        return {"second": second, "requests": point.requests, "errors": point.errors, **pcts}

    def series(self) -> list[dict[str, Any]]:
        return [p for s in sorted(self.seconds) if (p := self.series_point(s)) is not None]

    def endpoint_series(self) -> dict[int, list[dict[str, Any]]]:
        """Per endpoint index: [{second, requests, errors, p50_ms, p90_ms, p99_ms, max_ms, and in
        open loop p99_uncorrected_ms, send_lag_p99_ms}] for the seconds in which it got samples
        (latency figures None without latency counts: no completed response, or beyond the
        per-endpoint histogram bound)."""
        out: dict[int, list[dict[str, Any]]] = {}
        for sec in sorted(self.seconds):
            for i, es in sorted(self.seconds[sec].endpoints.items()):
                out.setdefault(i, []).append(
                    {
                        "second": sec,
                        "requests": es.requests,
                        "errors": es.errors,
                        **self._endpoint_figures(es),
                    }
                )
        return out

    def endpoint_totals(self) -> list[dict[str, int]]:
        """Every worker's latest per-endpoint counters, summed per endpoint (table order)."""
        out: list[dict[str, int]] = []
        for w in self.workers.values():
            for i, e in enumerate(w.endpoints or ()):
                if i == len(out):
                    out.append({})
                for k, v in e.items():
                    out[i][k] = out[i].get(k, 0) + v
        return out

    @property
    def lost_workers(self) -> list[int]:
        return sorted(w.worker for w in self.workers.values() if w.lost)

    # -- the report -----------------------------------------------------------------------------

    def report(self, config_info: dict[str, Any]) -> dict[str, Any]:
        """The JSON report dict (schema barfast.report/1; summary.py builds it)."""
        from barfast.result.summary import build_report

        return build_report(self, config_info)


def _totals_figures(figs: dict[str, float | None]) -> dict[str, float]:
    """The totals' series shows 0.0, not null, for a second without latency counts."""
    return {k: v if v is not None else 0.0 for k, v in figs.items()}
