"""Live progress while a run goes: a rich display on a terminal, plain lines in logs, nothing when quiet.

The coordinator calls `tick_run()` about once a second with what its Merger already knows
(cumulative totals of all workers, the percentiles of the last complete second of the merged
series): progress never decodes a histogram itself, so it adds nothing to the coordinator's
per-snapshot cost. Everything goes to stderr: stdout stays for the report (clean JSON with --json).

- terminal (stderr is a TTY): a rich Live panel refreshed once a second;
- not a terminal (CI logs, pipes): one plain line every PLAIN_EVERY_S seconds;
- quiet: nothing; only the final report is printed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

PLAIN_EVERY_S = 5.0
SERIES_SETTLE_S = 0.3  # second k is shown once every worker's snapshot for it is in


@dataclass
class ProgressStats:
    elapsed_s: float
    remaining_s: float | None  # None: bounded by count only
    requests: int  # completed, all workers, cumulative
    target_requests: int  # -n, 0 when unbounded
    rps: float  # the last complete second (coordinator), else since the last tick
    p50_ms: float | None  # of the last complete second
    p99_ms: float | None
    errors: int
    workers_alive: int
    workers_total: int


def choose_mode(quiet: bool, stream: TextIO | None = None) -> str:
    if quiet:
        return "off"
    s = stream if stream is not None else sys.stderr
    try:
        return "live" if s.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def format_line(st: ProgressStats) -> str:
    rem = f" remaining {st.remaining_s:5.1f}s" if st.remaining_s is not None else ""
    tgt = f"/{st.target_requests}" if st.target_requests else ""
    lat = (
        f" p50 {st.p50_ms:.2f}ms p99 {st.p99_ms:.2f}ms"
        if st.p50_ms is not None and st.p99_ms is not None
        else ""
    )
    return (
        f"[{st.elapsed_s:6.1f}s{rem}] requests {st.requests}{tgt}  {st.rps:,.0f} req/s{lat}  "
        f"errors {st.errors}  workers {st.workers_alive}/{st.workers_total}"
    )


class Progress:
    """Renders ProgressStats: turns cumulative counts into req/s per tick, prints by mode."""

    def __init__(self, mode: str, stream: TextIO | None = None):
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        self._live: Any = None
        self._last_plain = (
            time.monotonic()
        )  # first plain line after PLAIN_EVERY_S: short runs stay quiet
        self._prev_requests = 0
        self._prev_t: float | None = None

    # -- input ------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.mode != "off"

    def tick(
        self,
        *,
        elapsed_s: float,
        remaining_s: float | None,
        requests: int,
        target_requests: int,
        errors: int,
        workers_alive: int,
        workers_total: int,
        p50_ms: float | None = None,
        p99_ms: float | None = None,
        rps: float | None = None,
    ) -> ProgressStats:
        """`rps`: the caller's exact figure for the last complete second; without it, the change
        in `requests` since the previous tick."""
        now = time.monotonic()
        if rps is None:
            dt = now - self._prev_t if self._prev_t is not None else elapsed_s
            rps = (requests - self._prev_requests) / dt if dt > 0 else 0.0
        self._prev_t, self._prev_requests = now, requests
        st = ProgressStats(
            elapsed_s,
            remaining_s,
            requests,
            target_requests,
            max(0.0, rps),
            p50_ms,
            p99_ms,
            errors,
            workers_alive,
            workers_total,
        )
        self.show(st)
        return st

    # -- output -----------------------------------------------------------------------------------
    def show(self, st: ProgressStats) -> None:
        if self.mode == "live":
            self._show_live(st)
        elif self.mode == "plain":
            now = time.monotonic()
            if now - self._last_plain >= PLAIN_EVERY_S:
                self._last_plain = now
                print("barfast: " + format_line(st), file=self.stream, flush=True)

    def _show_live(self, st: ProgressStats) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        rem = f"{st.remaining_s:.1f}s" if st.remaining_s is not None else "-"
        table.add_row("elapsed / remaining", f"{st.elapsed_s:.1f}s / {rem}")
        tgt = f" / {st.target_requests:,}" if st.target_requests else ""
        table.add_row("requests", f"{st.requests:,}{tgt}")
        table.add_row("req/s (last second)", f"{st.rps:,.0f}")
        if st.p50_ms is not None and st.p99_ms is not None:
            table.add_row("p50 / p99 (last second)", f"{st.p50_ms:.2f} ms / {st.p99_ms:.2f} ms")
        else:
            table.add_row("p50 / p99 (last second)", "-")
        table.add_row("errors", f"{st.errors:,}")
        table.add_row("workers alive", f"{st.workers_alive} / {st.workers_total}")
        if self._live is None:
            console = Console(file=self.stream)
            self._live = Live(table, console=console, auto_refresh=False, transient=True)
            self._live.start()
        self._live.update(table, refresh=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def tick_run(
    progress: Progress,
    merger: Any,
    *,
    start_t: float,
    duration_s: float | None,
    target_requests: int,
    workers_alive: int,
    workers_total: int,
) -> None:
    """One progress tick of a running coordinator, from its Merger (barfast.result.Merger)."""
    if not progress.active:
        return
    elapsed = max(0.0, time.monotonic() - start_t)
    remaining = max(0.0, duration_s - elapsed) if duration_s else None
    tot = merger.totals()
    p50 = p99 = rps = None
    if elapsed >= 1.0 + SERIES_SETTLE_S:
        # The last complete second of the merged per-second series, once every worker's snapshot
        # for it has had time to arrive: its exact count is the req/s shown. (The difference of
        # cumulative totals between two ticks aliases: workers snapshot on their own phase, so one
        # tick could hold two of a worker's seconds and show 1.8 x the rate.)
        pt = merger.series_point(int(elapsed - SERIES_SETTLE_S) - 1)
        if pt is not None and pt.get("requests"):
            p50, p99 = pt.get("p50_ms"), pt.get("p99_ms")
            rps = float(pt["requests"])
    progress.tick(
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        elapsed_s=elapsed,
        remaining_s=remaining,
        requests=int(tot.get("completed", 0)),
        target_requests=target_requests,
        errors=int(tot.get("errors", 0)),
        workers_alive=workers_alive,
        workers_total=workers_total,
    )
