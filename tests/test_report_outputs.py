"""The report's other outputs (--hlog, --csv, --html, `barfast report`) against real runs of
`barfast serve`: every figure is the JSON report's, the interval histograms add up to the merged
ones exactly, and a saved JSON renders the same files again."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from barfast.engine.aggregate import new_histogram
from barfast.report import csv as report_csv
from barfast.report.data import ALL, Intervals
from conftest import barfast_cmd
from serve_helpers import running


def _run(tmp: Path, *args: str) -> tuple[dict[str, Any], str]:
    tmp.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        barfast_cmd(
            "run",
            *args,
            "-q",
            "-o",
            str(tmp / "run.json"),
            "--html",
            str(tmp / "run.html"),
            "--hlog",
            str(tmp / "run.hlog"),
            "--csv",
            str(tmp / "csv"),
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads((tmp / "run.json").read_text()), p.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any], str]]:
    """A scenario of three endpoints, in closed loop and in open loop (two workers each), with
    every output written."""
    base = tmp_path_factory.mktemp("outputs")
    out = {}
    with running() as srv:
        url = f"http://127.0.0.1:{srv.port}"
        mix = base / "mix.yaml"
        mix.write_text(
            f"target: {url}\n"
            "requests:\n"
            "  - {name: home, weight: 6, path: /}\n"
            "  - {name: item, weight: 3, path: /item}\n"
            "  - {name: 'order list', weight: 1, path: /order}\n"
        )
        for name, args in (
            ("closed", (str(mix), "-c", "4", "-w", "2", "-d", "1500ms")),
            ("open", (str(mix), "-R", "3000", "-c", "4", "-w", "2", "-d", "1500ms")),
        ):
            rep, stdout = _run(base / name, *args)
            out[name] = (base / name, rep, stdout)
    return out


def _same(h: HdrHistogram, blob: str) -> None:
    want = HdrHistogram.decode(blob)
    assert h.get_total_count() == want.get_total_count() > 0
    assert bytes(memoryview(h.counts)) == bytes(memoryview(want.counts))
    assert h.get_max_value() == want.get_max_value()
    assert h.get_min_value() == want.get_min_value()


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_the_intervals_add_up_to_the_merged_histograms_exactly(runs, kind) -> None:
    _, rep, _ = runs[kind]
    iv = Intervals(rep)
    assert iv.views == (["latency", "uncorrected", "send_lag"] if kind == "open" else ["latency"])
    assert len(rep["intervals"]["seconds"]) >= 2
    for view in iv.views:
        _same(iv.merged(view), rep["histogram"][view])
    assert iv.endpoint_names == ["home", "item", "order list"]
    for name in iv.endpoint_names:
        e = rep["endpoints"][name]
        # open loop: each endpoint keeps its uncorrected and send-lag views too
        assert set(e["histogram"]) >= set(iv.views)
        for view in iv.views:
            _same(iv.merged(view, name), e["histogram"][view])
            assert (
                HdrHistogram.decode(e["histogram"][view]).get_total_count()
                == (e["requests"]["completed"])
            )
    for view in iv.views:
        assert (
            sum(
                HdrHistogram.decode(rep["endpoints"][n]["histogram"][view]).get_total_count()
                for n in iv.endpoint_names
            )
            == HdrHistogram.decode(rep["histogram"][view]).get_total_count()
            == (rep["requests"]["completed"])
        )


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_the_series_figures_are_those_of_the_interval_histograms(runs, kind) -> None:
    _, rep, _ = runs[kind]
    iv = Intervals(rep)
    figs = {s: iv.codec.figures(sc.idx, sc.val) for s, sc, _ in iv.each("latency")}
    for p in rep["series"]:
        f = figs.get(p["second"])
        if f is None:
            assert p["requests"] == 0 or p["p99_ms"] == 0.0
            continue
        assert {k: p[k] for k in f} == f
    for name in iv.endpoint_names:
        efigs = {s: iv.codec.figures(sc.idx, sc.val) for s, sc, _ in iv.each("latency", name)}
        p99s = {
            key: {s: iv.codec.figures(sc.idx, sc.val)["p99_ms"] for s, sc, _ in iv.each(v, name)}
            for v, key in (("uncorrected", "p99_uncorrected_ms"), ("send_lag", "send_lag_p99_ms"))
        }
        for p in rep["endpoints"][name]["series"]:
            f = efigs.get(p["second"])
            assert {k: p[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")} == (
                f or dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "max_ms"))
            )
            for key, by_second in p99s.items():
                if kind == "open":
                    assert p[key] == by_second.get(p["second"]), (name, key, p)
                else:
                    assert key not in p


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_the_hlog_reads_back_and_each_series_sums_to_the_merged_histogram(runs, kind) -> None:
    tmp, rep, _ = runs[kind]
    reader = HistogramLogReader(str(tmp / "run.hlog"), new_histogram())
    sums: dict[str | None, HdrHistogram] = defaultdict(new_histogram)
    lines: dict[str | None, int] = defaultdict(int)
    while (h := reader.get_next_interval_histogram()) is not None:
        tag = h.get_tag()
        sums[tag].add(h)
        lines[tag] += 1
    _same(sums[None], rep["histogram"]["latency"])
    views = ["latency", "uncorrected", "send_lag"] if kind == "open" else ["latency"]
    tags: set[str | None] = {None, *views[1:]}
    for view in views[1:]:
        _same(sums[view], rep["histogram"][view])
    for name, e in rep["endpoints"].items():  # an endpoint's latency (its other views: the JSON)
        tag = f"ep.{name.replace(' ', '_')}"
        _same(sums[tag], e["histogram"]["latency"])
        tags.add(tag)
    assert set(sums) == tags
    assert lines[None] == sum(1 for s in rep["intervals"]["seconds"] if "latency" in s)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cell(v: Any) -> str:
    return "" if v is None else str(v)


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_the_csv_figures_equal_the_json(runs, kind) -> None:
    tmp, rep, _ = runs[kind]
    series = _csv(tmp / "csv" / "series.csv")
    assert list(series[0]) == list(report_csv.SERIES_COLUMNS)
    by = {(r["endpoint"], int(r["second"])): r for r in series}
    want = [(ALL, p) for p in rep["series"]]
    want += [(n, p) for n, e in rep["endpoints"].items() for p in e["series"]]
    assert len(by) == len(series) == len(want)
    for name, p in want:
        row = by[(name, p["second"])]
        for col in ("requests", "errors"):
            assert int(row[col]) == p[col]
        for col in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            assert (float(row[col]) if row[col] else None) == p[col]
    table = _csv(tmp / "csv" / "endpoints.csv")
    assert list(table[0]) == list(report_csv.ENDPOINT_COLUMNS)
    assert table[0]["endpoint"] == ALL
    assert int(table[0]["completed"]) == rep["requests"]["completed"]
    assert float(table[0]["rps"]) == rep["rps"]
    assert float(table[0]["p99_ms"]) == rep["latency_ms"]["p99"]
    assert float(table[0]["p99.9_ms"]) == rep["latency_ms"]["p99.9"]
    eps = rep.get("endpoints") or {}
    assert [r["endpoint"] for r in table[1:]] == list(eps)
    for r in table[1:]:
        e = eps[r["endpoint"]]
        assert int(r["completed"]) == e["requests"]["completed"]
        assert float(r["weight"]) == e["weight"]
        for col, key in report_csv.LATENCY_COLUMNS:
            assert r[col] == _cell(e["latency_ms"][key])
        for kind_ in report_csv.ERROR_KINDS:
            assert int(r[kind_]) == e["errors"].get(kind_, 0)


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_barfast_report_renders_the_same_files_from_the_json(runs, kind, tmp_path) -> None:
    tmp, _, stdout = runs[kind]
    again = tmp_path / "again"
    p = subprocess.run(
        barfast_cmd(
            "report",
            str(tmp / "run.json"),
            "--text",
            "--html",
            str(tmp_path / "r.html"),
            "--hlog",
            str(tmp_path / "r.hlog"),
            "--csv",
            str(again),
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == stdout  # the run's own text report, from the JSON alone
    assert (tmp_path / "r.html").read_bytes() == (tmp / "run.html").read_bytes()
    assert (tmp_path / "r.hlog").read_bytes() == (tmp / "run.hlog").read_bytes()
    for name in ("series.csv", "endpoints.csv"):
        assert (again / name).read_bytes() == (tmp / "csv" / name).read_bytes()


def _fails(*args: str) -> str:
    p = subprocess.run(barfast_cmd(*args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def test_bad_reports_are_one_line_and_exit_2(runs, tmp_path) -> None:
    tmp, rep, _ = runs["closed"]
    assert "cannot read report" in _fails("report", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in _fails("report", str(bad))
    bad.write_text(json.dumps({"schema": "k6/1"}))
    assert "not a barfast report" in _fails("report", str(bad))
    old = {k: v for k, v in rep.items() if k != "intervals"}
    bad.write_text(json.dumps(old))
    assert "no interval histograms" in _fails("report", str(bad))
    broken = json.loads(json.dumps(rep))
    broken["intervals"]["seconds"][0]["latency"] = "HISTFAAAAEV42pNpmSz"
    bad.write_text(json.dumps(broken))
    msg = _fails("report", str(bad), "--csv", str(tmp_path / "c"))
    assert "intervals[0].latency" in msg
    assert not (tmp_path / "c").exists()  # nothing is written from a bad report
    broken = json.loads(json.dumps(rep))
    name = next(iter(broken["endpoints"]))
    broken["endpoints"][name]["intervals"][0]["latency"] = 7
    bad.write_text(json.dumps(broken))
    assert f"endpoints.{name}.intervals[0].latency" in _fails("report", str(bad))
    good = str(tmp / "run.json")
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "--csv" in _fails("report", good, "--csv", str(a_file))
    assert "--html" in _fails("report", good, "--html", str(tmp_path))
    assert "--hlog" in _fails("report", good, "--hlog", str(tmp_path / "no" / "x.hlog"))


def test_run_checks_the_output_paths_before_it_starts(tmp_path) -> None:
    # A run that would start would need a target; the paths fail first, before any load.
    msg = _fails("run", "http://127.0.0.1:9/", "-d", "1s", "--html", str(tmp_path / "no/x.html"))
    assert "--html" in msg and "no directory" in msg


# --- the HTML page in a real browser -----------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (tests/run.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_window_size(1300, 2400)
    # The network off: the page must need none (its CSP forbids any fetch too).
    d.set_network_conditions(offline=True, latency=0, throughput=0)
    yield d
    d.quit()


# Per chart: the canvas's non-blank pixels and a hash of all of them (drawn, and what was drawn).
PIXELS_JS = """
const out = {};
for (const [name, u] of Object.entries(window.barfast.charts)) {
  const c = u.root.querySelector("canvas");
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let inked = 0, h = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (px[i + 3] !== 0) inked++;
    h = (h * 31 + px[i] + 7 * px[i + 1] + 13 * px[i + 2] + 17 * px[i + 3]) >>> 0;
  }
  out[name] = [inked, h];
}
return out;
"""


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_the_html_page_draws_every_chart_offline_and_the_filter_changes_them(
    runs, kind, browser, tmp_path
) -> None:
    tmp, rep, _ = runs[kind]
    page = tmp / "run.html"
    assert b"<script src" not in page.read_bytes() and b"<link" not in page.read_bytes()
    browser.get_log("browser")  # drop what an earlier page logged
    browser.get(page.as_uri())
    assert browser.execute_script("return document.body.getAttribute('data-ready')") == "1"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    drawn = browser.execute_script(PIXELS_JS)
    charts = {"requests", "latency", "spectrum"} | ({"open"} if kind == "open" else set())
    assert set(drawn) == charts
    for name, (inked, _) in drawn.items():
        assert inked > 1000, (name, inked)
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    _assert_not_blank(shot)
    sel = browser.find_element("id", "endpoint")
    from selenium.webdriver.support.ui import Select

    Select(sel).select_by_value("order list")
    after = browser.execute_script(PIXELS_JS)
    assert set(after) == charts
    for name in charts:
        assert after[name][0] > 1000, name
        assert after[name][1] != drawn[name][1], f"{name} did not follow the endpoint filter"
    row = browser.find_element("css selector", "#endpoints tr.selected")
    assert row.get_attribute("data-endpoint") == "order list"
    if kind == "open":
        # every line of the open-loop chart is the endpoint's own: no "all endpoints" note
        note = browser.find_element("id", "open-note").text
        assert note == "Endpoint order list.", note
        d = browser.execute_script("return window.barfast.data.open['order list']")
        want = rep["endpoints"]["order list"]["series"]
        assert d["t"] == [p["second"] for p in want]
        assert d["uncorrected"] == [p.get("p99_uncorrected_ms") for p in want]
        assert d["send_lag"] == [p.get("send_lag_p99_ms") for p in want]
    assert browser.get_log("browser") == []


def _assert_not_blank(png: Path) -> None:
    """A screenshot with many distinct colours (white page plus text and coloured lines)."""
    import struct
    import zlib

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos : pos + 8])
        if typ == b"IHDR":
            w, _, depth, ctype = struct.unpack(">IIBB", data[pos + 8 : pos + 18])
            assert depth == 8 and ctype in (2, 6)
            ch = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    stride = 1 + w * ch
    rows = raw[: len(raw) // stride * stride].reshape(-1, stride)[:, 1:]
    # Filtered bytes, not pixels: a blank page still filters to almost all zeros.
    assert np.count_nonzero(rows) > 0.005 * rows.size
    assert len(np.unique(rows)) > 32
