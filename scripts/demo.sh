#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, and runs the main job on the
# CPU: every kernel in kernels/ is checked, compiled to CPU code and
# JIT-loaded, the f32 GEMM benchmark runs against OpenBLAS, and the V4
# prefill of the tiny golden model runs from Lua (model/check_golden.lua)
# and is compared with DeepSeek's reference tensors.
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
echo "== the main job: DeepSeek-V4 prefill of the tiny model, from Lua, on the CPU,"
echo "   against the tensors DeepSeek's own reference code computed"
build/tessera run model/check_golden.lua
