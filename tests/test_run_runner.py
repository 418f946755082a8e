"""EngineRunner's aggregation half with a Python producer in place of the engine: a real Ring, a real
producer thread, wrap-around, drops. The final snapshot must hold every published sample."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from barfast.engine.runner import EngineRunner, ring_capacity_for
from barfast.fanout.plan import WorkerPlan
from barfast.result import Merger
from barfast.ring import RECORD_DTYPE

PLAN = WorkerPlan(
    addr="127.0.0.1",
    port=9,
    family=2,
    request=b"GET / HTTP/1.1\r\n\r\n",
    head=False,
    connections=1,
    timeout_ns=10**9,
    connect_timeout_ns=10**9,
)


class PyProducer:
    """Engine stand-in with the Engine's surface (run/stop/counters/status_counts)."""

    def __init__(self, ring, total: int, batch: int, lossless: bool, duration_s: float) -> None:
        self.ring, self.total, self.batch, self.lossless = ring, total, batch, lossless
        self.duration_s = duration_s
        self._stop = threading.Event()
        self.sent = 0
        self.dropped = 0
        self.hold: Callable[[], bool] | None = None  # when set: run() returns once it is true

    def run(self) -> None:
        t_end = time.monotonic() + self.duration_s
        pace = self.duration_s / max(1, self.total // self.batch)
        seq = 0
        while seq < self.total and not self._stop.is_set():
            n = min(self.batch, self.total - seq)
            a = np.zeros(n, dtype=RECORD_DTYPE)
            a["seq"] = np.arange(seq, seq + n)
            a["intended_ns"] = 10**12
            a["send_ns"] = 10**12
            a["done_ns"] = 10**12 + 1000 + (np.arange(seq, seq + n) % 5000)
            a["status"] = 200
            a["bytes_rx"] = 10
            off = 0
            while off < n:
                k = self.ring.publish(a[off:], count_dropped=not self.lossless)
                off += k
                if off < n and not self.lossless:
                    self.dropped += n - off
                    break
                if off < n:
                    time.sleep(0.001)
            seq += n
            self.sent = seq
            if time.monotonic() < t_end:
                time.sleep(pace)
        while self.hold is not None and not self.hold() and not self._stop.is_set():
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()

    def counters(self) -> dict[str, int]:
        return {
            "started": self.sent,
            "completed": self.sent - self.dropped,
            "errors": 0,
            "in_flight": 0,
            "not_sent": 0,
            "connects": 1,
            "bytes_rx": 10 * self.sent,
            "bytes_tx": 0,
            "ring_dropped": self.dropped,
        }

    def status_counts(self) -> dict[int, int]:
        return {200: self.sent - self.dropped}


def run_with(
    total: int, batch: int, capacity: int, lossless: bool, duration_s: float, hold: bool = False
):
    """hold: the producer outlives its last sample until a periodic snapshot was emitted."""
    snaps: list[dict] = []
    made: list[PyProducer] = []

    def factory(ring, plan, start_ns):
        p = PyProducer(ring, total, batch, lossless, duration_s)
        if hold:
            p.hold = lambda: len(snaps) > 0
        made.append(p)
        return p

    r = EngineRunner(PLAN, snaps.append, ring_capacity=capacity, engine_factory=factory)
    r.ring_capacity = capacity  # force a tiny ring (ring_capacity_for keeps at least the default)
    final = r.run()
    return final, snaps, made[0]


def test_every_sample_reaches_the_final_snapshot() -> None:
    # held until a periodic snapshot is out (due 1 s in; a busy machine may emit it later)
    final, snaps, prod = run_with(200_000, 997, 1024, lossless=True, duration_s=1.3, hold=True)
    assert final["final"] and snaps[-1] is final
    assert [s["seq"] for s in snaps] == list(range(len(snaps)))
    assert len(snaps) >= 2  # at least one periodic snapshot, plus the final
    assert sum(s["samples"] for s in snaps) == 200_000
    m = Merger()
    for s in snaps:
        m.add(s)
    assert m.hists["latency"].get_total_count() == 200_000
    rep = m.report({"open_loop": False})
    assert rep["samples"]["aggregated"] == 200_000 and rep["samples"]["dropped_by_ring"] == 0
    assert final["ring"]["seq_gaps"] == 0
    ref = HdrHistogram(1, 3600 * 10**9, 3)
    for v in range(5000):
        ref.record_value(1000 + v, 40)
    assert m.hists["uncorrected"].get_value_at_percentile(99) == ref.get_value_at_percentile(99)
    intervals = [s["interval"] for s in snaps]
    assert intervals == sorted(intervals) and intervals[0] == 0


def test_drops_are_reported() -> None:
    final, snaps, prod = run_with(50_000, 4096, 1024, lossless=False, duration_s=0.2)
    assert prod.dropped > 0
    # Gaps in seq show only drops that a later published record follows: when the consumer falls
    # behind (a busy machine), the last batches' drops trail every record and no gap shows them.
    # The ring's own counter is exact either way, and the report takes the larger of the two.
    assert final["ring"]["seq_gaps"] <= prod.dropped
    assert final["ring"]["dropped"] == prod.dropped
    m = Merger()
    for s in snaps:
        m.add(s)
    rep = m.report({"open_loop": False})
    assert rep["samples"]["dropped_by_ring"] == prod.dropped
    assert rep["samples"]["aggregated"] == 50_000 - prod.dropped
    assert any("dropped by the ring" in w for w in rep["generator"]["warnings"])


def test_stop_ends_the_run() -> None:
    holder: dict = {}

    def factory(ring, plan, start_ns):
        holder["p"] = PyProducer(ring, 10**9, 100, True, 60.0)
        return holder["p"]

    r = EngineRunner(PLAN, None, engine_factory=factory)
    threading.Timer(0.3, r.stop).start()
    t0 = time.monotonic()
    final = r.run()
    assert time.monotonic() - t0 < 3.0
    assert final["final"] and final["samples"] >= 0


@pytest.mark.parametrize(("rate", "cap"), [(0.0, 1 << 16), (1e6, 1 << 18), (1e9, 1 << 22)])
def test_ring_capacity_for_rate(rate: float, cap: int) -> None:
    assert ring_capacity_for(WorkerPlan(**{**PLAN.__dict__, "rate": rate})) == cap


def test_a_failing_callback_stops_the_engine_before_the_ring_goes() -> None:
    holder: dict = {}

    def factory(ring, plan, start_ns):
        holder["p"] = PyProducer(ring, 10**9, 100, True, 60.0)
        return holder["p"]

    def boom(snap: dict) -> None:
        raise RuntimeError("callback failed")

    r = EngineRunner(PLAN, boom, engine_factory=factory)
    with pytest.raises(RuntimeError, match="callback failed"):
        r.run()
    assert holder["p"]._stop.is_set()
    assert r._thread is not None and not r._thread.is_alive()


def test_drain_wait_follows_the_fill_rate() -> None:
    from barfast.engine.runner import DRAIN_INTERVAL_MAX_S, DRAIN_INTERVAL_S, drain_wait_s

    # nothing arrived: the wait stays what it was; a trickle: the longest wait
    assert drain_wait_s(0, 0.1, 1 << 16, 0.02) == 0.02
    assert drain_wait_s(100, 0.1, 1 << 16, 0.02) == DRAIN_INTERVAL_MAX_S
    # 170k records/s into 65536 slots fill it in 0.385 s: wait a quarter of that
    assert abs(drain_wait_s(1700, 0.01, 1 << 16, 0.01) - 0.0964) < 0.001
    # a small ring at a high rate: the shortest wait
    assert drain_wait_s(10_000, 0.01, 1024, 0.05) == DRAIN_INTERVAL_S


def test_a_slow_producer_is_drained_rarely_and_completely() -> None:
    # 2,000 samples over 1.5 s (~1.3k/s) into a 65536-slot ring: the drain thread wakes about 10
    # times a second (plus the snapshot boundaries) instead of 100, and loses nothing.
    snaps: list[dict] = []

    def factory(ring, plan, start_ns):
        return PyProducer(ring, 2000, 20, True, 1.5)

    r = EngineRunner(PLAN, snaps.append, ring_capacity=1 << 16, engine_factory=factory)
    t0 = time.monotonic()
    final = r.run()
    took = time.monotonic() - t0  # 1.5 s, longer when a busy machine oversleeps the pacing
    assert sum(s["samples"] for s in snaps) == 2000 and final["ring"]["seq_gaps"] == 0
    # Waits of DRAIN_INTERVAL_MAX_S (100 ms), cut short only at the 1 s snapshot boundaries, and
    # 10 ms ones until the first samples arrive (room for 100 ms of a slow thread start); a late
    # wake-up only makes fewer. A fixed 10 ms wait would make ~150.
    assert 5 <= r.drains <= took / 0.1 + took + 10, (r.drains, took)
