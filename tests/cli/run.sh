#!/usr/bin/env bash
# run.sh TESSERA ROOT - the command line: exit codes (0 ok, 1 program errors,
# 2 usage or system failure), help for every command, options, -o, colour.
set -u
t=$1 root=$2
cd "$root" || exit 2
pass=0 fail=0
tmp=$(mktemp -d)
export TESSERA_CACHE=$tmp/cache
trap 'rm -rf "$tmp"' EXIT

# expect CODE DESCRIPTION COMMAND... : runs the command, checks its exit code
expect() {
  local want=$1 what=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [[ $got == "$want" ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $what: exit $got, expected $want"
    head -n 5 "$tmp/out" "$tmp/err"
  fi
}
# has FILE TEXT DESCRIPTION : the last command's FILE (out|err) contains TEXT
has() {
  if grep -qF -- "$2" "$tmp/$1"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $3: '$2' not in std$1"
    head -n 5 "$tmp/$1"
  fi
}

# lacks FILE TEXT DESCRIPTION : the last command's FILE does not contain TEXT
lacks() {
  if grep -qF -- "$2" "$tmp/$1"; then
    fail=$((fail + 1))
    echo "FAIL: $3: '$2' in std$1"
  else
    pass=$((pass + 1))
  fi
}

printf 'kernel k(x: f32[N]) {\n  let a = 1 +;\n}\n' >"$tmp/bad.tile"

expect 2 "no command" "$t"
# every kernel file compiles for the CPU and loads in the JIT (kernels with
# print or assert call the runtime, which the JIT is given)
for f in kernels/*.tile tests/lua/debug.tile; do
  expect 0 "tessera compile $f (CPU, JIT)" "$t" compile "$f"
  has out "compiled for the CPU" "$f compiled"
done
expect 0 "--help" "$t" --help
has out "commands:" "main help lists the commands"
expect 0 "--version" "$t" --version
has out "LLVM/MLIR 22" "version names MLIR"
expect 2 "unknown command" "$t" frobnicate
for c in check compile fmt run tune bench devices; do
  expect 0 "$c --help" "$t" "$c" --help
  has out "usage: tessera $c" "$c --help shows its usage"
done
expect 0 "help compile" "$t" help compile
expect 0 "check kernels" "$t" check kernels/softmax.tile kernels/rmsnorm.tile kernels/gemm.tile
expect 0 "check -v" "$t" check -v kernels/softmax.tile
has out "kernel softmax_rows(x: global f32[M, N]" "check -v summarises kernels"
expect 1 "check bad file" "$t" check --color=never "$tmp/bad.tile"
has err "bad.tile:2:14: error: expected an expression, found ';'" "located diagnostic"
has err "    2 |   let a = 1 +;" "source line shown"
expect 1 "colour when asked" "$t" check --color=always "$tmp/bad.tile"
has err $'\033[1;31merror' "colour codes with --color=always"
NO_COLOR=1 expect 1 "NO_COLOR" "$t" check "$tmp/bad.tile"
if grep -q $'\033' "$tmp/err"; then fail=$((fail + 1)); echo "FAIL: colour without a terminal"; else pass=$((pass + 1)); fi
expect 2 "missing file" "$t" check "$tmp/none.tile"
has err "cannot open" "missing file says why"
expect 2 "no file" "$t" check
expect 2 "unknown option" "$t" check --frob kernels/softmax.tile
expect 2 "bad colour" "$t" check --color=sometimes kernels/softmax.tile
# the built-in constant `arch`: what `check` and `compile` take it to be
# (tests/lua/arch.tile: V = arch, BS by select, a folded `if arch >= 90`)
expect 0 "check -v, the CPU's arch" "$t" check -v tests/lua/arch.tile
has out "params V=0, BS=256, TWO=true" "check: arch is 0 by default"
expect 0 "check -v --arch sm_80" "$t" check -v --arch sm_80 tests/lua/arch.tile
has out "params V=80, BS=64, TWO=false" "check --arch sm_80: arch is 80"
expect 0 "check -v --arch=sm_90a" "$t" check -v --arch=sm_90a tests/lua/arch.tile
has out "params V=90, BS=64, TWO=false" "check --arch=sm_90a: arch is 90"
expect 0 "check -v sparse_attn.tile" "$t" check -v kernels/sparse_attn.tile
has out "sparse_attn_split_kv8(" "check -v lists the kv8 kernel"
lacks out "DEC2=false" "the kv8 kernels' DEC2 is on for the CPU"
expect 0 "check -v --arch sm_90a sparse_attn.tile" "$t" check -v --arch sm_90a \
  kernels/sparse_attn.tile
has out "DEC2=false" "the kv8 kernels' DEC2 is off for sm_90a"
lacks out "DEC2=true" "and on for no kernel there"
expect 2 "check --arch unknown" "$t" check --arch sm_75 tests/lua/arch.tile
has err "unknown architecture 'sm_75'" "check names the architecture it does not know"
expect 2 "check --arch without a value" "$t" check tests/lua/arch.tile --arch
for a in sm_90a sm_80; do
  n=${a#sm_}
  n=${n%a}
  expect 0 "arch in PTX, $a" "$t" compile tests/lua/arch.tile --kernel arch_body --target ptx \
    --arch $a --no-cache
  has out ".target $a" "the PTX is for $a"
  has out "], $n;" "arch is $n in its PTX"
done
expect 0 "arch in CUDA C" "$t" compile tests/lua/arch.tile --kernel arch_body --target cuda \
  --arch sm_80
has out "= ((int)80LL);" "arch is 80 in the CUDA C for sm_80"
expect 0 "arch on the CPU" "$t" compile tests/lua/arch.tile --kernel arch_body --emit llvm
has out "store i32 0," "arch is 0 for the CPU"
expect 0 "-D param" "$t" compile kernels/softmax.tile --emit typed -D BM=8
has out "frag f32[8, N]" "-D overrides the param"
expect 0 "-DNAME=V form" "$t" compile kernels/softmax.tile --emit=typed -DBM=2
has out "param BM: int = 2" "-DNAME=VALUE"
expect 1 "-D unknown param" "$t" compile kernels/softmax.tile --emit typed -D NOPE=1
has err "no kernel in 'kernels/softmax.tile' has a param 'NOPE'" "unknown -D named"
expect 1 "-D bad value" "$t" compile kernels/softmax.tile --emit typed -D BM=x
expect 2 "-D malformed" "$t" compile kernels/softmax.tile -D BM
# with --kernel the defines are that kernel's: gemm_nt's 128 x 128 tile
# does not break gemm_swiglu's 'require BM * BN <= 8192'
expect 0 "-D for one kernel" "$t" compile kernels/gemm.tile --kernel gemm_nt --emit typed \
  -D BM=128 -D BN=128
expect 1 "-D for every kernel" "$t" compile kernels/gemm.tile --emit typed -D BM=128 -D BN=128
has err "the params break this 'require'" "a require of another kernel"
expect 1 "-D not of the kernel" "$t" compile kernels/gemm.tile --kernel gemm_nt --emit typed \
  -D LIMIT=3
has err "kernel 'gemm_nt' in 'kernels/gemm.tile' has no param 'LIMIT'" "-D of another kernel named"
expect 0 "emit tokens" "$t" compile kernels/softmax.tile --emit tokens
has out "keyword 'kernel'" "tokens dump"
expect 0 "emit ast" "$t" compile kernels/softmax.tile --emit ast
expect 0 "--kernel" "$t" compile kernels/softmax.tile --kernel softmax_rows --emit typed
expect 2 "--kernel unknown" "$t" compile kernels/softmax.tile --kernel nope --emit typed
has err "no kernel 'nope'" "unknown kernel named"
has err "'softmax_rows', 'softmax_rows_bf16'" "kernels listed"
expect 2 "unknown stage" "$t" compile kernels/softmax.tile --emit wat
expect 2 "unknown target" "$t" compile kernels/softmax.tile --target tpu
expect 2 "two files" "$t" compile kernels/softmax.tile kernels/gemm.tile
expect 2 "--emit needs a value" "$t" compile kernels/softmax.tile --emit
expect 0 "emit mlir" "$t" compile kernels/softmax.tile --kernel softmax_rows --emit mlir
has out "func.func @softmax_rows(" "mlir has the kernel entry"
has out "memref<?xf32>" "mlir has memref arguments"
# an i8 GEMM of whole tiles (K % 4 == 0, N % 16 == 0) takes the VNNI
# micro-kernel on a host that has AVX-512 VNNI; N = 20 takes the plain loops
if grep -qw avx512_vnni /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
  expect 0 "i8 gemm emit llvm" "$t" compile tests/lua/int8_gemm.tile --kernel gemm_i8_t \
    -D TM=4 -D TN=16 -D TK=8 --emit llvm
  has out "@llvm.x86.avx512.vpdpbusd.512(" "the i8 GEMM takes vpdpbusd on a VNNI host"
  expect 0 "i8 gemm N = 20" "$t" compile tests/lua/int8_gemm.tile --kernel gemm_i8_t \
    -D TM=4 -D TN=20 -D TK=8 --emit llvm
  lacks out "vpdpbusd" "an i8 GEMM with N = 20 takes the plain loops"
fi
# bf16 gemms into f32 of whole tiles take the vdpbf16ps micro-kernels on a
# host with AVX-512 BF16 (compiler/gen_bf16.c: x w^T and x w), not with
# TESSERA_CPU_BF16=0 nor for x w with 8 columns (N % 16)
if grep -qw avx512_bf16 /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
  for k in ab abt; do
    expect 0 "bf16 gemm $k emit llvm" "$t" compile tests/lua/bf16_gemm.tile --kernel $k --emit llvm
    has out "@llvm.x86.avx512bf16.dpbf16ps.512(" "the bf16 gemm $k takes vdpbf16ps"
  done
  for run in "env TESSERA_CPU_BF16=0 $t compile tests/lua/bf16_gemm.tile --kernel abt" \
             "$t compile tests/lua/bf16_gemm.tile --kernel ab -D BN=8"; do
    expect 0 "bf16 gemm: $run" $run --emit llvm
    lacks out "dpbf16ps" "$run takes the plain loops"
  done
fi
# an FP8 weight slice read in place by a decode step's gemm (b's rows, K a
# multiple of 64) is decoded by vpermi2b table lookups on a VBMI host, its
# 16-value vectors cut into the dot's 8-value ones (shufflevectors of
# <16 x float>); with 8 rows a block (each weight loaded twice) it is copied
# as written, the copy's row form decoding by the same lookups into the
# tile (gen_copy_fp8_rows) and the dot reading the tile
if grep -qw avx512vbmi /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
  expect 0 "fp8 in place emit llvm" "$t" compile tests/lua/gemm_in_place.tile \
    --kernel dot_in_place -D W=fp8e4m3 -D BM=1 --emit llvm
  has out "@llvm.x86.avx512.vpermi2var.qi.512(" "an FP8 GEMV decodes by vpermi2b on a VBMI host"
  has out "shufflevector <16 x float>" "an FP8 GEMV reads its weights in place"
  expect 0 "fp8 copied emit llvm" "$t" compile tests/lua/gemm_in_place.tile \
    --kernel dot_in_place -D W=fp8e4m3 -D BM=8 --emit llvm
  lacks out "shufflevector <16 x float>" "an FP8 gemm of 8 x rows reads a copy of its weights"
  has out "@llvm.x86.avx512.vpermi2var.qi.512(" "the FP8 copy decodes by vpermi2b on a VBMI host"
fi
# a CPU loop's copy of a tensor slice prefetches the next step's rows when
# they are at most 128 cache lines (compiler/gen_tile.c prefetch_next): the
# linear's 8 x 128 bf16 weight tile, 40 prefetches in each of the two forms
# (x read in place, and the statements as written); its 32 x 128 f32 x tile
# (288 lines) none; 8 x 512 f32 weights (264 lines) none
expect 0 "linear_f32 bf16 emit llvm" "$t" compile kernels/gemm.tile --kernel linear_f32 \
  -D W=bf16 -D BM=32 -D BN=8 -D BK=128 --emit llvm
if [[ $(grep -c "call void @llvm.prefetch" "$tmp/out") == 80 ]]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL: linear_f32's bf16 weight tiles: not 2 x 40 prefetches"
fi
expect 0 "linear_f32 BK 512 emit llvm" "$t" compile kernels/gemm.tile --kernel linear_f32 \
  -D BM=32 -D BN=8 -D BK=512 --emit llvm
lacks out "@llvm.prefetch" "a copy of more than 128 lines a step prefetches nothing"
# an `if` on a param compiles to the branch taken alone (both lowerings),
# and a tile mentioned only in the branch not taken does not keep a gemm
# from reading its slice in place (the FP8 decode in registers, on VBMI)
cat >"$tmp/fold.tile" <<'TILE'
kernel fold(x: f32[N]) params(FLAG: bool = false) grid(1) {
  if FLAG {
    x[0] = x[0] * 3.0;
  } else {
    x[0] = x[0] + 5.0;
  }
}

kernel mma_dead(a: bf16[M, K], b: bf16[N, K], c: f32[M, N])
  params(FLAG: bool = false) grid(1) threads(128)
{
  shared as: bf16[64, 64];
  shared bs: bf16[64, 64];
  frag acc: f32[64, 64];
  copy(a[0:64, 0:64], as);
  copy(b[0:64, 0:64], bs);
  gemm(as, bs, acc, trans_b=true, accumulate=false);
  if FLAG {
    acc[0, 1] = acc[1, 0];
  }
  parallel (i, j) in (64, 64) {
    acc[i, j] = acc[i, j] * 2.0;
  }
  copy(acc, c[0:64, 0:64]);
}

kernel fp8_dead(x: f32[1, K], w: fp8e4m3[N, K], y: f32[1, N], seen: f32[1])
  params(SEE: bool = false)
  grid(ceildiv(N, 8))
{
  let n0 = block_id(0) * 8;
  frag xs: f32[1, 128];
  frag ws: f32[8, 128];
  frag acc: f32[1, 8];
  clear(acc);
  for k in 0..ceildiv(K, 128) {
    copy(x[0:1, k * 128:k * 128 + 128], xs);
    copy(w[n0:n0 + 8, k * 128:k * 128 + 128], ws);
    gemm(xs, ws, acc, trans_b=true);
  }
  copy(acc, y[0:1, n0:n0 + 8]);
  if SEE {
    seen[0] = ws[0, 0];
  }
}

kernel sync_fold(x: f32[N], y: f32[N]) params(FLAG: bool = false) grid(1) threads(128) {
  shared t: f32[256];
  copy(x[0:256], t);
  if FLAG {
    parallel (i) in (256) {
      t[i] = t[i] * 2.0;
    }
  } else {
    parallel (i) in (256) {
      t[i] = t[i] + 1.0;
    }
  }
  copy(t, y[0:256]);
}

kernel sync_plain(x: f32[N], y: f32[N]) grid(1) threads(128) {
  shared t: f32[256];
  copy(x[0:256], t);
  parallel (i) in (256) {
    t[i] = t[i] + 1.0;
  }
  copy(t, y[0:256]);
}
TILE
expect 0 "folded if, mlir" "$t" compile "$tmp/fold.tile" --kernel fold --emit mlir
has out "5.000000e+00" "the branch taken is compiled"
lacks out "3.000000e+00" "the branch a param leaves out is not compiled"
expect 0 "folded if, cuda" "$t" compile "$tmp/fold.tile" --kernel fold -D FLAG=true --target cuda
has out " 3.0" "the branch taken is written (CUDA C)"
lacks out " 5.0" "the branch a param leaves out is not written (CUDA C)"
# a folded if's branch runs where the if stands: the barrier before it
# holds inside, and no join follows it (the same barriers as the branch
# written alone; before, two more in the CUDA C)
for target in ptx cuda; do
  expect 0 "folded if around parallel, $target" "$t" compile "$tmp/fold.tile" \
    --kernel sync_fold --target $target
  nf=$(grep -cE "bar\.sync|__syncthreads" "$tmp/out")
  expect 0 "parallel alone, $target" "$t" compile "$tmp/fold.tile" --kernel sync_plain \
    --target $target
  np=$(grep -cE "bar\.sync|__syncthreads" "$tmp/out")
  if [[ $nf == "$np" && $np -gt 0 ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $target: a folded if around a parallel has $nf barriers, the parallel alone $np"
  fi
done
if grep -qw avx512vbmi /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
  expect 0 "dead mention" "$t" compile "$tmp/fold.tile" --kernel fp8_dead --emit llvm
  has out "shufflevector <16 x float>" "a mention in a branch not taken keeps no copy"
  expect 0 "live mention" "$t" compile "$tmp/fold.tile" --kernel fp8_dead -D SEE=true --emit llvm
  lacks out "shufflevector <16 x float>" "a mention in the branch taken keeps the copy"
fi
# FP4 codes (copy format="e2m1") decode 16 bytes a step by vpermps on an
# AVX-512 host, "e2m1x2" by pshufb; a decode step's gemm whose b is such a
# copy read by nothing else decodes the codes in place (32 bytes a row a
# step), and not when the tile is read after the loop (READ=1)
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
  expect 0 "fp4 copy emit llvm" "$t" compile tests/lua/packed_copy.tile --kernel unpack \
    --emit llvm
  has out "@llvm.x86.avx512.permvar.sf.512(" "an FP4 copy decodes by vpermps"
  expect 0 "fp4 twice emit llvm" "$t" compile tests/lua/packed_copy.tile --kernel unpack_twice \
    --emit llvm
  has out "@llvm.x86.ssse3.pshuf.b.128(" "an e2m1x2 copy decodes by pshufb"
  expect 0 "fp4 in place emit llvm" "$t" compile tests/lua/gemm_in_place.tile --kernel dot_fp4 \
    --emit llvm
  has out "load <32 x i8>" "a decode step's gemm decodes FP4 codes where they lie"
  expect 0 "fp4 read after emit llvm" "$t" compile tests/lua/gemm_in_place.tile \
    --kernel dot_fp4 -D READ=1 --emit llvm
  lacks out "load <32 x i8>" "an FP4 tile read after the loop is decoded into the tile"
fi
expect 0 "emit lowered" "$t" compile kernels/softmax.tile --kernel softmax_rows --emit lowered
has out "llvm.func @softmax_rows(" "lowered is the LLVM dialect"
expect 0 "emit llvm" "$t" compile kernels/gemm.tile --emit llvm
has out "define void @gemm_nt(" "llvm IR"
expect 0 "compile for the CPU" "$t" compile kernels/gemm.tile
has out "kernels compiled for the CPU" "default compile JITs"
expect 0 "--time-passes" "$t" compile kernels/softmax.tile --emit lowered --time-passes
has err "Execution time report" "pass timing printed"
# --dump-after: the pipeline run a pass at a time, the IR after the named
# passes; after its last pass it is the lowered stage of one pass manager
sm="kernels/softmax.tile --kernel softmax_rows"
for tg in cpu ptx; do
  expect 0 "--emit lowered ($tg)" "$t" compile $sm --target $tg --emit lowered
  cp "$tmp/out" "$tmp/lowered"
  expect 0 "--dump-after all ($tg)" "$t" compile $sm --target $tg --dump-after all
  want=$([[ $tg == cpu ]] && echo 14 || echo 5)
  if [[ $(grep -c "^// ----- the IR after pass [0-9]* of $want: " "$tmp/out") == "$want" ]] &&
     awk '/^\/\/ -----/ { b = ""; next } { b = b $0 "\n" } END { printf "%s", b }' "$tmp/out" |
       cmp -s - "$tmp/lowered"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: --dump-after all ($tg): $want dumps, the last the lowered stage"
  fi
done
expect 0 "--dump-after cse" "$t" compile $sm --dump-after cse
has out "// ----- the IR after pass 2 of 14: cse -----" "the dump names its pass"
has out "memref.load" "memref loads before finalize-memref-to-llvm"
lacks out "pass 3 of" "it stops after the pass named"
expect 0 "--dump-after finalize-memref-to-llvm" "$t" compile $sm --dump-after finalize-memref-to-llvm
lacks out "memref.load" "no memref loads after finalize-memref-to-llvm"
has out "llvm.load" "LLVM loads instead"
expect 0 "--dump-after a pass run twice" "$t" compile $sm --dump-after convert-arith-to-llvm
if [[ $(grep -c "^// ----- the IR after pass \(9\|13\) of 14: convert-arith-to-llvm" "$tmp/out") == 2 ]]
then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: both runs of a pass dumped"; fi
expect 0 "--dump-after a nested pass" "$t" compile $sm --target ptx --dump-after convert-gpu-to-nvvm
has out "pass 4 of 5: gpu.module(convert-gpu-to-nvvm)" "nested in its anchor"
has out "nvvm.read.ptx.sreg.tid.x" "NVVM after convert-gpu-to-nvvm"
expect 2 "--dump-after an unknown pass" "$t" compile $sm --dump-after frob
has err "no pass 'frob' in the cpu pipeline (canonicalize, cse, convert-vector-to-scf," "the passes listed"
expect 2 "--dump-after --target cuda" "$t" compile $sm --target cuda --dump-after cse
has err "no MLIR passes" "CUDA C has no passes"
expect 2 "--dump-after --emit" "$t" compile $sm --emit mlir --dump-after cse
has err "not with --emit" "one output at a time"
# --emit plan: the GPU plan in words (tests/ptx checks it against the PTX)
expect 0 "--emit plan" "$t" compile kernels/gemm.tile --target ptx --emit plan --kernel gemm_nt
has out "kernel gemm_nt on sm_90a: 256 threads," "the kernel's header"
has out "tile acc frag f32[128, 128]: registers, 64 a thread, wgmma's accumulator layout" \
  "the accumulator in wgmma's registers"
has out "x 4 stages (the ring of the pipelined loop at 41:3), 128-byte swizzle" "a swizzled ring"
has out ": TMA (cp.async.bulk.tensor), boxes of 128 x 64" "its copies by TMA"
has out "gemm 44:5 (bf16): wgmma m64n128k16, 128 x 128 x 64, in flight into the loop's next" \
  "its gemm on wgmma, kept in flight across the ring"
expect 0 "--emit plan sm_80" "$t" compile kernels/gemm.tile --target cuda --emit plan --arch sm_80 \
  --kernel gemm_nt
has out "mma.sync m16n8k16, 128 x 128 x 64 (not wgmma: not an sm_90a)" "mma.sync on sm_80"
has out "a cp.async ring of 4 stages, 16-byte chunks" "a cp.async ring without TMA"
expect 0 "--emit plan, a scalar gemm" "$t" compile kernels/sparse_attn.tile --target ptx \
  --emit plan --kernel sparse_attn_f32
has out "(f32): CUDA cores (not tensor cores: operand types: tensor cores take bf16" \
  "why an f32 gemm is not on tensor cores"
expect 2 "--emit plan for the CPU" "$t" compile kernels/gemm.tile --emit plan
has err "--emit plan is a GPU stage" "the CPU has no GPU plan"
expect 0 "target cuda" "$t" compile kernels/softmax.tile --target cuda --kernel softmax_rows
has out 'extern "C" __global__ void __launch_bounds__(128) softmax_rows(' "CUDA C kernel"
has out "__shfl_xor_sync" "warp-shuffle reductions in CUDA C"
expect 0 "target cuda emit ptx (NVRTC)" "$t" compile kernels/softmax.tile --target cuda --emit ptx --no-cache
has out ".entry softmax_rows(" "NVRTC's PTX has the kernel"
expect 2 "target cuda emit mlir" "$t" compile kernels/softmax.tile --target cuda --emit mlir
has err "the stages cuda and ptx" "CUDA C has no MLIR stages"
expect 2 "NVRTC missing" env TESSERA_NVRTC=/no/such.so "$t" compile kernels/softmax.tile --target cuda --emit ptx --no-cache
expect 0 "emit ptx" "$t" compile kernels/softmax.tile --emit ptx --kernel softmax_rows
has out ".target sm_90a" "PTX for sm_90a by default"
has out ".entry softmax_rows(" "the kernel is a PTX entry"
expect 0 "--arch sm_80" "$t" compile kernels/softmax.tile --target ptx --arch sm_80
has out ".target sm_80" "PTX for sm_80"
expect 2 "--arch unknown" "$t" compile kernels/softmax.tile --target ptx --arch sm_75
has err "unknown GPU architecture 'sm_75'" "bad arch named"
expect 0 "target ptx emit mlir" "$t" compile kernels/softmax.tile --target ptx --emit mlir
has out "gpu.module @tessera" "a gpu.module"
has out "gpu.barrier" "barriers between tile ops"
has out "gpu.shuffle" "warp-shuffle reductions"
expect 0 "target ptx emit lowered" "$t" compile kernels/softmax.tile --target ptx --emit lowered
has out "nvvm.read.ptx.sreg.tid.x" "lowered to NVVM"
expect 2 "target ptx emit llvm" "$t" compile kernels/softmax.tile --target ptx --emit llvm
has err "CPU stage" "llvm is a CPU stage"
expect 0 "target ptx -o" "$t" compile kernels/gemm.tile --target ptx -o "$tmp/gemm.ptx"
if grep -q ".entry gemm_nt(" "$tmp/gemm.ptx" 2>/dev/null; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: -o k.ptx"; fi
# (a GPU lowering error: the architecture's shared memory, sm_86's 99 KiB)
printf 'kernel k(x: f32[N]) {\n  shared s: f32[32768];\n  fill(s, 0.0);\n}\n' >"$tmp/gsmem.tile"
expect 1 "too big for the GPU: located" "$t" compile --color=never "$tmp/gsmem.tile" --target ptx --arch sm_86
has err "gsmem.tile:1:1: error: kernel 'k' needs 131088 bytes of shared memory a block" "located GPU lowering error"
expect 1 "program errors before lowering" "$t" compile "$tmp/bad.tile" --emit mlir
# (a CPU lowering limit: more than 128 tiles over 64 KiB)
{ echo 'kernel k(x: f32[N]) {'; for i in $(seq 0 128); do echo "  frag t$i: f32[16385];"; done
  echo '}'; } >"$tmp/tiles.tile"
expect 1 "unsupported on the CPU: located" "$t" compile --color=never "$tmp/tiles.tile" --emit mlir
has err "tiles.tile:130:3: error: this many large tiles is not supported on the CPU target yet" "located lowering error"
expect 0 "-o" "$t" compile kernels/gemm.tile --emit typed -o "$tmp/gemm.typed"
if [[ -s $tmp/gemm.typed ]] && grep -q "kernel gemm_nt" "$tmp/gemm.typed"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: -o wrote nothing"; fi
expect 2 "-o into a missing folder" "$t" compile kernels/gemm.tile --emit typed -o "$tmp/no/such/dir/x"
expect 0 "fmt" "$t" fmt kernels/softmax.tile
expect 0 "fmt --check" "$t" fmt --check kernels/gemm.tile
printf 'kernel  k(x:f32[N]){let a=1;}\n' >"$tmp/ugly.tile"
expect 1 "fmt --check ugly" "$t" fmt --check "$tmp/ugly.tile"
expect 0 "fmt -w" "$t" fmt -w "$tmp/ugly.tile"
expect 0 "fmt --check after -w" "$t" fmt --check "$tmp/ugly.tile"
expect 1 "fmt bad file" "$t" fmt "$tmp/bad.tile"
printf 'local ts = require "tessera"\nprint(ts.version, arg[1], ...)\n' >"$tmp/ok.lua"
expect 0 "run a script" "$t" run "$tmp/ok.lua" one two
has out "LLVM/MLIR 22" "the script sees the module"
has out "one" "arg is set"
printf 'local x = 1\nerror("broken here")\n' >"$tmp/bad.lua"
expect 1 "a failing script" "$t" run "$tmp/bad.lua"
has err "bad.lua:2: broken here" "script error with file:line"
has err "stack traceback" "traceback printed"
printf 'local x = = 1\n' >"$tmp/syntax.lua"
expect 1 "a script with a syntax error" "$t" run "$tmp/syntax.lua"
expect 2 "a missing script" "$t" run "$tmp/none.lua"
expect 2 "run without a script" "$t" run
expect 2 "tune without --kernel" "$t" tune x.tile
has err "give a FILE and --kernel NAME" "tune says what it needs"
printf 'local ts = require "tessera"\nlocal k = ts.kernel("kernels/softmax.tile", "softmax_rows")\nlocal s = ts.tensor("f32", {3, 5})\nfor i = 1, 4 do k:launch{s, s} end\n' >"$tmp/prof.lua"
TESSERA_PROFILE=1 expect 0 "run with TESSERA_PROFILE" "$t" run "$tmp/prof.lua"
has err "# kernel profile (TESSERA_PROFILE): 4 launches" "the profile is printed at exit"
has err "| softmax_rows | - | cpu | 4 |" "the kernel's row"
# yes/no settings (base/proc.c ts_env_flag): 1/0, on/off, true/false,
# yes/no in any case; another value is reported once and the default used
for v in 0 off False NO; do
  TESSERA_PROFILE=$v expect 0 "run with TESSERA_PROFILE=$v" "$t" run "$tmp/prof.lua"
  lacks err "kernel profile" "TESSERA_PROFILE=$v prints no profile"
done
for v in on TRUE yes; do
  TESSERA_PROFILE=$v expect 0 "run with TESSERA_PROFILE=$v" "$t" run "$tmp/prof.lua"
  has err "# kernel profile (TESSERA_PROFILE): 4 launches" "TESSERA_PROFILE=$v profiles"
done
TESSERA_PROFILE=maybe expect 0 "run with TESSERA_PROFILE=maybe" "$t" run "$tmp/prof.lua"
has err "warning: TESSERA_PROFILE='maybe' is not 1/0, on/off, true/false or yes/no; using 0" \
  "a value that is no flag is reported with the default"
if [[ $(grep -c "TESSERA_PROFILE=" "$tmp/err") == 1 && ! $(grep "kernel profile" "$tmp/err") ]]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL: reported once, no profile"
fi
expect 2 "bench with an unknown name" "$t" bench x
has err "no benchmark 'x'" "bench names the unknown benchmark"
expect 0 "devices" "$t" devices
has out "cpu:" "devices lists the CPU"
has out "cuda:" "devices says whether there is a GPU"

# --emit resources: ptxas's figures of each kernel and its occupancy (the
# registers those tests/ptx/resources.txt records for the MLIR lowering;
# a kernel that spills shows it), both lowerings; without ptxas, says so
expect 2 "--emit resources on the CPU target" "$t" compile kernels/softmax.tile --emit resources
has err "a GPU stage" "resources needs a GPU target"
if [[ -x ${PTXAS:-/usr/local/cuda/bin/ptxas} ]]; then
  expect 0 "--emit resources" "$t" compile tests/lua/tile_fns.tile --target ptx --emit resources
  for k in with_fns typed_fns view_fns; do
    r=$(awk -v k=$k '$1 == "sm_90a" && $2 == "tests/lua/tile_fns.tile" && $3 == k { print $5 }' \
      tests/ptx/resources.txt)
    has out "| $k | 128 | $r | 0 / 0 |" "$k's registers as resources.txt has them"
  done
  has out "| 100.0% | threads |" "occupancy and its limit"
  expect 0 "--emit resources, sm_80, a kernel that spills" "$t" compile kernels/hca_attn.tile \
    --kernel hca_attn_split --target ptx --arch sm_80 --emit resources
  if grep -qE '^\| hca_attn_split \| 256 \| 255 \| [1-9][0-9]* / [1-9][0-9]* \|' "$tmp/out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: hca_attn_split's spills on sm_80 not shown"
    cat "$tmp/out"
  fi
  # a frag whose one cross-thread use is in a branch a param leaves out
  # keeps the accumulator in registers (wgmma's layout), both lowerings:
  # with the branch taken it goes to shared memory (the tile plan's walks,
  # compiler/gen_gpu.c owner_only and gpu_mma.c, skip the branch not taken)
  for tgt in ptx cuda; do
    smem=()
    for fl in false true; do
      "$t" compile "$tmp/fold.tile" --kernel mma_dead -D FLAG=$fl --target $tgt \
        --emit resources >"$tmp/out" 2>"$tmp/err"
      smem+=("$(awk -F'|' '$2 ~ /mma_dead/ { print $7 + 0 }' "$tmp/out")")
    done
    if [[ -n ${smem[0]} && -n ${smem[1]} ]] && awk -v a="${smem[0]}" -v b="${smem[1]}" \
      'BEGIN { exit !(a + 16 <= b) }'; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1))
      echo "FAIL: $tgt: the accumulator's shared memory with the branch not taken (${smem[0]} KiB)" \
        "not 16 KiB under the branch taken's (${smem[1]} KiB)"
    fi
  done
  expect 0 "--emit resources of the CUDA C" "$t" compile tests/lua/tile_fns.tile --target cuda \
    --kernel view_fns --emit resources
  has out "| view_fns | 128 |" "NVRTC's PTX assembled and its launch known"
  PTXAS=$tmp/no-ptxas expect 2 "--emit resources without ptxas" "$t" compile \
    tests/lua/tile_fns.tile --target ptx --emit resources
  has err "could not be run" "a missing ptxas is named"
fi

# the GPU forms' environment: a value it does not know is an error where a
# GPU device compiles a kernel (a typo made the default silently)
cat >"$tmp/sim.lua" <<'LUA'
local ts = require "tessera"
local d = ts.device("gpusim")
ts.kernel("kernels/softmax.tile", "softmax_rows", {}, d)
print("loaded")
LUA
for e in TESSERA_GPU_LOWERING=cuda-c TESSERA_GPUSIM_ARCH=sm_99 TESSERA_TMA=maybe; do
  expect 1 "$e on the simulator" env "$e" "$t" run "$tmp/sim.lua"
  has err "$e: expected" "$e named"
done
printf 'local ts = require "tessera"\nprint(ts.device("cpu"):threads())\n' >"$tmp/cpu.lua"
expect 1 "TESSERA_THREADS=0" env TESSERA_THREADS=0 "$t" run "$tmp/cpu.lua"
has err "TESSERA_THREADS=0: a number of threads, 1 to 4096" "a thread count of 0 named"
expect 0 "TESSERA_GPU_LOWERING=mlir on the simulator" env TESSERA_GPU_LOWERING=mlir "$t" run \
  "$tmp/sim.lua"
has out "loaded" "the simulator's kernel loads with a known lowering"
expect 0 "TESSERA_TMA=off on the simulator" env TESSERA_TMA=off "$t" run "$tmp/sim.lua"
has out "loaded" "TESSERA_TMA takes the flag words"

echo "$pass passed, $fail failed"
((fail == 0))
