#!/usr/bin/env bash
# gpu.sh - for a machine with an NVIDIA GPU (the lent H100/H200): builds
# Tessera, runs everything that needs the GPU in one go, most valuable first
# (a lent machine's time is short), and writes what ran into
# bench/results/gpu-DEVICE.md (device, driver, date):
#   - the GPU benchmark suite (`tessera bench --device cuda`: bench/gpu_gemm.c
#     with each lowering against torch.matmul and the peak, bench/gpu_v4.c:
#     attention, indexer + top-k, mHC, compressor, MoE against the same
#     run's copy, the peak and PyTorch), also written to
#     bench/results/bench-cuda-DATE.md and .json;
#   - cuobjdump --dump-sass of the GEMM, sparse and HCA attention kernels from
#     each lowering, counting HGMMA (wgmma), HMMA (mma.sync), UTMALDG (TMA), LDGSTS
#     (cp.async) and FFMA;
#   - the memory-bound figures under 0.7 of the copy, listed apart
#     (scripts/misses.awk);
#   - cold compile time of every kernel (bench/compile_time, this machine's
#     CPU);
#   - the model's prefill of one V4-Flash-width attention layer (window, CSA,
#     HCA) with f32 attention against bf16 on tensor cores, the same run
#     (bench/prefill_attention.lua at 1024 and 4096 tokens), and its decode
#     step at 128K and 1M tokens, both ways, and of 16 sequences at 128K
#     decoding together (bench/long_context.lua), and a
#     tiny-model decode step's launches, waits and time (bench/decode_queue.lua,
#     f32 linears and bf16 experts, then the released FP8 linears and FP4 experts,
#     then each kernel's own time in those steps: TESSERA_PROFILE=1; its last
#     rows: a step replayed as a CUDA graph, and steps past the window with
#     graphs on against plain ones), and
#     speculative decoding's steps against plain ones (bench/speculate.lua:
#     two rows a step where one was, with drafts always right; again past the
#     window with graphs on), and prompts
#     prefilled together against one at a time (bench/prefill_batch.lua:
#     launches and time), a shared prefix prefilled once and forked
#     (bench/fork.lua), requests served with continuous batching against one
#     at a time (bench/serve.lua), and last the CSA and HCA layers prefilled by the
#     model itself to 128K, 512K and 1M tokens, 8192 a chunk, then decoding
#     from that state (bench/long_context.lua --prefill);
#   - the numerics suites on the GPU with each lowering (ctest cuda/*,
#     cuda-c/*: MLIR's PTX, and the CUDA C through NVRTC), which is the
#     differential test of the two;
#   - with TS_SANITIZERS=1, compute-sanitizer memcheck and racecheck over the
#     kernel suite, and racecheck over num_v4's attention cases
#     (TS_NUM_ONLY), each lowering (slow).
# First, each lowering's GEMM check (TMA and cp.async shapes) under a
# timeout: TMA has never run on hardware before this script, so if it fails
# or hangs and the check passes with TESSERA_TMA=0, everything after runs
# with TMA off and the report says so. Every stage has a time limit
# (TS_BENCH_SECONDS, TS_CTEST_SECONDS) and the report is rewritten after
# each one, and copied into $OUT when set (the `run` tool's folder), so a run
# cut short keeps what it measured:
#   run: scripts/gpu.sh   timeout_s: 600
# Without a GPU it stops after saying so.
#
# The lent GPU machine reaches nothing outside it, so it cannot install
# MLIR 22 and Lua: scripts/gpu-pack.sh prepares here a trimmed build/ and the
# runtime packages (.gpu-debs), which go in two calls (64 MiB a call):
#   run: scripts/gpu.sh --libs   carry: .gpu-debs   (unpacks them, stops)
#   run: scripts/gpu.sh          carry: build       (within 30 s: still warm)
# The packages go into /opt/tessera-libs, not into / (unpacking over the
# image's own libraries can break it), and on LD_LIBRARY_PATH from there; a
# library tessera still cannot find is named before anything runs.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
libs=/opt/tessera-libs
if [[ -d .gpu-debs ]]; then
  mkdir -p "$libs"
  for f in .gpu-debs/*.deb; do dpkg -x "$f" "$libs"; done
  echo "gpu.sh: unpacked $(ls .gpu-debs | wc -l) packages into $libs"
fi
[[ ${1:-} == --libs ]] && exit 0
if [[ -d $libs ]]; then
  export LD_LIBRARY_PATH=$libs/usr/lib/x86_64-linux-gnu:$libs/usr/lib/llvm-22/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
# a carried build names the source and build folders of the machine it was
# configured on (ctest's commands, rpaths): make that path lead here
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' build/CMakeCache.txt 2>/dev/null)
if [[ -n $src && ! -e $src ]]; then
  mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"
fi
if [[ -x build/tessera ]] && ldd build/tessera | grep -q "not found"; then
  echo "gpu.sh: build/tessera cannot find:"; ldd build/tessera | grep "not found"
  echo "(carry them as packages: scripts/gpu-pack.sh, then run scripts/gpu.sh --libs first)"
  exit 2
fi
if ! build/tessera --version >/dev/null 2>&1; then
  scripts/setup.sh build || exit 2
fi
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
build/tessera devices | tee "$log/devices"
if ! grep -q "GPU" "$log/devices" || grep -q "no GPU" "$log/devices"; then
  echo "gpu.sh: no GPU here; nothing to do"
  exit 0
fi
slug=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')
out=bench/results/gpu-${slug:-unknown}.md
export TESSERA_CACHE=$log/cache
status=0
# Every stage runs under a timeout (a hung kernel must not take the lease)
# and the report is rewritten after each, into $OUT too when the `run`
# tool set it, so a run cut short still leaves what it measured.
# a stage's log as the report shows it: its tables' lines (and a FAILED),
# else its tail, or that it has not run
tables_of() {
  if [[ -f $1 ]]; then
    grep -E '^(#|\||FAILED)' "$1" || tail -n 20 "$1"
  else
    echo "(not run yet)"
  fi
}
stage() { # SECONDS LOGFILE COMMAND...: 0, or 124 on a timeout, else 1
  local t=$1 f=$2
  shift 2
  timeout -k 10 "$t" "$@" >"$f" 2>&1
  local rc=$?
  ((rc == 0)) && return 0
  status=1
  ((rc == 124 || rc == 137)) && { echo "(timed out after ${t} s)" >>"$f"; return 124; }
  grep -q "the work queued on the GPU failed" "$f" &&
    echo "(a queued kernel faulted: rerun this stage with TESSERA_CUDA_SYNC=1 to name it)" >>"$f"
  return 1
}
# TMA has not run on hardware before this script: the GEMM's check (K 191 by
# cp.async, K 192 by TMA) comes first, each lowering; if it fails or hangs
# and passes with TESSERA_TMA=0, the rest runs with TMA off and says so
tma="on (the GEMM check passed with TMA, both lowerings)"
for lowering in mlir cuda; do
  if ! TESSERA_GPU_LOWERING=$lowering stage 120 "$log/smoke-$lowering" build/bench/gpu_gemm --sizes 256; then
    tma="OFF: gpu_gemm --sizes 256 ($lowering lowering) failed or hung with TMA (log below)"
    if TESSERA_TMA=0 TESSERA_GPU_LOWERING=$lowering stage 120 "$log/smoke0" build/bench/gpu_gemm --sizes 256; then
      export TESSERA_TMA=0
    else
      tma="$tma; it fails with TESSERA_TMA=0 too"
    fi
    break
  fi
done
report() {
  {
    echo "# GPU run ($(date -u +%Y-%m-%d), scripts/gpu.sh)"
    echo
    echo '```'
    cat "$log/devices"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
    echo '```'
    echo
    echo "TMA: $tma"
    if [[ $tma == OFF* ]]; then
      echo
      echo '```'
      tail -n 30 "$log/smoke-mlir" "$log/smoke-cuda" 2>/dev/null
      echo '```'
    fi
    echo
    echo "## Benchmarks (tessera bench --device cuda)"
    echo
    bench_md=$(ls -t bench/results/bench-cuda-*.md 2>/dev/null | head -n 1)
    if [[ -n $bench_md && $bench_md -nt $log/devices ]]; then
      sed '1,/^$/d' "$bench_md"
      echo
      echo "## Memory-bound figures under 0.7 of the copy (scripts/misses.awk)"
      echo
      echo "Issue 8's target for them; the GEMM against torch.matmul (0.7x), the decode"
      echo "roofline and the compute-bound figures are read from the tables above."
      echo
      misses=$(awk -f scripts/misses.awk "$bench_md")
      echo "${misses:-(none)}"
      echo
      echo "## Theoretical occupancy on sm_90a (scripts/occupancy.awk, ptxas figures)"
      echo
      echo "What the registers, shared memory and threads of each block allow an SM to hold"
      echo "(from tests/ptx/resources.txt): one of the limits to read the misses against."
      echo
      awk -v arch=sm_90a -f scripts/occupancy.awk tests/ptx/resources.txt
    elif [[ -f $log/bench ]]; then
      echo '```'
      tail -n 60 "$log/bench"
      echo '```'
    else
      echo "(not run yet)"
    fi
    echo
    echo "## SASS"
    echo
    echo "$sass"
    echo
    echo "## The model's prefill attention: f32 against bf16 on tensor cores (bench/prefill_attention.lua)"
    echo
    if [[ -f $log/prefill ]]; then
      grep -E '^(#|\||random|attention|merge|outputs)' "$log/prefill" || tail -n 20 "$log/prefill"
    else
      echo "(not run yet)"
    fi
    echo
    echo "## The model's decode step of one layer at 128K and 1M tokens, f32 and bf16 attention; prefilled by the model to 128K, 512K and 1M (bench/long_context.lua)"
    echo
    for a in f32 bf16 bf16-batch bf16-prefill; do
      if [[ -f $log/long-$a ]]; then
        grep -E '^(#|\||[0-9]+ sequences)' "$log/long-$a" || tail -n 20 "$log/long-$a"
        echo
      fi
    done
    [[ -f $log/long-f32 ]] || echo "(not run yet)"
    echo
    echo "## A tiny-model decode step's requests and time (bench/decode_queue.lua)"
    echo
    if [[ -f $log/decode-queue ]]; then
      grep -E '^(#|\|)' "$log/decode-queue" || tail -n 20 "$log/decode-queue"
    else
      echo "(not run yet)"
    fi
    if [[ -f $log/decode-queue-release ]]; then
      echo
      grep -E '^(#|\|)' "$log/decode-queue-release" || tail -n 20 "$log/decode-queue-release"
    fi
    if [[ -f $log/decode-profile ]]; then
      echo
      echo "Each kernel's own GPU time in those decode steps (TESSERA_PROFILE=1: CUDA events"
      echo "around every launch, which then waits, so the step's total is not the figure above):"
      sed -n '/^# kernel profile/,$p' "$log/decode-profile" | head -n 40
    fi
    echo
    echo "## Prompts prefilled together on the tiny model (bench/prefill_batch.lua)"
    echo
    tables_of "$log/prefill-batch"
    echo
    echo "## A shared prefix forked on the tiny model (bench/fork.lua)"
    echo
    tables_of "$log/fork"
    echo
    echo "## Continuous batching on the tiny model (bench/serve.lua)"
    echo
    tables_of "$log/serve"
    echo
    echo "## Speculative decoding on the tiny model (bench/speculate.lua: 1, then 16 sequences)"
    echo
    tables_of "$log/speculate"
    if [[ -f $log/speculate-graphs ]]; then
      echo
      tables_of "$log/speculate-graphs"
    fi
    for f in speculate-batch speculate-batch-graphs; do
      if [[ -f $log/$f ]]; then
        echo
        tables_of "$log/$f"
      fi
    done
    echo
    echo "## Cold compile time (bench/compile_time)"
    echo
    cat "$log/compile" 2>/dev/null || echo "(not run yet)"
    echo
    echo "## Numerics on the GPU, both lowerings (ctest cuda/*, cuda-c/*)"
    echo
    echo '```'
    grep -E "Test +#|tests passed|FAILED|timed out" "$log/ctest" 2>/dev/null || echo "(not run yet)"
    echo '```'
    echo
    echo "## compute-sanitizer over tests/numerics/test_kernels.c"
    echo
    echo "| tool | lowering | result | |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${san[@]}"
  } >"$out"
  if [[ -n ${OUT:-} ]]; then # and the whole logs, for what the report cuts
    cp "$out" "$OUT/" 2>/dev/null
    for f in bench ctest smoke-mlir smoke-cuda; do
      [[ -f $log/$f ]] && cp "$log/$f" "$OUT/$f.log" 2>/dev/null
    done
  fi
  true
}
sass="(not run yet)"
san=("| compute-sanitizer | - | not run yet | |")
report
# the GPU benchmark suite first (TS_BENCH_SECONDS: its time limit)
stage "${TS_BENCH_SECONDS:-360}" "$log/bench" build/tessera bench --device cuda
tail -n 5 "$log/bench"
report
sass="(cuobjdump not found)"
if command -v cuobjdump >/dev/null 2>&1; then
  sass=""
  for f in gemm sparse_attn hca_attn; do
    build/tessera compile kernels/$f.tile --target ptx --arch sm_90a -o "$log/$f.ptx"
    build/tessera compile kernels/$f.tile --target cuda --emit ptx --arch sm_90a -o "$log/$f.cuda.ptx"
    for p in $f $f.cuda; do
      if /usr/local/cuda/bin/ptxas -arch=sm_90a "$log/$p.ptx" -o "$log/$p.cubin"; then
        cuobjdump --dump-sass "$log/$p.cubin" >"$log/$p.sass"
        sass+="| $p | $(grep -c HGMMA "$log/$p.sass") | $(grep -c HMMA "$log/$p.sass") | $(grep -c LDGSTS "$log/$p.sass") | $(grep -c UTMALDG "$log/$p.sass") | $(grep -c FFMA "$log/$p.sass") |"$'\n'
      fi
    done
  done
  sass="| SASS (sm_90a) | HGMMA | HMMA | LDGSTS (cp.async) | UTMALDG (TMA) | FFMA |"$'\n'"|---|---|---|---|---|---|"$'\n'"$sass"
fi
stage 120 "$log/compile" build/bench/compile_time
tail -n 3 "$log/compile"
report
stage 180 "$log/prefill" build/tessera run bench/prefill_attention.lua --device cuda --tokens 1024,4096
tail -n 4 "$log/prefill"
report
for a in f32 bf16; do
  stage 120 "$log/long-$a" build/tessera run bench/long_context.lua --device cuda --attention $a \
    --tokens 131072,1048576 --steps 3 --dense-max 131072
done
# (a served batch: 16 sequences at 128K decoding together from the pools)
stage 120 "$log/long-bf16-batch" build/tessera run bench/long_context.lua --device cuda \
  --attention bf16 --tokens 131072 --steps 3 --dense-max 0 --batch 16
report
stage 120 "$log/decode-queue" build/tessera run bench/decode_queue.lua --device cuda --steps 32
# (the released checkpoints' formats: FP8 linears, FP4 routed experts)
stage 120 "$log/decode-queue-release" build/tessera run bench/decode_queue.lua --device cuda \
  --steps 32 --linears fp8 --experts fp4
# (the same steps' kernels by their own time: runtime/profile.c)
TESSERA_PROFILE=1 stage 120 "$log/decode-profile" build/tessera run bench/decode_queue.lua \
  --device cuda --steps 8 --linears fp8 --experts fp4
# (speculative decoding: a two-row step against a one-row step on the GPU)
stage 120 "$log/speculate" build/tessera run bench/speculate.lua --device cuda
stage 120 "$log/speculate-graphs" build/tessera run bench/speculate.lua --device cuda \
  --prompt 140 --graphs on
stage 120 "$log/speculate-batch" build/tessera run bench/speculate.lua --device cuda --batch 16
stage 120 "$log/speculate-batch-graphs" build/tessera run bench/speculate.lua --device cuda \
  --batch 16 --prompt 140 --graphs on
# (prompts prefilled together: one launch a layer for all their attention)
stage 120 "$log/prefill-batch" build/tessera run bench/prefill_batch.lua --device cuda
# (a shared prefix prefilled once and forked, against prefilling it again)
stage 120 "$log/fork" build/tessera run bench/fork.lua --device cuda
# (continuous batching: requests joining and leaving the batch, against one at a time)
stage 120 "$log/serve" build/tessera run bench/serve.lua --device cuda --system 300 \
  --prefix-cache 0,8
report
# (the million-token layer prefilled by the model itself, 8192 tokens a
# chunk, then decoding from that state; each context's rows print as it
# ends, so a timeout still leaves the shorter contexts')
stage 300 "$log/long-bf16-prefill" build/tessera run bench/long_context.lua --device cuda \
  --attention bf16 --tokens 131072,524288,1048576 --steps 3 --dense-max 0 --prefill 8192
report
# (the numerics with every launch waited for: a kernel that faults is named
# in its own check, not in whichever later read waits for the queue)
TESSERA_CUDA_SYNC=1 \
  stage "${TS_CTEST_SECONDS:-240}" "$log/ctest" ctest --test-dir build -R '^(cuda|cuda-c)/' --timeout 120 --output-on-failure
tail -n 30 "$log/ctest"
report
san=()
if [[ ${TS_SANITIZERS:-0} != 1 ]]; then
  san+=("| compute-sanitizer | - | not run (TS_SANITIZERS=1 runs it) | |")
elif command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck; do
    for lowering in mlir cuda; do
      r=pass
      TS_SOURCE_DIR=$PWD TS_TEST_DEVICE=cuda TESSERA_GPU_LOWERING=$lowering \
        stage 300 "$log/$tool-$lowering" compute-sanitizer --tool "$tool" --error-exitcode 9 \
        build/tests/num_kernels || r=FAIL
      san+=("| $tool | $lowering | $r | $(grep -c 'ERROR SUMMARY: 0' "$log/$tool-$lowering") clean summaries |")
    done
  done
  # the attention kernels' warpgroups meet in shared memory (docs/abi.md
  # "Warpgroups splitting N"): racecheck their cases alone
  for lowering in mlir cuda; do
    r=pass
    TS_SOURCE_DIR=$PWD TS_TEST_DEVICE=cuda TESSERA_GPU_LOWERING=$lowering TS_NUM_ONLY=attn_tc,hca \
      stage 300 "$log/racecheck-attn-$lowering" compute-sanitizer --tool racecheck \
      --error-exitcode 9 build/tests/num_v4 || r=FAIL
    san+=("| racecheck (num_v4 attn_tc, hca) | $lowering | $r | $(grep -c 'ERROR SUMMARY: 0' "$log/racecheck-attn-$lowering") clean summaries |")
  done
else
  san+=("| compute-sanitizer | - | not installed | |")
fi
report
echo "gpu.sh: wrote $out"
exit $status
