#!/usr/bin/env bash
# CI's quick mode of every benchmark: proves each script still runs end to end (figures not judged).
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_ring.py --quick
python benchmarks/bench_http.py --quick
python benchmarks/bench_http.py --quick --tls keepalive --tools barfast,wrk
python benchmarks/bench_http.py --quick --tls handshake --tools barfast,wrk
python benchmarks/bench_pacing.py --quick
python benchmarks/bench_coordinator.py --quick
python benchmarks/bench_serve.py --quick
python benchmarks/bench_memory.py --quick
python benchmarks/bench_memory.py --quick --scenario
python benchmarks/bench_open_peers.py --quick
python benchmarks/bench_open_peers.py --quick --tools bf-1proc,bf-1proc-lt-nomemo,bf-1proc-nonap
python benchmarks/bench_same_rate.py --seconds 0.5 --repeat 1 --delays 5ms --nginx-connections 2
python benchmarks/bench_spawn.py --quick
python benchmarks/bench_thresholds.py --quick
python benchmarks/bench_reports.py --quick
python benchmarks/bench_flows.py --quick
python benchmarks/bench_flows.py --quick --think
