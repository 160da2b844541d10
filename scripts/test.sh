#!/usr/bin/env bash
# test.sh - the same set-up as demo.sh, then every test: ctest on the normal
# build, ctest again on an AddressSanitizer + UBSan build, a bounded run of
# scripts/fuzz_compile.py (mutated kernels through the whole compiler) over
# that build's tessera, and bounded libFuzzer runs over the front end, the
# tokenizer's inputs and the safetensors reader when clang can build them.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/setup.sh build
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== sanitizers: ASan + UBSan"
scripts/setup.sh build-asan -DTS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== compile fuzz smoke: scripts/fuzz_compile.py over the ASan build's tessera (seed 1, ${TS_FUZZ_COMPILE_RUNS:-300} runs)"
ASAN_OPTIONS=detect_leaks=1 python3 scripts/fuzz_compile.py --tessera build-asan/tessera \
  --seed 1 --runs "${TS_FUZZ_COMPILE_RUNS:-300}" --seconds 300 --out build-asan/fuzz-compile

if command -v clang >/dev/null 2>&1; then
  echo "== fuzz smoke: libFuzzer over lex+parse+sema, the tokenizer's JSON and regexes, and the"
  echo "   safetensors reader (seed 1, at most ${TS_FUZZ_SECONDS:-60} s each)"
  if scripts/fuzz.sh build-fuzz "${TS_FUZZ_SECONDS:-60}"; then
    echo "fuzz smoke: no crash"
  else
    echo "fuzz smoke: FAILED (crash input in build-fuzz/)"
    exit 1
  fi
else
  echo "== fuzz smoke skipped: clang is not installed"
fi
