"""The JSON report (schema "barfast.report/1"): dump to a string or write to a file.

Top-level keys (units in the key names; times in seconds unless `_ms`):
  schema, config {url, method, connections, max_connections, workers, duration_s, requests, rate,
    stages, arrival, open_loop, seed, [headers (credentials redacted), body_bytes], timeouts
    {request_s, connect_s}, target, [tags], [thresholds]}, meta {barfast_version, host, python,
    platform, started_at, [git {commit, branch, dirty}]}, interrupted, duration_s
    (measured), requests {started, completed, errors, in_flight, not_sent}, status {code: count},
  errors {kind: count}, errors_errno {kind: {ERRNO_NAME: count}}, rps, transfer {bytes_rx, bytes_tx,
    rx_per_s, tx_per_s}, latency_ms {count, min, mean, stdev, p50, p75, p90, p99, p99.9, p99.99, max}
  (corrected view in open loop, actual-send view in closed loop), connect_ms (per connection that
  carried a request) and ttfb_ms (time to first byte, completed responses) of the same shape, in
  open loop also latency_uncorrected_ms and send_lag_ms, histogram {encoding, units: "ns", layout,
  latency, connect, ttfb, [uncorrected, send_lag]} (base64 HdrHistogram V2 blobs:
  `hdrh.histogram.HdrHistogram.decode`),
  series [{second, requests, errors, p50_ms, p90_ms, p99_ms, max_ms}], intervals {encoding, units,
  period_s, views, seconds [{second, VIEW: base64 compressed V2 blob}]} (docs/reports.md), samples {aggregated, dropped_by_ring,
  failures_without_sample (open loop: backlog failures counted in bulk), clamped_to_1h,
  snapshots_rejected (malformed snapshots refused whole)}, workers [per-worker totals], workers_lost, generator {cpu_user_s, cpu_sys_s,
  cpu_us_per_request, wakeups_per_request (voluntary context switches of the workers per completed
  request: each is a sleep and a wake-up), warnings}; with a scenario checks {passed, failed} and
  endpoints {name: {weight, requests {started, completed, errors}, status, errors, rps, latency_ms,
  connect_ms, ttfb_ms, [checks {names, passed, failed}], series [{second, requests, errors,
  p50_ms, p90_ms, p99_ms, max_ms}], histogram {latency, connect, ttfb}, intervals [{second,
  latency}]}} (docs/scenarios.md, docs/reports.md);
  with thresholds, thresholds [{threshold, metric, scope, op, limit,
  unit, measured, measured_text, passed, abort_on_fail, [delay_s, window_s], [aborted]}] and, when
  an abort_on_fail threshold stopped the run, aborted (the reason; docs/thresholds.md).
Only completed requests (a final HTTP status) are in the latency figures; errors are counted by kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from barfast.status import UsageError


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def write(report: dict[str, Any], path: str) -> None:
    """Write the report to `path`; an unwritable path is a one-line UsageError."""
    try:
        Path(path).write_text(dumps(report))
    except OSError as exc:
        raise UsageError(f"cannot write report to {path!r}: {exc.strerror}") from None
