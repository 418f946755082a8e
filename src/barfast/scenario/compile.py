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

from barfast.config import (
    Endpoint,
    FlowSpec,
    RunConfig,
    build_run_config,
    parse_url,
    serialize_request,
)
from barfast.scenario import template
from barfast.scenario.model import Check, Flow, Request, Scenario, ScenarioError, Think

# inside a JSON body, "{{ rand 1 9 }}" (a string that is one numeric generator) becomes a number
_JSON_NUMBER = re.compile(r'"(\{\{\s*(?:seq|time|time_ms|rand\s+\d+\s+\d+)\s*\}\})"')

LOAD_KEYS = (
    "iterations",
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
    if "iterations" in out:
        # flows: iterations bound the run; -n (requests) on the command line overrides them
        its = out.pop("iterations")
        if sc.flows and flags.get("requests") is None:
            out["requests"] = its
    return out


def compile_run(sc: Scenario, **options: Any) -> RunConfig:
    """The RunConfig of `sc` with `options` (build_run_config's keywords, already merged)."""
    base_url = sc.target or next(r.url for r in sc.all_requests() if r.url)
    assert base_url is not None  # Scenario() checked that there is one
    cfg = build_run_config(base_url, **options)
    t = cfg.target
    tag_headers = (
        [(f"{sc.tag_header}{k}", str(v)) for k, v in sc.tags.items()] if sc.tag_header else []
    )
    eps: list[Endpoint] = []
    builder = template.Builder(dict(sc.data))
    variables = sc.variables() if sc.flows else None

    def endpoint(r: Request, name: str, cookies: bool = False) -> Endpoint:
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
        request, tpl = _serialise(r, sc, path, t.host_header, headers, builder, variables, cookies)
        return Endpoint(
            name=name,
            weight=float(r.weight),
            request=request,
            head=r.method == "HEAD",
            checks=tuple(c.name for c in r.checks),
            template=tpl,
            engine_checks=tuple(_engine_check(c) for c in r.checks),
        )

    flows: list[FlowSpec] = []
    if sc.flows:
        assert variables is not None
        for f in sc.flows:
            flows.append(_flow(f, eps, builder, variables, endpoint, sc.headers))
    else:
        eps = [endpoint(r, r.name) for r in sc.requests]
    return dataclasses.replace(
        cfg,
        endpoints=tuple(eps),
        seed=sc.seed,
        tags=dict(sc.tags),
        feeders=builder.feeders(),
        max_body_for_checks=sc.max_body_for_checks,
        flows=tuple(flows),
        variables=tuple(variables or ()),
    )


_CAPTURE_KINDS = {"header": 1, "json": 2, "between": 3}  # bf_flow.h BF_CAP_*
_THINK_KINDS = {"constant": 0, "uniform": 1, "exponential": 2}  # flow.pxi THINK_*


def _flow(
    f: Flow,
    eps: list[Endpoint],
    builder: template.Builder,
    variables: dict[str, int],
    endpoint: Any,
    defaults: dict[str, str],
) -> FlowSpec:
    """One flow's step program; its distinct request steps are appended to eps as FLOW.STEP."""
    index: dict[str, int] = {}
    for r in f.requests():
        index[r.name] = len(eps)
        eps.append(endpoint(r, f"{f.name}.{r.name}", f.cookies))
    # the feeders its steps read (registered by their templates just now), bound per iteration
    used: set[str] = set()
    for r in f.requests():
        used |= _feeders_used(r, builder, defaults)
    bound = used if f.data is None else set(f.data)
    for name in bound - used:
        raise ScenarioError(f"flow {f.name!r}: data {name!r} is read by none of its steps")
    mask = 0
    for name in bound:
        mask |= 1 << builder.feed_index(name)
    steps: list[tuple[Any, ...]] = []
    captures: list[tuple[str, str, str]] = []
    for s in f.program():
        if isinstance(s, Think):
            a, b = round(s.a * 1e9), round(s.b * 1e9)
            steps.append((2, _THINK_KINDS[s.kind], a, b))
            continue
        caps = []
        for c in s.captures:
            caps.append(
                (
                    variables[c.var],
                    _CAPTURE_KINDS[c.kind],
                    c.target.encode("utf-8"),
                    c.end.encode("utf-8"),
                )
            )
            captures.append((s.name, c.var, c.kind))
        steps.append((1, index[s.name], tuple(caps)))
    return FlowSpec(
        name=f.name,
        weight=float(f.weight),
        feeds=mask,
        cookies=f.cookies,
        on_fail=0 if f.on_capture_fail == "restart" else 1,
        steps=tuple(steps),
        captures=tuple(captures),
    )


def _feeders_used(r: Request, builder: template.Builder, defaults: dict[str, str]) -> set[str]:
    texts = [r.path, r.url or "", *r.headers.values(), *defaults.values()]
    if isinstance(r.body, str):
        texts.append(r.body)
    texts += list(template._strings(r.json))
    out = set()
    for text in texts:
        for m in template._PH.finditer(text):
            words = m.group(1).split()
            if len(words) == 1 and "." in words[0]:
                name = words[0].partition(".")[0]
                if name in builder.data:
                    out.add(name)
    return out


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
    variables: dict[str, int] | None = None,
    cookies: bool = False,
) -> tuple[bytes, tuple[bytes, bytes] | None]:
    """The request's bytes, and its template when it has placeholders or (a flow step with
    cookies) a Cookie line (then the bytes are only a readable form: the engine renders the
    template)."""
    slots: list[tuple[template.Slot, str]] = []

    def mark(text: str, escape: str) -> str:
        if not template.has_placeholder(text):
            return text
        if "\0" in text:
            raise ScenarioError(f"request {r.name!r}: a NUL character in a template")
        out = []
        for part in template.parse(text, sc.data, variables):
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
    if cookies:
        # the user's Cookie line goes last in the head (TPL_COOKIE: nothing while the jar is empty)
        end = raw.index(b"\r\n\r\n") + 2
        raw = raw[:end] + b"\x00k\x00" + raw[end:]
    if not slots and not cookies:
        return raw, None
    c = builder.compile(raw, slots, body_slots)
    return raw, (c.blob, c.ops)
