# occupancy.awk - the theoretical occupancy of each kernel on one
# architecture from tests/ptx/resources.txt (ptxas's registers, the
# launch's dynamic shared memory and threads a block), as CUDA's occupancy
# calculator computes it, and what limits it: registers (a warp's rounded up
# to 256, each of the SM's four sub-partitions holding 16K), shared memory
# (rounded up to 128 bytes, plus the 1 KiB the runtime reserves a block),
# threads (the SM's warps) or the SM's blocks. A Markdown table, the
# lowest occupancy first, then the count per limit; scripts/gpu.sh puts it
# beside a GPU run's misses. No GPU is needed: these are limits, not
# measurements.
#   awk -v arch=sm_90a -f scripts/occupancy.awk tests/ptx/resources.txt
BEGIN {
  if (arch == "") arch = "sm_90a"
  # warps, blocks and shared memory (bytes) an SM holds
  if (arch == "sm_90a" || arch == "sm_90") { W = 64; B = 32; S = 233472 }
  else if (arch == "sm_80") { W = 64; B = 32; S = 167936 }
  else if (arch == "sm_86") { W = 48; B = 16; S = 102400 }
  else { print "occupancy.awk: arch " arch ": sm_90a, sm_80 or sm_86" > "/dev/stderr"; exit 2 }
  n = 0
}
function ceilto(x, u) { return int((x + u - 1) / u) * u }
$1 == arch {
  for (i = 4; i < NF; i += 2) v[$i] = $(i + 1)
  regs = v["registers"] + 0; smem = v["smem"] + 0; thr = v["threads"] + 0
  if (thr <= 0) { print "occupancy.awk: " $2 " " $3 ": no threads figure" > "/dev/stderr"; bad = 1; next }
  warps = int((thr + 31) / 32)
  per_warp = ceilto((regs > 0 ? regs : 1) * 32, 256)
  by_regs = int(4 * int(16384 / per_warp) / warps)
  by_smem = int(S / (ceilto(smem, 128) + 1024))
  by_thr = int(W / warps)
  blocks = B; lim = "blocks"
  if (by_thr < blocks) { blocks = by_thr; lim = "threads" }
  if (by_smem < blocks) { blocks = by_smem; lim = "shared memory" }
  if (by_regs < blocks) { blocks = by_regs; lim = "registers" }
  occ = blocks * warps / W
  n++
  row[n] = sprintf("| %s | %s | %d | %d | %.1f | %d | %d | %.1f%% | %s |", $3, $2, thr, regs,
                   smem / 1024, blocks, blocks * warps, 100 * occ, lim)
  key[n] = sprintf("%08.4f %s %s", occ, $2, $3)
  count[lim]++
  delete v
}
END {
  if (bad) exit 1
  if (W == 0) exit 2
  # insertion sort by occupancy, then file and kernel
  for (i = 2; i <= n; i++) {
    k = key[i]; r = row[i]
    for (j = i - 1; j >= 1 && key[j] > k; j--) { key[j + 1] = key[j]; row[j + 1] = row[j] }
    key[j + 1] = k; row[j + 1] = r
  }
  print "| kernel | file | threads | registers | smem KiB | blocks/SM | warps/SM | occupancy | limited by |"
  print "|---|---|---|---|---|---|---|---|---|"
  for (i = 1; i <= n; i++) print row[i]
  printf "\n%d kernels on %s:", n, arch
  split("registers,shared memory,threads,blocks", order, ",")
  for (i = 1; i <= 4; i++) if (count[order[i]]) printf " %d limited by %s;", count[order[i]], order[i]
  print ""
}
