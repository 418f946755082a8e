"""The capacity search's steps against deterministic trial functions (pure logic, no network): a
target whose SLO holds up to a known knee, noise near the limit, the generator as the limit."""

from __future__ import annotations

import pytest

from barfast.search.logic import Trial, search


def knee_at(knee: float, log: list[float] | None = None, noise_band: float = 0.0):
    def trial(rate: float) -> Trial:
        if log is not None:
            log.append(rate)
        return Trial(rate, passed=rate <= knee, margin=abs(rate / knee - 1) + noise_band)

    return trial


@pytest.mark.parametrize("knee", [150.0, 1000.0, 4000.0, 63_000.0])
def test_ramp_then_bisection_lands_within_precision(knee: float) -> None:
    log: list[float] = []
    out = search(knee_at(knee, log), start_rate=100, max_rate=1e6, precision=0.05, noise=0.0)
    assert out.stop == "converged"
    lo, hi = out.bracket
    assert out.answer == lo and lo <= knee < hi  # type: ignore[operator]
    assert hi is not None and hi - lo <= 0.05 * hi
    ramp = [t.rate for p, t in out.steps if p == "ramp"]
    assert ramp == [100 * 2**k for k in range(len(ramp))]  # exponential until the first fail
    assert ramp[-2] <= knee < ramp[-1]
    bisect = [t.rate for p, t in out.steps if p == "bisect"]
    assert bisect and all(ramp[-2] < r < ramp[-1] for r in bisect)  # inside the ramp's bracket
    assert log == [t.rate for _, t in out.steps]  # every trial is a step of the table


def test_start_above_the_knee_ramps_down() -> None:
    out = search(knee_at(30.0), start_rate=1000, max_rate=1e6, noise=0.0)
    assert [t.rate for p, t in out.steps if p == "ramp"] == [
        1000,
        500,
        250,
        125,
        62.5,
        31.25,
        15.625,
    ]
    assert out.stop == "converged" and out.bracket[0] <= 30 < out.bracket[1]  # type: ignore[operator]


def test_nothing_holds() -> None:
    out = search(knee_at(0.5), start_rate=4, max_rate=100, min_rate=1, noise=0.0)
    assert out.answer is None and out.stop == "min_rate"
    assert [t.rate for _, t in out.steps] == [4, 4, 2, 2, 1, 1]  # each ramp fail tried twice


def test_max_rate_holds() -> None:
    out = search(knee_at(1e9), start_rate=100, max_rate=1000, noise=0.0)
    assert out.stop == "max_rate" and out.answer == 1000 and out.bracket == (1000, None)
    assert [t.rate for _, t in out.steps] == [100, 200, 400, 800, 1000]


def test_generator_limit_stops_the_search() -> None:
    def trial(rate: float) -> Trial:
        return Trial(rate, passed=True, generator_limited=rate >= 800)

    out = search(trial, start_rate=100, max_rate=1e6, noise=0.0)
    assert out.stop == "generator_limited" and out.answer == 400
    assert out.steps[-1][1].rate == 800


def test_a_verdict_within_noise_is_repeated_and_must_hold_twice() -> None:
    calls: dict[float, int] = {}

    def trial(rate: float) -> Trial:
        calls[rate] = calls.get(rate, 0) + 1
        # right below the knee the first try holds, the repeat does not (noise)
        flaky = 900 <= rate <= 1000
        passed = rate <= 1000 and not (flaky and calls[rate] > 1)
        return Trial(rate, passed=passed, margin=abs(rate / 1000 - 1))

    out = search(trial, start_rate=100, max_rate=1e6, precision=0.02, noise=0.15)
    repeats = [t.rate for p, t in out.steps if p == "repeat"]
    assert repeats and all(calls[r] == 2 for r in repeats)
    assert out.answer is not None and out.answer < 900  # the flaky rates were not taken as held


def test_a_noisy_fail_on_the_ramp_is_tried_again() -> None:
    calls: list[float] = []

    def trial(rate: float) -> Trial:
        calls.append(rate)
        blip = rate == 200 and calls.count(200) == 1  # one bad trial far below the knee
        return Trial(rate, passed=rate <= 3000 and not blip)

    out = search(trial, start_rate=100, max_rate=1e6, noise=0.0)
    assert calls[:3] == [100, 200, 200] and out.steps[2][0] == "repeat"
    assert out.stop == "converged" and out.bracket[0] <= 3000 < out.bracket[1]  # type: ignore[operator]


def test_max_steps_bounds_the_search() -> None:
    out = search(knee_at(1234.5), start_rate=100, max_rate=1e6, precision=1e-9, max_steps=8)
    assert out.stop == "max_steps" and len(out.steps) <= 8 + 1


@pytest.mark.parametrize(
    "kw",
    [
        {"start_rate": 0, "max_rate": 10},
        {"start_rate": 100, "max_rate": 10},
        {"start_rate": 1, "max_rate": 10, "factor": 1.0},
        {"start_rate": 1, "max_rate": 10, "precision": 0},
    ],
)
def test_bad_parameters(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        search(knee_at(5), **kw)
