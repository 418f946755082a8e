"""Scenario + command-line load flags -> a RunConfig whose endpoints the engine runs.

Every request of a scenario is serialised once here into the bytes the engine sends (default
headers, the request's own, the tags when `tag_header` is set, Content-Length); the engine then
picks one endpoint per request by weight. One scenario targets one address (host:port): the engine
connects to one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from barfast.config import Endpoint, RunConfig, build_run_config, parse_url, serialize_request
from barfast.scenario.model import Scenario, ScenarioError

LOAD_KEYS = (
    "connections",
    "max_connections",
    "duration",
    "requests",
    "rate",
    "stages",
    "arrival",
    "timeout",
    "connect_timeout",
)


def load_options(sc: Scenario, flags: dict[str, Any]) -> dict[str, Any]:
    """The scenario's `load`, overridden by every flag given (not None) on the command line."""
    out = {k: sc.load[k] for k in LOAD_KEYS if k in sc.load}
    for k in ("duration", "timeout", "connect_timeout"):
        if k in out and not isinstance(out[k], str):
            out[k] = f"{out[k]}s"  # a bare number in YAML is seconds
    out.update({k: v for k, v in flags.items() if v is not None})
    return out


def compile_run(sc: Scenario, **options: Any) -> RunConfig:
    """The RunConfig of `sc` with `options` (build_run_config's keywords, already merged)."""
    base_url = sc.target or next(r.url for r in sc.requests if r.url)
    assert base_url is not None  # Scenario() checked that there is one
    cfg = build_run_config(base_url, **options)
    t = cfg.target
    tag_headers = (
        [(f"{sc.tag_header}{k}", str(v)) for k, v in sc.tags.items()] if sc.tag_header else []
    )
    eps = []
    for r in sc.requests:
        path = r.path
        if r.url:
            u = parse_url(r.url)
            if (u.addr, u.port) != (t.addr, t.port):
                raise ScenarioError(
                    f"request {r.name!r}: {r.url} is not on the target {t.host_header}; "
                    "one scenario runs against one host:port"
                )
            path = u.path
        headers = list(sc.headers.items()) + list(r.headers.items()) + tag_headers
        body = r.body.encode("utf-8") if isinstance(r.body, str) else r.body
        ranges: tuple[tuple[int, int], ...] = tuple(x for c in r.checks for x in c.status)
        if len(ranges) > 8:
            raise ScenarioError(f"request {r.name!r}: at most 8 status codes or ranges in all")
        eps.append(
            Endpoint(
                name=r.name,
                weight=float(r.weight),
                request=serialize_request(r.method, path, t.host_header, headers, body),
                head=r.method == "HEAD",
                status=ranges,
                checks=tuple(c.name for c in r.checks),
            )
        )
    return dataclasses.replace(cfg, endpoints=tuple(eps), seed=sc.seed, tags=dict(sc.tags))
