"""EngineRunner: one engine, one ring, one aggregator, one snapshot stream (a worker's whole job).

The engine runs in a thread with the GIL released (Engine.run() is nogil for its whole loop); this
thread drains the ring every DRAIN_INTERVAL_S to DRAIN_INTERVAL_MAX_S (adaptive, below) into an
Aggregator and emits a snapshot dict every SNAPSHOT_INTERVAL_S plus a final one. Data flows one
way: engine -> ring -> aggregator -> snapshot callback; nothing here ever talks back to the engine
except stop().

Interval numbering: snapshot k (k = 0, 1, ...) is emitted at start + (k+1) s and carries interval k,
the samples drained during [k s, (k+1) s). The final snapshot carries the interval the run ended in,
except that a run ending within FINAL_FOLD_S after a boundary folds its tail into the previous second
(so a 3 s run gives 3 points, not 3 plus a 1 ms sliver).
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from barfast.config import NS_PER_S, SNAPSHOT_INTERVAL_S
from barfast.engine.aggregate import Aggregator
from barfast.engine.kinds import ErrorKind
from barfast.fanout.plan import WorkerPlan

# The drain wait adapts to the rate the ring fills at: a quarter of the time the ring would take to
# fill at the rate of the last drain, within [DRAIN_INTERVAL_S, DRAIN_INTERVAL_MAX_S], and never past
# the next snapshot boundary (so a second's samples are drained right at its end). Each wake-up of
# this Python thread costs ~30 us of CPU on this project's VMs: at 1k req/s a fixed 10 ms wait cost
# ~3 us per request (benchmarks/bench_pacing.py), at 100 ms it costs a tenth of that.
DRAIN_INTERVAL_S = 0.010
DRAIN_INTERVAL_MAX_S = 0.100
FINAL_FOLD_S = 0.1
DEFAULT_RING_CAPACITY = 1 << 16
MAX_RING_CAPACITY = 1 << 22
RING_HEADROOM_S = 0.25  # the ring holds at least this long of samples at the planned rate

Snapshot = dict[str, Any]
EngineFactory = Callable[[Any, WorkerPlan, int], Any]


def ring_capacity_for(plan: WorkerPlan, minimum: int = DEFAULT_RING_CAPACITY) -> int:
    """A power of two holding RING_HEADROOM_S of samples at the plan's peak rate (at least minimum)."""
    peak = max([plan.rate, *(r for _, r in plan.stages)])
    want = max(minimum, int(peak * RING_HEADROOM_S))
    cap = 1
    while cap < want:
        cap <<= 1
    return min(cap, max(MAX_RING_CAPACITY, minimum))


def default_engine(ring: Any, plan: WorkerPlan, start_ns: int) -> Any:
    """The native engine for a plan (barfast.engine._core.Engine)."""
    from barfast.engine._core import Engine  # type: ignore[attr-defined]

    eng = Engine(
        ring,
        addr=plan.addr,
        port=plan.port,
        family=plan.family,
        request=plan.request,
        head=plan.head,
        connections=plan.connections,
        max_connections=plan.max_connections,
        requests=plan.requests,
        duration_ns=plan.duration_ns,
        timeout_ns=plan.timeout_ns,
        connect_timeout_ns=plan.connect_timeout_ns,
        rate=plan.rate,
        stages=list(plan.stages),
        arrival=plan.arrival_code,
        seed=plan.seed,
        start_ns=start_ns,
        endpoints=[(*ep[:3], list(ep[3]), *ep[4:]) for ep in plan.endpoints] or None,
        max_body=plan.max_body,
        feeders=list(plan.feeders),
        seq_start=plan.worker_index,  # {{ seq }}: worker i takes i, i + n, i + 2n, ...
        seq_step=plan.workers,
        unix_path=plan.unix_path,
        tls=plan_tls(plan),
        flows=list(plan.flows),
        nvars=plan.nvars,
    )
    if not plan.naps:
        eng._set_closed_nap_ns(0)  # block on the sockets, as wrk does
    return eng


def plan_tls(plan: WorkerPlan) -> dict[str, Any] | None:
    """The Engine's `tls` argument from a plan (None: plain HTTP)."""
    if not plan.tls:
        return None
    return {
        "host": plan.tls_host,
        "sni": plan.tls_sni,
        "verify": plan.tls_verify,
        "cafile": plan.tls_cafile,
        "certfile": plan.tls_cert,
        "keyfile": plan.tls_key,
        "resume": plan.tls_resume,
        "alpn": b"\x08http/1.1",  # ALPN wire format: length-prefixed names
    }


@contextlib.contextmanager
def batch_policy() -> Iterator[None]:
    """Run the calling (draining) thread under SCHED_BATCH, then restore its policy.

    The engine thread shares a CPU with this one. A normal thread waking up every DRAIN_INTERVAL_S
    preempts the engine at once, which an open loop pays as send lag; a SCHED_BATCH thread keeps
    its fair share of the CPU but never preempts on wake-up, so it runs when the engine sleeps or at
    the next scheduler tick (sched(7)). Measured at 50k req/s (bench_pacing.py, medians of 3
    rounds, modes auto vs auton): send-lag p99 95 vs 163 µs in one run, 75 vs 89 µs in the next,
    i.e. a small gain inside this VM's noise. Unprivileged; a no-op where the policy is not
    available."""
    tid = threading.get_native_id()
    try:
        policy = os.sched_getscheduler(tid)
        param = os.sched_getparam(tid)
        if policy != os.SCHED_OTHER:
            policy = -1  # real-time or idle already: the caller chose it, leave it alone
        else:
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        policy = -1
    try:
        yield
    finally:
        if policy != -1:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(tid, policy, param)


def drain_wait_s(drained: int, elapsed_s: float, capacity: int, prev_s: float) -> float:
    """The next drain wait: a quarter of the time `capacity` records take to arrive at the rate
    just seen (`drained` in `elapsed_s`), clamped to [DRAIN_INTERVAL_S, DRAIN_INTERVAL_MAX_S]. A
    drain that found nothing keeps the previous wait: a pause says nothing about the next burst."""
    if drained <= 0:
        return prev_s
    fill_s = capacity * max(elapsed_s, 1e-6) / drained
    return min(DRAIN_INTERVAL_MAX_S, max(DRAIN_INTERVAL_S, fill_s / 4))


def monotonic_ns() -> int:
    # CLOCK_MONOTONIC, the engine's clock (time.monotonic_ns uses it on Linux).
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def error_labels(counters: dict[str, int]) -> dict[str, int]:
    """Engine counters err_<kind> -> {kind label: count}, non-zero kinds only."""
    out = {}
    for kind in ErrorKind:
        if kind is ErrorKind.NONE:
            continue
        n = int(counters.get(f"err_{kind.label}", 0))
        if n:
            out[kind.label] = n
    return out


class EngineRunner:
    """Run one plan to completion; see the module docstring. `stop()` may be called from any thread."""

    def __init__(
        self,
        plan: WorkerPlan,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        ring_capacity: int = DEFAULT_RING_CAPACITY,
        *,
        engine_factory: EngineFactory | None = None,
        worker_id: int | None = None,
    ) -> None:
        self.plan = plan
        self.on_snapshot = on_snapshot
        self.ring_capacity = ring_capacity_for(plan, ring_capacity)
        self.worker_id = plan.worker_index if worker_id is None else worker_id
        self._engine_factory = engine_factory or default_engine
        self._engine: Any = None
        self._stop_requested = threading.Event()
        # a flow's iterations are recorded in a slot of their own after the endpoints
        self.aggregator = Aggregator(
            len(plan.endpoints) + len(plan.flows), open_loop=bool(plan.open_loop)
        )
        self.interrupted = False
        self.no_load = False  # stopped early: every connect failed during the first interval
        self.drains = 0  # drain passes during the run (the wake-ups of this thread)
        self._seq = 0
        self._t0 = 0
        self._rusage0 = resource.getrusage(resource.RUSAGE_SELF)
        self._rusage0_ns = monotonic_ns()  # when _rusage0 was read: the CPU figures' interval
        self._ready_ns = 0
        self._engine_error: BaseException | None = None
        self._end_ns = 0
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the engine to stop; run() then drains the ring and emits the final snapshot."""
        # No lock: this may run in a signal handler on the thread that is inside run(). Setting the
        # event before reading _engine (and run() doing the reverse) means one side always sees the
        # other.
        self._stop_requested.set()
        engine = self._engine
        if engine is not None:
            engine.stop()

    def interrupt(self) -> None:
        """Ctrl-C: stop like stop(), and mark the final snapshot "interrupted" (a partial run).

        Safe to call from a signal handler (it only sets flags and calls engine.stop())."""
        self.interrupted = True
        self.stop()

    # -- the run --------------------------------------------------------------------------------

    def run(self, start_ns: int = 0) -> Snapshot:
        """Run the engine to completion and return the final snapshot (also passed to on_snapshot).

        KeyboardInterrupt during the run stops the engine, drains, emits the final snapshot (marked
        "interrupted") and returns it; `self.interrupted` is then True.
        """
        from barfast.ring import Ring

        ring = Ring.create(self.ring_capacity)
        try:
            return self._run(ring, start_ns)
        finally:
            # Whatever went wrong here (a snapshot callback raising...), the engine must not outlive
            # the ring it writes into: stop it and wait for its thread before unmapping.
            self._join_engine()
            ring.close()

    def _join_engine(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.stop()
        while thread.is_alive():
            try:
                thread.join()
            except KeyboardInterrupt:
                self.stop()

    def _run(self, ring: Any, start_ns: int) -> Snapshot:
        self._rusage0 = resource.getrusage(resource.RUSAGE_SELF)
        self._rusage0_ns = monotonic_ns()
        self._t0 = start_ns or monotonic_ns()
        engine = self._engine_factory(ring, self.plan, self._t0)
        self._ready_ns = monotonic_ns()  # set up: from here to t0 the engine waits for its start
        self._engine = engine
        if self._stop_requested.is_set():
            engine.stop()
        thread = threading.Thread(target=self._engine_main, name="barfast-engine", daemon=True)
        self._thread = thread
        thread.start()
        next_snap_ns = self._t0 + int(SNAPSHOT_INTERVAL_S * NS_PER_S)
        interval = 0
        with batch_policy():
            return self._drain_loop(engine, ring, thread, next_snap_ns, interval)

    def _drain_loop(
        self, engine: Any, ring: Any, thread: threading.Thread, next_snap_ns: int, interval: int
    ) -> Snapshot:
        wait_s = DRAIN_INTERVAL_S
        last_ns = monotonic_ns()
        try:
            while thread.is_alive():
                to_snap_s = (next_snap_ns - monotonic_ns()) / NS_PER_S
                thread.join(max(0.0, min(wait_s, to_snap_s)))
                n = self._drain(ring)
                self.drains += 1
                now = monotonic_ns()
                wait_s = drain_wait_s(n, (now - last_ns) / NS_PER_S, self.ring_capacity, wait_s)
                last_ns = now
                if now >= next_snap_ns and thread.is_alive():
                    self._emit(engine, ring, interval, final=False)
                    interval += 1
                    next_snap_ns += int(SNAPSHOT_INTERVAL_S * NS_PER_S)
        except KeyboardInterrupt:
            self.interrupted = True
            engine.stop()
            while thread.is_alive():
                try:
                    thread.join()
                except KeyboardInterrupt:  # a second Ctrl-C: the engine is already stopping
                    engine.stop()
        # The engine has returned: everything it will ever publish is in the ring now.
        self._drain(ring, everything=True)
        end_ns = self._end_ns or monotonic_ns()
        final_interval = max(0, (end_ns - self._t0) // NS_PER_S)
        if (
            final_interval > 0
            and (end_ns - self._t0) - final_interval * NS_PER_S < FINAL_FOLD_S * NS_PER_S
        ):
            final_interval -= 1
        final_interval = max(final_interval, interval - 1 if interval else 0)
        snap = self._emit(engine, ring, int(final_interval), final=True)
        if self._engine_error is not None:
            raise self._engine_error
        return snap

    def _engine_main(self) -> None:
        try:
            self._engine.run()
        except BaseException as exc:  # surfaced by run() after draining
            self._engine_error = exc
        finally:
            self._end_ns = monotonic_ns()

    def _drain(self, ring: Any, everything: bool = False) -> int:
        """Move every pending record into the aggregator (zero-copy views, then consume)."""
        total = 0
        while True:
            first, second = ring.peek()
            n = len(first) + len(second)
            if n == 0:
                return total
            if len(first):
                self.aggregator.add(first)
            if len(second):
                self.aggregator.add(second)
            ring.consume(n)
            total += n
            if not everything:
                return total

    def _emit(self, engine: Any, ring: Any, interval: int, final: bool) -> Snapshot:
        counters = {k: int(v) for k, v in engine.counters().items()}
        status = {int(k): int(v) for k, v in engine.status_counts().items()}
        # exact per-endpoint counters (cumulative, like `counters`); a scenario's mix only
        endpoints = engine.endpoint_counts() if self.plan.endpoints else None
        if endpoints is not None and self.plan.flows:
            endpoints += engine.flow_counts()  # the flows' slots, after the endpoints
        part = self.aggregator.take_interval(wire=True)  # binary stored histoblobs (histoblob.py)
        tally = self.aggregator.tally()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        ru_ns = monotonic_ns()
        now = self._end_ns if final and self._end_ns else ru_ns
        snap: Snapshot = {
            "worker": self.worker_id,
            "seq": self._seq,
            "final": final,
            "interval": interval,
            "elapsed_ns": max(0, now - self._t0),
            "counters": counters,
            "status": status,
            **({"endpoints": endpoints} if endpoints is not None else {}),
            # per endpoint, the interval's histograms and status/error counts (snapshot.py); only
            # endpoints that got samples, and only in a mix of more than one
            **({"endpoint_interval": part["endpoints"]} if part["endpoints"] else {}),
            "errors": error_labels(counters),
            "hist": part["hist"],
            "samples": part["samples"],
            "cpu": {
                "user_s": ru.ru_utime - self._rusage0.ru_utime,
                "sys_s": ru.ru_stime - self._rusage0.ru_stime,
                # voluntary context switches of the worker's threads: each is a sleep, so each
                # is a wake-up paid on this CPU (the engine's dominate; see docs/measuring.md)
                "wakeups": ru.ru_nvcsw - self._rusage0.ru_nvcsw,
                # the wall time those figures cover (the engine's set-up, the run, the final
                # drain) less the wait for a start time ahead (the coordinator's START gives one;
                # the engine sleeps then). CPU shares use it: over elapsed_ns alone, a short
                # run's set-up and final drain made shares of 300-500 % (`-n 5`).
                "wall_s": max(0, ru_ns - self._rusage0_ns - max(0, self._t0 - self._ready_ns))
                / NS_PER_S,
            },
            # Beyond the snapshot's core fields, all optional for consumers:
            "interval_completed": part["completed"],
            "interval_errors": part["errors"],
            "clamped": part["clamped"],
            "ring": {
                "dropped": int(getattr(ring, "dropped", 0)),
                "seq_gaps": int(tally["seq_gaps"]),
                "samples_total": int(tally["samples"]),
            },
            "sys_errno": {
                ErrorKind(k).label if k in ErrorKind._value2member_map_ else str(k): {
                    int(e): int(n) for e, n in v.items()
                }
                for k, v in tally["sys_errno"].items()
                if v
            },
            "interrupted": self.interrupted,
        }
        if self.plan.tls:
            info = engine.tls_info()
            snap["tls_failure"] = info["reason"][:200]
            reasons = {k[:200]: int(v) for k, v in info["reasons"].items()}
            if info["other"]:
                reasons["other reasons"] = int(info["other"])
            snap["tls_reasons"] = reasons
        self._seq += 1
        if not final and self._no_load(counters):
            # Every connection attempt failed for a whole snapshot interval and none ever succeeded:
            # more of the same measures nothing (exit 3 follows), so end the run now.
            self.no_load = True
            self.stop()
        if self.on_snapshot is not None:
            self.on_snapshot(snap)
        return snap

    def _no_load(self, counters: dict[str, int]) -> bool:
        return (
            counters.get("completed", 0) == 0
            and counters.get("connects", 0) == 0
            and max(counters.get("err_connect", 0), counters.get("connect_failures", 0))
            >= self.plan.connections
        )
