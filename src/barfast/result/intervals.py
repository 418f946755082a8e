"""Interval histograms: the sparse counts of one view over one second, and their compact form in the
report (base64 of the standard compressed HdrHistogram V2 encoding, what hdrh's encode() writes).

Why that encoding: it is the one HdrHistogram's interval logs (hlog) carry, so the report's blobs
are readable by every HdrHistogram implementation, and a one-second histogram of a busy run is a
few hundred bytes (its counts are zigzag varints with runs of zeros folded, then deflated). The
project's stored-block histoblobs (engine/histoblob.py) are twice that size: they trade bytes for
decoding speed on the coordinator's hot path, which a report does not have.

While a second is open, each view's counts are kept as the snapshots' sparse (index, count) parts
(a few KiB a second); when it closes they are added into one sorted sparse array, reduced to the
percentiles the series shows and encoded. A snapshot that arrives for a second already closed is
added to the decoded blob and the second is reduced again, so the intervals always add up to the
merged histogram exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.engine.histoblob import HistoblobDecoder, HistoblobEncoder, SparseCounts
from barfast.result.hist import ms, percentiles

SERIES_PERCENTILES = (50.0, 90.0, 99.0)
ENCODING = "HdrHistogram V2 compressed, base64 (hdrh HdrHistogram.decode)"


@dataclass(slots=True)
class Parts:
    """One view's counts in one second: sparse parts while open, a blob once closed."""

    idx: list[np.ndarray] = field(default_factory=list)
    val: list[np.ndarray] = field(default_factory=list)
    total: int = 0
    blob: str | None = None  # set when closed (None with no counts)

    def add(self, sc: SparseCounts) -> None:
        if sc.total:
            self.idx.append(sc.idx)
            self.val.append(sc.val)
            self.total += sc.total

    def combined(self) -> tuple[np.ndarray, np.ndarray]:
        """The parts as one sparse array: sorted unique indices and their summed counts."""
        if not self.idx:
            return np.empty(0, np.int64), np.empty(0, np.uint64)
        idx = np.concatenate(self.idx)
        val = np.concatenate(self.val)
        order = np.argsort(idx, kind="stable")
        idx, val = idx[order], val[order]
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        return idx[starts], np.add.reduceat(val, starts).astype(np.uint64)


class IntervalCodec:
    """Encodes sparse counts of barfast's one layout to blobs and decodes them back (one thread at
    a time: it holds a scratch histogram)."""

    def __init__(self, template: HdrHistogram) -> None:
        self.template = template
        self._scratch = HdrHistogram(
            template.lowest_trackable_value,
            template.highest_trackable_value,
            template.significant_figures,
        )
        self._counts = np.frombuffer(self._scratch.counts, dtype=np.uint64)
        self._encoder = HistoblobEncoder(self._scratch)
        self.decoder = HistoblobDecoder(template)

    def encode(self, idx: np.ndarray, val: np.ndarray) -> str | None:
        """hdrh's encode() of the histogram holding exactly these counts (None when empty)."""
        if not len(idx):
            return None
        h = self._scratch
        self._counts[idx] = val
        h.total_count = int(val.sum(dtype=np.uint64))
        h.max_value = int(self.decoder.highest_values[idx[-1]])
        h.min_value = int(self.decoder.lowest_values[idx[0]])
        try:
            return self._encoder.encode(h, level=6, b64=True).decode("ascii")
        finally:
            self._counts[idx] = 0
            h.total_count = 0

    def decode(self, blob: str | bytes) -> SparseCounts:
        """A blob -> its sparse counts (bounded and checked: HistoblobError on a bad one)."""
        return self.decoder.decode(blob)

    def reduce(self, p: Parts) -> dict[str, float | None]:
        """Close `p`: encode its counts into p.blob, free the parts; returns the second's figures
        (p50/p90/p99/max in ms, None without counts)."""
        if p.blob is not None and p.idx:  # a late part for a closed second: add the blob back
            sc = self.decode(p.blob)
            p.idx.insert(0, sc.idx)
            p.val.insert(0, sc.val)
        idx, val = p.combined()
        p.idx, p.val = [], []
        p.blob = self.encode(idx, val)
        return self.figures(idx, val)

    def figures(self, idx: np.ndarray, val: np.ndarray) -> dict[str, float | None]:
        total = int(val.sum(dtype=np.uint64)) if len(val) else 0
        if not total:
            return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
        v = percentiles(self.template, val, total, SERIES_PERCENTILES, idx)
        return {
            "p50_ms": ms(v[50.0]),
            "p90_ms": ms(v[90.0]),
            "p99_ms": ms(v[99.0]),
            "max_ms": ms(int(self.decoder.highest_values[idx[-1]])),
        }
