"""A worker: one engine in this process, driven by a coordinator over ZeroMQ (DEALER -> ROUTER).

State machine of one run (protocol.py names the messages):

    HELLO (every HEARTBEAT_INTERVAL_S until a PLAN comes) -> PLAN -> ACK -> START -> running:
    SNAPSHOT ~1/s, HEARTBEAT ~1/s -> FINAL -> BYE -> close.

The engine runs in a second thread (EngineRunner.run releases the GIL for the native loop); only the
main thread touches the ZeroMQ socket (sockets are not thread-safe), so snapshots travel from the
runner thread to the main thread through a queue, already encoded.

Nothing keeps hammering a target when the coordinator is gone: once a plan has been received, a
coordinator silent for WORKER_LOST_AFTER_S stops the engine (runner.stop(), which returns within
milliseconds) and the worker exits with code 3. Local workers additionally ask the kernel for SIGKILL
when their parent dies (prctl PR_SET_PDEATHSIG, man 2 prctl), so a SIGKILLed coordinator takes its
local workers with it at once.

`barfast worker --connect tcp://HOST:PORT` (remote) serves runs one after another, each on a fresh
socket, and exits 0 when no plan arrives within --idle-timeout; local workers (`python -m
barfast.fanout.worker`, started by the coordinator) serve exactly one run.

Why ~570 lines in one module: the worker's side of the protocol is one state machine over one
socket (HELLO to BYE above) plus the watchdog that stops the engine when the coordinator goes
silent; splitting the states apart would split the invariants that hold across them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any

import zmq

from barfast.config import (
    HEARTBEAT_INTERVAL_S,
    WORKER_LOST_AFTER_S,
    available_cpus,
    parse_duration,
)
from barfast.fanout import protocol
from barfast.fanout.protocol import MsgKind
from barfast.status import BarfastError, ExitCode, ProtocolError, UsageError

POLL_MS = 50  # main-loop granularity: bounds how late a lost coordinator is noticed
LOCAL_IDLE_TIMEOUT_S = 30.0
FINAL_LINGER_MS = 2000  # give FINAL/BYE this long to leave after a normal end
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


_SIGINTS = [0]  # set by the SIGINT handler; the loop acts on it (no KeyboardInterrupt mid-send)


def _count_sigint(signum: int, frame: Any) -> None:
    _SIGINTS[0] += 1


def _log(msg: str) -> None:
    print(f"barfast worker[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def set_parent_death_signal(parent_pid: int) -> None:
    """Die with SIGKILL when the parent (the coordinator) dies; exit now if it is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the heartbeat timeout still applies
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect (man 2 prctl)
        os._exit(int(ExitCode.NO_LOAD))


def check_endpoint(connect: str) -> str:
    if not connect.startswith(("tcp://", "ipc://")):
        raise UsageError(f"bad --connect {connect!r}: expected tcp://HOST:PORT (or ipc://PATH)")
    if connect.startswith("tcp://"):
        rest = connect[6:]
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"bad --connect {connect!r}: expected tcp://HOST:PORT")
    return connect


class _Curve:
    def __init__(self, public: bytes, secret: bytes, server: bytes):
        self.public, self.secret, self.server = public, secret, server

    def apply(self, sock: zmq.Socket[Any]) -> None:
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server


class _Run:
    """One run on one fresh DEALER socket. `serve()` returns an exit code, or None when idle."""

    def __init__(
        self, ctx: zmq.Context[Any], endpoint: str, curve: _Curve | None, idle_timeout_s: float
    ):
        self.ctx = ctx
        self.endpoint = endpoint
        self.idle_timeout_s = idle_timeout_s
        self.sock = ctx.socket(zmq.DEALER)
        # Our own routing id: after a transient TCP break ZeroMQ reconnects under the same name, so
        # the coordinator (ROUTER_HANDOVER) keeps talking to the same worker instead of a stranger.
        self.sock.setsockopt(zmq.ROUTING_ID, uuid.uuid4().bytes)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        self.sock.setsockopt(zmq.RCVHWM, 1000)
        self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        # A local worker may connect before the coordinator has bound its ipc socket (spawn.py forks
        # first): retry that in 5 ms, not ZeroMQ's default 100 ms.
        self.sock.setsockopt(zmq.RECONNECT_IVL, 5 if endpoint.startswith("ipc://") else 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.monitor: zmq.Socket[Any] | None = None
        self.handshake_warned = False
        self.poller = zmq.Poller()
        if curve is not None:
            curve.apply(self.sock)
            # A refused handshake is otherwise invisible (ZeroMQ just reconnects): watch for it.
            mon_ep = f"inproc://barfast-worker-monitor-{id(self)}"
            self.sock.monitor(
                mon_ep,
                zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            )
            self.monitor = ctx.socket(zmq.PAIR)
            self.monitor.connect(mon_ep)
            self.poller.register(self.monitor, zmq.POLLIN)
        self.sock.connect(endpoint)
        self.poller.register(self.sock, zmq.POLLIN)
        self.out: queue.Queue[tuple[MsgKind, dict[str, Any]]] = queue.Queue()
        self.runner: Any = None
        self.thread: threading.Thread | None = None
        self.worker_index = -1
        self.stopping = False
        self.interrupted = False
        # This run's own record (result/workerfile.py): what the coordinator sent, what we sent.
        self.run_id = ""
        self.report_config: dict[str, Any] | None = None
        self.report_meta: dict[str, Any] | None = None
        self.frames: list[bytes] = []
        self.ended = ""

    # -- sending ----------------------------------------------------------------------------------
    def send(self, kind: MsgKind, body: dict[str, Any] | None = None) -> None:
        frame = protocol.encode(kind, body)
        if kind in (MsgKind.SNAPSHOT, MsgKind.FINAL):
            self.frames.append(frame)
        # EAGAIN at the HWM means the coordinator is gone or stalled: liveness decides, not us.
        with contextlib.suppress(zmq.Again):
            self.sock.send(frame, zmq.NOBLOCK)

    def _keep_last_snapshots(self) -> None:
        """After the engine stopped without a coordinator: keep its last snapshots (FINAL among
        them) in this run's record; nobody is listening for them."""
        while True:
            try:
                kind, body = self.out.get_nowait()
            except queue.Empty:
                return
            if kind in (MsgKind.SNAPSHOT, MsgKind.FINAL):
                self.frames.append(protocol.encode(kind, body))

    def hello(self) -> None:
        self.send(
            MsgKind.HELLO,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "cpus": available_cpus(),
                "name": f"{socket.gethostname()}:{os.getpid()}",
                **({"pod": pod} if (pod := pod_name()) else {}),
            },
        )

    # -- the engine thread ------------------------------------------------------------------------
    def _on_snapshot(self, snap: dict[str, Any]) -> None:
        kind = MsgKind.FINAL if snap.get("final") else MsgKind.SNAPSHOT
        self.out.put((kind, snap))

    def _run_engine(self, start_ns: int) -> None:
        try:
            self.runner.run(start_ns)
        except BaseException as exc:  # the engine failed: the coordinator must hear why
            reason = str(exc) or type(exc).__name__
            code = getattr(exc, "exit_code", ExitCode.NO_LOAD)
            self.out.put((MsgKind.ERROR, {"reason": reason, "code": int(code)}))

    def _accept_plan(self, body: dict[str, Any]) -> bool:
        from barfast.engine.runner import EngineRunner
        from barfast.fanout.plan import WorkerPlan

        self.worker_index = int(body["worker"])
        self.run_id = str(body["run_id"])
        self.report_config = body.get("report_config")
        self.report_meta = body.get("report_meta")
        try:
            plan = WorkerPlan.from_dict(body["plan"])
            if self.report_config is not None:  # a remote worker: its host's limits are its own
                warn_limits(max(plan.connections, plan.max_connections))
            self.runner = EngineRunner(plan, self._on_snapshot)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            code = int(getattr(exc, "exit_code", ExitCode.NO_LOAD))
            self.send(MsgKind.ERROR, {"reason": reason, "code": code, "worker": self.worker_index})
            _log(f"cannot start: {reason}")
            return False
        self.send(MsgKind.ACK, {"worker": self.worker_index})
        return True

    def _stop_engine(self) -> None:
        if self.runner is not None and not self.stopping:
            self.stopping = True
            self.runner.stop()

    # -- the loop ---------------------------------------------------------------------------------
    def serve(self) -> int | None:
        now = time.monotonic()
        idle_deadline = now + self.idle_timeout_s
        last_heard = now  # from the coordinator
        last_sent = 0.0
        have_plan = False
        started = False
        final_sent = False
        while True:
            now = time.monotonic()
            if not have_plan:
                if now >= idle_deadline:
                    return None
                if now - last_sent >= HEARTBEAT_INTERVAL_S:
                    self.hello()  # repeated: a coordinator that starts (or restarts) later still hears it
                    last_sent = now
            else:
                if now - last_heard >= WORKER_LOST_AFTER_S:
                    self._stop_engine()
                    self._join(5.0)
                    self._keep_last_snapshots()
                    self.ended = f"coordinator silent for {WORKER_LOST_AFTER_S:g} s"
                    _log(f"coordinator silent for {WORKER_LOST_AFTER_S:g} s: load stopped, exiting")
                    return int(ExitCode.NO_LOAD)
                if now - last_sent >= HEARTBEAT_INTERVAL_S:
                    self.send(MsgKind.HEARTBEAT, {"state": "running" if started else "ready"})
                    last_sent = now
            # forward what the engine thread produced
            while True:
                try:
                    kind, body = self.out.get_nowait()
                except queue.Empty:
                    break
                if kind == MsgKind.ERROR:
                    body["worker"] = self.worker_index
                    _log(f"engine failed: {body['reason']}")
                    self.send(kind, body)
                    return self._finish(int(ExitCode.NO_LOAD))
                self.send(kind, body)
                last_sent = now
                if kind == MsgKind.FINAL:
                    final_sent = True
            if final_sent:
                self._join(5.0)
                self.send(MsgKind.BYE, {"reason": "done"})
                self.ended = "interrupted" if self.interrupted else "done"
                return self._finish(int(ExitCode.INTERRUPTED if self.interrupted else ExitCode.OK))
            if _SIGINTS[0] and not self.interrupted:  # Ctrl-C on a remote worker
                self.interrupted = True
                if not started:
                    return int(ExitCode.INTERRUPTED)
                if self.runner is not None:
                    self.runner.interrupt()  # final snapshot marked "interrupted"
                self._stop_engine()
            events = dict(self.poller.poll(POLL_MS))
            if self.monitor is not None and self.monitor in events:
                refused = self._handshake_failure()
                if refused is not None:
                    self._stop_engine()
                    self._join(5.0)
                    raise UsageError(refused)
            if self.sock not in events:
                continue
            while True:
                try:
                    frame = self.sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = protocol.decode(frame)
                except ProtocolError as exc:
                    _log(f"refusing coordinator message: {exc}")
                    if isinstance(exc, protocol.ProtocolVersionError):
                        self._stop_engine()
                        self._join(5.0)
                        return int(ExitCode.NO_LOAD)
                    continue
                last_heard = time.monotonic()
                kind = msg.kind
                if kind == MsgKind.PLAN and not have_plan:
                    if not self._accept_plan(msg.body):
                        return self._finish(int(ExitCode.NO_LOAD))
                    have_plan = True
                elif kind == MsgKind.START and have_plan and not started:
                    start_ns = time.monotonic_ns() + max(0, int(msg.body["start_in_ns"]))
                    self.thread = threading.Thread(
                        target=self._run_engine,
                        args=(start_ns,),
                        name="barfast-engine",
                        daemon=True,
                    )
                    self.thread.start()
                    started = True
                elif kind == MsgKind.STOP:
                    if not started:
                        return self._finish(int(ExitCode.OK))
                    self._stop_engine()
                elif kind == MsgKind.ERROR:
                    _log(f"coordinator error: {msg.body['reason']}")
                    self._stop_engine()
                    self._join(5.0)
                    return int(ExitCode.NO_LOAD)
                # HEARTBEAT: liveness only (last_heard above)

    def _handshake_failure(self) -> str | None:
        from zmq.utils.monitor import recv_monitor_message

        assert self.monitor is not None
        try:
            ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
        except zmq.Again:
            return None
        if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (
                f"the coordinator at {self.endpoint} refused this worker: not authorised "
                "(is this worker's NAME.key in the coordinator's --curve-clients folder?)"
            )
        # Other handshake failures also happen when a coordinator closes mid-handshake: keep
        # trying (ZeroMQ reconnects), but say it once, since a wrong --curve-server looks the same.
        if not self.handshake_warned:
            self.handshake_warned = True
            _log(
                f"CURVE handshake with {self.endpoint} failed; retrying "
                "(is --curve-server the coordinator's public key?)"
            )
        return None

    def result_doc(self) -> dict[str, Any] | None:
        """This run's record for result/workerfile.py, or None (no plan, or a local worker)."""
        if self.report_config is None or self.worker_index < 0:
            return None
        from barfast.result import workerfile

        return workerfile.build_doc(
            run_id=self.run_id,
            worker=self.worker_index,
            config=self.report_config,
            meta=self.report_meta,
            peer={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "cpus": available_cpus(),
                **({"pod": pod} if (pod := pod_name()) else {}),
            },
            ended=self.ended or "ended before its final snapshot",
            frames=self.frames,
        )

    def _join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)

    def _finish(self, code: int) -> int:
        # After a normal end, let FINAL and BYE leave before the socket goes.
        self.sock.setsockopt(zmq.LINGER, FINAL_LINGER_MS)
        return code

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        self.sock.close()


def _curve_from_files(curve_secret: str | None, curve_server: str | None) -> _Curve | None:
    if curve_secret is None and curve_server is None:
        return None
    if curve_secret is None or curve_server is None:
        raise UsageError("CURVE needs both --curve-secret (this worker) and --curve-server")
    from barfast.fanout.keys import load_public, load_secret

    public, secret = load_secret(curve_secret, "--curve-secret")
    server = load_public(curve_server, "--curve-server")
    return _Curve(public, secret, server)


PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
PORTS_WANTED = 28232  # Linux's default range (32768-60999): warn only below it
NOFILE_WANTED = 65536


def local_port_range(path: str = PORT_RANGE_FILE) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    return lo, hi


def limit_warnings(connections: int | None = None) -> list[str]:
    """What in this host's limits caps a worker's connections: the ephemeral ports (one per
    connection to one destination address and port, ip(7) ip_local_port_range) and the
    file-descriptor hard limit (one per connection). With `connections`, against that need;
    without, against the defaults a load generator should have."""
    import resource

    from barfast.engine._core import FD_HEADROOM  # type: ignore[attr-defined]

    out = []
    ports = local_port_range()
    span = ports[1] - ports[0] + 1 if ports else None
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if span is not None and (
        (connections is None and span < PORTS_WANTED)
        or (connections is not None and connections > span)
    ):
        out.append(
            f"net.ipv4.ip_local_port_range is {ports[0]}-{ports[1]} ({span} ports): at most "  # type: ignore[index]
            f"{span} connections to one destination (set it to 1024 65535; docs/kubernetes.md)"
        )
    if hard != resource.RLIM_INFINITY and (
        (connections is None and hard < NOFILE_WANTED)
        or (connections is not None and connections + FD_HEADROOM > hard)
    ):
        out.append(
            f"the file-descriptor hard limit is {hard}: at most about {max(0, hard - FD_HEADROOM)} "
            "connections (raise it: ulimit -Hn, or the container runtime's nofile limit)"
        )
    return out


def warn_limits(connections: int | None = None) -> None:
    for w in limit_warnings(connections):
        _log(f"warning: {w}")


def pod_name() -> str:
    """The Kubernetes pod this worker runs in (POD_NAME, set from the downward API by the
    manifests of barfast.k8s), or ""."""
    return os.environ.get("POD_NAME", "")[:253]


def _save_result(run: _Run, result_file: str | None) -> None:
    doc = run.result_doc()
    if doc is None:
        return
    from barfast.result import workerfile

    # The log line first: it costs nothing, and a pod's log outlives a volume nobody mounted.
    sys.stderr.write(workerfile.RESULT_LINE_PREFIX + workerfile.dumps(doc) + "\n")
    sys.stderr.flush()
    if result_file:
        try:
            workerfile.write(doc, result_file)
        except OSError as exc:
            _log(f"cannot write --result-file {result_file}: {exc.strerror}")
            return
        _log(f"result of worker {run.worker_index} written to {result_file}")


def serve_runs(
    connect: str,
    curve: _Curve | None,
    idle_timeout_s: float,
    once: bool,
    result_file: str | None = None,
) -> int:
    ctx = zmq.Context()
    try:
        code = int(ExitCode.OK)
        while True:
            run = _Run(ctx, connect, curve, idle_timeout_s)
            try:
                result = run.serve()
            finally:
                run.close()
                _save_result(run, result_file)
            if _SIGINTS[0]:
                return int(ExitCode.INTERRUPTED)
            if result is None:
                if once:
                    _log(f"no plan from {connect} within {idle_timeout_s:g} s; exiting")
                    return int(ExitCode.NO_LOAD)
                _log(f"no coordinator at {connect} for {idle_timeout_s:g} s; exiting")
                return code
            code = result
            if once or result == ExitCode.INTERRUPTED:
                return result
    finally:
        ctx.term()


def worker_command(
    connect: str,
    curve_secret: str | None = None,
    curve_server: str | None = None,
    idle_timeout: str = "60s",
    once: bool = False,
    result_file: str | None = None,
) -> int:
    """`barfast worker`: serve plans from the coordinator at `connect` until idle for idle_timeout
    (with `once`: one run, whose exit code is ours; 3 if no plan came within idle_timeout)."""
    check_endpoint(connect)
    if result_file:
        from barfast.result.workerfile import check_result_path

        check_result_path(result_file)
    idle_ns = parse_duration(idle_timeout, "--idle-timeout")
    if idle_ns <= 0:
        raise UsageError(f"bad --idle-timeout {idle_timeout!r}: must be positive")
    curve = _curve_from_files(curve_secret, curve_server)
    if curve is None and connect.startswith("tcp://"):
        host = connect[6:].rpartition(":")[0].strip("[]")
        if host not in ("127.0.0.1", "::1", "localhost"):
            _log(
                f"warning: connecting to {connect} without CURVE: plans and results travel in clear"
            )
    _log(f"waiting for plans from {connect} (exits after {idle_timeout} without one)")
    old = signal.signal(signal.SIGINT, _count_sigint)
    try:
        warn_limits()
        return serve_runs(connect, curve, idle_ns / 1e9, once=once, result_file=result_file)
    finally:
        signal.signal(signal.SIGINT, old)


def _local_main(argv: list[str]) -> int:
    """Entry of a local worker started by the coordinator: one run, dies with its parent."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m barfast.fanout.worker")
    ap.add_argument("--connect", required=True)
    ap.add_argument("--parent", type=int, required=True)
    ap.add_argument("--idle-timeout", type=float, default=LOCAL_IDLE_TIMEOUT_S)
    args = ap.parse_args(argv)
    return run_local_worker(args.connect, args.parent, args.idle_timeout)


def run_local_worker(
    connect: str, parent: int, idle_timeout_s: float = LOCAL_IDLE_TIMEOUT_S
) -> int:
    """One run for the coordinator `parent` at `connect`; also the body of a forked worker (spawn.py)."""
    set_parent_death_signal(parent)
    # Ctrl-C on a terminal reaches the whole process group; the coordinator stops us with STOP so
    # that our FINAL snapshot still makes it into the partial report.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the coordinator's
    try:
        return serve_runs(check_endpoint(connect), None, idle_timeout_s, once=True)
    except BarfastError as exc:
        _log(str(exc))
        return int(exc.exit_code)


if __name__ == "__main__":
    sys.exit(_local_main(sys.argv[1:]))
