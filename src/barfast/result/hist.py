"""Exact arithmetic on HdrHistograms of the merged layout (ns, 1 ns .. 1 h, 3 significant digits).

Same results as hdrh's own add(), get_percentile_to_value_dict(), get_mean_value() and
get_stddev() (tests/test_histoblob.py, tests/test_report.py compare them), but visiting only the
non-zero counts: hdrh walks all 33,792 buckets in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.config import NS_PER_MS
from barfast.engine._core import hist_add_sparse  # type: ignore[attr-defined]
from barfast.engine.histoblob import SparseCounts

REPORT_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99)
FULL_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0)


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
    h: HdrHistogram,
    counts: np.ndarray,
    total: int,
    pcts: Iterable[float],
    idx: np.ndarray | None = None,
) -> dict[float, int]:
    """hdrh's get_percentile_to_value_dict() for a counts array of h's layout holding `total`
    samples, with a cumulative sum instead of a Python walk over every bucket (same float target
    arithmetic, same first index reaching it, same equivalent-value rounding). With `idx` (sorted
    ascending, repeats allowed), `counts` are sparse: counts[k] is a count at index idx[k]; zero
    counts move no cumulative sum, so the first index reaching a target is the same."""
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
        v = h.get_value_from_index(i if idx is None else int(idx[i]))
        out[p] = h.get_highest_equivalent_value(v) if p else h.get_lowest_equivalent_value(v)
    return out


def ms(ns: float) -> float:
    return round(ns / NS_PER_MS, 6)


def mean_stdev(h: HdrHistogram) -> tuple[float, float]:
    """hdrh's get_mean_value() and get_stddev(), same arithmetic in the same order, but visiting only
    the non-zero counts (hdrh walks all 33,792 buckets in Python: ~90 ms per call at our layout)."""
    total = h.get_total_count()
    counts = np.frombuffer(h.counts, dtype=np.uint64)
    idx = np.flatnonzero(counts)
    return mean_stdev_counts(h, idx, counts[idx], total)


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


def histogram_from_report(rep: dict[str, Any], view: str = "latency") -> HdrHistogram:
    """Decode one of the report's encoded histograms (ns)."""
    return HdrHistogram.decode(rep["histogram"][view].encode("ascii"))


def mean_stdev_counts(
    h: HdrHistogram, idx: np.ndarray, cnt: np.ndarray, total: int
) -> tuple[float, float]:
    """mean_stdev() of counts `cnt` at sorted indexes `idx` of h's layout holding `total` samples
    (a window, a sum of endpoints): the same arithmetic, on counts that are no hdrh object."""
    if not total:
        return 0.0, 0.0
    half, shcm, um = h.sub_bucket_half_count, h.sub_bucket_half_count_magnitude, h.unit_magnitude
    idx_l, cnt_l = idx.tolist(), cnt.tolist()
    medians = []
    for i in idx_l:
        bucket = (i >> shcm) - 1
        sub = (i & (half - 1)) + half
        if bucket < 0:
            sub -= half
            bucket = 0
        medians.append((sub << (bucket + um)) + ((1 << (um + bucket)) >> 1))
    acc = 0
    for m, c in zip(medians, cnt_l, strict=True):
        acc += c * m
    mean = float(acc) / total
    dev_total = 0.0
    for m, c in zip(medians, cnt_l, strict=True):
        dev = (m * 1.0) - mean
        dev_total += (dev * dev) * c
    return mean, math.sqrt(dev_total / total)
