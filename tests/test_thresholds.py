"""Thresholds: the grammar and its errors, the figures on merged data against hdrh as the
reference, and real runs against `barfast serve --delay 2ms` (pass and fail on both sides of the
known value, endpoint and tag scopes, abort_on_fail, JUnit XML validated against the Ant schema)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from barfast.cli import run_app
from barfast.result import Merger
from barfast.slo.evaluate import Endpoint, measure, resolve
from barfast.slo.figures import cumulative, sparse, window
from barfast.slo.grammar import ThresholdError, parse_threshold
from barfast.slo.watch import Watch
from conftest import barfast_cmd
from test_endpoint_results import Worker, records, reference, views
from test_open_loop import Served

XSD = Path(__file__).parent / "data" / "JUnit.xsd"
MS = 1_000_000


def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(barfast_cmd(*args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def served_2ms():
    s = Served("--delay", "2ms")
    yield s
    s.stop()


# -- the grammar ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr, metric, view, op, value, scope",
    [
        ("p99<200ms", "p99", "latency", "<", 200 * MS, ""),
        ("p99.9<=1s", "p99.9", "latency", "<=", 10**9, ""),
        ("mean < 50ms", "mean", "latency", "<", 50 * MS, ""),
        ("max<1500us", "max", "latency", "<", 1_500_000, ""),
        ("error_rate<0.5%", "error_rate", "", "<", 0.005, ""),
        ("error_rate<0.01", "error_rate", "", "<", 0.01, ""),
        ("check_rate>99.9%", "check_rate", "", ">", 0.999, ""),
        ("rps>=1000", "rps", "", ">=", 1000, ""),
        ("send_lag_p99<1ms", "send_lag_p99", "send_lag", "<", MS, ""),
        ("ttfb_p95<300us", "ttfb_p95", "ttfb", "<", 300_000, ""),
        ("p95{endpoint=login}<300ms", "p95", "latency", "<", 300 * MS, "{endpoint=login}"),
        ("error_rate{env=staging}<1%", "error_rate", "", "<", 0.01, "{env=staging}"),
        ("requests==6000", "requests", "", "==", 6000, ""),
    ],
)
def test_grammar(expr: str, metric: str, view: str, op: str, value: float, scope: str) -> None:
    t = parse_threshold(expr)
    assert (t.metric, t.view, t.op, t.scope) == (metric, view, op, scope)
    assert t.value == pytest.approx(value)
    assert not t.abort_on_fail


def test_options_inline_and_given() -> None:
    t = parse_threshold("p99<2ms, abort_on_fail, delay=1s, window=3s")
    assert (t.abort_on_fail, t.delay_ns, t.window_ns) == (True, 10**9, 3 * 10**9)
    t = parse_threshold("p99<2ms", abort_on_fail=True, delay="500ms", window=2)
    assert (t.abort_on_fail, t.delay_ns, t.window_ns) == (True, 500 * MS, 2 * 10**9)


BAD = [
    ("p99<200", "give a unit", 7),
    ("p99 200ms", "expected one of < <= > >= ==", 4),
    ("p101<1ms", "at most 100", 1),
    ("p0<1ms", "above 0", 1),
    ("latency<1ms", "unknown metric 'latency'", 0),
    ("<1ms", "expected a metric name", 0),
    ("p99<", "expected a number", 4),
    ("p99<fast", "expected a number", 4),
    ("p99<1parsec", "unknown time unit 'parsec'", 5),
    ("error_rate<5", "a fraction 0..1 or a percentage", 11),
    ("error_rate<150%", "at most 100%", 11),
    ("error_rate<1ms", "a percentage (1%) or a fraction", 12),
    ("rps>10ms", "takes a plain number", 6),
    ("p99{endpoint}<1ms", "no '='", 4),
    ("p99{endpoint=login<1ms", "unclosed '{'", 22),
    ("p99{endpoint=}<1ms", "value is empty", 13),
    ("p99<1ms, bogus", "unknown option 'bogus'", 9),
    ("p99<1ms, delay=soon", "takes a duration", 15),
    ("p99<1ms, window=100ms", "window is 1s to 1h", 8),
    ("p99=<1ms", "expected one of", 3),
]


@pytest.mark.parametrize("expr, words, pos", BAD)
def test_bad_threshold_is_one_line_with_a_caret_exit_2(
    expr: str, words: str, pos: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run_app(["run", "http://127.0.0.1:9/", "-d", "1s", "--threshold", expr])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2, err  # the error, then the caret under the fault
    assert lines[0].startswith(f"barfast: error: bad threshold '{expr}': ") and words in lines[0]
    caret = lines[1]
    assert caret.strip() == "^"
    assert caret.index("^") == len("barfast: error: bad threshold '") + pos, err
    assert "Traceback" not in err


def test_bad_threshold_from_the_real_cli_process() -> None:
    p = run("run", "http://127.0.0.1:9/", "--threshold", "p99<200")
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert len(lines) == 2 and "give a unit" in lines[0] and lines[1].strip() == "^", p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threshold", ""], "empty"),
        (["--threshold", "send_lag_p99<1ms"], "send lag exists in open loop only"),
        (["--threshold", "p99{endpoint=login}<1ms"], "needs a scenario"),
        (["--threshold", "p99{env=prod}<1ms", "--tag", "env=staging"], "no request and no run tag"),
        (["--threshold", "check_rate>99%"], "no request in its scope has checks"),
        (["--junit", "/tmp/x.xml"], "--junit writes one testcase per threshold"),
        (["--threshold", "p99<1ms", "--junit", "/nonexistent/dir/x.xml"], "cannot write JUnit"),
    ],
)
def test_bad_threshold_setups_exit_2_before_any_load(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run_app(["run", "http://127.0.0.1:9/", "-d", "1s", "-w", "1", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and words in err, err


def test_scenario_threshold_error_points_at_file_line_col(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        textwrap.dedent("""\
        target: http://127.0.0.1:9
        requests: [{path: /}]
        thresholds:
          - p99<200ms
          - "error_rate<5"
        """)
    )
    p = run("run", str(f))
    assert p.returncode == 2
    # line 5, the string starts at column 5 (its quote at 5), the 5 at offset 11: column 17
    assert p.stderr.strip().splitlines() == [
        f"barfast: error: {f}:5:17: bad threshold 'error_rate<5': "
        "error_rate is a fraction 0..1 or a percentage: 5%?"
    ], p.stderr
    f.write_text("target: http://127.0.0.1:9\nthresholds: [{expr: p99<1ms, abort: true}]\n")
    p = run("run", str(f))
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert f"{f}:2:" in p.stderr, p.stderr


def test_python_scenario_thresholds_are_checked() -> None:
    import barfast
    from barfast.scenario.model import ScenarioError

    sc = barfast.Scenario(requests=[barfast.Request("a")], target="http://x", thresholds=["p99<1s"])
    assert sc.thresholds[0].metric == "p99"
    with pytest.raises(ScenarioError, match="bad threshold 'p99<1'"):
        barfast.Scenario(requests=[barfast.Request("a")], target="http://x", thresholds=["p99<1"])
    with pytest.raises(ThresholdError):
        parse_threshold("p99<1")


# -- figures on merged data, against hdrh ------------------------------------------------------
def _merged(workers: int = 2, seconds: int = 3, endpoints: int = 3):
    rng = np.random.default_rng(5)
    m = Merger()
    every = []
    for wid in range(workers):
        w = Worker(wid, endpoints)
        for sec in range(seconds):
            a = records(rng, 1200, endpoints, seq0=sec * 1200)
            every.append((sec, a))
            m.add(w.snapshot(a, sec, final=sec == seconds - 1))
    return m, every


def _plan(exprs: list[str], endpoints: int = 3, tags: dict[int, dict[str, str]] | None = None):
    eps = [Endpoint(n, (tags or {}).get(i, {}), False) for i, n in enumerate("abc"[:endpoints])]
    return resolve([parse_threshold(e) for e in exprs], eps, {}, True, True)


def test_figures_are_the_merged_histograms_of_every_worker() -> None:
    m, every = _merged()
    allrec = np.concatenate([a for _, a in every])
    plan = _plan(
        ["p99<1s", "p50{endpoint=b}<1s", "mean{grp=x}<1s", "max<1s", "min<1s", "errors<1"],
        tags={0: {"grp": "x"}, 2: {"grp": "x"}},
    )
    layout = m.hists["latency"]

    def fig(i: int):
        return cumulative(
            m, plan.scopes[i], plan.views(i), plan.checked, plan.main_view, plan.endpoint_count
        )

    lat = views(allrec)["latency"]
    ref = reference(lat)
    assert measure(plan.thresholds[0], fig(0), layout) == ref.get_value_at_percentile(99.0)
    assert measure(plan.thresholds[3], fig(3), layout) == ref.get_max_value()
    assert measure(plan.thresholds[4], fig(4), layout) == ref.get_min_value()
    b = views(allrec[allrec["endpoint"] == 1])["latency"]
    assert measure(plan.thresholds[1], fig(1), layout) == reference(b).get_value_at_percentile(50)
    x = views(allrec[allrec["endpoint"] != 1])["latency"]
    assert measure(plan.thresholds[2], fig(2), layout) == pytest.approx(
        reference(x).get_mean_value(), rel=1e-12
    )
    assert plan.scopes[2] == (0, 2)
    assert measure(plan.thresholds[5], fig(5), layout) == int((allrec["error"] != 0).sum())
    # the same figures as the report's
    rep = m.report({"open_loop": True})
    assert measure(plan.thresholds[0], fig(0), layout) / 1e6 == rep["latency_ms"]["p99"]


def test_window_is_exactly_the_samples_between_two_states() -> None:
    rng = np.random.default_rng(9)
    m = Merger()
    plan = _plan(["p90<1s"])
    t = plan.thresholds[0]
    w0, w1 = Worker(0, 3), Worker(1, 3)
    states = []
    batches = []
    for sec in range(4):
        a, b = records(rng, 900, 3, seq0=sec * 900), records(rng, 900, 3, seq0=sec * 900)
        m.add(w0.snapshot(a, sec))
        m.add(w1.snapshot(b, sec))
        batches.append(np.concatenate([a, b]))
        states.append(sparse(cumulative(m, None, ("latency",), frozenset(), "latency", 3)))
    now = cumulative(m, None, ("latency",), frozenset(), "latency", 3)
    win = window(now, states[1])  # seconds 2 and 3
    want = reference(views(np.concatenate(batches[2:]))["latency"])
    assert measure(t, win, m.hists["latency"]) == want.get_value_at_percentile(90)
    assert win.counters["completed"] == sum(
        int(((x["error"] == 0) & (x["status"] != 0)).sum()) for x in batches[2:]
    )


def test_watch_aborts_on_a_failing_window_only_after_the_delay() -> None:
    rng = np.random.default_rng(3)
    m, wk = Merger(), Worker(0, 3)
    m.add(wk.snapshot(records(rng, 500, 3), 0))
    plan = _plan(["p50<1us, abort_on_fail, delay=2s, window=1s", "p50<1000s, abort_on_fail"])
    w = Watch(plan)
    assert w.tick(m, 1.0) is None  # before the delay: no verdict
    assert w.tick(m, 2.5) is None  # nothing merged in the last second: no verdict either
    m.add(wk.snapshot(records(rng, 500, 3, seq0=500), 1))
    reason = w.tick(m, 3.0)
    assert reason and "p50<1us" in reason and list(w.aborted) == [0]
    assert w.aborted[0]["at_s"] == 3.0 and w.aborted[0]["window_s"] == 2.0
    assert w.tick(m, 4.0) is None  # one abort is enough


# -- real runs -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_pass_and_fail_on_both_sides_of_a_known_delay(served_2ms: Served, tmp_path: Path) -> None:
    junit = tmp_path / "t.xml"
    out = tmp_path / "r.json"
    p = run(
        "run", served_2ms.url, "-d", "1s", "-c", "4", "-w", "2",
        "--threshold", "p50<3ms", "--threshold", "p50<1ms", "--threshold", "error_rate<1%",
        "--threshold", "mean>1ms", "--threshold", "rps>1",
        "--junit", str(junit), "-o", str(out),
    )  # fmt: skip
    assert p.returncode == 99, p.stderr
    rep = json.loads(out.read_text())
    rows = {r["threshold"]: r for r in rep["thresholds"]}
    assert [r["passed"] for r in rep["thresholds"]] == [True, False, True, True, True]
    assert rows["p50<3ms"]["measured"] == rows["p50<1ms"]["measured"] == rep["latency_ms"]["p50"]
    assert rows["mean>1ms"]["measured"] == rep["latency_ms"]["mean"]
    assert rows["error_rate<1%"]["measured"] == 0.0
    assert "threshold failed: p50<1ms (exit 99)" in p.stderr
    text = p.stdout
    assert "Thresholds: 4 passed, 1 failed" in text
    assert any(ln.startswith("  ✓ p50<3ms") and "p50 = " in ln for ln in text.splitlines())
    assert any(ln.startswith("  ✗ p50<1ms") for ln in text.splitlines())
    # JUnit: valid against the Ant JUnit schema, one testcase per threshold, one failure
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(str(junit))
    schema.assertValid(doc)
    cases = doc.findall("testcase")
    assert [c.get("name") for c in cases] == [r["threshold"] for r in rep["thresholds"]]
    assert doc.getroot().get("failures") == "1" and doc.getroot().get("tests") == "5"
    assert [c.find("failure") is not None for c in cases] == [False, True, False, False, False]
    # all passing: exit 0
    p = run("run", served_2ms.url, "-d", "500ms", "-c", "2", "-w", "1", "-q",
            "--threshold", "p50<3ms", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["thresholds"][0]["passed"] is True


@pytest.mark.slow
def test_counts_are_merged_across_workers_not_per_worker(served_2ms: Served) -> None:
    p = run("run", served_2ms.url, "-n", "2000", "-c", "4", "-w", "2", "-q", "--json",
            "--threshold", "requests==2000", "--threshold", "requests<=1000")  # fmt: skip
    rep = json.loads(p.stdout)
    assert [r["passed"] for r in rep["thresholds"]] == [True, False], rep["thresholds"]
    assert all(w["completed"] < 2000 for w in rep["workers"]) and len(rep["workers"]) == 2
    assert p.returncode == 99


@pytest.mark.slow
def test_endpoint_and_tag_scopes(served_2ms: Served, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        textwrap.dedent(f"""\
        target: {served_2ms.url}
        load: {{connections: 4, requests: 1500, workers: 2}}
        tags: {{env: staging}}
        requests:
          - {{name: good, path: /a, tags: {{tier: front}}, checks: [{{status: 2xx}}]}}
          - {{name: bad, path: /b, checks: [{{status: 5xx}}]}}
        thresholds:
          - check_rate{{endpoint=good}}>=100%
          - check_rate{{endpoint=bad}}>0%
          - "p50{{endpoint=good}}<3ms"
          - requests{{tier=front}}>0
          - error_rate{{env=staging}}<1%
        """)
    )
    p = run("run", str(f), "-q", "--json", "--threshold", "check_rate<100%")
    assert p.returncode == 99, p.stderr
    rep = json.loads(p.stdout)
    got = {r["threshold"]: r for r in rep["thresholds"]}
    assert [r["passed"] for r in rep["thresholds"]] == [True, False, True, True, True, True]
    good, bad = rep["endpoints"]["good"], rep["endpoints"]["bad"]
    assert got["p50{endpoint=good}<3ms"]["measured"] == good["latency_ms"]["p50"]
    assert got["requests{tier=front}>0"]["measured"] == (
        good["requests"]["completed"] + good["requests"]["errors"]
    )
    assert got["check_rate{endpoint=bad}>0%"]["measured"] == 0.0
    total = good["checks"]["passed"] + bad["checks"]["passed"] + bad["checks"]["failed"]
    assert got["check_rate<100%"]["measured"] == pytest.approx(good["checks"]["passed"] / total)
    assert got["check_rate{endpoint=good}>=100%"]["scope"] == {"endpoint": "good"}
    p = run("run", str(f), "-q", "--threshold", "p50{endpoint=nope}<1ms")
    assert p.returncode == 2 and "no endpoint 'nope'" in p.stderr, p.stderr


def test_send_lag_per_endpoint_in_open_loop(served_2ms: Served, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        textwrap.dedent(f"""\
        target: {served_2ms.url}
        load: {{connections: 4, rate: 400, duration: 500ms, workers: 2}}
        requests:
          - {{name: a, path: /a}}
          - {{name: b, path: /b}}
        thresholds: ["send_lag_p99{{endpoint=a}}<10s", "send_lag_max{{endpoint=b}}<1ns"]
        """)
    )
    p = run("run", str(f), "-q", "--json")
    assert p.returncode == 99, p.stderr
    rep = json.loads(p.stdout)
    a, b = rep["thresholds"]
    assert a["passed"] and not b["passed"]
    assert a["measured"] == rep["endpoints"]["a"]["send_lag_ms"]["p99"]
    assert b["measured"] == rep["endpoints"]["b"]["send_lag_ms"]["max"]
    for e in rep["endpoints"].values():
        assert e["send_lag_ms"]["count"] == e["requests"]["completed"] > 0


@pytest.mark.slow
def test_abort_on_fail_stops_every_worker_and_writes_every_report(
    served_2ms: Served, tmp_path: Path
) -> None:
    out, junit = tmp_path / "r.json", tmp_path / "t.xml"
    t0 = time.monotonic()
    p = run(
        "run", served_2ms.url, "-d", "60s", "-c", "4", "-w", "2",
        "--threshold", "p50<1ms, abort_on_fail, delay=1s, window=1s",
        "--threshold", "p50<3ms", "-o", str(out), "--junit", str(junit),
    )  # fmt: skip
    wall = time.monotonic() - t0
    assert p.returncode == 99, p.stderr
    assert wall < 30, wall  # stopped long before the planned 60 s (timing bound: the load test)
    rep = json.loads(out.read_text())
    first, second = rep["thresholds"]
    assert not first["passed"] and first["aborted"]["at_s"] >= 1.0
    assert second["passed"]
    assert "stopping the run (abort_on_fail)" in p.stderr
    assert rep["aborted"].startswith("threshold 'p50<1ms")
    # a clean stop: every worker sent its final snapshot, the counters add up
    assert len(rep["workers"]) == 2 and all(w["final"] and not w["lost"] for w in rep["workers"])
    req = rep["requests"]
    assert req["started"] == req["completed"] + req["errors"] + req["in_flight"]
    assert "✗ p50<1ms, abort_on_fail" in p.stdout and "stopped the run" in p.stdout
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(etree.parse(str(junit)))


@pytest.mark.load
def test_abort_on_fail_within_one_window_plus_one_second(served_2ms: Served) -> None:
    """Latency is bad from the start: the first check after the delay fails, and the run ends
    (every worker's final snapshot merged) within the window + 1 s of it."""
    delay_s, window_s = 2.0, 3.0
    p = run(
        "run", served_2ms.url, "-d", "60s", "-c", "4", "-w", "2", "-q", "--json",
        "--threshold", f"p50<1ms, abort_on_fail, delay={delay_s:g}s, window={window_s:g}s",
    )  # fmt: skip
    assert p.returncode == 99, p.stderr
    rep = json.loads(p.stdout)
    assert rep["duration_s"] <= delay_s + window_s + 1.0, rep["duration_s"]
    assert rep["thresholds"][0]["aborted"]["at_s"] <= delay_s + 1.0 + 0.5


@pytest.mark.slow
def test_passing_abort_on_fail_lets_the_run_finish(served_2ms: Served) -> None:
    p = run("run", served_2ms.url, "-d", "2s", "-c", "2", "-w", "1", "-q", "--json",
            "--threshold", "p50<1s, abort_on_fail, window=1s")  # fmt: skip
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["duration_s"] >= 1.9 and "aborted" not in rep
    assert rep["thresholds"][0]["passed"]


def test_python_api_thresholds(served_2ms: Served) -> None:
    import barfast

    r = barfast.run(
        served_2ms.url, duration="500ms", connections=2, workers=1,
        thresholds=["p50<3ms", {"expr": "p50<1ms"}],
    )  # fmt: skip
    assert [t.passed for t in r.thresholds] == [True, False]
    assert r.exit_code == 99 and not r.thresholds_passed
    assert r.thresholds[0].measured == r.raw["latency_ms"]["p50"]
