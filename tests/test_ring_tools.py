"""The ring's tools run end to end: `barfast bench ring`, benchmarks/bench_ring.py, the embedding
example, and a C consumer written from docs/ring-format.md alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from barfast.ring import Ring, synthetic_records

ROOT = Path(__file__).resolve().parents[1]
BARFAST = [sys.executable, "-m", "barfast"]
CC = shutil.which("cc") or shutil.which("gcc")


def run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_bench_ring_json():
    p = run([*BARFAST, "bench", "ring", "--records", "300000", "--capacity", "4096", "--json"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1  # ONE JSON object
    res = json.loads(lines[0])
    assert res["record_size"] == 64 and res["records"] == 300_000 and res["capacity"] == 4096
    assert res["verified"] is True
    for mode in ("batched", "single", "python_batch"):
        rate = res[f"{mode}_records_per_s"]
        assert rate > 0
        assert res[f"{mode}_gb_per_s"] == pytest.approx(rate * 64 / 1e9, rel=0.01, abs=0.001)
        assert len(res[f"{mode}_runs_records_per_s"]) == res["repeat"]


def test_bench_ring_table_and_bad_capacity():
    p = run([*BARFAST, "bench", "ring", "--records", "100000", "--capacity", "1024"])
    assert p.returncode == 0, p.stderr
    for word in ("records/s", "GB/s", "batched", "single", "python_batch", "verified"):
        assert word in p.stdout
    p = run([*BARFAST, "bench", "ring", "--records", "1000", "--capacity", "1000"])
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "barfast: error: --capacity must be a power of two in [2, 2**30], got 1000"
    ]


def test_bench_script_writes_results(tmp_path):
    out = tmp_path / "ring.json"
    p = run(
        [sys.executable, "benchmarks/bench_ring.py", "--quick", "--records", "200000"]
        + ["--out", str(out)]
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert res["quick"] is True and res["records"] == 200_000 and res["verified"] is True
    assert set(res["targets"]) == {
        "batched_records_per_s",
        "single_records_per_s",
        "python_batch_records_per_s",
    }
    assert f"wrote {out}" in p.stdout


def test_embed_example_runs_and_is_consistent():
    p = run([sys.executable, "examples/embed_ring.py", "--records", "300000", "--rate", "1e6"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "consistent: yes" in p.stdout
    # unpaced into a small ring: drops happen and are still accounted for exactly
    p = run(
        [sys.executable, "examples/embed_ring.py", "--records", "200000"]
        + ["--rate", "0", "--capacity", "256"]
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "consistent: yes" in p.stdout and "dropped 0 " not in p.stdout


def test_doc_snippet_is_the_example_c_consumer():
    doc = (ROOT / "docs" / "ring-format.md").read_text()
    start = doc.index("```c\n#include <fcntl.h>") + len("```c\n")
    snippet = doc[start : doc.index("```", start)]
    assert (ROOT / "examples" / "ring_consume.c").read_text().endswith(snippet)


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_c_consumer_from_the_doc_reads_a_python_produced_ring(tmp_path):
    exe = tmp_path / "ring_consume"
    cc = subprocess.run(
        [str(CC), "-O2", "-Wall", "-Werror", "-o", str(exe), str(ROOT / "examples/ring_consume.c")],
        capture_output=True,
        text=True,
    )
    assert cc.returncode == 0, cc.stderr
    path = tmp_path / "ring"
    ring = Ring.create(1 << 10, path)
    recs = synthetic_records(0, 1500)  # done_ns - intended_ns == (seq ^ K) - seq
    with np.errstate(over="ignore"):
        lat = (recs["done_ns"] - recs["intended_ns"]).astype(np.float64)
    # the consumer runs concurrently: publish in pieces while it drains
    proc = subprocess.Popen([str(exe), str(path)], stdout=subprocess.PIPE, text=True)
    sent = 0
    while sent < 1500:
        sent += ring.publish(recs[sent : sent + 100], count_dropped=False)
    assert ring.publish(synthetic_records(1500, 2000)) < 2000  # some are dropped (ring of 1024)
    dropped = ring.dropped
    ring.mark_producer_done()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    accepted = ring.published - 1500
    words = out.split()
    assert words[0] == "records" and int(words[1]) == 1500 + accepted
    assert words[2] == "dropped" and int(words[3]) == dropped > 0
    extra = synthetic_records(1500, accepted)
    with np.errstate(over="ignore"):
        lat = np.concatenate([lat, (extra["done_ns"] - extra["intended_ns"]).astype(np.float64)])
    assert float(words[5]) == pytest.approx(lat.mean(), rel=1e-9)
    assert ring.consumed == ring.published  # the C consumer advanced cons_pos in the file
    ring.close()
    os.unlink(path)
