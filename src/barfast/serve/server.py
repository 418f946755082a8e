"""`barfast serve`: parse and validate the options, then run the native `barfast.engine._core.Server`.

Validate in Python, trust in C: every option is checked here once with a one-line `UsageError`.
The server's loop runs without the GIL in a background thread; the main thread only waits, so the
SIGINT/SIGTERM handlers (which Python runs on the main thread) can call `server.stop()` at once.

Option syntax (also in `barfast serve --help`):
  --addr HOST:PORT      IPv4/IPv6 literal (IPv6 in brackets: [::1]:8080) or a name; ":PORT" = all
                        IPv4 interfaces; port 0 = any free port (the listening line says which).
  --delay 2ms           fixed delay before each response (from the moment the request is complete).
  --delay-dist D        random delay added to --delay: "uniform:LO-HI" (e.g. uniform:1ms-3ms) or
                        "exp:MEAN" (exponential with that mean, e.g. exp:2ms).
  --stall S/P           the whole server freezes for S at the END of every period P (500ms/2s: it
                        serves for 1.5 s, then nothing is accepted, read or written for 0.5 s);
                        periods count from the start. A request arriving during a stall is answered
                        right after it, so its latency is the remaining stall.
  --status-mix M        "200:95,500:5": weighted statuses (CODE alone = weight 1), chosen by a seeded
                        RNG (deterministic for a given request order).
  --close-every N       close each connection after its Nth response (which carries
                        "Connection: close").
  --max-concurrency N   at most N requests in service at once (needs a fixed --delay, no
                        --delay-dist): the others queue in arrival order, so the server's
                        capacity is N / delay (a known knee for `barfast search`).
  --tls-cert F --tls-key F
                        serve HTTPS (the same core, OpenSSL; session tickets on); the key may be
                        in the certificate file. --no-tls-resume: no tickets, no session cache,
                        so every client's every handshake is a full one.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from types import FrameType

from barfast.config import NS_PER_S, parse_duration
from barfast.status import ExitCode, UsageError

MAX_BODY_SIZE = 1 << 30
MAX_STATUSES = 16
MAX_DELAY_NS = 3600 * NS_PER_S


@dataclass(frozen=True)
class ServeConfig:
    """Validated `barfast serve` options, in the native Server's units (ns, ints)."""

    host: str  # numeric IPv4 or IPv6 address
    port: int
    body_size: int = 12
    delay_ns: int = 0
    delay_dist: int = 0  # 0 none, 1 uniform, 2 exponential
    delay_a_ns: int = 0
    delay_b_ns: int = 0
    stall_ns: int = 0
    stall_every_ns: int = 0
    statuses: tuple[tuple[int, int], ...] = ((200, 1),)
    close_every: int = 0
    duration_ns: int = 0
    seed: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    tls_resume: bool = True
    max_concurrency: int = 0
    sessions: bool = False  # POST /login issues tokens; other routes need one (flows' target)

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port if port is None else port}/"


def parse_addr(text: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:0', ':8080' (all IPv4 interfaces), 'localhost:8080' -> (numeric host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"bad --addr {text!r}: expected [IPV6]:PORT, e.g. [::1]:8080")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep:
            raise UsageError(f"bad --addr {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        if ":" in host:
            raise UsageError(
                f"bad --addr {text!r}: put an IPv6 address in brackets, e.g. [::1]:8080"
            )
        host = host or "0.0.0.0"
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise UsageError(f"bad --addr {text!r}: port must be a number within 0..65535")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"bad --addr {text!r}: cannot resolve {host!r}: {reason}") from None
        infos.sort(key=lambda i: 0 if i[0] == socket.AF_INET else 1)
        host = str(infos[0][4][0])
    return host, int(port_s)


def parse_delay_dist(text: str) -> tuple[int, int, int]:
    """'uniform:1ms-3ms' -> (1, lo_ns, hi_ns); 'exp:2ms' -> (2, mean_ns, 0)."""
    kind, sep, arg = text.strip().partition(":")
    kind = kind.lower()
    if sep and kind == "uniform":
        lo_s, dash, hi_s = arg.partition("-")
        if not dash:
            raise UsageError(
                f"bad --delay-dist {text!r}: expected uniform:LO-HI, e.g. uniform:1ms-3ms"
            )
        lo = parse_duration(lo_s, "--delay-dist low bound")
        hi = parse_duration(hi_s, "--delay-dist high bound")
        if lo > hi:
            raise UsageError(f"bad --delay-dist {text!r}: the low bound is above the high bound")
        if hi > MAX_DELAY_NS:
            raise UsageError(f"bad --delay-dist {text!r}: at most 1h")
        return 1, lo, hi
    if sep and kind in ("exp", "exponential"):
        mean = parse_duration(arg, "--delay-dist mean")
        if mean <= 0:
            raise UsageError(f"bad --delay-dist {text!r}: the mean must be positive")
        if mean > MAX_DELAY_NS:
            raise UsageError(f"bad --delay-dist {text!r}: at most 1h")
        return 2, mean, 0
    raise UsageError(f"bad --delay-dist {text!r}: expected uniform:LO-HI or exp:MEAN, e.g. exp:2ms")


def parse_stall(text: str) -> tuple[int, int]:
    """'500ms/2s' -> (stall_ns, every_ns) with 0 < stall < every."""
    stall_s, sep, every_s = text.partition("/")
    if not sep:
        raise UsageError(f"bad --stall {text!r}: expected STALL/PERIOD, e.g. 500ms/2s")
    stall = parse_duration(stall_s, "--stall duration")
    every = parse_duration(every_s, "--stall period")
    if stall <= 0 or stall >= every:
        raise UsageError(f"bad --stall {text!r}: need 0 < stall < period")
    return stall, every


def parse_status_mix(text: str) -> tuple[tuple[int, int], ...]:
    """'200:95,500:5' -> ((200, 95), (500, 5)); 'CODE' alone has weight 1."""
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        code_s, sep, weight_s = part.strip().partition(":")
        if not code_s.strip().isdigit() or (sep and not weight_s.strip().isdigit()):
            raise UsageError(
                f"bad --status-mix {text!r}: expected CODE:WEIGHT,..., e.g. 200:95,500:5"
            )
        code, weight = int(code_s), int(weight_s) if sep else 1
        if not 200 <= code <= 599:
            raise UsageError(f"bad --status-mix {text!r}: status {code} is not within 200..599")
        if weight <= 0:
            raise UsageError(f"bad --status-mix {text!r}: weight of {code} must be positive")
        if any(c == code for c, _ in out):
            raise UsageError(f"bad --status-mix {text!r}: status {code} appears twice")
        out.append((code, weight))
    if len(out) > MAX_STATUSES:
        raise UsageError(f"bad --status-mix {text!r}: at most {MAX_STATUSES} statuses")
    return tuple(out)


def build_serve_config(
    addr: str,
    body_size: int = 12,
    delay: str | None = None,
    delay_dist: str | None = None,
    stall: str | None = None,
    status_mix: str | None = None,
    close_every: int = 0,
    duration: str | None = None,
    seed: int = 0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_resume: bool = True,
    max_concurrency: int = 0,
    sessions: bool = False,
) -> ServeConfig:
    host, port = parse_addr(addr)
    if not 0 <= body_size <= MAX_BODY_SIZE:
        raise UsageError(f"bad --body-size {body_size}: must be within 0..{MAX_BODY_SIZE}")
    delay_ns = parse_duration(delay, "--delay") if delay is not None else 0
    if delay_ns > MAX_DELAY_NS:
        raise UsageError(f"bad --delay {delay!r}: at most 1h")
    dist, a_ns, b_ns = parse_delay_dist(delay_dist) if delay_dist is not None else (0, 0, 0)
    stall_ns, every_ns = parse_stall(stall) if stall is not None else (0, 0)
    statuses = parse_status_mix(status_mix) if status_mix is not None else ((200, 1),)
    if close_every < 0:
        raise UsageError(f"bad --close-every {close_every}: must be 0 (never) or positive")
    if tls_key and not tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    if not tls_resume and not tls_cert:
        raise UsageError("--no-tls-resume needs --tls-cert")
    if not 0 <= max_concurrency <= 1 << 24:
        raise UsageError(f"bad --max-concurrency {max_concurrency}: must be within 0..16777216")
    if max_concurrency and (delay_ns <= 0 or dist):
        raise UsageError("--max-concurrency needs a fixed --delay (and no --delay-dist)")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise UsageError(f"cannot read {flag} file {path!r}: {exc.strerror}") from None
    duration_ns = 0
    if duration is not None:
        duration_ns = parse_duration(duration)
        if duration_ns <= 0:
            raise UsageError(f"bad --duration {duration!r}: must be positive")
    return ServeConfig(
        host=host,
        port=port,
        body_size=body_size,
        delay_ns=delay_ns,
        delay_dist=dist,
        delay_a_ns=a_ns,
        delay_b_ns=b_ns,
        stall_ns=stall_ns,
        stall_every_ns=every_ns,
        statuses=statuses,
        close_every=close_every,
        duration_ns=duration_ns,
        seed=seed,
        tls_cert=tls_cert or "",
        tls_key=tls_key or "",
        tls_resume=tls_resume,
        max_concurrency=max_concurrency,
        sessions=sessions,
    )


def make_server(cfg: ServeConfig):  # -> barfast.engine._core.Server
    """Bind the native server; bind failures become one-line UsageErrors (exit 2)."""
    from barfast.engine._core import Server

    try:
        return Server(
            cfg.host,
            cfg.port,
            body_size=cfg.body_size,
            delay_ns=cfg.delay_ns,
            delay_dist=cfg.delay_dist,
            delay_a_ns=cfg.delay_a_ns,
            delay_b_ns=cfg.delay_b_ns,
            stall_ns=cfg.stall_ns,
            stall_every_ns=cfg.stall_every_ns,
            statuses=list(cfg.statuses),
            close_every=cfg.close_every,
            seed=cfg.seed,
            tls_cert=cfg.tls_cert,
            tls_key=cfg.tls_key,
            tls_resume=cfg.tls_resume,
            max_concurrency=cfg.max_concurrency,
            sessions=cfg.sessions,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {cfg.url()}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"cannot listen on {cfg.url()}: {exc}") from None


def serve_command(
    addr: str,
    body_size: int = 12,
    delay: str | None = None,
    delay_dist: str | None = None,
    stall: str | None = None,
    status_mix: str | None = None,
    close_every: int = 0,
    duration: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_resume: bool = True,
    max_concurrency: int = 0,
    sessions: bool = False,
    metrics: str | None = None,
) -> int:
    """Serve until --duration elapses or SIGINT/SIGTERM arrives; both end cleanly with exit code 0."""
    cfg = build_serve_config(
        addr,
        body_size,
        delay,
        delay_dist,
        stall,
        status_mix,
        close_every,
        duration,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_resume=tls_resume,
        max_concurrency=max_concurrency,
        sessions=sessions,
    )
    metrics_addr = None
    if metrics is not None:
        from barfast.metrics.exporter import parse_metrics_addr

        metrics_addr = parse_metrics_addr(metrics, "--metrics")
    server = make_server(cfg)
    exporter = None
    if metrics_addr is not None:
        from barfast.metrics.exporter import Exporter
        from barfast.metrics.serve import ServeCollector

        try:
            exporter = Exporter(ServeCollector(server, cfg), *metrics_addr, "--metrics")
        except UsageError:
            server.close()
            raise
    failure: list[BaseException] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    def _run() -> None:
        try:
            server.run(cfg.duration_ns)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    # Handlers first, then the listening line: a signal sent by whoever read the line is never lost.
    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if exporter is not None:
            print(f"barfast serve: metrics at {exporter.url}", flush=True)
        print(f"barfast serve: listening on {cfg.url(server.port)}", flush=True)
        thread = threading.Thread(target=_run, name="barfast-serve", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)  # short waits: Python runs signal handlers on this thread in between
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    c = server.counters()
    if exporter is not None:
        exporter.close()  # before close(): a scrape reads the server's counters
    server.close()
    if failure:
        raise failure[0]
    late = ""
    if c["delayed"]:
        late = (
            f", delay timer late by {c['late_ns_sum'] / c['delayed'] / 1000:.0f} us on average"
            f" (max {c['late_ns_max'] / 1000:.0f} us)"
        )
    print(
        f"barfast serve: {c['requests']} requests, {c['responses']} responses, "
        f"{c['connections_accepted']} connections, {c['bad_requests']} bad requests{late}"
        + (
            f", {c['tls_handshakes']} TLS handshakes ({c['tls_resumed']} resumed, "
            f"{c['tls_failures']} failed)"
            if cfg.tls_cert
            else ""
        )
        + (
            f", {c['logins']} logins, {c['authorized']} authorized, {c['rejected']} rejected"
            if cfg.sessions
            else ""
        ),
        file=sys.stderr,
    )
    return int(ExitCode.OK)


class BackgroundServer:
    """The native Server on a free loopback port, its loop in a daemon thread: for `barfast run`
    without a URL, benchmarks and tests. Use as a context manager; `url` is ready on entry.

        with BackgroundServer() as target:
            run_against(target.url)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kw: object) -> None:
        from barfast.engine._core import Server

        self.server = Server(host, port, **kw)  # type: ignore[arg-type]
        bracket = f"[{host}]" if ":" in host else host
        self.url = f"http://{bracket}:{self.server.port}/"
        self._thread = threading.Thread(target=self.server.run, name="barfast-serve", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, wait for it, close every socket. Idempotent."""
        if self._thread.is_alive():
            self.server.stop()
            self._thread.join()
        self.server.close()  # idempotent

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
