"""`barfast search` against a target with a known knee: `barfast serve --max-concurrency N --delay D`
serves at most N requests at once, each taking D, so its capacity is N / D. Bad inputs: one line,
exit 2. The search's own steps are tested as pure logic in test_search_logic.py."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from barfast.cli import run_app
from conftest import barfast_cmd
from test_open_loop import Served


@pytest.mark.slow
def test_serve_max_concurrency_queues_beyond_the_cap() -> None:
    # 8 connections, 2 in service, 20 ms each: the 4th..8th requests of a burst wait for a slot,
    # so latency is several service times and throughput is 2 / 20 ms = 100 req/s, not 400.
    srv = Served("--delay", "20ms", "--max-concurrency", "2")
    try:
        p = subprocess.run(
            barfast_cmd("run", srv.url, "-n", "80", "-c", "8", "-w", "1", "-q", "--json"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        srv.stop()
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["requests"]["completed"] == 80
    # 80 requests through 2 slots of 20 ms: at least 40 service times back to back
    assert rep["duration_s"] >= 0.8 - 0.05
    assert rep["latency_ms"]["p50"] >= 60  # 8 in flight over 2 slots: ~4 service times each


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "needs at least one --slo"),
        (["--slo", "p99<50"], "give a unit"),
        (["--slo", "p99<50ms, abort_on_fail"], "no abort_on_fail"),
        (["--slo", "p99<50ms", "--start-rate", "0"], "bad --start-rate"),
        (["--slo", "p99<50ms", "--start-rate", "fast"], "bad --start-rate"),
        (["--slo", "p99<50ms", "--start-rate", "500", "--max-rate", "100"], "above --max-rate"),
        (["--slo", "p99<50ms", "--step-duration", "100ms"], "at least 1s"),
        (["--slo", "p99<50ms", "--warmup", "2m"], "0 to 60s"),
        (["--slo", "p99<50ms", "--precision", "0%"], "between 0% and 100%"),
        (["--slo", "p99<50ms", "--noise", "lots"], "bad --noise"),
        (["--slo", "p99<50ms", "--max-steps", "1"], "at least 2"),
    ],
)
def test_bad_search_inputs_exit_2(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run_app(["search", "http://127.0.0.1:9/", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err.splitlines()[0] and "Traceback" not in err, err
    assert len(err.splitlines()) <= 2  # one line (and a threshold's caret line)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--max-concurrency", "4"], "needs a fixed --delay"),
        (["--delay", "1ms", "--delay-dist", "exp:1ms", "--max-concurrency", "4"], "fixed --delay"),
        (["--delay", "1ms", "--max-concurrency", "-1"], "bad --max-concurrency"),
    ],
)
def test_bad_serve_max_concurrency(args: list[str], words: str) -> None:
    p = subprocess.run(
        barfast_cmd("serve", "--addr", "127.0.0.1:0", *args),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and words in p.stderr, p.stderr


@pytest.mark.load
@pytest.mark.parametrize("round_", [1, 2, 3])
def test_search_finds_the_known_knee_within_10_percent_in_60_s(round_: int) -> None:
    cap, delay_ms = 40, 20  # capacity 40 / 20 ms = 2000 req/s
    knee = cap / (delay_ms / 1000)
    srv = Served("--delay", f"{delay_ms}ms", "--max-concurrency", str(cap))
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            barfast_cmd(
                "search", srv.url, "--slo", f"p99<{delay_ms * 3}ms", "--start-rate", "250",
                "--max-rate", "20000", "--step-duration", "2s", "--warmup", "500ms",
                "--precision", "5%", "--cooldown", "2s", "-c", "64", "--max-connections", "256",
                "-w", "1", "--json",
            ),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        srv.stop()
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["stop"] == "converged", doc
    assert abs(doc["answer_rps"] - knee) <= 0.1 * knee, (doc["answer_rps"], doc["steps"])
    assert took < 60, took


@pytest.mark.slow
def test_search_html_draws_the_latency_vs_rate_curve_in_chromium(tmp_path) -> None:
    from test_report_outputs import CHROMEDRIVER, CHROMIUM, PIXELS_JS, _assert_not_blank

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (tests/run.sh installs them)")
    # capacity 4 / 20 ms = 200 req/s: 100 holds, the ramp's 200 and 400 fail
    srv = Served("--delay", "20ms", "--max-concurrency", "4")
    try:
        p = subprocess.run(
            barfast_cmd(
                "search", srv.url, "--slo", "p99<60ms", "--start-rate", "100",
                "--max-rate", "1000", "--step-duration", "1s", "--warmup", "0s",
                "--cooldown", "0s", "--max-steps", "3", "-c", "16", "-w", "1",
                "-o", str(tmp_path / "s.json"), "--html", str(tmp_path / "s.html"),
            ),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        srv.stop()
    assert p.returncode in (0, 99), p.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    page = (tmp_path / "s.html").read_text()
    assert "<script src" not in page and "<link" not in page
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        d.set_window_size(1300, 1600)
        d.set_network_conditions(offline=True, latency=0, throughput=0)
        d.get((tmp_path / "s.html").as_uri())
        assert d.execute_script("return document.body.getAttribute('data-ready')") == "1"
        assert [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
        drawn = d.execute_script(PIXELS_JS)
        assert set(drawn) == {"offered", "achieved"}
        for name, (inked, _) in drawn.items():
            assert inked > 1000, (name, inked)
        data = d.execute_script("return window.barfast.data")
        rows = d.find_elements("css selector", "#steps tr")
        shot = tmp_path / "s.png"
        assert d.save_screenshot(str(shot))
        _assert_not_blank(shot)
    finally:
        d.quit()
    assert len(rows) == len(doc["steps"]) + 1
    assert sorted(data["offered"]["x"]) == sorted(s["rate"] for s in doc["steps"])
    assert data["slo_lines"] == [{"label": "p99<60ms", "ms": 60.0}]
    assert data["bracket"] == doc["bracket"]
