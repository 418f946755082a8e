"""Embed barfast's sample ring as another collector would: its own producer process, its own consumer.

The producer is a separate process (started with `spawn`, so it shares nothing but the ring file's
path) that attaches the ring and publishes synthetic request samples with the vectorised numpy
publish, paced at --rate: log-normal latencies, a few 5xx. Like barfast's engine it never waits:
when the ring is full the batch's remainder is dropped and counted (--rate 0 shows that). The consumer (this process) drains zero-copy
views every millisecond, aggregates counts, mean and max latency and status classes, and checks
that the seq gaps it saw equal the ring's dropped counter.

    python examples/embed_ring.py [--records N] [--capacity C] [--rate PER_S]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np

from barfast.ring import RECORD_DTYPE, Ring

BATCH = 4096


def producer(path: str, records: int, rate: float, seed: int) -> None:
    """Publish `records` samples in batches at about `rate` per second (0: as fast as possible);
    never blocks on the ring (full -> dropped, counted by the ring)."""
    ring = Ring.attach(path)
    due = time.monotonic()
    rng = np.random.default_rng(seed)
    batch = np.zeros(BATCH, dtype=RECORD_DTYPE)
    seq = 0
    while seq < records:
        k = min(BATCH, records - seq)
        b = batch[:k]
        now = time.monotonic_ns()
        latency = rng.lognormal(mean=np.log(2e6), sigma=0.5, size=k).astype(np.uint64)  # ~2 ms
        b["intended_ns"] = now
        b["send_ns"] = now
        b["first_byte_ns"] = now + latency // 2
        b["done_ns"] = now + latency
        b["seq"] = np.arange(seq, seq + k, dtype=np.uint64)
        b["status"] = np.where(rng.random(k) < 0.01, 503, 200)
        b["bytes_rx"] = 150
        b["bytes_tx"] = 40
        b["conn_id"] = b["seq"] % 64
        ring.publish(b)  # accepted + dropped == k
        seq += k
        if rate > 0:  # pace: the next batch is due k/rate later (no catch-up bursts after a stall)
            due = max(due, time.monotonic()) + k / rate
            ahead = due - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    ring.mark_producer_done()
    ring.close()


def consume(ring: Ring) -> dict[str, float]:
    """Drain until the producer is done; aggregate without copying the records."""
    count = errors_5xx = 0
    lat_sum = 0.0
    lat_max = 0
    gaps = 0
    next_seq = 0
    while True:
        done = ring.producer_done  # load it before peeking: nothing is published after done
        first, second = ring.peek()
        for v in (first, second):
            if len(v) == 0:
                continue
            lat = v["done_ns"] - v["intended_ns"]
            count += len(v)
            lat_sum += float(lat.sum())
            lat_max = max(lat_max, int(lat.max()))
            errors_5xx += int(np.count_nonzero(v["status"] >= 500))
            seq = v["seq"].astype(np.int64)
            gaps += int(seq[0]) - next_seq + int((np.diff(seq) - 1).sum())
            next_seq = int(seq[-1]) + 1
        ring.consume(len(first) + len(second))  # the views are done with: give the slots back
        if done and ring.pending == 0:
            break
        if len(first) + len(second) < BATCH:
            time.sleep(0.001)  # like barfast's aggregator: drain in batches, not per record
    return {
        "records": count,
        "mean_latency_ms": lat_sum / count / 1e6 if count else 0.0,
        "max_latency_ms": lat_max / 1e6,
        "status_5xx": errors_5xx,
        "seq_gaps": gaps,
        "last_seq": next_seq - 1,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--capacity", type=int, default=1 << 18)
    ap.add_argument("--rate", type=float, default=1e6, help="samples/s; 0 = unpaced (drops)")
    args = ap.parse_args()

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    path = os.path.join(shm, f"barfast-embed-{os.getpid()}.ring")
    ring = Ring.create(args.capacity, path)
    try:
        proc = mp.get_context("spawn").Process(
            target=producer, args=(path, args.records, args.rate, 42)
        )
        started = time.monotonic()
        proc.start()
        agg = consume(ring)
        proc.join(timeout=30)
        elapsed = time.monotonic() - started
        dropped = ring.dropped
        trailing = args.records - 1 - agg["last_seq"]  # dropped after the last one published
        consistent = (
            proc.exitcode == 0
            and agg["records"] + dropped == args.records
            and agg["seq_gaps"] + trailing == dropped
        )
        print(
            f"records {agg['records']:,}  dropped {dropped:,}  "
            f"mean latency {agg['mean_latency_ms']:.3f} ms  max {agg['max_latency_ms']:.3f} ms  "
            f"5xx {agg['status_5xx']:,}  ({elapsed:.2f} s, producer pid {ring.producer_pid})"
        )
        print("consistent: yes" if consistent else "consistent: NO")
        return 0 if consistent else 1
    finally:
        ring.close()
        os.unlink(path)


if __name__ == "__main__":
    raise SystemExit(main())
