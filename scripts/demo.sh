#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, and runs the main job on the
# CPU: every kernel in kernels/ is checked, compiled to CPU code and
# JIT-loaded, the f32 GEMM benchmark runs against OpenBLAS, and the V4
# model runs from Lua: generation with the tiny config (model/generate.lua)
# and the golden tiny model's prefill, MTP and decode compared with
# DeepSeek's reference tensors (model/check_golden.lua).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
echo
build/tessera --version
build/tessera devices
echo
echo "== tessera check -v kernels/*.tile"
build/tessera check -v kernels/*.tile
echo
echo "== tessera compile (CPU: MLIR -> LLVM -> JIT)"
for k in kernels/*.tile; do
  build/tessera compile "$k"
done
echo
echo "== the generated MLIR of softmax_rows (head)"
build/tessera compile kernels/softmax.tile --kernel softmax_rows --emit mlir \
  -o build/softmax_rows.mlir
head -n 12 build/softmax_rows.mlir
echo
echo "== f32 GEMM on the CPU against OpenBLAS (bench/cpu_gemm)"
build/bench/cpu_gemm 512
echo
echo "== the main job: DeepSeek-V4 from Lua on the CPU, assembled from kernels/"
echo "-- text generation with the tiny config (random weights, made if missing)"
build/tessera run model/generate.lua --config tiny --prompt "DeepSeek-V4 on two cores:" --tokens 64
echo
echo "-- three prompts generated together (prefill_batch, then decode_batch; each output is"
echo "   what its prompt alone gives)"
build/tessera run model/generate.lua --config tiny --prompt "DeepSeek-V4 on two cores:" \
  --prompt "Tessera" --prompt "A million tokens" --tokens 32
echo
echo "-- three samples of one prompt (prefilled once and forked: model:fork; decoded together;"
echo "   sample b is what --seed b alone gives)"
build/tessera run model/generate.lua --config tiny --prompt "DeepSeek-V4 on two cores:" \
  --tokens 24 --temperature 0.8 --samples 3
echo
echo "-- six requests served with continuous batching (model/serve.lua: they join the batch at"
echo "   their steps, the long prompt prefilled in chunks between the others' decode steps;"
echo "   each reply is what its prompt alone gives)"
long3="$(printf 'A million tokens of context. %.0s' 1 2 3 4 5 6)"
printf '%s\n' \
  '{"id": 1, "prompt": "DeepSeek-V4 on two cores:", "max_tokens": 24}' \
  '{"id": 2, "prompt": "Tessera", "max_tokens": 12, "temperature": 0.8, "seed": 2}' \
  "{\"id\": 3, \"prompt\": \"$long3\", \"max_tokens\": 16, \"arrive\": 2}" \
  '{"id": 4, "prompt": "Sparse attention", "max_tokens": 20, "arrive": 4}' \
  '{"id": 5, "prompt": "mHC", "max_tokens": 8, "arrive": 4}' \
  '{"id": 6, "prompt": "DeepSeekMoE", "max_tokens": 16, "arrive": 9}' |
  build/tessera run model/serve.lua --config tiny --requests - --max-batch 4 --prefill-tokens 64 |
  sed -E 's/^.*"done_step":([0-9]+).*"first_step":([0-9]+),"id":([0-9]+).*"text":"(([^"\\]|\\.)*)".*$/request \3 (steps \2-\1): \4/'
echo
echo "-- decode steps replayed as graphs (model/graphs.lua, on by default above: each step's"
echo "   launches without the Lua between them) against --graphs off (plain steps, the same"
echo "   text): the short prompt, then a 164-token one past the window"
long="$(printf 'DeepSeek-V4 on two cores, a long prompt. %.0s' 1 2 3 4)"
for p in "DeepSeek-V4 on two cores:" "$long"; do
  for g in off on; do
    build/tessera run model/generate.lua --config tiny --prompt "$p" --tokens 96 --graphs $g |
      grep -a -E '^(output|prefill)'
  done
done
echo
echo "-- prefill, MTP and 72 decode steps of DeepSeek's tiny golden model, tensor by"
echo "   tensor against what DeepSeek's reference code computed"
build/tessera run model/check_golden.lua
echo
echo "-- KV cache and FLOPs per token at 1M tokens against V3.2 (plot: build/kv_ratio.svg)"
build/tessera run model/kv_report.lua --tokens 1000000 --svg build/kv_ratio.svg
