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
mkdir -p "$dir/corpus"
srcs=(base/*.c dsl/*.c tests/fuzz/fuzz_frontend.c)
bin=$dir/fuzz_frontend
newest=$(ls -t "${srcs[@]}" base/*.h dsl/*.h dsl/*.def | head -n 1)
if [[ ! -x $bin || $newest -nt $bin ]]; then
  clang -std=c11 -O1 -g -I. -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all    "${srcs[@]}" -lm -o "$bin"
fi
cp -f kernels/*.tile tests/errors/*.tile tests/fuzz/corpus/* "$dir/corpus/" 2>/dev/null || true
for f in tests/golden/*/*.tile; do cp -f "$f" "$dir/corpus/golden_$(basename "$(dirname "$f")")_$(basename "$f")"; done
# A fixed seed and run count make the smoke reproducible (the same inputs in
# CI as on a developer's machine); the time limit only caps it.
"$bin" -seed=1 -runs="${TS_FUZZ_RUNS:-15000}" -max_total_time="$seconds" \
  -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$dir/" -print_final_stats=1 "$dir/corpus" 2>&1 | tail -n 15

text_bin=$dir/fuzz_text
newest=$(ls -t base/*.c base/*.h base/*.def runtime/tokenizer.c tests/fuzz/fuzz_text.c | head -n 1)
if [[ ! -x $text_bin || $newest -nt $text_bin ]]; then
  clang -std=c11 -O1 -g -I. -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all base/*.c runtime/tokenizer.c tests/fuzz/fuzz_text.c -lm -o "$text_bin"
fi
mkdir -p "$dir/text_corpus"
cp -f tests/fuzz/text_corpus/* "$dir/text_corpus/"
"$text_bin" -seed=1 -runs="${TS_FUZZ_RUNS:-15000}" -max_total_time="$seconds" \
  -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$dir/" -print_final_stats=1 "$dir/text_corpus" 2>&1 | tail -n 15

st_bin=$dir/fuzz_safetensors
newest=$(ls -t base/*.c base/*.h dsl/*.c dsl/*.h dsl/*.def runtime/safetensors.c runtime/runtime.h \
  tests/fuzz/fuzz_safetensors.c | head -n 1)
if [[ ! -x $st_bin || $newest -nt $st_bin ]]; then
  clang -std=c11 -O1 -g -I. -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all base/*.c dsl/*.c runtime/safetensors.c tests/fuzz/fuzz_safetensors.c \
    -lm -o "$st_bin"
fi
mkdir -p "$dir/st_corpus"
cp -f tests/fuzz/st_corpus/* "$dir/st_corpus/"
"$st_bin" -seed=1 -runs="${TS_FUZZ_RUNS:-15000}" -max_total_time="$seconds" \
  -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$dir/" -print_final_stats=1 "$dir/st_corpus" 2>&1 | tail -n 15
