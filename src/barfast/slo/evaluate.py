"""Thresholds against merged figures: scopes resolved before the run, values measured after it
(or over a window during it), each a pass or a fail with the figure that decided it.

Definitions (docs/thresholds.md): latency figures are the report's (corrected in open loop) and use
the report's own HdrHistogram arithmetic, so `p99<…` reads the same number as latency_ms.p99.
error_rate = request errors / (completed + errors); http_error_rate also counts responses with a
status of 400 or more; check_rate = responses that passed every check / responses checked; rps =
completed / seconds; requests = completed + errors. A scope with no data has no value: at the end
that is a failure (a gate must not pass on no traffic), in a window it is no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from barfast.engine.aggregate import ENDPOINT_HISTS_MAX
from barfast.result.hist import mean_stdev_counts, ms, percentiles
from barfast.slo.figures import Figures
from barfast.slo.grammar import NS_PER_UNIT, Threshold
from barfast.status import UsageError


@dataclass(frozen=True)
class Endpoint:
    """What a scope may name: an endpoint's name, tags and whether it has checks."""

    name: str
    tags: dict[str, str]
    checks: bool


@dataclass(frozen=True)
class Plan:
    """Thresholds with their scopes resolved against one run."""

    thresholds: tuple[Threshold, ...]
    scopes: tuple[tuple[int, ...] | None, ...]  # endpoint indexes, None: the whole run
    checked: frozenset[int]
    main_view: str
    endpoint_count: int

    def views(self, i: int) -> tuple[str, ...]:
        v = self.thresholds[i].view
        return (v,) if v else ()


def resolve(
    thresholds: list[Threshold],
    endpoints: list[Endpoint],
    run_tags: dict[str, str],
    open_loop: bool,
    scenario: bool,
) -> Plan:
    """Resolve every scope now, so a typo is a usage error (exit 2) before any load is sent."""
    scopes: list[tuple[int, ...] | None] = []
    for t in thresholds:
        where = f"threshold '{t.text}'"
        if t.view == "send_lag" and not open_loop:
            raise UsageError(f"{where}: send lag exists in open loop only (-R, --stages)")
        if t.scope_key == "endpoint":
            if not scenario:
                raise UsageError(f"{where}: {{endpoint=…}} needs a scenario (a URL run has one)")
            idx = tuple(i for i, e in enumerate(endpoints) if e.name == t.scope_value)
            if not idx:
                names = ", ".join(e.name for e in endpoints[:10])
                raise UsageError(f"{where}: no endpoint {t.scope_value!r} (endpoints: {names})")
        elif t.scope_key:
            idx = tuple(
                i for i, e in enumerate(endpoints) if e.tags.get(t.scope_key) == t.scope_value
            )
            if run_tags.get(t.scope_key) == t.scope_value:
                idx = None  # the whole run has the tag
            elif not idx:
                raise UsageError(
                    f"{where}: no request and no run tag has {t.scope_key}={t.scope_value}"
                )
        else:
            idx = None
        scope = None if idx is None or len(idx) == len(endpoints) else idx
        if scope is not None and t.view and any(i >= ENDPOINT_HISTS_MAX for i in scope):
            raise UsageError(
                f"{where}: endpoints from #{ENDPOINT_HISTS_MAX} on have no latency figures of "
                "their own"
            )
        if t.metric == "check_rate" and not any(
            endpoints[i].checks for i in (idx if idx is not None else range(len(endpoints)))
        ):
            raise UsageError(f"{where}: no request in its scope has checks")
        scopes.append(scope)
    return Plan(
        thresholds=tuple(thresholds),
        scopes=tuple(scopes),
        checked=frozenset(i for i, e in enumerate(endpoints) if e.checks),
        main_view="latency" if open_loop else "uncorrected",
        endpoint_count=max(1, len(endpoints)),
    )


def measure(t: Threshold, fig: Figures, layout: HdrHistogram) -> float | None:
    """The threshold's figure in base units (ns, fraction, req/s, count); None: no data."""
    c = fig.counters
    if t.view:
        counts = fig.hists[t.view]
        nz = np.flatnonzero(counts)
        if not len(nz):
            return None
        total = int(counts[nz].sum())
        if t.percentile is not None:
            return float(percentiles(layout, counts, total, (t.percentile,))[t.percentile])
        if t.stat == "max":
            return float(layout.get_highest_equivalent_value(layout.get_value_from_index(nz[-1])))
        if t.stat == "min":
            if counts[0]:
                return 0.0
            return float(layout.get_lowest_equivalent_value(layout.get_value_from_index(nz[0])))
        return mean_stdev_counts(layout, nz, counts[nz], total)[0]
    done, errors = c.get("completed", 0), c.get("errors", 0)
    if t.metric == "requests":
        return float(done + errors)
    if t.metric == "errors":
        return float(errors)
    if t.metric == "rps":
        return done / fig.seconds if fig.seconds > 0 else None
    if t.metric == "check_rate":
        n = c.get("checks_passed", 0) + c.get("checks_failed", 0)
        return c.get("checks_passed", 0) / n if n else None
    if not done + errors:
        return None
    if t.metric == "http_error_rate":
        return (errors + c.get("http_errors", 0)) / (done + errors)
    return errors / (done + errors)


def show(t: Threshold, v: float | None) -> str:
    """A value in the threshold's own unit: `2.13ms`, `0.42%`, `1523.4`."""
    if v is None:
        return "no data"
    if t.kind == "time":
        return f"{v / NS_PER_UNIT[t.unit]:.4g}{t.unit}"
    if t.kind == "rate":
        return f"{v * 100:.4g}%" if t.unit == "%" else f"{v:.4g}"
    return f"{v:.6g}" if t.metric == "rps" else f"{int(v)}"


def verdict(t: Threshold, v: float | None) -> bool:
    return v is not None and t.passes(v)


def result_row(
    t: Threshold, v: float | None, *, aborted: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report's row for one threshold (JSON `thresholds`, text and JUnit read it)."""
    passed = verdict(t, v) and aborted is None
    limit = t.value
    if t.kind == "time":
        limit = t.value / NS_PER_UNIT[t.unit]
    elif t.kind == "rate" and t.unit == "%":
        limit = t.value * 100
    row: dict[str, Any] = {
        "threshold": t.text,
        "metric": t.metric,
        "scope": {t.scope_key: t.scope_value} if t.scope_key else {},
        "op": t.op,
        "limit": round(limit, 9),
        "unit": t.unit,
        # base units: ms for times (as latency_ms), fractions for rates
        "measured": None if v is None else (ms(v) if t.kind == "time" else round(v, 9)),
        "measured_text": show(t, v),
        "passed": passed,
        "abort_on_fail": t.abort_on_fail,
    }
    if t.abort_on_fail:
        row["delay_s"] = t.delay_ns / 1e9
        row["window_s"] = t.window_ns / 1e9
    if aborted is not None:
        row["aborted"] = aborted
    return row


def evaluate(
    plan: Plan,
    figures: list[Figures],
    layout: HdrHistogram,
    aborted: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per threshold; `figures[i]` is threshold i's scope; `aborted` the windowed fails
    that stopped the run (threshold index -> what the window measured)."""
    aborted = aborted or {}
    return [
        result_row(t, measure(t, f, layout), aborted=aborted.get(i))
        for i, (t, f) in enumerate(zip(plan.thresholds, figures, strict=True))
    ]


__all__ = ["Endpoint", "Plan", "evaluate", "measure", "resolve", "result_row", "show", "verdict"]
