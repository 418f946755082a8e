"""Open-loop pacing internals against nginx: the adaptive spin window and the benchmark knobs
(Engine._set_spin_ns, _set_coalesce_ns, _pacing_stats). The figures themselves are benchmarks
(benchmarks/README.md, "Open-loop pacing"); these tests check the mechanisms, with bounds that hold
on a loaded shared machine."""

from __future__ import annotations

import numpy as np

from barfast.ring import Ring
from test_engine import MS, S, check_invariant, drain, make_engine

US = 1000


def lags(ring: Ring) -> np.ndarray:
    s = drain(ring)
    ok = s[s["error"] == 0]
    return ok["send_ns"].astype(np.int64) - ok["intended_ns"].astype(np.int64)


def test_adaptive_window_learns_and_sends_on_time(nginx) -> None:
    # 1000 req/s: a 1 ms gap per send, so (almost) every send is preceded by a timed sleep that
    # ends a window before it; the window tracks the p99 of those wake-ups' lateness, clamped to
    # 2..50 µs. So the median send leaves within a few µs of its intended time; 50 µs (the issue's
    # p99 target) as the bound for the median leaves room for a loaded machine. Without the window
    # (spin 0) the median is the wake-up lateness itself, 15-40 µs here: see the benchmark.
    ring = Ring.create(1 << 12)
    eng = make_engine(nginx.port, ring, connections=4, rate=1000.0, duration_ns=3 * S // 2)
    eng.run()
    c = eng.counters()
    check_invariant(c)
    st = eng._pacing_stats()
    assert st["spin_auto"] is True
    assert 2 * US <= st["spin_ns"] <= 50 * US, st
    assert st["timed_sleeps"] >= 750, st  # about one per send (a response may wake one early)
    lag = lags(ring)
    assert len(lag) >= 1450 and (lag >= 0).all()
    assert np.percentile(lag, 50) < 50 * US, np.percentile(lag, [50, 99])


def test_fixed_window_stays_fixed(nginx) -> None:
    eng = make_engine(nginx.port, None, connections=4, rate=2000.0, duration_ns=S // 2)
    eng._set_spin_ns(7 * US)
    eng.run()
    st = eng._pacing_stats()
    assert st == {**st, "spin_ns": 7 * US, "spin_auto": False}
    assert st["timed_sleeps"] > 0 and st["late_ns_mean"] > 0


def test_coalescing_trades_lag_for_wakeups(nginx) -> None:
    # _set_coalesce_ns(500 µs): no spin; the loop wakes 500 µs after a send is due and sends all
    # that are due. At 1000 req/s that is one send per wake-up, each ~500 µs late (its response,
    # ~50 µs after the send, wakes the loop long before the next one is due, so nothing earlier
    # dispatches it). A loop that ignored the knob would show a median lag of µs.
    ring = Ring.create(1 << 12)
    eng = make_engine(nginx.port, ring, connections=4, rate=1000.0, duration_ns=S)
    eng._set_coalesce_ns(500 * US)
    eng.run()
    check_invariant(eng.counters())
    lag = lags(ring)
    assert len(lag) >= 950
    assert 450 * US <= np.percentile(lag, 50) < 2 * MS, np.percentile(lag, [10, 50, 90])
    assert np.percentile(lag, 5) >= 400 * US, np.percentile(lag, [1, 5, 50])
