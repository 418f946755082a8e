"""Run configuration: frozen dataclasses, every default, and all validation of user input.

Validate in Python, trust in C: everything the native core receives has been checked here once, with a
one-line `UsageError` naming what is wrong. Times are integer nanoseconds (`*_ns`) inside; units appear
only when parsing or printing.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from barfast.status import NoLoadError, UsageError

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# Defaults (the one place they live).
DEFAULT_CONNECTIONS = 50
DEFAULT_DURATION_NS = 10 * NS_PER_S
DEFAULT_TIMEOUT_NS = 10 * NS_PER_S
DEFAULT_CONNECT_TIMEOUT_NS = 3 * NS_PER_S
DEFAULT_EMBEDDED_DURATION_NS = 3 * NS_PER_S
MAX_CONNECTIONS = 1_000_000
HEARTBEAT_INTERVAL_S = 1.0
WORKER_LOST_AFTER_S = 3.0
SNAPSHOT_INTERVAL_S = 1.0
USER_AGENT = "barfast"

_UNITS = (
    r"(?:ns|us|µs|ms|s|m|h)"  # "ms" before "m": "1ms" is a millisecond, "1m5s" a minute and 5 s
)
_DURATION_RE = re.compile(rf"^(?:\d+(?:\.\d+)?{_UNITS})+$|^\d+(?:\.\d+)?$")
_DURATION_PART_RE = re.compile(rf"(\d+(?:\.\d+)?)({_UNITS})?")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": NS_PER_MS,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
    None: NS_PER_S,
}
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token


def parse_duration(text: str, what: str = "duration") -> int:
    """'500ms', '10s', '2m', '1.5s', '250us', '3' (seconds), and Go's compound form as k6, vegeta
    and hey take it ('1m30s', '1h2m3.5s') -> nanoseconds. Whitespace is ignored."""
    compact = "".join(str(text).split())
    if not _DURATION_RE.match(compact):
        raise UsageError(
            f"bad {what} {text!r}: expected a number with a unit, e.g. 500ms, 10s, 2m, 1m30s"
        )
    return sum(
        round(float(num) * _UNIT_NS[unit or None])
        for num, unit in _DURATION_PART_RE.findall(compact)
    )


def format_duration(ns: int) -> str:
    if ns % (60 * NS_PER_S) == 0 and ns >= 60 * NS_PER_S:
        return f"{ns // (60 * NS_PER_S)}m"
    if ns % NS_PER_S == 0:
        return f"{ns // NS_PER_S}s"
    if ns % NS_PER_MS == 0:
        return f"{ns // NS_PER_MS}ms"
    return f"{ns / 1000:g}us"


@dataclass(frozen=True)
class Target:
    """Where the load goes: a resolved address plus what goes in the request line and Host header."""

    url: str
    host: str
    port: int
    path: str  # origin-form request target: path plus query
    family: int  # socket.AF_INET or socket.AF_INET6
    addr: str  # resolved numeric address
    host_header: str
    tls: bool = False  # https://


def parse_url(url: str) -> Target:
    """Check and resolve an http:// or https:// URL. Bad syntax -> UsageError; unresolvable ->
    NoLoadError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"bad URL {url!r}: expected http[s]://HOST[:PORT]/PATH")
    tls = parts.scheme == "https"
    host = parts.hostname
    if not host:
        raise UsageError(f"bad URL {url!r}: no host")
    if port == 0:
        raise UsageError(f"bad URL {url!r}: port 0")
    scheme_port = 443 if tls else 80
    port = port or scheme_port
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in path for c in " \r\n\t"):
        raise UsageError(f"bad URL {url!r}: the path contains white space")
    try:
        ip = ipaddress.ip_address(host)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        addr = str(ip)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NoLoadError(f"cannot resolve {host!r}: {exc.strerror}") from None
        infos.sort(key=lambda i: 0 if i[0] == socket.AF_INET else 1)
        family, addr = infos[0][0], str(infos[0][4][0])
    bracket = f"[{host}]" if ":" in host else host
    host_header = bracket if port == scheme_port else f"{bracket}:{port}"
    return Target(url, host, port, path, int(family), addr, host_header, tls)


@dataclass(frozen=True)
class Transport:
    """How connections are made: TLS for an https:// target (verification on unless insecure),
    or a unix socket instead of TCP (the URL still gives the Host header and the path)."""

    tls: bool = False
    verify: bool = True
    cacert: str = ""  # verify against this CA bundle only (default: the system store)
    cert: str = ""  # client certificate (mTLS), PEM
    key: str = ""  # its private key, PEM (default: in the cert file)
    servername: str = ""  # SNI and the name the certificate must match (default: the URL's host)
    resume: bool = True  # resume sessions (tickets) on reconnects
    unix_socket: str = ""

    def tls_names(self, target: Target) -> tuple[str, str]:
        """(the name the certificate must match, the SNI sent: "" for an IP literal, RFC 6066 §3)."""
        host = self.servername or target.host
        try:
            ipaddress.ip_address(host)
            return host, ""
        except ValueError:
            return host, host


UNIX_PATH_MAX = 107  # sockaddr_un's sun_path holds 108 bytes with the NUL


def build_transport(
    target: Target,
    *,
    insecure: bool = False,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    servername: str | None = None,
    tls_resume: bool = True,
    unix_socket: str | None = None,
) -> Transport:
    """Check the TLS and unix-socket options against the target; one-line UsageError."""
    tls_opts = {"--cacert": cacert, "--cert": cert, "--key": key, "--servername": servername}
    if not target.tls:
        given = [k for k, v in tls_opts.items() if v] + (["--insecure"] if insecure else [])
        if given:
            raise UsageError(f"{', '.join(given)}: only for an https:// URL")
    for flag, path in (("--cacert", cacert), ("--cert", cert), ("--key", key)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise UsageError(f"cannot read {flag} file {path!r}: {exc.strerror}") from None
    if key and not cert:
        raise UsageError("--key needs --cert (the client certificate it belongs to)")
    if servername is not None and (not servername or any(c in servername for c in " /\r\n")):
        raise UsageError(f"bad --servername {servername!r}: expected a host name")
    if unix_socket is not None:
        if not unix_socket:
            raise UsageError("bad --unix-socket '': expected a path")
        if len(unix_socket.encode()) > UNIX_PATH_MAX:
            raise UsageError(
                f"bad --unix-socket {unix_socket!r}: at most {UNIX_PATH_MAX} bytes (sun_path)"
            )
    return Transport(
        tls=target.tls,
        verify=not insecure,
        cacert=cacert or "",
        cert=cert or "",
        key=key or "",
        servername=servername or "",
        resume=tls_resume,
        unix_socket=unix_socket or "",
    )


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or not _TOKEN_RE.match(name):
        raise UsageError(f"bad header {text!r}: expected 'Name: value'")
    if "\r" in value or "\n" in value:
        raise UsageError(f"bad header {text!r}: value contains a line break")
    return name, value


@dataclass(frozen=True)
class Stage:
    """Ramp linearly from the previous stage's rate to `rate` (req/s) over `duration_ns` (k6's habit)."""

    duration_ns: int
    rate: float


def parse_stages(text: str) -> tuple[Stage, ...]:
    """'30s:1000,1m:5000,30s:0' -> stages."""
    stages = []
    for part in text.split(","):
        dur, sep, rate = part.strip().partition(":")
        if not sep:
            raise UsageError(
                f"bad stage {part!r} in --stages: expected DURATION:RATE, e.g. 30s:1000"
            )
        d = parse_duration(dur, "stage duration")
        r = parse_rate(rate, "stage rate", allow_zero=True)
        if d <= 0:
            raise UsageError(f"bad stage {part!r} in --stages: duration must be positive")
        stages.append(Stage(d, r))
    if not stages:
        raise UsageError("--stages is empty")
    return tuple(stages)


MAX_RATE = 1e9  # requests per second: one per ns, the open-loop schedule's resolution


def parse_rate(text: str | float, what: str = "rate", allow_zero: bool = False) -> float:
    try:
        r = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"bad {what} {text!r}: expected requests per second") from None
    if not math.isfinite(r) or r < 0 or (r == 0 and not allow_zero):
        raise UsageError(f"bad {what} {text!r}: must be a positive number of requests per second")
    if r > MAX_RATE:
        # The schedule's resolution is 1 ns (pacing.pxi): one request per ns is the most it holds.
        raise UsageError(f"bad {what} {text!r}: at most {MAX_RATE:.0e} requests per second")
    return r


@dataclass(frozen=True)
class Endpoint:
    """One request of a scenario's mix, serialised: what the engine sends, its weight and check."""

    name: str
    weight: float
    request: bytes
    head: bool = False
    status: tuple[tuple[int, int], ...] = ()  # inclusive ranges a response must be in (): none
    checks: tuple[str, ...] = ()  # the checks' names, for the report
    # rendered per request by the engine: (static blob, ops) of scenario/template.py; None: static
    template: tuple[bytes, bytes] | None = None
    # the engine's checks: (kind, mode, status ranges, a, b) each (loop.pxi CHK_*), in `checks` order
    engine_checks: tuple[tuple[int, int, tuple[tuple[int, int], ...], bytes, bytes], ...] = ()

    def to_engine(
        self,
    ) -> tuple[bytes, bool, float, list[tuple[int, int]], tuple[bytes, bytes] | None]:
        return (self.request, self.head, self.weight, list(self.status), self.template)


@dataclass(frozen=True)
class FlowSpec:
    """A flow as the engine runs it (scenario/compile.py builds it): its step program, each request
    step naming an endpoint of the run (FLOW.STEP), each think step its distribution."""

    name: str
    weight: float
    feeds: int  # bit f: feeder f is drawn once per iteration
    cookies: bool
    on_fail: int  # 0: a failed capture ends the iteration, 1: skips the steps that need it
    # (1, endpoint, ((var, kind, a, b), ...)) or (2, think kind, a ns, b ns) per step (flow.pxi)
    steps: tuple[tuple[Any, ...], ...]
    # each capture in program order (repeats unrolled): (step name, variable, kind)
    captures: tuple[tuple[str, str, str], ...] = ()

    def to_engine(self) -> tuple[float, int, bool, int, list[tuple[Any, ...]]]:
        return (self.weight, self.feeds, self.cookies, self.on_fail, list(self.steps))


def serialize_request(
    method: str,
    path: str,
    host_header: str,
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    body: bytes,
) -> bytes:
    """One request, serialised once (RFC 9112 section 3): the engine sends these bytes verbatim.
    Host and User-Agent are added unless given; Content-Length from the body (0 for an empty
    POST/PUT/PATCH)."""
    lines = [f"{method} {path} HTTP/1.1"]
    names = {n.lower() for n, _ in headers}
    if "host" not in names:
        lines.append(f"Host: {host_header}")
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    for n, v in headers:
        lines.append(f"{n}: {v}")
    if body and "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    elif not body and method in ("POST", "PUT", "PATCH") and "content-length" not in names:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated. The coordinator splits it into per-worker plans."""

    target: Target
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    connections: int = DEFAULT_CONNECTIONS
    max_connections: int = (
        0  # open loop: may grow up to this many when all are busy (0: = connections)
    )
    duration_ns: int = DEFAULT_DURATION_NS  # 0: no time bound (then requests > 0)
    requests: int = 0  # 0: no count bound
    timeout_ns: int = DEFAULT_TIMEOUT_NS
    connect_timeout_ns: int = DEFAULT_CONNECT_TIMEOUT_NS
    rate: float = 0.0  # total req/s; 0 = closed loop (unless stages)
    stages: tuple[Stage, ...] = ()
    arrival: str = "constant"  # or "poisson"
    naps: bool = True  # closed loop: timer naps while they cost nothing (engine/fragments/nap.pxi)
    workers: int = 1
    seed: int = 0
    endpoints: tuple[Endpoint, ...] = ()  # a scenario's mix; (): the one request above
    tags: dict[str, str] = field(default_factory=dict)
    feeders: tuple[Any, ...] = ()  # scenario/template.FeedData the endpoints' templates read
    max_body_for_checks: int = 64 * 1024  # body bytes kept per response for the checks
    transport: Transport = field(default_factory=Transport)
    # a scenario's flows (their request steps are the endpoints); `requests` then bounds
    # iterations, and a rate is iterations per second
    flows: tuple[FlowSpec, ...] = ()
    variables: tuple[str, ...] = ()  # the flows' captured variables, by index

    @property
    def open_loop(self) -> bool:
        return self.rate > 0 or bool(self.stages)

    @property
    def head(self) -> bool:
        return self.method == "HEAD"

    def request_bytes(self) -> bytes:
        """The request, serialised once: the engine sends these bytes verbatim."""
        t = self.target
        return serialize_request(self.method, t.path, t.host_header, self.headers, self.body)


def build_run_config(
    url: str,
    *,
    method: str = "GET",
    headers: list[str] | None = None,
    body: str | None = None,
    body_file: str | None = None,
    connections: int = DEFAULT_CONNECTIONS,
    max_connections: int = 0,
    duration: str | None = None,
    requests: int | None = None,
    timeout: str | None = None,
    connect_timeout: str | None = None,
    rate: float | None = None,
    stages: str | None = None,
    arrival: str = "constant",
    naps: bool = True,
    workers: int = 1,
    default_duration_ns: int = DEFAULT_DURATION_NS,
) -> RunConfig:
    """Turn raw CLI values into a RunConfig, or raise a one-line UsageError/NoLoadError."""
    method = method.upper()
    if not _TOKEN_RE.match(method):
        raise UsageError(f"bad method {method!r}")
    hdrs = tuple(parse_header(h) for h in headers or ())
    if body is not None and body_file is not None:
        raise UsageError("--body and --body-file are mutually exclusive")
    data = b""
    if body is not None:
        data = body.encode("utf-8")
    elif body_file is not None:
        try:
            data = Path(body_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read body file {body_file!r}: {exc.strerror}") from None
    if connections < 1:
        raise UsageError(f"bad --connections {connections}: must be at least 1")
    if connections > MAX_CONNECTIONS:
        raise UsageError(f"bad --connections {connections}: at most {MAX_CONNECTIONS}")
    if max_connections and max_connections < connections:
        raise UsageError(
            f"bad --max-connections {max_connections}: must be at least --connections ({connections})"
        )
    if requests is not None and requests < 1:
        raise UsageError(f"bad --requests {requests}: must be at least 1")
    if workers < 1:
        raise UsageError(f"bad --workers {workers}: must be at least 1")
    if arrival not in ("constant", "poisson"):
        raise UsageError(f"bad --arrival {arrival!r}: expected constant or poisson")
    stage_t: tuple[Stage, ...] = parse_stages(stages) if stages else ()
    r = parse_rate(rate) if rate is not None else 0.0
    if stage_t and r:
        raise UsageError("--rate and --stages are mutually exclusive")
    if stage_t:
        dur_ns = sum(s.duration_ns for s in stage_t)
        if duration is not None:
            raise UsageError(
                "--duration and --stages are mutually exclusive (stages set the duration)"
            )
    elif duration is not None:
        dur_ns = parse_duration(duration)
        if dur_ns <= 0:
            raise UsageError(f"bad --duration {duration!r}: must be positive")
    else:
        dur_ns = 0 if requests else default_duration_ns
    to_ns = parse_duration(timeout, "--timeout") if timeout is not None else DEFAULT_TIMEOUT_NS
    cto_ns = (
        parse_duration(connect_timeout, "--connect-timeout")
        if connect_timeout is not None
        else DEFAULT_CONNECT_TIMEOUT_NS
    )
    if to_ns <= 0:
        raise UsageError(f"bad --timeout {timeout!r}: must be positive")
    if cto_ns <= 0:
        raise UsageError(f"bad --connect-timeout {connect_timeout!r}: must be positive")
    target = parse_url(url)
    return RunConfig(
        target=target,
        method=method,
        headers=hdrs,
        body=data,
        connections=connections,
        max_connections=max_connections,
        duration_ns=dur_ns,
        requests=requests or 0,
        timeout_ns=to_ns,
        connect_timeout_ns=cto_ns,
        rate=r,
        stages=stage_t,
        arrival=arrival,
        naps=naps,
        workers=workers,
    )


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
