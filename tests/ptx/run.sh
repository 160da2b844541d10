#!/usr/bin/env bash
# run.sh TESSERA SOURCE_DIR [PART] - every kernel in kernels/ and every test kernel
# compiles to PTX for sm_90a and sm_80 both ways (MLIR; CUDA C through
# NVRTC), and ptxas assembles each with no warning; both lowerings of the
# bf16/f16 GEMMs issue tensor-core instructions and pipeline their copies
# (and every kernel's PTX has wgmma or mma.sync exactly where its
# `--emit plan` says: tests/ptx/plan.awk)
# with cp.async: on sm_90a the GEMMs (bf16 and fp8) and the sparse and HCA
# attention, the FP4 indexer (s8), the grouped MoE (bf16) and the quantised
# experts' prefill (e4m3)
# issue wgmma.mma_async in both lowerings and ptxas may not serialize
# them; elsewhere mma.sync (with ldmatrix for the GEMMs).
# For the MLIR PTX,
# ptxas's registers, spill bytes and stack frame and the kernel's dynamic
# shared memory are compared with tests/ptx/resources.txt: a kernel missing
# from it, one that spills more or needs a larger stack frame than
# recorded, or one over its architecture's shared memory a block (227 KiB,
# sm_80 163 KiB) fails (registers and shared memory are reported when they
# change). The library's kernels also build for sm_86 (99 KiB; MLIR only,
# tests/ptx/checks.sh). TS_UPDATE_GOLDEN=1 rewrites resources.txt.
# PART (ctest runs the three side by side): sm_90a or sm_80, that
# architecture's assembly of every file and of the param variants; checks,
# the particular lowerings' checks and sm_86 (tests/ptx/checks.sh); all
# (the default) the three. TS_UPDATE_GOLDEN=1 needs all.
# TS_PTX_COMPILER_ONLY=1 (the sanitizer build's ctest sets it): Tessera's own
# part only, both lowerings' text for every file and variant (the MLIR PTX,
# the CUDA C NVRTC would take), no NVRTC, no ptxas, no resources: those run
# uninstrumented code the normal build's test already checks, and were two
# thirds of this test's time under the sanitizers.
# Without ptxas the test is skipped (exit 77).
set -u
only=${TS_PTX_COMPILER_ONLY:-0}
part=${3:-all} other=0 archs=()
case $part in
  sm_90a | sm_80) archs=("$part") ;;
  checks) other=1 ;;
  all) archs=(sm_90a sm_80) other=1 ;;
  *) echo "run.sh: PART is sm_90a, sm_80, checks or all, not '$part'"; exit 2 ;;
esac
if [[ ${TS_UPDATE_GOLDEN:-0} == 1 && ( $part != all || $only == 1 ) ]]; then
  echo "run.sh: TS_UPDATE_GOLDEN=1 rewrites every architecture's resources: PART all, with ptxas"
  exit 2
fi
# absolute paths: the script works from the source root
tessera=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") src=$(cd "$2" && pwd)
ptxas=${PTXAS:-/usr/local/cuda/bin/ptxas}
if [[ ! -x $ptxas ]] && ((!only)); then
  echo "skipped: no ptxas at $ptxas"
  exit 77
fi
expected=$src/tests/ptx/resources.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src" || exit 2
files=(kernels/*.tile tests/numerics/ops.tile tests/golden/mlir/scale.tile tests/ptx/*.tile tests/lua/debug.tile
       tests/lua/tile_fns.tile bench/gpu.tile)
# ptx_resources ARCH PTX PTXAS_OUTPUT FILE: a line of tests/ptx/resources.txt
# per kernel, from the PTX's "// tessera kernel K threads T smem S" lines
# (the dynamic shared memory a launch gives, the block's threads), then
# from ptxas: entry, "N
# bytes stack frame, S bytes spill stores, L bytes spill loads", "Used R
# registers"
ptx_resources() {
  awk -v arch="$1" -v file="$4" '
    FNR == NR { if ($2 == "tessera" && $3 == "kernel") { thr[$4] = $6; smem[$4] = $8 }; next }
    /Compiling entry function/ { match($0, /'"'"'[^'"'"']*'"'"'/); k = substr($0, RSTART + 1, RLENGTH - 2) }
    /bytes stack frame/ { stack = $1; spill = $5 + $9 }
    /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) if ($i == "Used") r = $(i + 1);
                             print arch, file, k, "registers", r, "spill", spill, "stack", stack, "smem", smem[k],
                                   "threads", thr[k] }
  ' "$2" "$3" >>"$tmp/now.txt"
}
pass=0 fail=0
: >"$tmp/now.txt"
for arch in "${archs[@]}"; do
  for f in "${files[@]}"; do
    out=$tmp/$(basename "$f" .tile).$arch.ptx
    if ! "$tessera" compile "$f" --target ptx --arch "$arch" --no-cache -o "$out" 2>"$tmp/err"; then
      echo "FAIL: $f does not compile for $arch:"; cat "$tmp/err"
      fail=$((fail + 1)); continue
    fi
    if ((only)); then
      if ! "$tessera" compile "$f" --target cuda --emit cuda --arch "$arch" -o "$out.cu" 2>"$tmp/err"; then
        echo "FAIL: $f has no CUDA C for $arch:"; cat "$tmp/err"
        fail=$((fail + 1)); continue
      fi
      pass=$((pass + 1)); continue
    fi
    if ! "$ptxas" -arch="$arch" -v "$out" -o "$tmp/out.cubin" 2>"$tmp/info"; then
      echo "FAIL: ptxas -arch=$arch rejects $f:"; grep -v "^ptxas info" "$tmp/info" | head -20
      fail=$((fail + 1)); continue
    fi
    if grep -qi "warning" "$tmp/info"; then
      echo "FAIL: ptxas -arch=$arch warns on $f:"; grep -i warning "$tmp/info"
      fail=$((fail + 1)); continue
    fi
    # ptxas reports serialized wgmma as "Potential Performance Loss" info,
    # and waits it had to add around wgmma's registers as "injected"
    if grep -qi "serialized\|Performance Loss\|injected" "$tmp/info"; then
      echo "FAIL: ptxas -arch=$arch serializes wgmma or injects waits in $f:"
      grep -i "serialized\|Performance Loss\|injected" "$tmp/info"
      fail=$((fail + 1)); continue
    fi
    # the second lowering: CUDA C, through NVRTC, then ptxas
    if ! "$tessera" compile "$f" --target cuda --emit ptx --arch "$arch" --no-cache -o "$out.nvrtc" 2>"$tmp/err"; then
      echo "FAIL: the CUDA C of $f does not compile with NVRTC for $arch:"; head -c 3000 "$tmp/err"
      fail=$((fail + 1)); continue
    fi
    if ! "$ptxas" -arch="$arch" -v "$out.nvrtc" -o "$tmp/out2.cubin" 2>"$tmp/info2" || grep -qi warning "$tmp/info2"; then
      echo "FAIL: ptxas -arch=$arch on NVRTC's PTX of $f:"; head -20 "$tmp/info2"
      fail=$((fail + 1)); continue
    fi
    if grep -qi "serialized\|Performance Loss\|injected" "$tmp/info2"; then
      echo "FAIL: ptxas -arch=$arch serializes wgmma or injects waits in NVRTC's PTX of $f"
      fail=$((fail + 1)); continue
    fi
    # wgmma on sm_90a, both lowerings: the GEMMs, the tensor-core sparse and
    # HCA attention, the grouped MoE's bf16 GEMMs and the wgmma test kernels
    if [[ $arch == sm_90a && ( $f == kernels/gemm.tile || $f == kernels/sparse_attn.tile ||
          $f == kernels/hca_attn.tile || $f == kernels/indexer.tile ||
          $f == kernels/moe.tile || $f == tests/ptx/gpu.tile ) ]]; then
      for p in "$out" "$out.nvrtc"; do
        n=$(grep -c "wgmma.mma_async.sync.aligned.m64n[0-9]*k16.f32.[bf]*16.[bf]*16" "$p")
        if ((n < 1)); then
          echo "FAIL: $p ($f, $arch) has no wgmma.mma_async"
          fail=$((fail + 1)); continue 2
        fi
        # and the fp8 GEMM's e4m3 form
        if [[ $f == kernels/gemm.tile ]] && ! grep -q "wgmma.mma_async.sync.aligned.m64n[0-9]*k32.f32.e4m3.e4m3" "$p"; then
          echo "FAIL: $p ($f, $arch) has no e4m3 wgmma.mma_async"
          fail=$((fail + 1)); continue 2
        fi
        # and gemm_nt's ring keeps a k step's wgmma in flight (a wait for
        # all but the newest group) with no instruction but wgmma defining
        # its accumulators (else ptxas serializes it, caught above)
        if [[ $f == kernels/gemm.tile ]] && ! grep -q "wgmma.wait_group.sync.aligned 1;" "$p"; then
          echo "FAIL: $p ($f, $arch) keeps no wgmma in flight across the ring (wait_group 1)"
          fail=$((fail + 1)); continue 2
        fi
        # and the attention's P V with B MN-major (imm-trans-b 1)
        if [[ $f != kernels/gemm.tile && $f != kernels/indexer.tile && $f != kernels/moe.tile ]] &&
           ! grep -q "p, 1, 1, 0, 1;" "$p"; then
          echo "FAIL: $p ($f, $arch) has no wgmma with B MN-major (imm-trans-b 1)"
          fail=$((fail + 1)); continue 2
        fi
      done
    fi
    # tensor cores: both lowerings of the bf16 GEMMs issue mma.sync (the
    # fast path cannot silently fall back to scalar FMAs)
    if [[ $f == kernels/gemm.tile || $f == kernels/indexer.tile || $f == kernels/moe.tile ||
          $f == kernels/sparse_attn.tile || $f == tests/ptx/gpu.tile ]]; then
      for p in "$out" "$out.nvrtc"; do
        n=$(grep -c "mma.sync.aligned.m16n8k16.row.col.f32.[bf]*16.[bf]*16.f32" "$p")
        # gemm.tile's, the attention's, the indexer's and the MoE's bf16
        # GEMMs are all wgmma on sm_90a
        [[ $arch == sm_90a && ( $f == kernels/gemm.tile || $f == kernels/sparse_attn.tile ||
           $f == kernels/indexer.tile || $f == kernels/moe.tile ) ]] && n=1
        if ((n < 1)); then
          echo "FAIL: $p ($f, $arch) has $n mma.sync instructions"
          fail=$((fail + 1)); continue 2
        fi
      done
    fi
    # the GEMMs' fragments come from shared memory by ldmatrix, both lowerings
    if [[ $f == kernels/gemm.tile && $arch != sm_90a ]] &&
       ! { grep -q "ldmatrix.sync" "$out" && grep -q "ldmatrix.sync" "$out.nvrtc"; }; then
      echo "FAIL: the PTX of $f for $arch has no ldmatrix (MLIR and NVRTC)"
      fail=$((fail + 1)); continue
    fi
    # pipelined loops: both lowerings of the GEMMs and the grouped MoE's copy
    # ahead with cp.async
    if [[ $f == kernels/gemm.tile || $f == kernels/moe.tile ]] &&
       ! { grep -q "cp.async.wait_group" "$out" && grep -q "cp.async.wait_group" "$out.nvrtc"; }; then
      echo "FAIL: the PTX of $f for $arch has no cp.async ring (MLIR and NVRTC)"
      fail=$((fail + 1)); continue
    fi
    # TMA: on sm_90a both lowerings' GEMM rings copy their operand tiles
    # with cp.async.bulk.tensor from tensor maps passed by value, completing
    # on mbarriers every thread waits on
    if [[ $f == kernels/gemm.tile && $arch == sm_90a ]]; then
      for p in "$out" "$out.nvrtc"; do
        if ! { grep -q "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes" "$p" &&
               grep -q "mbarrier.try_wait.parity.shared::cta.b64" "$p" &&
               grep -q "mbarrier.arrive.expect_tx.shared::cta.b64" "$p" &&
               grep -q "\.param \.align 64 \.b8 gemm_nt_param_[0-9]*\[128\]" "$p"; }; then
          echo "FAIL: $p ($f, $arch) has no TMA ring (bulk tensor copies, mbarriers, by-value maps)"
          fail=$((fail + 1)); continue 2
        fi
      done
    fi
    # --emit plan says what both lowerings do: a kernel's PTX has wgmma or
    # mma.sync exactly when its plan runs a gemm so (tests/ptx/plan.awk)
    if ! "$tessera" compile "$f" --target ptx --arch "$arch" --emit plan -o "$tmp/plan" 2>"$tmp/err"; then
      echo "FAIL: no plan of $f for $arch:"; cat "$tmp/err"
      fail=$((fail + 1)); continue
    fi
    for p in "$out" "$out.nvrtc"; do
      if ! awk -f "$src/tests/ptx/plan.awk" "$tmp/plan" "$p" >"$tmp/planned"; then
        echo "FAIL: the plan of $f for $arch and $p disagree:"; cat "$tmp/planned"
        fail=$((fail + 1)); continue 2
      fi
    done
    # shared memory is addressed with 32-bit registers in the MLIR lowering
    # (LLVM's short pointers, compiler/pipeline.c; the inline asm takes the
    # shared window's i32): 64-bit shared addresses cost sparse_attn_tc
    # 88 bytes of spill on sm_90a
    if grep -qE "(ld|st|atom|red|cp\.async[a-z.]*|ldmatrix[a-z0-9.]*)\.shared[a-z0-9.:]*[[:space:]]*\[%rd" "$out"; then
      echo "FAIL: $out ($f, $arch) addresses shared memory with 64-bit registers:"
      grep -m3 -E "(ld|st|atom|red|cp\.async[a-z.]*|ldmatrix[a-z0-9.]*)\.shared[a-z0-9.:]*[[:space:]]*\[%rd" "$out"
      fail=$((fail + 1)); continue
    fi
    ptx_resources "$arch" "$out" "$tmp/info" "$f"
    pass=$((pass + 1))
  done
done
# the param values the model and the benches compile besides the defaults
# (the exact model's f32 forms, bf16 linear weights, a decode step's
# split-K linears on a GPU, its fused norm and rope forms, the MoE GEMMs'
# decode forms): both lowerings, ptxas clean,
# resources recorded as FILE[DEFINES] (defines joined by commas)
for arch in "${archs[@]}"; do
  for fk in "kernels/gemm.tile linear_f32 W=bf16" "kernels/gemm.tile grouped_linear_f32 W=bf16" \
            "kernels/gemm.tile linear_f32 W=bf16 BM=1 BN=32 BK=128 SPLIT=4" \
            "kernels/gemm.tile linear_fp8_act BM=1 BN=32 SPLIT=4" \
            "kernels/hadamard.tile hadamard XT=f32" "kernels/rope.tile rope XT=f32" \
            "kernels/rmsnorm.tile head_rmsnorm XT=f32" "kernels/hca_attn.tile hca_attn XT=f32" \
            "kernels/quant.tile act_quant XQ=fp8e4m3" "kernels/rope.tile head_norm_rope XT=f32" \
            "kernels/sparse_attn.tile sparse_attn_merge OT=f32 ROPE=true" \
            "kernels/mhc.tile hc_pre_fused NORM=true BT=1 BD=4096" \
            "kernels/mhc.tile hc_post_mix TF32=1 BT=32 NT=256 LAST=true" \
            "kernels/hadamard.tile rope_hadamard XT=f32" "kernels/quant.tile kv_unpack XT=bf16" \
            "kernels/quant.tile kv_unpack_rows XT=bf16" \
            "kernels/rope.tile head_norm_rope XT=f32 YT=bf16" \
            "kernels/indexer.tile indexer_scores_f32 WSCALE=0.011048543456039806" \
            "kernels/indexer.tile indexer_scores_fp4 WSCALE=0.011048543456039806" \
            "kernels/compressor.tile compress_pool JOINED=true" \
            "kernels/compressor.tile compress_pool JOINED=true OVERLAP=true" \
            "kernels/compressor.tile compress_pool_at JOINED=true" \
            "kernels/compressor.tile compress_pool_at JOINED=true OVERLAP=true" \
            "kernels/compressor.tile compress_pool_ring JOINED=true OVERLAP=true R=8" \
            "kernels/compressor.tile compress_pool_ring JOINED=true R=128" \
            "kernels/compressor.tile compress_norm_rope_at FROM_POS=true" \
            "kernels/moe.tile moe_up_fp4 ACT=true BM=1" "kernels/moe.tile moe_down_fp4 ACT=true BM=1" \
            "kernels/moe.tile moe_up_fp8 ACT=true BM=1" "kernels/moe.tile moe_down_fp8 ACT=true BM=1" \
            "kernels/moe.tile moe_up BM=1 BN=8" "kernels/moe.tile moe_down BM=1 BN=8 ADD=6" \
            "kernels/moe.tile moe_up_fp8 ACT=true BM=1 BN=8"; do
    read -r f k defs <<<"$fk"
    dargs=()
    for d in $defs; do dargs+=(-D "$d"); done
    def=${defs// /,}
    o=$tmp/variant.ptx
    if ! "$tessera" compile "$f" --kernel "$k" "${dargs[@]}" --target ptx --arch $arch --no-cache \
         -o "$o" 2>"$tmp/err"; then
      echo "FAIL: $k ($f -D $def, $arch) does not compile:"; cat "$tmp/err"
      fail=$((fail + 1)); continue
    fi
    if ((only)); then
      if ! "$tessera" compile "$f" --kernel "$k" "${dargs[@]}" --target cuda --emit cuda \
           --arch $arch -o "$o.cu" 2>"$tmp/err"; then
        echo "FAIL: $k ($f -D $def, $arch) has no CUDA C:"; cat "$tmp/err"
        fail=$((fail + 1)); continue
      fi
      pass=$((pass + 1)); continue
    fi
    if ! "$ptxas" -arch=$arch -v "$o" -o "$tmp/variant.cubin" 2>"$tmp/info" ||
       grep -qi "warning" "$tmp/info" ||
       ! "$tessera" compile "$f" --kernel "$k" "${dargs[@]}" --target cuda --emit ptx --arch $arch \
         --no-cache -o "$o.nvrtc" 2>>"$tmp/err" ||
       ! "$ptxas" -arch=$arch "$o.nvrtc" -o "$tmp/variant2.cubin" 2>"$tmp/info2" ||
       grep -qi "warning" "$tmp/info2"; then
      echo "FAIL: $k ($f -D $def, $arch) does not build cleanly:"; cat "$tmp/err" "$tmp/info" "$tmp/info2"
      fail=$((fail + 1))
    else
      ptx_resources "$arch" "$o" "$tmp/info" "${f}[$def]"
      pass=$((pass + 1))
    fi
  done
done
if ((other && !only)); then
  # shellcheck source=tests/ptx/checks.sh
  source "$src/tests/ptx/checks.sh"
fi
sort -o "$tmp/now.txt" "$tmp/now.txt"
if [[ ${TS_UPDATE_GOLDEN:-0} == 1 ]]; then
  if ((fail > 0)); then
    echo "not updating $expected: $fail checks failed"
    exit 1
  fi
  { echo "# per kernel: arch file kernel registers N spill BYTES stack BYTES (ptxas -v) smem BYTES (dynamic shared memory) threads N (a block's)"
    echo "# (tests/ptx/run.sh; TS_UPDATE_GOLDEN=1 rewrites it; scripts/occupancy.awk reads it)"
    cat "$tmp/now.txt"; } >"$expected" || exit 1
  echo "updated $expected"
  exit 0
fi
# the most shared memory a block may take on each architecture
declare -A smem_max=([sm_90a]=232448 [sm_80]=166912 [sm_86]=101376)
while read -r arch file k _ regs _ spill _ stack _ smem _ threads; do
  # the dynamic shared memory must fit a block (sm_90a 227 KiB, sm_80 an
  # A100's 163 KiB, sm_86 99 KiB)
  if ((smem > smem_max[$arch])); then
    echo "FAIL: $arch $file $k needs $smem bytes of shared memory, past ${smem_max[$arch]}"
    fail=$((fail + 1)); continue
  fi
  old=$(awk -v a="$arch" -v f="$file" -v k="$k" '$1 == a && $2 == f && $3 == k' "$expected")
  if [[ -z $old ]]; then
    echo "FAIL: $arch $file $k is not in tests/ptx/resources.txt (TS_UPDATE_GOLDEN=1 to record it)"
    fail=$((fail + 1)); continue
  fi
  read -r _ _ _ _ oregs _ ospill _ ostack _ osmem _ othreads <<<"$old"
  if ((spill > ospill)); then
    echo "FAIL: $arch $file $k spills $spill bytes, $ospill recorded"
    fail=$((fail + 1)); continue
  fi
  # a stack frame that grows: registers (a register tile) went to local memory
  if ((stack > ostack)); then
    echo "FAIL: $arch $file $k has a $stack-byte stack frame, $ostack recorded"
    fail=$((fail + 1)); continue
  fi
  [[ $regs != "$oregs" ]] && echo "note: $arch $file $k uses $regs registers ($oregs recorded)"
  [[ $smem != "$osmem" ]] && echo "note: $arch $file $k uses $smem bytes of shared memory ($osmem recorded)"
  [[ $threads != "$othreads" ]] && echo "note: $arch $file $k runs $threads threads a block ($othreads recorded)"
  pass=$((pass + 1))
done <"$tmp/now.txt"
echo "$pass passed, $fail failed"
((fail == 0))
