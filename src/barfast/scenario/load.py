"""Scenario files: YAML (validated against schema.json, every error at FILE:LINE:COL) or Python.

YAML is composed into nodes first, so every value keeps where it was written; the plain data is
checked with jsonschema against the packaged schema, and the first error is reported at the node it
concerns, with a "did you mean" for a misspelt key. A Python file runs once (loops and computed data
are Python) and must leave a `scenario` (a barfast.Scenario) at module level.

Why ~560 lines in one module: every branch of the YAML format is checked here against the same
node positions (FILE:LINE:COL), so requests, checks, feeders, flows, thinks and thresholds share
one `_Doc` and one way of saying where an error is; the model (model.py) and the compiler
(compile.py) are apart.
"""

from __future__ import annotations

import difflib
import json
import runpy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from barfast.scenario.model import (
    CAPTURE_KINDS,
    CHECK_KINDS,
    DEFAULT_MAX_BODY,
    MAX_REPEAT,
    METHOD_KEYS,
    Capture,
    Check,
    Flow,
    Repeat,
    Request,
    Scenario,
    ScenarioError,
    Step,
    Think,
)
from barfast.scenario.template import Feeder, csv_feeder, has_placeholder, parse

Path_ = tuple[Any, ...]


def _schema() -> dict[str, Any]:
    text = resources.files("barfast.scenario").joinpath("schema.json").read_text()
    full = json.loads(text)
    return {"$defs": full["$defs"], "$ref": "#/$defs/scenario"}


class _Doc:
    """Plain data of a YAML document plus the mark of every value and every mapping key."""

    def __init__(self, name: str, text: str):
        self.name = name
        self.marks: dict[Path_, Any] = {}
        self.key_marks: dict[Path_, Any] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise self.error(mark, str(exc.problem or exc.context or "bad YAML")) from None
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{name}: bad YAML: {exc}") from None
        if node is None:
            raise ScenarioError(f"{name}:1:1: the file is empty")
        self.data = self._plain(node, ())
        self.lines = text.splitlines() or [""]

    def error(self, mark: Any, msg: str) -> ScenarioError:
        if mark is None:
            return ScenarioError(f"{self.name}: {msg}")
        return ScenarioError(f"{self.name}:{mark.line + 1}:{mark.column + 1}: {msg}")

    def at(self, path: Path_, msg: str, key: bool = False) -> ScenarioError:
        marks = self.key_marks if key else self.marks
        p = tuple(path)
        while p and p not in marks:
            p = p[:-1]
        return self.error(marks.get(p) or self.marks.get(()), msg)

    def _plain(self, node: yaml.Node, path: Path_) -> Any:
        self.marks[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in node.value:
                key = _scalar(k)
                if key in out:
                    raise self.error(k.start_mark, f"duplicate key {key!r}")
                self.key_marks[path + (key,)] = k.start_mark
                out[key] = self._plain(v, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._plain(v, path + (i,)) for i, v in enumerate(node.value)]
        return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ScenarioError("a mapping key must be a plain value")
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _where(path: Path_) -> str:
    names = [p for p in path if isinstance(p, str)]
    return names[-1] if names else "scenario"


def _message(doc: _Doc, err: Any) -> ScenarioError:
    path = tuple(err.absolute_path)
    v, what = err.validator, _where(path)
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        key = extra[0]
        near = difflib.get_close_matches(str(key), allowed, n=1)
        hint = (
            f" (did you mean {near[0]!r}?)" if near else f" (expected one of: {', '.join(allowed)})"
        )
        ctx = {"": "scenario", "load": "load", "defaults": "defaults"}.get(
            _where(path), _where(path)
        )
        if path and isinstance(path[-1], int):
            ctx = "request" if "requests" in path and len(path) == 2 else "check"
            if path[-2] == "steps":
                ctx = "step"
            elif path[-2] == "flows":
                ctx = "flow"
        elif len(path) >= 2 and path[-2] == "capture":
            ctx = f"capture {path[-1]!r}"
        return doc.at(path + (key,), f"unknown key {key!r} in {ctx}{hint}", key=True)
    if v in ("minimum", "exclusiveMinimum"):
        op = ">" if v == "exclusiveMinimum" else ">="
        return doc.at(path, f"{what} must be {op} {err.validator_value}")
    if v == "type":
        t = err.validator_value
        t = " or ".join(t) if isinstance(t, list) else t
        return doc.at(path, f"{what} must be a {t}, not {type(err.instance).__name__}")
    if v == "pattern":
        if what == "capture":
            return doc.at(path, "a captured variable's name is letters, digits and _")
        if what == "name" and len(path) >= 2 and path[-2] != "steps" and "flows" in path:
            return doc.at(path, f"bad flow name {err.instance!r}: letters, digits, _ and -")
        if what == "path":
            return doc.at(path, "path must start with '/'")
        if what in ("target", "url"):
            return doc.at(path, f"{what} must be a URL such as http://127.0.0.1:8080")
        if what == "method":
            return doc.at(path, f"bad method {err.instance!r}")
        return doc.at(path, f"bad {what} {err.instance!r}")
    if v == "enum":
        opts = ", ".join(map(str, err.validator_value))
        return doc.at(path, f"{what} must be one of {opts}")
    if v == "minItems":
        return doc.at(path, f"{what} must not be empty")
    if v == "maxItems":
        return doc.at(path, f"{what}: at most {err.validator_value}")
    if v == "required":
        missing = next(k for k in err.validator_value if k not in err.instance)
        if missing == "steps" and "repeat" in err.instance:
            return doc.at(path, "a repeat needs its steps: `steps: [...]`")
        return doc.at(path, f"missing key {missing!r}")
    if v == "oneOf" and what == "status":
        return doc.at(path, f"bad status {err.instance!r}: expected 200, '2xx' or '200-299'")
    return doc.at(path, f"{what}: {err.message}")


def load_yaml(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {str(p)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    doc = _Doc(str(p), text)
    data = doc.data
    if isinstance(data, str):
        return Scenario(requests=(Request(name="GET /"),), target=data)
    if not isinstance(data, dict):
        raise doc.at((), "a scenario is a mapping (target, load, requests, ...) or a URL")
    validator = Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: len(list(e.absolute_path)))
    if errors:
        deepest = max(errors, key=lambda e: len(list(e.absolute_path)))
        raise _message(doc, deepest if deepest.validator != "oneOf" else errors[0])
    return _build(doc, data, p.parent)


def _feeders(doc: _Doc, data: dict[str, Any], base: Path) -> dict[str, Feeder]:
    out = {}
    for name, spec in data.get("data", {}).items():
        at: Path_ = ("data", name, "csv")
        try:
            out[name] = csv_feeder(
                base / spec["csv"], spec.get("order", "sequential"), shown=spec["csv"]
            )
        except ScenarioError as exc:
            raise doc.at(at, f"data {name!r}: {exc}") from None
    return out


def _check_templates(
    doc: _Doc,
    r: dict[str, Any],
    at: Path_,
    feeds: dict[str, Feeder],
    variables: dict[str, int] | None = None,
) -> None:
    """Every placeholder of a request parses and names data that exists, and (a flow step) every
    variable it uses is captured by an earlier step (errors at its value)."""
    fields: list[tuple[Path_, Any]] = [
        (at + (k,), r[k]) for k in ("path", "url", *METHOD_KEYS, "body") if k in r
    ]
    fields += [(at + ("headers", k), v) for k, v in r.get("headers", {}).items()]
    if "json" in r:
        fields += list(_json_strings(r["json"], at + ("json",)))
    for where, v in fields:
        if isinstance(v, str) and has_placeholder(v):
            try:
                parse(v, feeds, variables)
            except ScenarioError as exc:
                raise doc.at(where, str(exc)) from None
    if "url" in r and isinstance(r["url"], str) and has_placeholder(r["url"].split("/", 3)[2]):
        raise doc.at(at + ("url",), "placeholders go in the path and query, not the host")


def _json_strings(v: Any, at: Path_) -> Any:
    if isinstance(v, str):
        yield at, v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield at + (k,), str(k)
            yield from _json_strings(x, at + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _json_strings(x, at + (i,))


def _build(doc: _Doc, data: dict[str, Any], base: Path) -> Scenario:
    feeds = _feeders(doc, data, base)
    defaults = data.get("defaults", {})
    load = dict(data.get("load", {}))
    if "timeout" in defaults and "timeout" not in load:
        load["timeout"] = defaults["timeout"]
    if "flows" in data and "requests" in data:
        raise doc.at(("flows",), "a scenario has requests or flows, not both", key=True)
    raw = [] if "flows" in data else data.get("requests") or [{"path": "/"}]
    for i, r in enumerate(raw):
        _check_templates(doc, r, ("requests", i), feeds)
    for k, v in defaults.get("headers", {}).items():
        if isinstance(v, str) and has_placeholder(v):
            try:
                parse(v, feeds, {} if "flows" in data else None)
            except ScenarioError as exc:
                raise doc.at(("defaults", "headers", k), str(exc)) from None
    reqs = [_request(doc, r, ("requests", i), base) for i, r in enumerate(raw)]
    flows = [_flow(doc, f, ("flows", i), feeds, base) for i, f in enumerate(data.get("flows", []))]
    seen: dict[str, int] = {}
    for i, r in enumerate(reqs):
        if r.name in seen:
            first = doc.marks.get(("requests", seen[r.name]))
            line = f" (first at line {first.line + 1})" if first else ""
            raise doc.at(("requests", i), f"duplicate request name {r.name!r}{line}")
        seen[r.name] = i
    if "target" not in data and any(r.url is None for r in reqs + _flow_requests(flows)):
        raise doc.at((), "no target: give `target` or a `url` on every request")
    tags = {str(k): str(v) for k, v in data.get("tags", {}).items()}
    limits = _thresholds(doc, data.get("thresholds", []))
    try:
        return Scenario(
            requests=tuple(reqs),
            target=data.get("target"),
            load=load,
            headers={str(k): str(v) for k, v in defaults.get("headers", {}).items()},
            tags=tags,
            tag_header=data.get("tag_header"),
            seed=int(data.get("seed", 0)),
            data=feeds,
            max_body_for_checks=int(defaults.get("max_body_for_checks", DEFAULT_MAX_BODY)),
            thresholds=tuple(limits),
            flows=tuple(flows),
        )
    except ScenarioError as exc:
        raise doc.at((), str(exc)) from None


def _flow_requests(flows: list[Flow]) -> list[Request]:
    return [r for f in flows for r in f.requests()]


def _flow(doc: _Doc, f: dict[str, Any], at: Path_, feeds: dict[str, Feeder], base: Path) -> Flow:
    """One flow of a YAML scenario; every fault at FILE:LINE:COL of the step or value it concerns."""
    have: dict[str, int] = {}  # the variables captured so far, in the order a user runs the steps
    steps = _steps(doc, f["steps"], at + ("steps",), feeds, base, have, f.get("name", ""))
    for j, name in enumerate(f.get("data", [])):
        if name not in feeds:
            near = difflib.get_close_matches(str(name), list(feeds), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise doc.at(at + ("data", j), f"no data named {name!r}{hint}")
    try:
        return Flow(
            name=f["name"],
            steps=tuple(steps),
            weight=f.get("weight", 1),
            data=tuple(f["data"]) if "data" in f else None,
            cookies=f.get("cookies", True),
            on_capture_fail=f.get("on_capture_fail", "restart"),
        )
    except ScenarioError as exc:
        raise doc.at(at, str(exc)) from None


def _sub_validate(doc: _Doc, value: Any, ref: str, at: Path_) -> None:
    """A flow step against its definition in the schema (errors placed under `at`)."""
    schema = _schema()
    validator = Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"})
    errors = list(validator.iter_errors(value))
    if errors:
        deepest = max(errors, key=lambda e: len(list(e.absolute_path)))
        deepest.path.extendleft(reversed(at))  # absolute_path = at + the error's own path
        raise _message(doc, deepest)


def _steps(
    doc: _Doc,
    items: list[Any],
    at: Path_,
    feeds: dict[str, Feeder],
    base: Path,
    have: dict[str, int],
    flow: str,
) -> list[Step]:
    out: list[Step] = []
    for i, st in enumerate(items):
        here = at + (i,)
        if not isinstance(st, dict):
            raise doc.at(here, "a step is a request, a think or a repeat (a mapping)")
        if "think" in st:
            _sub_validate(doc, st, "think", here)
            out.append(_think(doc, st["think"], here + ("think",)))
        elif "repeat" in st:
            _sub_validate(doc, st, "repeat", here)
            n = st["repeat"]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
                raise doc.at(
                    here + ("repeat",), f"repeat needs a bound: a count in 1..{MAX_REPEAT}"
                )
            inner = _steps(doc, st["steps"], here + ("steps",), feeds, base, have, flow)
            out.append(Repeat(n, tuple(inner)))
        else:
            _sub_validate(doc, st, "flow_request", here)
            _check_templates(doc, st, here, feeds, have)
            caps = []
            for var, spec in st.get("capture", {}).items():
                where = here + ("capture", var)
                kinds = [k for k in CAPTURE_KINDS if k in spec]
                if len(kinds) != 1:
                    raise doc.at(where, "a capture is one of header, json or between")
                kind = kinds[0]
                try:
                    if kind == "between":
                        caps.append(Capture.between(var, *spec["between"]))
                    else:
                        caps.append(Capture(var, kind, str(spec[kind])))
                except ScenarioError as exc:
                    raise doc.at(where + (kind,), str(exc)) from None
            for c in caps:
                have.setdefault(c.var, len(have))
            out.append(_request(doc, {**st, "captures": caps}, here, base))
    return out


def _think(doc: _Doc, v: Any, at: Path_) -> Think:
    """`500ms`, `{uniform: [100ms, 1s]}` or `{exponential: 300ms}`."""
    from barfast.config import parse_duration
    from barfast.status import UsageError

    def seconds(x: Any, where: Path_) -> float:
        if isinstance(x, bool) or not isinstance(x, (str, int, float)):
            raise doc.at(where, "think takes a duration such as 500ms")
        if isinstance(x, (int, float)) and x < 0 or str(x).strip().startswith("-"):
            raise doc.at(where, "think must not be below zero")
        try:
            return parse_duration(str(x) if isinstance(x, str) else f"{x}s", "think") / 1e9
        except UsageError as exc:
            raise doc.at(where, str(exc)) from None

    try:
        if isinstance(v, dict):
            if len(v) != 1 or next(iter(v)) not in ("uniform", "exponential"):
                raise doc.at(
                    at, "think is a duration, {uniform: [LOW, HIGH]} or {exponential: MEAN}"
                )
            kind, arg = next(iter(v.items()))
            if kind == "uniform":
                if not isinstance(arg, list) or len(arg) != 2:
                    raise doc.at(at + (kind,), "uniform takes [LOW, HIGH]")
                return Think.uniform(
                    seconds(arg[0], at + (kind, 0)), seconds(arg[1], at + (kind, 1))
                )
            return Think.exponential(seconds(arg, at + (kind,)))
        return Think.constant(seconds(v, at))
    except ScenarioError as exc:
        if str(exc).startswith(doc.name):
            raise
        raise doc.at(at, str(exc)) from None


def _thresholds(doc: _Doc, items: list[Any]) -> list[Any]:
    """Each threshold parsed here, so its error points at FILE:LINE:COL of the fault itself (in a
    plain or quoted one-line string: the string's column plus the offset in the expression)."""
    from barfast.slo.grammar import ThresholdError, parse_threshold

    out = []
    for i, it in enumerate(items):
        at: Path_ = ("thresholds", i)
        expr, opts = (it, {}) if isinstance(it, str) else (it["expr"], dict(it))
        opts.pop("expr", None)
        try:
            out.append(parse_threshold(expr, **opts))
        except ThresholdError as exc:
            where = at if isinstance(it, str) else at + ("expr",)
            mark = doc.marks.get(where)
            msg = f"bad threshold '{exc.text}': {exc.reason}"
            if mark is None or exc.pos is None or not isinstance(it, str):
                raise doc.at(where, msg) from None
            first = doc.lines[mark.line][mark.column : mark.column + 1]
            quoted = 1 if first and first in "'\"" else 0
            raise ScenarioError(
                f"{doc.name}:{mark.line + 1}:{mark.column + 1 + quoted + exc.pos}: {msg}"
            ) from None
    return out


def _request(doc: _Doc, r: dict[str, Any], at: Path_, base: Path) -> Request:
    method, path = r.get("method"), r.get("path")
    short = [k for k in METHOD_KEYS if k in r]
    if len(short) > 1 or (short and ("path" in r or "url" in r)):
        raise doc.at(at + (short[-1],), "give one of path, url or get:/post:/... PATH", key=True)
    if short:
        if method is not None:
            raise doc.at(at + ("method",), f"`{short[0]}:` already sets the method", key=True)
        method, path = short[0].upper(), r[short[0]]
        if not str(path).startswith("/"):
            raise doc.at(at + (short[0],), "path must start with '/'")
    bodies = [k for k in ("body", "body_file", "json") if k in r]
    if len(bodies) > 1:
        raise doc.at(
            at + (bodies[1],),
            f"give one of body, body_file or json, not {' and '.join(bodies)}",
            key=True,
        )
    body: bytes | str = b""
    headers = {str(k): str(v) for k, v in r.get("headers", {}).items()}
    if "body" in r:
        body = r["body"]
    elif "body_file" in r:
        f = base / r["body_file"]
        try:
            body = f.read_bytes()
        except OSError as exc:
            raise doc.at(
                at + ("body_file",), f"cannot read body file {r['body_file']!r}: {exc.strerror}"
            ) from None
    checks = [_check(doc, c, at + ("checks", j)) for j, c in enumerate(r.get("checks", []))]
    url = r.get("url")
    name = r.get("name") or f"{(method or 'GET').upper()} {path or url or '/'}"
    try:
        return Request(
            name=name,
            path=path or "/",
            method=(method or "GET").upper(),
            weight=r.get("weight", 1),
            headers=headers,
            body=body,
            checks=tuple(checks),
            url=url,
            json=r.get("json"),
            tags={str(k): str(v) for k, v in r.get("tags", {}).items()},
            captures=tuple(r.get("captures", ())),
        )
    except ScenarioError as exc:
        raise doc.at(at, str(exc)) from None


_CHECK_OPTIONS = {  # which of equals / contains / exists each kind takes
    "status": (),
    "header": ("equals", "contains", "exists"),
    "body": (),
    "json": ("equals", "exists"),
}


def _check(doc: _Doc, c: dict[str, Any], at: Path_) -> Check:
    kinds = [k for k in CHECK_KINDS if k in c]
    if len(kinds) != 1:
        raise doc.at(at, "a check has exactly one of status, header, body, json")
    kind = kinds[0]
    opts = [k for k in ("equals", "contains", "exists") if k in c]
    for k in opts:
        if k not in _CHECK_OPTIONS[kind]:
            raise doc.at(at + (k,), f"a {kind} check takes no `{k}`", key=True)
    if len([k for k in opts if k != "exists" or c[k] is False]) > 1:
        raise doc.at(at + (opts[-1],), f"give one of {', '.join(opts)}", key=True)
    if kind == "json" and "equals" in c and c["equals"] is None:
        raise doc.at(at + ("equals",), "equals: null is not a value to compare with; use exists")
    try:
        if kind == "status":
            return Check.status_in(c["status"], c.get("name", ""))
        if kind == "body":
            return Check.body_contains(str(c["body"]), c.get("name", ""))
        if kind == "header":
            eq = c.get("equals")
            return Check.header(
                str(c["header"]),
                equals=None if eq is None else str(eq),
                contains=c.get("contains"),
                exists=c.get("exists", True),
                name=c.get("name", ""),
            )
        return Check.json(
            str(c["json"]),
            equals=c.get("equals"),
            exists=c.get("exists", True),
            name=c.get("name", ""),
        )
    except ScenarioError as exc:
        raise doc.at(at + (kind,), str(exc)) from None


def load_python(path: str | Path) -> Scenario:
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"cannot read scenario {str(p)!r}: no such file")
    try:
        ns = runpy.run_path(str(p))
    except ScenarioError as exc:
        raise ScenarioError(f"{p}: {exc}") from None
    except Exception as exc:  # the user's code: one line, not a traceback
        raise ScenarioError(f"{p}: {type(exc).__name__}: {exc}") from None
    sc = ns.get("scenario")
    if not isinstance(sc, Scenario):
        raise ScenarioError(f"{p}: no module-level `scenario` (a barfast.Scenario) defined")
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """A .yaml/.yml or .py scenario file -> Scenario (ScenarioError, exit 2, on any fault)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return load_yaml(path)
    if suffix == ".py":
        return load_python(path)
    raise ScenarioError(f"{path}: a scenario file ends in .yaml, .yml or .py")
