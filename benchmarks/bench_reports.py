"""What writing every output costs at the end of a long run: 600 s x 10 endpoints.

Builds the result a 10-minute, 10-endpoint open-loop run would leave (the Merger fed one snapshot a
second from the aggregator, as a worker sends them; the latencies are synthetic lognormals: this
measures the writers, not the engine), then times each output from that result, and the HTML's
draw time in headless Chromium when it is installed (navigation start to the page's data-ready
mark, read from performance.now()). Targets: every output < 1 s in all; the page < 2 MB and drawn
in < 2 s.

    python benchmarks/bench_reports.py                 # 600 s x 10 endpoints, 4,000 samples/s
    python benchmarks/bench_reports.py --quick         # 20 s x 3 endpoints: the script still works

Then the uPlot page's limit: the same page with its time charts given a --points-long series (default
100,000 points, as a 28-hour run at one point a second would have; synthetic figures, the same
page script), timed the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from barfast.engine.aggregate import RECORD_DTYPE, Aggregator
from barfast.report import csv as report_csv
from barfast.report import hlog, html
from barfast.report import json as report_json
from barfast.report.text import render
from barfast.result import Merger

BASE = 10**12


def batch(rng: np.random.Generator, n: int, endpoints: int, sec: int, seq0: int) -> np.ndarray:
    a = np.zeros(n, dtype=RECORD_DTYPE)
    t0 = BASE + sec * 10**9
    a["intended_ns"] = t0
    a["send_ns"] = t0 + rng.integers(0, 80_000, n).astype(np.uint64)
    lat = rng.lognormal(13.5, 0.8, n).astype(np.uint64) + np.uint64(100_000)
    a["done_ns"] = a["send_ns"] + lat
    a["first_byte_ns"] = a["send_ns"] + lat // np.uint64(2)
    a["seq"] = np.arange(seq0, seq0 + n, dtype=np.uint64)
    a["endpoint"] = rng.integers(0, endpoints, n)
    a["status"] = rng.choice([200, 200, 200, 200, 404, 500], n)
    a["flags"] = 0x04  # open loop
    return a


def build(seconds: int, endpoints: int, rate: int) -> tuple[Merger, float]:
    rng = np.random.default_rng(1)
    agg = Aggregator(endpoints, open_loop=True)  # per endpoint: uncorrected and send lag too
    m = Merger()
    feed = 0.0
    per = [{"started": 0, "completed": 0, "errors": 0} for _ in range(endpoints)]
    for sec in range(seconds):
        b = batch(rng, rate, endpoints, sec, sec * rate)
        agg.add(b)
        for e in range(endpoints):
            mine = b["endpoint"] == e
            per[e]["started"] += int(mine.sum())
            per[e]["completed"] += int(mine.sum())
        part = agg.take_interval(wire=True)
        t = agg.tally()
        snap: dict[str, Any] = {
            "worker": 0,
            "seq": sec,
            "final": sec == seconds - 1,
            "interval": sec,
            "elapsed_ns": (sec + 1) * 10**9,
            "counters": {"started": t["samples"], "completed": t["completed"], "errors": 0},
            "status": dict(t["status"]),
            "errors": {},
            "hist": part["hist"],
            "samples": part["samples"],
            "interval_completed": part["completed"],
            "interval_errors": part["errors"],
            "endpoints": [dict(p) for p in per],
            "endpoint_interval": part["endpoints"],
        }
        t0 = time.perf_counter()
        m.add(snap)
        feed += time.perf_counter() - t0
    return m, feed


def config(endpoints: int, rate: int) -> dict[str, Any]:
    return {
        "url": "http://127.0.0.1:8080/",
        "method": "GET",
        "connections": 100,
        "workers": 1,
        "rate": rate,
        "open_loop": True,
        "arrival": "constant",
        "stages": [],
        "endpoints": [
            {"name": f"endpoint-{i}", "weight": 1, "checks": []} for i in range(endpoints)
        ],
    }


def long_series(rep: dict[str, Any], points: int) -> dict[str, Any]:
    """The report's page data with every time chart holding `points` seconds (synthetic figures:
    a lognormal p50 with the usual spread above it; the open-loop chart likewise)."""
    data = html.page_data(rep)
    rng = np.random.default_rng(2)
    t = list(range(points))
    p50 = rng.lognormal(0.0, 0.3, points)
    s = {
        "t": t,
        "requests": rng.poisson(4000, points).tolist(),
        "errors": rng.poisson(2, points).tolist(),
        "p50": np.round(p50, 6).tolist(),
        "p90": np.round(p50 * 1.8, 6).tolist(),
        "p99": np.round(p50 * 3.5, 6).tolist(),
        "max": np.round(p50 * 9.0, 6).tolist(),
    }
    data["series"] = {html.ALL: s}  # the totals' charts (an endpoint filter falls back to them)
    if data.get("open"):
        data["open"] = {
            html.ALL: {
                "t": t,
                "corrected": s["p99"],
                "uncorrected": np.round(p50 * 2.5, 6).tolist(),
                "send_lag": np.round(p50 * 0.01, 6).tolist(),
            }
        }
    return data


def draw_ms(page: Path) -> float | None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        d.set_window_size(1300, 2400)
        best = None
        for _ in range(3):  # the first load also warms the browser's caches: keep the best
            d.get(page.as_uri())
            ms = d.execute_script("return window.barfast && window.barfast.ready_ms")
            best = ms if best is None else min(best, ms)
        return float(best) if best is not None else None
    finally:
        d.quit()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--rate", type=int, default=4000, help="samples a second over all endpoints")
    ap.add_argument("--points", type=int, default=100_000, help="points of the long-series page")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", dest="json_out", help="write the figures to this file")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.endpoints, args.rate = 20, 3, 2000
    t0 = time.perf_counter()
    m, feed = build(args.seconds, args.endpoints, args.rate)
    print(
        f"built {args.seconds} s x {args.endpoints} endpoints, {args.rate} samples/s in "
        f"{time.perf_counter() - t0:.1f} s (of it Merger.add, incl. closing each second: {feed:.2f} s)"
    )
    times: dict[str, float] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        t = time.perf_counter()
        rep = m.report(config(args.endpoints, args.rate))
        times["report dict (Merger.report)"] = time.perf_counter() - t
        writers = {
            "json": lambda: report_json.write(rep, str(out / "run.json")),
            "text": lambda: render(rep),
            "csv": lambda: report_csv.write(rep, str(out / "csv")),
            "hlog": lambda: hlog.write(rep, str(out / "run.hlog")),
            "html": lambda: html.write(rep, str(out / "run.html")),
        }
        for name, fn in writers.items():
            t = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - t
        for name in ("run.json", "run.hlog", "run.html"):
            sizes[name] = (out / name).stat().st_size
        drawn = draw_ms(out / "run.html")
        long_page = out / "long.html"
        long_page.write_text(html.render_data(long_series(rep, args.points)), encoding="utf-8")
        sizes[f"long.html ({args.points:,} points)"] = long_page.stat().st_size
        drawn_long = draw_ms(long_page)
    total = sum(times.values())
    for name, s in times.items():
        print(f"  {name:<30} {s * 1000:8.1f} ms")
    print(f"  {'every output':<30} {total * 1000:8.1f} ms   (target < 1000 ms)")
    for name, n in sizes.items():
        print(
            f"  {name:<30} {n / 1e6:8.2f} MB" + ("   (target < 2 MB)" if name == "run.html" else "")
        )
    if drawn is None:
        print("  HTML draw in Chromium: skipped (chromium and chromium-driver not installed)")
    else:
        print(f"  {'HTML open and draw, Chromium':<30} {drawn:8.1f} ms   (target < 2000 ms)")
    if drawn_long is not None:
        print(f"  {'HTML draw, ' + format(args.points, ',') + ' points':<30} {drawn_long:8.1f} ms")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "endpoints": args.endpoints,
                    "rate": args.rate,
                    "writers_ms": {k: round(v * 1000, 1) for k, v in times.items()},
                    "every_output_ms": round(total * 1000, 1),
                    "bytes": sizes,
                    "html_draw_ms": drawn,
                    "long_series_points": args.points,
                    "long_series_draw_ms": drawn_long,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
