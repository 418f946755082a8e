"""Thresholds (SLO gates): grammar.py reads an expression, figures.py gives the merged figures of
a scope (cumulative or over a window), evaluate.py resolves scopes and measures, watch.py checks
abort_on_fail thresholds over a sliding window during the run. docs/thresholds.md."""

from barfast.slo.grammar import Threshold, ThresholdError, parse_threshold, parse_thresholds

__all__ = ["Threshold", "ThresholdError", "parse_threshold", "parse_thresholds"]
