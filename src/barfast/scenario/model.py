"""The scenario model: plain classes a Python file builds and the YAML loader produces.

A Scenario is a weighted mix of Requests against one target, with load settings (the same knobs as
the `barfast run` flags), default headers, tags and a seed. It is validated here and compiled by
`compile_run()` into a RunConfig whose endpoints the native engine runs: no Python per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from barfast.status import UsageError

MAX_ENDPOINTS = 4096  # the engine's table (loop.pxi LOOP_MAX_ENDPOINTS)
MAX_STATUS_RANGES = 8
MAX_CHECKS = 16  # per request (loop.pxi LOOP_MAX_CHECKS)
DEFAULT_MAX_BODY = 64 * 1024  # body bytes kept per response for header/body/JSON checks
MAX_BODY_LIMIT = 16 * 1024 * 1024
METHOD_KEYS = ("get", "post", "put", "delete", "patch", "head")
_STATUS_RE = re.compile(r"^(?:([1-5])xx|([1-9][0-9]{2})(?:-([1-9][0-9]{2}))?)$")


class ScenarioError(UsageError):
    """A scenario that cannot run: one line, `FILE:LINE:COL: what` when it came from a file (exit 2)."""


def parse_scenario_thresholds(items: Any) -> tuple[Any, ...]:
    """A scenario's thresholds -> slo.Threshold objects; a bad one is a one-line ScenarioError
    (no caret line: the scenario's FILE:LINE:COL points at the fault instead)."""
    from barfast.slo.grammar import ThresholdError, parse_thresholds

    if isinstance(items, (str, dict)) or not isinstance(items, (list, tuple)):
        raise ScenarioError("thresholds is a list: ['p99<200ms', {expr: 'error_rate<1%', ...}]")
    try:
        return tuple(parse_thresholds(list(items)))
    except ThresholdError as exc:
        raise ScenarioError(f"bad threshold '{exc.text}': {exc.reason}") from None


def status_ranges(
    spec: int | str | list[int | str] | tuple[int | str, ...],
) -> tuple[tuple[int, int], ...]:
    """200, "2xx", "200-299" or a list of them -> inclusive (lo, hi) ranges."""
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not 1 <= len(items) <= MAX_STATUS_RANGES:
        raise ScenarioError(f"a status check takes 1 to {MAX_STATUS_RANGES} codes or ranges")
    out = []
    for it in items:
        if isinstance(it, bool) or not isinstance(it, (int, str)):
            raise ScenarioError(f"bad status {it!r}: expected 200, '2xx' or '200-299'")
        if isinstance(it, int):
            if not 100 <= it <= 999:
                raise ScenarioError(f"bad status {it}: expected 100..999")
            out.append((it, it))
            continue
        m = _STATUS_RE.match(it.strip())
        if not m:
            raise ScenarioError(f"bad status {it!r}: expected 200, '2xx' or '200-299'")
        if m.group(1):
            lo = int(m.group(1)) * 100
            out.append((lo, lo + 99))
        else:
            lo = int(m.group(2))
            hi = int(m.group(3) or lo)
            if hi < lo:
                raise ScenarioError(f"bad status range {it!r}: {hi} is below {lo}")
            out.append((lo, hi))
    return tuple(out)


CHECK_KINDS = ("status", "header", "body", "json")
_JSON_PATH = re.compile(r"^(?:[^.]+(?:\.[^.]+)*)?$")


@dataclass(frozen=True)
class Check:
    """A response check, run by the engine on every response of its request.

    status: the code is in one of the ranges. header: the field `target` exists (or, with
    exists=False, does not), equals `equals` or contains `contains`. body: the body contains
    `contains`. json: the body is JSON and the value at the dotted path `target`
    (`data.items.0.id`) exists (exists=False: does not) or equals `equals` (a JSON value).
    Header, body and JSON checks read the first max_body_for_checks bytes of the body.
    """

    status: tuple[tuple[int, int], ...] = ()
    name: str = ""
    kind: str = "status"
    target: str = ""
    equals: Any = None
    contains: str | None = None
    exists: bool = True

    def __post_init__(self) -> None:
        if self.kind not in CHECK_KINDS:
            raise ScenarioError(f"a check's kind is one of {', '.join(CHECK_KINDS)}")
        if self.kind == "status" and not self.status:
            raise ScenarioError("a status check needs codes or ranges")
        if self.kind == "json" and not _JSON_PATH.match(self.target):
            raise ScenarioError(f"bad JSON path {self.target!r}: dotted keys and indexes, a.b.0.c")
        if self.kind == "header" and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", self.target):
            raise ScenarioError(f"bad header name {self.target!r}")
        if self.kind == "body" and not self.contains:
            raise ScenarioError("a body check needs the text the body must contain")
        if not self.name:
            object.__setattr__(self, "name", self._default_name())

    def _default_name(self) -> str:
        if self.kind == "status":
            return "status " + ",".join(
                f"{lo}"
                if lo == hi
                else f"{lo // 100}xx"
                if (lo % 100, hi - lo) == (0, 99)
                else f"{lo}-{hi}"
                for lo, hi in self.status
            )
        if self.kind == "body":
            return f"body contains {self.contains!r}"
        what = f"{self.kind} {self.target}"
        if self.equals is not None:
            return f"{what} == {self.equals!r}"
        if self.contains is not None:
            return f"{what} contains {self.contains!r}"
        return what if self.exists else f"{what} absent"

    @classmethod
    def status_in(cls, spec: Any, name: str = "") -> Check:
        return cls(status_ranges(spec), name or f"status {_status_text(spec)}")

    @classmethod
    def header(
        cls,
        field_name: str,
        equals: str | None = None,
        contains: str | None = None,
        exists: bool = True,
        name: str = "",
    ) -> Check:
        return cls(
            name=name,
            kind="header",
            target=field_name,
            equals=equals,
            contains=contains,
            exists=exists,
        )

    @classmethod
    def body_contains(cls, text: str, name: str = "") -> Check:
        return cls(name=name, kind="body", contains=text)

    @classmethod
    def json(cls, path: str, equals: Any = None, exists: bool = True, name: str = "") -> Check:
        return cls(name=name, kind="json", target=path, equals=equals, exists=exists)


def _status_text(spec: Any) -> str:
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    return ",".join(str(i) for i in items)


CAPTURE_KINDS = ("header", "json", "between")
MAX_FLOWS = 64  # flow.pxi FLOW_MAX_FLOWS
MAX_FLOW_STEPS = 1024  # per flow once `repeat` is unrolled (flow.pxi FLOW_MAX_STEPS)
MAX_REPEAT = 1000
MAX_VARS = 64  # captured variables per scenario (flow.pxi FLOW_MAX_VARS)
MAX_CAPTURES = 16  # per step (flow.pxi FLOW_MAX_CAPTURES)
MAX_CAPTURE_BYTES = 4096  # a longer captured value fails as too long (flow.pxi FLOW_VAR_CAP)
MAX_THINK_S = 3600.0
ON_CAPTURE_FAIL = ("restart", "skip")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Capture:
    """Take a value of a flow step's response into the user's variable `var` (`{{ var }}` in the
    steps after it): a header (`target` its name), a JSON value at the dotted path `target`
    (a string is decoded), or the body text between the markers `target` and `end`. At most
    MAX_CAPTURE_BYTES, never CR, LF or NUL; anything else fails the capture (counted)."""

    var: str
    kind: str = "json"
    target: str = ""
    end: str = ""

    def __post_init__(self) -> None:
        if not _VAR_NAME.match(self.var):
            raise ScenarioError(f"bad variable name {self.var!r}: letters, digits and _")
        if self.kind not in CAPTURE_KINDS:
            raise ScenarioError(f"a capture is one of {', '.join(CAPTURE_KINDS)}")
        if self.kind == "header" and not _HEADER_NAME.fullmatch(self.target):
            raise ScenarioError(f"bad header name {self.target!r}")
        if self.kind == "json" and not _JSON_PATH.match(self.target):
            raise ScenarioError(f"bad JSON path {self.target!r}: dotted keys and indexes, a.b.0.c")
        if self.kind == "between" and not (self.target and self.end):
            raise ScenarioError("a between capture needs two non-empty markers")

    @classmethod
    def header(cls, var: str, name: str) -> Capture:
        return cls(var, "header", name)

    @classmethod
    def json(cls, var: str, path: str) -> Capture:
        return cls(var, "json", path)

    @classmethod
    def between(cls, var: str, start: str, end: str) -> Capture:
        return cls(var, "between", start, end)


@dataclass(frozen=True)
class Think:
    """A pause between a flow's steps (no request in flight; the connection stays open):
    `constant` a seconds, `uniform` in [a, b], or `exponential` with mean a."""

    a: float = 0.0
    b: float = 0.0
    kind: str = "constant"

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "uniform", "exponential"):
            raise ScenarioError("a think is constant, uniform or exponential")
        for v in (self.a, self.b):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise ScenarioError(f"think: {v!r} is not a duration")
            if v < 0:
                raise ScenarioError("think must not be below zero")
            if v > MAX_THINK_S:
                raise ScenarioError(f"think: at most {MAX_THINK_S:g}s")
        if self.kind == "uniform" and self.b < self.a:
            raise ScenarioError(f"think uniform: {self.b:g}s is below {self.a:g}s")

    @classmethod
    def constant(cls, seconds: float) -> Think:
        return cls(seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Think:
        return cls(low, high, "uniform")

    @classmethod
    def exponential(cls, mean: float) -> Think:
        return cls(mean, 0.0, "exponential")


@dataclass(frozen=True)
class Repeat:
    """Steps run `times` times in a row (unrolled when compiled: a bounded count, no loops)."""

    times: int
    steps: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if isinstance(self.times, bool) or not isinstance(self.times, int):
            raise ScenarioError("repeat needs a count: repeat: N (1..1000)")
        if not 1 <= self.times <= MAX_REPEAT:
            raise ScenarioError(f"repeat: the count is 1..{MAX_REPEAT}, not {self.times}")
        if not self.steps:
            raise ScenarioError("repeat needs steps")


@dataclass(frozen=True)
class Request:
    """One endpoint of the mix: `path` (or an absolute `url` on the scenario's target) and what to send."""

    name: str
    path: str = "/"
    method: str = "GET"
    weight: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str = b""
    checks: tuple[Check, ...] = ()
    url: str | None = None
    json: Any = None  # a JSON body (serialised compactly; Content-Type: application/json)
    tags: dict[str, str] = field(default_factory=dict)  # what thresholds' {TAG=VALUE} scopes match
    captures: tuple[Capture, ...] = ()  # a flow step's: values its response gives the user

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", {str(k): str(v) for k, v in self.tags.items()})
        object.__setattr__(self, "captures", tuple(self.captures))
        if len(self.captures) > MAX_CAPTURES:
            raise ScenarioError(f"request {self.name!r}: at most {MAX_CAPTURES} captures")
        if not self.name:
            raise ScenarioError("a request needs a name")
        if isinstance(self.weight, bool) or not self.weight > 0:
            raise ScenarioError(f"request {self.name!r}: weight must be > 0")
        if self.url is None and not self.path.startswith("/"):
            raise ScenarioError(f"request {self.name!r}: path must start with '/'")
        if len(self.checks) > MAX_CHECKS:
            raise ScenarioError(f"request {self.name!r}: at most {MAX_CHECKS} checks")
        if self.json is not None and self.body:
            raise ScenarioError(f"request {self.name!r}: give body or json, not both")


Step = Request | Think | Repeat


@dataclass(frozen=True)
class Flow:
    """A virtual user's journey: steps run in order, one user per connection, iteration after
    iteration. Its request steps report as endpoints named FLOW.STEP. `data`: the feeders drawn
    once per iteration (None: every feeder its steps use; the others are drawn per request).
    `on_capture_fail`: "restart" ends the iteration, "skip" skips the steps that need the
    variable; either way the iteration counts as failed."""

    name: str
    steps: tuple[Step, ...]
    weight: float = 1.0
    data: tuple[str, ...] | None = None
    cookies: bool = True
    on_capture_fail: str = "restart"

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if self.data is not None:
            object.__setattr__(self, "data", tuple(self.data))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", self.name or ""):
            raise ScenarioError(f"bad flow name {self.name!r}: letters, digits, _ and -")
        if isinstance(self.weight, bool) or not self.weight > 0:
            raise ScenarioError(f"flow {self.name!r}: weight must be > 0")
        if self.on_capture_fail not in ON_CAPTURE_FAIL:
            raise ScenarioError(f"flow {self.name!r}: on_capture_fail is restart or skip")
        if not self.steps:
            raise ScenarioError(f"flow {self.name!r} needs steps")
        program = self.program()
        if len(program) > MAX_FLOW_STEPS:
            raise ScenarioError(
                f"flow {self.name!r}: {len(program)} steps once repeats are unrolled "
                f"(at most {MAX_FLOW_STEPS})"
            )
        if not any(isinstance(s, Request) for s in program):
            raise ScenarioError(f"flow {self.name!r} needs at least one request step")
        seen: dict[str, Request] = {}
        for s in program:
            if isinstance(s, Request):
                if s.name in seen and seen[s.name] is not s:
                    raise ScenarioError(f"flow {self.name!r}: two steps are named {s.name!r}")
                seen[s.name] = s

    def program(self) -> list[Request | Think]:
        """The steps in the order a user runs them, repeats unrolled."""
        out: list[Request | Think] = []

        def walk(steps: tuple[Any, ...]) -> None:
            for s in steps:
                if isinstance(s, Repeat):
                    for _ in range(s.times):
                        walk(s.steps)
                        if len(out) > MAX_FLOW_STEPS:
                            return
                elif isinstance(s, (Request, Think)):
                    out.append(s)
                else:
                    raise ScenarioError(
                        f"flow {self.name!r}: a step is a Request, Think or Repeat, "
                        f"not {type(s).__name__}"
                    )

        walk(self.steps)
        return out

    def requests(self) -> list[Request]:
        """Its distinct request steps, in the order they first run."""
        out: dict[str, Request] = {}
        for s in self.program():
            if isinstance(s, Request):
                out.setdefault(s.name, s)
        return list(out.values())


@dataclass(frozen=True)
class Scenario:
    """A weighted mix of requests against one target, with its load settings.

    `load` holds the `barfast run` knobs by their flag names (connections, duration, requests,
    rate, stages, arrival, workers, max_connections, timeout, connect_timeout); flags given on the
    command line override them.
    """

    requests: tuple[Request, ...] = ()
    target: str | None = None
    load: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # defaults for every request
    tags: dict[str, str] = field(default_factory=dict)
    tag_header: str | None = None  # e.g. "X-Load-": each tag is also sent as a header
    seed: int = 0
    data: dict[str, Any] = field(default_factory=dict)  # feeder name -> template.Feeder
    max_body_for_checks: int = DEFAULT_MAX_BODY  # body bytes a check may read; a longer body
    # fails a check it does not pass within them, counted as "body too long"
    # pass/fail gates on the merged result: "p99<200ms", {"expr": ..., "abort_on_fail": True,
    # "delay": "10s", "window": "10s"} or slo.Threshold objects (docs/thresholds.md)
    thresholds: tuple[Any, ...] = ()
    # or, instead of `requests`: virtual users running flows (weighted between them)
    flows: tuple[Flow, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "requests", tuple(self.requests))
        object.__setattr__(self, "flows", tuple(self.flows))
        object.__setattr__(self, "thresholds", parse_scenario_thresholds(self.thresholds))
        if self.requests and self.flows:
            raise ScenarioError("a scenario has requests or flows, not both")
        if not self.requests and not self.flows:
            raise ScenarioError("a scenario needs at least one request (or flow)")
        if len(self.flows) > MAX_FLOWS:
            raise ScenarioError(f"a scenario has at most {MAX_FLOWS} flows")
        if len(self.all_requests()) + len(self.flows) > MAX_ENDPOINTS:
            raise ScenarioError(f"a scenario has at most {MAX_ENDPOINTS} requests")
        seen: set[str] = set()
        for r in self.requests:
            if r.name in seen:
                raise ScenarioError(f"duplicate request name {r.name!r}")
            if r.captures:
                raise ScenarioError(f"request {r.name!r}: captures belong to flow steps")
            seen.add(r.name)
        names = [f.name for f in self.flows]
        for n in names:
            if names.count(n) > 1:
                raise ScenarioError(f"duplicate flow name {n!r}")
        if not 0 < self.max_body_for_checks <= MAX_BODY_LIMIT:
            raise ScenarioError(f"max_body_for_checks must be in 1..{MAX_BODY_LIMIT}")
        if self.target is None and any(r.url is None for r in self.all_requests()):
            raise ScenarioError("no target: give `target` or an absolute url on every request")
        if self.flows:
            self.variables()  # every variable used is captured before it is used

    def all_requests(self) -> list[Request]:
        """The requests of the mix, or every flow's distinct request steps."""
        if not self.flows:
            return list(self.requests)
        return [r for f in self.flows for r in f.requests()]

    def variables(self) -> dict[str, int]:
        """Flows: every captured variable -> its index (the order captures first appear); a step
        that uses a variable no earlier step of its flow captures is a ScenarioError."""
        from barfast.scenario.template import variables_used

        index: dict[str, int] = {}
        for f in self.flows:
            have: set[str] = set()
            for s in f.program():
                if not isinstance(s, Request):
                    continue
                for v in variables_used(s, self.headers):
                    if v not in have:
                        import difflib

                        near = difflib.get_close_matches(v, sorted(have), n=1)
                        hint = f" (did you mean {near[0]!r}?)" if near else ""
                        raise ScenarioError(
                            f"flow {f.name!r}, step {s.name!r}: no step before it captures "
                            f"{{{{ {v} }}}}{hint}"
                        )
                for c in s.captures:
                    have.add(c.var)
                    index.setdefault(c.var, len(index))
        if len(index) > MAX_VARS:
            raise ScenarioError(f"at most {MAX_VARS} captured variables in one scenario")
        return index
