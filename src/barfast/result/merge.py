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
workers with the same second are added. Only the per-second p50/p90/p99 of the latency view are
reported, so a second keeps just a counts array (no hdrh object) while it can still receive
snapshots (SERIES_OPEN_S behind the newest second seen); then it is reduced to its percentiles
(`percentiles()`, hdrh's arithmetic) and freed, so memory stays flat in long runs. A snapshot
arriving later than that still adds its counts to the second (and to the merged histogram), but not
to that second's percentiles.

Per endpoint (a mix of more than one endpoint): each snapshot's `endpoint_interval` (snapshot.py)
holds interval deltas of the endpoints that got samples: their latency, connect and ttfb histograms
are added exactly like the totals' (hdrh objects made at an endpoint's first histogram), their status
and error-kind counts summed. Their per-second series keeps only requests, errors and p99: while a
second is open, an endpoint's latency counts are kept as the snapshots' sparse (index, count) pairs,
not as a dense array (a few KiB per endpoint-second instead of 264 KiB), and reduced to the p99
when the second closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.engine._core import hist_add_sparse, hist_sparse_fits  # type: ignore[attr-defined]
from barfast.engine.aggregate import HIST_VIEWS, new_histogram
from barfast.engine.histoblob import HistoblobDecoder, HistoblobError
from barfast.result.hist import add_sparse, ms, percentiles
from barfast.result.snapshot import BadSnapshot, EndpointPart, Parsed, parse
from barfast.status import ProtocolError

SERIES_OPEN_S = 5
MAX_REJECT_REASONS = 5


@dataclass(slots=True)
class EndpointSecond:
    """One endpoint in one second: ~150 bytes once closed (the series grows by that per
    endpoint-second, like the totals' per second)."""

    requests: int = 0
    errors: int = 0
    idx: list[np.ndarray] | None = None  # latency counts as sparse parts while open
    val: list[np.ndarray] | None = None
    total: int = 0  # samples in the parts
    p99_ms: float | None = None  # set when closed (None: no latency counts)


@dataclass
class Second:
    requests: int = 0
    errors: int = 0
    samples: int = 0
    counts: np.ndarray | None = None  # latency counts of this second (uint64, the merged layout)
    total: int = 0  # samples in `counts`
    pcts: dict[str, float] | None = None  # set when closed
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


class Merger:
    """Adds snapshots (any worker, any order) into one exact result; `report()` renders the dict.

    A malformed snapshot (hostile or broken peer) is refused whole by add() with a ProtocolError and
    counted (`rejected`); nothing of it is merged."""

    def __init__(self) -> None:
        self.hists = {name: new_histogram() for name in HIST_VIEWS}
        # uint64 views of the hdrh counts buffers: sparse adds go straight into them.
        self._counts = {n: np.frombuffer(h.counts, dtype=np.uint64) for n, h in self.hists.items()}
        self._decoder = HistoblobDecoder(self.hists["latency"])
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
            if name == "latency" and point.pcts is None and sc.total:
                # Only the per-second p50/p90/p99 are needed: a plain counts array, no hdrh object.
                if point.counts is None:
                    point.counts = np.zeros(len(self._counts[name]), dtype=np.uint64)
                hist_add_sparse(point.counts, sc.idx, sc.val, sc.n)  # <= merged: cannot overflow
                point.total += sc.total
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
            if p.endpoints is not None:
                w.endpoints = p.endpoints
        if p.sec > self._newest_second:
            self._newest_second = p.sec
            self._close_old_seconds()
        elif point.pcts is None and p.sec < self._newest_second - SERIES_OPEN_S:
            # The first snapshot of a second that is already past the window: reduce it now, so
            # that snapshots for ever-older seconds cannot each keep a counts array alive.
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
        if lat is not None and lat.total and point.pcts is None:
            if es.idx is None or es.val is None:
                es.idx, es.val = [], []
            es.idx.append(lat.idx)  # the decoder's own copies (histoblob.py)
            es.val.append(lat.val)
            es.total += lat.total

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
        point.pcts = self._second_pcts(point)
        point.counts = None
        for es in point.endpoints.values():
            es.p99_ms = self._endpoint_p99(es)
            es.idx = es.val = None

    def _second_pcts(self, point: Second) -> dict[str, float]:
        if point.counts is None or not point.total:
            return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0}
        v = percentiles(self.hists["latency"], point.counts, point.total, (50.0, 90.0, 99.0))
        return {"p50_ms": ms(v[50.0]), "p90_ms": ms(v[90.0]), "p99_ms": ms(v[99.0])}

    def _endpoint_p99(self, es: EndpointSecond) -> float | None:
        if es.p99_ms is not None or not es.total or es.idx is None or es.val is None:
            return es.p99_ms
        idx = np.concatenate(es.idx)
        order = np.argsort(idx, kind="stable")
        v = percentiles(
            self.hists["latency"], np.concatenate(es.val)[order], es.total, (99.0,), idx[order]
        )
        return ms(v[99.0])

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

    def endpoint_series(self) -> dict[int, list[dict[str, Any]]]:
        """Per endpoint index: [{second, requests, errors, p99_ms}] for the seconds in which it got
        samples (p99_ms None without latency counts: no completed response, or beyond the
        per-endpoint histogram bound)."""
        out: dict[int, list[dict[str, Any]]] = {}
        for sec in sorted(self.seconds):
            for i, es in sorted(self.seconds[sec].endpoints.items()):
                out.setdefault(i, []).append(
                    {
                        "second": sec,
                        "requests": es.requests,
                        "errors": es.errors,
                        "p99_ms": self._endpoint_p99(es),
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
