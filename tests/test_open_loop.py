"""The open loop end to end: the real `barfast run` CLI (a real process, --json) against a real
`barfast serve` process with fault flags. Rate accuracy, the stall test with its analytic tails,
fixed delay, stage ramps, multi-worker rate splits, Poisson arrivals, -n with a rate.

On a machine with 2+ CPUs the server runs on the highest CPU and the generator on the lowest
(MEASURING.md: a generator and its target fighting for one core measure the scheduler).

Tolerances are derived in each test's comments. Two facts recur:
- A constant schedule is exact: entry k is due at t0 + k/R, cut at the deadline, so the entries
  taken in a d-second run are exactly ceil(R·d) = started + not_sent (loop.pxi counts an entry as
  started when it is sent, or as not_sent when the run ended before a connection was free).
- The per-second series counts samples by when the runner DRAINED them (every DRAIN_INTERVAL_S =
  10 ms, snapshot emitted up to one drain late), so a second's count can shift by the samples of up to
  ~2 drain periods at each of its two boundaries.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest

from barfast.engine import _core
from conftest import barfast_cmd

S = 1_000_000_000

_CPUS = sorted(os.sched_getaffinity(0))
SERVE_CPUS = {_CPUS[-1]} if len(_CPUS) >= 2 else None
GEN_CPUS = {_CPUS[0]} if len(_CPUS) >= 2 else None


def _pin(cpus: set[int] | None):
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Served:
    """A `barfast serve` process on a free port; stop() returns the server's own counts."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            barfast_cmd("serve", "--addr", "127.0.0.1:0", *flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_pin(SERVE_CPUS),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.match(r"barfast serve: listening on (http://\S+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"barfast serve did not start: {line!r} {self.proc.stderr}")
        self.url = m.group(1)
        self.counts: dict[str, int] | None = None

    def stop(self) -> dict[str, int]:
        """SIGINT, wait, parse 'barfast serve: N requests, N responses, N connections, ...'."""
        if self.counts is None:
            self.proc.send_signal(signal.SIGINT)
            _, err = self.proc.communicate(timeout=10)
            m = re.search(r"(\d+) requests, (\d+) responses, (\d+) connections", err)
            assert m, err
            self.counts = {
                "requests": int(m.group(1)),
                "responses": int(m.group(2)),
                "connections": int(m.group(3)),
            }
        return self.counts


@contextlib.contextmanager
def serve(*flags: str) -> Iterator[Served]:
    srv = Served(*flags)
    try:
        yield srv
    finally:
        if srv.counts is None:
            if srv.proc.poll() is None:
                srv.proc.send_signal(signal.SIGINT)
            try:
                srv.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                srv.proc.kill()
                srv.proc.communicate()


def run(*args: str, timeout: float = 60.0, cpus: set[int] | None = GEN_CPUS) -> dict:
    p = subprocess.run(
        barfast_cmd("run", *args, "--json", "-q"),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_pin(cpus),
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def scheduled(rep: dict) -> int:
    """Schedule entries the run took: sent (started) or never sent."""
    return rep["requests"]["started"] + rep["requests"]["not_sent"]


def only_late_sends(rep: dict) -> None:
    """No request failed, except sends due in the last moment that could not leave before the
    deadline (not_sent): a generator that loses its CPU at the end leaves as many as fell due
    meanwhile with no free connection. That is accounting, not a lost schedule. How many: a
    busy machine decides (few_late_sends, in the load tests)."""
    assert set(rep["errors"]) <= {"not_sent"}, rep["errors"]


def few_late_sends(rep: dict) -> None:
    """only_late_sends, and few of them: up to 79 of 60,000 were seen with a CPU hog on each CPU,
    so 0.5 % of the schedule."""
    only_late_sends(rep)
    assert rep["requests"]["not_sent"] <= 0.005 * scheduled(rep), rep["requests"]


def check_accounting(rep: dict) -> None:
    r = rep["requests"]
    assert r["started"] == r["completed"] + (r["errors"] - r["not_sent"]) + r["in_flight"]
    assert sum(w["completed"] for w in rep["workers"]) == r["completed"]
    assert sum(w["started"] for w in rep["workers"]) == r["started"]


def achieved_rate(rep: dict) -> float:
    return rep["requests"]["completed"] / rep["duration_s"]


# ---------------------------------------------------------------- constant rate


# A generator that loses its CPU to other tasks for a few ms falls behind (send lag, a short final
# second, unsent entries at the end): the promise holds on a machine that gives it a CPU. What holds
# however busy the machine: test_a_high_rate_is_scheduled_exactly_and_accounted_for.
@pytest.mark.load
@pytest.mark.parametrize(("rate", "conns"), [(1000, 10), (20000, 50)])
def test_constant_rate_is_achieved_within_1_percent(rate: int, conns: int) -> None:
    # The promise: achieved rate within 1 % of the target at 1k and 20k req/s. 3 s runs: the requests
    # still in flight at the deadline (<= conns, ~R x 100 us RTT: a few) and the run's end overshoot
    # (duration_s is measured to the engine's return, ~1 ms late) each cost < 0.1 %, so 1 % is room
    # for a generator that falls behind by ~30 ms at the end, not for a wrong schedule: a rate split
    # per connection with truncation, a lost second, or a backlog that never drains all fail.
    d = 3
    with serve() as srv:
        rep = run("-w", "1", "-c", str(conns), "-R", str(rate), "-d", f"{d}s", srv.url)
        counts = srv.stop()
    check_accounting(rep)
    assert scheduled(rep) == rate * d  # the schedule is exact (module docstring)
    few_late_sends(rep)
    got = achieved_rate(rep)
    assert abs(got / rate - 1) < 0.01, (got, rep["duration_s"], rep["requests"])
    assert rep["requests"]["completed"] >= 0.99 * rate * d
    # The server's own count: it answered every completed request, and saw no more than were sent.
    assert rep["requests"]["completed"] <= counts["responses"] <= rep["requests"]["started"]
    # Everything on time: the median request left within 1 ms of its intended time (a generator
    # pacing with epoll's ms timeouts would show ~0.5 ms; its self-check threshold is 1 ms).
    assert rep["send_lag_ms"]["p50"] < 1.0, rep["send_lag_ms"]


def test_a_high_rate_is_scheduled_exactly_and_accounted_for() -> None:
    # What holds at 20k req/s however busy the machine: the schedule has exactly R x d entries,
    # every one is accounted for (sent = completed + errors + in flight), only not_sent can fail,
    # and the server answered every completed request and saw no more than were started.
    rate, d = 20000, 2
    with serve() as srv:
        rep = run("-w", "1", "-c", "50", "-R", str(rate), "-d", f"{d}s", srv.url)
        counts = srv.stop()
    check_accounting(rep)
    assert scheduled(rep) == rate * d
    only_late_sends(rep)
    assert rep["requests"]["completed"] <= counts["responses"] <= rep["requests"]["started"]


# ---------------------------------------------------------------- the stall test


def test_a_stall_shows_in_the_corrected_view_and_the_send_lag() -> None:
    # The same stall (500 ms of every 2 s) for 5 s: whatever the server's phase, the run holds two
    # whole stall windows, the first ending at least 2 s before the deadline (its backlog then
    # drains). Only lower bounds here, each forced by the server: a busy machine can only make a
    # request later. In a window an entry intended x ms in cannot complete before the window ends:
    # corrected latency >= 500 - x, so in the first window alone 60 of the <= 5,000 (1.2 %) are
    # >= 440 ms, and one >= 499 ms; once the 10 connections each hold a request there, every later
    # entry waits in the backlog until the window ends, so >= 290 of them (5.8 %) are sent
    # >= 200 ms late. The analytic tails themselves: the load test below.
    with serve("--stall", "500ms/2s") as srv:
        rep = run("-w", "1", "-c", "10", "-R", "1000", "-d", "5s", srv.url, timeout=60)
        srv.stop()
    check_accounting(rep)
    only_late_sends(rep)
    assert scheduled(rep) == 5_000
    lat, lag = rep["latency_ms"], rep["send_lag_ms"]
    assert lat["p99"] >= 440 * 0.999 and lat["max"] >= 499 * 0.999, lat  # hdrh: 3 digits
    assert lag["p99"] >= 200 * 0.999, lag
    warnings = rep["generator"]["warnings"]
    assert any("send lag p99" in w for w in warnings), warnings


@pytest.mark.load  # the tails' upper bounds and the warning's wording need the generator on time
def test_stall_corrected_tails_match_the_analytic_values() -> None:
    # serve --stall 500ms/2s freezes the server for the last 500 ms of every 2 s. A 10 s run is 5
    # whole periods, so exactly 25 % of the intended send times fall in a stall, wherever its phase.
    # A request intended at x ms into a stall completes when the stall ends (+ the backlog drain,
    # ~1 ms here): corrected latency = 500 - x, x uniform on [0, 500). So
    #   P(L > y) = 0.25 (1 - y/500 ms)  ->  p90: 0.25 (1 - y/500) = 0.10 -> y = 300 ms,
    #                                       p99: 0.25 (1 - y/500) = 0.01 -> y = 480 ms.
    # The test allows 15 %; hdrh's 3 digits cost 0.1 %, the drain ~1 ms.
    #
    # The uncorrected view: only the requests already sent when a stall begins wait on the server;
    # later ones wait for a connection (send lag) and are sent after it. With c = 10 connections at
    # 1000 req/s that is at most 10 per stall, 50 of 10,000 = 0.5 % < 1 %, so the uncorrected p99 is
    # a post-stall request (~0.1-2 ms), far below 480 ms: we assert < corrected p99 / 5 (a closed
    # loop hiding the stall), and that the 0.5 % still show it (uncorrected max > 400 ms: the first
    # request of each stall waits ~all of it). With c >= 20 (>= 1 % of requests per stall) the
    # uncorrected p99 would be a stalled one too; c is chosen so the p99 shows the omission.
    with serve("--stall", "500ms/2s") as srv:
        rep = run("-w", "1", "-c", "10", "-R", "1000", "-d", "10s", srv.url, timeout=60)
        srv.stop()
    check_accounting(rep)
    few_late_sends(rep)
    assert scheduled(rep) == 10_000
    lat, unc, lag = rep["latency_ms"], rep["latency_uncorrected_ms"], rep["send_lag_ms"]
    assert abs(lat["p90"] / 300 - 1) < 0.15, lat
    assert abs(lat["p99"] / 480 - 1) < 0.15, lat
    assert lat["max"] <= 500 * 1.15, lat
    assert lat["p50"] < 50, lat  # 75 % never met a stall
    assert unc["p99"] < lat["p99"] / 5, (unc, lat)
    assert unc["max"] > 400, unc
    # The difference is send lag: requests waited for a connection while the server was frozen.
    assert lag["p90"] > 200, lag
    warnings = rep["generator"]["warnings"]
    assert any("send lag p99" in w and "every connection was busy" in w for w in warnings), warnings


# ---------------------------------------------------------------- fixed delay


def _fixed_delay_run() -> dict:
    with serve("--delay", "20ms") as srv:
        rep = run("-w", "1", "-c", "20", "-R", "200", "-d", "2s", srv.url)
        srv.stop()
    check_accounting(rep)
    only_late_sends(rep)
    lat, unc = rep["latency_ms"], rep["latency_uncorrected_ms"]
    assert min(lat["min"], unc["min"]) >= 20 - 0.016, (lat, unc)
    # never below the delay; corrected >= uncorrected request by request, so at the median too
    assert lat["p50"] >= 20 and lat["p50"] >= unc["p50"] - 0.016, (lat, unc)
    return rep


def test_fixed_delay_is_never_undercut() -> None:
    # The lower bounds of the test below: forced by the server, so they hold however busy the
    # machine; how close to the delay the median stays is the load test's.
    _fixed_delay_run()


@pytest.mark.load  # the upper bound is scheduler noise on the generator and the server
def test_fixed_delay_corrected_median_is_the_delay() -> None:
    # serve --delay 20ms answers each request 20 ms after it arrived. At 200 req/s Little's law
    # needs 200 x 0.02 = 4 connections busy on average; 20 leave ample room, so no request waits for
    # a connection and corrected ~= uncorrected ~= 20 ms + loopback RTT (~0.1 ms) + the server's
    # timer lateness (~0.05 ms, test_serve_faults) + send lag (~0.01 ms). Lower bound: a response can
    # never come before its 20 ms (hdrh buckets are 16 us wide at 20 ms: allow that). Upper bound
    # 20 ms + 10 %: the 2 ms are for scheduler noise on a shared host at the median, not the tail.
    rep = _fixed_delay_run()
    lat, unc = rep["latency_ms"], rep["latency_uncorrected_ms"]
    assert 20 <= lat["p50"] <= 22, lat
    assert abs(lat["p50"] - unc["p50"]) < 1, (lat, unc)  # nothing queued: the views agree
    assert rep["requests"]["completed"] >= 0.99 * 400 - 20  # minus up to 20 in flight at the end


# ---------------------------------------------------------------- stages


def _stages_run() -> list[int]:
    with serve() as srv:
        rep = run("-w", "1", "-c", "20", "--stages", "2s:1000,2s:3000,1s:0", srv.url)
        srv.stop()
    check_accounting(rep)
    only_late_sends(rep)
    assert abs(scheduled(rep) - 7500) <= 1  # Λ(5 s) = 7500; the last entry may round either way
    counts = [p["requests"] for p in rep["series"]]
    # one point per second, the last folded in unless the run ended >= 100 ms late (runner.py)
    assert len(counts) >= 5, rep["series"]
    assert sum(counts) == rep["requests"]["completed"]
    return counts


def test_stages_take_their_schedule() -> None:
    # What holds however busy the machine: the ramps' exact schedule, every entry accounted for.
    # Which second each completion falls in is the load test's.
    _stages_run()


@pytest.mark.load  # per-second counts move with when the generator got its CPU
def test_stages_follow_their_ramps_per_second() -> None:
    # --stages 2s:1000,2s:3000,1s:0 with no --rate: the first stage starts at its own rate (k6),
    # so 1000 req/s for 2 s, 1000 -> 3000 over 2 s, 3000 -> 0 over 1 s. Integrating per second:
    # [1000, 1000, 1500, 2500, 1500] = 7500 in all (Λ(5 s), exact for a constant schedule).
    # Each second's count shifts by what was drained late at its boundaries: <= ~20 ms of the rate
    # there (module docstring), i.e. <= 0.02 x (r(start) + r(end)) -> tolerance per second below, +1 %.
    expected = [1000, 1000, 1500, 2500, 1500]
    edges = [1000, 1000, 1000, 2000, 3000, 0]  # rate at t = 0, 1, ..., 5 s
    counts = _stages_run()
    assert len(counts) == 5, counts
    for k, (got, want) in enumerate(zip(counts, expected, strict=True)):
        tol = 0.02 * (edges[k] + edges[k + 1]) + 0.01 * want
        assert abs(got - want) <= tol, (k, counts, expected)


# ---------------------------------------------------------------- multi-worker splits


def test_two_workers_split_the_rate_and_add_up() -> None:
    # -w 2 -R 4000 -c 20: each worker gets 10 connections and 2000 req/s (plan.py splits the rate in
    # proportion to connections). Both workers start at the coordinator's common start_ns and run
    # 2 s, so they take exactly 4000 entries each; the per-worker rows sum to the report's totals.
    with serve() as srv:
        rep = run("-w", "2", "-c", "20", "-R", "4000", "-d", "2s", srv.url)
        counts = srv.stop()
    check_accounting(rep)
    only_late_sends(rep)
    assert len(rep["workers"]) == 2
    assert [w["started"] + w["not_sent"] for w in rep["workers"]] == [4000, 4000]
    assert rep["requests"]["completed"] <= counts["responses"] <= rep["requests"]["started"]
    # the rates achieved (within 1 %) need the CPUs: test_two_workers_achieve_their_rates (load)


@pytest.mark.load  # achieved rates: the generator must have its CPU
def test_two_workers_achieve_their_rates() -> None:
    with serve() as srv:
        rep = run("-w", "2", "-c", "20", "-R", "4000", "-d", "2s", srv.url)
        srv.stop()
    check_accounting(rep)
    few_late_sends(rep)
    for w in rep["workers"]:
        assert abs(w["completed"] / w["elapsed_s"] / 2000 - 1) < 0.01, w
    assert abs(achieved_rate(rep) / 4000 - 1) < 0.01, rep["requests"]


def test_odd_rate_split_keeps_the_remainder() -> None:
    # -R 1001 over 2 workers: 500.5 req/s each (a float split), 1001 entries each in 2 s, 2002 in
    # all = R x d. An integer split would lose 1 req/s (2000 entries); per-worker rounding may add at
    # most one entry per worker (ceil(r_i x d)), never lose one.
    with serve() as srv:
        rep = run("-w", "2", "-c", "4", "-R", "1001", "-d", "2s", srv.url)
        srv.stop()
    check_accounting(rep)
    total = scheduled(rep)
    assert 2002 <= total < 2002 + 2, total
    assert sum(w["started"] + w["not_sent"] for w in rep["workers"]) == total


# ---------------------------------------------------------------- arrivals and bounds


def _poisson_run() -> tuple[dict, int, int]:
    rate, d = 2000, 3
    want = len(_core.pacing_times(rate=float(rate), arrival=1, seed=0, duration_ns=d * S))
    assert abs(want - rate * d) < 4 * math.sqrt(rate * d)
    with serve() as srv:
        rep = run(
            "-w", "1", "-c", "20", "-R", str(rate), "--arrival", "poisson", "-d", f"{d}s", srv.url
        )
        srv.stop()
    check_accounting(rep)
    only_late_sends(rep)
    assert rep["config"]["arrival"] == "poisson"
    assert scheduled(rep) == want
    assert want != rate * d
    return rep, rate, d


def test_poisson_arrivals_hit_the_mean_rate() -> None:
    # --arrival poisson: the seeded schedule (seed 0 for worker 0) is deterministic, so the run must
    # take exactly the entries pacing_times() computes for it; that count is a Poisson(6000) draw
    # (sd 77): within 4 sd = 5.2 % of the mean rate. A constant schedule would take exactly 6000.
    # That the completions kept up (the load test below) needs the CPU.
    _poisson_run()


@pytest.mark.load  # achieved rate: the generator must have its CPU
def test_poisson_arrivals_are_served_at_the_mean_rate() -> None:
    rep, rate, d = _poisson_run()
    few_late_sends(rep)
    assert abs(achieved_rate(rep) / rate - 1) < 4 * math.sqrt(rate * d) / (rate * d) + 0.01


def test_count_with_a_rate_stops_after_n() -> None:
    # -n 1000 -R 2000: exactly 1000 requests, all completed, taking 1000/2000 = 0.5 s of schedule
    # (the last is due at 0.4995 s, plus its RTT and process start-up of the run itself is not
    # counted in duration_s); the server saw exactly 1000.
    with serve() as srv:
        rep = run("-w", "1", "-c", "10", "-R", "2000", "-n", "1000", srv.url)
        counts = srv.stop()
    check_accounting(rep)
    assert rep["requests"]["started"] == 1000 and rep["requests"]["completed"] == 1000
    assert rep["requests"]["not_sent"] == 0 and rep["requests"]["in_flight"] == 0
    assert counts["requests"] == counts["responses"] == 1000
    assert 0.499 <= rep["duration_s"] < 5.0, rep["duration_s"]  # 5 s: a hang guard
