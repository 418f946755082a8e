"""Single-process runs and the pieces every coordinator shares: embedded target, Ctrl-C, exit codes.

- `run_local(cfg)`: one EngineRunner in this process, snapshots into a Merger, the report dict.
- `embedded_target()`: `barfast run` with no URL starts `python -m barfast serve --addr 127.0.0.1:0`
  as a subprocess in its own session (so a terminal Ctrl-C reaches only us, and we stop it last),
  pinned to the last CPU when there are >= 2 (the generator keeps the others), and terminates it
  afterwards, also on errors and Ctrl-C.
- `outcome(report)`: the exit code and, for "no load could be generated", the one-line reason.
- `emit(report, ...)`: text or JSON to stdout, JSON to a file. Rendering stays in barfast.report.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from barfast.config import RunConfig, available_cpus
from barfast.plan import split_plan
from barfast.result import Merger, config_info
from barfast.runner import EngineFactory, EngineRunner, Snapshot
from barfast.status import ExitCode, NoLoadError, UsageError

SERVE_START_TIMEOUT_S = 10.0
SERVE_STOP_TIMEOUT_S = 5.0
LISTENING_PREFIX = "barfast serve: listening on "


@dataclass
class LocalRun:
    report: dict[str, Any]
    interrupted: bool
    merger: Merger


@contextlib.contextmanager
def sigint_calls(action: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGINT (Ctrl-C) and SIGTERM call `action` instead of ending the process.

    The engine then stops cleanly, the ring is drained, and the final snapshot is complete: a
    KeyboardInterrupt raised at an arbitrary bytecode could split a batch between aggregator and ring.
    Outside the main thread signals cannot be handled; then this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        action()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def run_local(
    cfg: RunConfig,
    *,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    extra_config: dict[str, Any] | None = None,
    engine_factory: EngineFactory | None = None,
) -> LocalRun:
    """Run cfg in this process with one engine; Ctrl-C gives a partial (interrupted) report.
    `engine_factory` (benchmarks) builds the engine instead of runner.default_engine."""
    plan = split_plan(cfg, 1)[0]
    merger = Merger()

    def snap(s: Snapshot) -> None:
        merger.add(s)
        if on_snapshot is not None:
            on_snapshot(s)

    runner = EngineRunner(plan, snap, engine_factory=engine_factory)
    with sigint_calls(runner.interrupt):
        runner.run()
    info = config_info(cfg, workers=1)
    if extra_config:
        info.update(extra_config)
    return LocalRun(merger.report(info), runner.interrupted, merger)


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


# -- the embedded target ----------------------------------------------------------------------


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, generator CPUs): the last CPU for the server when >= 2 are available."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


class EmbeddedTarget:
    """A running `barfast serve` subprocess on a free loopback port (see embedded_target())."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, old_affinity: set[int] | None):
        self.proc = proc
        self.url = url
        self.pid = proc.pid
        self._old_affinity = old_affinity

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after SERVE_STOP_TIMEOUT_S) and give this
        thread its CPUs back. Idempotent."""
        _stop(self.proc)
        if self._old_affinity is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self._old_affinity)
            self._old_affinity = None


def start_embedded_target(args: tuple[str, ...] = (), pin: bool = True) -> EmbeddedTarget:
    """Start `python -m barfast serve --addr 127.0.0.1:0 [args]` and wait for its listening line.

    With pin and >= 2 CPUs the server gets the last CPU and this thread the others; processes and
    threads started afterwards (workers, the engine thread) inherit that. Call .stop() when done.
    """
    server_cpus, gen_cpus = split_cpus() if pin else (None, None)
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "barfast", "serve", "--addr", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errf,
            start_new_session=True,  # our Ctrl-C is not its Ctrl-C: we stop it when we are done
            preexec_fn=_die_with_parent,
        )
        try:
            if server_cpus:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(proc.pid, server_cpus)
            url = _read_listening_line(proc, errf)
        except BaseException:
            _stop(proc)
            raise
    old = None
    if gen_cpus:
        with contextlib.suppress(OSError):
            old = os.sched_getaffinity(0)
            os.sched_setaffinity(0, gen_cpus)
    return EmbeddedTarget(proc, url, old)


@contextlib.contextmanager
def embedded_target(args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start the embedded target, yield its URL, and always stop it afterwards."""
    target = start_embedded_target(args)
    try:
        yield target.url
    finally:
        target.stop()


def _die_with_parent() -> None:
    """In the server child: SIGTERM when our process dies, even by SIGKILL (prctl(2),
    PR_SET_PDEATHSIG), so an embedded target is never left running without its load generator."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _read_listening_line(proc: subprocess.Popen[bytes], errf: Any) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoLoadError(
                f"the embedded target did not start within {SERVE_START_TIMEOUT_S:g}s"
            )
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        elif proc.poll() is not None:
            break
    line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line.startswith(LISTENING_PREFIX):
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1)
        errf.seek(0)
        err = errf.read().decode("utf-8", "replace").strip().splitlines()
        why = err[-1] if err else (line or f"exit status {proc.returncode}")
        raise NoLoadError(f"the embedded target did not start: {why}")
    return line[len(LISTENING_PREFIX) :].strip()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(SERVE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


__all__ = [
    "LocalRun",
    "available_cpus",
    "EmbeddedTarget",
    "embedded_target",
    "start_embedded_target",
    "check_output_path",
    "emit",
    "no_load_reason",
    "outcome",
    "run_local",
    "sigint_calls",
    "split_cpus",
]
