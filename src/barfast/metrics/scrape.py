"""`barfast run --metrics-url URL`: the target's own metrics, scraped once a second onto the run's
timeline.

A thread of the coordinator (never a worker, never the engine) fetches each URL at the run's
seconds 0, 1, 2, ... (monotonic time from the start of the load, the same clock the series' seconds
count on), parses the page with prometheus_client's text parser (Prometheus text format; an
OpenMetrics page parses too, it is a superset for what we read) and keeps the samples whose name
matches `--metrics-match` (DEFAULT_MATCH otherwise). Counters (and a histogram's or summary's
`_count`/`_sum`) become per-second rates between consecutive scrapes; gauges stay values. A scrape
that fails (refused, timed out, an HTTP status other than 200, a page that does not parse) is
counted by reason and the run goes on: the target's metrics are context, never a reason to stop.

Bounds: SCRAPE_TIMEOUT_S per fetch (a slow target costs a point, not the schedule), MAX_PAGE_BYTES
per page, MAX_SERIES per URL (more matching series are counted, not kept).

The report's `target_metrics` (report/json.py):
  {"interval_s": 1.0, "match": REGEX,
   "targets": [{"url", "scrapes", "failed", "failures": {reason: n}, "series_dropped"}],
   "series":  [{"url", "name", "labels", "kind": "rate"|"value", "points": [[t_s, v], ...]}]}
t_s is seconds since the start of the load (the series' `second` axis); a rate's point at t is the
rate over (previous scrape, t].
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from barfast.status import UsageError

DEFAULT_MATCH = (
    r"process_cpu_seconds_total|process_resident_memory_bytes|process_open_fds"
    r"|barfast_serve_.*"
)
SCRAPE_INTERVAL_S = 1.0
SCRAPE_TIMEOUT_S = 0.8
MAX_PAGE_BYTES = 8 << 20
MAX_SERIES = 200
MAX_URLS = 16
ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


def check_urls(urls: list[str], match: str | None) -> re.Pattern[str]:
    """Validate --metrics-url/--metrics-match before the run (UsageError, exit 2)."""
    if match is not None and not urls:
        raise UsageError("--metrics-match picks series of --metrics-url: add --metrics-url URL")
    if len(urls) > MAX_URLS:
        raise UsageError(f"at most {MAX_URLS} --metrics-url (got {len(urls)})")
    for u in urls:
        if not re.match(r"^https?://[^/\s]+", u):
            raise UsageError(f"bad --metrics-url {u!r}: expected http://HOST:PORT/PATH")
    try:
        return re.compile(match if match is not None else DEFAULT_MATCH)
    except re.error as exc:
        raise UsageError(f"bad --metrics-match {match!r}: {exc}") from None


@dataclass
class Series:
    url: str
    name: str
    labels: dict[str, str]
    kind: str  # "rate" or "value"
    points: list[list[float]] = field(default_factory=list)
    last: tuple[float, float] | None = None  # (t, raw value) of the previous scrape, for rates


@dataclass
class Target:
    url: str
    scrapes: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    series_dropped: int = 0
    series: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = field(default_factory=dict)


def _kind(family_type: str, sample: str) -> str | None:
    """How a sample goes on the timeline: a rate, a value, or not at all (None)."""
    if sample.endswith("_created") or sample.endswith("_bucket"):
        return None
    if family_type == "counter":
        return "rate"
    if family_type in ("histogram", "summary", "gaugehistogram"):
        return "rate" if sample.endswith(("_count", "_sum")) else None
    return "value"


class Scraper:
    """Scrapes every URL once a second from start(t0) until stop(); then `result()`."""

    def __init__(self, urls: list[str], match: re.Pattern[str]) -> None:
        self.targets = [Target(u) for u in urls]
        self.match = match
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self, t0: float) -> None:
        """t0: time.monotonic() of the load's start (may lie slightly ahead)."""
        self._t0 = t0
        self._thread = threading.Thread(target=self._loop, name="barfast-scrape", daemon=True)
        self._thread.start()

    # the coordinator's observer calls
    def started(self, coord: Any) -> None:
        self.start(coord.start_t)

    def tick(self, coord: Any) -> None:
        pass

    def finished(self, coord: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SCRAPE_TIMEOUT_S * len(self.targets) + 2)

    def _loop(self) -> None:
        k = 0
        while True:
            due = self._t0 + k * SCRAPE_INTERVAL_S
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            if self._stop.is_set():
                return
            for tgt in self.targets:
                self.scrape(tgt, time.monotonic() - self._t0)
            # skip the seconds a slow round overran (one point late, not a burst of catch-up)
            k = max(k + 1, int((time.monotonic() - self._t0) / SCRAPE_INTERVAL_S) + 1)

    def scrape(self, tgt: Target, t: float) -> None:
        tgt.scrapes += 1
        try:
            text = _fetch(tgt.url)
            families = _parse(text)
        except _ScrapeFailed as exc:
            tgt.failed += 1
            tgt.failures[exc.reason] = tgt.failures.get(exc.reason, 0) + 1
            return
        t = round(t, 3)
        for fam_type, name, labels, value in families:
            if not self.match.fullmatch(name):
                continue
            kind = _kind(fam_type, name)
            if kind is None:
                continue
            key = (name, tuple(sorted(labels.items())))
            s = tgt.series.get(key)
            if s is None:
                if len(tgt.series) >= MAX_SERIES:
                    tgt.series_dropped += 1
                    continue
                s = tgt.series[key] = Series(tgt.url, name, dict(labels), kind)
            if kind == "value":
                s.points.append([t, value])
            else:
                if s.last is not None and t > s.last[0] and value >= s.last[1]:
                    s.points.append([t, round((value - s.last[1]) / (t - s.last[0]), 6)])
                s.last = (t, value)  # a counter reset (value fell) restarts the rate

    def result(self) -> dict[str, Any]:
        return {
            "interval_s": SCRAPE_INTERVAL_S,
            "match": self.match.pattern,
            "targets": [
                {
                    "url": t.url,
                    "scrapes": t.scrapes,
                    "failed": t.failed,
                    "failures": dict(sorted(t.failures.items())),
                    "series_dropped": t.series_dropped,
                }
                for t in self.targets
            ],
            "series": [
                {
                    "url": s.url,
                    "name": s.name,
                    "labels": s.labels,
                    "kind": s.kind,
                    "points": s.points,
                }  # fmt: skip
                for t in self.targets
                for s in t.series.values()
            ],
        }


class _ScrapeFailed(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _fetch(url: str) -> str:
    # imported here: every run checks its --metrics-url options, few scrape (17 ms of start-up)
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "barfast"})
    try:
        with urllib.request.urlopen(req, timeout=SCRAPE_TIMEOUT_S) as resp:  # noqa: S310
            body = resp.read(MAX_PAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise _ScrapeFailed(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        r = exc.reason
        if isinstance(r, TimeoutError) or "timed out" in str(r):
            raise _ScrapeFailed("timeout") from None
        if isinstance(r, ConnectionRefusedError):
            raise _ScrapeFailed("connection refused") from None
        raise _ScrapeFailed(f"connect: {getattr(r, 'strerror', None) or r}") from None
    except TimeoutError:
        raise _ScrapeFailed("timeout") from None
    except (OSError, ValueError) as exc:  # reset mid-body, a malformed status line
        raise _ScrapeFailed(f"read: {type(exc).__name__}") from None
    if len(body) > MAX_PAGE_BYTES:
        raise _ScrapeFailed("page too large")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise _ScrapeFailed("not UTF-8 text") from None


def _parse(text: str) -> list[tuple[str, str, dict[str, str], float]]:
    """(family type, sample name, labels, value) for every sample of a page; a page that does not
    parse fails whole (a half-read page would put holes in some series and not others)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.append((fam.type, s.name, dict(s.labels), float(s.value)))
    except (ValueError, IndexError, TypeError, KeyError):
        raise _ScrapeFailed("parse error") from None
    return out
