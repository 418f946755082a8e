"""`barfast run`: check the options, size the run, drive a Coordinator, print the report, exit code.

The CLI (cli.py) parses flags into run_command(); this module decides how many local workers to
start (one per CPU by default, none with --expect-workers alone), refuses what cannot work before
anything starts (bad options, a -o path that cannot be written, too few file descriptors), starts
the embedded target when no URL is given, and turns the merged report into output and an exit code:
0 ok, 2 usage, 3 no load or a worker lost, 130 interrupted (status.py).
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
    parse_duration,
)
from barfast.fanout.admission import check_bind
from barfast.fanout.coordinator import Coordinator
from barfast.fanout.plan import effective_workers, split_plan
from barfast.report.outputs import Outputs
from barfast.report.progress import Progress, choose_mode
from barfast.result import config_info
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
    )
    out = dict(latency=latency, output=output, json_out=json_out, sink=sink, outputs=outputs)
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
    )
    extra = {**extra, "started_unix_s": round(time.time(), 3)}
    old_int = signal.signal(signal.SIGINT, coord.request_interrupt)
    old_term = signal.signal(signal.SIGTERM, coord.request_interrupt)
    try:
        try:
            coord.run()
        finally:
            coord.close()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    return _report(coord, cfg, extra=extra, **out)


def _report(
    coord: Coordinator,
    cfg: RunConfig,
    *,
    latency: bool,
    output: str | None,
    json_out: bool,
    extra: dict[str, Any],
    sink: Callable[[dict[str, Any]], None] | None = None,
    outputs: Outputs | None = None,
) -> int:
    from barfast.report import json as report_json

    info = config_info(cfg, coord.n_total)
    extra = dict(extra)
    started = extra.pop("started_unix_s", None)
    info.update(extra)
    rep = coord.merger.report(info)
    if started is not None:
        rep["started_unix_s"] = started
    # The Merger's per-worker rows (totals) get where each worker ran and how it ended.
    extra_rows = {w["worker"]: w for w in coord.workers_info()}
    rows = rep.setdefault("workers", [])
    for row in rows:
        more = extra_rows.pop(row.get("worker"), None)
        if more:
            row.update({k: v for k, v in more.items() if k not in row or k in ("lost", "state")})
    rows.extend(extra_rows.values())  # workers that never sent a snapshot
    rows.sort(key=lambda r: r.get("worker", 0))
    rep["workers_lost"] = sorted({p.index for p in coord.lost} | set(rep.get("workers_lost", [])))
    rep["interrupted"] = bool(coord.interrupted or rep.get("interrupted"))
    if coord.failed:
        rep["workers_failed"] = [
            {"worker": p.index if p else None, "reason": reason} for p, reason, _ in coord.failed
        ]
    code, reason = outcome(rep, coord.interrupted)
    if code == ExitCode.NO_LOAD and not coord.lost:
        if output:  # the record of a failed run is still worth keeping
            report_json.write(rep, output)
        raise NoLoadError(reason or "no load could be generated")
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
    if req.get("completed", 0) or not errors.get("connect"):
        return None
    target = report.get("config", {}).get("target", {})
    where = f"{target.get('addr', '?')}:{target.get('port', '?')}"
    detail = report.get("errors_errno", {}).get("connect", {})
    why = ", ".join(f"{_errno_text(name)} x{n}" for name, n in detail.items()) or "connect failed"
    return f"no load could be generated: every connection to {where} failed ({why})"


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


def check_output_path(output: str | None) -> None:
    """Fail before the run (exit 2) when the -o file could not be written afterwards."""
    if not output:
        return
    parent = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise UsageError(f"cannot write report to {output!r}: it is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write report to {output!r}: no directory {parent!r}")
    if not os.access(parent, os.W_OK) or (
        os.path.exists(output) and not os.access(output, os.W_OK)
    ):
        raise UsageError(f"cannot write report to {output!r}: permission denied")


__all__ = ["check_output_path", "emit", "no_load_reason", "outcome", "run_command"]
