"""Scenario + command-line load flags -> a RunConfig whose endpoints the engine runs.

Every request of a scenario is serialised once here into the bytes the engine sends (default
headers, the request's own, the tags when `tag_header` is set, Content-Length); the engine then
picks one endpoint per request by weight. One scenario targets one address (host:port): the engine
connects to one.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from barfast.config import Endpoint, RunConfig, build_run_config, parse_url, serialize_request
from barfast.scenario import template
from barfast.scenario.model import Check, Request, Scenario, ScenarioError

# inside a JSON body, "{{ rand 1 9 }}" (a string that is one numeric generator) becomes a number
_JSON_NUMBER = re.compile(r'"(\{\{\s*(?:seq|time|time_ms|rand\s+\d+\s+\d+)\s*\}\})"')

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
    builder = template.Builder(dict(sc.data))
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
        request, tpl = _serialise(r, sc, path, t.host_header, headers, builder)
        eps.append(
            Endpoint(
                name=r.name,
                weight=float(r.weight),
                request=request,
                head=r.method == "HEAD",
                checks=tuple(c.name for c in r.checks),
                template=tpl,
                engine_checks=tuple(_engine_check(c) for c in r.checks),
            )
        )
    return dataclasses.replace(
        cfg,
        endpoints=tuple(eps),
        seed=sc.seed,
        tags=dict(sc.tags),
        feeders=builder.feeders(),
        max_body_for_checks=sc.max_body_for_checks,
    )


_KINDS = {"status": 1, "header": 2, "body": 3, "json": 4}  # loop.pxi CHK_*
EXISTS, ABSENT, EQUALS, CONTAINS = range(4)


def _engine_check(c: Check) -> tuple[int, int, tuple[tuple[int, int], ...], bytes, bytes]:
    """A Check as the engine runs it: (kind, mode, status ranges, a, b)."""
    if c.kind == "status":
        return (1, EXISTS, c.status, b"", b"")
    if c.kind == "body":
        return (3, CONTAINS, (), b"", (c.contains or "").encode("utf-8"))
    target = c.target.encode("utf-8")
    if c.equals is not None:
        expected = str(c.equals) if c.kind == "header" else json.dumps(c.equals)
        return (_KINDS[c.kind], EQUALS, (), target, expected.encode("utf-8"))
    if c.contains is not None:
        return (_KINDS[c.kind], CONTAINS, (), target, c.contains.encode("utf-8"))
    return (_KINDS[c.kind], EXISTS if c.exists else ABSENT, (), target, b"")


def _serialise(
    r: Request,
    sc: Scenario,
    path: str,
    host: str,
    headers: list[tuple[str, str]],
    builder: template.Builder,
) -> tuple[bytes, tuple[bytes, bytes] | None]:
    """The request's bytes, and its template when it has placeholders (then the bytes are only a
    readable form: the engine renders the template)."""
    slots: list[tuple[template.Slot, str]] = []

    def mark(text: str, escape: str) -> str:
        if not template.has_placeholder(text):
            return text
        if "\0" in text:
            raise ScenarioError(f"request {r.name!r}: a NUL character in a template")
        out = []
        for part in template.parse(text, sc.data):
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(f"\0{len(slots)}\0")
                slots.append((part, escape))
        return "".join(out)

    try:
        target = mark(path, "target")
        hdrs = [(n, mark(v, "header")) for n, v in headers]
        before = len(slots)
        if r.json is not None:
            text = _JSON_NUMBER.sub(r"\1", json.dumps(r.json, separators=(",", ":")))
            if not any(n.lower() == "content-type" for n, _ in hdrs):
                hdrs.append(("Content-Type", "application/json"))
            body = mark(text, "json").encode("utf-8")
        elif isinstance(r.body, str):
            body = mark(r.body, "raw").encode("utf-8")
        else:
            body = r.body
        body_slots = len(slots) > before
        if body_slots and not any(n.lower() == "content-length" for n, _ in hdrs):
            hdrs.append(("Content-Length", "\0c\0"))
        raw = serialize_request(r.method, target, host, hdrs, body)
    except ScenarioError as exc:
        raise ScenarioError(f"request {r.name!r}: {exc}") from None
    if not slots:
        return raw, None
    c = builder.compile(raw, slots, body_slots)
    return raw, (c.blob, c.ops)
