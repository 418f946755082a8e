"""`--hlog FILE`: the run as an HdrHistogram interval log, one histogram per second and series.

Written with the `hdrhistogram` package's HistogramLogWriter, so HistogramLogReader (and
HdrHistogram's Java and other tooling: the same format) read it back. Values are nanoseconds; the
"Interval_Max" column is in milliseconds (the writer's default ratio). Timestamps are seconds from
the start of the run; `#[StartTime: ...]` gives the run's start when the report knows it.

Series, in this order for each second:
  untagged              latency over every endpoint (the report's `latency_ms` view)
  Tag=uncorrected       open loop: latency from the actual send
  Tag=send_lag          open loop: actual send - intended send
  Tag=ep.NAME           a scenario of several endpoints: that endpoint's latency
A tag cannot hold a comma or white space (the line format's separators): those become "_".

The payloads are the report's own interval blobs, which are hdrh's encode() of each interval, so
the writer is handed them as they are rather than decoded and encoded again (6,600 intervals of
a 10-minute, 10-endpoint run would cost seconds that way). The sum of the intervals of a series is
the run's merged histogram of that series, exactly (tests/test_report_outputs.py).
"""

from __future__ import annotations

import re
from typing import IO, Any

from hdrh.log import HistogramLogWriter

from barfast.config import NS_PER_MS
from barfast.report.data import Intervals
from barfast.status import UsageError

_TAG_UNSAFE = re.compile(r"[,\s]")


class _Encoded:
    """What HistogramLogWriter.output_interval_histogram() asks of a histogram, for a blob that
    is already hdrh's encode() of it."""

    __slots__ = ("blob", "max_value")

    def __init__(self, blob: str, max_value: int) -> None:
        self.blob = blob
        self.max_value = max_value

    def encode(self) -> bytes:
        return self.blob.encode("ascii")

    def get_max_value(self) -> int:
        return self.max_value


class _Tagged:
    """Puts `Tag=NAME,` before the writer's next interval line (the log format's tag prefix,
    which hdrh's writer does not write itself)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tag: str | None = None

    def write(self, text: str) -> int:
        if self.tag is not None and not text.startswith("#"):
            text = f"Tag={self.tag},{text}"
        return self.out.write(text)


def tag_of(name: str) -> str:
    return _TAG_UNSAFE.sub("_", name)


def series(rep: dict[str, Any]) -> list[tuple[str | None, str, str | None]]:
    """(tag, view, endpoint) of every series the log holds, in line order within a second."""
    iv = Intervals(rep)
    out: list[tuple[str | None, str, str | None]] = [(None, "latency", None)]
    out += [(v, v, None) for v in iv.views if v != "latency"]
    # an endpoint's latency only: its open-loop views are in the JSON (and on the page), and would
    # triple the log's lines and its writing time (benchmarks/README.md, "Reports")
    out += [(f"ep.{tag_of(n)}", "latency", n) for n in iv.endpoint_names]
    return out


def write(rep: dict[str, Any], path: str) -> None:
    """Write the interval log of `rep` to `path` (UsageError when it cannot be written)."""
    iv = Intervals(rep)
    lines: list[tuple[int, int, str | None, str, int]] = []  # second, order, tag, blob, max ns
    for order, (tag, view, endpoint) in enumerate(series(rep)):
        for sec, sc, blob in iv.each(view, endpoint):
            lines.append((sec, order, tag, blob, sc.max_value))
    lines.sort(key=lambda t: (t[0], t[1]))
    try:
        with open(path, "w", encoding="ascii") as f:
            sink = _Tagged(f)
            w = HistogramLogWriter(sink)
            w.output_comment(
                "[Logged with barfast: one interval histogram per second, values in ns]"
            )
            w.output_log_format_version()
            started = rep.get("started_unix_s")
            if isinstance(started, (int, float)) and not isinstance(started, bool):
                # hdrh's output_start_time() breaks on a datetime method name; same line, by hand.
                f.write(f"#[StartTime: {float(started):.3f} (seconds since epoch)]\n")
            w.output_legend()
            for sec, _, tag, blob, max_ns in lines:
                sink.tag = tag
                w.output_interval_histogram(
                    _Encoded(blob, max_ns),
                    # the writer reads a start of 0 as "take it from the histogram": 1 ns
                    # instead, which it prints as 0.000000
                    start_time_stamp_sec=float(sec) or 1e-9,
                    end_time_stamp_sec=float(sec + 1),
                    max_value_unit_ratio=float(NS_PER_MS),
                )
    except OSError as exc:
        raise UsageError(f"cannot write --hlog {path!r}: {exc.strerror}") from None
