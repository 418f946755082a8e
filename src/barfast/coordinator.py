"""The coordinator: plans a run, starts and watches workers over ZeroMQ, merges exactly, reports.

Shape: one ROUTER per listening endpoint (ipc in a private 0700 folder for local workers; tcp at
--bind for remote ones, optionally CURVE-authenticated), one DEALER per worker. The coordinator
thread is the only one that touches these sockets and it never blocks: every wait is a poll with a
timeout, sends are NOBLOCK with ROUTER_MANDATORY (a vanished peer raises instead of silently
dropping), and sockets close with LINGER 0 except for the last STOPs.

Sequence: spawn local workers -> collect HELLOs (timeout) -> PLAN (split_plan) -> ACK from all ->
START (a delay, not a clock time: hosts' monotonic clocks differ) -> SNAPSHOTs merged by Merger as
they arrive -> FINAL from all (or lost) -> STOP to all -> report. Heartbeats go both ways every
HEARTBEAT_INTERVAL_S; a worker silent for WORKER_LOST_AFTER_S (or whose local process died) is lost:
its data up to its last snapshot stays in the result, the run goes on with the others (unless
--fail-on-worker-loss) and the exit code is 3.

Decisions: without -w, `--expect-workers N` starts no local workers (-w M with it adds M local ones);
the plan is split over all workers, local first, in HELLO order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from barfast import protocol, spawn
from barfast.config import (
    HEARTBEAT_INTERVAL_S,
    NS_PER_S,
    WORKER_LOST_AFTER_S,
    RunConfig,
    available_cpus,
    build_run_config,
    parse_duration,
)
from barfast.progress import Progress, choose_mode
from barfast.protocol import MsgKind
from barfast.spawn import WorkerProcess
from barfast.status import (
    ExitCode,
    NoLoadError,
    ProtocolError,
    UsageError,
    WorkerLostError,
)

POLL_MS = 100
LOCAL_HELLO_TIMEOUT_S = 30.0  # an exec'd local worker imports numpy/hdrh/zmq: seconds when loaded
ACK_TIMEOUT_S = 15.0
LOCAL_START_DELAY_NS = 200_000_000  # START -> first request: enough for every worker to receive it
REMOTE_START_DELAY_NS = 500_000_000
STOP_GRACE_S = 3.0  # after STOP, wait this long for FINALs
END_GRACE_S = 5.0  # past the planned end (+ request timeout) before the coordinator sends STOP
EXIT_WAIT_S = 3.0  # local processes get this long to exit before SIGKILL
LIVENESS_CHECK_S = 0.2  # how often supervise() looks for silent or dead workers
PROC_EXIT_GRACE_S = 0.5  # an exited local worker's FINAL may still be in the socket
COALESCE_S = 0.02  # supervise(): at most ~50 wakeups/s however many workers
SERIES_SETTLE_S = 0.3  # progress shows second k once every worker's snapshot for it is in


def _log(msg: str) -> None:
    print(f"barfast: {msg}", file=sys.stderr, flush=True)


TMP_PREFIX = "barfast-coord-"


def _sweep_stale_dirs() -> None:
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


# --- peers ---------------------------------------------------------------------------------------
@dataclass
class Peer:
    sock: zmq.Socket[Any]
    ident: bytes
    pid: int
    host: str
    cpus: int
    name: str
    local: bool
    last_heard: float
    proc: WorkerProcess | None = None
    index: int = -1
    state: str = "hello"  # hello -> planned -> ready -> running -> done | lost | failed
    snapshots: int = 0
    exited_at: float | None = None
    last_counters: dict[str, int] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state in ("hello", "planned", "ready", "running")

    def describe(self) -> str:
        where = "local" if self.local else "remote"
        return f"worker {self.index} ({where} {self.host} pid {self.pid})"


class _ZapAuthenticator:
    """zmq.auth.ThreadAuthenticator that also remembers whom it refused (address, reason)."""

    def __new__(cls, ctx: zmq.Context[Any]) -> Any:
        from zmq.auth.thread import ThreadAuthenticator

        class Reporting(ThreadAuthenticator):
            refusals: queue.Queue[tuple[str, str]]
            _current = "?"

            async def handle_zap_message(self, msg: list[bytes]) -> None:
                self._current = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
                await super().handle_zap_message(msg)

            def _send_zap_reply(
                self,
                request_id: bytes,
                status_code: bytes,
                status_text: bytes,
                user_id: str = "anonymous",
            ) -> None:
                if status_code != b"200":
                    self.refusals.put((self._current, status_text.decode("utf-8", "replace")))
                super()._send_zap_reply(request_id, status_code, status_text, user_id)

        auth = Reporting(ctx, log=logging.getLogger("barfast.zap"))
        auth.refusals = queue.Queue()
        return auth


def _check_bind(bind: str) -> tuple[str, bool]:
    """tcp://ADDR:PORT -> (endpoint, is_loopback)."""
    if not bind.startswith("tcp://"):
        raise UsageError(f"bad --bind {bind!r}: expected tcp://ADDR:PORT")
    host, sep, port = bind[6:].rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad --bind {bind!r}: expected tcp://ADDR:PORT")
    h = host.strip("[]")
    if h in ("*", "0.0.0.0", "::"):
        return bind, False
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(h))
        except (OSError, ValueError):
            raise UsageError(f"bad --bind {bind!r}: cannot resolve {h!r}") from None
    return bind, ip.is_loopback


class Coordinator:
    """One run. `run()` returns the exit code; the report is printed/written by run_command."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        local_workers: int,
        expect_workers: int = 0,
        bind: str | None = None,
        wait_timeout_s: float = 30.0,
        curve_secret: str | None = None,
        curve_clients: str | None = None,
        fail_on_worker_loss: bool = False,
        progress: Progress | None = None,
        worker_cmd: list[str] | None = None,
    ):
        self.cfg = cfg
        self.n_local = local_workers
        self.n_remote = expect_workers
        self.n_total = local_workers + expect_workers
        self.bind = bind
        self.wait_timeout_s = wait_timeout_s
        self.fail_on_worker_loss = fail_on_worker_loss
        self.progress = progress or Progress("off")
        self.worker_cmd = worker_cmd  # None: our own worker, forked when we can (spawn.py)
        self.run_id = uuid.uuid4().hex
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sockets: list[zmq.Socket[Any]] = []
        self.poller = zmq.Poller()
        self.peers: dict[tuple[int, bytes], Peer] = {}
        self.procs: list[WorkerProcess] = []
        self.stderr_files: dict[int, Path] = {}
        self.tmpdir: str | None = None
        self.auth: Any = None
        self.monitor: zmq.Socket[Any] | None = None
        self.refused: set[str] = set()
        self.lost: list[Peer] = []
        self.failed: list[tuple[Peer | None, str, int]] = []
        self.interrupted = False
        self.sigints = 0  # incremented by the SIGINT/SIGTERM handler; the loops act on it
        self.stop_sent = False
        self.start_t = 0.0
        self.merger: Any = None
        self._curve_secret = curve_secret
        self._curve_clients = curve_clients

    # -- setup ------------------------------------------------------------------------------------
    def _router(self) -> zmq.Socket[Any]:
        s = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable sends raise EHOSTUNREACH, never vanish
        s.setsockopt(
            zmq.ROUTER_HANDOVER, 1
        )  # a worker reconnecting under its routing id takes over
        s.setsockopt(zmq.SNDHWM, 10_000)
        s.setsockopt(zmq.RCVHWM, 100_000)  # 256 workers x a snapshot/s is far below this
        s.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)  # oversize: peer disconnected
        return s

    def _make_tmpdir(self) -> None:
        if self.tmpdir is None:
            _sweep_stale_dirs()
            # 0700: only we reach the ipc socket. The pid in the name lets a later run remove the
            # folder of a coordinator that was SIGKILLed (it could not clean up after itself).
            self.tmpdir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")

    def open(self) -> None:
        if self.n_local:
            self._make_tmpdir()
            s = self._router()
            s.bind(f"ipc://{self.tmpdir}/coordinator")
            self.sockets.append(s)
            self.poller.register(s, zmq.POLLIN)
        if self.n_remote:
            assert self.bind is not None
            s = self._router()
            if self._curve_secret:
                from barfast.keys import check_clients_dir, load_secret

                public, secret = load_secret(self._curve_secret, "--curve-secret")
                clients = check_clients_dir(self._curve_clients or "")
                self.auth = _ZapAuthenticator(self.ctx)
                self.auth.start()
                self.auth.configure_curve(domain="*", location=str(clients))
                s.curve_server = True
                s.curve_publickey = public
                s.curve_secretkey = secret
                mon_ep = f"inproc://barfast-monitor-{self.run_id}"
                s.monitor(
                    mon_ep,
                    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                )
                self.monitor = self.ctx.socket(zmq.PAIR)
                self.monitor.connect(mon_ep)
            try:
                s.bind(self.bind)
            except zmq.ZMQError as exc:
                s.close()
                raise UsageError(f"cannot bind {self.bind}: {exc.strerror}") from None
            self.sockets.append(s)
            self.poller.register(s, zmq.POLLIN)

    def spawn_local(self) -> None:
        """Start the local workers: forked before our first ZeroMQ socket exists (run() calls this
        before open()), else as new interpreters (spawn.py says why and when)."""
        self._make_tmpdir()
        assert self.tmpdir is not None
        endpoint = f"ipc://{self.tmpdir}/coordinator"
        fork = self.worker_cmd is None and not self.sockets and spawn.can_fork()
        cmd = self.worker_cmd or [sys.executable, "-m", "barfast.worker"]
        if fork:
            spawn.prepare_fork()
        for i in range(self.n_local):
            err_path = Path(self.tmpdir) / f"worker-{i}.stderr"
            p: WorkerProcess
            try:
                if fork:
                    p = spawn.fork_worker(endpoint, err_path)
                else:
                    p = spawn.exec_worker(cmd, endpoint, err_path)
            except OSError as exc:  # EAGAIN (process limit), ENOMEM, a missing interpreter...
                raise NoLoadError(
                    f"cannot start local worker {i + 1} of {self.n_local}: {exc.strerror or exc}"
                ) from None
            self.procs.append(p)
            self.stderr_files[p.pid] = err_path

    def _stderr_tail(self, pid: int) -> str:
        path = self.stderr_files.get(pid)
        if path is None:
            return ""
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    # -- messaging --------------------------------------------------------------------------------
    def send(self, peer: Peer, kind: MsgKind, body: dict[str, Any] | None = None) -> bool:
        try:
            peer.sock.send_multipart([peer.ident, protocol.encode(kind, body)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # EHOSTUNREACH (peer gone, ROUTER_MANDATORY) or EAGAIN (HWM)
            return False

    def broadcast(
        self, kind: MsgKind, body: dict[str, Any] | None = None, alive_only: bool = True
    ) -> None:
        frame = protocol.encode(kind, body)  # once, not once per worker
        for p in list(self.peers.values()):
            if not alive_only or p.alive:
                # gone (ROUTER_MANDATORY) or stalled: liveness decides, not this send
                with contextlib.suppress(zmq.ZMQError):
                    p.sock.send_multipart([p.ident, frame], zmq.NOBLOCK)

    def _receive(self, timeout_ms: int) -> list[tuple[zmq.Socket[Any], bytes, bytes]]:
        out = []
        events = dict(self.poller.poll(timeout_ms))
        for s in self.sockets:
            if s not in events:
                continue
            for _ in range(10_000):  # drain, but bounded: one burst cannot starve the loop
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) == 2:
                    out.append((s, frames[0], frames[1]))
        return out

    def _report_refusals(self) -> None:
        if self.auth is not None:
            while True:
                try:
                    addr, reason = self.auth.refusals.get_nowait()
                except queue.Empty:
                    break
                if addr not in self.refused:  # a refused DEALER retries; say it once
                    self.refused.add(addr)
                    why = "not authorised" if reason == "Unknown key" else reason
                    _log(
                        f"refused worker from {addr}: {why} (its public key is not in --curve-clients)"
                    )
        if self.monitor is not None:
            from zmq.utils.monitor import recv_monitor_message

            while True:
                try:
                    ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
                except zmq.Again:
                    break
                key = f"handshake:{ev.get('endpoint')!r}"
                if key not in self.refused:
                    self.refused.add(key)
                    _log(
                        "refused a worker: CURVE handshake failed "
                        "(does it use this coordinator's public key as --curve-server?)"
                    )

    def _handle(self, sock: zmq.Socket[Any], ident: bytes, frame: bytes) -> None:
        key = (self.sockets.index(sock), ident)
        peer = self.peers.get(key)
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolVersionError as exc:
            tmp = Peer(sock, ident, 0, "?", 0, "?", False, time.monotonic())
            self.send(tmp, MsgKind.ERROR, {"reason": str(exc), "code": int(ExitCode.NO_LOAD)})
            if ident.hex() not in self.refused:
                self.refused.add(ident.hex())
                _log(f"refused a worker: {exc}")
            return
        except ProtocolError as exc:
            who = peer.describe() if peer else "an unknown peer"
            _log(f"ignored a message from {who}: {exc}")
            return
        now = time.monotonic()
        if peer is None:
            if msg.kind != MsgKind.HELLO:
                return  # a worker from a previous run, or noise: it will time out on its own
            local = self.n_local > 0 and key[0] == 0
            wanted = self.n_local if local else self.n_remote
            have = sum(1 for p in self.peers.values() if p.local == local)
            b = msg.body
            if have >= wanted or self.start_t:
                tmp = Peer(sock, ident, b["pid"], b["host"], b["cpus"], "", local, now)
                self.send(tmp, MsgKind.STOP, {"reason": "this run has all the workers it expects"})
                return
            peer = Peer(sock, ident, b["pid"], b["host"], b["cpus"], b.get("name", ""), local, now)
            if local:
                peer.proc = next((p for p in self.procs if p.pid == peer.pid), None)
            self.peers[key] = peer
            return
        peer.last_heard = now
        kind = msg.kind
        if kind in (MsgKind.SNAPSHOT, MsgKind.FINAL):
            if peer.state == "failed":
                return
            # A lost worker's snapshots that were already on their way are still its real data
            # (cumulative counters: the Merger keeps the newest), so they are merged too.
            body = msg.body
            if body["worker"] != peer.index:
                _log(f"ignored a snapshot from {peer.describe()}: it says worker {body['worker']}")
                return
            try:
                self.merger.add(body)
                peer.snapshots += 1
                peer.last_counters = body["counters"]
            except ProtocolError as exc:  # refused whole and counted by the Merger (report says so)
                _log(f"ignored a snapshot from {peer.describe()}: {exc}")
            if kind == MsgKind.FINAL and peer.state != "lost":
                peer.state = "done"
        elif kind == MsgKind.ACK and peer.state == "planned":
            peer.state = "ready"
        elif kind == MsgKind.ERROR:
            reason = msg.body["reason"]
            code = int(msg.body.get("code", ExitCode.NO_LOAD))
            if code not in (ExitCode.USAGE, ExitCode.NO_LOAD):
                code = int(ExitCode.NO_LOAD)
            self.failed.append((peer, reason, code))
            peer.state = "failed"
            _log(f"{peer.describe()} failed: {reason}")
        # HELLO repeats, HEARTBEAT, BYE: liveness only

    def _check_liveness(self) -> None:
        now = time.monotonic()
        for p in self.peers.values():
            if not p.alive:
                continue
            why = None
            if p.proc is not None and p.proc.poll() is not None:
                # Its last messages (FINAL, BYE) may still be on their way through the socket:
                # give them PROC_EXIT_GRACE_S before calling an exited worker lost.
                if p.exited_at is None:
                    p.exited_at = now
                if now - p.exited_at >= PROC_EXIT_GRACE_S:
                    why = f"its process exited with code {p.proc.returncode}"
            elif now - p.last_heard >= WORKER_LOST_AFTER_S:
                why = f"silent for {now - p.last_heard:.1f} s"
            if why is None:
                continue
            if p.state in ("hello", "planned", "ready"):
                p.state = "failed"
                tail = self._stderr_tail(p.pid) if p.local else ""
                msg = f"{p.describe()} was lost before the start: {why}" + (
                    f": {tail}" if tail else ""
                )
                self.failed.append((p, msg, int(ExitCode.NO_LOAD)))
                _log(msg)
                continue
            p.state = "lost"
            self.lost.append(p)
            if self.merger is not None:
                self.merger.worker_lost(p.index)
            _log(f"{p.describe()} lost: {why}; its data up to its last snapshot is kept")
            if self.fail_on_worker_loss and not self.stop_sent:
                _log("stopping the run (--fail-on-worker-loss)")
                self.stop_all("a worker was lost")

    def _check_local_deaths_before_hello(self) -> None:
        known = {p.pid for p in self.peers.values() if p.local}
        for proc in self.procs:
            if proc.pid not in known and proc.poll() is not None:
                tail = self._stderr_tail(proc.pid)
                raise NoLoadError(
                    f"local worker (pid {proc.pid}) exited with code {proc.returncode} before "
                    f"saying hello" + (f": {tail}" if tail else "")
                )

    def heartbeat(self) -> None:
        self.broadcast(MsgKind.HEARTBEAT, {"state": "running" if self.start_t else "waiting"})

    def stop_all(self, reason: str) -> None:
        self.stop_sent = True
        self.broadcast(MsgKind.STOP, {"reason": reason})

    # -- phases -----------------------------------------------------------------------------------
    def _pump(self, until: Any, timeout_s: float, on_timeout: Any) -> None:
        """Poll/handle/heartbeat until `until()` is true; on timeout call on_timeout() (raises)."""
        deadline = time.monotonic() + timeout_s
        last_hb = 0.0
        while not until():
            if self.sigints:  # Ctrl-C before the start: nothing to report
                self.stop_all("interrupted")
                raise KeyboardInterrupt
            now = time.monotonic()
            if now >= deadline:
                on_timeout()
                return
            if now - last_hb >= HEARTBEAT_INTERVAL_S:
                self.heartbeat()
                last_hb = now
            for s, ident, frame in self._receive(POLL_MS):
                self._handle(s, ident, frame)
            self._report_refusals()
            self._check_local_deaths_before_hello()
            self._raise_failures()

    def _raise_failures(self) -> None:
        if self.failed:
            peer, reason, code = self.failed[0]
            self.stop_all("another worker failed")
            who = peer.describe() if peer else "a worker"
            exc = UsageError if code == ExitCode.USAGE else NoLoadError
            if reason.startswith(who):
                raise exc(reason)
            raise exc(f"{who} cannot run: {reason}")

    def wait_hellos(self) -> None:
        def hello_timeout() -> None:
            n_loc = sum(1 for p in self.peers.values() if p.local)
            n_rem = len(self.peers) - n_loc
            parts = []
            if n_loc < self.n_local:
                parts.append(f"{n_loc} of {self.n_local} local workers")
            if n_rem < self.n_remote:
                parts.append(
                    f"{n_rem} of {self.n_remote} remote workers at {self.bind} "
                    f"(is `barfast worker --connect tcp://HOST:PORT` running on them, with the "
                    f"right keys?)"
                )
            raise NoLoadError(
                f"only {' and '.join(parts)} said hello within {timeout:g} s; giving up"
            )

        timeout = max(
            LOCAL_HELLO_TIMEOUT_S if self.n_local else 0.0,
            self.wait_timeout_s if self.n_remote else 0.0,
        )
        self._pump(lambda: len(self.peers) >= self.n_total, timeout, hello_timeout)

    def send_plans(self) -> None:
        from barfast.plan import split_plan

        plans = split_plan(self.cfg, self.n_total)
        if len(plans) != self.n_total:  # run_command sized the run with effective_workers()
            raise UsageError(f"the plan has {len(plans)} shares for {self.n_total} workers")
        ordered = sorted(self.peers.values(), key=lambda p: (not p.local, p.last_heard))
        for i, (peer, plan) in enumerate(zip(ordered, plans, strict=True)):
            peer.index = i
            peer.state = "planned"
            self.send(
                peer, MsgKind.PLAN, {"worker": i, "run_id": self.run_id, "plan": plan.to_dict()}
            )

        def ack_timeout() -> None:
            slow = [p.describe() for p in self.peers.values() if p.state == "planned"]
            raise NoLoadError(
                f"no answer to the plan within {ACK_TIMEOUT_S:g} s from {', '.join(slow)}"
            )

        self._pump(
            lambda: all(p.state == "ready" for p in self.peers.values()),
            ACK_TIMEOUT_S,
            ack_timeout,
        )

    def start(self) -> None:
        from barfast.result import Merger

        self.merger = Merger()
        delay = REMOTE_START_DELAY_NS if self.n_remote else LOCAL_START_DELAY_NS
        self.broadcast(MsgKind.START, {"start_in_ns": delay})
        self.start_t = time.monotonic() + delay / NS_PER_S
        for p in self.peers.values():
            p.state = "running"

    def _tick_progress(self) -> None:
        if not self.progress.active:
            return
        now = time.monotonic()
        elapsed = max(0.0, now - self.start_t)
        remaining = (
            max(0.0, self.cfg.duration_ns / NS_PER_S - elapsed) if self.cfg.duration_ns else None
        )
        tot = self.merger.totals()
        p50 = p99 = rps = None
        if elapsed >= 1.0 + SERIES_SETTLE_S:
            # The last complete second of the merged per-second series, once every worker's
            # snapshot for it has had time to arrive: its exact count is the req/s shown. (The
            # difference of cumulative totals between two ticks aliases: workers snapshot on their
            # own phase, so one tick could hold two of a worker's seconds and show 1.8 x the rate.)
            pt = self.merger.series_point(int(elapsed - SERIES_SETTLE_S) - 1)
            if pt is not None and pt.get("requests"):
                p50, p99 = pt.get("p50_ms"), pt.get("p99_ms")
                rps = float(pt["requests"])
        self.progress.tick(
            rps=rps,
            p50_ms=p50,
            p99_ms=p99,
            elapsed_s=elapsed,
            remaining_s=remaining,
            requests=int(tot.get("completed", 0)),
            target_requests=self.cfg.requests,
            errors=int(tot.get("errors", 0)),
            workers_alive=sum(1 for p in self.peers.values() if p.state == "running"),
            workers_total=self.n_total,
        )

    def supervise(self) -> None:
        """The run: merge, heartbeat, watch, until every worker is done or lost."""
        planned_end = (
            self.start_t + (self.cfg.duration_ns + self.cfg.timeout_ns) / NS_PER_S + END_GRACE_S
            if self.cfg.duration_ns
            else None
        )
        stop_deadline: float | None = None
        last_hb = last_tick = last_check = 0.0
        handled_sigints = 0
        while any(p.state == "running" for p in self.peers.values()):
            now = time.monotonic()
            if self.sigints > handled_sigints:
                handled_sigints = self.sigints
                if self.interrupted:  # a second Ctrl-C: stop waiting for finals
                    break
                self.interrupted = True
                _log("interrupted: stopping workers (Ctrl-C again to skip their final snapshots)")
                self.stop_all("interrupted")
            if now - last_hb >= HEARTBEAT_INTERVAL_S:
                self.heartbeat()
                last_hb = now
            if now - last_tick >= 1.0:
                self._tick_progress()
                last_tick = now
            if planned_end is not None and now > planned_end and not self.stop_sent:
                _log("workers ran past the planned end; stopping them")
                self.stop_all("past the planned end")
            if self.stop_sent and stop_deadline is None:
                stop_deadline = now + STOP_GRACE_S
            if stop_deadline is not None and now > stop_deadline:
                for p in self.peers.values():
                    if p.state == "running":
                        p.state = "lost"
                        self.lost.append(p)
                        self.merger.worker_lost(p.index)
                        _log(f"{p.describe()} sent no final snapshot after STOP")
                break
            batch = self._receive(POLL_MS)
            for s, ident, frame in batch:
                self._handle(s, ident, frame)
            if batch:
                # Coalesce wakeups: with hundreds of workers, snapshots arrive all through the
                # second; waking for each costs more than the message. ZeroMQ queues meanwhile.
                time.sleep(COALESCE_S)
            if now - last_check >= LIVENESS_CHECK_S:  # not per message: 256 workers
                self._report_refusals()
                self._check_liveness()
                last_check = now

    def request_interrupt(self, signum: int = 0, frame: Any = None) -> None:
        """Signal handler: only counts. A KeyboardInterrupt raised at an arbitrary bytecode could
        leave the Merger half-updated; the loops look at the count every POLL_MS instead."""
        self.sigints += 1

    def close(self) -> None:
        self.progress.close()
        if self.peers and not self.stop_sent:
            self.broadcast(MsgKind.STOP, {"reason": "run over"})
        deadline = time.monotonic() + EXIT_WAIT_S
        for proc in self.procs:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(1.0)
        for s in self.sockets:
            s.close(linger=200)  # the last STOPs may still be queued
        if self.monitor is not None:
            self.monitor.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def run(self) -> None:
        if self.n_local:
            self.spawn_local()  # first: a fork must happen while we are one thread
        self.open()
        if self.n_remote:
            _log(f"waiting for {self.n_remote} remote worker(s) at {self.bind}")
        self.wait_hellos()
        self.send_plans()
        self.start()
        self.supervise()

    def workers_info(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.peers.values(), key=lambda p: p.index):
            out.append(
                {
                    "worker": p.index,
                    "host": p.host,
                    "pid": p.pid,
                    "local": p.local,
                    "cpus": p.cpus,
                    "state": p.state,
                    "lost": p.state == "lost",
                    "snapshots": p.snapshots,
                    "completed": int(p.last_counters.get("completed", 0)),
                    "errors": int(p.last_counters.get("errors", 0)),
                }
            )
        return out


# --- the command -----------------------------------------------------------------------------------
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

    from barfast._core import FD_HEADROOM
    from barfast.plan import split_plan

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
    naps: bool = True,
    workers: int | None = None,
    latency: bool = False,
    output: str | None = None,
    json_out: bool = False,
    quiet: bool = False,
    bind: str | None = None,
    expect_workers: int = 0,
    wait_timeout: str = "30s",
    curve_secret: str | None = None,
    curve_clients: str | None = None,
    fail_on_worker_loss: bool = False,
) -> int:
    """`barfast run`: validate, coordinate local and remote workers, print the report, exit code."""
    from barfast.config import DEFAULT_DURATION_NS, DEFAULT_EMBEDDED_DURATION_NS
    from barfast.local import check_output_path, embedded_target

    _decide_workers(workers, expect_workers)  # validate -w early
    check_output_path(output)  # fail before the run, not after it
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
        bind, loopback = _check_bind(bind)
        if curve_secret:
            from barfast.keys import check_clients_dir, load_secret

            load_secret(curve_secret, "--curve-secret")
            check_clients_dir(curve_clients or "")
        elif not loopback:
            _log(
                f"warning: binding {bind} without CURVE: anyone who reaches it can join the run "
                "and see its plan (use --curve-secret and --curve-clients)"
            )
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
    )
    out = dict(latency=latency, output=output, json_out=json_out)
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
    cfg = build_run_config(url, workers=n_total, **options)
    from barfast.plan import effective_workers

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
) -> int:
    from barfast.local import emit, outcome
    from barfast.report import json as report_json
    from barfast.result import config_info

    info = config_info(cfg, coord.n_total)
    info.update(extra)
    rep = coord.merger.report(info)
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
    emit(rep, latency=latency, json_out=json_out, output=output)
    if coord.interrupted:
        _log("interrupted: the report above is partial")
        return int(ExitCode.INTERRUPTED)
    if coord.lost:
        names = ", ".join(p.describe() for p in coord.lost)
        _log(f"worker lost: {names}; its data up to its last snapshot is in the report (exit 3)")
        return int(WorkerLostError.exit_code)
    if coord.failed:
        return max(code for _, _, code in coord.failed)
    return int(code)


__all__ = ["Coordinator", "Peer", "run_command"]
