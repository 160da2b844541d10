#!/usr/bin/env bash
# banks.sh - shared memory bank conflicts of the GPU kernels, counted by the
# GPU simulator (runtime/gpusim_banks.c) while the numerics suites run them
# (the V4 suite's attention cases include the V4 width, 64 heads x 512): per
# kernel and architecture (sm_90a, sm_80), the wavefronts of its warps'
# shared loads and stores against the ideal (one a phase), summed over its
# launches, and its worst source lines. Needs no GPU; writes
# bench/results/banks-gpusim.md.
#   scripts/banks.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[[ -x $build/tests/num_v4 ]] || scripts/setup.sh "$build"
out=bench/results/banks-gpusim.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TS_SOURCE_DIR=$PWD TS_TEST_DEVICE=gpusim TESSERA_GPUSIM_BANKS=1
for arch in sm_90a sm_80; do
  log=$tmp/$arch.txt
  {
    TESSERA_GPUSIM_ARCH=$arch "$build/tests/num_kernels"
    TESSERA_GPUSIM_ARCH=$arch "$build/tests/num_moe"
    TESSERA_GPUSIM_ARCH=$arch TS_NUM_ONLY=attn_tc,hca,topk,indexer,compress,golden_mhc_layer0 \
      "$build/tests/num_v4"
  } >"$log" 2>&1 || { echo "banks.sh: a suite failed on $arch:"; tail -20 "$log"; exit 1; }
  # the tensor-core kernels at whole multiples of their tiles, cp.async
  # copies (TMA off: its copies are not counted)
  TESSERA_GPUSIM_ARCH=$arch TESSERA_TMA=0 "$build/tessera" run bench/banks_aligned.lua \
    >"$tmp/$arch-aligned.txt" 2>&1 ||
    { echo "banks.sh: bench/banks_aligned.lua failed on $arch:"; tail -20 "$tmp/$arch-aligned.txt"; exit 1; }
done
# per kernel: launches, load requests / wavefronts / ideal, the same for
# stores; then each kernel's lines by excess wavefronts over all launches
summarise() {
  awk -v arch="$1" '
    /^gpusim banks: / {
      k = $3; sub(/:$/, "", k); n[k]++
      lr[k] += $5; lw[k] += $7; gsub(/[(;]/, "", $9); li[k] += $9
      sr[k] += $12; gsub(/,/, "", $13); sw[k] += $13; gsub(/[()]/, "", $14); si[k] += $14
      cur = k; next
    }
    /^  (line [0-9]+|no line)/ {
      w = $0; sub(/:.*/, "", w); sub(/^  /, "", w)
      split($0, f, ": "); split(f[2], v, " ")
      key = cur SUBSEP w
      lx[key] += v[2] - v[5]; sx[key] += v[8] - v[10]
      next
    }
    END {
      for (k in n) {
        lratio = li[k] ? lw[k] / li[k] : 1; sratio = si[k] ? sw[k] / si[k] : 1
        printf "| %s | %s | %d | %d / %d = %.2fx | %d / %d = %.2fx |", arch, k, n[k], lw[k], li[k], lratio, sw[k], si[k], sratio
        worst = ""; best = 0
        for (key in lx) {
          split(key, p, SUBSEP)
          if (p[1] == k && lx[key] + sx[key] > best) { best = lx[key] + sx[key]; worst = p[2] " (+" lx[key] + sx[key] ")" }
        }
        printf " %s |\n", worst == "" ? "-" : worst
      }
    }' "$2" | sort
}
{
  echo "# Shared memory bank conflicts on the GPU simulator"
  echo
  echo "Measured $(date -u +%Y-%m-%d) by \`scripts/banks.sh\` (no GPU: the simulator's count,"
  echo "runtime/gpusim_banks.c and docs/abi.md), over the launches of the numerics suites"
  echo "(odd test shapes, and the V4 width for the attention kernels). A warp's request costs one"
  echo "wavefront per distinct word its busiest bank serves, per phase; the ideal is one a phase."
  echo "wgmma and TMA reads are not counted (the async proxy). Kernels within 5% of the ideal on"
  echo "both loads and stores are left out. The worst line is the kernel source line (or \"no line\":"
  echo "ldmatrix rows and cp.async chunks of the MLIR lowering) with the most wavefronts over its ideal."
  echo
  echo "| arch | kernel | launches | load wavefronts / ideal | store wavefronts / ideal | worst line (excess) |"
  echo "|---|---|---|---|---|---|"
  for arch in sm_90a sm_80; do
    summarise "$arch" "$tmp/$arch.txt" |
      awk -F'|' '{ split($5, a, "= "); split($6, b, "= "); if (a[2] + 0 > 1.05 || b[2] + 0 > 1.05) print }'
  done
  echo
  echo "The same kernels' tensor-core forms at shapes that are whole multiples of their tiles, as"
  echo "V4's widths are (\`bench/banks_aligned.lua\`: 128 x 128 x 256 GEMMs, the grouped MoE's 64-row"
  echo "tiles, the indexer's 64 heads x 128; TMA off, so that the operand copies are cp.async stores"
  echo "the simulator counts). The first table's store excess is the odd shapes' tails, copied"
  echo "element by element; ctest's gpusim/banks-aligned-* keeps sm_90a's rows at the ideal."
  echo
  echo "| arch | kernel | launches | load wavefronts / ideal | store wavefronts / ideal | worst line (excess) |"
  echo "|---|---|---|---|---|---|"
  for arch in sm_90a sm_80; do
    summarise "$arch" "$tmp/$arch-aligned.txt" | grep -v "| 0 / 0 = 1.00x | 0 / 0 = 1.00x |"
  done
} >"$out"
cat "$out"
