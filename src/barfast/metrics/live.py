"""`barfast run --metrics-addr HOST:PORT`: the run's merged figures as live Prometheus metrics.

Where the data comes from: the coordinator's Merger, the same merged state every report is built
from (exact counters summed over workers, merged HdrHistograms). Once a second the coordinator
thread calls `publish()`, which reduces that state to a frozen `Figures` (counts, bucket counts,
quantiles: a few cumulative sums over 33,792 counts per histogram, well under a millisecond) and
swaps it in with one assignment; prometheus_client's HTTP thread renders only the latest Figures
at each scrape. Nothing reaches the workers or their engines: the hot path is untouched. After the
run the final merged state is published once more with `barfast_run_done 1`, so the last scrape
equals the report (see `linger_s`: the page stays up that long after the run).

Metrics (seconds as the base unit; `endpoint` is the scenario's request name, "" for a URL run):
  barfast_requests_total{endpoint,status}     responses by HTTP status (counter)
  barfast_errors_total{endpoint,kind}         failed requests by error kind (counter)
  barfast_requests_started_total              requests sent (counter)
  barfast_requests_in_flight                  sent and not yet answered (gauge)
  barfast_request_latency_seconds{endpoint}   latency as a Prometheus histogram with the fixed
                                              LATENCY_BUCKETS_S (corrected in open loop)
  barfast_request_latency_quantiles_seconds{endpoint,quantile}
                                              the same latency as summary quantiles of the merged
                                              HdrHistogram (QUANTILES)
  barfast_send_lag_seconds{quantile}          open loop: send lag quantiles (summary)
  barfast_iterations_total{flow,result}       flows: iterations completed / failed (counter)
  barfast_iterations_started_total{flow}      flows: iterations begun (counter)
  barfast_iteration_duration_seconds{flow}    flows: iteration duration (histogram, as latency)
  barfast_workers{state}                      workers by state (running, done, lost, failed)
  barfast_run_elapsed_seconds, barfast_run_done
A histogram's `_sum` is the HdrHistogram's (each value at its bucket's middle, 3 significant
digits), not an exact sum; bucket counts count the values whose HdrHistogram bucket lies at or
below `le` (the same 0.1 % resolution as every other latency figure).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from barfast.config import NS_PER_S
from barfast.engine.histoblob import index_values
from barfast.metrics.exporter import Exporter
from barfast.result.hist import percentiles

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
QUANTILES = (0.5, 0.9, 0.99, 0.999)
WORKER_STATES = ("running", "done", "lost", "failed")


@dataclass(frozen=True)
class Hist:
    """One latency histogram reduced for the page: cumulative counts at LATENCY_BUCKETS_S (then
    +Inf), the HdrHistogram sum, and the quantiles (seconds)."""

    buckets: tuple[int, ...]
    sum_s: float
    quantiles: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Endpoint:
    status: dict[str, int]
    errors: dict[str, int]
    latency: Hist | None


@dataclass(frozen=True)
class Flow:
    started: int
    completed: int
    failed: int
    duration: Hist | None


@dataclass(frozen=True)
class Figures:
    elapsed_s: float = 0.0
    done: bool = False
    started: int = 0
    in_flight: int = 0
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    send_lag: Hist | None = None
    workers: dict[str, int] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)


class Reducer:
    """Merged histograms -> Hist (one layout: bucket edges computed once)."""

    def __init__(self, template: Any) -> None:
        self.template = template
        low, high = index_values(template)
        # hdrh's median equivalent value of each bucket (what its mean uses)
        self._mid = (low + ((high - low + np.uint64(1)) >> np.uint64(1))).astype(np.float64)
        # the last HdrHistogram index whose whole bucket lies at or below each edge
        edges = np.array([round(b * NS_PER_S) for b in LATENCY_BUCKETS_S], dtype=np.uint64)
        self._edge_idx = np.searchsorted(high, edges, side="right") - 1

    def reduce(self, h: Any) -> Hist:
        counts = np.frombuffer(h.counts, dtype=np.uint64)
        total = int(h.get_total_count())
        cum = np.cumsum(counts, dtype=np.uint64)
        buckets = tuple(int(cum[i]) if i >= 0 else 0 for i in self._edge_idx) + (total,)
        idx = np.flatnonzero(counts)
        sum_ns = float(np.dot(self._mid[idx], counts[idx].astype(np.float64)))
        pv = percentiles(h, counts, total, [q * 100 for q in QUANTILES])
        qs = tuple((q, pv[q * 100] / NS_PER_S) for q in QUANTILES if q * 100 in pv)
        return Hist(buckets, sum_ns / NS_PER_S, qs)


def figures(coord: Any, reducer: Reducer, *, done: bool) -> Figures:
    """The coordinator's merged state now (coordinator thread only: it reads the Merger)."""
    m = coord.merger
    states = {s: 0 for s in WORKER_STATES}
    for p in coord.peers.values():
        if p.state in states:
            states[p.state] += 1
    if m is None:
        return Figures(workers=states, done=done)
    open_loop = bool(coord.cfg.open_loop)
    tot = m.totals()
    names = [e.name for e in coord.cfg.endpoints] or [""]
    eps: dict[str, Endpoint] = {}
    if len(names) == 1:
        status: dict[str, int] = {}
        errors: dict[str, int] = {}
        for w in m.workers.values():
            for code, n in w.status.items():
                status[str(code)] = status.get(str(code), 0) + n
            for kind, n in w.errors.items():
                errors[kind] = errors.get(kind, 0) + n
        main = m.hists["latency" if open_loop else "uncorrected"]
        eps[names[0]] = Endpoint(status, errors, reducer.reduce(main))
    else:
        for i, name in enumerate(names):
            sums = m.endpoints.get(i)
            if sums is None:
                eps[name] = Endpoint({}, {}, None)
                continue
            lat = sums.hists.get("latency")
            eps[name] = Endpoint(
                {str(c): n for c, n in sums.status.items()},
                dict(sums.errors),
                reducer.reduce(lat) if lat is not None else None,
            )
    elapsed = max((w.elapsed_ns for w in m.workers.values()), default=0) / NS_PER_S
    return Figures(
        flows=_flows(coord, m, reducer),
        elapsed_s=elapsed,
        done=done,
        started=int(tot.get("started", 0)),
        in_flight=int(tot.get("in_flight", 0)),
        endpoints=eps,
        send_lag=reducer.reduce(m.hists["send_lag"]) if open_loop else None,
        workers=states,
    )


def _flows(coord: Any, m: Any, reducer: Reducer) -> dict[str, Flow]:
    """Per flow: the engine's iteration counters and the iteration-duration histogram, both in
    the flow's slot after the endpoints (result/summary.py reads the same)."""
    specs = getattr(coord.cfg, "flows", ()) or ()
    if not specs:
        return {}
    totals = m.endpoint_totals()
    base = len(coord.cfg.endpoints)
    out: dict[str, Flow] = {}
    for i, spec in enumerate(specs):
        slot = base + i
        t = totals[slot] if slot < len(totals) else {}
        sums = m.endpoints.get(slot)
        h = sums.hists.get("latency") if sums is not None else None
        out[spec.name] = Flow(
            int(t.get("iterations_started", 0)),
            int(t.get("iterations_completed", 0)),
            int(t.get("iterations_failed", 0)),
            reducer.reduce(h) if h is not None else None,
        )
    return out


class RunCollector:
    """prometheus_client collector over the latest published Figures."""

    def __init__(self) -> None:
        self.latest = Figures()

    def collect(self) -> Iterator[Metric]:
        f = self.latest  # one read: the publisher swaps whole objects
        req = CounterMetricFamily(
            "barfast_requests", "Responses by HTTP status.", labels=["endpoint", "status"]
        )
        err = CounterMetricFamily(
            "barfast_errors", "Failed requests by error kind.", labels=["endpoint", "kind"]
        )
        hist = HistogramMetricFamily(
            "barfast_request_latency_seconds",
            "Request latency (corrected for coordinated omission in open loop).",
            labels=["endpoint"],
        )
        quant = Metric(
            "barfast_request_latency_quantiles_seconds",
            "Request latency quantiles of the merged HdrHistogram.",
            "summary",
        )
        for name, e in f.endpoints.items():
            for code, n in sorted(e.status.items()):
                req.add_metric([name, code], n)
            for kind, n in sorted(e.errors.items()):
                err.add_metric([name, kind], n)
            if e.latency is not None:
                h = e.latency
                edges = [_le(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
                hist.add_metric([name], list(zip(edges, h.buckets, strict=True)), h.sum_s)
                _add_summary(quant, {"endpoint": name}, h)
        yield req
        yield err
        yield CounterMetricFamily("barfast_requests_started", "Requests sent.", value=f.started)
        yield GaugeMetricFamily(
            "barfast_requests_in_flight", "Requests sent and not yet answered.", value=f.in_flight
        )
        yield hist
        yield quant
        if f.send_lag is not None:
            lag = Metric(
                "barfast_send_lag_seconds",
                "Open loop: how late requests left after their intended send time.",
                "summary",
            )
            _add_summary(lag, {}, f.send_lag)
            yield lag
        if f.flows:
            yield from _flow_metrics(f.flows)
        wk = GaugeMetricFamily("barfast_workers", "Workers by state.", labels=["state"])
        for state, n in f.workers.items():
            wk.add_metric([state], n)
        yield wk
        yield GaugeMetricFamily(
            "barfast_run_elapsed_seconds", "Time since the load started.", value=f.elapsed_s
        )
        yield GaugeMetricFamily(
            "barfast_run_done", "1 once the run is over and these are its final figures.",
            value=1.0 if f.done else 0.0,
        )  # fmt: skip


def _flow_metrics(flows: dict[str, Flow]) -> Iterator[Metric]:
    it = CounterMetricFamily(
        "barfast_iterations", "Flow iterations ended, by result.", labels=["flow", "result"]
    )
    st = CounterMetricFamily(
        "barfast_iterations_started", "Flow iterations begun.", labels=["flow"]
    )
    dur = HistogramMetricFamily(
        "barfast_iteration_duration_seconds",
        "Flow iteration duration, from its start to the end of its last step.",
        labels=["flow"],
    )
    edges = [_le(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    for name, fl in flows.items():
        it.add_metric([name, "completed"], fl.completed)
        it.add_metric([name, "failed"], fl.failed)
        st.add_metric([name], fl.started)
        if fl.duration is not None:
            h = fl.duration
            dur.add_metric([name], list(zip(edges, h.buckets, strict=True)), h.sum_s)
    yield it
    yield st
    yield dur


def _le(b: float) -> str:
    return repr(float(b))


def _add_summary(m: Metric, labels: dict[str, str], h: Hist) -> None:
    for q, v in h.quantiles:
        m.add_sample(m.name, {**labels, "quantile": repr(q)}, v)
    m.add_sample(m.name + "_count", labels, float(h.buckets[-1]))
    m.add_sample(m.name + "_sum", labels, h.sum_s)


class LiveMetrics:
    """The coordinator's observer: publish() each second and at the end; close() after linger_s."""

    def __init__(self, host: str, port: int, linger_s: float = 0.0) -> None:
        self.collector = RunCollector()
        self.exporter = Exporter(self.collector, host, port, "--metrics-addr")
        self.linger_s = linger_s
        self._reducer: Reducer | None = None

    @property
    def url(self) -> str:
        return self.exporter.url

    def publish(self, coord: Any, done: bool = False) -> None:
        if self._reducer is None:
            from barfast.engine.aggregate import new_histogram

            self._reducer = Reducer(new_histogram())
        self.collector.latest = figures(coord, self._reducer, done=done)

    # the coordinator's observer calls
    def started(self, coord: Any) -> None:
        self.publish(coord)

    def tick(self, coord: Any) -> None:
        self.publish(coord)

    def finished(self, coord: Any) -> None:
        self.publish(coord, done=True)

    def close(self) -> None:
        if self.linger_s > 0 and not math.isinf(self.linger_s):
            time.sleep(self.linger_s)
        self.exporter.close()
