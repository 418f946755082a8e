"""A worker's snapshot as it arrives over the wire: every field checked before anything is merged.

Snapshots come from other processes and, with remote workers, other hosts: a broken or hostile peer
may send anything. parse() checks types, bounds (MAX_SECOND) and histoblobs (histoblob.py) and
returns a Parsed with plain Python values, or raises BadSnapshot naming the first bad field.

Per endpoint (a mix of more than one), `endpoint_interval` carries the interval's deltas of the
endpoints that got samples in it, keyed by endpoint index (the run's table order, the same in every
worker):

    endpoint_interval: {index: {samples, completed, errors,      # sample counts of the interval
                                status: {code: n}, errors_by_kind: {kind: n},
                                hist: {latency, connect, ttfb: V2 histoblob}}}

`hist` only below aggregate.ENDPOINT_HISTS_MAX (the memory bound), a view only when it has counts.
What the aggregator guarantees is checked: status counts add up to `completed`, error kinds to
`errors`, completed + errors <= samples, the latency and ttfb histograms hold `completed` values and
the connect histogram at most `samples`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from barfast.engine.aggregate import ENDPOINT_HISTS_MAX, ENDPOINT_VIEWS
from barfast.engine.histoblob import HistoblobDecoder, HistoblobError, SparseCounts

MAX_ENDPOINTS = 4096  # the engine's endpoint table bound
MAX_SECOND = 10**8  # ~3 years of seconds: a larger interval index is a broken or hostile peer


class BadSnapshot(Exception):
    """A snapshot field that is not what the protocol says (Merger.add raises it as ProtocolError)."""


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise BadSnapshot(f"{what} is a bool, not an integer")
    try:
        return operator.index(v)
    except TypeError:
        raise BadSnapshot(f"{what} is a {type(v).__name__}, not an integer") from None


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise BadSnapshot(f"{what} is a {type(v).__name__}, not a number")
    return float(v)


def _map(v: Any, what: str) -> dict[Any, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadSnapshot(f"{what} is a {type(v).__name__}, not a map")
    return v


def _int_key(k: Any, what: str) -> int:
    if isinstance(k, str):
        try:
            return int(k)
        except ValueError:
            raise BadSnapshot(f"{what} has a non-numeric key {k[:20]!r}") from None
    return _int(k, f"{what} key")


def _str_int_map(v: Any, what: str) -> dict[str, int]:
    d = _map(v, what)
    for k, x in d.items():  # fast path: what protocol.decode() and the runner produce
        if type(k) is not str or type(x) is not int:
            return {str(k): _int(x, f"{what}.{k}") for k, x in d.items()}
    return dict(d)


def _int_int_map(v: Any, what: str) -> dict[int, int]:
    d = _map(v, what)
    for k, x in d.items():
        if type(k) is not int or type(x) is not int:
            return {_int_key(k, what): _int(x, f"{what}.{k}") for k, x in d.items()}
    return dict(d)


def _count(v: Any, what: str) -> int:
    n = _int(v, what)
    if n < 0:
        raise BadSnapshot(f"{what} is negative ({n})")
    return n


@dataclass
class EndpointPart:
    """One endpoint's interval in a snapshot (deltas: the merger adds them)."""

    samples: int
    completed: int
    errors: int
    status: dict[int, int]
    errors_by_kind: dict[str, int]
    hists: dict[str, SparseCounts]


@dataclass
class Parsed:
    """One snapshot, every field checked and converted (nothing is merged until all of it is)."""

    wid: int
    seq: int
    sec: int
    samples: int
    completed: int
    errors_n: int
    clamped: dict[str, int]
    hists: dict[str, SparseCounts]
    final: bool
    interrupted: bool
    elapsed_ns: int
    counters: dict[str, int]
    status: dict[int, int]
    errors: dict[str, int]
    cpu: dict[str, float]
    ring: dict[str, int]
    sys_errno: dict[str, dict[int, int]]
    endpoints: list[dict[str, int]] | None = None  # cumulative per-endpoint counters
    endpoint_parts: dict[int, EndpointPart] | None = None  # this interval, per endpoint index
    tls_failure: str = ""  # https: the worker's first TLS failure, as one line
    tls_reasons: dict[str, int] | None = None  # https: its TLS failures by reason (cumulative)


def parse(snap: Any, views: Iterable[str], decoder: HistoblobDecoder) -> Parsed:
    """Check and convert every field of one snapshot; BadSnapshot names the first bad one."""
    if not isinstance(snap, dict):
        raise BadSnapshot(f"a snapshot is a map, not a {type(snap).__name__}")
    g = snap.get
    hists: dict[str, SparseCounts] = {}
    for name, blob in _map(g("hist"), "hist").items():
        if name not in views or not blob:
            continue  # a view this barfast does not merge (or an empty one)
        if not isinstance(blob, (bytes, str)):
            raise BadSnapshot(f"hist.{name} is a {type(blob).__name__}, not bytes")
        try:
            hists[name] = decoder.decode(blob)
        except HistoblobError as exc:
            raise BadSnapshot(f"hist.{name}: {exc}") from None
    sec = _int(g("interval", 0), "interval")
    if not 0 <= sec <= MAX_SECOND:
        raise BadSnapshot(f"interval {sec} is outside 0..{MAX_SECOND}")
    endpoints = _endpoints(g("endpoints"))
    return Parsed(
        wid=_int(g("worker"), "worker"),
        seq=_int(g("seq", 0), "seq"),
        sec=sec,
        samples=_int(g("samples", 0), "samples"),
        completed=_int(g("interval_completed", 0), "interval_completed"),
        errors_n=_int(g("interval_errors", 0), "interval_errors"),
        clamped=_str_int_map(g("clamped"), "clamped"),
        hists=hists,
        final=bool(g("final")),
        interrupted=bool(g("interrupted")),
        elapsed_ns=_int(g("elapsed_ns", 0), "elapsed_ns"),
        counters=_str_int_map(g("counters"), "counters"),
        status=_int_int_map(g("status"), "status"),
        errors=_str_int_map(g("errors"), "errors"),
        cpu={str(k): _num(v, "cpu") for k, v in _map(g("cpu"), "cpu").items()},
        ring=_str_int_map(g("ring"), "ring"),
        endpoints=endpoints,
        endpoint_parts=_endpoint_parts(
            g("endpoint_interval"), len(endpoints) if endpoints is not None else None, decoder
        ),
        sys_errno={
            str(k): _int_int_map(v, "sys_errno")
            for k, v in _map(g("sys_errno"), "sys_errno").items()
        },
        tls_failure=_line(g("tls_failure", ""), "tls_failure"),
        tls_reasons=_reasons(g("tls_reasons")),
    )


def _reasons(v: Any) -> dict[str, int] | None:
    if v is None:
        return None
    d = _str_int_map(v, "tls_reasons")
    if len(d) > 16:
        raise BadSnapshot(f"tls_reasons has {len(d)} entries (at most 16)")
    for k in d:
        _line(k, "a tls_reasons key")
    return d


def _line(v: Any, what: str) -> str:
    """A short one-line text from a peer: at most 200 characters, no line breaks."""
    if not isinstance(v, str):
        raise BadSnapshot(f"{what} is a {type(v).__name__}, not text")
    if len(v) > 200 or "\n" in v or "\r" in v:
        raise BadSnapshot(f"{what} is not one short line")
    return v


def _endpoints(v: Any) -> list[dict[str, int]] | None:
    if v is None:
        return None
    if not isinstance(v, (list, tuple)):
        raise BadSnapshot(f"endpoints is a {type(v).__name__}, not a list")
    if len(v) > MAX_ENDPOINTS:
        raise BadSnapshot(f"endpoints has {len(v)} entries (at most {MAX_ENDPOINTS})")
    return [_str_int_map(e, f"endpoints.{i}") for i, e in enumerate(v)]


def _endpoint_parts(
    v: Any, table: int | None, decoder: HistoblobDecoder
) -> dict[int, EndpointPart] | None:
    """The `endpoint_interval` section (module docstring); `table` is the length of the snapshot's
    `endpoints` counters (indices must lie inside it), None when it has none."""
    if v is None:
        return None
    d = _map(v, "endpoint_interval")
    if len(d) > MAX_ENDPOINTS:
        raise BadSnapshot(f"endpoint_interval has {len(d)} entries (at most {MAX_ENDPOINTS})")
    bound = MAX_ENDPOINTS if table is None else table
    out: dict[int, EndpointPart] = {}
    for k, e in d.items():
        i = _int_key(k, "endpoint_interval")
        where = f"endpoint_interval.{i}"
        if not 0 <= i < bound:
            raise BadSnapshot(f"{where}: endpoint index outside 0..{bound - 1}")
        if i in out:
            raise BadSnapshot(f"{where} appears twice")
        e = _map(e, where)
        samples = _count(e.get("samples", 0), f"{where}.samples")
        completed = _count(e.get("completed", 0), f"{where}.completed")
        errors = _count(e.get("errors", 0), f"{where}.errors")
        status = _int_int_map(e.get("status"), f"{where}.status")
        kinds = _str_int_map(e.get("errors_by_kind"), f"{where}.errors_by_kind")
        if any(n < 0 for n in status.values()) or any(n < 0 for n in kinds.values()):
            raise BadSnapshot(f"{where} has a negative status or error count")
        if completed + errors > samples:
            raise BadSnapshot(f"{where}: completed + errors exceed samples")
        if sum(status.values()) != completed:
            raise BadSnapshot(f"{where}: status counts do not add up to completed")
        if sum(kinds.values()) != errors:
            raise BadSnapshot(f"{where}: error kinds do not add up to errors")
        hists: dict[str, SparseCounts] = {}
        for name, blob in _map(e.get("hist"), f"{where}.hist").items():
            if name not in ENDPOINT_VIEWS or not blob:
                continue  # a view this barfast does not merge (or an empty one)
            if i >= ENDPOINT_HISTS_MAX:
                raise BadSnapshot(
                    f"{where}.hist: endpoints from {ENDPOINT_HISTS_MAX} on carry no histograms"
                )
            if not isinstance(blob, (bytes, str)):
                raise BadSnapshot(f"{where}.hist.{name} is a {type(blob).__name__}, not bytes")
            try:
                hists[name] = decoder.decode(blob)
            except HistoblobError as exc:
                raise BadSnapshot(f"{where}.hist.{name}: {exc}") from None
        # latency and ttfb always; uncorrected and send lag when sent (open loop only)
        for name in ("latency", "ttfb", *(v for v in ("uncorrected", "send_lag") if v in hists)):
            got = hists[name].total if name in hists else 0
            if i < ENDPOINT_HISTS_MAX and got != completed:
                raise BadSnapshot(
                    f"{where}.hist.{name} holds {got} values, not completed's {completed}"
                )
        if "connect" in hists and hists["connect"].total > samples:
            raise BadSnapshot(f"{where}.hist.connect holds more values than samples")
        out[i] = EndpointPart(samples, completed, errors, status, kinds, hists)
    return out
