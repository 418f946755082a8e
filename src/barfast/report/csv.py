"""`--csv DIR`: series.csv (per second x endpoint) and endpoints.csv (the per-endpoint table).

Every figure is the JSON report's own (`series`, `endpoints.NAME.series`, `latency_ms`, ...), so a
spreadsheet and the JSON agree to the last digit. Columns (docs/reports.md):

series.csv     second, endpoint, requests, errors, p50_ms, p90_ms, p99_ms, max_ms
endpoints.csv  endpoint, weight, started, completed, errors, rps, ERROR_KIND... (one column per
               error kind), checks_passed, checks_failed, count, mean_ms, p50_ms, p90_ms, p99_ms,
               p99.9_ms, max_ms

The endpoint "*" is the totals over every endpoint (a single URL has only that row). An empty cell
is a figure the report does not have (no latency counts in that second; no checks).
"""

from __future__ import annotations

import csv
import os
from typing import Any

from barfast.engine.kinds import ErrorKind
from barfast.report.data import ALL
from barfast.status import UsageError

SERIES_COLUMNS = (
    "second",
    "endpoint",
    "requests",
    "errors",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
)
ERROR_KINDS = tuple(k.label for k in ErrorKind if k != ErrorKind.NONE)
LATENCY_COLUMNS = (
    ("count", "count"),
    ("mean_ms", "mean"),
    ("p50_ms", "p50"),
    ("p90_ms", "p90"),
    ("p99_ms", "p99"),
    ("p99.9_ms", "p99.9"),
    ("max_ms", "max"),
)
ENDPOINT_COLUMNS = (
    "endpoint",
    "weight",
    "started",
    "completed",
    "errors",
    "rps",
    *ERROR_KINDS,
    "checks_passed",
    "checks_failed",
    *(c for c, _ in LATENCY_COLUMNS),
)


def series_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of series.csv: the totals' series, then each endpoint's (several endpoints)."""
    rows = [{**_pick(p), "endpoint": ALL} for p in rep.get("series") or []]
    eps = rep.get("endpoints") or {}
    if len(eps) > 1:
        for name, e in eps.items():
            rows += [{**_pick(p), "endpoint": name} for p in e.get("series") or []]
    rows.sort(key=lambda r: r["second"])  # stable: "*" first within a second
    return rows


def _pick(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p.get(k) for k in SERIES_COLUMNS if k != "endpoint"}


def endpoint_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of endpoints.csv: "*" (the totals), then one per endpoint in table order."""
    req = rep.get("requests") or {}
    checks = rep.get("checks")
    total = {
        "endpoint": ALL,
        "weight": None,
        "started": req.get("started"),
        "completed": req.get("completed"),
        "errors": req.get("errors"),
        "rps": rep.get("rps"),
        **_kinds(rep.get("errors") or {}),
        "checks_passed": checks.get("passed") if checks else None,
        "checks_failed": checks.get("failed") if checks else None,
        **_latency(rep.get("latency_ms")),
    }
    rows = [total]
    for name, e in (rep.get("endpoints") or {}).items():
        r = e.get("requests") or {}
        ck = e.get("checks")
        rows.append(
            {
                "endpoint": name,
                "weight": e.get("weight"),
                "started": r.get("started"),
                "completed": r.get("completed"),
                "errors": r.get("errors"),
                "rps": e.get("rps"),
                **_kinds(e.get("errors") or {}),
                "checks_passed": ck.get("passed") if ck else None,
                "checks_failed": ck.get("failed") if ck else None,
                **_latency(e.get("latency_ms")),
            }
        )
    return rows


def _kinds(errors: dict[str, int]) -> dict[str, int]:
    return {k: int(errors.get(k, 0)) for k in ERROR_KINDS}


def _latency(summary: dict[str, Any] | None) -> dict[str, Any]:
    return {col: (summary or {}).get(key) for col, key in LATENCY_COLUMNS}


def write(rep: dict[str, Any], directory: str) -> None:
    """Write series.csv and endpoints.csv into `directory` (made when missing)."""
    try:
        os.makedirs(directory, exist_ok=True)
        _write(os.path.join(directory, "series.csv"), SERIES_COLUMNS, series_rows(rep))
        _write(os.path.join(directory, "endpoints.csv"), ENDPOINT_COLUMNS, endpoint_rows(rep))
    except OSError as exc:
        raise UsageError(f"cannot write --csv {directory!r}: {exc.strerror}") from None


def _write(path: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row.get(c) is None else row[c] for c in columns])
