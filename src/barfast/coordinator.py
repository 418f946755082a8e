"""TEMPORARY single-process `barfast run` (agg). The fan-out helper replaces this file with the
multi-worker coordinator; the logic lives in local.py, runner.py, result.py and report/ so it is
reused, and this module only wires the CLI's options to them.
"""

from __future__ import annotations

import sys
from typing import Any

from barfast.config import DEFAULT_DURATION_NS, DEFAULT_EMBEDDED_DURATION_NS, build_run_config
from barfast.local import check_output_path, embedded_target, emit, outcome, run_local
from barfast.status import ExitCode, NoLoadError

PLACEHOLDER_URL = "http://127.0.0.1:9/"


def run_command(
    *,
    url: str | None = None,
    connections: int = 50,
    duration: str | None = None,
    requests: int | None = None,
    method: str = "GET",
    headers: list[str] | None = None,
    body: str | None = None,
    body_file: str | None = None,
    timeout: str | None = None,
    connect_timeout: str | None = None,
    rate: float | None = None,
    stages: str | None = None,
    arrival: str = "constant",
    max_connections: int = 0,
    workers: int | None = None,
    latency: bool = False,
    output: str | None = None,
    json_out: bool = False,
    quiet: bool = False,
    **_ignored: Any,
) -> int:
    """`barfast run`: validate, run one engine in this process, print the report, return the code."""
    options: dict[str, Any] = dict(
        method=method,
        headers=headers or [],
        body=body,
        body_file=body_file,
        connections=connections,
        max_connections=max_connections,
        duration=duration,
        requests=requests,
        timeout=timeout,
        connect_timeout=connect_timeout,
        rate=rate,
        stages=stages,
        arrival=arrival,
        workers=1,  # single process for now; the fan-out coordinator honours -w
        default_duration_ns=DEFAULT_EMBEDDED_DURATION_NS if url is None else DEFAULT_DURATION_NS,
    )
    check_output_path(output)
    if url is None:
        build_run_config(PLACEHOLDER_URL, **options)  # bad options fail before a server starts
        with embedded_target() as served:
            cfg = build_run_config(served, **options)
            result = run_local(cfg, extra_config={"embedded_target": True})
    else:
        cfg = build_run_config(url, **options)
        result = run_local(cfg)
    code, reason = outcome(result.report, result.interrupted)
    if code == ExitCode.NO_LOAD:
        if output:  # the record of a failed run is still worth keeping
            _write(result.report, output)
        raise NoLoadError(reason or "no load could be generated")
    emit(result.report, latency=latency, json_out=json_out, output=output)
    if code == ExitCode.INTERRUPTED:
        print("barfast: interrupted: the report above is partial", file=sys.stderr)
    return int(code)


def _write(report: dict[str, Any], path: str) -> None:
    from barfast.report import json as report_json

    report_json.write(report, path)
