#!/usr/bin/env bash
# Coverage-guided fuzzing of the native code that reads hostile bytes, under AddressSanitizer:
# the HTTP response parser (fuzz_http.py), the response-check evaluators (fuzz_checks.py) and the
# flows' captures and cookie jar (fuzz_flow.py).
#
#   fuzz/run.sh --quick        what CI runs: 100,000 inputs per target from the seeds, fixed seed
#   fuzz/run.sh [RUNS]         benchmark mode: RUNS inputs per target (default 10,000,000)
#
# Installs what it needs when missing (clang from Debian's packages when run as root with apt;
# atheris, Cython and numpy from PyPI into the current Python). Exits non-zero on any crash,
# sanitizer report or broken invariant; the input that found it is left in fuzz/build/crashes/.
set -euo pipefail
cd "$(dirname "$0")"
runs=10000000
seed=0
if [ "${1:-}" = "--quick" ]; then runs=100000; seed=1; elif [ -n "${1:-}" ]; then runs=$1; fi
if ! command -v clang >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
fi
command -v clang >/dev/null || { echo "fuzz/run.sh: clang is needed (apt-get install clang)" >&2; exit 2; }
python -c "import atheris, Cython, numpy" 2>/dev/null || python -m pip install -q atheris 'Cython>=3.1,<4' numpy
bash build.sh >/dev/null
site=$(python -c "import atheris, os; print(os.path.dirname(os.path.dirname(atheris.__file__)))")
export LD_PRELOAD="$site/asan_with_fuzzer.so"
# The interpreter's own allocations outlive it by design: leak reports would be noise, not findings.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:symbolize=1"
export PYTHONPATH="$PWD/build/tree/src"
mkdir -p build/crashes
for target in http checks flow; do
  dict=http.dict
  [ "$target" = checks ] && dict=json.dict
  work="build/corpus/$target"
  mkdir -p "$work"
  start=$(date +%s)
  python "fuzz_$target.py" -runs="$runs" -seed="$seed" -dict="$dict" -max_len=4096 \
    -artifact_prefix="build/crashes/$target-" -print_final_stats=1 "$work" "corpus/$target" \
    >"build/$target.log" 2>&1 || { tail -40 "build/$target.log"; echo "fuzz: $target FAILED" >&2; exit 1; }
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build/$target.log")
  cov=$(grep -o 'cov: [0-9]*' "build/$target.log" | tail -1)
  echo "fuzz: $target: $execs inputs, $cov, $(($(date +%s) - start)) s, 0 crashes, 0 sanitizer reports"
done
