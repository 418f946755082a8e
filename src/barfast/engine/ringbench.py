"""`barfast bench ring`: the sample ring's own throughput, cross-process.

Each mode forks a producer process and consumes in this process, the two pinned to different CPUs
when there are two (os.sched_setaffinity), over a fresh anonymous MAP_SHARED ring:

- batched:      the native producer (nogil) reserves up to BATCH slots, fills every field in place
                and publishes them with ONE store-release; the native consumer reads every
                published record (whole batches), checks its seq, and store-releases once per batch.
- single:       the native producer calls ring_publish() per record (copy + store-release each);
                same native consumer.
- python_batch: a Python producer publishes numpy arrays of RECORD_DTYPE (Ring.publish: at most
                two memcpy + one store-release per call); a Python consumer peeks zero-copy numpy
                views, checks the seq column vectorised, and consumes.

The producers here wait out a full ring (a real producer drops instead) so every record crosses:
the rate is records / (consumer's last record - producer's first reserve), CLOCK_MONOTONIC.
Figures depend on the machine and its neighbours; run under `flock /tmp/barfast-bench.lock`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from barfast.engine import _core
from barfast.ring import RECORD_SIZE, Ring, synthetic_records
from barfast.status import UsageError

NATIVE_BATCH = 4096  # records per store-release in batched mode (256 KiB of records)
PYTHON_BATCH = 8192  # records per Ring.publish() call in python_batch mode
CONSUMER_MIN_BATCH = 1024  # the native consumer waits (<= 50 us) for this many before reading
TIMEOUT_S = 60.0  # a stuck side gives up instead of hanging the benchmark
MODES = ("batched", "single", "python_batch")
REPEAT = 3  # runs per mode; the median is reported


def _cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return cpus[0], cpus[1]
    return None, None


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


# ---------------------------------------------------------------------------- producers (child)


def _produce_native(ring: Ring, n: int, single: bool) -> tuple[int, int]:
    published, _dropped, t0, _t1, timed_out = _core._bench_produce(
        ring,
        n,
        batch=NATIVE_BATCH,
        single=single,
        retry=True,
        timeout_s=TIMEOUT_S,
        full=False,
    )
    return t0, int(published == n and not timed_out)


def _produce_python(ring: Ring, n: int) -> tuple[int, int]:
    batch = min(PYTHON_BATCH, max(1, ring.capacity // 2))
    recs = synthetic_records(0, batch)
    seqcol = recs["seq"]
    ramp = np.arange(batch, dtype=np.uint64)
    deadline = time.monotonic() + TIMEOUT_S
    t0 = time.monotonic_ns()
    seq = 0
    while seq < n:
        k = min(batch, n - seq)
        np.add(ramp, np.uint64(seq), out=seqcol)  # a new batch: only seq changes (vectorised)
        view = recs[:k]
        sent = 0
        spins = 0
        while sent < k:
            got = ring.publish(view[sent:], count_dropped=False)
            sent += got
            if got == 0:  # full: wait for the consumer (a real producer would drop)
                spins += 1
                if spins % 64 == 0:
                    os.sched_yield()
                    if time.monotonic() > deadline:
                        return t0, 0
        seq += k
    return t0, 1


# ---------------------------------------------------------------------------- consumers (parent)


def _consume_native(ring: Ring, n: int) -> tuple[int, bool]:
    res = _core._bench_consume(
        ring, n, check_all=False, timeout_s=TIMEOUT_S, min_batch=CONSUMER_MIN_BATCH
    )
    ok = res["received"] == n and res["bad"] == 0 and not res["timed_out"]
    return int(res["t_last_ns"]), ok


def _consume_python(ring: Ring, n: int) -> tuple[int, bool]:
    expect = 0
    ok = True
    ramp = np.arange(ring.capacity, dtype=np.uint64)
    deadline = time.monotonic() + TIMEOUT_S
    spins = 0
    while expect < n:
        a, b = ring.peek()
        got = len(a) + len(b)
        if got == 0:
            spins += 1
            if spins % 64 == 0:
                os.sched_yield()
                if time.monotonic() > deadline:
                    return time.monotonic_ns(), False
            continue
        spins = 0
        for v in (a, b):
            k = len(v)
            if k and not np.array_equal(v["seq"] - np.uint64(expect), ramp[:k]):
                ok = False
            expect += k
        ring.consume(got)
    return time.monotonic_ns(), ok and expect == n


# ---------------------------------------------------------------------------- one measurement


def _measure(
    mode: str,
    records: int,
    capacity: int,
    cpus: tuple[int | None, int | None],
) -> dict[str, Any]:
    ring = Ring.create(capacity)
    produce: Callable[[], tuple[int, int]]
    if mode == "python_batch":
        produce = lambda: _produce_python(ring, records)  # noqa: E731
    else:
        produce = lambda: _produce_native(ring, records, mode == "single")  # noqa: E731
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # producer process
        code = 1
        try:
            os.close(rfd)
            _pin(cpus[0])
            ring.claim_producer()
            t0, ok = produce()
            os.write(wfd, json.dumps({"t0": t0, "ok": ok}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    old = os.sched_getaffinity(0)
    try:
        _pin(cpus[1])
        if mode == "python_batch":
            t_end, ok = _consume_python(ring, records)
        else:
            t_end, ok = _consume_native(ring, records)
    finally:
        os.sched_setaffinity(0, old)
        with os.fdopen(rfd, "rb") as f:
            raw = f.read()
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not raw:
        raise RuntimeError(f"ring bench {mode}: the producer process failed")
    prod = json.loads(raw)
    dropped = ring.dropped
    ring.close()
    elapsed_ns = max(1, t_end - int(prod["t0"]))
    rate = records / (elapsed_ns / 1e9)
    return {
        "records_per_s": rate,
        "gb_per_s": rate * RECORD_SIZE / 1e9,
        "seconds": elapsed_ns / 1e9,
        "verified": bool(ok and prod["ok"] and dropped == 0),
    }


def run_ring_bench(
    records: int, capacity: int, modes: tuple[str, ...] = MODES, repeat: int = REPEAT
) -> dict[str, Any]:
    """Measure every mode `repeat` times, interleaved (A B C A B C ...: a noisy neighbour hits
    every mode alike); each figure is the median run. Returns the JSON-ready result dict."""
    if records <= 0:
        raise UsageError(f"--records must be positive, got {records}")
    if capacity < 2 or capacity & (capacity - 1) or capacity > 1 << 30:
        raise UsageError(f"--capacity must be a power of two in [2, 2**30], got {capacity}")
    cpus = _cpus()
    out: dict[str, Any] = {
        "record_size": RECORD_SIZE,
        "records": records,
        "capacity": capacity,
        "native_batch": NATIVE_BATCH,
        "python_batch": min(PYTHON_BATCH, capacity // 2),
        "producer_cpu": cpus[0],
        "consumer_cpu": cpus[1],
    }
    out["repeat"] = repeat
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(max(1, repeat)):
        for mode in modes:
            runs[mode].append(_measure(mode, records, capacity, cpus))
    verified = True
    for mode in modes:
        ms = sorted(runs[mode], key=lambda m: m["records_per_s"])
        med = ms[len(ms) // 2]
        out[f"{mode}_records_per_s"] = round(med["records_per_s"])
        out[f"{mode}_gb_per_s"] = round(med["gb_per_s"], 3)
        out[f"{mode}_seconds"] = round(med["seconds"], 4)
        out[f"{mode}_runs_records_per_s"] = [round(m["records_per_s"]) for m in runs[mode]]
        verified = verified and all(m["verified"] for m in ms)
    out["verified"] = verified
    return out


def format_table(res: dict[str, Any]) -> str:
    where = (
        f"producer CPU {res['producer_cpu']}, consumer CPU {res['consumer_cpu']}"
        if res["producer_cpu"] is not None
        else "unpinned (one CPU)"
    )
    lines = [
        f"barfast bench ring: {res['records']:,} records of {res['record_size']} bytes, "
        f"capacity {res['capacity']:,}, {where}",
        f"{'mode':<14}{'records/s':>14}{'GB/s':>9}{'seconds':>10}   all runs (M records/s)",
    ]
    for mode in MODES:
        if f"{mode}_records_per_s" in res:
            runs = " ".join(f"{r / 1e6:.1f}" for r in res[f"{mode}_runs_records_per_s"])
            lines.append(
                f"{mode:<14}{res[f'{mode}_records_per_s'] / 1e6:>12.1f} M"
                f"{res[f'{mode}_gb_per_s']:>9.2f}{res[f'{mode}_seconds']:>10.3f}   {runs}"
            )
    lines.append(f"median of {res['repeat']} interleaved runs per mode")
    lines.append(
        "every record verified (seq), none dropped" if res["verified"] else "VERIFY FAILED"
    )
    return "\n".join(lines)


def ring_command(records: int, capacity: int, json_out: bool) -> int:
    """`barfast bench ring`: print a table (or one JSON object); 1 if verification failed."""
    res = run_ring_bench(records, capacity)
    if json_out:
        print(json.dumps(res, sort_keys=True))
    else:
        print(format_table(res))
    sys.stdout.flush()
    return 0 if res["verified"] else 1
