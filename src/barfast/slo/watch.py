"""abort_on_fail: thresholds checked once a second over a sliding window of the merged data while
the run goes on; the first that fails stops the run.

The coordinator calls tick() about once a second (supervise(), between its polls: off the workers'
hot path, which runs in other processes). Each tick keeps each watched scope's cumulative state as
sparse counts; the window is now minus the newest state at least `window` old (or since the start
while the run is younger), which is exact: the merged counts only grow. A scope with no data in
the window gives no verdict; before `delay` there is none either.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from barfast.result.hist import ms
from barfast.slo.evaluate import Plan, measure, show
from barfast.slo.figures import Sparse, cumulative, sparse, window

if TYPE_CHECKING:
    from barfast.result.merge import Merger


class Watch:
    """The abort_on_fail thresholds of a Plan; tick() -> the reason to stop, or None."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.watched = [i for i, t in enumerate(plan.thresholds) if t.abort_on_fail]
        self.history: dict[int, deque[tuple[float, Sparse]]] = {i: deque() for i in self.watched}
        self.aborted: dict[int, dict[str, Any]] = {}
        self.ticks = 0

    def __bool__(self) -> bool:
        return bool(self.watched)

    def tick(self, m: Merger, elapsed_s: float) -> str | None:
        if self.aborted or not self.watched or not m.workers:
            return None
        self.ticks += 1
        p = self.plan
        layout = m.hists["latency"]
        for i in self.watched:
            t = p.thresholds[i]
            now = cumulative(m, p.scopes[i], p.views(i), p.checked, p.main_view, p.endpoint_count)
            hist = self.history[i]
            hist.append((elapsed_s, sparse(now)))
            cutoff = elapsed_s - t.window_ns / 1e9
            while len(hist) >= 2 and hist[1][0] <= cutoff:
                hist.popleft()  # the newest state at least a window old stays first
            if elapsed_s < t.delay_ns / 1e9:
                continue
            then = hist[0][1] if hist[0][0] <= cutoff else None
            v = measure(t, window(now, then), layout)
            if v is None or t.passes(v):
                continue
            span = elapsed_s - hist[0][0] if then is not None else elapsed_s
            self.aborted[i] = {
                "at_s": round(elapsed_s, 3),
                "window_s": round(span, 3),
                "measured": ms(v) if t.kind == "time" else round(v, 9),
                "measured_text": show(t, v),
            }
            return (
                f"threshold '{t.text}' failed at {elapsed_s:.1f}s over the last {span:.1f}s "
                f"({t.metric} = {show(t, v)}): stopping the run (abort_on_fail)"
            )
        return None


__all__ = ["Watch"]
