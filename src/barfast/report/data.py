"""What the renderers share: a saved report read back and checked, and its interval histograms.

A report read from disk is untrusted input: `load()` turns a missing file, bad JSON, another schema
or a report without interval histograms into one UsageError line (exit 2), and `Intervals` decodes
each blob with the bounded histoblob decoder, so a corrupt blob is a UsageError too, never a
traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from barfast.engine.aggregate import new_histogram
from barfast.engine.histoblob import HistoblobError, SparseCounts
from barfast.result.hist import add_sparse
from barfast.result.intervals import IntervalCodec
from barfast.result.summary import SCHEMA
from barfast.status import UsageError

ALL = "*"  # the name the outputs give the totals over every endpoint


def load(path: str) -> dict[str, Any]:
    """A saved JSON report (`barfast run -o`), checked enough for every renderer to use."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read report {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a barfast JSON report (not UTF-8 text)") from None
    try:
        rep = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(rep, dict) or rep.get("schema") != SCHEMA:
        got = rep.get("schema") if isinstance(rep, dict) else type(rep).__name__
        raise UsageError(f"{path}: not a barfast report (schema {got!r}, expected {SCHEMA!r})")
    iv = rep.get("intervals")
    if not isinstance(iv, dict) or not isinstance(iv.get("seconds"), list):
        raise UsageError(
            f"{path}: the report holds no interval histograms (written by an older barfast): "
            "it cannot be re-rendered"
        )
    for key, kind in (
        ("requests", dict),
        ("latency_ms", dict),
        ("series", list),
        ("histogram", dict),
        ("config", dict),
    ):
        if not isinstance(rep.get(key), kind):
            raise UsageError(f"{path}: report field {key!r} is missing or not a {kind.__name__}")
    eps = rep.get("endpoints")
    if eps is not None and not isinstance(eps, dict):
        raise UsageError(f"{path}: report field 'endpoints' is not a map")
    try:
        check_intervals(rep)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return rep


def check_intervals(rep: dict[str, Any]) -> None:
    """Decode every interval blob once (UsageError naming the first bad one)."""
    iv = Intervals(rep)
    for name in [None, *iv.endpoint_names]:
        for view in iv.views:  # an endpoint's views are the run's (open loop: all three)
            for _ in iv.each(view, name):
                pass


class Intervals:
    """A report's per-second histograms: `each(view, endpoint)` yields (second, SparseCounts)."""

    def __init__(self, rep: dict[str, Any]) -> None:
        self.rep = rep
        iv = rep.get("intervals") or {}
        self.views: list[str] = list(iv.get("views") or ["latency"])
        self.codec = IntervalCodec(new_histogram())
        eps = rep.get("endpoints") or {}
        # One endpoint's intervals are the totals' (summary.py): only a mix has its own.
        self.endpoint_names: list[str] = list(eps) if len(eps) > 1 else []

    def _rows(self, endpoint: str | None) -> list[dict[str, Any]]:
        if endpoint is None:
            return list((self.rep.get("intervals") or {}).get("seconds") or [])
        return list(((self.rep.get("endpoints") or {}).get(endpoint) or {}).get("intervals") or [])

    def each(
        self, view: str = "latency", endpoint: str | None = None
    ) -> Iterator[tuple[int, SparseCounts, str]]:
        """(second, its SparseCounts, its blob) for each second with counts of `view` (of one
        endpoint, or of the totals when endpoint is None)."""
        where = "intervals" if endpoint is None else f"endpoints.{endpoint}.intervals"
        for k, row in enumerate(self._rows(endpoint)):
            if not isinstance(row, dict):
                raise UsageError(f"{where}[{k}] is not a map")
            blob = row.get(view)
            if blob is None:
                continue
            sec = row.get("second")
            if not isinstance(sec, int) or isinstance(sec, bool) or sec < 0:
                raise UsageError(f"{where}[{k}].second is not a second")
            if not isinstance(blob, str):
                raise UsageError(f"{where}[{k}].{view} is not a base64 histogram")
            try:
                sc = self.codec.decode(blob)
            except HistoblobError as exc:
                raise UsageError(f"{where}[{k}].{view}: {exc}") from None
            yield sec, sc, blob

    def merged(self, view: str = "latency", endpoint: str | None = None) -> Any:
        """The sum of the intervals, as an hdrh histogram (the run's merged histogram, exactly)."""
        h = new_histogram()
        counts = np.frombuffer(h.counts, dtype=np.uint64)
        for _, sc, _ in self.each(view, endpoint):
            add_sparse(h, counts, sc)
        return h


def endpoint_names(rep: dict[str, Any]) -> list[str]:
    """The scenario's endpoints in table order ([] for a single URL)."""
    return list(rep.get("endpoints") or {})
