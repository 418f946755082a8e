"""`barfast serve --metrics HOST:PORT`: the target's own counters as Prometheus metrics.

The native server keeps its counters as plain C integers that its loop bumps (serve.pxi); a scrape
reads them on prometheus_client's HTTP thread with relaxed atomic loads (Server.counters(),
Server.status_counts()), so serving metrics adds no work per request and never takes a lock the
loop waits on. The server has one route (every path gets the same response), so requests are
counted by status only.

  barfast_serve_requests_total              requests read
  barfast_serve_responses_total{status}     responses written, by status
  barfast_serve_bad_requests_total          requests that did not parse (answered 400, closed)
  barfast_serve_connections                 connections open now (gauge)
  barfast_serve_connections_accepted_total, barfast_serve_accept_errors_total
  barfast_serve_received_bytes_total, barfast_serve_sent_bytes_total
  barfast_serve_faults_total{fault}         faults injected: stall (--stall periods entered),
                                            delay (responses held by --delay/--delay-dist)
  barfast_serve_tls_handshakes_total{result}  https: full, resumed, failed
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric


class ServeCollector:
    def __init__(self, server: Any, cfg: Any) -> None:
        self.server = server
        self.tls = bool(cfg.tls_cert)

    def collect(self) -> Iterator[Metric]:
        c = self.server.counters()
        status = self.server.status_counts()
        yield CounterMetricFamily("barfast_serve_requests", "Requests read.", value=c["requests"])
        resp = CounterMetricFamily(
            "barfast_serve_responses", "Responses written, by status.", labels=["status"]
        )
        for code, n in sorted(status.items()):
            resp.add_metric([str(code)], n)
        yield resp
        yield CounterMetricFamily(
            "barfast_serve_bad_requests", "Requests that did not parse.", value=c["bad_requests"]
        )
        yield GaugeMetricFamily(
            "barfast_serve_connections", "Connections open now.", value=c["connections"]
        )
        yield CounterMetricFamily(
            "barfast_serve_connections_accepted", "Connections accepted.",
            value=c["connections_accepted"],
        )  # fmt: skip
        yield CounterMetricFamily(
            "barfast_serve_accept_errors", "accept() failures.", value=c["accept_errors"]
        )
        yield CounterMetricFamily(
            "barfast_serve_received_bytes", "Bytes read from clients.", value=c["bytes_rx"]
        )
        yield CounterMetricFamily(
            "barfast_serve_sent_bytes", "Bytes written to clients.", value=c["bytes_tx"]
        )
        faults = CounterMetricFamily(
            "barfast_serve_faults", "Faults injected, by kind.", labels=["fault"]
        )
        faults.add_metric(["stall"], c["stalls"])
        faults.add_metric(["delay"], c["delayed"])
        yield faults
        if self.tls:
            hs = CounterMetricFamily(
                "barfast_serve_tls_handshakes", "TLS handshakes by result.", labels=["result"]
            )
            full = c["tls_handshakes"] - c["tls_resumed"]
            hs.add_metric(["full"], max(full, 0))
            hs.add_metric(["resumed"], c["tls_resumed"])
            hs.add_metric(["failed"], c["tls_failures"])
            yield hs
