#!/usr/bin/env bash
# gpu.sh - for a machine with an NVIDIA GPU (the lent H100): builds Tessera,
# runs everything that needs the GPU in one go, and writes what ran into
# bench/results/gpu.md (device, driver, date):
#   - the numerics suites on the GPU with each lowering (ctest cuda/*,
#     cuda-c/*: MLIR's PTX, and the CUDA C through NVRTC), which is the
#     differential test of the two;
#   - compute-sanitizer memcheck and racecheck over the kernel suite, each
#     lowering;
#   - the GPU benchmark suite (`tessera bench --device cuda`: bench/gpu_gemm.c
#     with each lowering, against torch.matmul and the peak), written to
#     bench/results/bench-cuda-DATE.md and .json;
#   - cuobjdump --dump-sass of the GEMM kernels from each lowering, counting
#     HMMA (mma.sync), HGMMA (wgmma), LDGSTS (cp.async) and FFMA.
# Without a GPU it stops after saying so.
#
# The lent GPU machine reaches nothing outside it, so it may not be able to
# install MLIR 22 and Lua. Then build here and carry the build and the
# runtime packages (the `run` tool carries ignored paths, 64 MiB in all):
#   mkdir -p .gpu-debs && (cd .gpu-debs && apt-get download libllvm22 \
#     libmlir-22 liblua5.4-0)            # about 46 MB
#   echo /.gpu-debs/ >> .git/info/exclude
#   scripts/setup.sh build && strip --strip-unneeded build/libtessera.so
#   run: scripts/gpu.sh   carry: build .gpu-debs
# gpu.sh unpacks .gpu-debs/*.deb into / when it finds them, and uses a
# carried build/ as it is when its tessera runs.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -d .gpu-debs ]]; then
  for f in .gpu-debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if ! build/tessera --version >/dev/null 2>&1; then
  scripts/setup.sh build || exit 2
fi
out=bench/results/gpu.md
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
build/tessera devices | tee "$log/devices"
if ! grep -q "GPU" "$log/devices" || grep -q "no GPU" "$log/devices"; then
  echo "gpu.sh: no GPU here; nothing to do"
  exit 0
fi
export TESSERA_CACHE=$log/cache
status=0
ctest --test-dir build -R '^(cuda|cuda-c)/' --output-on-failure >"$log/ctest" 2>&1 || status=1
tail -n 30 "$log/ctest"
san=()
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck; do
    for lowering in mlir cuda; do
      r=pass
      TS_SOURCE_DIR=$PWD TS_TEST_DEVICE=cuda TESSERA_GPU_LOWERING=$lowering \
        compute-sanitizer --tool "$tool" --error-exitcode 9 build/tests/num_kernels \
        >"$log/$tool-$lowering" 2>&1 || { r=FAIL; status=1; }
      san+=("| $tool | $lowering | $r | $(grep -c 'ERROR SUMMARY: 0' "$log/$tool-$lowering") clean summaries |")
    done
  done
else
  san+=("| compute-sanitizer | - | not installed | |")
fi
# the GPU benchmark suite (bench/gpu_gemm.c: both lowerings against
# torch.matmul and the peak) into bench/results/bench-cuda-DATE.md/.json
build/tessera bench --device cuda >"$log/bench" 2>&1 || status=1
tail -n 5 "$log/bench"
sass="(cuobjdump not found)"
if command -v cuobjdump >/dev/null 2>&1; then
  sass=""
  build/tessera compile kernels/gemm.tile --target ptx --arch sm_90a -o "$log/gemm.ptx"
  build/tessera compile kernels/gemm.tile --target cuda --emit ptx --arch sm_90a -o "$log/gemm.cuda.ptx"
  for p in gemm gemm.cuda; do
    if /usr/local/cuda/bin/ptxas -arch=sm_90a "$log/$p.ptx" -o "$log/$p.cubin"; then
      cuobjdump --dump-sass "$log/$p.cubin" >"$log/$p.sass"
      sass+="| $p | $(grep -c HMMA "$log/$p.sass") | $(grep -c HGMMA "$log/$p.sass") | $(grep -c LDGSTS "$log/$p.sass") | $(grep -c FFMA "$log/$p.sass") |"$'\n'
    fi
  done
  sass="| gemm.tile SASS (sm_90a) | HMMA | HGMMA | LDGSTS (cp.async) | FFMA |"$'\n'"|---|---|---|---|---|"$'\n'"$sass"
fi
{
  echo "# GPU run ($(date -u +%Y-%m-%d), scripts/gpu.sh)"
  echo
  echo '```'
  cat "$log/devices"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  echo '```'
  echo
  echo "## Numerics on the GPU, both lowerings (ctest cuda/*, cuda-c/*)"
  echo
  echo '```'
  grep -E "Test +#|tests passed|FAILED" "$log/ctest"
  echo '```'
  echo
  echo "## compute-sanitizer over tests/numerics/test_kernels.c"
  echo
  echo "| tool | lowering | result | |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${san[@]}"
  echo
  echo "## SASS"
  echo
  echo "$sass"
} >"$out"
echo "gpu.sh: wrote $out"
exit $status
