"""The capacity search: the highest open-loop rate at which every SLO holds, as a pure function of
a trial function (rate -> Trial), so the steps can be tested without a network.

An exponential ramp (x `factor` per step, from `start_rate`) brackets the knee: the last rate that
held and the first that did not. Bisection then narrows the bracket until its width is at most
`precision` of its top. A trial that held with its deciding figure within `noise` of its limit is
repeated once, and so is a failing ramp step (a single noisy fail there would cap the whole
search); the repeat's verdict counts. The search stops early, and says so, when the generator rather than the target was the limit
in a trial (its figures would describe barfast), when `max_rate` held, when even `min_rate` failed,
or after `max_steps` trials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Trial:
    """One open-loop step at `rate` req/s. `margin`: the smallest |measured / limit - 1| over the
    SLOs (how far from its limit the closest one was); `generator_limited`: the generator's
    self-check said the generator, not the target, may have been the bottleneck."""

    rate: float
    passed: bool
    margin: float = 1.0
    achieved: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    generator_limited: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    answer: float | None  # the highest rate that held (None: none did)
    bracket: tuple[float, float | None]  # (held, failed); failed None: never failed
    stop: str  # "converged", "max_rate", "generator_limited", "min_rate", "max_steps"
    steps: list[tuple[str, Trial]]  # (phase, trial), in order: ramp, bisect, repeat


def search(
    trial: Callable[[float], Trial],
    *,
    start_rate: float,
    max_rate: float,
    min_rate: float = 1.0,
    factor: float = 2.0,
    precision: float = 0.05,
    noise: float = 0.05,
    max_steps: int = 30,
) -> Outcome:
    if not 0 < min_rate <= start_rate <= max_rate:
        raise ValueError("need 0 < min_rate <= start_rate <= max_rate")
    if factor <= 1 or not 0 < precision < 1 or noise < 0:
        raise ValueError("need factor > 1, 0 < precision < 1, noise >= 0")
    steps: list[tuple[str, Trial]] = []

    def run(rate: float, phase: str) -> Trial | None:
        t = trial(rate)
        steps.append((phase, t))
        if t.generator_limited:
            return None
        near = t.passed and t.margin < noise
        if (near or (phase == "ramp" and not t.passed)) and len(steps) < max_steps:
            # close to a limit, or the ramp's first fail (it sets the bracket's top for the
            # whole bisection): one more opinion, and that one counts
            again = trial(rate)
            steps.append(("repeat", again))
            if again.generator_limited:
                return None
            return again
        return t

    held: float | None = None
    failed: float | None = None
    rate = start_rate
    while True:  # the ramp, up (or down when the start already fails)
        t = run(rate, "ramp")
        if t is None:
            return Outcome(held, (held or 0.0, failed), "generator_limited", steps)
        if t.passed:
            held = rate
            if failed is not None:
                break  # ramped down to a rate that holds
            if rate >= max_rate:
                return Outcome(held, (held, None), "max_rate", steps)
            rate = min(rate * factor, max_rate)
        else:
            failed = rate
            if held is not None:
                break
            if rate <= min_rate:
                return Outcome(None, (0.0, failed), "min_rate", steps)
            rate = max(rate / factor, min_rate)
        if len(steps) >= max_steps:
            return Outcome(held, (held or 0.0, failed), "max_steps", steps)
    assert held is not None and failed is not None
    lo, hi = held, failed
    while (hi - lo) > precision * hi:
        if len(steps) >= max_steps:
            return Outcome(lo, (lo, hi), "max_steps", steps)
        mid = (lo + hi) / 2
        t = run(mid, "bisect")
        if t is None:
            return Outcome(lo, (lo, hi), "generator_limited", steps)
        if t.passed:
            lo = mid
        else:
            hi = mid
    return Outcome(lo, (lo, hi), "converged", steps)


__all__ = ["Outcome", "Trial", "search"]
