"""Metrics over HTTP: barfast's own (a run's live figures, `barfast serve`'s counters) served as
Prometheus/OpenMetrics text, and a target's scraped into the run's timeline."""
