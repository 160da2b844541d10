# misses.awk - the rows of a benchmark report (markdown tables) whose "of
# copy" figure (bytes moved / time, as a fraction of the same run's copy
# kernel) is under 0.7, issue 8's target for the memory-bound kernels, with
# the section each comes from; scripts/gpu.sh puts them in its report.
#   awk -f scripts/misses.awk bench/results/bench-cuda-DATE.md
/^#/ { section = $0; sub(/^#+ */, "", section); col = 0; next }
/^\|/ {
  n = split($0, f, "|")
  if (!col) { # a header: the column named "of copy", if any
    for (i = 2; i < n; i++) if (f[i] ~ /^ *of copy *$/) col = i
    head = $0
    next
  }
  if (f[2] ~ /^-+$/ || f[2] ~ /^ *-+ *$/) next
  v = f[col]
  gsub(/ /, "", v)
  if (v ~ /^[0-9.]+$/ && v + 0 < 0.7) {
    if (!(section in seen)) { print "- " section ":"; seen[section] = 1 }
    print "  " $0
  }
  next
}
{ col = 0 }
