"""`barfast search ... --html FILE`: the search as one self-contained page, drawn with the report's
inlined uPlot (html.py says why uPlot; the same assets, nothing fetched).

Two charts of the steps' p50 and p99 (corrected latency, ms): against the offered rate and against
the achieved rate, each with a horizontal line per latency SLO at its limit and the bracket (the
highest rate that held, the lowest that failed) shaded; then the steps table and the answer. The
data is the search's JSON document (search/command.py `_doc`) and nothing else.
"""

from __future__ import annotations

from typing import Any

from barfast.report.html import _asset, _escape, _inline_json
from barfast.status import UsageError

MS_PER_UNIT = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}


def page_data(doc: dict[str, Any]) -> dict[str, Any]:
    steps = doc.get("steps") or []
    first = steps[0].get("thresholds") or [] if steps else []
    slo_lines = [
        {"label": r["threshold"], "ms": r["limit"] * MS_PER_UNIT[r["unit"]]}
        for r in first
        if r.get("unit") in MS_PER_UNIT and r.get("limit")
    ]

    def curve(key: str) -> dict[str, list[Any]]:
        pts = sorted(steps, key=lambda s: (s[key], s["rate"]))
        return {
            "x": [s[key] for s in pts],
            "p50": [s["p50_ms"] for s in pts],
            "p99": [s["p99_ms"] for s in pts],
        }

    return {
        "target": doc.get("target"),
        "slos": doc.get("slos") or [],
        "answer_rps": doc.get("answer_rps"),
        "bracket": doc.get("bracket") or {},
        "stop_reason": doc.get("stop_reason"),
        "steps": steps,
        "slo_lines": slo_lines,
        "offered": curve("rate"),
        "achieved": curve("achieved_rps"),
    }


def render(doc: dict[str, Any]) -> str:
    data = page_data(doc)
    return (
        _asset("search.html")
        .replace("{{title}}", _escape(f"barfast search: {data['target'] or ''}"))
        .replace("{{uplot_css}}", _asset("uPlot.min.css"))
        .replace("{{report_css}}", _asset("report.css"))
        .replace("{{uplot_js}}", _asset("uPlot.iife.min.js").replace("</script", "<\\/script"))
        .replace("{{search_js}}", _asset("search.js"))
        .replace("{{data}}", _inline_json(data))
    )


def write(doc: dict[str, Any], path: str) -> None:
    text = render(doc)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write --html {path!r}: {exc.strerror}") from None
