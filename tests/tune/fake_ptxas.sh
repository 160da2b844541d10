#!/bin/sh
# fake_ptxas.sh - a stand-in for `ptxas -arch=A -v FILE -o /dev/null`
# (tests/tune/run.sh, as PTXAS): for each kernel of the PTX's "// tessera
# kernel K threads T smem S" lines it reports 40 registers, and 64 bytes of
# spill for a kernel whose launch asks for more than 4 KiB of shared memory.
for a in "$@"; do
  case $a in -*|/dev/null) ;; *) ptx=$a ;; esac
done
grep '^// tessera kernel' "$ptx" | while read -r _ _ _ name _ thr _ smem; do
  echo "ptxas info    : Compiling entry function '$name' for 'sm_90a'"
  if [ "$smem" -gt 4096 ]; then sp=64; else sp=0; fi
  echo "    0 bytes stack frame, $sp bytes spill stores, $sp bytes spill loads"
  echo "ptxas info    : Used 40 registers, used 1 barriers"
done
