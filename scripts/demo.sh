#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, and runs the main job on the
# CPU: every kernel in kernels/ is checked, compiled to CPU code and
# JIT-loaded, and the f32 GEMM benchmark runs against OpenBLAS. (The V4
# model, run from Lua, is the main job once it lands.)
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
