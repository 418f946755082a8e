"""Threshold expressions -> Threshold objects; a bad one is one line with a caret under the fault.

    EXPR    := METRIC [ '{' KEY '=' VALUE '}' ] OP NUMBER [UNIT] { ',' OPTION }
    METRIC  := STAT                       latency (corrected in open loop): p50, p99.9, mean, min, max
             | (send_lag | connect | ttfb) '_' STAT
             | error_rate | http_error_rate | check_rate           (UNIT '%' or a fraction 0..1)
             | rps | requests | errors                             (plain numbers)
    STAT    := 'p' PERCENTILE | mean | min | max
    OP      := < | <= | > | >= | ==
    UNIT    := ns | us | µs | ms | s      (latency figures need one)
    OPTION  := abort_on_fail | delay=DURATION | window=DURATION

Spaces are allowed between the parts. The scope key `endpoint` names a scenario request; any other
key is a tag (a request's `tags`, or the run's `--tag`/`tags`). Values are kept in base units:
nanoseconds for times, a fraction for rates, requests per second, counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from barfast.status import UsageError

NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
OPS = ("<=", ">=", "==", "<", ">")
STAT_PREFIXES = ("send_lag_", "connect_", "ttfb_")
RATE_METRICS = ("error_rate", "http_error_rate", "check_rate")
PLAIN_METRICS = ("rps", "requests", "errors")
DEFAULT_WINDOW_NS = 10_000_000_000
MAX_WINDOW_NS = 3_600_000_000_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_PCT = re.compile(r"p([0-9]+(?:\.[0-9]+)?)$")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)$")


ERROR_LEAD = "barfast: error: bad threshold '"  # how cli.py prints it: the caret lines up


class ThresholdError(UsageError):
    """A threshold that cannot be read: one line, `bad threshold 'EXPR': what`, then a line with a
    caret under the fault (when there is one). `reason` and `pos` (the fault's offset in the
    expression) let a scenario loader point at FILE:LINE:COL instead."""

    def __init__(self, text: str, reason: str, pos: int | None = None):
        self.text, self.reason, self.pos = text, reason, pos
        line = f"bad threshold '{text}': {reason}"
        if pos is not None:
            line += "\n" + " " * (len(ERROR_LEAD) + max(0, min(pos, len(text)))) + "^"
        super().__init__(line)


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold. `metric` is the full name (`p99`, `send_lag_p99`, `error_rate`);
    `view` the histogram it reads (latency, send_lag, connect, ttfb) or "" for counters; `stat`
    the figure of that histogram (`p99.9`, mean, min, max) or the counter metric's own name."""

    text: str
    metric: str
    view: str
    stat: str
    percentile: float | None
    op: str
    value: float  # base units (ns, fraction, req/s, count)
    unit: str  # as written ("ms", "%", "")
    scope_key: str = ""
    scope_value: str = ""
    abort_on_fail: bool = False
    delay_ns: int = 0
    window_ns: int = DEFAULT_WINDOW_NS
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def kind(self) -> str:
        """ "time", "rate" or "plain": how the value is shown."""
        if self.view:
            return "time"
        return "rate" if self.metric in RATE_METRICS else "plain"

    @property
    def scope(self) -> str:
        return f"{{{self.scope_key}={self.scope_value}}}" if self.scope_key else ""

    def passes(self, measured: float) -> bool:
        v = self.value
        return {
            "<": measured < v,
            "<=": measured <= v,
            ">": measured > v,
            ">=": measured >= v,
            "==": measured == v,
        }[self.op]


def _fail(text: str, pos: int, msg: str) -> ThresholdError:
    return ThresholdError(text, msg, pos)


def _duration_ns(text: str, word: str, raw: str, pos: int) -> int:
    m = _DURATION.fullmatch(raw.strip())
    if not m:
        raise _fail(text, pos, f"{word} takes a duration such as 10s or 500ms, not {raw.strip()!r}")
    mult = {**NS_PER_UNIT, "m": 60 * 10**9, "h": 3600 * 10**9}[m.group(2)]
    return int(float(m.group(1)) * mult)


def parse_threshold(text: str, **given: Any) -> Threshold:
    """One expression (with optional `,option`s) -> Threshold; `given` options (from a scenario's
    mapping form: abort_on_fail, delay, window) are applied after the inline ones."""
    if not isinstance(text, str):
        raise ThresholdError(repr(text), "expected a string such as 'p99<200ms'")
    if not text.strip():
        raise ThresholdError(text, "empty (expected e.g. 'p99<200ms')")
    if "\n" in text:
        raise ThresholdError(text.replace("\n", "\\n"), "one line only")
    s, i, n = text, 0, len(text)

    def skip(j: int) -> int:
        while j < n and s[j] in " \t":
            j += 1
        return j

    i = skip(i)
    m = _NAME.match(s, i)
    if not m:
        raise _fail(text, i, "expected a metric name (p99, mean, error_rate, rps, ...)")
    name_at, metric = i, m.group(0)
    i = skip(m.end())
    view, stat, pct = _metric(text, metric, name_at)
    key = value = ""
    if i < n and s[i] == "{":
        close = s.find("}", i)
        if close < 0:
            raise _fail(text, n, "unclosed '{': a scope is {endpoint=NAME} or {TAG=VALUE}")
        body = s[i + 1 : close]
        k, eq, v = body.partition("=")
        if not eq:
            raise _fail(text, i + 1, "a scope is {endpoint=NAME} or {TAG=VALUE}: no '='")
        key, value = k.strip(), v.strip()
        if not _NAME.fullmatch(key):
            raise _fail(text, i + 1, f"bad scope key {key!r}")
        if not value:
            raise _fail(text, i + 2 + len(k), "the scope's value is empty")
        i = skip(close + 1)
    op = next((o for o in OPS if s.startswith(o, i)), None)
    if op is None:
        at = s[i] if i < n else "the end"
        raise _fail(text, i, f"expected one of < <= > >= == here, found {at!r}")
    i = skip(i + len(op))
    m = _NUMBER.match(s, i)
    if not m:
        raise _fail(text, i, "expected a number")
    num_at, num = i, float(m.group(0))
    i = m.end()
    comma = s.find(",", i)
    unit_end = n if comma < 0 else comma
    unit = s[i:unit_end].strip()
    base = _value(text, metric, view, num, unit, i, num_at)
    opts = _options(text, s[unit_end + 1 :] if comma >= 0 else "", unit_end + 1)
    opts.update(_given_options(text, given))
    return Threshold(
        text=text.strip(),
        metric=metric,
        view=view,
        stat=stat,
        percentile=pct,
        op=op,
        value=base,
        unit=unit,
        scope_key=key,
        scope_value=value,
        abort_on_fail=bool(opts.get("abort_on_fail", False)),
        delay_ns=int(opts.get("delay_ns", 0)),
        window_ns=int(opts.get("window_ns", DEFAULT_WINDOW_NS)),
        options=opts,
    )


def _metric(text: str, metric: str, at: int) -> tuple[str, str, float | None]:
    if metric in RATE_METRICS or metric in PLAIN_METRICS:
        return "", metric, None
    view, stat = "latency", metric
    for prefix in STAT_PREFIXES:
        if metric.startswith(prefix):
            view, stat = prefix[:-1], metric[len(prefix) :]
            at += len(prefix)
            break
    if stat in ("mean", "min", "max"):
        return view, stat, None
    m = _PCT.match(stat)
    if m:
        p = float(m.group(1))
        if not 0 < p <= 100:
            raise _fail(text, at + 1, f"a percentile is above 0 and at most 100, not {p:g}")
        return view, f"p{p:g}", p
    known = "p50, p99.9, mean, min, max, send_lag_p99, connect_p99, ttfb_p99, " + ", ".join(
        RATE_METRICS + PLAIN_METRICS
    )
    raise _fail(text, at, f"unknown metric {metric!r} (known: {known})")


def _value(text: str, metric: str, view: str, num: float, unit: str, at: int, num_at: int) -> float:
    if view:
        if not unit:
            raise _fail(
                text, at, f"{metric} is a time: give a unit (ns, us, ms, s), e.g. {num:g}ms"
            )
        if unit not in NS_PER_UNIT:
            raise _fail(text, at, f"unknown time unit {unit!r} (ns, us, ms, s)")
        return num * NS_PER_UNIT[unit]
    if metric in RATE_METRICS:
        if unit == "%":
            if num > 100:
                raise _fail(text, num_at, f"a rate is at most 100%, not {num:g}%")
            return num / 100
        if unit:
            raise _fail(text, at, f"{metric} is a rate: a percentage (1%) or a fraction (0.01)")
        if num > 1:
            raise _fail(text, num_at, f"{metric} is a fraction 0..1 or a percentage: {num:g}%?")
        return num
    if metric == "rps" and unit in ("/s", ""):
        return num
    if unit:
        raise _fail(text, at, f"{metric} takes a plain number, not {unit!r}")
    return num


def _options(text: str, rest: str, at: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = at
    for part in rest.split(",") if rest.strip() or rest else []:
        word, eq, val = part.strip().partition("=")
        where = pos + (len(part) - len(part.lstrip()))
        if word == "abort_on_fail" and not eq:
            out["abort_on_fail"] = True
        elif word in ("delay", "window") and eq:
            out[f"{word}_ns"] = _duration_ns(text, word, val, where + len(word) + 1)
        else:
            raise _fail(
                text,
                where,
                f"unknown option {part.strip()!r} (abort_on_fail, delay=10s, window=10s)",
            )
        pos += len(part) + 1
    _check_window(text, out, at)
    return out


def _given_options(text: str, given: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in given.items():
        if k == "abort_on_fail":
            if not isinstance(v, bool):
                raise ThresholdError(text, "abort_on_fail is true or false")
            out[k] = v
        elif k in ("delay", "window"):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = f"{v}s"
            if not isinstance(v, str):
                raise ThresholdError(text, f"{k} is a duration such as 10s")
            out[f"{k}_ns"] = _duration_ns(text, k, v, len(text))
        else:
            raise ThresholdError(text, f"unknown option {k!r} (abort_on_fail, delay, window)")
    _check_window(text, out, len(text))
    return out


def _check_window(text: str, opts: dict[str, Any], at: int) -> None:
    w = opts.get("window_ns")
    if w is not None and not 1_000_000_000 <= w <= MAX_WINDOW_NS:
        raise _fail(text, at, "window is 1s to 1h")


def parse_thresholds(items: list[Any] | tuple[Any, ...]) -> list[Threshold]:
    """Strings, Threshold objects, or {expr: ..., abort_on_fail, delay, window} mappings."""
    out = []
    for it in items:
        if isinstance(it, Threshold):
            out.append(it)
        elif isinstance(it, dict):
            d = dict(it)
            expr = d.pop("expr", None)
            if expr is None:
                raise ThresholdError(repr(it), "a mapping needs `expr`")
            out.append(parse_threshold(expr, **d))
        else:
            out.append(parse_threshold(it))
    return out


__all__ = ["Threshold", "ThresholdError", "parse_threshold", "parse_thresholds"]
