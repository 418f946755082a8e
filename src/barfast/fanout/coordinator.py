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

Neighbours: spawn.LocalWorkers starts and reaps the local processes, admission.Admission does CURVE
and reports refused peers, barfast.command builds the Coordinator for `barfast run` and reports.

Why ~530 lines in one module: it is one state machine (the run's sequence above) and every
method touches the same sockets and peer table from the one coordinator thread; spawning
(spawn.py), admission and CURVE (admission.py), merging (result/merge.py) and progress
(report/progress.py) live apart.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import zmq

from barfast.config import HEARTBEAT_INTERVAL_S, NS_PER_S, WORKER_LOST_AFTER_S, RunConfig
from barfast.fanout import protocol
from barfast.fanout.admission import Admission
from barfast.fanout.plan import split_plan
from barfast.fanout.protocol import MsgKind
from barfast.fanout.spawn import LocalWorkers, WorkerProcess
from barfast.report.progress import Progress, tick_run
from barfast.result import Merger, config_info
from barfast.status import ExitCode, NoLoadError, ProtocolError, UsageError

POLL_MS = 100
LOCAL_HELLO_TIMEOUT_S = 30.0  # an exec'd local worker imports numpy/hdrh/zmq: seconds when loaded
ACK_TIMEOUT_S = 15.0
# START -> first request, local workers: time to receive START and build the engine before its
# start time. The build takes ~1 ms plus ~2.5 us per connection (26 ms for 10,000; the same under
# two CPU hogs), so 40 ms plus 5 us per connection of the largest share leaves it twice that.
LOCAL_START_DELAY_NS = 40_000_000
LOCAL_START_DELAY_PER_CONN_NS = 5_000
REMOTE_START_DELAY_NS = 500_000_000
STOP_GRACE_S = 3.0  # after STOP, wait this long for FINALs
END_GRACE_S = 5.0  # past the planned end (+ request timeout) before the coordinator sends STOP
LIVENESS_CHECK_S = 0.2  # how often supervise() looks for silent or dead workers
PROC_EXIT_GRACE_S = 0.5  # an exited local worker's FINAL may still be in the socket
OBSERVE_INTERVAL_S = 0.25  # observers' ticks: a live page at most this stale behind the merge
COALESCE_S = 0.02  # supervise(): at most ~50 wakeups/s however many workers


def _log(msg: str) -> None:
    print(f"barfast: {msg}", file=sys.stderr, flush=True)


# --- workers as the coordinator sees them ---------------------------------------------------------------------------------------
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
    pod: str = ""
    index: int = -1
    state: str = "hello"  # hello -> planned -> ready -> running -> done | lost | failed
    snapshots: int = 0
    exited_at: float | None = None
    last_counters: dict[str, int] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state in ("hello", "planned", "ready", "running")

    def describe(self) -> str:
        if self.pod:  # Kubernetes: the pod's name is what a user can look up
            return f"worker {self.index} (pod {self.pod})"
        where = "local" if self.local else "remote"
        return f"worker {self.index} ({where} {self.host} pid {self.pid})"


class Coordinator:
    """One run. `run()` ends when every worker is done or lost; barfast.command reports it."""

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
        on_tick: Any = None,
        observers: list[Any] | None = None,
    ):
        self.cfg = cfg
        self.report_info: dict[str, Any] | None = None  # the report's config (run_command sets it)
        self.report_meta: dict[str, Any] | None = None  # and its meta
        self.n_local = local_workers
        self.n_remote = expect_workers
        self.most_connections = 0  # the largest share of connections (send_plans)
        self.n_total = local_workers + expect_workers
        self.bind = bind
        self.wait_timeout_s = wait_timeout_s
        self.fail_on_worker_loss = fail_on_worker_loss
        self.progress = progress or Progress("off")
        self.local = LocalWorkers(local_workers, worker_cmd)
        self.run_id = uuid.uuid4().hex
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sockets: list[zmq.Socket[Any]] = []
        self.poller = zmq.Poller()
        self.peers: dict[tuple[int, bytes], Peer] = {}
        self.admission = Admission(self.ctx, self.run_id)
        self.lost: list[Peer] = []
        self.failed: list[tuple[Peer | None, str, int]] = []
        self.interrupted = False
        self.sigints = 0  # incremented by the SIGINT/SIGTERM handler; the loops act on it
        self.stop_sent = False
        self.start_t = 0.0
        self.merger: Any = None
        # called about once a second with (merger, seconds since the start); a string it returns
        # stops every worker with that reason (thresholds' abort_on_fail: slo/watch.py)
        self.on_tick = on_tick
        self.aborted: str | None = None
        # started(coord) at START, tick(coord) about once a second, finished(coord) when every
        # worker is done or lost: live /metrics (metrics/live.py), target scrapes (metrics/scrape.py)
        self.observers = list(observers or [])
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

    def open(self) -> None:
        if self.n_local:
            s = self._router()
            s.bind(self.local.endpoint)
            self.sockets.append(s)
            self.poller.register(s, zmq.POLLIN)
        if self.n_remote:
            assert self.bind is not None
            s = self._router()
            if self._curve_secret:
                self.admission.secure(s, self._curve_secret, self._curve_clients or "")
            try:
                s.bind(self.bind)
            except zmq.ZMQError as exc:
                s.close()
                raise UsageError(f"cannot bind {self.bind}: {exc.strerror}") from None
            self.sockets.append(s)
            self.poller.register(s, zmq.POLLIN)

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

    def _handle(self, sock: zmq.Socket[Any], ident: bytes, frame: bytes) -> None:
        key = (self.sockets.index(sock), ident)
        peer = self.peers.get(key)
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolVersionError as exc:
            tmp = Peer(sock, ident, 0, "?", 0, "?", False, time.monotonic())
            self.send(tmp, MsgKind.ERROR, {"reason": str(exc), "code": int(ExitCode.NO_LOAD)})
            self.admission.refuse_once(ident.hex(), f"refused a worker: {exc}")
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
            peer.pod = b.get("pod", "")
            if local:
                peer.proc = self.local.find(peer.pid)
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
                tail = self.local.stderr_tail(p.pid) if p.local else ""
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
            self.admission.report_refusals()
            self.local.check_deaths({p.pid for p in self.peers.values() if p.local})
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
        plans = split_plan(self.cfg, self.n_total)
        if len(plans) != self.n_total:  # run_command sized the run with effective_workers()
            raise UsageError(f"the plan has {len(plans)} shares for {self.n_total} workers")
        self.most_connections = max(max(p.connections, p.max_connections) for p in plans)
        ordered = sorted(self.peers.values(), key=lambda p: (not p.local, p.last_heard))
        # the report's `config` as the caller will write it (remote workers keep it in their
        # result files, so `barfast merge` rebuilds the same report)
        report_config = self.report_info or config_info(self.cfg, self.n_total)
        for i, (peer, plan) in enumerate(zip(ordered, plans, strict=True)):
            peer.index = i
            peer.state = "planned"
            body = {"worker": i, "run_id": self.run_id, "plan": plan.to_dict()}
            if not peer.local:  # remote workers keep their own result file (result/workerfile.py)
                body["report_config"] = report_config
                if self.report_meta is not None:
                    body["report_meta"] = self.report_meta
            self.send(peer, MsgKind.PLAN, body)

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
        self.merger = Merger()
        delay = (
            REMOTE_START_DELAY_NS
            if self.n_remote
            else LOCAL_START_DELAY_NS + LOCAL_START_DELAY_PER_CONN_NS * self.most_connections
        )
        self.broadcast(MsgKind.START, {"start_in_ns": delay})
        self.start_t = time.monotonic() + delay / NS_PER_S
        for p in self.peers.values():
            p.state = "running"
        for o in self.observers:
            o.started(self)

    def _tick_progress(self) -> None:
        tick_run(
            self.progress,
            self.merger,
            start_t=self.start_t,
            duration_s=self.cfg.duration_ns / NS_PER_S if self.cfg.duration_ns else None,
            # flows: -n counts iterations, not the requests shown here
            target_requests=0 if self.cfg.flows else self.cfg.requests,
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
        last_hb = last_tick = last_check = last_observe = 0.0
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
                if self.on_tick is not None and not self.stop_sent and now >= self.start_t:
                    reason = self.on_tick(self.merger, now - self.start_t)
                    if reason:
                        self.aborted = reason
                        _log(reason)
                        self.stop_all("a threshold failed")
            if self.observers and now - last_observe >= OBSERVE_INTERVAL_S:
                last_observe = now
                for o in self.observers:
                    o.tick(self)
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
                self.admission.report_refusals()
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
        self.local.reap()
        for s in self.sockets:
            s.close(linger=200)  # the last STOPs may still be queued
        self.admission.close()
        self.ctx.term()
        self.local.remove_folder()

    def run(self) -> None:
        if self.n_local:
            # First: a fork must happen while we are one thread (no ZeroMQ socket yet).
            self.local.start(may_fork=not self.sockets)
        self.open()
        if self.n_remote:
            _log(f"waiting for {self.n_remote} remote worker(s) at {self.bind}")
        self.wait_hellos()
        self.send_plans()
        self.start()
        try:
            self.supervise()
        finally:
            for o in self.observers:
                o.finished(self)

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
                    **({"pod": p.pod} if p.pod else {}),
                }
            )
        return out


__all__ = ["Coordinator", "Peer"]
