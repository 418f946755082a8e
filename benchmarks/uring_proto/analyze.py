#!/usr/bin/env python3
"""analyze.py FILE [EXTRA_REF_MODE...]: per-round ratios (CPU µs/request, req/s) of bench.sh output
against epoll and wrk, and their medians."""

import re
import statistics as st
import sys
from pathlib import Path

rows: dict[int, dict[str, tuple[float, float]]] = {}
for line in Path(sys.argv[1]).read_text().splitlines():
    m = re.match(r"(\d+) (\S+)\s+reqs=(\d+) rps=(\d+) cpu_us=([\d.]+)", line)
    if m:
        rows.setdefault(int(m[1]), {})[m[2]] = (float(m[5]), float(m[4]))
modes = list(next(iter(rows.values())).keys())
print(
    "median cpu_us/req:",
    {k: round(st.median(r[k][0] for r in rows.values() if k in r), 3) for k in modes},
)
print(
    "median rps:       ",
    {k: round(st.median(r[k][1] for r in rows.values() if k in r)) for k in modes},
)
for ref in ["epoll", "wrk", *sys.argv[2:]]:
    if ref not in modes:
        continue
    for k in modes:
        if k == ref:
            continue
        c = [r[k][0] / r[ref][0] for r in rows.values() if k in r and ref in r]
        p = [r[k][1] / r[ref][1] for r in rows.values() if k in r and ref in r]
        print(
            f"{k:>24} / {ref:<6} cpu/req median {st.median(c):.3f} "
            f"(min {min(c):.3f} max {max(c):.3f})  req/s median {st.median(p):.3f}"
        )
