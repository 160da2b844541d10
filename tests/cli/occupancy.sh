#!/usr/bin/env bash
# occupancy.sh SOURCE_DIR - scripts/occupancy.awk computes each kernel's
# theoretical occupancy on sm_90a and what limits it, figures worked out by
# hand here: registers (246 a thread, 128 threads: a warp's 7872 rounded to
# 7936, two warps a 16K sub-partition, 8 warps: 2 blocks), shared memory
# (98 KiB + the 1 KiB reserved: 2 blocks of 228 KiB), threads (16 blocks of
# 4 warps fill the 64) and blocks (32 one-warp blocks); lowest first,
# other architectures' lines ignored; a line without threads and an
# unknown arch are refused.
set -u
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/r.txt" <<'TXT'
# per kernel: ...
sm_90a k.tile wide registers 32 spill 0 stack 0 smem 100352 threads 256
sm_90a k.tile heavy registers 246 spill 0 stack 0 smem 16 threads 128
sm_86 k.tile heavy registers 246 spill 0 stack 0 smem 16 threads 64
sm_90a k.tile light registers 16 spill 0 stack 0 smem 0 threads 128
sm_90a k.tile tiny registers 16 spill 0 stack 0 smem 0 threads 32
TXT
pass=0 fail=0
got=$(awk -v arch=sm_90a -f "$1/scripts/occupancy.awk" "$tmp/r.txt")
want='| kernel | file | threads | registers | smem KiB | blocks/SM | warps/SM | occupancy | limited by |
|---|---|---|---|---|---|---|---|---|
| heavy | k.tile | 128 | 246 | 0.0 | 2 | 8 | 12.5% | registers |
| wide | k.tile | 256 | 32 | 98.0 | 2 | 16 | 25.0% | shared memory |
| tiny | k.tile | 32 | 16 | 0.0 | 32 | 32 | 50.0% | blocks |
| light | k.tile | 128 | 16 | 0.0 | 16 | 64 | 100.0% | threads |

4 kernels on sm_90a: 1 limited by registers; 1 limited by shared memory; 1 limited by threads; 1 limited by blocks;'
if [[ $got == "$want" ]]; then
  pass=$((pass + 1))
else
  printf 'FAIL: occupancy.awk printed\n%s\nwant\n%s\n' "$got" "$want"
  fail=$((fail + 1))
fi
# refused ARCH FILE EXPECT WHAT: occupancy.awk fails, saying EXPECT
refused() {
  if awk -v arch="$1" -f "$src/scripts/occupancy.awk" "$2" >/dev/null 2>"$tmp/err" ||
     ! grep -q "$3" "$tmp/err"; then
    echo "FAIL: $4 is not refused: $(cat "$tmp/err")"
    fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
}
echo "sm_90a k.tile old registers 40 spill 0 stack 0 smem 16" >"$tmp/old.txt"
refused sm_90a "$tmp/old.txt" "old: no threads figure" "a line without threads"
refused sm_70 "$tmp/r.txt" "arch sm_70" "an unknown arch"
echo "$pass passed, $fail failed"
((fail == 0))
