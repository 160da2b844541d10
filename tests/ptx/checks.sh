#!/usr/bin/env bash
# checks.sh - sourced by run.sh (its variables, ptx_resources, pass and
# fail): the checks of particular lowerings that are not one architecture's
# assembly of every file: the kv8 kernels' 8-byte cp.async rings, gathers
# through a written index, print beside wgmma, the TF32, s8 and e4m3
# tensor-core forms, tiles kept on chip, the attention's two-warpgroup
# block, B panels, wgmma rows, barriers, a fresh wgmma product, sm_86
# (every library kernel within 99 KiB, its resources recorded), its stage
# counts and sm_80's padded accumulators.
# shellcheck shell=bash disable=SC2154
# sparse_attn_split_kv8, sparse_attn_split_kv8_ring and hca_attn_split_kv8
# gather their 584-byte cache rows by a cp.async ring of 8-byte chunks
# (gpu_pipe.c ts_pipe_chunk_bytes) in both lowerings, not by element copies
for fk in sparse_attn:sparse_attn_split_kv8 sparse_attn:sparse_attn_split_kv8_ring \
          hca_attn:hca_attn_split_kv8; do
  for low in ptx cuda; do
    "$tessera" compile "$src/kernels/${fk%%:*}.tile" --kernel "${fk##*:}" --target $low \
      --arch sm_90a --emit ptx --no-cache -o "$tmp/kv8.ptx" 2>"$tmp/err"
    if grep -q "cp.async.ca.shared.global \[[^]]*\], \[[^]]*\], 8;" "$tmp/kv8.ptx" &&
       grep -q "cp.async.wait_group 1;" "$tmp/kv8.ptx"; then
      pass=$((pass + 1))
    else
      echo "FAIL: ${fk##*:} ($low) has no 8-byte cp.async ring"; cat "$tmp/err"
      fail=$((fail + 1))
    fi
  done
done
# a gather runs ahead in a ring only through an index tensor nothing in the
# kernel writes: an atomic on it, as a statement or inside a `let`, keeps
# the copy in place (gpu_pipe.c, ts_node_writes)
cat >"$tmp/gath.tile" <<'TILE'
kernel gath(kv: f32[N, 64], idx: i32[T], out: f32[T, 64]) grid(1) threads(64) {
  shared r: f32[8, 64];
  pipelined (t in 0..T / 8, stages=2) {
    copy(kv[idx[t * 8:t * 8 + 8], :], r);
    parallel (i, j) in (8, 64) {
      out[t * 8 + i, j] = r[i, j];
    }
    BUMP
  }
}
TILE
for bump in "" "atomic_add(idx[t * 8 + 8], 1);" "let d = atomic_add(idx[t * 8 + 8], 1);"; do
  sed "s/BUMP/$bump/" "$tmp/gath.tile" >"$tmp/gath_b.tile"
  for low in ptx cuda; do
    rings=0
    if "$tessera" compile "$tmp/gath_b.tile" --target $low --arch sm_90a --emit ptx --no-cache \
         -o "$tmp/gath.ptx" 2>"$tmp/err"; then
      rings=$(grep -c "cp.async.wait_group 1;" "$tmp/gath.ptx")
    else
      cat "$tmp/err"; rings=-1
    fi
    if { [[ -z $bump ]] && ((rings > 0)); } || { [[ -n $bump ]] && ((rings == 0)); }; then
      pass=$((pass + 1))
    else
      echo "FAIL: gather ring with [$bump] ($low): $rings ring waits"; fail=$((fail + 1))
    fi
  done
done
# `print` in a kernel with wgmma still prints through vprintf (ptxas then
# serializes its wgmma); only a failed `assert` there is a bare trap
cat >"$tmp/wgprint.tile" <<'TILE'
kernel wgprint(a: bf16[M, 32], b: bf16[N, 32], c: f32[M, N]) grid(1) threads(128) {
  shared as: bf16[64, 32];
  shared bs: bf16[16, 32];
  frag acc: f32[64, 16];
  copy(a[0:64, :], as);
  copy(b[0:16, :], bs);
  gemm(as, bs, acc, trans_b=true, accumulate=false);
  print("done {}", M);
  copy(acc, c[0:64, 0:16]);
}
TILE
if ! "$tessera" compile "$tmp/wgprint.tile" --target ptx --arch sm_90a --no-cache -o "$tmp/wgprint.ptx" 2>"$tmp/err"; then
  echo "FAIL: the wgmma + print kernel does not compile:"; cat "$tmp/err"; fail=$((fail + 1))
elif ! grep -q "wgmma.mma_async" "$tmp/wgprint.ptx" || ! grep -q "vprintf" "$tmp/wgprint.ptx"; then
  echo "FAIL: the wgmma + print kernel's PTX lacks wgmma or its vprintf"; fail=$((fail + 1))
else
  pass=$((pass + 1))
fi
# tc_clean ARCH WANT "FILE KERNEL [DEFS]"...: each kernel, in both
# lowerings, issues WANT and ptxas neither warns nor serializes
tc_clean() {
  local arch=$1 want=$2 fk f k defs ok target o emit
  shift 2
  for fk in "$@"; do
    read -r f k defs <<<"$fk"
    ok=1
    for target in ptx cuda; do
      o=$tmp/tc.$target.ptx
      emit=(); [[ $target == cuda ]] && emit=(--emit ptx)
      # shellcheck disable=SC2086
      if ! "$tessera" compile "$f" --kernel "$k" $defs --target $target "${emit[@]}" --arch $arch \
           --no-cache -o "$o" 2>"$tmp/err" ||
         ! "$ptxas" -arch=$arch -v "$o" -o "$tmp/tc.cubin" 2>"$tmp/info" ||
         grep -qi "warning\|serialized\|Performance Loss\|injected" "$tmp/info" ||
         ! grep -q "$want" "$o"; then
        echo "FAIL: $k ($f $defs, $target, $arch): no clean $want"; cat "$tmp/err"
        ok=0
      fi
    done
    if ((ok)); then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  done
}
# tf32 (gemm(..., tf32=true)): the test kernel, mHC's logits and the TF32
# linears (plain and grouped) issue wgmma m64nNk8 .tf32 on sm_90a and
# mma.sync m16n8k8 .tf32 on sm_80; i8 into i32 (exact integer products):
# the FP4 indexer and the test kernel issue wgmma m64nNk32 .s32.s8.s8 on
# sm_90a and mma.sync m16n8k32 .s32.s8.s8.s32 on sm_80
tf32_kernels=("tests/ptx/gpu.tile tf32_gemm" "kernels/mhc.tile hc_mix_split -D TF32=1 -D BT=64 -D NT=128"
              "kernels/mhc.tile hc_post_mix -D TF32=1 -D BT=64 -D NT=128" "kernels/gemm.tile linear_tf32"
              "kernels/gemm.tile grouped_linear_tf32")
s8_kernels=("kernels/indexer.tile indexer_scores_fp4"
            "tests/lua/int8_gemm.tile gemm_i8_tc -D TM=128 -D TN=64 -D TK=128")
tc_clean sm_90a "wgmma.mma_async.sync.aligned.m64n[0-9]*k8.f32.tf32.tf32" "${tf32_kernels[@]}"
tc_clean sm_80 "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" "${tf32_kernels[@]}"
tc_clean sm_90a "wgmma.mma_async.sync.aligned.m64n[0-9]*k32.s32.s8.s8" "${s8_kernels[@]}"
tc_clean sm_80 "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32" "${s8_kernels[@]}"
# an atomic outside `parallel` orders the blocks' memory (hc_post_mix's
# LAST: the last block to count runs the next mHC pre over what the others
# wrote): device-scope fences around it in both lowerings, ptxas clean
last_kernels=("kernels/mhc.tile hc_post_mix -D TF32=1 -D BT=32 -D NT=256 -D LAST=true"
              "kernels/mhc.tile hc_post_mix -D BT=1 -D LAST=true")
tc_clean sm_90a 'fence.acq_rel.gpu\|membar.gl' "${last_kernels[@]}"
tc_clean sm_80 'fence.acq_rel.gpu\|membar.gl' "${last_kernels[@]}"
# e4m3 (sm_90a only; elsewhere the scalar gemm): the quantised experts'
# prefill forms (FP4: each 32-wide step's codes decoded into e4m3 tiles)
e4m3_kernels=("kernels/moe.tile moe_up_fp4_tc" "kernels/moe.tile moe_down_fp4_tc"
              "kernels/moe.tile moe_up_fp8_tc" "kernels/moe.tile moe_down_fp8_tc")
tc_clean sm_90a "wgmma.mma_async.sync.aligned.m64n[0-9]*k32.f32.e4m3.e4m3" "${e4m3_kernels[@]}"
# the tensor-core attention kernels keep every tile on chip on both
# architectures at V4 width (a tile the plan cannot fit goes to global
# scratch: a pipelined copy's ring once pushed the sm_80 accumulator there,
# and on sm_80 the [64, 512] P V accumulator was there until blocks of 256
# threads gave it mma.sync's 128 registers a thread, gpu_mma.c)
for arch in sm_90a sm_80; do
  for fk in sparse_attn:sparse_attn_tc sparse_attn:sparse_attn_split sparse_attn:sparse_attn_split_kv8 \
            sparse_attn:sparse_attn_split_kv8_ring \
            hca_attn:hca_attn_tc hca_attn:hca_attn_split hca_attn:hca_attn_split_kv8 \
            gemm:gemm_nt gemm:gemm_splitk \
            indexer:indexer_scores_tc indexer:indexer_scores_fp4_tc; do
    f=kernels/${fk%%:*}.tile k=${fk##*:}
    "$tessera" compile "$src/$f" --kernel "$k" --target ptx --arch $arch --emit mlir \
      --no-cache -o "$tmp/plan.mlir" 2>"$tmp/err"
    if grep -o 'tessera.tiles = "[^"]*"' "$tmp/plan.mlir" | grep -q "global scratch"; then
      echo "FAIL: $arch $f $k puts a tile in global scratch:"
      grep -o 'tessera.tiles = "[^"]*"' "$tmp/plan.mlir"
      fail=$((fail + 1))
    # on sm_90a the attention's scores stay in registers (wgmma's layout,
    # reduced along rows by quads), not in shared memory
    elif [[ $arch == sm_90a && $f == kernels/*attn.tile ]] &&
         ! grep -o 'tessera.tiles = "[^"]*"' "$tmp/plan.mlir" | grep -q "; s: registers ([0-9]* per thread, wgmma layout)"; then
      echo "FAIL: $arch $f $k keeps its scores s out of registers:"
      grep -o 'tessera.tiles = "[^"]*"' "$tmp/plan.mlir"
      fail=$((fail + 1))
    # and its softmax state in wgmma's rows (gen.h TS_ACC_ROWS): no shared
    # memory or barriers for m, l, mb, al, ls
    elif [[ $arch == sm_90a && $f == kernels/*attn.tile ]] &&
         [[ $(grep -o 'tessera.tiles = "[^"]*"' "$tmp/plan.mlir" |
              grep -oE "; (m|l|mb|al|ls): registers \(2 per thread, wgmma rows\)" | wc -l) != 5 ]]; then
      echo "FAIL: $arch $f $k keeps its softmax state out of wgmma's rows:"
      grep -o 'tessera.tiles = "[^"]*"' "$tmp/plan.mlir"
      fail=$((fail + 1))
    else
      pass=$((pass + 1))
    fi
  done
done
# the attention kernels' default block: two warpgroups splitting the
# columns of one 64-head slab (gen.h ts_wgmma_nsplit), each an m64n256 of
# P V and an m64n16 of the scores, in both lowerings; the scores' row
# reductions meet in shared memory after the broadcast slot
for fk in sparse_attn:sparse_attn_tc hca_attn:hca_attn_tc; do
  for how in "--target ptx" "--target cuda --emit ptx"; do
    # shellcheck disable=SC2086
    if ! "$tessera" compile "$src/kernels/${fk%%:*}.tile" --kernel "${fk##*:}" $how --arch sm_90a \
         --no-cache -o "$tmp/ns.ptx" 2>"$tmp/err" ||
       ! grep -q "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16" "$tmp/ns.ptx" ||
       ! grep -q "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16" "$tmp/ns.ptx" ||
       grep -q "wgmma.mma_async.sync.aligned.m64n\(512\|32\)k" "$tmp/ns.ptx" ||
       ! grep -qE "\.maxntid 256, 1, 1|\.reqntid 256" "$tmp/ns.ptx"; then
      echo "FAIL: ${fk##*:} ($how) is not two warpgroups splitting N:"; cat "$tmp/err"
      grep -o "wgmma.mma_async[^ ]*\|\.maxntid.*\|\.reqntid.*" "$tmp/ns.ptx" | sort | uniq -c
      fail=$((fail + 1))
    else
      pass=$((pass + 1))
    fi
  done
done
# B as whole panels of a wider tile (gen.h ts_gemm_b) stays on tensor
# cores: wgmma with B MN-major from the column offset on sm_90a, mma.sync on
# sm_80, both lowerings (else the gemm of a slice is the scalar one)
for arch in sm_90a sm_80; do
  for how in "--target ptx" "--target cuda --emit ptx"; do
    want="wgmma.mma_async.*p, 1, 1, 0, 1;"
    [[ $arch == sm_80 ]] && want="mma.sync.aligned.m16n8k16"
    # shellcheck disable=SC2086
    if ! "$tessera" compile "$src/tests/ptx/gpu.tile" --kernel wg_cols $how --arch $arch \
         --no-cache -o "$tmp/cols.ptx" 2>"$tmp/err" || ! grep -q "$want" "$tmp/cols.ptx"; then
      echo "FAIL: wg_cols ($arch, $how) has no $want"; cat "$tmp/err"; fail=$((fail + 1))
    else
      pass=$((pass + 1))
    fi
  done
done
# a loop over a vector in wgmma's rows stores to memory from the quad's
# first lane only, so it may not read back memory it writes: with `w[i] =
# mx[i]; mx[i] = w[i] * 2.0` mx stays in shared memory, written in the other
# order it takes wgmma's rows (gen.h TS_ACC_ROWS)
for order in "w[i] = mx[i]; mx[i] = w[i] * 2.0;" "mx[i] = mx[i] * 2.0; w[i] = mx[i];"; do
  cat >"$tmp/rowsrw.tile" <<TILE
kernel rowsrw(a: bf16[64, 32], b: bf16[32, 32], o: f32[64, 32], r: f32[64]) threads(128) {
  shared as: bf16[64, 32];
  shared bs: bf16[32, 32];
  shared w: f32[64];
  frag s: f32[64, 32];
  frag mx: f32[64];
  copy(a, as);
  copy(b, bs);
  gemm(as, bs, s, trans_b=true, accumulate=false);
  reduce_max(s, mx, dim=1);
  parallel (i) in (64) { $order }
  parallel (i, j) in (64, 32) { s[i, j] = s[i, j] - mx[i]; }
  copy(s, o);
  copy(w, r);
}
TILE
  want="mx: shared"
  [[ $order == mx* ]] && want="mx: registers (2 per thread, wgmma rows)"
  if ! "$tessera" compile "$tmp/rowsrw.tile" --target ptx --arch sm_90a --emit mlir --no-cache \
       -o "$tmp/rowsrw.mlir" 2>"$tmp/err" ||
     ! grep -o 'tessera.tiles = "[^"]*"' "$tmp/rowsrw.mlir" | grep -qF "$want"; then
    echo "FAIL: rowsrw ($order) does not have $want:"; cat "$tmp/err"
    grep -o 'tessera.tiles = "[^"]*"' "$tmp/rowsrw.mlir"; fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
done
# statements that write registers only take no barriers (gen.h
# ts_stmt_private), and a wgmma gemm right after a barrier that fenced the
# async proxy for it takes none of its own: wg_rows on sm_90a has 9, 2
# around its first copy, 1 after the second (fenced), 2 around the loop over
# the vectors' rows (it stores to shared memory), 1 before the first copy
# out and 1 after each copy out; none around the gemm into registers, the
# register copy, the scaling parallel, the reductions into vectors in
# wgmma's rows and the parallel reading them beside s
"$tessera" compile "$src/tests/ptx/gpu.tile" --kernel wg_rows --target ptx --arch sm_90a \
  --emit mlir --no-cache -o "$tmp/rows.mlir" 2>"$tmp/err"
n=$(grep -c "gpu.barrier" "$tmp/rows.mlir")
if ((n != 9)); then
  echo "FAIL: wg_rows (sm_90a) has $n barriers, not 9"; fail=$((fail + 1))
else
  pass=$((pass + 1))
fi
# a fresh wgmma product (accumulate=false) over two slabs a warpgroup:
# scale-d 0 in its first k step, no zeros moved into the accumulators,
# which made ptxas inject waits around the wgmma (indexer_scores_tc with
# BS=128, both lowerings)
for how in "--target ptx" "--target cuda --emit ptx"; do
  # shellcheck disable=SC2086
  "$tessera" compile "$src/kernels/indexer.tile" --kernel indexer_scores_tc -D BS=128 $how \
    --arch sm_90a --no-cache -o "$tmp/ix.ptx" 2>"$tmp/err" &&
    "$ptxas" -arch=sm_90a -v "$tmp/ix.ptx" -o "$tmp/ix.cubin" 2>"$tmp/ixinfo"
  if grep -qi "injected\|serialized" "$tmp/ixinfo" || ! grep -q "wgmma.mma_async" "$tmp/ix.ptx"; then
    echo "FAIL: indexer_scores_tc BS=128 ($how):"; cat "$tmp/err" "$tmp/ixinfo"; fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
done
# sm_86 (the parts with 99 KiB of shared memory a block: compute capability
# 8.6, 8.9, 12.x): every library kernel compiles (MLIR) and ptxas assembles
# it within 99 KiB (the plan keeps fewer ring stages there; resources.txt
# records it), except the tensor-core attention kernels at V4 width, whose
# shared tiles alone pass it: their compile fails at the kernel, naming the
# limit, and the file's other kernels are built one by one
too_big=""
big_msg="needs [0-9]+ bytes of shared memory a block, more than the 101376 \\(99 KiB\\) a block may use on sm_86"
for f in kernels/*.tile; do
  out=$tmp/$(basename "$f" .tile).sm_86.ptx
  ks=("")
  if ! "$tessera" compile "$f" --target ptx --arch sm_86 --no-cache -o "$out" 2>/dev/null; then
    mapfile -t ks < <(grep -oE "^kernel [a-z0-9_]+" "$f" | cut -d' ' -f2)
  fi
  for k in "${ks[@]}"; do
    if [[ -n $k ]] && ! "$tessera" compile "$f" --kernel "$k" --target ptx --arch sm_86 --no-cache \
         -o "$out" 2>"$tmp/err"; then
      if [[ $(grep -c "error:" "$tmp/err") == 1 ]] &&
         grep -qE "^$f:[0-9]+:1: error: kernel '$k' $big_msg" "$tmp/err"; then
        too_big="$too_big $k"
        pass=$((pass + 1))
      else
        echo "FAIL: $f $k does not compile for sm_86:"; cat "$tmp/err"; fail=$((fail + 1))
      fi
      continue
    fi
    if ! "$ptxas" -arch=sm_86 -v "$out" -o "$tmp/out.cubin" 2>"$tmp/info" || grep -qi warning "$tmp/info"; then
      echo "FAIL: ptxas -arch=sm_86 on $f $k:"; grep -v "^ptxas info" "$tmp/info" | head -20
      fail=$((fail + 1)); continue
    fi
    ptx_resources sm_86 "$out" "$tmp/info" "$f"
    pass=$((pass + 1))
  done
done
# a loop's staged copies keep one stage count: gemm_nt's 4 stages of its
# two 16 KiB operand tiles take 3 each on sm_86 (not 4 and 1, which left B's
# copy out of the ring)
"$tessera" compile "$src/kernels/gemm.tile" --kernel gemm_nt --target ptx --arch sm_86 --emit mlir \
  --no-cache -o "$tmp/nt86.mlir" 2>"$tmp/err"
if ! grep -o 'tessera.tiles = "[^"]*"' "$tmp/nt86.mlir" |
     grep -qE "as: shared \+[0-9]+ \(128B swizzle\) x 3 stages; bs: shared \+[0-9]+ \(128B swizzle\) x 3 stages"; then
  echo "FAIL: gemm_nt on sm_86 does not keep 3 stages for both operands:"; cat "$tmp/err"
  grep -o 'tessera.tiles = "[^"]*"' "$tmp/nt86.mlir"; fail=$((fail + 1))
else
  pass=$((pass + 1))
fi
# an mma.sync accumulator in shared memory has padded rows (gen.h
# ts_pad_elems): the indexer's scores on sm_80; attention's scores there (a
# copy's destination from register accumulators) are not
"$tessera" compile "$src/kernels/indexer.tile" --kernel indexer_scores_tc --target ptx --arch sm_80 \
  --emit mlir --no-cache -o "$tmp/ix80.mlir" 2>"$tmp/err"
"$tessera" compile "$src/kernels/sparse_attn.tile" --kernel sparse_attn_tc --target ptx --arch sm_80 \
  --emit mlir --no-cache -o "$tmp/sa80.mlir" 2>>"$tmp/err"
if grep -o 'tessera.tiles = "[^"]*"' "$tmp/ix80.mlir" | grep -qE "sc: shared \+[0-9]+ \(rows padded by 4\);" &&
   grep -o 'tessera.tiles = "[^"]*"' "$tmp/sa80.mlir" | grep -qE "; s: shared \+[0-9]+;"; then
  pass=$((pass + 1))
else
  echo "FAIL: sm_80 padding: indexer_scores_tc's sc padded, sparse_attn_tc's s not:"; cat "$tmp/err"
  grep -ho 'tessera.tiles = "[^"]*"' "$tmp/ix80.mlir" "$tmp/sa80.mlir"; fail=$((fail + 1))
fi
too_big=$(tr ' ' '\n' <<<"$too_big" | grep . | sort | tr '\n' ' ')
# (sparse_attn_split_kv8 fits: blocks of 16 entries, a one-stage ring there;
# hca_attn_split_kv8 and sparse_attn_split_kv8_ring hold a byte ring for
# each of their two loops)
if [[ $too_big != "hca_attn_split hca_attn_split_kv8 hca_attn_tc sparse_attn_split sparse_attn_split_kv8_ring sparse_attn_tc " ]]; then
  echo "FAIL: on sm_86 the kernels too big for a block are '$too_big', not the six attention kernels"
  fail=$((fail + 1))
else
  pass=$((pass + 1))
fi
# bf16 and f16 atomics are compare-and-swap loops in both lowerings (the
# MLIR one: LLVM's 32-bit CAS around the half-word; the CUDA C one:
# atomicCAS on 16 bits), on global and shared memory, for sm_90a and sm_80
for arch in sm_90a sm_80; do
  for how in "--target ptx" "--target cuda --emit ptx"; do
    # shellcheck disable=SC2086
    "$tessera" compile "$src/tests/numerics/ops.tile" --kernel narrow_atomics $how --arch $arch \
      --no-cache -o "$tmp/na.ptx" 2>"$tmp/err" &&
      "$ptxas" -arch=$arch "$tmp/na.ptx" -o "$tmp/na.cubin" 2>>"$tmp/err"
    if [[ $how == "--target ptx" ]]; then want="cas.b32"; else want="cas.b16"; fi
    if [[ -s $tmp/err ]] || ! grep -qE "atom\.([a-z]+\.)*global\.([a-z]+\.)*cas\." "$tmp/na.ptx" ||
       ! grep -qE "atom\.([a-z]+\.)*shared\.([a-z]+\.)*cas\." "$tmp/na.ptx" ||
       ! grep -q "$want" "$tmp/na.ptx"; then
      echo "FAIL: narrow_atomics ($how, $arch): no $want on global and shared memory:"
      cat "$tmp/err"
      grep -o "atom\.[a-z0-9.]*" "$tmp/na.ptx" | sort | uniq -c; fail=$((fail + 1))
    else
      pass=$((pass + 1))
    fi
  done
done
