"""`barfast run`: check the options, size the run, drive a Coordinator, print the report, exit code.

The CLI (cli.py) parses flags into run_command(); this module decides how many local workers to
start (one per CPU by default, none with --expect-workers alone), refuses what cannot work before
anything starts (bad options, a -o path that cannot be written, too few file descriptors), starts
the embedded target when no URL is given, and turns the merged report into output and an exit code:
0 ok, 2 usage, 3 no load or a worker lost, 99 a threshold failed, 130 interrupted (status.py).
Thresholds (slo/) are resolved against the run before it starts, watched during it when they
abort_on_fail, and evaluated on the merged result at the end.

Why ~590 lines in one module: it is the one path from parsed flags to an exit code (checks,
sizing, the embedded target, thresholds, observers, the report, the outcome), in the order it
runs; the pieces it drives (config.py, fanout/, slo/, report/, metrics/) are apart.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from barfast.config import (
    NS_PER_S,
    RunConfig,
    available_cpus,
    build_run_config,
    build_transport,
    parse_duration,
)
from barfast.fanout.admission import check_bind
from barfast.fanout.coordinator import Coordinator
from barfast.fanout.plan import effective_workers, split_plan
from barfast.report.outputs import Outputs
from barfast.report.progress import Progress, choose_mode
from barfast.result import config_info
from barfast.result.summary import add_worker_info
from barfast.status import ExitCode, NoLoadError, UsageError, WorkerLostError


def _log(msg: str) -> None:
    print(f"barfast: {msg}", file=sys.stderr, flush=True)


def _decide_workers(workers: int | None, expect_workers: int) -> int:
    if expect_workers < 0:
        raise UsageError(f"bad --expect-workers {expect_workers}: must be 0 or more")
    if workers is None:
        return 0 if expect_workers else available_cpus()
    if workers < 1:
        raise UsageError(f"bad --workers {workers}: must be at least 1")
    return workers


def _check_local_fds(cfg: RunConfig, n_total: int, n_local: int) -> None:
    """Local workers inherit our RLIMIT_NOFILE: a plan that cannot fit under its hard limit is a
    usage error now, not a report of workers that each failed with EMFILE. (Each worker raises its
    soft limit to what it needs, up to the hard limit; remote workers check their own.)"""
    import resource

    from barfast.engine._core import FD_HEADROOM  # type: ignore[attr-defined]

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if n_local == 0 or hard == resource.RLIM_INFINITY:
        return
    plans = split_plan(cfg, n_total)
    need = max(max(p.connections, p.max_connections) for p in plans) + FD_HEADROOM
    if need > hard:
        conns = max(cfg.connections, cfg.max_connections)
        raise UsageError(
            f"{conns} connections over {n_total} worker{'s' if n_total > 1 else ''} need {need} "
            f"file descriptors per worker; this machine allows {hard} (raise the hard limit, "
            "ulimit -Hn, or use fewer connections or more workers)"
        )


PLACEHOLDER_URL = "http://127.0.0.1:9/"  # checks options before an embedded target starts


def run_command(
    url: str | None = None,
    *,
    connections: int | None = None,
    duration: str | None = None,
    requests: int | None = None,
    method: str | None = None,
    headers: list[str] | None = None,
    body: str | None = None,
    body_file: str | None = None,
    timeout: str | None = None,
    connect_timeout: str | None = None,
    rate: float | None = None,
    stages: str | None = None,
    arrival: str | None = None,
    max_connections: int | None = None,
    naps: bool = True,
    workers: int | None = None,
    latency: bool = False,
    output: str | None = None,
    json_out: bool = False,
    outputs: Outputs | None = None,
    quiet: bool = False,
    bind: str | None = None,
    expect_workers: int = 0,
    wait_timeout: str = "30s",
    curve_secret: str | None = None,
    curve_clients: str | None = None,
    fail_on_worker_loss: bool = False,
    seed: int | None = None,
    tags: list[str] | None = None,
    scenario: Any = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
    transport: dict[str, Any] | None = None,
    thresholds: list[Any] | None = None,
    junit: str | None = None,
    warmup_s: float = 0.0,
    metrics: dict[str, Any] | None = None,
) -> int:
    """`barfast run`: validate, coordinate local and remote workers, print the report, exit code.
    The Python API (api.py) passes a Scenario object as `scenario` and a `sink` that takes the
    report instead of printing it."""
    from barfast.config import DEFAULT_DURATION_NS, DEFAULT_EMBEDDED_DURATION_NS
    from barfast.serve.embedded import embedded_target

    is_file = (
        url is not None and "://" not in url and url.lower().endswith((".yaml", ".yml", ".py"))
    )
    if scenario is not None or is_file:
        from barfast.scenario.compile import load_options
        from barfast.scenario.load import load_scenario

        if method is not None or headers or body is not None or body_file is not None:
            raise UsageError(
                "-m/-H/--body/--body-file describe a URL's request; a scenario sets its own"
            )
        if scenario is None:
            assert url is not None
            scenario = load_scenario(url)
        url = url if is_file else "scenario"
        load = load_options(
            scenario,
            dict(
                connections=connections,
                max_connections=max_connections,
                duration=duration,
                requests=requests,
                rate=rate,
                stages=stages,
                arrival=arrival,
                timeout=timeout,
                connect_timeout=connect_timeout,
            ),
        )
        connections, max_connections = load.get("connections"), load.get("max_connections")
        duration, requests, rate = load.get("duration"), load.get("requests"), load.get("rate")
        stages, arrival = load.get("stages"), load.get("arrival")
        timeout, connect_timeout = load.get("timeout"), load.get("connect_timeout")
        if workers is None and "workers" in scenario.load:
            workers = int(scenario.load["workers"])
    from barfast.slo.grammar import parse_thresholds

    limits = parse_thresholds(list(scenario.thresholds) if scenario is not None else [])
    limits += parse_thresholds(list(thresholds or []))
    flag_tags = _parse_tags(tags or [])
    if seed is not None and seed < 0:
        raise UsageError(f"bad --seed {seed}: must be >= 0")
    if scenario is not None:  # flags win over the file: the tags are sent by its tag_header too
        scenario = dataclasses.replace(
            scenario,
            tags={**scenario.tags, **flag_tags},
            seed=scenario.seed if seed is None else seed,
        )
    _decide_workers(workers, expect_workers)  # validate -w early
    check_output_path(output)  # fail before the run, not after it
    check_output_path(junit, "JUnit report")
    if junit and not limits:
        raise UsageError("--junit writes one testcase per threshold: add --threshold EXPR")
    outputs = outputs or Outputs()
    outputs.check()
    if expect_workers and not bind:
        raise UsageError("--expect-workers needs --bind tcp://ADDR:PORT for the workers to reach")
    if bind and not expect_workers:
        raise UsageError("--bind is for remote workers: add --expect-workers N")
    if bool(curve_secret) != bool(curve_clients):
        raise UsageError("CURVE needs both --curve-secret (coordinator) and --curve-clients DIR")
    if curve_secret and not bind:
        raise UsageError("--curve-secret/--curve-clients apply to remote workers (--bind)")
    wait_ns = parse_duration(wait_timeout, "--wait-timeout")
    if wait_ns <= 0:
        raise UsageError(f"bad --wait-timeout {wait_timeout!r}: must be positive")
    if bind:
        bind, loopback = check_bind(bind)
        if curve_secret:
            from barfast.fanout.keys import check_clients_dir, load_secret

            load_secret(curve_secret, "--curve-secret")
            check_clients_dir(curve_clients or "")
        elif not loopback:
            _log(
                f"warning: binding {bind} without CURVE: anyone who reaches it can join the run "
                "and see its plan (use --curve-secret and --curve-clients)"
            )
    options: dict[str, Any] = dict(
        method=method or "GET",
        headers=headers or [],
        body=body,
        body_file=body_file,
        connections=50 if connections is None else connections,
        max_connections=max_connections or 0,
        duration=duration,
        requests=requests,
        timeout=timeout,
        connect_timeout=connect_timeout,
        rate=rate,
        stages=stages,
        arrival=arrival or "constant",
        naps=naps,
        default_duration_ns=DEFAULT_EMBEDDED_DURATION_NS if url is None else DEFAULT_DURATION_NS,
    )
    run = dict(
        workers=workers,
        expect_workers=expect_workers,
        bind=bind,
        wait_timeout_s=wait_ns / NS_PER_S,
        curve_secret=curve_secret,
        curve_clients=curve_clients,
        fail_on_worker_loss=fail_on_worker_loss,
        quiet=quiet,
        scenario=scenario,
        seed=seed,
        tags=flag_tags,
        transport=dict(transport or {}),
    )
    run["thresholds"] = limits
    run["metrics"] = _check_metrics(metrics or {})
    run["warmup_s"] = warmup_s
    out = dict(
        latency=latency, output=output, json_out=json_out, sink=sink, junit=junit, outputs=outputs
    )
    if url is None:
        build_run_config(PLACEHOLDER_URL, **options)  # bad options fail before a server starts
        # The embedded target takes the last CPU and pins us to the others, so the default worker
        # count (CPUs we may run on) is decided inside, and local workers inherit the pinning.
        with embedded_target() as served:
            return _run(served, options, run, out, extra={"embedded_target": True})
    return _run(url, options, run, out, extra={})


def _run(
    url: str,
    options: dict[str, Any],
    run: dict[str, Any],
    out: dict[str, Any],
    extra: dict[str, Any],
) -> int:
    expect_workers = int(run["expect_workers"])
    n_local = _decide_workers(run["workers"], expect_workers)
    n_total = n_local + expect_workers
    if run.get("scenario") is not None:
        from barfast.scenario.compile import compile_run

        drop = ("method", "headers", "body", "body_file")
        options = {k: v for k, v in options.items() if k not in drop}
        cfg = compile_run(run["scenario"], workers=n_total, **options)
    else:
        cfg = build_run_config(url, workers=n_total, **options)
        cfg = dataclasses.replace(cfg, tags=dict(run.get("tags") or {}), seed=run.get("seed") or 0)
    cfg = dataclasses.replace(
        cfg, transport=build_transport(cfg.target, **(run.get("transport") or {}))
    )
    usable = effective_workers(cfg, n_total)
    if usable < n_total:
        if expect_workers > usable:
            raise UsageError(
                f"this run can use only {usable} workers (each needs a connection and, with "
                f"-n, a request) but --expect-workers is {expect_workers}"
            )
        n_local = usable - expect_workers  # e.g. the default -w (CPUs) with -c 1: fewer workers
        n_total = usable
    cfg = dataclasses.replace(cfg, workers=n_total)
    _check_local_fds(cfg, n_total, n_local)
    plan = _threshold_plan(run.get("thresholds") or [], cfg, run.get("scenario"))
    watch = None
    baseline: dict[int, Any] = {}
    on_tick = None
    if plan is not None:
        from barfast.slo.watch import Watch

        watch = Watch(plan)
        on_tick = _ticker(plan, watch, float(run.get("warmup_s") or 0.0), baseline)
    live, scraper = _observers(run["metrics"])
    started = time.time()
    coord = Coordinator(
        cfg,
        local_workers=n_local,
        expect_workers=expect_workers,
        bind=run["bind"],
        wait_timeout_s=run["wait_timeout_s"],
        curve_secret=run["curve_secret"],
        curve_clients=run["curve_clients"],
        fail_on_worker_loss=run["fail_on_worker_loss"],
        progress=Progress(choose_mode(run["quiet"])),
        on_tick=on_tick,
        observers=[o for o in (live, scraper) if o is not None],
    )
    coord.report_info = _report_info(cfg, coord.n_total, plan, extra)
    from barfast.result.meta import run_meta

    # where and when: the report's `meta`, and its start time for interval logs (report/hlog.py)
    coord.report_meta = {**run_meta(started), "started_unix_s": round(started, 3)}
    old_int = signal.signal(signal.SIGINT, coord.request_interrupt)
    old_term = signal.signal(signal.SIGTERM, coord.request_interrupt)
    try:
        try:
            try:
                coord.run()
            finally:
                coord.close()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
        if scraper is not None:
            scraper.stop()  # already, unless the run failed before its start
            out = {**out, "target_metrics": scraper.result()}
        return _report(
            coord, cfg, extra=extra, plan=plan, watch=watch, started=started, baseline=baseline,
            **out,
        )  # fmt: skip
    finally:
        if live is not None:
            live.close()


def _check_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """--metrics-addr/--metrics-linger/--metrics-url/--metrics-match checked before the run."""
    from barfast.metrics.scrape import check_urls

    out: dict[str, Any] = {"addr": None, "linger_s": 0.0, "urls": list(m.get("urls") or [])}
    out["match"] = check_urls(out["urls"], m.get("match"))
    if m.get("addr"):
        from barfast.metrics.exporter import parse_metrics_addr

        out["addr"] = parse_metrics_addr(str(m["addr"]), "--metrics-addr")
    linger = m.get("linger") or "0s"
    linger_ns = parse_duration(str(linger), "--metrics-linger")
    if linger_ns < 0 or linger_ns > 3600 * NS_PER_S:
        raise UsageError(f"bad --metrics-linger {linger!r}: must be within 0s..1h")
    if linger_ns and not out["addr"]:
        raise UsageError("--metrics-linger keeps --metrics-addr's page up: add --metrics-addr")
    out["linger_s"] = linger_ns / NS_PER_S
    return out


def _observers(m: dict[str, Any]) -> tuple[Any, Any]:
    """The live /metrics page (listening now: a bad address fails before any load) and the
    target scraper, each None when not asked for."""
    live = scraper = None
    if m.get("addr"):
        from barfast.metrics.live import LiveMetrics

        host, port = m["addr"]
        live = LiveMetrics(host, port, m["linger_s"])
        _log(f"metrics at {live.url}")
    if m.get("urls"):
        from barfast.metrics.scrape import Scraper

        scraper = Scraper(m["urls"], m["match"])
    return live, scraper


def _ticker(plan: Any, watch: Any, warmup_s: float, baseline: dict[int, Any]) -> Any:
    """The coordinator's once-a-second call: abort_on_fail windows, and with a warm-up (barfast
    search's trials) the merged state at its end, which the final evaluation subtracts."""
    from barfast.slo.figures import cumulative, sparse

    def tick(m: Any, elapsed_s: float) -> str | None:
        if warmup_s and not baseline and elapsed_s >= warmup_s and m.workers:
            for i in range(len(plan.thresholds)):
                baseline[i] = sparse(
                    cumulative(
                        m, plan.scopes[i], plan.views(i), plan.checked, plan.main_view,
                        plan.endpoint_count,
                    )
                )  # fmt: skip
        return watch.tick(m, elapsed_s) if watch else None

    return tick


def _report_info(cfg: RunConfig, n_total: int, plan: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """The report's `config`: the run's settings, the caller's extras, the thresholds' texts."""
    info = config_info(cfg, n_total)
    info.update(extra)
    if plan is not None:
        info["thresholds"] = [t.text for t in plan.thresholds]
    return info


def _threshold_plan(limits: list[Any], cfg: RunConfig, scenario: Any) -> Any:
    """The thresholds' scopes resolved against this run (a usage error now, not after it)."""
    if not limits:
        return None
    from barfast.slo.evaluate import Endpoint, resolve

    tags: dict[str, dict[str, str]] = {}
    if scenario is not None:
        tags = {r.name: dict(r.tags) for r in scenario.requests}
        for f in scenario.flows:  # a flow's steps are endpoints named FLOW.STEP
            tags.update({f"{f.name}.{r.name}": dict(r.tags) for r in f.requests()})
    endpoints = [Endpoint(e.name, tags.get(e.name, {}), bool(e.checks)) for e in cfg.endpoints]
    return resolve(limits, endpoints, dict(cfg.tags), cfg.open_loop, scenario is not None)


def _thresholds(
    coord: Coordinator, plan: Any, watch: Any, baseline: dict[int, Any] | None = None
) -> list[dict[str, Any]]:
    """Every threshold evaluated on the merged result (all workers, local and remote); with a
    warm-up baseline, on what was merged after it."""
    from barfast.slo.evaluate import evaluate
    from barfast.slo.figures import cumulative

    m = coord.merger
    figs = [
        cumulative(
            m, plan.scopes[i], plan.views(i), plan.checked, plan.main_view, plan.endpoint_count
        )
        for i in range(len(plan.thresholds))
    ]
    return evaluate(plan, figs, m.hists["latency"], watch.aborted if watch else None)


def _report(
    coord: Coordinator,
    cfg: RunConfig,
    *,
    plan: Any = None,
    watch: Any = None,
    started: float | None = None,
    baseline: dict[int, Any] | None = None,
    junit: str | None = None,
    latency: bool,
    output: str | None,
    json_out: bool,
    extra: dict[str, Any],
    sink: Callable[[dict[str, Any]], None] | None = None,
    outputs: Outputs | None = None,
    target_metrics: dict[str, Any] | None = None,
) -> int:
    from barfast.report import json as report_json
    from barfast.result.meta import run_meta

    rep = coord.merger.report(coord.report_info or _report_info(cfg, coord.n_total, plan, extra))
    rep["meta"] = coord.report_meta or run_meta(time.time() if started is None else started)
    if "started_unix_s" in rep["meta"]:
        rep["started_unix_s"] = rep["meta"]["started_unix_s"]
    add_worker_info(rep, coord.workers_info(), {p.index for p in coord.lost})
    rep["interrupted"] = bool(coord.interrupted or rep.get("interrupted"))
    if target_metrics is not None:
        rep["target_metrics"] = target_metrics
    if coord.failed:
        rep["workers_failed"] = [
            {"worker": p.index if p else None, "reason": reason} for p, reason, _ in coord.failed
        ]
    if plan is not None and coord.merger is not None:
        rep["thresholds"] = _thresholds(coord, plan, watch, baseline)
        if coord.aborted:
            rep["aborted"] = coord.aborted
    code, reason = outcome(rep, coord.interrupted)
    if junit and "thresholds" in rep:
        from barfast.report import junit as report_junit

        report_junit.write(rep, junit)
    if code == ExitCode.NO_LOAD and not coord.lost:
        if output:  # the record of a failed run is still worth keeping
            report_json.write(rep, output)
        raise NoLoadError(reason or "no load could be generated")
    if code == ExitCode.OK and any(not r["passed"] for r in rep.get("thresholds", [])):
        code = ExitCode.THRESHOLDS_FAILED
    if sink is not None:
        rep["exit_code"] = int(_exit_code(coord, code))
        sink(rep)
        if output:
            report_json.write(rep, output)
    else:
        emit(rep, latency=latency, json_out=json_out, output=output)
    if outputs is not None:
        outputs.write(rep)
    if coord.interrupted:
        _log("interrupted: the report above is partial")
    elif coord.lost:
        names = ", ".join(p.describe() for p in coord.lost)
        _log(f"worker lost: {names}; its data up to its last snapshot is in the report (exit 3)")
    elif code == ExitCode.THRESHOLDS_FAILED and sink is None:  # API callers read Result
        bad = [r["threshold"] for r in rep["thresholds"] if not r["passed"]]
        _log(f"threshold{'s' if len(bad) > 1 else ''} failed: {', '.join(bad)} (exit 99)")
    return _exit_code(coord, code)


def _parse_tags(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"bad --tag {it!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def _exit_code(coord: Coordinator, code: ExitCode) -> int:
    if coord.interrupted:
        return int(ExitCode.INTERRUPTED)
    if coord.lost:
        return int(WorkerLostError.exit_code)
    if coord.failed:
        return max(c for _, _, c in coord.failed)
    return int(code)


# --- outcome and output ---------------------------------------------------------------------
def no_load_reason(report: dict[str, Any]) -> str | None:
    """The reason no load could be generated, or None: nothing completed and connects failed."""
    req = report.get("requests", {})
    errors = report.get("errors", {})
    if req.get("completed", 0) or not (errors.get("connect") or errors.get("tls")):
        return None
    target = report.get("config", {}).get("target", {})
    where = target.get("unix_socket") or f"{target.get('addr', '?')}:{target.get('port', '?')}"
    detail = report.get("errors_errno", {}).get("connect", {})
    why = [f"{_errno_text(name)} x{n}" for name, n in detail.items()]
    if errors.get("tls"):
        tls = report.get("tls", {})
        fails = tls.get("failures") or {tls.get("failure") or "TLS handshake failed": errors["tls"]}
        why += [f"{reason} x{n}" for reason, n in fails.items()]
    return f"no load could be generated: every connection to {where} failed ({', '.join(why) or 'connect failed'})"


def _errno_text(name: str) -> str:
    import errno as _errno

    code = getattr(_errno, name, None)
    return f"{os.strerror(code).lower()} ({name})" if isinstance(code, int) else name


def outcome(report: dict[str, Any], interrupted: bool) -> tuple[ExitCode, str | None]:
    """Exit code for a finished run: 130 interrupted, 3 no load (with reason), else 0."""
    if interrupted:
        return ExitCode.INTERRUPTED, None
    reason = no_load_reason(report)
    if reason:
        return ExitCode.NO_LOAD, reason
    return ExitCode.OK, None


def emit(
    report: dict[str, Any],
    *,
    latency: bool = False,
    json_out: bool = False,
    output: str | None = None,
) -> None:
    """Print the report (text, or JSON with json_out) and write the JSON to `output` if given."""
    from barfast.report import json as report_json

    # Print first: if the file cannot be written, the run's result is still on the screen.
    if json_out:
        sys.stdout.write(report_json.dumps(report))
    else:
        from barfast.report.text import render

        sys.stdout.write(render(report, latency=latency))
    sys.stdout.flush()
    if output:
        report_json.write(report, output)


def check_output_path(output: str | None, what: str = "report") -> None:
    """Fail before the run (exit 2) when the -o (or --junit) file could not be written afterwards."""
    if not output:
        return
    parent = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise UsageError(f"cannot write {what} to {output!r}: it is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {what} to {output!r}: no directory {parent!r}")
    if not os.access(parent, os.W_OK) or (
        os.path.exists(output) and not os.access(output, os.W_OK)
    ):
        raise UsageError(f"cannot write {what} to {output!r}: permission denied")


__all__ = ["check_output_path", "emit", "no_load_reason", "outcome", "run_command"]
