"""The closed loop's nap controller (nap.pxi): naps on only while probes find they cost nothing.

Unit tests drive the controller by hand against a simulated server whose throughput depends on
whether naps are on; engine tests run it against a real nginx (saturated: naps are free) and against
the built-in target with a 50 µs delay at 1 connection (not saturated: each nap lengthens every
round trip, so naps cost throughput and must stay off).
"""

from __future__ import annotations

import os
import time

import pytest

from barfast.engine import _core
from conftest import children
from test_engine import MS, S, check_invariant, make_engine, run_timed

US = 1_000

WINDOW = 20 * MS


def drive(ctl: _core._NapController, t_end: int, ratio, off_rate: float = 0.1) -> list:
    """Run the controller from t=0 to t_end against a server finishing `off_rate` requests per ns
    without naps and ratio(t) times that with naps. Returns [(t, on)] at every step."""
    ctl.start(0)
    done = 0.0
    last = 0
    trace = [(0, ctl.on)]
    while ctl.next_ns <= t_end:
        t = ctl.next_ns
        done += (t - last) * off_rate * (ratio(t) if ctl.on else 1.0)
        last = t
        ctl.step(t, int(done))
        trace.append((t, ctl.on))
    return trace


def on_time(trace: list, t_end: int) -> int:
    total = 0
    for (t, on), (t2, _) in zip(trace, trace[1:] + [(t_end, False)], strict=True):
        total += (t2 - t) * on
    return total


def test_a_probe_alternates_abba_and_keeps_naps_that_cost_nothing() -> None:
    ctl = _core._NapController()
    trace = drive(ctl, 100 * MS + 12 * WINDOW, lambda t: 1.0)
    # warm-up 100 ms, then 12 windows: off on on off off on on off off on on off; then the decision
    assert [on for _, on in trace] == [False] + [
        bool(x) for x in (0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0)
    ] + [True]
    assert [t for t, _ in trace][1:] == [100 * MS + i * WINDOW for i in range(13)]
    st = ctl.stats
    assert st["probes"] == 1 and st["probes_on"] == 1 and st["aborts"] == 0, st
    assert st["log"] == [pytest.approx(1.0, abs=1e-6)]
    assert ctl.hold_ns == 500 * MS and ctl.next_ns == 100 * MS + 12 * WINDOW + 500 * MS


@pytest.mark.parametrize(
    ("ratio", "keep"),
    [(1.02, True), (0.995, True), (0.985, False), (0.95, False), (0.8, False)],
)
def test_naps_stay_only_within_one_percent(ratio: float, keep: bool) -> None:
    ctl = _core._NapController()
    drive(ctl, 100 * MS + 12 * WINDOW, lambda t: ratio)
    st = ctl.stats
    assert st["probes"] == 1 and st["aborts"] == 0, st
    assert ctl.on is keep and st["probes_on"] == int(keep), st
    assert st["log"][0] == pytest.approx(ratio, rel=1e-3)


def test_two_pairs_that_naps_ruin_end_the_probe_at_once() -> None:
    ctl = _core._NapController()
    trace = drive(ctl, 100 * MS + 4 * WINDOW, lambda t: 0.5)
    assert ctl.stats == {"probes": 1, "probes_on": 0, "aborts": 1, "log": [0.0]}
    assert not ctl.on and not ctl.probing
    # naps were on for two windows only
    t = 100 * MS + 4 * WINDOW
    assert on_time(trace, t) == 2 * WINDOW == ctl.on_ns(t)


def test_one_ruined_pair_does_not_end_the_probe() -> None:
    # A window in which the loop was preempted looks like a ruinous pair; one is not enough.
    t_bad = 100 * MS + WINDOW  # the first pair's on-window

    def ratio(t: int) -> float:
        return 0.3 if t_bad < t <= t_bad + WINDOW else 1.0

    ctl = _core._NapController()
    drive(ctl, 100 * MS + 12 * WINDOW, ratio)
    st = ctl.stats
    assert st["aborts"] == 0 and st["probes_on"] == 1, st


def test_one_bad_pair_does_not_decide() -> None:
    # The median, not the mean: one pair at 0.8 among five at 1.0 keeps naps on.
    t_bad = 100 * MS + 2 * WINDOW  # the second pair (on, off)

    def ratio(t: int) -> float:
        return 0.8 if t_bad < t <= t_bad + WINDOW else 1.0

    ctl = _core._NapController()
    drive(ctl, 100 * MS + 12 * WINDOW, ratio)
    st = ctl.stats
    assert st["probes_on"] == 1 and st["log"][0] == pytest.approx(1.0, abs=1e-6), st


def test_holds_double_while_decisions_repeat_and_reset_when_the_server_changes() -> None:
    change = 6 * S  # the server stops being saturated: naps now cost 10 %
    t_end = 20 * S
    ctl = _core._NapController()
    ctl.start(0)
    done, last, probing = 0.0, 0, False
    decisions: list[tuple[int, bool, int]] = []  # (time, on, hold)
    on_total = 0
    while ctl.next_ns <= t_end:
        t = ctl.next_ns
        done += (t - last) * 0.1 * ((1.0 if t <= change else 0.9) if ctl.on else 1.0)
        on_total += (t - last) * ctl.on
        last = t
        ctl.step(t, int(done))
        if probing and not ctl.probing:
            decisions.append((t, ctl.on, ctl.next_ns - t))
        probing = ctl.probing
    ons = [on for _, on, _ in decisions]
    holds = [h // MS for _, _, h in decisions]
    k = ons.index(False)
    assert ons == [True] * k + [False] * (len(ons) - k) and k >= 3, decisions
    assert decisions[k - 1][0] < change < decisions[k][0], decisions
    assert holds[:k] == [min(500 * 2**i, 8000) for i in range(k)], holds
    assert holds[k:] == [min(500 * 2**i, 8000) for i in range(len(ons) - k)], holds
    assert ctl.stats["probes"] == len(decisions) and ctl.stats["probes_on"] == k
    assert ctl.on_ns(last) == on_total


def test_naps_never_start_without_receive_stamps() -> None:
    ctl = _core._NapController()
    ctl.start(0)
    t = ctl.next_ns
    for _ in range(100):
        ctl.step(t, 0, able=False)
        assert not ctl.on and ctl.next_ns == t + 20 * MS
        t = ctl.next_ns
    assert ctl.stats["probes"] == 0 and ctl.on_ns(t) == 0


# ------------------------------------------------------------------ the engine, real servers


@pytest.mark.load  # the probes judge measured throughput: other tasks on the CPUs decide it too
def test_naps_turn_on_against_a_saturated_nginx(nginx) -> None:
    # 200 connections queue far more work at nginx (access log on) than a 20 µs nap delays: the
    # probes find naps free, and the run naps most of the time, timing reads by their stamps.
    # Pinned as the benchmarks are (nginx's worker on the last CPU, this thread on the first):
    # unpinned, the scheduler pulls the two together on loopback wake-ups and they share a CPU,
    # and then a nap hands the CPU to the other side and can cost throughput (measured: pair
    # ratios 0.85-0.87 in some runs), which the controller rightly refuses.
    cpus = sorted(os.sched_getaffinity(0))
    workers = children(nginx.proc.pid)
    deadline = time.monotonic() + 5
    while not workers and time.monotonic() < deadline:  # the master listens before it forks
        time.sleep(0.02)
        workers = children(nginx.proc.pid)
    if len(cpus) < 2 or not workers:
        pytest.skip("needs 2 CPUs and nginx's worker pid")
    saved = {pid: os.sched_getaffinity(pid) for pid in workers}
    try:
        for pid in workers:
            os.sched_setaffinity(pid, {cpus[-1]})
        os.sched_setaffinity(0, {cpus[0]})  # this thread: the engine runs in it
        eng = make_engine(nginx.port, connections=200, duration_ns=3 * S)
        eng.run()
    finally:
        os.sched_setaffinity(0, set(cpus))
        for pid, aff in saved.items():
            os.sched_setaffinity(pid, aff)
    c = eng.counters()
    check_invariant(c)
    st = eng._pacing_stats()
    assert c["errors"] == 0 and c["completed"] > 30000, c
    waited = c["runq_wait_ns"] / (3 * S)
    if waited > 0.1:
        # Another task held our CPU (a busy machine): naps hand it over and are not free then.
        pytest.skip(f"the engine waited {waited:.0%} of the run for its CPU; premise not met")
    assert st["nap_probes"] >= 3 and st["nap_probes_on"] >= 1, st
    assert st["nap_on_s"] >= 1.5 and st["closed_naps"] >= 500, st
    assert st["rx_stamped"] >= 500 and st["rx_stamp_bad"] == 0, st


@pytest.mark.load  # the probes judge measured throughput: other tasks on the CPUs decide it too
def test_naps_stay_off_where_they_would_cost_throughput() -> None:
    # One connection to a target that answers 50 µs after each request: a closed loop waits on
    # every round trip, so each nap (20 µs plus the timer's lateness) lengthens the cycle. Measured
    # directly first (naps forced on against off, alternated): on a quiet machine they cost a
    # quarter or more of the throughput, and then every probe must decide off (each ends early:
    # two pairs below 0.75). On a machine so busy that scheduling delays swamp the nap, naps cost
    # nothing and the premise does not hold: the test says so instead of judging.
    from serve_helpers import running

    def rps(srv: object, nap_ns: int, auto: bool, duration_ns: int) -> tuple[float, object]:
        eng = make_engine(srv.port, connections=1, duration_ns=duration_ns)  # type: ignore[attr-defined]
        eng._set_closed_nap_ns(nap_ns, auto)
        eng.run()
        c = eng.counters()
        check_invariant(c)
        assert c["errors"] == 0, c
        return c["completed"] / (duration_ns / S), eng

    with running("127.0.0.1", delay_ns=50 * US) as srv:
        ratios = []
        for _ in range(2):
            off, _e = rps(srv, 0, False, 400 * MS)
            on, _e = rps(srv, 20 * US, False, 400 * MS)
            ratios.append(on / off)
        cost = 1 - max(ratios)
        auto, eng = rps(srv, 20 * US, True, 3 * S)
    st = eng._pacing_stats()
    if cost < 0.15:
        pytest.skip(f"naps forced on cost only {cost:.0%} here (a busy machine?); premise not met")
    assert st["nap_probes"] >= 3 and st["nap_probes_on"] == 0, (ratios, st)
    # naps were on only in the probes' on-windows: two per aborted probe, ~4 % of the run
    assert st["nap_on_s"] <= 0.6, st
    assert auto > 3000, auto


def test_naps_can_be_turned_off_and_forced() -> None:
    from serve_helpers import running

    with running("127.0.0.1") as srv:
        off = make_engine(srv.port, connections=4, duration_ns=500 * MS)
        off._set_closed_nap_ns(0)
        off.run()
        always = make_engine(srv.port, connections=4, duration_ns=500 * MS)
        always._set_closed_nap_ns(20 * US, False)
        took = run_timed(always)
    a, b = off._pacing_stats(), always._pacing_stats()
    assert a["closed_naps"] == 0 and a["nap_on_s"] == 0 and a["nap_probes"] == 0, a
    assert b["closed_naps"] > 100 and b["nap_probes"] == 0, b
    # forced on from t0 to the end: the whole 0.5 s run, and no longer than run() took
    assert 0.5 <= b["nap_on_s"] <= took, (b, took)
    check_invariant(off.counters())
    check_invariant(always.counters())
