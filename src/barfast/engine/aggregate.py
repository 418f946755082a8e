"""The aggregator: ring batches -> interval HdrHistograms and cumulative tallies (worker side).

One Aggregator per engine. `add(batch)` records a numpy batch of sample records (RECORD_DTYPE) at C
speed through barfast.engine._core.SampleRecorder into three hdrh histograms (ns, 1 ns .. 1 h, 3 significant
digits): corrected latency (done - intended), uncorrected latency (done - send) and send lag
(send - intended). Only samples that completed with an HTTP status are put in the histograms; error
samples are counted by kind (see hist.pxi). `take_interval()` encodes the interval histograms as V2
histoblobs (hdrh's encode(), or encode_histogram() for the wire) and clears them, so each snapshot
carries the samples since the previous one and a coordinator can add them exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.engine._core import SampleRecorder
from barfast.engine.histoblob import HistoblobEncoder
from barfast.ring import RECORD_DTYPE

NS_PER_HOUR = 3600 * 1_000_000_000
HIST_LOWEST_NS = 1
HIST_HIGHEST_NS = NS_PER_HOUR  # larger values are clamped to this and counted
HIST_SIGNIFICANT_FIGURES = 3
HIST_VIEWS = ("latency", "uncorrected", "send_lag")


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


class Aggregator:
    """Drains sample batches into interval histograms and cumulative tallies."""

    def __init__(self) -> None:
        self.hists = {name: new_histogram() for name in HIST_VIEWS}
        self._encoder = HistoblobEncoder(self.hists["latency"])
        self._rec = SampleRecorder(
            self.hists["latency"], self.hists["uncorrected"], self.hists["send_lag"]
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

    def take_interval(self, wire: bool = False) -> dict[str, Any]:
        """Encode the interval histograms, clear them, and say how many samples they cover.
        wire=False: hdrh's own encode() (base64, deflated); wire=True: encode_histogram() (binary,
        stored), what a worker sends. Both are exact V2 histoblobs of the same counts."""
        self._rec.sync()
        t = self._rec.tally()
        clamped = self._rec.clamped()
        for name, n in clamped.items():
            self.clamped_total[name] += int(n)
        out = {
            "hist": {
                name: encode_histogram(h, self._encoder) if wire else bytes(h.encode())
                for name, h in self.hists.items()
            },
            "samples": int(t["samples"]) - self._samples_at_take,
            "completed": int(t["completed"]) - self._tally_at_take["completed"],
            "errors": int(t["errors"]) - self._tally_at_take["errors"],
            "clamped": {name: int(n) for name, n in clamped.items()},
        }
        self._samples_at_take = int(t["samples"])
        self._tally_at_take = {"completed": int(t["completed"]), "errors": int(t["errors"])}
        self._rec.clear_histograms()
        return out
