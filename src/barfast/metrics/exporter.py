"""One `/metrics` endpoint: prometheus_client's HTTP server (its own daemon thread) over a registry
that holds one collector.

Why prometheus_client: it writes both the Prometheus text format and OpenMetrics (chosen by the
scraper's Accept header, as Prometheus asks), escapes label values, and its parser is the one the
tests and the target scraper (scrape.py) read with: one well-kept implementation of the formats
instead of a second, hand-written one.

The collector runs on the server's thread at each scrape; it must only read what the publishing
thread swapped in whole (one reference assignment), never structures another thread mutates.
"""

from __future__ import annotations

from prometheus_client.registry import Collector, CollectorRegistry

from barfast.status import UsageError


def parse_metrics_addr(text: str, flag: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464', ':9464' (loopback) -> (host, port)."""
    from barfast.serve.server import parse_addr

    text = text.strip()
    if text.startswith(":"):
        text = "127.0.0.1" + text  # unlike serve's ':PORT', a metrics page stays on loopback
    try:
        return parse_addr(text)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--addr", flag, 1)) from None


class Exporter:
    """`/metrics` of one collector on HOST:PORT until close()."""

    def __init__(self, collector: Collector, host: str, port: int, flag: str) -> None:
        from prometheus_client.exposition import start_http_server

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise UsageError(f"cannot listen on {flag} {host}:{port}: {exc.strerror}") from None
        self.port = int(self._server.server_port)
        bracket = f"[{host}]" if ":" in host else host
        self.url = f"http://{bracket}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
