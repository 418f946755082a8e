"""Metrics over HTTP against real processes: `barfast run --metrics-addr` scraped during a run
(counters monotonic, the last scrape equal to the final report), `barfast serve --metrics` counting
what a run sent, and `--metrics-url` scraping `barfast serve`, prometheus_client's own exporter and
targets that refuse or garble (counted, never fatal), re-rendered from the JSON."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import barfast_cmd
from test_report_outputs import browser  # noqa: F401  (the Chromium fixture)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(url: str) -> Samples | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _sum(samples: Samples, name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == x for k, x in match.items())
    )


def _run_scraped(args: list[str], port: int, out: Path, every_s: float) -> list[Samples]:
    """`barfast run ARGS -o OUT --metrics-addr` while its page is scraped every `every_s` until it
    says the run is done; the scrapes, once the run exited 0."""
    run = subprocess.Popen(
        barfast_cmd(
            "run",
            *args,
            "-q",
            "-o",
            str(out),
            "--metrics-addr",
            f"127.0.0.1:{port}",
            "--metrics-linger",
            "1s",
        ),  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    scrapes: list[Samples] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = _scrape(f"http://127.0.0.1:{port}/metrics")
        if s is not None:
            scrapes.append(s)
            if _get(s, "barfast_run_done") == 1.0:
                break
        time.sleep(every_s)
    _, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    return scrapes


@contextmanager
def _serve(*args: str) -> Iterator[tuple[str, str | None]]:
    """`barfast serve` in a process: (its URL, its metrics URL or None)."""
    p = subprocess.Popen(
        barfast_cmd("serve", "--addr", "127.0.0.1:0", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        metrics = None
        line = p.stdout.readline()
        if "metrics at" in line:
            metrics = line.split("metrics at ", 1)[1].strip()
            line = p.stdout.readline()
        assert "listening on" in line, line + (p.stderr.read() if p.stderr else "")
        yield line.split("listening on ", 1)[1].strip(), metrics
    finally:
        p.terminate()
        p.wait(10)


COUNTERS = ("barfast_requests_total", "barfast_errors_total", "barfast_requests_started_total")


@pytest.mark.parametrize("kind", ["mix", "open"])
def test_live_metrics_are_monotonic_and_the_last_scrape_equals_the_report(kind, tmp_path) -> None:
    port = _free_port()
    with _serve() as (url, _):
        if kind == "mix":
            mix = tmp_path / "mix.yaml"
            mix.write_text(
                f"target: {url}\nrequests:\n"
                "  - {name: home, weight: 3, path: /}\n  - {name: item, weight: 1, path: /item}\n"
            )
            args = [str(mix), "-c", "4", "-w", "2", "-d", "1500ms"]
        else:
            args = [url, "-R", "2000", "-c", "4", "-w", "1", "-d", "1500ms"]
        scrapes = _run_scraped(args, port, tmp_path / "run.json", every_s=0.1)
    rep = json.loads((tmp_path / "run.json").read_text())
    assert len(scrapes) >= 5 and _get(scrapes[-1], "barfast_run_done") == 1.0
    # every counter sample only grows from scrape to scrape (a series may appear, never shrink)
    for a, b in zip(scrapes, scrapes[1:], strict=False):
        for key, v in a.items():
            if key[0] in COUNTERS or key[0].endswith(("_bucket", "_count")):
                assert b[key] >= v, key
    live = [s for s in scrapes if _sum(s, "barfast_requests_total") > 0]
    assert len(live) >= 2, "no scrape saw the run in progress"
    last = scrapes[-1]
    assert _get(last, "barfast_requests_started_total") == rep["requests"]["started"]
    assert _get(last, "barfast_requests_in_flight") == rep["requests"]["in_flight"]
    assert _get(last, "barfast_workers", state="done") == len(rep["workers"])
    eps = rep["endpoints"] if kind == "mix" else {"": rep}
    assert _sum(last, "barfast_requests_total") == sum(rep["status"].values())
    for name, e in eps.items():
        for code, n in e["status"].items():
            assert _get(last, "barfast_requests_total", endpoint=name, status=code) == n
        for k, n in e["errors"].items():
            assert _get(last, "barfast_errors_total", endpoint=name, kind=k) == n
        lat = e["latency_ms"]
        hist = "barfast_request_latency_seconds"
        assert _get(last, f"{hist}_count", endpoint=name) == lat["count"]
        assert _get(last, f"{hist}_bucket", endpoint=name, le="+Inf") == lat["count"]
        q = "barfast_request_latency_quantiles_seconds"
        for quant, key in (("0.5", "p50"), ("0.99", "p99"), ("0.999", "p99.9")):
            got = _get(last, q, endpoint=name, quantile=quant)
            assert got == pytest.approx(lat[key] / 1000, rel=1e-9, abs=1e-12), (name, key)
        # the buckets are cumulative and end at the count
        les = sorted(
            (float(dict(k[1])["le"]), v)
            for k, v in last.items()
            if k[0] == f"{hist}_bucket" and dict(k[1])["endpoint"] == name
        )
        assert [v for _, v in les] == sorted(v for _, v in les)
    if kind == "open":
        lag = rep["send_lag_ms"]
        got = _get(last, "barfast_send_lag_seconds", quantile="0.99")
        assert got == pytest.approx(lag["p99"] / 1000, rel=1e-9, abs=1e-12)


def test_serve_metrics_count_what_a_run_sent(tmp_path) -> None:
    with _serve("--metrics", ":0", "--delay", "1ms") as (url, metrics):
        assert metrics is not None
        before = _scrape(metrics)
        assert before is not None and _get(before, "barfast_serve_requests_total") == 0
        p = subprocess.run(
            barfast_cmd("run", url, "-n", "300", "-c", "3", "-w", "1", "-q", "--json"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        rep = json.loads(p.stdout)
        deadline = time.monotonic() + 5
        while True:  # the server counts a response after its write() returns
            after = _scrape(metrics)
            assert after is not None
            if _get(after, "barfast_serve_responses_total", status="200") >= 300:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert rep["requests"]["completed"] == 300
    assert _get(after, "barfast_serve_requests_total") == 300
    assert _get(after, "barfast_serve_responses_total", status="200") == 300
    assert _get(after, "barfast_serve_faults_total", fault="delay") == 300
    assert _get(after, "barfast_serve_connections_accepted_total") == 3
    assert _get(after, "barfast_serve_received_bytes_total") > 0
    assert _get(after, "barfast_serve_sent_bytes_total") > 300 * 12


def test_serve_metrics_address_errors_are_one_line_exit_2() -> None:
    p = subprocess.run(
        barfast_cmd("serve", "--addr", "127.0.0.1:0", "--metrics", "nonsense"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "--metrics" in p.stderr and len(p.stderr.splitlines()) == 1


@contextmanager
def _garbler() -> Iterator[str]:
    """A real HTTP server whose /metrics page is not a metrics page."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html>garbage{{{ 1</html>\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/metrics"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One run scraping barfast serve, a prometheus_client exporter in this process, a refused
    port and a garbled page."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    tmp = tmp_path_factory.mktemp("scrape")
    reg = CollectorRegistry()
    ticks = Counter("app_ticks", "ticks", registry=reg)
    Gauge("app_level", "a level", registry=reg).set(42)
    server, thread = start_http_server(0, "127.0.0.1", registry=reg)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.01):
            ticks.inc()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    exporter = f"http://127.0.0.1:{server.server_port}/metrics"
    refused = f"http://127.0.0.1:{_free_port()}/metrics"
    try:
        with _serve("--metrics", ":0") as (url, metrics), _garbler() as garbled:
            assert metrics is not None
            p = subprocess.run(
                barfast_cmd(
                    "run",
                    url,
                    "-c",
                    "2",
                    "-w",
                    "1",
                    "-d",
                    "2500ms",
                    "-o",
                    str(tmp / "run.json"),
                    "--html",
                    str(tmp / "run.html"),
                    "--metrics-url",
                    metrics,
                    "--metrics-url",
                    exporter,
                    "--metrics-url",
                    refused,
                    "--metrics-url",
                    garbled,
                    "--metrics-match",
                    "barfast_serve_.*|app_.*",
                ),  # fmt: skip
                capture_output=True,
                text=True,
                timeout=60,
            )
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    assert p.returncode == 0, p.stderr
    return tmp, json.loads((tmp / "run.json").read_text()), p.stdout


def test_target_metrics_come_from_serve_and_a_real_exporter(scraped) -> None:
    _, rep, _ = scraped
    tm = rep["target_metrics"]
    t = {x["url"].rsplit(":", 1)[1]: x for x in tm["targets"]}
    assert len(t) == 4
    series = {(s["url"], s["name"], tuple(sorted(s["labels"].items()))): s for s in tm["series"]}
    serve_url, exp_url = tm["targets"][0]["url"], tm["targets"][1]["url"]
    for x in tm["targets"][:2]:
        assert x["failed"] == 0 and x["scrapes"] >= 3, x
    reqs = series[(serve_url, "barfast_serve_requests_total", ())]
    assert reqs["kind"] == "rate" and len(reqs["points"]) >= 2
    # a rate's points times the time between scrapes add up to what the server counted between
    # the first and the last scrape: at most every request the run completed
    assert all(v >= 0 for _, v in reqs["points"])
    assert 0 < sum(v for _, v in reqs["points"]) <= rep["requests"]["completed"] * 2
    conns = series[(serve_url, "barfast_serve_connections", ())]
    assert conns["kind"] == "value" and max(v for _, v in conns["points"]) <= 2
    level = series[(exp_url, "app_level", ())]
    assert [v for _, v in level["points"]] == [42.0] * len(level["points"])
    ticks = series[(exp_url, "app_ticks_total", ())]
    assert ticks["kind"] == "rate" and all(v > 0 for _, v in ticks["points"])
    # the times are seconds since the start of the load, a second apart
    ts = [p[0] for p in ticks["points"]]
    assert ts == sorted(ts) and all(0.5 < b - a < 1.5 for a, b in zip(ts, ts[1:], strict=False))
    assert not any(s["name"].startswith("process_") for s in tm["series"])  # --metrics-match


def test_a_refused_or_garbled_target_is_counted_and_the_run_succeeds(scraped) -> None:
    _, rep, stdout = scraped
    refused, garbled = rep["target_metrics"]["targets"][2:]
    assert refused["failed"] == refused["scrapes"] >= 2
    assert refused["failures"] == {"connection refused": refused["scrapes"]}
    assert garbled["failed"] == garbled["scrapes"] >= 2
    assert garbled["failures"] == {"parse error": garbled["scrapes"]}
    assert not any(
        s["url"] in (refused["url"], garbled["url"]) for s in rep["target_metrics"]["series"]
    )
    assert f"Target metrics {refused['url']}: {refused['scrapes']} scrapes, " in stdout
    assert f"(connection refused x{refused['scrapes']})" in stdout
    assert f"(parse error x{garbled['scrapes']})" in stdout


def test_barfast_report_re_renders_the_target_metrics(scraped, tmp_path) -> None:
    tmp, rep, stdout = scraped
    again = tmp_path / "again.html"
    p = subprocess.run(
        barfast_cmd("report", str(tmp / "run.json"), "--html", str(again), "--text"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert again.read_text() == (tmp / "run.html").read_text()
    for line in stdout.splitlines():
        if line.startswith("Target metrics"):
            assert line in p.stdout


def test_bad_metrics_options_are_one_line_exit_2(tmp_path) -> None:
    for args, want in (
        (["--metrics-match", "x"], "--metrics-url"),
        (["--metrics-url", "ftp://x/"], "--metrics-url"),
        (["--metrics-url", "http://127.0.0.1:1/", "--metrics-match", "(["], "--metrics-match"),
        (["--metrics-addr", "nope"], "--metrics-addr"),
        (["--metrics-linger", "2s"], "--metrics-addr"),
        (["--metrics-addr", ":0", "--metrics-linger", "soon"], "--metrics-linger"),
    ):
        p = subprocess.run(
            barfast_cmd("run", "http://127.0.0.1:9/", "-d", "1s", *args),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 2, (args, p.stderr)
        assert want in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)


def test_target_metrics_charts_draw_in_chromium(scraped, browser) -> None:  # noqa: F811
    from test_report_outputs import PIXELS_JS

    tmp, rep, _ = scraped
    browser.get_log("browser")
    browser.get((tmp / "run.html").as_uri())
    assert browser.execute_script("return document.body.getAttribute('data-ready')") == "1"
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    drawn = browser.execute_script(PIXELS_JS)
    groups = {(s["url"], s["name"]) for s in rep["target_metrics"]["series"]}
    targets = [n for n in drawn if n.startswith("target-")]
    assert len(targets) == len(groups) >= 5
    for n in targets:
        assert drawn[n][0] > 500, n
    text = browser.find_element("id", "target-scrapes").text
    assert "connection refused x" in text and "parse error x" in text
    # zoom: a scale set on the requests chart moves every target chart
    browser.execute_script("window.barfast.charts.requests.setScale('x', {min: 0.5, max: 1.5})")
    mins = browser.execute_script(
        "return Object.entries(window.barfast.charts).filter(([n]) => n.startsWith('target-'))"
        ".map(([, u]) => [u.scales.x.min, u.scales.x.max])"
    )
    assert mins == [[0.5, 1.5]] * len(targets)


def test_live_metrics_count_flow_iterations_as_the_report_does(tmp_path) -> None:
    """A flow run (the example's shop flow against serve --sessions): iterations by result, begun,
    and the iteration-duration histogram, the last scrape equal to the report's flows section."""
    port = _free_port()
    example = Path(__file__).parent.parent / "examples" / "flow"
    (tmp_path / "users.csv").write_text((example / "users.csv").read_text())
    with _serve("--sessions") as (url, _):
        shop = tmp_path / "shop.yaml"
        shop.write_text((example / "shop.yaml").read_text().replace("http://127.0.0.1:8080", url))
        args = [str(shop), "-n", "120", "-c", "12", "-w", "2"]
        scrapes = _run_scraped(args, port, tmp_path / "run.json", every_s=0.05)
    rep = json.loads((tmp_path / "run.json").read_text())
    it = rep["flows"]["shop"]["iterations"]
    assert (it["completed"], it["failed"]) == (120, 0)
    last = scrapes[-1]
    assert _get(last, "barfast_run_done") == 1.0
    assert _get(last, "barfast_iterations_total", flow="shop", result="completed") == 120
    assert _get(last, "barfast_iterations_total", flow="shop", result="failed") == 0
    assert _get(last, "barfast_iterations_started_total", flow="shop") == it["started"]
    dur = rep["flows"]["shop"]["iteration_ms"]
    assert _get(last, "barfast_iteration_duration_seconds_count", flow="shop") == dur["count"]
    assert _get(last, "barfast_iteration_duration_seconds_bucket", flow="shop", le="+Inf") == 120
    for a, b in zip(scrapes, scrapes[1:], strict=False):
        for key, v in a.items():
            if key[0] in ("barfast_iterations_total", "barfast_iterations_started_total"):
                assert b[key] >= v, key
    # the steps are endpoints on the page as in the report
    for step, e in rep["endpoints"].items():
        assert _sum(last, "barfast_requests_total", endpoint=step) == sum(e["status"].values())
