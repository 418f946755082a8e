"""spawn.py: when a coordinator may fork its workers, and the Popen-like handle on a forked child.

The forked and exec'd workers doing a real run against nginx are in test_fanout.py
(test_workers_forked_or_exec_count_equals_nginx); these are the pieces, on real child processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from barfast.fanout import spawn


def _child(action: str) -> spawn.ForkedWorker:
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, straight out
        if action == "exit7":
            os._exit(7)
        time.sleep(30)
        os._exit(0)
    return spawn.ForkedWorker(pid)


CAN_FORK_ONLY_WHILE_ONE_THREAD = """
import threading, time
from barfast.fanout import spawn
assert spawn.thread_count() == 1, spawn.thread_count()
assert spawn.can_fork()
stop = threading.Event()
t = threading.Thread(target=stop.wait)
t.start()
try:
    assert spawn.thread_count() == 2
    assert not spawn.can_fork()  # a lock held by that thread would stay held in a child
finally:
    stop.set()
    t.join()
# The kernel removes the task a moment after join() returns (the thread is still exiting):
# until then can_fork() stays on the safe side.
deadline = time.monotonic() + 5
while spawn.thread_count() != 1 and time.monotonic() < deadline:
    time.sleep(0.001)
assert spawn.can_fork()
print("ok")
"""


def test_can_fork_only_while_one_thread() -> None:
    # In a fresh interpreter: the test process may have threads of its own (pytest-xdist's).
    env = {k: v for k, v in os.environ.items() if k != spawn.SPAWN_ENV}
    p = subprocess.run(
        [sys.executable, "-c", CAN_FORK_ONLY_WHILE_ONE_THREAD],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_exec_is_forced_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(spawn.SPAWN_ENV, "exec")
    assert not spawn.can_fork()


def test_forked_handle_reports_the_exit_code_like_popen() -> None:
    w = _child("exit7")
    assert w.wait(10) == 7
    assert w.returncode == 7 and w.poll() == 7


def test_forked_handle_wait_times_out_then_kill_gives_minus_sigkill() -> None:
    w = _child("sleep")
    assert w.poll() is None and w.returncode is None
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        w.wait(0.2)
    assert time.monotonic() - t0 >= 0.2
    w.kill()
    assert w.wait(10) == -signal.SIGKILL
    w.kill()  # already gone: nothing happens
    assert w.returncode == -signal.SIGKILL


def test_a_fork_that_fails_is_a_no_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """fork() can fail (EAGAIN at the process limit, ENOMEM): the run ends with one line and exit 3.
    Root ignores RLIMIT_NPROC, so the failure is injected at os.fork itself."""
    import errno

    from barfast.config import build_run_config
    from barfast.fanout.coordinator import Coordinator
    from barfast.status import NoLoadError

    def no_fork() -> int:
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(spawn, "can_fork", lambda: True)
    monkeypatch.setattr(spawn.os, "fork", no_fork)
    coord = Coordinator(build_run_config("http://127.0.0.1:9/", requests=1), local_workers=1)
    try:
        with pytest.raises(NoLoadError, match="cannot start local worker 1 of 1: Resource"):
            coord.run()
    finally:
        coord.close()
    assert coord.local.procs == []
