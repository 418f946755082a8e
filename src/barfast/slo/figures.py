"""What a threshold reads: the merged figures of one scope (the whole run, an endpoint, a tag),
cumulative from a Merger, or over a window as the difference of two cumulative states.

Every figure comes from the Merger's exact merged data (all workers, local and remote): histogram
counts (the merged layout, summed over a scope's endpoints, exactly like the Merger's own adds),
the engine's request counters, status tallies and check counters. A scope is a set of endpoint
indexes, or None for the whole run. Endpoints have latency, connect and ttfb histograms of their
own, and in open loop send lag (engine/aggregate.py ENDPOINT_VIEWS); a run of one endpoint keeps
nothing per endpoint, so that endpoint's figures are the run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from barfast.result.merge import Merger

COUNTERS = ("completed", "errors", "http_errors", "checks_passed", "checks_failed")


@dataclass
class Figures:
    """Counts of one scope: dense uint64 histogram counts per view (the merged layout) and
    counters; `seconds` is the time they cover."""

    hists: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Sparse:
    """A stored cumulative state: per view the non-zero (index, count) pairs."""

    hists: dict[str, tuple[np.ndarray, np.ndarray]]
    counters: dict[str, int]
    seconds: float


def cumulative(
    m: Merger,
    scope: tuple[int, ...] | None,
    views: tuple[str, ...],
    checked: frozenset[int],
    main_view: str,
    endpoint_count: int,
) -> Figures:
    """Cumulative figures of `scope` now. `main_view` is the run's latency histogram ("latency"
    in open loop, "uncorrected" in a closed one, as the report's latency_ms); `checked` the
    endpoints that have checks; `endpoint_count` the endpoints of the run (1: no per-endpoint
    data is kept, the run's figures are the endpoint's)."""
    fig = Figures()
    fig.seconds = max((w.elapsed_ns for w in m.workers.values()), default=0) / 1e9
    per_ep = m.endpoint_totals()
    if scope is None or endpoint_count <= 1:
        tot = m.totals()
        for v in views:
            # the Merger's own counts views: read, never written here
            fig.hists[v] = m._counts[main_view if v == "latency" else v]
        http = sum(n for w in m.workers.values() for c, n in w.status.items() if int(c) >= 400)
        fig.counters = {
            "completed": int(tot.get("completed", 0)),
            "errors": int(tot.get("errors", 0)),
            "http_errors": int(http),
        }
        eps = range(len(per_ep)) if scope is None or endpoint_count <= 1 else scope
    else:
        size = len(m._counts["latency"])
        for v in views:
            acc = np.zeros(size, dtype=np.uint64)
            for i in scope:
                sums = m.endpoints.get(i)
                if sums is not None and v in sums.counts:
                    acc += sums.counts[v]
            fig.hists[v] = acc
        completed = errors = http = 0
        for i in scope:
            t = per_ep[i] if i < len(per_ep) else {}
            completed += int(t.get("completed", 0))
            errors += int(t.get("errors", 0))
            sums = m.endpoints.get(i)
            if sums is not None:
                http += sum(n for c, n in sums.status.items() if int(c) >= 400)
        fig.counters = {"completed": completed, "errors": errors, "http_errors": http}
        eps = scope
    passed = failed = 0
    for i in eps:
        if i in checked and i < len(per_ep):
            done, bad = int(per_ep[i].get("completed", 0)), int(per_ep[i].get("check_failed", 0))
            passed += done - bad
            failed += bad
    fig.counters["checks_passed"] = passed
    fig.counters["checks_failed"] = failed
    return fig


def sparse(fig: Figures) -> Sparse:
    """A copy of `fig` to keep: only its non-zero counts."""
    out = {}
    for v, counts in fig.hists.items():
        idx = np.flatnonzero(counts)
        out[v] = (idx, counts[idx].copy())
    return Sparse(out, dict(fig.counters), fig.seconds)


def window(now: Figures, then: Sparse | None) -> Figures:
    """now - then: the figures of the samples merged between the two states (counts only grow, so
    `then`'s non-zero indexes are a subset of now's)."""
    if then is None:
        return now
    out = Figures(seconds=max(0.0, now.seconds - then.seconds))
    for v, counts in now.hists.items():
        d = counts.copy()
        idx, val = then.hists.get(v, (np.empty(0, np.intp), np.empty(0, np.uint64)))
        d[idx] -= np.minimum(val, d[idx])  # a state never exceeds a later one; guard anyway
        out.hists[v] = d
    out.counters = {k: max(0, now.counters.get(k, 0) - then.counters.get(k, 0)) for k in COUNTERS}
    return out


__all__ = ["COUNTERS", "Figures", "Sparse", "cumulative", "sparse", "window"]
