"""Fault injection of the built-in target: delays, stalls, status mix, close-every."""

from __future__ import annotations

import collections
import selectors
import statistics
import time

import pytest

from serve_helpers import Client, connect, get, header, running, settled, timed_get

MS = 1_000_000


def _fixed_delay_run() -> tuple[list[float], dict[str, int]]:
    with running(delay_ns=20 * MS) as srv:
        s = connect(srv)
        lat = [timed_get(s) for _ in range(6)]
        k = settled(srv, "delayed", 6)
    return lat, k


def test_fixed_delay() -> None:
    lat, k = _fixed_delay_run()
    # the server's own timer self-check: when each delayed response was written vs its due time
    assert k["delayed"] == 6
    assert k["late_ns_max"] >= k["late_ns_sum"] / 6
    assert min(lat) >= 0.020, lat  # never early (how late: test_fixed_delay_is_on_time, load)


@pytest.mark.load  # how late a timer fires and a client reads depends on the CPUs being free
def test_fixed_delay_is_on_time() -> None:
    lat, k = _fixed_delay_run()
    assert k["late_ns_sum"] / 6 < 5 * MS
    assert statistics.median(lat) < 0.020 + 0.005, lat
    assert max(lat) < 0.020 + 0.050, lat


def test_delay_applies_to_each_pipelined_request_in_order() -> None:
    # Three pipelined requests with a 500 ms delay: delays that run concurrently from arrival
    # answer all three after ~0.5 s; one after another they would take at least 1.5 s. 0.5 s of
    # room between the two for a busy machine.
    with running(delay_ns=500 * MS) as srv:
        s = connect(srv)
        t0 = time.perf_counter()
        s.sendall(get(method="HEAD") + get() + get(method="HEAD"))
        c = Client(s)
        for m in ("HEAD", "GET", "HEAD"):
            resp, _ = c.expect(m)
            assert resp.status_code == 200
        elapsed = time.perf_counter() - t0
    assert 0.500 <= elapsed < 1.0, elapsed


def _delays(**kw: object) -> list[float]:
    n = int(kw.pop("n"))  # type: ignore[call-overload]
    with running(**kw) as srv:
        s = connect(srv)
        return [timed_get(s) for _ in range(n)]


UNIFORM = {"delay_dist": 1, "delay_a_ns": 5 * MS, "delay_b_ns": 15 * MS, "seed": 3, "n": 30}
EXPONENTIAL = {"delay_dist": 2, "delay_a_ns": 2 * MS, "seed": 5, "n": 80}


def test_uniform_delay() -> None:
    # Seeded: the server's 30 draws are fixed. A latency is its draw plus the loopback and
    # whatever a busy machine adds, never less: so the lower bounds hold on any machine.
    lat = _delays(**UNIFORM)
    assert min(lat) >= 0.005, lat
    assert max(lat) > 0.012, lat  # the largest of 30 draws from [5, 15) ms: it is random
    assert statistics.mean(lat) > 0.007, lat


def test_exponential_delay_mean() -> None:
    lat = _delays(**EXPONENTIAL)
    # sd of the mean of 80 exponentials with mean 2 ms is 0.22 ms
    assert statistics.mean(lat) > 0.0013, statistics.mean(lat)
    assert max(lat) > 0.004  # an exponential tail exists (P(all 80 below 4 ms) ~ 1e-5)


@pytest.mark.load  # upper bounds: loopback and scheduling add to every latency when busy
def test_random_delays_are_not_stretched() -> None:
    lat = _delays(**UNIFORM)
    assert max(lat) < 0.015 + 0.030, lat
    assert max(lat) - min(lat) > 0.004, lat
    assert statistics.mean(lat) < 0.015, lat
    lat = _delays(**EXPONENTIAL)
    # sd of the mean of 80 exponentials with mean 2 ms is 0.22 ms; allow loopback overhead on top
    assert statistics.mean(lat) < 0.0035, statistics.mean(lat)


def _statuses(port_srv_kw: dict[str, object], n: int, batch: int = 100) -> list[int]:
    with running(**port_srv_kw) as srv:
        s = connect(srv)
        c = Client(s)
        out: list[int] = []
        while len(out) < n:
            k = min(batch, n - len(out))
            s.sendall(get() * k)
            for _ in range(k):
                resp, _ = c.expect()
                out.append(resp.status_code)
        counts = srv.status_counts()
    assert {k: v for k, v in counts.items() if v} == dict(collections.Counter(out))
    return out


def test_status_mix_proportions_and_seed() -> None:
    n = 2000
    kw: dict[str, object] = {"statuses": [(200, 80), (500, 15), (503, 5)], "seed": 11}
    seq = _statuses(kw, n)
    got = collections.Counter(seq)
    assert set(got) <= {200, 500, 503}
    # binomial sd: 200 -> 17.9, 500 -> 16.0, 503 -> 9.7; allow ~5 sd
    assert abs(got[200] - 1600) < 90, got
    assert abs(got[500] - 300) < 80, got
    assert abs(got[503] - 100) < 50, got
    assert _statuses(kw, 300) == seq[:300]  # same seed, same order -> same statuses
    assert _statuses({**kw, "seed": 12}, 300) != seq[:300]


def test_close_every() -> None:
    with running(close_every=3) as srv:
        s = connect(srv)
        c = Client(s)
        for i in range(3):
            s.sendall(get())
            resp, _ = c.expect()
            assert header(resp, b"connection") == (b"close" if i == 2 else None)
        assert c.at_eof()

        s = connect(srv)  # pipelined beyond N: exactly N answers, then the close
        s.sendall(get() * 5)
        c = Client(s)
        for _ in range(3):
            resp, _ = c.expect()
        assert header(resp, b"connection") == b"close"
        assert c.at_eof()
        assert settled(srv, "responses", 6)["responses"] == 6


def test_a_stall_holds_every_connection_until_it_ends() -> None:
    """600 ms every 1 s, counted from the server's first run(): requests that arrive inside a stall
    on three connections are all answered only after it ends. The server's start lies between two
    of our clock readings, so the part of each stall window that is certain is known; requests are
    sent inside it (in the next period if a busy machine made us miss one)."""
    period, stall = 1.0, 0.6
    t_a = time.monotonic()  # before the server's run() starts
    with running(stall_ns=600 * MS, stall_every_ns=1000 * MS) as srv:
        socks = [connect(srv) for _ in range(3)]
        clients = [Client(s) for s in socks]
        socks[0].sendall(get())
        assert clients[0].expect()[0].status_code == 200
        t_b = time.monotonic()  # after it started: it answered
        for k in range(1, 4):
            start, end = t_b + k * period - stall, t_a + k * period  # certainly stalled in between
            if time.monotonic() >= start:
                continue
            time.sleep(start - time.monotonic())
            for s in socks:
                s.sendall(get())
            missed = time.monotonic() >= end  # they may have left after the stall
            done = []
            for c in clients:
                assert c.expect()[0].status_code == 200
                done.append(time.monotonic())
            if missed:
                continue  # answered (read above): try the next stall
            assert min(done) >= end, (done, end)  # none answered before the stall ended
            break
        else:
            pytest.skip("no send landed inside a certain stall window (a very busy machine)")
        assert srv.counters()["stalls"] >= 1


@pytest.mark.load  # a paced client: which sends fall in the stall, and when it reads, need the CPU
def test_stall_freezes_the_whole_server() -> None:
    """300 ms every 1 s (the last 300 ms of each period): requests sent at a steady pace on separate
    connections; those sent inside the stall are all answered together right after it ends, so each
    sees the remaining stall as latency; the others are answered at once."""
    pace, n = 0.030, 45  # covers 1.35 s: exactly one stall window, at 0.7..1.0 s after the start
    with running(stall_ns=300 * MS, stall_every_ns=1000 * MS) as srv:
        socks = [connect(srv) for _ in range(n)]
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        sent: dict[int, float] = {}
        done: dict[int, float] = {}
        got = collections.defaultdict(bytes)
        t0 = time.monotonic()
        i = 0
        while len(done) < n and time.monotonic() - t0 < 6:
            now = time.monotonic()
            if i < n and now >= t0 + i * pace:
                socks[i].send(get())
                sent[i] = time.monotonic()
                i += 1
                continue
            timeout = max(0.0, t0 + i * pace - now) if i < n else 0.1
            for key, _ in sel.select(timeout):
                j = key.data
                got[j] += socks[j].recv(4096)
                if got[j].endswith(b"hello world\n") and j not in done:
                    done[j] = time.monotonic()
        stalls = srv.counters()["stalls"]
    assert len(done) == n
    lat = {j: done[j] - sent[j] for j in range(n)}
    stalled = sorted(j for j in range(n) if lat[j] > 0.05)
    assert 6 <= len(stalled) <= 13, lat  # 300 ms / 30 ms = 10 expected
    assert stalled == list(range(stalled[0], stalled[-1] + 1))  # one contiguous window
    ends = [done[j] for j in stalled]
    assert max(ends) - min(ends) < 0.030, ends  # all answered right after the stall ends
    assert 0.20 < max(lat.values()) < 0.30 + 0.05
    assert stalls >= 1
