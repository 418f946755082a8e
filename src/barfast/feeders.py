"""Feeders for Python scenarios: `barfast.feeders.csv("users.csv", order="unique")`, or rows computed
in Python with `barfast.feeders.rows([{"id": 1}, ...])`; a request names a value as
`{{ users.id }}` (scenario/template.py)."""

from barfast.scenario.template import Feeder, csv_feeder, rows_feeder

csv = csv_feeder
rows = rows_feeder

__all__ = ["Feeder", "csv", "rows"]
