"""The embedded target: `barfast run` with no URL runs against its own `barfast serve`.

`embedded_target()` starts `python -m barfast serve --addr 127.0.0.1:0` as a subprocess in its own
session (so a terminal Ctrl-C reaches only us, and we stop it last), pinned to the last CPU when
there are >= 2 (the generator keeps the others), and terminates it afterwards, also on errors and
Ctrl-C. The child gets SIGTERM if we die, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from barfast.status import NoLoadError

SERVE_START_TIMEOUT_S = 10.0
SERVE_STOP_TIMEOUT_S = 5.0
LISTENING_PREFIX = "barfast serve: listening on "


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
