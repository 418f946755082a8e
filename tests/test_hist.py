"""hist.pxi / SampleRecorder against the reference: hdrh's own record_value over the same values."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from barfast.engine._core import SampleRecorder
from barfast.engine.aggregate import (
    HIST_HIGHEST_NS,
    RECORD_DTYPE,
    Aggregator,
    as_raw,
    new_histogram,
)

PCTS = [0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0]


def make_records(lat: list[int], unc_extra: list[int] | None = None, **fields) -> np.ndarray:
    """Completed samples whose corrected latency is `lat[i]`; send lag is `unc_extra[i]`."""
    n = len(lat)
    a = np.zeros(n, dtype=RECORD_DTYPE)
    base = 10**12
    a["intended_ns"] = base
    lag = np.asarray(unc_extra if unc_extra is not None else [0] * n, dtype=np.uint64)
    a["send_ns"] = base + lag
    a["done_ns"] = base + np.asarray(lat, dtype=np.uint64)
    a["seq"] = np.arange(n, dtype=np.uint64)
    a["status"] = 200
    a["bytes_rx"] = 100
    a["bytes_tx"] = 40
    for k, v in fields.items():
        a[k] = v
    return a


def reference(values) -> HdrHistogram:
    h = new_histogram()
    for v in values:
        assert h.record_value(min(int(v), HIST_HIGHEST_NS))
    return h


def assert_same(ours: HdrHistogram, ref: HdrHistogram) -> None:
    assert ours.get_total_count() == ref.get_total_count()
    assert ours.min_value == ref.min_value or ref.get_total_count() == 0
    assert ours.max_value == ref.max_value
    assert ours.get_min_value() == ref.get_min_value()
    assert ours.get_max_value() == ref.get_max_value()
    assert bytes(memoryview(ours.counts)) == bytes(memoryview(ref.counts))
    for p in PCTS:
        assert ours.get_value_at_percentile(p) == ref.get_value_at_percentile(p)
    assert ours.get_mean_value() == ref.get_mean_value()
    assert ours.encode() == ref.encode()
    dec = HdrHistogram.decode(ours.encode())
    assert dec.get_total_count() == ref.get_total_count()
    assert dec.get_value_at_percentile(99.0) == ref.get_value_at_percentile(99.0)


# Values spanning every bucket: 0, small, sub-ms, seconds, around and above the 1 h top.
values_st = st.lists(
    st.one_of(
        st.integers(0, 3000),
        st.integers(0, 10**7),
        st.integers(0, 10**11),
        st.integers(HIST_HIGHEST_NS - 10**6, HIST_HIGHEST_NS + 10**9),
    ),
    min_size=0,
    max_size=400,
)


@settings(max_examples=25, deadline=None)
@given(values_st, st.integers(1, 5))
def test_matches_hdrh_record_value(values: list[int], nbatches: int) -> None:
    h = [new_histogram() for _ in range(5)]
    rec = SampleRecorder(*h)
    lag = [v // 3 for v in values]  # send lag <= corrected latency, as in a real open loop
    recs = make_records(values, lag)
    for part in np.array_split(recs, nbatches):
        rec.record(as_raw(part))
    rec.sync()
    assert_same(h[0], reference(values))
    assert_same(h[1], reference([v - g for v, g in zip(values, lag, strict=True)]))
    assert_same(h[2], reference(lag))
    clamped = rec.clamped()
    assert clamped["latency"] == sum(1 for v in values if v > HIST_HIGHEST_NS)
    t = rec.tally()
    assert t["samples"] == t["completed"] == len(values)
    assert t["bytes_rx"] == 100 * len(values)
    assert t["seq_gaps"] == 0


def test_random_bulk_bit_identical() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(13, 2, 50_000).astype(np.uint64)  # ~0.4 ms median, long tail
    h = [new_histogram() for _ in range(5)]
    rec = SampleRecorder(*h)
    rec.record(as_raw(make_records(values.tolist())))
    rec.sync()
    assert_same(h[0], reference(values.tolist()))


def test_errors_are_counted_not_recorded() -> None:
    recs = make_records([1000, 2000, 3000, 4000, 5000])
    recs["error"][1] = 1  # connect
    recs["status"][1] = 0
    recs["error"][3] = 2  # timeout
    recs["status"][4] = 503
    recs["status"][0] = 0  # no error and no status: a producer bug, counted
    agg = Aggregator()
    agg.add(recs)
    t = agg.tally()
    assert t["samples"] == 5
    assert t["errors"] == 2
    assert t["completed"] == 2
    assert t["no_status"] == 1
    assert t["error"] == {1: 1, 2: 1}
    assert t["status"] == {200: 1, 503: 1}
    out = agg.take_interval()
    lat = HdrHistogram.decode(out["hist"]["latency"])
    assert lat.get_total_count() == 2
    assert lat.get_min_value() == 3000
    assert lat.get_max_value() == reference([5000]).get_max_value()  # highest equivalent value
    assert out["samples"] == 5 and out["completed"] == 2 and out["errors"] == 2


def test_seq_gaps_count_ring_drops() -> None:
    recs = make_records([10] * 6)
    recs["seq"] = [0, 1, 5, 6, 9, 10]
    agg = Aggregator()
    agg.add(recs[:3])
    agg.add(recs[3:])
    assert agg.tally()["seq_gaps"] == 3 + 2


def test_take_interval_clears_and_is_exact() -> None:
    agg = Aggregator()
    agg.add(make_records([5, 6, 7]))
    a = agg.take_interval()
    agg.add(make_records([10**9]))
    b = agg.take_interval()
    c = agg.take_interval()
    assert HdrHistogram.decode(a["hist"]["latency"]).get_total_count() == 3
    hb = HdrHistogram.decode(b["hist"]["latency"])
    assert hb.get_total_count() == 1 and hb.get_value_at_percentile(50) == reference(
        [10**9]
    ).get_value_at_percentile(50)
    assert HdrHistogram.decode(c["hist"]["latency"]).get_total_count() == 0
    assert (a["samples"], b["samples"], c["samples"]) == (3, 1, 0)
    # After clearing, recording must land in a zeroed buffer: counts equal a fresh reference.
    agg.add(make_records([7, 8]))
    agg._rec.sync()
    assert_same(agg.hists["latency"], reference([7, 8]))


def test_negative_differences_record_zero() -> None:
    recs = make_records([100])
    recs["done_ns"] = recs["intended_ns"] - 5  # impossible with one clock; must not wrap to 2**64
    agg = Aggregator()
    agg.add(recs)
    assert agg.tally()["negative"] >= 1
    out = agg.take_interval()
    assert HdrHistogram.decode(out["hist"]["latency"]).get_max_value() == 0


def test_rejects_bad_inputs() -> None:
    h = new_histogram()
    h.record_value(5)
    with pytest.raises(ValueError):
        SampleRecorder(h, *(new_histogram() for _ in range(4)))
    rec = SampleRecorder(*(new_histogram() for _ in range(5)))
    with pytest.raises(ValueError):
        rec.record(np.zeros(65, dtype=np.uint8))
    assert rec.record(np.zeros(0, dtype=np.uint8)) == 0
