"""Weighted endpoints and status checks in the native engine (loop.pxi): the alias table, the
traffic mix as the server saw it, exact per-endpoint counters, and checks counted apart from
errors. Real sockets: nginx (with its access log) and the built-in target."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from barfast.engine import _core
from barfast.engine.kinds import FLAG_CHECK_FAIL
from barfast.ring import Ring
from test_engine import check_invariant, drain, make_engine, request_bytes


def engine(port: int, endpoints: list, ring: Ring | None = None, **kw: object) -> _core.Engine:
    kw.setdefault("connections", 8)
    return make_engine(port, ring, endpoints=endpoints, **kw)


@pytest.mark.parametrize(
    "weights", [[70, 25, 5], [1], [1, 1], [3, 0.5, 0.5, 1e-3, 96], [1] * 7 + [1000]]
)
def test_alias_table_gives_each_endpoint_its_weight(weights: list[float]) -> None:
    # Column i keeps itself with probability keep_i and otherwise yields alias_i; each column is
    # chosen with probability 1/n. Summed, every endpoint must come out at exactly its weight.
    table = _core.alias_table(weights)
    n = len(weights)
    got = [0.0] * n
    for i, (keep, alias) in enumerate(table):
        got[i] += keep / n
        got[alias] += (1 - keep) / n
    want = [w / sum(weights) for w in weights]
    assert got == pytest.approx(want, abs=1e-9)


def test_the_mix_is_what_the_server_saw(nginx) -> None:
    # 70/25/5 over three paths: nginx's access log holds exactly the per-endpoint counts the
    # engine reports, the samples carry the same endpoint ids, and the shares are within 4
    # standard deviations of the binomial expectation.
    weights = [70, 25, 5]
    paths = ["/home", "/item", "/order"]
    eps = [
        (request_bytes(nginx.port, p), False, w, ()) for p, w in zip(paths, weights, strict=True)
    ]
    nginx.truncate_log()
    ring = Ring.create(1 << 16)
    n = 30_000
    eng = engine(nginx.port, eps, ring, requests=n, seed=7)
    eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["completed"] == n and c["errors"] == 0, c
    per = eng.endpoint_counts()
    assert sum(p["started"] for p in per) == c["started"]
    assert [p["errors"] for p in per] == [0, 0, 0]
    assert nginx.wait_logged(n) == n
    logged = Counter(
        re.search(rb'"GET (\S+) HTTP', line).group(1).decode()  # type: ignore[union-attr]
        for line in (nginx.run_dir / "access.log").read_bytes().splitlines()
    )
    assert {p: logged[p] for p in paths} == {
        p: e["completed"] for p, e in zip(paths, per, strict=True)
    }
    s = drain(ring)
    assert np.bincount(s["endpoint"], minlength=3).tolist() == [e["completed"] for e in per]
    for w, e in zip(weights, per, strict=True):
        p = w / sum(weights)
        assert abs(e["completed"] - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (per, weights)


def test_a_seed_fixes_the_mix_of_one_connection(nginx) -> None:
    # One connection, a count bound: the sequence of endpoints is the PRNG's alone.
    eps = [(request_bytes(nginx.port, p), False, w, ()) for p, w in (("/a", 1), ("/b", 2))]
    runs = []
    for seed in (1, 1, 2):
        ring = Ring.create(1 << 12)
        engine(nginx.port, eps, ring, connections=1, requests=500, seed=seed).run()
        runs.append(drain(ring)["endpoint"].tolist())
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_status_checks_are_counted_apart_from_errors() -> None:
    # The built-in target answers 500 to a seeded tenth of the requests. A 2xx check fails
    # exactly on those: the responses stay completed (and in the samples, flagged), the
    # failures are counted per endpoint and in total, and nothing is an error.
    from serve_helpers import running

    with running("127.0.0.1", statuses=[(200, 9), (500, 1)], seed=3) as srv:
        eps = [
            (request_bytes(srv.port, "/checked"), False, 1, [(200, 299)]),
            (request_bytes(srv.port, "/unchecked"), False, 1, []),
        ]
        ring = Ring.create(1 << 15)
        eng = engine(srv.port, eps, ring, requests=20_000, seed=11)
        eng.run()
    c = eng.counters()
    check_invariant(c)
    assert c["errors"] == 0 and c["completed"] == 20_000, c
    per = eng.endpoint_counts()
    s = drain(ring)
    flagged = (s["flags"] & FLAG_CHECK_FAIL) != 0
    checked = s["endpoint"] == 0
    assert int((checked & (s["status"] == 500)).sum()) == per[0]["check_failed"]
    assert int(flagged.sum()) == per[0]["check_failed"] == c["check_failed"]
    assert not (flagged & ~checked).any() and per[1]["check_failed"] == 0
    assert (s["error"] == 0).all()
    n, p = per[0]["completed"], 0.1
    assert abs(per[0]["check_failed"] - n * p) <= 4 * math.sqrt(n * p * (1 - p)), per


@pytest.mark.parametrize(
    ("endpoints", "match"),
    [
        ([(b"GET / HTTP/1.1\r\n\r\n", False, 0, ())], "weight must be > 0"),
        ([(b"GET / HTTP/1.1\r\n\r\n", False, -1, ())], "weight must be > 0"),
        ([(b"", False, 1, ())], "non-empty bytes"),
        ([(b"x", False, 1, [(200, 299)] * 9)], "at most 8 status ranges"),
        ([(b"x", False, 1, [(300, 200)])], "bad status range"),
        ([], "endpoints: 1 to 4096"),
    ],
)
def test_bad_endpoint_tables_are_refused(endpoints: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        engine(9, endpoints, connections=1)
