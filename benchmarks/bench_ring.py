"""Benchmark the sample ring: the script form of `barfast bench ring`, writing its results to a file.

Cross-process (producer and consumer in separate processes, pinned to different CPUs when there are
two), three modes: batched native publish, single-record native publish, Python vectorised publish
with numpy consume. Each mode runs REPEAT times interleaved; the median is reported and compared
with the targets below. Figures on a shared machine are indicative only: measure under
`flock /tmp/barfast-bench.lock python benchmarks/bench_ring.py`.

    python benchmarks/bench_ring.py            # 50 M records per run, 3 runs per mode
    python benchmarks/bench_ring.py --quick    # CI: a few million records, 1 run per mode
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from barfast.engine.ringbench import format_table, run_ring_bench

# targets (records/s): 4.8 GB/s of 64-byte records, 20 M/s single, 20 M/s Python
TARGETS = {
    "batched_records_per_s": 4.8e9 / 64,
    "single_records_per_s": 20e6,
    "python_batch_records_per_s": 20e6,
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ring.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="a few million records, one run per mode")
    ap.add_argument("--records", type=int, default=None, help="records per run (default 50 M)")
    ap.add_argument("--capacity", type=int, default=1 << 16, help="ring capacity (power of two)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per mode (median reported)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = ap.parse_args(argv)
    records = args.records or (3_000_000 if args.quick else 50_000_000)
    repeat = args.repeat or (1 if args.quick else 3)

    res = run_ring_bench(records, args.capacity, repeat=repeat)
    res["targets"] = {k: {"target": v, "met": res[k] >= v} for k, v in TARGETS.items()}
    res["quick"] = args.quick
    res["command"] = "python benchmarks/bench_ring.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    res["machine"] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    print(format_table(res))
    for key, t in res["targets"].items():
        mode = key.removesuffix("_records_per_s")
        print(
            f"target {mode:<13} >= {t['target'] / 1e6:6.1f} M/s: "
            f"{'met' if t['met'] else 'NOT met'} ({res[key] / 1e6:.1f} M/s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0 if res["verified"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
