"""Durations as users type them (-d, --timeout, --stages, serve's --delay and --stall): wrk's
single unit and Go's compound form, which k6, vegeta and hey take ('1m30s')."""

from __future__ import annotations

import pytest

from barfast.config import parse_duration
from barfast.status import UsageError

MS = 1_000_000
S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("500ms", 500 * MS),
        ("10s", 10 * S),
        ("2m", 120 * S),
        ("2h", 7200 * S),
        ("1.5s", 1500 * MS),
        ("250us", 250_000),
        ("90µs", 90_000),
        ("7ns", 7),
        ("3", 3 * S),  # a bare number is seconds
        (" 10 s ", 10 * S),
        ("1ms", MS),  # a millisecond, not a minute and a second
        ("1m5s", 65 * S),  # a minute and five seconds
        ("1m30s", 90 * S),
        ("1h2m3.5s", 3723 * S + 500 * MS),
        ("1s500ms", 1500 * MS),
    ],
)
def test_durations_parse(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["5x", "-1s", "1e3s", "s", "1m30", "", "1..5s", "m1", "1s 2"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="bad duration"):
        parse_duration(text)
