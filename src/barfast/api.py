"""The Python API: `barfast.run(...) -> Result`, for tests and notebooks.

    r = barfast.run("http://127.0.0.1:8080/", connections=10, requests=10_000)
    assert r.errors == 0 and r.latency.p99 < 0.2

It runs exactly what `barfast run` runs (run.run_command: the same coordinator, worker processes
and report) and hands back the JSON report, wrapped: the report is the one source of truth
(`Result.raw`), the attributes are read from it. Bad input raises the exception the CLI turns into
its one-line message (UsageError, ScenarioError, NoLoadError: exit code on `.exit_code`).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barfast.scenario.compile import LOAD_KEYS
from barfast.status import UsageError

# the `barfast run` knobs a call may give: a scenario's `load` keys (overridden by them), plus
# https and unix sockets (`barfast run` --insecure, --cacert, ...)
TRANSPORT_KNOBS = ("insecure", "cacert", "cert", "key", "servername", "tls_resume", "unix_socket")
KNOBS = (
    *LOAD_KEYS,
    "workers",
    "naps",
    "seed",
    "tags",
    "method",
    "headers",
    "body",
    "body_file",
    "output",
    *TRANSPORT_KNOBS,
    "thresholds",
    "junit",
)
NS = 1e-9


@dataclass(frozen=True)
class Latency:
    """A latency block of the report, in seconds (None where the report has no figure)."""

    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    max: float | None
    min: float | None
    mean: float | None
    stdev: float | None
    count: int

    @classmethod
    def from_report(cls, d: dict[str, Any] | None) -> Latency | None:
        """A report block in milliseconds (`latency_ms`, `connect_ms`, ...) -> seconds."""
        if not isinstance(d, dict):
            return None

        def s(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v) / 1000.0

        return cls(
            p50=s("p50"),
            p90=s("p90"),
            p99=s("p99"),
            p999=s("p99.9"),
            max=s("max"),
            min=s("min"),
            mean=s("mean"),
            stdev=s("stdev"),
            count=int(d.get("count", 0)),
        )


class Endpoint:
    """One endpoint's figures (the report's `endpoints[name]`)."""

    def __init__(self, name: str, d: dict[str, Any]):
        self.name = name
        self.raw = d
        req = d.get("requests", {})
        self.requests = int(req.get("started", 0))
        self.completed = int(req.get("completed", 0))
        self.errors = int(req.get("errors", 0))
        self.rps = float(d.get("rps", 0.0))
        self.weight = d.get("weight")
        self.checks = d.get("checks")
        self.latency = Latency.from_report(d.get("latency_ms"))
        self.connect = Latency.from_report(d.get("connect_ms"))
        self.ttfb = Latency.from_report(d.get("ttfb_ms"))

    def __repr__(self) -> str:
        return f"<Endpoint {self.name}: {self.completed} completed, {self.errors} errors>"


class FlowResult:
    """One flow's figures (the report's `flows[name]`): iterations and their duration."""

    def __init__(self, name: str, d: dict[str, Any]):
        self.name = name
        self.raw = d
        it = d.get("iterations", {})
        self.iterations = int(it.get("started", 0))
        self.completed = int(it.get("completed", 0))
        self.failed = int(it.get("failed", 0))
        self.in_progress = int(it.get("in_progress", 0))
        self.rate = float(d.get("iterations_per_s", 0.0))
        self.duration = Latency.from_report(d.get("iteration_ms"))
        self.captures = list(d.get("captures", []))
        self.captures_failed = int(d.get("captures_failed", 0))
        self.steps = list(d.get("steps", []))

    def __repr__(self) -> str:
        return f"<Flow {self.name}: {self.completed} completed, {self.failed} failed>"


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold's verdict on the merged result (the report's `thresholds` row). `measured`
    is in ms for times, a fraction for rates (None: no data); `aborted` says when its window
    failed and stopped the run (abort_on_fail)."""

    threshold: str
    metric: str
    scope: dict[str, str]
    passed: bool
    measured: float | None
    measured_text: str
    aborted: dict[str, Any] | None

    @classmethod
    def from_report(cls, row: dict[str, Any]) -> ThresholdResult:
        return cls(
            threshold=row["threshold"],
            metric=row["metric"],
            scope=dict(row.get("scope", {})),
            passed=bool(row["passed"]),
            measured=row.get("measured"),
            measured_text=row.get("measured_text", ""),
            aborted=row.get("aborted"),
        )


class Result:
    """A finished run, read from its JSON report (`raw`)."""

    def __init__(self, report: dict[str, Any]):
        self.raw = report
        req = report.get("requests", {})
        self.requests = int(req.get("started", 0))
        self.completed = int(req.get("completed", 0))
        self.errors = int(req.get("errors", 0))
        self.in_flight = int(req.get("in_flight", 0))
        self.error_rate = self.errors / self.requests if self.requests else 0.0
        self.errors_by_kind = dict(report.get("errors", {}))
        self.status = {int(k): int(v) for k, v in report.get("status", {}).items()}
        self.rps = float(report.get("rps", 0.0))
        self.duration = float(report.get("duration_s", 0.0))
        self.latency = Latency.from_report(report.get("latency_ms"))
        self.connect = Latency.from_report(report.get("connect_ms"))
        self.ttfb = Latency.from_report(report.get("ttfb_ms"))
        self.checks = report.get("checks")
        self.endpoints = {n: Endpoint(n, e) for n, e in report.get("endpoints", {}).items()}
        self.flows = {
            n: FlowResult(n, f) for n, f in report.get("flows", {}).items() if not n.startswith("_")
        }
        self.data_exhausted = list(report.get("data_exhausted", []))
        cfg = report.get("config", {})
        self.config = cfg
        self.tags = dict(cfg.get("tags", {}))
        self.exit_code = int(report.get("exit_code", 0))
        self.thresholds = [ThresholdResult.from_report(r) for r in report.get("thresholds", [])]
        self.thresholds_passed = all(t.passed for t in self.thresholds)

    def percentile(self, q: float) -> float:
        """Any latency percentile (0 < q <= 100) in seconds, from the report's exact merged
        HdrHistogram."""
        from hdrh.histogram import HdrHistogram

        blob = self.raw.get("histogram", {}).get("latency")
        if not blob:
            raise ValueError("the report has no latency histogram")
        if not 0 < q <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {q}")
        return HdrHistogram.decode(blob).get_value_at_percentile(q) * NS

    @classmethod
    def from_json(cls, source: str | Path | dict[str, Any]) -> Result:
        """A saved `barfast run --json` (or `-o FILE`) report, or its dict."""
        if isinstance(source, dict):
            return cls(source)
        return cls(json.loads(Path(source).read_text()))

    def __repr__(self) -> str:
        p99 = self.latency.p99 if self.latency else None
        p99_text = f"{p99 * 1e3:.3f} ms" if p99 is not None else "-"
        return (
            f"<Result {self.rps:,.0f} req/s, p99 {p99_text}, "
            f"{self.completed} completed, {self.errors} errors>"
        )


def run(target: Any = None, **load: Any) -> Result:
    """Run a load test and return its Result.

    target: a URL, a scenario file (.yaml/.yml/.py), a barfast.Scenario, or None (the embedded
    target, as `barfast run` with no URL). load: the `barfast run` flags by name (connections,
    duration, requests, rate, stages, arrival, timeout, connect_timeout, max_connections, workers,
    naps, seed, tags (a dict), iterations (a flow scenario: the same bound as requests, which
    counts iterations there), and for a URL method, headers, body, body_file; for https
    insecure, cacert, cert, key, servername, tls_resume; unix_socket); they override a
    scenario's `load`, seed and tags. thresholds: a list of expressions ("p99<200ms", or
    {"expr": ..., "abort_on_fail": True, "delay": "5s"}) added to a scenario's; their verdicts are
    `Result.thresholds` (a failed one is no exception: `Result.exit_code` is 99), and junit=FILE
    writes them as JUnit XML.
    """
    from barfast.command import run_command
    from barfast.scenario.model import Scenario

    for k in load:
        if k not in KNOBS:
            near = difflib.get_close_matches(k, KNOBS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UsageError(f"unknown option {k!r}{hint}")
    opts = dict(load)
    if "iterations" in opts:  # a flow scenario's bound (the engine's request bound counts them)
        its = opts.pop("iterations")
        if opts.get("requests") is None:
            opts["requests"] = its
    transport = {k: opts.pop(k) for k in TRANSPORT_KNOBS if k in opts}
    for k in ("duration", "timeout", "connect_timeout"):
        if isinstance(opts.get(k), (int, float)) and not isinstance(opts[k], bool):
            opts[k] = f"{opts[k]}s"  # a number is seconds, as in a scenario file
    if isinstance(opts.get("tags"), dict):
        opts["tags"] = [f"{k}={v}" for k, v in opts["tags"].items()]
    if isinstance(opts.get("thresholds"), (str, dict)):
        opts["thresholds"] = [opts["thresholds"]]
    if isinstance(opts.get("stages"), (list, tuple)):
        opts["stages"] = ",".join(str(s) for s in opts["stages"])
    box: dict[str, Any] = {}
    scenario = target if isinstance(target, Scenario) else None
    url = None if scenario is not None or target is None else str(target)
    run_command(url, quiet=True, scenario=scenario, sink=box.update, transport=transport, **opts)
    return Result(box)


__all__ = ["Endpoint", "Latency", "Result", "ThresholdResult", "run"]
