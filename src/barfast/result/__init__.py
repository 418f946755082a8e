"""Exact results: snapshots from any number of workers merged into one report dict.

engine/histoblob.py (the histogram wire format) -> snapshot.py (checks a snapshot) -> merge.py (Merger adds
it exactly) -> summary.py (the report dict); hist.py holds the exact HdrHistogram arithmetic.
"""

from barfast.result.hist import histogram_from_report, latency_summary, mean_stdev
from barfast.result.merge import Merger
from barfast.result.summary import SCHEMA, config_info

__all__ = [
    "SCHEMA",
    "Merger",
    "config_info",
    "histogram_from_report",
    "latency_summary",
    "mean_stdev",
]
