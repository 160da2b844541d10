# plan.awk PLAN PTX - each kernel of PLAN (tessera compile --emit plan) has
# wgmma.mma_async / mma.sync in its PTX entry exactly when the plan runs one
# of its gemms so (tests/ptx/run.sh, both lowerings); prints the kernels
# that differ and exits 1
FNR == NR {
  if ($1 == "kernel") { k = $2; kernels[k] = 1 }
  else if ($1 == "gemm" && $0 ~ /\): wgmma m64/) w[k] = 1
  else if ($1 == "gemm" && $0 ~ /\): mma\.sync m16/) m[k] = 1
  next
}
/\.entry / { match($0, /\.entry [A-Za-z_0-9]+/); cur = substr($0, RSTART + 7, RLENGTH - 7) }
/wgmma\.mma_async/ { pw[cur] = 1 }
/mma\.sync\.aligned/ { pm[cur] = 1 }
END {
  for (k in kernels)
    if (w[k] + 0 != pw[k] + 0 || m[k] + 0 != pm[k] + 0) {
      printf "%s: the plan has wgmma %d, mma.sync %d; the PTX %d, %d\n", k, w[k], m[k], pw[k], pm[k]
      bad = 1
    }
  exit bad
}
