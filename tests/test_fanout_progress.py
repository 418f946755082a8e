"""progress.py: what each mode writes (to a real stream), and that quiet writes nothing."""

from __future__ import annotations

import io

import pytest

from barfast.report import progress
from barfast.report.progress import Progress, ProgressStats, choose_mode, format_line


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_mode() -> None:
    assert choose_mode(True, Tty()) == "off"
    assert choose_mode(False, Tty()) == "live"
    assert choose_mode(False, io.StringIO()) == "plain"


def test_format_line_has_every_figure() -> None:
    st = ProgressStats(2.0, 8.0, 1234, 0, 617.0, 0.25, 1.5, 3, 2, 3)
    line = format_line(st)
    for needle in ("2.0s", "remaining   8.0s", "requests 1234", "617 req/s", "p50 0.25ms",
                   "p99 1.50ms", "errors 3", "workers 2/3"):  # fmt: skip
        assert needle in line, needle
    st = ProgressStats(2.0, None, 10, 100, 5.0, None, None, 0, 1, 1)
    line = format_line(st)
    assert "remaining" not in line and "requests 10/100" in line and "p50" not in line


def _tick(p: Progress, requests: int) -> ProgressStats:
    return p.tick(elapsed_s=1.0, remaining_s=1.0, requests=requests, target_requests=0, errors=0,
                  workers_alive=1, workers_total=1, p50_ms=0.5, p99_ms=0.9)  # fmt: skip


def test_plain_lines_are_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    p = Progress("plain", out)
    _tick(p, 10)
    assert out.getvalue() == ""  # the first line waits PLAIN_EVERY_S: short runs stay quiet
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    st = _tick(p, 20)
    assert out.getvalue().count("\n") == 1 and "requests 20" in out.getvalue()
    assert st.rps > 0


def test_live_display_on_a_terminal() -> None:
    out = Tty()
    p = Progress("live", out)
    _tick(p, 42)
    p.close()
    text = out.getvalue()
    assert "workers alive" in text and "42" in text


def test_quiet_writes_nothing() -> None:
    out = Tty()
    p = Progress("off", out)
    _tick(p, 42)
    p.close()
    assert out.getvalue() == ""


class Recorder(Progress):
    """A Progress that keeps every tick's figures instead of printing them."""

    def __init__(self) -> None:
        super().__init__("plain", io.StringIO())
        self.ticks: list[ProgressStats] = []
        self.merger: object = None  # when set: each tick also keeps the series point it showed
        self.points: list[dict | None] = []

    def show(self, st: ProgressStats) -> None:
        self.ticks.append(st)
        if self.merger is not None:
            # tick_run's own choice of second (the coordinator is one thread: nothing merged
            # between its look-up and this call)
            second = int(st.elapsed_s - progress.SERIES_SETTLE_S) - 1
            ok = st.elapsed_s >= 1.0 + progress.SERIES_SETTLE_S
            self.points.append(self.merger.series_point(second) if ok else None)  # type: ignore[attr-defined]


def test_live_rate_is_the_last_complete_second(nginx) -> None:
    # Two workers at 3000 req/s in all: each tick shows the merged count of the last complete
    # second (exact: 3000), not the change in cumulative totals between two ticks, which aliases
    # against the workers' own snapshot phase (that showed 36,412 req/s at -R 20000).
    from barfast.config import build_run_config
    from barfast.fanout.coordinator import Coordinator

    cfg = build_run_config(nginx.url, rate=3000.0, duration="4s", connections=8, workers=2)
    rec = Recorder()
    coord = Coordinator(cfg, local_workers=2, progress=rec)

    class Live:  # the coordinator's merger, once start() has made it
        def series_point(self, second: int) -> dict | None:
            return coord.merger.series_point(second) if coord.merger is not None else None

    rec.merger = Live()
    try:
        coord.run()
    finally:
        coord.close()
    # Each tick with a merged second to show shows that second's exact count, whatever it is
    # (on a busy machine a second may hold fewer or more than 3000): not a difference of
    # cumulative totals. Whether the counts are 3000: test_live_rate_shows_the_target (load).
    shown = [
        (st.rps, pt) for st, pt in zip(rec.ticks, rec.points, strict=True) if pt and pt["requests"]
    ]
    assert len(shown) >= 2, rec.ticks
    for rps, pt in shown:
        assert rps == float(pt["requests"]), (rps, pt)


@pytest.mark.load  # the per-second counts are the rate the generator kept: busy CPUs move them
def test_live_rate_shows_the_target(nginx) -> None:
    from barfast.config import build_run_config
    from barfast.fanout.coordinator import Coordinator

    cfg = build_run_config(nginx.url, rate=3000.0, duration="4s", connections=8, workers=2)
    rec = Recorder()
    coord = Coordinator(cfg, local_workers=2, progress=rec)
    try:
        coord.run()
    finally:
        coord.close()
    shown = [st.rps for st in rec.ticks if st.elapsed_s >= 1.5]
    assert len(shown) >= 2, rec.ticks
    for rps in shown:
        assert rps == pytest.approx(3000, rel=0.05), shown
