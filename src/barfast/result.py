"""Merger: snapshots from any number of workers -> one exact result -> the JSON report dict.

Exactness: every snapshot carries the HdrHistograms of the samples since that worker's previous
snapshot, encoded with hdrh's encode(); the merger decodes and adds them (hdrh add, same layout, so an
element-wise add of the counts). The merged histogram is therefore exactly the histogram of all
samples, whatever the split across workers and intervals. Counters are cumulative per worker: the
merger keeps each worker's latest (highest seq) and sums those.

Per-second series: snapshot k of a worker covers second k of its run (runner.py); points from all
workers with the same second are added. Each second's histogram is kept only while that second can
still receive snapshots (SERIES_OPEN_S behind the newest second seen); then it is reduced to its
percentiles and freed, so memory stays flat in long runs. A snapshot arriving later than that still
adds its counts to the second (and to the merged histogram), but not to that second's percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.aggregate import HIST_VIEWS, new_histogram
from barfast.config import NS_PER_MS, NS_PER_S, RunConfig, format_duration

SCHEMA = "barfast.report/1"
SERIES_OPEN_S = 5
SEND_LAG_WARN_MS = 1.0
CPU_SATURATED = 0.9
REPORT_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99)
FULL_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0)
COUNTER_KEYS = ("started", "completed", "errors", "in_flight", "not_sent")


def pct_key(p: float) -> str:
    return f"p{p:g}"


def add_hist(dst: HdrHistogram, src: HdrHistogram) -> None:
    """dst += src, exactly. Empty sources are skipped: hdrh's add() would set dst's min to 0."""
    if src.get_total_count():
        dst.add(src)


def decode_hist(blob: bytes | str) -> HdrHistogram:
    return HdrHistogram.decode(blob)


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
    h: HdrHistogram, percentiles: tuple[float, ...] = REPORT_PERCENTILES
) -> dict[str, float | int]:
    """{min, mean, stdev, p50.., max} in milliseconds (values are hdrh's: 3 significant digits)."""
    n = h.get_total_count()
    out: dict[str, float | int] = {"count": int(n)}
    if not n:
        out.update({"min": 0.0, "mean": 0.0, "stdev": 0.0, "max": 0.0})
        out.update({pct_key(p): 0.0 for p in percentiles})
        return out
    out["min"] = ms(h.get_min_value())
    mean, stdev = mean_stdev(h)
    out["mean"] = ms(mean)
    out["stdev"] = ms(stdev)
    vals = h.get_percentile_to_value_dict(list(percentiles))
    for p in percentiles:
        out[pct_key(p)] = ms(vals[p])
    out["max"] = ms(h.get_max_value())
    return out


@dataclass
class _Second:
    requests: int = 0
    errors: int = 0
    samples: int = 0
    hist: HdrHistogram | None = None
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
    clamped: dict[str, int] = field(default_factory=dict)


class Merger:
    """Adds snapshots (any worker, any order) into one exact result; `report()` renders the dict."""

    def __init__(self) -> None:
        self.hists = {name: new_histogram() for name in HIST_VIEWS}
        self.workers: dict[int, _Worker] = {}
        self.seconds: dict[int, _Second] = {}
        self._newest_second = -1

    # -- input ----------------------------------------------------------------------------------

    def add(self, snap: dict[str, Any]) -> None:
        wid = int(snap["worker"])
        w = self.workers.get(wid)
        if w is None:
            w = self.workers[wid] = _Worker(wid)
        w.snapshots += 1
        w.samples += int(snap.get("samples", 0))
        for name, n in (snap.get("clamped") or {}).items():
            w.clamped[name] = w.clamped.get(name, 0) + int(n)
        # Histograms are interval deltas: always add, whatever the arrival order.
        sec = int(snap.get("interval", 0))
        point = self.seconds.get(sec)
        if point is None:
            point = self.seconds[sec] = _Second()
        point.requests += int(snap.get("interval_completed", 0))
        point.errors += int(snap.get("interval_errors", 0))
        point.samples += int(snap.get("samples", 0))
        for name, blob in (snap.get("hist") or {}).items():
            if name not in self.hists or not blob:
                continue
            h = decode_hist(blob)
            add_hist(self.hists[name], h)
            if name == "latency" and point.pcts is None:
                if point.hist is None:
                    point.hist = new_histogram()
                add_hist(point.hist, h)
        # Counters are cumulative: keep the newest of each worker.
        seq = int(snap.get("seq", 0))
        if seq >= w.seq:
            w.seq = seq
            w.final = w.final or bool(snap.get("final"))
            w.interrupted = w.interrupted or bool(snap.get("interrupted"))
            w.elapsed_ns = int(snap.get("elapsed_ns", 0))
            w.counters = {k: int(v) for k, v in (snap.get("counters") or {}).items()}
            w.status = {int(k): int(v) for k, v in (snap.get("status") or {}).items()}
            w.errors = {str(k): int(v) for k, v in (snap.get("errors") or {}).items()}
            w.cpu = {k: float(v) for k, v in (snap.get("cpu") or {}).items()}
            w.ring = {k: int(v) for k, v in (snap.get("ring") or {}).items()}
            w.sys_errno = {
                str(k): {int(e): int(n) for e, n in v.items()}
                for k, v in (snap.get("sys_errno") or {}).items()
            }
        if sec > self._newest_second:
            self._newest_second = sec
            self._close_old_seconds()

    def worker_lost(self, worker_id: int) -> None:
        """Mark a worker lost: its data up to its last snapshot stays in the result."""
        w = self.workers.get(worker_id)
        if w is None:
            w = self.workers[worker_id] = _Worker(worker_id)
        w.lost = True

    def _close_old_seconds(self) -> None:
        for sec, point in self.seconds.items():
            if point.pcts is None and sec < self._newest_second - SERIES_OPEN_S:
                self._close(point)

    @staticmethod
    def _close(point: _Second) -> None:
        h = point.hist
        if h is None or not h.get_total_count():
            point.pcts = {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0}
        else:
            v = h.get_percentile_to_value_dict([50.0, 90.0, 99.0])
            point.pcts = {"p50_ms": ms(v[50.0]), "p90_ms": ms(v[90.0]), "p99_ms": ms(v[99.0])}
        point.hist = None

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
        if point.pcts is not None:
            pcts = point.pcts
        elif point.hist is not None and point.hist.get_total_count():
            v = point.hist.get_percentile_to_value_dict([50.0, 90.0, 99.0])
            pcts = {"p50_ms": ms(v[50.0]), "p90_ms": ms(v[90.0]), "p99_ms": ms(v[99.0])}
        else:
            pcts = {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0}
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
        cpu_user = sum(w.cpu.get("user_s", 0.0) for w in self.workers.values())
        cpu_sys = sum(w.cpu.get("sys_s", 0.0) for w in self.workers.values())
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
            "clamped_to_1h": clamped,
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
            "warnings": self._warnings(rep, open_loop, dropped, clamped),
        }
        return rep

    def _worker_row(self, w: _Worker) -> dict[str, Any]:
        el = w.elapsed_ns / NS_PER_S
        user, sys_ = w.cpu.get("user_s", 0.0), w.cpu.get("sys_s", 0.0)
        return {
            "worker": w.worker,
            **{k: int(w.counters.get(k, 0)) for k in COUNTER_KEYS},
            "bytes_rx": int(w.counters.get("bytes_rx", 0)),
            "elapsed_s": round(el, 6),
            "rps": round(w.counters.get("completed", 0) / el, 3) if el > 0 else 0.0,
            "cpu_user_s": round(user, 6),
            "cpu_sys_s": round(sys_, 6),
            "cpu_share": round((user + sys_) / el, 4) if el > 0 else 0.0,
            "samples": w.samples,
            "snapshots": w.snapshots,
            "final": w.final,
            "lost": w.lost,
        }

    def _warnings(
        self, rep: dict[str, Any], open_loop: bool, dropped: int, clamped: dict[str, int]
    ) -> list[str]:
        """The generator's self-check (issue 5 item 4) and other things a reader must not miss."""
        out = []
        busiest = max((row["cpu_share"] for row in rep["workers"]), default=0.0)
        if open_loop:
            lag99 = rep["send_lag_ms"]["p99"]
            if lag99 > SEND_LAG_WARN_MS:
                msg = f"send lag p99 is {lag99:.3f} ms (> {SEND_LAG_WARN_MS:g} ms): requests left late"
                if busiest >= CPU_SATURATED / 2:
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
            if row["elapsed_s"] >= 0.5 and row["cpu_share"] >= CPU_SATURATED:
                out.append(
                    f"worker {row['worker']} used {row['cpu_share'] * 100:.0f}% of a CPU: the generator, "
                    "not the server, may be the bottleneck (add workers or CPUs)"
                )
        if dropped:
            out.append(
                f"{dropped} samples were dropped by the ring: latency figures miss them "
                "(counts and status totals are still exact)"
            )
        for name, n in clamped.items():
            if n:
                out.append(f"{n} {name} values exceeded 1 h and were clamped to 1 h")
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
        "timeouts": {
            "request_s": cfg.timeout_ns / NS_PER_S,
            "connect_s": cfg.connect_timeout_ns / NS_PER_S,
        },
        "target": {"addr": cfg.target.addr, "port": cfg.target.port},
    }


def histogram_from_report(rep: dict[str, Any], view: str = "latency") -> HdrHistogram:
    """Decode one of the report's encoded histograms (ns)."""
    return HdrHistogram.decode(rep["histogram"][view].encode("ascii"))
