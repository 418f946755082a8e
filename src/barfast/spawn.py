"""How a coordinator starts its local workers: forked from itself (default) or as a new interpreter.

Owns: the start of local worker processes and a Popen-like handle on each (pid, poll, wait, kill).
Never: forks a process that has a second thread (a fork copies only the calling thread; a lock held
by another one stays held forever in the child), or lets a forked child return into the
coordinator's code (it leaves through os._exit, so no atexit handler, finaliser or buffered output of
the coordinator runs twice).
Invariant: a worker started either way is the same program (worker.serve_runs, one run, SIGINT
ignored, SIGKILLed when the coordinator dies) with stdin and stdout on /dev/null and stderr in a file
the coordinator reads when the worker fails.

Why fork: a new interpreter pays 0.07-0.1 s of CPU to start and import numpy, ZeroMQ and the engine
again, about 1 % of a 10 s single-worker run, and 64 of them took 11-12 s to start on two CPUs where
64 forks take 1.6 s (benchmarks/bench_spawn.py, benchmarks/README.md session 9); a forked child
inherits all of that already imported. The coordinator forks before it opens its first ZeroMQ
socket (the context starts its I/O threads with the first socket), so it is still one thread then;
anything else (another thread found, a custom worker command, BARFAST_LOCAL_WORKERS=exec) starts
`python -m barfast.worker` instead.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import NoReturn, Protocol

SPAWN_ENV = "BARFAST_LOCAL_WORKERS"  # "exec": always start a new interpreter (A/B measurements)
WAIT_POLL_S = 0.005
PR_SET_NAME = 15  # <linux/prctl.h>


class WorkerProcess(Protocol):
    """What the coordinator needs of a local worker's process: subprocess.Popen's subset."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class ForkedWorker:
    """A forked child, handled like subprocess.Popen: returncode is -N when signal N ended it."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone, its status unknown
                self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(WAIT_POLL_S)
        return code

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def thread_count() -> int:
    """Threads of this process, native ones included (ZeroMQ's, OpenBLAS's): /proc/self/task."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no procfs: only Python's own threads are visible
        import threading

        return threading.active_count()


def can_fork() -> bool:
    return (
        os.environ.get(SPAWN_ENV, "fork") != "exec" and hasattr(os, "fork") and thread_count() == 1
    )


def exec_worker(cmd: list[str], endpoint: str, err_path: Path) -> subprocess.Popen[bytes]:
    """Start `cmd --connect ENDPOINT --parent PID` as a new process (a new interpreter)."""
    with open(err_path, "wb") as err:
        return subprocess.Popen(
            [*cmd, "--connect", endpoint, "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            close_fds=True,
        )


def prepare_fork() -> None:
    """Once before a batch of fork_worker() calls: what every child should inherit ready."""
    import barfast.worker  # noqa: F401  (imported once here, not once in every child)

    # Nothing of ours may be printed twice: flush before the children get a copy of the buffers.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or file: nothing to copy
            stream.flush()
    gc.collect()  # garbage with a file descriptor inside must not be finalised in a child


def fork_worker(endpoint: str, err_path: Path) -> ForkedWorker:
    """Fork a local worker that connects to `endpoint`. Call only when can_fork() is true, after
    prepare_fork()."""
    parent = os.getpid()
    err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        pid = os.fork()
        if pid == 0:
            _child(endpoint, parent, err_fd)
    finally:
        if os.getpid() == parent:
            os.close(err_fd)
    return ForkedWorker(pid)


def _child(endpoint: str, parent: int, err_fd: int) -> NoReturn:
    code = 1
    try:
        # Every object inherited from the coordinator stays alive and untouched: a collected one
        # could close a descriptor number this worker has since reused.
        gc.freeze()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, _fd_ceiling())  # the coordinator's pipes and files are not ours
        _set_name(b"barfast-worker")  # ps and top would show the coordinator's name otherwise
        from barfast.worker import run_local_worker

        code = run_local_worker(endpoint, parent)
    except BaseException:  # noqa: BLE001  (the child must reach os._exit whatever happens)
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _set_name(name: bytes) -> None:
    """The thread's name (/proc/PID/comm, what ps -o comm and top show): prctl(PR_SET_NAME)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the name stays
        pass


def _fd_ceiling() -> int:
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 1024)
    except (ValueError, OSError):
        return 1 << 16


__all__ = [
    "SPAWN_ENV",
    "ForkedWorker",
    "WorkerProcess",
    "can_fork",
    "exec_worker",
    "fork_worker",
    "prepare_fork",
]
