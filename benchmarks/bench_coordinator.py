"""Coordinator cost: 256 simulated workers, each sending one realistic snapshot per second.

    flock /tmp/barfast-bench.lock python benchmarks/bench_coordinator.py [--workers 256] [--seconds 10]
        [--runs 3] [--blob-format worker|hdrh|stored-b64] [--out benchmarks/results/coordinator.json]
    python benchmarks/bench_coordinator.py --quick        # CI: 64 workers, 3 s, no results file

A real `barfast run --bind ... --expect-workers N` coordinator (its own process, the real Merger) is fed
by N real DEALER sockets living in a second process (the simulator) that speaks the real protocol:
HELLO, ACK to the plan, then per worker one SNAPSHOT per second (spread evenly over the second) with
three real HdrHistograms of 20,000 lognormal samples each (about 5,000 non-zero buckets, like a busy
worker's second) encoded as a worker encodes them (aggregate.encode_histogram; --blob-format hdrh
sends hdrh's own deflated base64 encode() instead), and a FINAL at the end. The figure is the
coordinator process's CPU time (utime + stime from /proc/PID/stat) between the START and the FINALs,
divided by the wall time: its share of one core. Target: < 10 % at 256 workers.

Full runs also measure, in this process, the per-snapshot cost of protocol.decode() and Merger.add()
(and of the histogram decoding inside add) for each blob format, and write everything to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "coordinator.json"


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (man 5 proc)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BLOB_FORMATS = ("worker", "hdrh", "stored-b64")


def make_histograms(n: int, seed: int, blob_format: str = "worker") -> list[dict[str, bytes]]:
    """n sets of three histograms, encoded as a worker does (Aggregator.take_interval) or, for
    comparison, as hdrh's encode() does (deflated, base64) or stored but still base64."""
    from barfast.engine.aggregate import encode_histogram, new_histogram
    from barfast.engine.histoblob import HistoblobEncoder

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        views = {}
        for name, scale in (("latency", 400_000), ("uncorrected", 350_000), ("send_lag", 20_000)):
            h = new_histogram()
            for _ in range(20_000):
                h.record_value(max(1, int(rng.lognormvariate(0, 0.8) * scale)))
            if blob_format == "hdrh":
                views[name] = bytes(h.encode())
            elif blob_format == "stored-b64":
                views[name] = HistoblobEncoder(h).encode(h, level=0, b64=True)
            else:
                views[name] = encode_histogram(h)
        out.append(views)
    return out


def simulate(endpoint: str, workers: int, seconds: float, blob_format: str) -> int:
    """The N workers, in this one process. Prints STARTED and ENDING for the measuring parent."""
    import zmq

    from barfast.fanout import protocol
    from barfast.fanout.protocol import MsgKind

    hists = make_histograms(8, 1, blob_format)
    ctx = zmq.Context()
    socks = []
    for i in range(workers):
        s = ctx.socket(zmq.DEALER)
        s.linger = 2000
        s.connect(endpoint)
        s.send(protocol.encode(MsgKind.HELLO, {"pid": 100000 + i, "host": "sim", "cpus": 1}))
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    index: dict[zmq.Socket, int] = {}
    started = 0
    start_t = 0.0
    deadline = time.monotonic() + 60
    while started < workers and time.monotonic() < deadline:
        for s, _ in poller.poll(100):
            msg = protocol.decode(s.recv())
            if msg.kind == MsgKind.PLAN:
                index[s] = msg.body["worker"]
                s.send(protocol.encode(MsgKind.ACK, {"worker": msg.body["worker"]}))
            elif msg.kind == MsgKind.START:
                started += 1
                start_t = time.monotonic() + msg.body["start_in_ns"] / 1e9
    if started < workers:
        print(f"only {started} of {workers} simulated workers were started", file=sys.stderr)
        return 1
    print("STARTED", flush=True)
    seq = [0] * workers
    done = [0] * workers
    end_t = start_t + seconds
    # Each worker sends at its own offset within the second, as independent workers would.
    next_send = [start_t + 1.0 + i / workers for i in range(workers)]
    while True:
        now = time.monotonic()
        if now >= end_t:
            break
        for i, s in enumerate(socks):
            if now >= next_send[i]:
                done[i] += 40_000
                snap = {
                    "worker": index[s],
                    "seq": seq[i],
                    "final": False,
                    "interval": seq[i],
                    "elapsed_ns": int((now - start_t) * 1e9),
                    "counters": {
                        "started": done[i],
                        "completed": done[i],
                        "errors": 0,
                        "in_flight": 0,
                        "not_sent": 0,
                        "bytes_rx": done[i] * 180,
                        "bytes_tx": done[i] * 40,
                    },
                    "status": {200: done[i]},
                    "errors": {},
                    "hist": hists[(i + seq[i]) % len(hists)],
                    "samples": 40_000,
                    "interval_completed": 40_000,
                    "interval_errors": 0,
                    "cpu": {"user_s": 0.5 * seq[i], "sys_s": 0.3 * seq[i]},
                }
                # A real worker sends no separate heartbeat in a second that carried a snapshot.
                s.send(protocol.encode(MsgKind.SNAPSHOT, snap))
                seq[i] += 1
                next_send[i] += 1.0
        for s, _ in poller.poll(5):
            while s.poll(0):
                s.recv()  # the coordinator's heartbeats
    print("ENDING", flush=True)
    for i, s in enumerate(socks):
        snap = {
            "worker": index[s],
            "seq": seq[i],
            "final": True,
            "interval": seq[i],
            "elapsed_ns": int(seconds * 1e9),
            "counters": {"started": done[i], "completed": done[i], "errors": 0},
            "hist": hists[i % len(hists)],
        }
        s.send(protocol.encode(MsgKind.FINAL, snap))
        s.send(protocol.encode(MsgKind.BYE, {"reason": "done"}))
    for s in socks:
        s.close()
    ctx.term()
    return 0


def bench(workers: int, seconds: float, blob_format: str = "worker") -> float:
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    prefix = os.environ.get("BENCH_COORD_PREFIX", "").split()  # e.g. "-m cProfile -o FILE"
    coord = subprocess.Popen(
        [
            sys.executable, *prefix, "-m", "barfast", "run",
            "--bind", ep, "--expect-workers", str(workers), "--wait-timeout", "60s",
            "-c", str(workers), "-d", f"{seconds + 2:g}s", "-q", "--json",
            f"http://127.0.0.1:{free_port()}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    sim = subprocess.Popen(
        [sys.executable, __file__, "--simulate", ep, "--workers", str(workers),
         "--seconds", str(seconds), "--blob-format", blob_format],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline().strip()
        if line != "STARTED":
            raise SystemExit(f"simulator failed: {line!r}; coordinator: {coord.stderr.read()}")
        t0, c0 = time.monotonic(), cpu_seconds(coord.pid)
        line = sim.stdout.readline().strip()
        t1, c1 = time.monotonic(), cpu_seconds(coord.pid)
        if line != "ENDING":
            raise SystemExit(f"simulator failed: {line!r}")
        sim.wait(30)
        _, err = coord.communicate(timeout=60)
        if coord.returncode != 0:
            raise SystemExit(f"coordinator exited with {coord.returncode}: {err[-1000:]}")
    finally:
        for p in (sim, coord):
            if p.poll() is None:
                p.kill()
    return (c1 - c0) / (t1 - t0)


def breakdown(blob_format: str, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Per-snapshot microseconds (best of `repeats` passes over n snapshots) of the coordinator's
    Python work: protocol.decode(), Merger.add(), and the three histoblob decodes inside add()."""
    from barfast.fanout import protocol
    from barfast.fanout.protocol import MsgKind
    from barfast.result import Merger

    hists = make_histograms(8, 1, blob_format)
    frames = []
    for i in range(n):
        w, sec = i % 256, i // 256
        snap = {
            "worker": w, "seq": sec, "final": False, "interval": sec, "elapsed_ns": sec * 10**9,
            "counters": {"started": i, "completed": i, "errors": 0, "in_flight": 0,
                         "not_sent": 0, "bytes_rx": i * 180, "bytes_tx": i * 40},
            "status": {200: i}, "errors": {}, "hist": hists[i % len(hists)], "samples": 40_000,
            "interval_completed": 40_000, "interval_errors": 0,
            "cpu": {"user_s": 0.5, "sys_s": 0.3},
        }  # fmt: skip
        frames.append(protocol.encode(MsgKind.SNAPSHOT, snap))
    best = {"protocol_decode_us": 1e9, "merger_add_us": 1e9, "hist_decode_us": 1e9}
    for _ in range(repeats):
        t0 = time.perf_counter()
        bodies = [protocol.decode(f).body for f in frames]
        t1 = time.perf_counter()
        m = Merger()
        for b in bodies:
            m.add(b)
        t2 = time.perf_counter()
        dec = m._decoder
        for b in bodies:
            for blob in b["hist"].values():
                dec.decode(blob)
        t3 = time.perf_counter()
        for key, dt in (
            ("protocol_decode_us", t1 - t0),
            ("merger_add_us", t2 - t1),
            ("hist_decode_us", t3 - t2),
        ):
            best[key] = min(best[key], dt / n * 1e6)
    out = {k: round(v, 1) for k, v in best.items()}
    out["frame_bytes"] = round(sum(map(len, frames)) / n)
    out["hist_blob_bytes"] = round(
        sum(len(b) for h in hists for b in h.values()) / (3 * len(hists))
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="CI mode: 64 workers for 3 s")
    ap.add_argument(
        "--blob-format",
        choices=BLOB_FORMATS,
        default="worker",
        help="histograms as workers encode them (default), as hdrh's encode() does, or stored+base64",
    )
    ap.add_argument("--runs", type=int, default=1, help="repeat the run; the median is the figure")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file (full runs)")
    ap.add_argument("--simulate", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate:
        return simulate(args.simulate, args.workers, args.seconds, args.blob_format)
    if args.quick:
        args.workers, args.seconds = 64, 3.0
    shares = []
    for _ in range(max(1, args.runs)):
        share = bench(args.workers, args.seconds, args.blob_format)
        shares.append(share)
        verdict = "OK" if share < 0.10 else "ABOVE TARGET"
        print(
            f"coordinator CPU with {args.workers} workers x 1 snapshot/s for {args.seconds:g} s "
            f"({args.blob_format} blobs): "
            f"{share * 100:.1f}% of one core (target < 10%: {verdict})",
            flush=True,
        )
    if args.quick:
        return 0
    median = sorted(shares)[len(shares) // 2]
    per_snapshot = {fmt: breakdown(fmt) for fmt in BLOB_FORMATS}
    for fmt, b in per_snapshot.items():
        print(
            f"per snapshot ({fmt} blobs, {b['frame_bytes']} B frames): protocol.decode "
            f"{b['protocol_decode_us']} us, Merger.add {b['merger_add_us']} us "
            f"(of which 3 histogram decodes {b['hist_decode_us']} us)"
        )
    res = {
        "command": "python benchmarks/bench_coordinator.py " + " ".join(sys.argv[1:]),
        "workers": args.workers,
        "seconds": args.seconds,
        "blob_format": args.blob_format,
        "cpu_share_runs": [round(x, 4) for x in shares],
        "cpu_share": round(median, 4),
        "target_cpu_share": 0.10,
        "met": median < 0.10,
        "per_snapshot": per_snapshot,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
