#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS - builds the libFuzzer target over the front end
# with clang (-fsanitize=fuzzer,address,undefined) and runs it (seed 1,
# TS_FUZZ_RUNS inputs, at most SECONDS) with the seed corpus from kernels/
# and tests/; then the one over what a tokenizer.json feeds (base/'s JSON
# reader and regex matcher, runtime/tokenizer.c; tests/fuzz/text_corpus)
# and the one over the safetensors reader (runtime/safetensors.c;
# tests/fuzz/st_corpus) the same way. A crash leaves its input in
# BUILD_DIR and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-fuzz}
seconds=${2:-60}

# fuzz NAME MAX_LEN CORPUS SOURCES... -- HEADERS...: builds $dir/NAME from the
# sources when it is missing or older than any of them or the headers, then
# runs it over $dir/CORPUS (filled beforehand). A fixed seed and run count
# make the smoke reproducible (the same inputs in CI as on a developer's
# machine); the time limit only caps it.
fuzz() {
  local name=$1 max_len=$2 corpus=$3
  shift 3
  local srcs=() deps=()
  while [[ $1 != -- ]]; do srcs+=("$1"); shift; done
  shift
  deps=("${srcs[@]}" "$@")
  local bin=$dir/$name newest
  newest=$(ls -t "${deps[@]}" | head -n 1)
  if [[ ! -x $bin || $newest -nt $bin ]]; then
    clang -std=c11 -O1 -g -I. -fsanitize=fuzzer,address,undefined \
      -fno-sanitize-recover=all "${srcs[@]}" -lm -o "$bin"
  fi
  "$bin" -seed=1 -runs="${TS_FUZZ_RUNS:-15000}" -max_total_time="$seconds" \
    -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$dir/" -print_final_stats=1 "$dir/$corpus" 2>&1 | tail -n 15
}

mkdir -p "$dir/corpus" "$dir/text_corpus" "$dir/st_corpus"
cp -f kernels/*.tile tests/errors/*.tile tests/fuzz/corpus/* "$dir/corpus/" 2>/dev/null || true
for f in tests/golden/*/*.tile; do cp -f "$f" "$dir/corpus/golden_$(basename "$(dirname "$f")")_$(basename "$f")"; done
cp -f tests/fuzz/text_corpus/* "$dir/text_corpus/"
cp -f tests/fuzz/st_corpus/* "$dir/st_corpus/"

fuzz fuzz_frontend 4096 corpus base/*.c dsl/*.c tests/fuzz/fuzz_frontend.c -- \
  base/*.h dsl/*.h dsl/*.def
fuzz fuzz_text 8192 text_corpus base/*.c runtime/tokenizer.c tests/fuzz/fuzz_text.c -- \
  base/*.h base/*.def
fuzz fuzz_safetensors 4096 st_corpus base/*.c dsl/*.c runtime/safetensors.c \
  tests/fuzz/fuzz_safetensors.c -- base/*.h dsl/*.h dsl/*.def runtime/runtime.h
