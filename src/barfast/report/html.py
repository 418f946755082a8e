"""`--html FILE`: the run as one self-contained page, drawn with uPlot.

Everything is inline (uPlot's script and CSS, barfast's page script, the data as JSON): the file
opens from disk with the network off and can be mailed as it is. Why uPlot (1.6.32, MIT, ~50 KB
minified): it draws time series on a canvas and stays fast at 100k points, a tenth of the size of
Apache ECharts (~1 MB), and its licence is a few lines to ship beside it (assets/uPlot.LICENSE).

The page's data is built here from the report dict alone, every figure the report's own:
  header      target, mode, duration, tags, generator warnings
  table       the endpoints.csv rows (totals "*" first)
  series      per endpoint ("*" the totals): second, requests, errors, p50/p90/p99/max (ms)
  open        open loop, per endpoint ("*" the totals): per second p99 corrected and uncorrected
              and send-lag p99 (ms), each from that second's interval histograms
  spectrum    per endpoint: the percentile spectrum of its merged histogram, HdrHistogram style
              (x = 1/(1-q) on a log axis, y = latency in ms)
  status, errors  per endpoint: counts by status code and by error kind
The page (assets/report.js) draws one chart per figure, zooms every time chart together on a
drag, and an endpoint filter redraws every chart with that endpoint's data.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np

from barfast.report.csv import endpoint_rows
from barfast.report.data import ALL, Intervals
from barfast.result.hist import ms, percentiles
from barfast.status import UsageError

# Spectrum points: 1/(1-q) from 1 to 10^6 in 20 steps a decade, then the maximum.
SPECTRUM_STEPS_PER_DECADE = 20
SPECTRUM_DECADES = 6


def page_data(rep: dict[str, Any]) -> dict[str, Any]:
    """Everything the page draws, from the report dict."""
    iv = Intervals(rep)
    cfg = rep.get("config") or {}
    eps = rep.get("endpoints") or {}
    names = [ALL, *eps] if len(eps) > 1 else [ALL]
    series = {ALL: _series(rep.get("series") or [])}
    status = {ALL: rep.get("status") or {}}
    errors = {ALL: rep.get("errors") or {}}
    spectrum = {ALL: _spectrum(iv, rep["histogram"].get("latency"))}
    if len(eps) > 1:
        for name, e in eps.items():
            series[name] = _series(e.get("series") or [])
            status[name] = e.get("status") or {}
            errors[name] = e.get("errors") or {}
            spectrum[name] = _spectrum(iv, (e.get("histogram") or {}).get("latency"))
    out: dict[str, Any] = {
        "header": {
            "url": cfg.get("url"),
            "mode": _mode(cfg),
            "connections": cfg.get("connections"),
            "workers": cfg.get("workers"),
            "duration_s": rep.get("duration_s"),
            "rps": rep.get("rps"),
            "tags": cfg.get("tags") or {},
            "interrupted": bool(rep.get("interrupted")),
            "started_unix_s": rep.get("started_unix_s"),
            "warnings": (rep.get("generator") or {}).get("warnings") or [],
        },
        "names": names,
        "table": endpoint_rows(rep),
        "series": series,
        "spectrum": spectrum,
        "status": status,
        "errors": errors,
        "open": _open_loops(iv, rep) if cfg.get("open_loop") else None,
        "target": _target_metrics(rep.get("target_metrics")),
    }
    return out


def _target_metrics(tm: dict[str, Any] | None) -> dict[str, Any] | None:
    """The scraped series (metrics/scrape.py), one chart per (url, name): x the union of their
    scrape times (seconds since the start, the time charts' axis), one line per label set."""
    if not tm:
        return None
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in tm.get("series") or []:
        groups.setdefault((s["url"], s["name"]), []).append(s)
    charts = []
    for (url, name), members in groups.items():
        ts = sorted({p[0] for s in members for p in s["points"]})
        pos = {t: i for i, t in enumerate(ts)}
        lines = []
        for s in members:
            vals: list[float | None] = [None] * len(ts)
            for t, v in s["points"]:
                vals[pos[t]] = v
            label = ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())) or name
            lines.append({"label": label, "values": vals})
        unit = "/s" if members[0]["kind"] == "rate" else ""
        charts.append({"url": url, "name": name, "unit": unit, "t": ts, "lines": lines})
    return {"targets": tm.get("targets") or [], "charts": charts}


def _series(points: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "t": [p["second"] for p in points],
        "requests": [p.get("requests") for p in points],
        "errors": [p.get("errors") for p in points],
        **{k: [p.get(f"{k}_ms") for p in points] for k in ("p50", "p90", "p99", "max")},
    }


def _mode(cfg: dict[str, Any]) -> str:
    if not cfg.get("open_loop"):
        return "closed loop"
    if cfg.get("rate"):
        return f"open loop, {cfg['rate']:g} req/s {cfg.get('arrival', 'constant')}"
    stages = ",".join(s.get("text", "") for s in cfg.get("stages") or [])
    return f"open loop, stages {stages}, {cfg.get('arrival', 'constant')}"


def _p99s(iv: Intervals, view: str) -> dict[int, float]:
    out = {}
    for sec, sc, _ in iv.each(view):
        v = percentiles(iv.codec.template, sc.val, sc.total, (99.0,), sc.idx)
        out[sec] = ms(v[99.0])
    return out


def _open_loops(iv: Intervals, rep: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Per endpoint ("*" the totals), per second: corrected, uncorrected and send-lag p99. An
    endpoint's series carries all three (merge.py, from its interval histograms); the totals' series
    only the corrected one, so theirs come from the blobs."""
    out = {ALL: _chart(rep.get("series") or [], _p99s(iv, "uncorrected"), _p99s(iv, "send_lag"))}
    eps = rep.get("endpoints") or {}
    if len(eps) > 1:
        for name, e in eps.items():
            series = e.get("series") or []
            out[name] = _chart(
                series,
                {p["second"]: p.get("p99_uncorrected_ms") for p in series},
                {p["second"]: p.get("send_lag_p99_ms") for p in series},
            )
    return out


def _chart(
    series: list[dict[str, Any]], unc: dict[int, Any], lag: dict[int, Any]
) -> dict[str, list[Any]]:
    secs = [p["second"] for p in series]
    return {
        "t": secs,
        "corrected": [p.get("p99_ms") for p in series],
        "uncorrected": [unc.get(s) for s in secs],
        "send_lag": [lag.get(s) for s in secs],
    }


def _spectrum(iv: Intervals, blob: str | None) -> dict[str, list[float]]:
    """x = 1/(1-q), y = the value at quantile q (ms), from one merged histogram blob."""
    if not blob:
        return {"x": [], "y": []}
    try:
        sc = iv.codec.decode(blob)
    except Exception as exc:  # HistoblobError: a corrupt saved report
        raise UsageError(f"histogram: {exc}") from None
    if not sc.total:
        return {"x": [], "y": []}
    k = np.arange(SPECTRUM_STEPS_PER_DECADE * SPECTRUM_DECADES + 1)
    inv = 10.0 ** (k / SPECTRUM_STEPS_PER_DECADE)
    qs = [float(100.0 * (1.0 - 1.0 / x)) for x in inv]
    vals = percentiles(iv.codec.template, sc.val, sc.total, qs, sc.idx)
    xs, ys = [], []
    for x, q in zip(inv.tolist(), qs, strict=True):
        if q in vals:
            xs.append(round(x, 4))
            ys.append(ms(vals[q]))
    return {"x": xs, "y": ys}


def _asset(name: str) -> str:
    return (
        resources.files("barfast.report")
        .joinpath("assets")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


def _inline_json(obj: Any) -> str:
    # Inside <script>, "</" could end the element and "<!--" start a comment: escape "<".
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render(rep: dict[str, Any]) -> str:
    """The page as a string."""
    return render_data(page_data(rep))


def render_data(data: dict[str, Any]) -> str:
    """The page of already built page data (benchmarks/bench_reports.py draws large ones)."""
    title = f"barfast: {data['header'].get('url') or 'run'}"
    return (
        _asset("report.html")
        .replace("{{title}}", _escape(title))
        .replace("{{uplot_css}}", _asset("uPlot.min.css"))
        .replace("{{report_css}}", _asset("report.css"))
        .replace("{{uplot_js}}", _asset("uPlot.iife.min.js").replace("</script", "<\\/script"))
        .replace("{{report_js}}", _asset("report.js"))
        .replace("{{data}}", _inline_json(data))
    )


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write(rep: dict[str, Any], path: str) -> None:
    """Write the page of `rep` to `path` (UsageError when it cannot be written)."""
    text = render(rep)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write --html {path!r}: {exc.strerror}") from None
