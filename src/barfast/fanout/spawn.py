"""How a coordinator starts its local workers: forked from itself (default) or as a new interpreter.

Owns: the start of local worker processes, a Popen-like handle on each (pid, poll, wait, kill), their
private folder (ipc endpoint, stderr files) and their reaping (LocalWorkers).
Never: forks a process that has a second thread (a fork copies only the calling thread; a lock held
by another one stays held forever in the child), or lets a forked child return into the
coordinator's code (it leaves through os._exit, so no atexit handler, finaliser or buffered output of
the coordinator runs twice).
Invariant: a worker started either way is the same program (worker.serve_runs, one run, SIGINT
ignored, SIGKILLed when the coordinator dies) with stdin and stdout on /dev/null and stderr in a file
the coordinator reads when the worker fails.

Why fork: a new interpreter pays 0.07-0.1 s of CPU to start and import numpy, ZeroMQ and the engine
again, about 1 % of a 10 s single-worker run, and 64 of them took 11-12 s to start on two CPUs where
64 forks take 1.6 s (benchmarks/bench_spawn.py; benchmarks/README.md, "Starting local workers"); a forked child
inherits all of that already imported. The coordinator forks before it opens its first ZeroMQ
socket (the context starts its I/O threads with the first socket), so it is still one thread then;
anything else (another thread found, a custom worker command, BARFAST_LOCAL_WORKERS=exec) starts
`python -m barfast.fanout.worker` instead.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NoReturn, Protocol

from barfast.status import NoLoadError

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
    import barfast.fanout.worker  # noqa: F401  (imported once here, not once in every child)

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
        from barfast.fanout.worker import run_local_worker

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


TMP_PREFIX = "barfast-coord-"
EXIT_WAIT_S = 3.0  # local processes get this long to exit before SIGKILL


def sweep_stale_dirs() -> None:
    """Remove our uid's barfast-coord-PID-* folders whose coordinator process is gone."""
    base = Path(tempfile.gettempdir())
    for d in base.glob(f"{TMP_PREFIX}*"):
        try:
            pid = int(d.name[len(TMP_PREFIX) :].split("-", 1)[0])
            if d.stat().st_uid != os.getuid() or pid == os.getpid():
                continue
            os.kill(pid, 0)  # alive (or not ours to judge): leave it
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, OSError):
            continue


class LocalWorkers:
    """A coordinator's local worker processes: their private folder (the ipc endpoint and each
    worker's stderr file), their start, the last line each wrote to stderr, their reaping."""

    def __init__(self, n: int, worker_cmd: list[str] | None = None):
        self.n = n
        self.worker_cmd = worker_cmd  # None: our own worker, forked when we can
        self.procs: list[WorkerProcess] = []
        self.stderr_files: dict[int, Path] = {}
        self.tmpdir: str | None = None

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.folder()}/coordinator"

    def folder(self) -> str:
        if self.tmpdir is None:
            sweep_stale_dirs()
            # 0700: only we reach the ipc socket. The pid in the name lets a later run remove the
            # folder of a coordinator that was SIGKILLed (it could not clean up after itself).
            self.tmpdir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        return self.tmpdir

    def start(self, may_fork: bool) -> None:
        """Start the n workers: forked when `may_fork` (no ZeroMQ socket exists yet) and our own
        worker is wanted, else as new interpreters (the module docstring says why and when)."""
        endpoint = self.endpoint
        fork = may_fork and self.worker_cmd is None and can_fork()
        cmd = self.worker_cmd or [sys.executable, "-m", "barfast.fanout.worker"]
        if fork:
            prepare_fork()
        for i in range(self.n):
            err_path = Path(self.folder()) / f"worker-{i}.stderr"
            p: WorkerProcess
            try:
                p = (
                    fork_worker(endpoint, err_path)
                    if fork
                    else exec_worker(cmd, endpoint, err_path)
                )
            except OSError as exc:  # EAGAIN (process limit), ENOMEM, a missing interpreter...
                raise NoLoadError(
                    f"cannot start local worker {i + 1} of {self.n}: {exc.strerror or exc}"
                ) from None
            self.procs.append(p)
            self.stderr_files[p.pid] = err_path

    def find(self, pid: int) -> WorkerProcess | None:
        return next((p for p in self.procs if p.pid == pid), None)

    def stderr_tail(self, pid: int) -> str:
        path = self.stderr_files.get(pid)
        if path is None:
            return ""
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def check_deaths(self, known: set[int]) -> None:
        """NoLoadError if a process not in `known` (pids that said hello) has already exited."""
        for proc in self.procs:
            if proc.pid not in known and proc.poll() is not None:
                tail = self.stderr_tail(proc.pid)
                raise NoLoadError(
                    f"local worker (pid {proc.pid}) exited with code {proc.returncode} before "
                    f"saying hello" + (f": {tail}" if tail else "")
                )

    def reap(self) -> None:
        """Wait up to EXIT_WAIT_S in all for the processes to exit, SIGKILL the rest."""
        deadline = time.monotonic() + EXIT_WAIT_S
        for proc in self.procs:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(1.0)

    def remove_folder(self) -> None:
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
