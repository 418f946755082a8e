"""`barfast search URL|scenario --slo EXPR ...`: the highest open-loop rate at which every SLO holds.

Each step is a short open-loop `barfast run` at one rate (the same coordinator, workers and merged
result), its SLOs evaluated as thresholds on corrected latency, on what was merged after the
warm-up. logic.py chooses the rates; this module runs the trials, prints the steps table and the
answer with its bracket, and writes the same as JSON (and as an HTML page: report/search_html.py).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from barfast.config import NS_PER_S, parse_duration
from barfast.search.logic import Outcome, Trial, search
from barfast.status import ExitCode, UsageError

GENERATOR_LIMIT = "the generator, not the server, may be the bottleneck"


def _log(msg: str) -> None:
    print(f"barfast search: {msg}", file=sys.stderr, flush=True)


def _rate(text: str, flag: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"bad {flag} {text!r}: expected a rate in requests/s") from None
    if not 0 < v <= 1e9:
        raise UsageError(f"bad {flag} {text!r}: must be above 0 and at most 1e9")
    return v


def _fraction(text: str, flag: str) -> float:
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"bad {flag} {text!r}: expected a percentage such as 5%") from None
    if not 0 < v < 1:
        raise UsageError(f"bad {flag} {text!r}: must be between 0% and 100%")
    return v


def trial_from_report(rate: float, rep: dict[str, Any]) -> Trial:
    rows = rep.get("thresholds", [])
    margin = 1.0
    for r in rows:
        if r["measured"] is None or not r["limit"]:
            continue
        measured = r["measured"] * 100 if r["unit"] == "%" else r["measured"]
        if r["unit"] in ("s", "us", "µs", "ns"):  # measured is ms for times
            measured = measured / {"s": 1000, "us": 0.001, "µs": 0.001, "ns": 1e-6}[r["unit"]]
        margin = min(margin, abs(measured / r["limit"] - 1))
    warnings = rep.get("generator", {}).get("warnings", [])
    lat = rep.get("latency_ms", {})
    return Trial(
        rate=rate,
        passed=bool(rows) and all(r["passed"] for r in rows),
        margin=margin,
        achieved=float(rep.get("rps", 0.0)),
        p50_ms=lat.get("p50"),
        p99_ms=lat.get("p99"),
        errors=int(rep.get("requests", {}).get("errors", 0)),
        generator_limited=any(GENERATOR_LIMIT in w for w in warnings),
        detail={"thresholds": rows, "warnings": warnings},
    )


def search_command(
    target: str,
    *,
    slos: list[str],
    start_rate: str = "100",
    max_rate: str = "1000000",
    step_duration: str = "3s",
    warmup: str = "1s",
    precision: str = "5%",
    noise: str = "5%",
    max_steps: int = 30,
    cooldown: str = "1s",
    connections: int | None = None,
    max_connections: int | None = None,
    workers: int | None = None,
    json_out: bool = False,
    output: str | None = None,
    html: str | None = None,
) -> int:
    from barfast.command import check_output_path, run_command
    from barfast.slo.grammar import parse_thresholds

    if not slos:
        raise UsageError("barfast search needs at least one --slo, e.g. --slo 'p99<50ms'")
    parsed = parse_thresholds(slos)  # a bad one: its one line and caret, before any trial
    if any(t.abort_on_fail for t in parsed):
        raise UsageError("--slo takes no abort_on_fail: each step is already a short trial")
    lo, hi = _rate(start_rate, "--start-rate"), _rate(max_rate, "--max-rate")
    if lo > hi:
        raise UsageError(f"--start-rate {start_rate} is above --max-rate {max_rate}")
    step_ns = parse_duration(step_duration, "--step-duration")
    warm_ns = parse_duration(warmup, "--warmup")
    if step_ns < NS_PER_S:
        raise UsageError(f"bad --step-duration {step_duration!r}: at least 1s")
    if warm_ns < 0 or warm_ns >= 60 * NS_PER_S:
        raise UsageError(f"bad --warmup {warmup!r}: 0 to 60s")
    prec, tol = _fraction(precision, "--precision"), _fraction(noise, "--noise")
    cool_ns = parse_duration(cooldown, "--cooldown")
    if not 0 <= cool_ns <= 60 * NS_PER_S:
        raise UsageError(f"bad --cooldown {cooldown!r}: 0 to 60s")
    if max_steps < 2:
        raise UsageError(f"bad --max-steps {max_steps}: at least 2")
    check_output_path(output)
    check_output_path(html, "--html page")
    total_s = (step_ns + warm_ns) / NS_PER_S

    def trial(rate: float) -> Trial:
        box: dict[str, Any] = {}
        if steps_seen and cool_ns:
            # a step past the knee leaves a queue in the target: let it drain before the next
            time.sleep(cool_ns / NS_PER_S)
        run_command(
            target,
            rate=rate,
            duration=f"{total_s}s",
            connections=connections,
            max_connections=max_connections,
            workers=workers,
            quiet=True,
            thresholds=list(slos),
            warmup_s=warm_ns / NS_PER_S,
            sink=box.update,
        )
        t = trial_from_report(rate, box)
        if not json_out:
            print(_row(len(steps_seen) + 1, t), flush=True)
        steps_seen.append(t)
        return t

    steps_seen: list[Trial] = []
    if not json_out:
        print(f"Searching the highest rate that holds {', '.join(slos)} @ {target}")
        print(
            f"  {'step':>4} {'rate':>10} {'achieved':>10} {'p50':>10} {'p99':>10} {'errors':>7}  verdict"
        )
    out = search(trial, start_rate=lo, max_rate=hi, precision=prec, noise=tol, max_steps=max_steps)
    doc = _doc(target, slos, out)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        print(_answer(out))
    if output:
        with open(output, "w") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    if html:
        from barfast.report import search_html

        search_html.write(doc, html)
    return int(ExitCode.OK if out.answer is not None else ExitCode.THRESHOLDS_FAILED)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}ms"


def _row(i: int, t: Trial) -> str:
    verdict = "holds" if t.passed else "fails"
    if t.generator_limited:
        verdict += " (generator-limited)"
    elif t.margin < 0.05:
        verdict += " (near the limit)"
    return (
        f"  {i:>4} {t.rate:>10.1f} {t.achieved:>10.1f} {_ms(t.p50_ms):>10} {_ms(t.p99_ms):>10} "
        f"{t.errors:>7}  {verdict}"
    )


STOPS = {
    "converged": "the bracket is within the precision",
    "max_rate": "--max-rate held: the capacity is at least this",
    "generator_limited": "the generator, not the target, was the limit: add workers or CPUs",
    "min_rate": "no rate down to the minimum held",
    "max_steps": "--max-steps trials were run",
}


def _answer(out: Outcome) -> str:
    held, failed = out.bracket
    if out.answer is None:
        return f"No rate held the SLOs; stopped: {STOPS[out.stop]}"
    top = f"{failed:.1f}" if failed is not None else "?"
    return (
        f"Capacity: {out.answer:.1f} req/s (holds at {held:.1f}, fails at {top}); "
        f"stopped: {STOPS[out.stop]}"
    )


def _doc(target: str, slos: list[str], out: Outcome) -> dict[str, Any]:
    return {
        "schema": "barfast.search/1",
        "target": target,
        "slos": slos,
        "answer_rps": out.answer,
        "bracket": {"held": out.bracket[0], "failed": out.bracket[1]},
        "stop": out.stop,
        "stop_reason": STOPS[out.stop],
        "steps": [
            {
                "phase": phase,
                "rate": t.rate,
                "achieved_rps": t.achieved,
                "p50_ms": t.p50_ms,
                "p99_ms": t.p99_ms,
                "errors": t.errors,
                "passed": t.passed,
                "margin": round(t.margin, 6),
                "generator_limited": t.generator_limited,
                "thresholds": t.detail.get("thresholds", []),
            }
            for phase, t in out.steps
        ],
    }


__all__ = ["search_command", "trial_from_report"]
