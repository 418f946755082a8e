#!/usr/bin/env bash
# Builds the native core for fuzzing: clang, AddressSanitizer, libFuzzer coverage counters
# (-fsanitize=fuzzer-no-link, read by atheris), assertions on and Cython bounds checks
# (BARFAST_DEBUG=1). It builds from a copy of the sources into fuzz/build/, so the editable install's
# extension (and its generated _core.c) are never replaced by an instrumented one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/build/tree
rm -rf "$out"
mkdir -p "$out"
cp -r setup.py pyproject.toml src "$out"/
find "$out/src" \( -name '*.so' -o -name '_core.c' -o -name '__pycache__' \) -prune -exec rm -rf {} +
san="-fsanitize=address,fuzzer-no-link -fno-omit-frame-pointer"
cd "$out"
CC=clang LDSHARED="clang -shared" CFLAGS="$san" LDFLAGS="$san" BARFAST_DEBUG=1 \
  python setup.py -q build_ext --inplace >build.log 2>&1 || { tail -30 build.log; exit 1; }
ls src/barfast/engine/_core*.so
