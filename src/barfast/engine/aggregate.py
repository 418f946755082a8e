"""The aggregator: ring batches -> interval HdrHistograms and cumulative tallies (worker side).

One Aggregator per engine. `add(batch)` records a numpy batch of sample records (RECORD_DTYPE) at C
speed through barfast.engine._core.SampleRecorder into five hdrh histograms (ns, 1 ns .. 1 h, 3
significant digits): corrected latency (done - intended), uncorrected latency (done - send), send lag
(send - intended), time to first byte (first byte - send) and connect time (once per connection).
Only samples that completed with an HTTP status are put in the latency views; error samples are
counted by kind (see hist.pxi). With more than one endpoint, each endpoint also gets corrected
latency, connect and ttfb histograms and its status and error-kind counts (with one, the totals are
that endpoint's figures, and nothing more is kept). `take_interval()` encodes the interval
histograms as V2 histoblobs (hdrh's encode(), or encode_histogram() for the wire) and clears them,
so each snapshot carries the samples since the previous one and a coordinator can add them exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.engine._core import SampleRecorder
from barfast.engine.histoblob import HistoblobEncoder
from barfast.engine.kinds import ErrorKind
from barfast.ring import RECORD_DTYPE

NS_PER_HOUR = 3600 * 1_000_000_000
HIST_LOWEST_NS = 1
HIST_HIGHEST_NS = NS_PER_HOUR  # larger values are clamped to this and counted
HIST_SIGNIFICANT_FIGURES = 3
HIST_VIEWS = ("latency", "uncorrected", "send_lag", "connect", "ttfb", "tls")
# per endpoint (latency: corrected); the last two in open loop only (hist.pxi)
ENDPOINT_VIEWS = ("latency", "connect", "ttfb", "tls", "uncorrected", "send_lag")
# Endpoints with an index below this get their own histograms; the rest of a (rare) larger table
# get exact counters, status and error counts, and are in the totals' histograms. Why a bound: one
# histogram of this layout holds 33,792 counts (264 KiB), an endpoint's four 1,056 KiB (six, 1,584
# KiB, in open loop); the engine's 4096 endpoints would cost 4.1 GiB on each worker and again on the
# coordinator. 128 endpoints cost at most 132 MiB each side (198 MiB in open loop), and only for
# endpoints that got samples (histograms are made at an endpoint's first sample). Every endpoint's block of status and error counts (hist.pxi) adds
# ~8 KiB, 33 MiB for 4096.
ENDPOINT_HISTS_MAX = 128


def new_histogram() -> HdrHistogram:
    """The one histogram layout barfast uses everywhere (merges need identical layouts)."""
    return HdrHistogram(HIST_LOWEST_NS, HIST_HIGHEST_NS, HIST_SIGNIFICANT_FIGURES)


def encode_histogram(h: HdrHistogram, encoder: HistoblobEncoder | None = None) -> bytes:
    """A snapshot's histogram on the wire: a binary V2 histoblob with stored zlib blocks (see
    histoblob.HistoblobEncoder: cheap for the worker to write and for the coordinator to read).
    An encoder (scratch buffer) may be reused, by one thread at a time."""
    return (encoder or HistoblobEncoder(h)).encode(h)


assert RECORD_DTYPE.itemsize == 64, "sample record must be 64 bytes"


def as_raw(batch: np.ndarray) -> np.ndarray:
    """A contiguous uint8 view of a batch of records (zero-copy when the batch is contiguous)."""
    if batch.dtype.itemsize != 64:
        raise ValueError(f"sample records are 64 bytes, got itemsize {batch.dtype.itemsize}")
    arr = np.ascontiguousarray(batch).reshape(-1)
    return arr.view(np.uint8)


def error_label(kind: int) -> str:
    """An error kind value -> its label (an unknown value, from a foreign producer: its number)."""
    return ErrorKind(kind).label if kind in ErrorKind._value2member_map_ else str(kind)


class Aggregator:
    """Drains sample batches into interval histograms and cumulative tallies. `endpoints`: the
    size of the run's endpoint table (0 or 1: no per-endpoint figures beyond the totals)."""

    def __init__(self, endpoints: int = 0, open_loop: bool = False) -> None:
        self.hists = {name: new_histogram() for name in HIST_VIEWS}
        self._encoder = HistoblobEncoder(self.hists["latency"])
        self._rec = SampleRecorder(
            *(self.hists[name] for name in HIST_VIEWS),
            endpoints=endpoints if endpoints > 1 else 0,
            endpoint_hists=ENDPOINT_HISTS_MAX,
            factory=new_histogram,
            endpoint_open_loop=open_loop,
        )
        self._samples_at_take = 0
        self._tally_at_take: dict[str, int] = {"completed": 0, "errors": 0}
        self.clamped_total = {name: 0 for name in HIST_VIEWS}

    def add(self, batch: np.ndarray) -> int:
        """Record one batch of RECORD_DTYPE records; returns how many."""
        if len(batch) == 0:
            return 0
        return int(self._rec.record(as_raw(batch)))

    def tally(self) -> dict[str, Any]:
        """Cumulative counts over every sample seen: samples, completed, errors, bytes, seq gaps,
        per-status {code: n} and per-error-kind {kind value: n}."""
        return dict(self._rec.tally())

    def endpoints_open(self) -> tuple[int, int]:
        """(endpoints that got a sample, those of them with histograms): what per-endpoint
        recording holds in memory."""
        n, h = self._rec.endpoints_open()
        return int(n), int(h)

    def take_interval(self, wire: bool = False) -> dict[str, Any]:
        """Encode the interval histograms, clear them, and say how many samples they cover.
        wire=False: hdrh's own encode() (base64, deflated); wire=True: encode_histogram() (binary,
        stored), what a worker sends. Both are exact V2 histoblobs of the same counts.
        `endpoints` holds only the endpoints that got samples in the interval (snapshot.py
        documents the shape)."""
        self._rec.sync()
        t = self._rec.tally()
        clamped = self._rec.clamped()
        for name, n in clamped.items():
            self.clamped_total[name] += int(n)

        def enc(h: HdrHistogram) -> bytes:
            return encode_histogram(h, self._encoder) if wire else bytes(h.encode())

        endpoints: dict[int, dict[str, Any]] = {}
        for e, c, hs in self._rec.endpoints_interval():
            entry: dict[str, Any] = {
                "samples": int(c["samples"]),
                "completed": int(c["completed"]),
                "errors": int(c["errors"]),
                "status": {int(k): int(v) for k, v in c["status"].items()},
                "errors_by_kind": {error_label(k): int(v) for k, v in c["error"].items()},
            }
            if hs is not None:
                entry["hist"] = {
                    name: enc(h)
                    for name, h in zip(ENDPOINT_VIEWS[: len(hs)], hs, strict=True)
                    if h.get_total_count()
                }
            endpoints[int(e)] = entry
        out = {
            "hist": {name: enc(h) for name, h in self.hists.items()},
            "samples": int(t["samples"]) - self._samples_at_take,
            "completed": int(t["completed"]) - self._tally_at_take["completed"],
            "errors": int(t["errors"]) - self._tally_at_take["errors"],
            "clamped": {name: int(n) for name, n in clamped.items()},
            "endpoints": endpoints,
        }
        self._samples_at_take = int(t["samples"])
        self._tally_at_take = {"completed": int(t["completed"]), "errors": int(t["errors"])}
        self._rec.clear_histograms()
        return out
