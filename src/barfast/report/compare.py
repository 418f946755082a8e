"""`barfast compare BASE.json NEW.json`: per endpoint, the change from BASE to NEW in rps, error
rate and p50/p90/p99, with a confidence interval, and a verdict per row.

The interval accounts for the noise within each run by bootstrapping over its per-second interval
histograms: a resample draws the run's seconds with replacement, adds their histograms (exactly,
as counts) and takes the percentile of the sum; the change of one resample is NEW's over BASE's
(independent resamples of each run), and the interval is the central CONFIDENCE share of
BOOTSTRAP_RESAMPLES such changes (the percentile bootstrap; Efron & Tibshirani, "An Introduction to
the Bootstrap", ch. 13). rps and the error rate are resampled the same way from the per-second
requests and errors.

A row's verdict is "slower" (or "more errors", "lower rps") when the whole interval lies above
+MIN_EFFECT, "faster" (...) when it lies below -MIN_EFFECT, and "no detectable change" otherwise.
Why a minimum effect: seconds are not independent of the machine a run shares (two runs of the
same config differ by a few percent from one minute to the next on a shared VM), so an interval
that excludes 0 only by a hair is not a change worth a verdict.

`--fail-on 'p99>+10%'` (comma-separated; metrics rps, error_rate, p50, p90, p99; `>` or `<`; a
signed percentage) exits 4 when a row with a detected change in that metric has its estimate past
the limit. Error rate changes are in percentage points, not relative (a rate can start at 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from barfast.report.data import ALL, Intervals
from barfast.result.hist import ms
from barfast.status import UsageError

BOOTSTRAP_RESAMPLES = 400
CONFIDENCE = 0.95
MIN_EFFECT = 0.02  # relative (2 %); error rate: 0.2 percentage points
MIN_EFFECT_ERROR_PP = 0.2
PERCENTILES = (50.0, 90.0, 99.0)
METRICS = ("rps", "error_rate", "p50", "p90", "p99")
_RULE = re.compile(r"^\s*(rps|error_rate|p50|p90|p99)\s*([<>])\s*([+-]?\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    limit: float  # relative (0.10 for +10 %), or percentage points for error_rate

    def text(self) -> str:
        unit = " pp" if self.metric == "error_rate" else "%"
        scale = 1 if self.metric == "error_rate" else 100
        return f"{self.metric}{self.op}{self.limit * scale:+g}{unit}"


def parse_rules(text: str | None) -> list[Rule]:
    if not text:
        return []
    out = []
    for part in text.split(","):
        m = _RULE.match(part)
        if not m:
            raise UsageError(
                f"bad --fail-on {part.strip()!r}: expected METRIC>+N% or METRIC<-N% "
                f"with METRIC one of {', '.join(METRICS)}"
            )
        metric, op, num = m.group(1), m.group(2), float(m.group(3))
        out.append(Rule(metric, op, num if metric == "error_rate" else num / 100))
    return out


class _Run:
    """One report's per-second data for one endpoint, ready to resample."""

    def __init__(self, rep: dict[str, Any], iv: Intervals, name: str | None) -> None:
        series = rep["series"] if name is None else rep["endpoints"][name].get("series") or []
        self.seconds = [p["second"] for p in series]
        pos = {s: k for k, s in enumerate(self.seconds)}
        self.requests = np.array([p.get("requests") or 0 for p in series], dtype=np.float64)
        self.errors = np.array([p.get("errors") or 0 for p in series], dtype=np.float64)
        rows: list[tuple[int, np.ndarray, np.ndarray]] = []
        for sec, sc, _ in iv.each("latency", name):
            if sec in pos:
                rows.append((pos[sec], sc.idx, sc.val))
        # A (seconds x distinct indices) count matrix over the indices any second uses: a
        # resample's histogram is then one weighted row sum.
        self.index = np.unique(np.concatenate([r[1] for r in rows])) if rows else np.empty(0, int)
        self.counts = np.zeros((len(self.seconds), len(self.index)))
        for k, idx, val in rows:
            self.counts[k, np.searchsorted(self.index, idx)] = val
        self.template = iv.codec.template
        self.highest = iv.codec.decoder.highest_values

    def stats(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Per resample (rows of w: how often each second is drawn): rps, error rate, pcts (ms)."""
        req, err = w @ self.requests, w @ self.errors
        n = w.sum(axis=1)
        out = {
            "rps": np.divide(req, n, out=np.zeros_like(req), where=n > 0),
            "error_rate": np.divide(
                100 * err, req + err, out=np.zeros_like(err), where=(req + err) > 0
            ),
        }
        if not len(self.index):
            for p in PERCENTILES:
                out[f"p{p:g}"] = np.full(len(w), np.nan)
            return out
        cum = np.cumsum(w @ self.counts, axis=1)
        total = cum[:, -1]
        for p in PERCENTILES:
            # hdrh's percentile: the first index whose cumulative count reaches the target
            target = np.maximum(np.floor(p * total / 100 + 0.5), 1)
            at = (cum < target[:, None]).sum(axis=1)
            at = np.minimum(at, len(self.index) - 1)
            vals = self.highest[self.index[at]].astype(np.float64) / 1e6
            out[f"p{p:g}"] = np.where(total > 0, vals, np.nan)
        return out

    def point(self) -> dict[str, float]:
        s = self.stats(np.ones((1, len(self.seconds))))
        return {k: float(v[0]) for k, v in s.items()}


def _change(metric: str, base: np.ndarray | float, new: np.ndarray | float) -> Any:
    if metric == "error_rate":
        return np.asarray(new) - np.asarray(base)  # percentage points
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(new) / np.asarray(base) - 1


def _verdict(metric: str, lo: float, hi: float) -> str:
    eff = MIN_EFFECT_ERROR_PP if metric == "error_rate" else MIN_EFFECT
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no data"
    up, down = {
        "rps": ("higher rps", "lower rps"),
        "error_rate": ("more errors", "fewer errors"),
    }.get(metric, ("slower", "faster"))
    if lo > eff:
        return up
    if hi < -eff:
        return down
    return "no detectable change"


def compare(base: dict[str, Any], new: dict[str, Any], *, seed: int = 1) -> list[dict[str, Any]]:
    """One row per endpoint in both reports ("*" the totals first) and metric."""
    ib, inew = Intervals(base), Intervals(new)
    names: list[str | None] = [None]
    names += [n for n in ib.endpoint_names if n in set(inew.endpoint_names)]
    rng = np.random.default_rng(seed)
    rows = []
    alpha = (1 - CONFIDENCE) / 2
    for name in names:
        rb, rn = _Run(base, ib, name), _Run(new, inew, name)
        if not rb.seconds or not rn.seconds:
            continue
        wb = rng.multinomial(len(rb.seconds), np.full(len(rb.seconds), 1 / len(rb.seconds)),
                             size=BOOTSTRAP_RESAMPLES).astype(np.float64)  # fmt: skip
        wn = rng.multinomial(len(rn.seconds), np.full(len(rn.seconds), 1 / len(rn.seconds)),
                             size=BOOTSTRAP_RESAMPLES).astype(np.float64)  # fmt: skip
        sb, sn = rb.stats(wb), rn.stats(wn)
        pb, pn = rb.point(), rn.point()
        for metric in METRICS:
            ch = _change(metric, sb[metric], sn[metric])
            ch = ch[np.isfinite(ch)]
            lo, hi = (
                (float(np.quantile(ch, alpha)), float(np.quantile(ch, 1 - alpha)))
                if len(ch)
                else (float("nan"), float("nan"))
            )
            est = float(_change(metric, pb[metric], pn[metric]))
            rows.append(
                {
                    "endpoint": ALL if name is None else name,
                    "metric": metric,
                    "base": pb[metric],
                    "new": pn[metric],
                    "change": est,
                    "ci_low": lo,
                    "ci_high": hi,
                    "verdict": _verdict(metric, lo, hi),
                }
            )
    return rows


def failures(rows: list[dict[str, Any]], rules: list[Rule]) -> list[str]:
    out = []
    for r in rows:
        for rule in rules:
            if r["metric"] != rule.metric or r["verdict"] in ("no detectable change", "no data"):
                continue
            if (rule.op == ">" and r["change"] > rule.limit) or (
                rule.op == "<" and r["change"] < rule.limit
            ):
                out.append(f"{r['endpoint']} {r['metric']} {_fmt_change(r)}: past {rule.text()}")
    return out


def _fmt_change(r: dict[str, Any]) -> str:
    if not np.isfinite(r["change"]):
        return "-"
    if r["metric"] == "error_rate":
        return f"{r['change']:+.2f} pp [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
    return f"{100 * r['change']:+.1f}% [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"


def _fmt_value(metric: str, v: float) -> str:
    if not np.isfinite(v):
        return "-"
    if metric == "rps":
        return f"{v:.1f}"
    if metric == "error_rate":
        return f"{v:.2f}%"
    return f"{ms(v * 1e6):.3f}ms"


def render(rows: list[dict[str, Any]]) -> str:
    width = max([8, *(len(r["endpoint"]) for r in rows)])
    out = [
        f"Change from BASE to NEW, {CONFIDENCE * 100:g}% bootstrap interval over the per-second "
        f"histograms ({BOOTSTRAP_RESAMPLES} resamples); a verdict needs the interval beyond "
        f"±{MIN_EFFECT * 100:g}% (error rate: ±{MIN_EFFECT_ERROR_PP:g} pp)",
        f"  {'endpoint':<{width}} {'metric':<10} {'base':>12} {'new':>12} "
        f"{'change [interval]':>30}  verdict",
    ]
    for r in rows:
        out.append(
            f"  {r['endpoint']:<{width}} {r['metric']:<10} {_fmt_value(r['metric'], r['base']):>12} "
            f"{_fmt_value(r['metric'], r['new']):>12} {_fmt_change(r):>30}  {r['verdict']}"
        )
    return "\n".join(out) + "\n"
