#!/usr/bin/env bash
# cache.sh TESSERA ROOT - the kernel cache of `tessera compile --target ptx`:
# a miss stores an entry and a hit returns the same bytes; the key covers
# the source, kernel, params and architecture; a damaged entry (changed,
# truncated, not an entry) is rebuilt with a warning; eight processes
# compiling the same kernel at once all succeed and agree; --no-cache and
# an unwritable cache still compile. Then the cache of compiled CPU code
# (`tessera run`): one shared object a kernel in this build's folder,
# reused by the next process with the same output, other builds' folders
# unused for a day removed, concurrent processes agreeing, and
# TESSERA_CPU_CACHE=0 writing nothing. Then the limits: at most 4 other
# builds' folders, entries unused for 30 days and the least recently used
# past TESSERA_CACHE_MAX_MB removed. Then TESSERA_DUMP and TESSERA_OVERRIDE.
set -u
t=$1 root=$2
cd "$root" || exit 2
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TESSERA_CACHE=$tmp/cache
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
compile() { "$t" compile kernels/softmax.tile --target ptx -v "$@"; }

compile -o "$tmp/a.ptx" 2>"$tmp/err"
check '[[ $? == 0 ]] && grep -q "cache miss, stored" "$tmp/err"' "first compile is a miss that stores"
check '[[ $(ls "$TESSERA_CACHE" | wc -l) == 1 ]]' "one entry"
entry=$(ls "$TESSERA_CACHE"/*.tsc)
compile -o "$tmp/b.ptx" 2>"$tmp/err"
check 'grep -q "cache hit" "$tmp/err" && cmp -s "$tmp/a.ptx" "$tmp/b.ptx"' "second compile hits with the same PTX"
compile --no-cache -o "$tmp/c.ptx" 2>"$tmp/err"
check '! grep -q cache "$tmp/err" && cmp -s "$tmp/a.ptx" "$tmp/c.ptx"' "--no-cache builds the same PTX"
compile -D BM=2 -o "$tmp/d.ptx" 2>"$tmp/err"
check 'grep -q "cache miss" "$tmp/err" && ! cmp -s "$tmp/a.ptx" "$tmp/d.ptx"' "params are in the key"
compile --arch sm_80 -o "$tmp/e.ptx" 2>"$tmp/err"
check 'grep -q "cache miss" "$tmp/err" && grep -q "target sm_80" "$tmp/e.ptx"' "the architecture is in the key"
compile --kernel softmax_rows -o "$tmp/f.ptx" 2>"$tmp/err"
check 'grep -q "cache miss" "$tmp/err"' "the kernel is in the key"

# damaged entries: rebuilt, with a warning naming the problem
damage() { # how reason
  reason=$2
  eval "$1"
  compile -o "$tmp/g.ptx" 2>"$tmp/err"
  rc=$?
  check '[[ $rc == 0 ]] && grep -qF "is damaged ($reason); rebuilding it" "$tmp/err" && cmp -s "$tmp/a.ptx" "$tmp/g.ptx"' "$reason: warned and rebuilt"
  compile -o "$tmp/g.ptx" 2>"$tmp/err"
  check 'grep -q "cache hit" "$tmp/err" && cmp -s "$tmp/a.ptx" "$tmp/g.ptx"' "$reason: the rebuilt entry is good"
}
damage 'printf "X" | dd of="$entry" bs=1 seek=200 conv=notrunc status=none' "its checksum does not match"
damage 'truncate -s -100 "$entry"' "it is truncated"
damage 'echo garbage >"$entry"' "not a Tessera cache entry"
damage ': >"$entry"' "not a Tessera cache entry"

# eight processes at once on an empty cache
rm -rf "$TESSERA_CACHE"
for i in 1 2 3 4 5 6 7 8; do
  ("$t" compile kernels/gemm.tile --target ptx -o "$tmp/p$i.ptx" 2>"$tmp/p$i.err"; echo $? >"$tmp/p$i.rc") &
done
wait
for i in 1 2 3 4 5 6 7 8; do
  check '[[ $(cat "$tmp/p$i.rc") == 0 ]] && [[ ! -s $tmp/p$i.err ]] && cmp -s "$tmp/p1.ptx" "$tmp/p$i.ptx"' "concurrent compile $i succeeds and agrees"
done
check '[[ $(ls -A "$TESSERA_CACHE" | wc -l) == 1 ]]' "one entry and no temp files after concurrent compiles"
"$t" compile kernels/gemm.tile --target ptx -v -o "$tmp/q.ptx" 2>"$tmp/err"
check 'grep -q "cache hit" "$tmp/err" && cmp -s "$tmp/p1.ptx" "$tmp/q.ptx"' "their entry is good"

# a cache that cannot be written: still compiles
TESSERA_CACHE=/proc/no/such compile -o "$tmp/h.ptx" 2>"$tmp/err"
check '[[ $? == 0 ]] && grep -q "not stored" "$tmp/err" && cmp -s "$tmp/a.ptx" "$tmp/h.ptx"' "unwritable cache: compiled, not stored"
# the default folder follows XDG_CACHE_HOME
env -u TESSERA_CACHE XDG_CACHE_HOME="$tmp/xdg" "$t" compile kernels/softmax.tile --target ptx -o "$tmp/i.ptx"
check '[[ $(ls "$tmp/xdg/tessera" | wc -l) == 1 ]]' "XDG_CACHE_HOME/tessera is the default"

# the CPU code
cat >"$tmp/run.lua" <<'LUA'
local ts = require("tessera")
local x = ts.tensor("f32", {2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10.5})
local y = ts.tensor("f32", {2, 5})
ts.kernel("kernels/softmax.tile", "softmax_rows"):launch{x, y}
print(table.concat(y:to_table(), " "))
LUA
rm -rf "$TESSERA_CACHE"
mkdir -p "$TESSERA_CACHE/cpu-old" "$TESSERA_CACHE/cpu-recent"
echo x >"$TESSERA_CACHE/cpu-old/0.so"
touch -d '2 days ago' "$TESSERA_CACHE/cpu-old"
TESSERA_CPU_CACHE=0 "$t" run "$tmp/run.lua" >"$tmp/r0.out"
check '[[ $? == 0 && -s $tmp/r0.out && -d $TESSERA_CACHE/cpu-old ]] && [[ $(ls -d "$TESSERA_CACHE"/cpu-* | wc -l) == 2 ]]' "TESSERA_CPU_CACHE=0: nothing stored or swept"
"$t" run "$tmp/run.lua" >"$tmp/r1.out"
check '[[ $? == 0 ]] && cmp -s "$tmp/r0.out" "$tmp/r1.out"' "first run: the same output"
check '[[ ! -e $TESSERA_CACHE/cpu-old && -d $TESSERA_CACHE/cpu-recent ]]' "another build's folder unused for a day is removed, a recent one kept"
build=$(ls -d "$TESSERA_CACHE"/cpu-* | grep -v cpu-recent)
check '[[ $(echo "$build" | wc -l) == 1 && $(ls "$build" | wc -l) == 1 && $(ls "$build"/*.so | wc -l) == 1 ]]' "one shared object in this build's folder"
"$t" run "$tmp/run.lua" >"$tmp/r2.out"
check '[[ $? == 0 ]] && cmp -s "$tmp/r0.out" "$tmp/r2.out" && [[ $(ls "$build" | wc -l) == 1 ]]' "second run: loaded, the same output, nothing added"
rm -rf "$TESSERA_CACHE"
for i in 1 2 3 4; do
  ("$t" run "$tmp/run.lua" >"$tmp/c$i.out" 2>"$tmp/c$i.err"; echo $? >"$tmp/c$i.rc") &
done
wait
for i in 1 2 3 4; do
  check '[[ $(cat "$tmp/c$i.rc") == 0 && ! -s $tmp/c$i.err ]] && cmp -s "$tmp/r0.out" "$tmp/c$i.out"' "concurrent run $i succeeds and agrees"
done
check '[[ $(ls "$TESSERA_CACHE"/cpu-*/ | wc -l) == 1 ]]' "one shared object and no temp files after concurrent runs"

# limits: other builds' folders beyond the 4 most recently used go (even
# within a day); a loaded shared object is marked used; past
# TESSERA_CACHE_MAX_MB the least recently used shared objects go
for i in 1 2 3 4 5 6; do
  mkdir -p "$TESSERA_CACHE/cpu-b$i"
  touch -d "$i hours ago" "$TESSERA_CACHE/cpu-b$i"
done
touch -d '3 days ago' "$build"/*.so
"$t" run "$tmp/run.lua" >"$tmp/r3.out"
check '[[ -d $TESSERA_CACHE/cpu-b4 && ! -e $TESSERA_CACHE/cpu-b5 && ! -e $TESSERA_CACHE/cpu-b6 ]]' "other builds: the 4 most recently used kept"
check '[[ -n $(find "$build" -name "*.so" -newermt "1 hour ago") ]]' "a loaded shared object is marked used"
head -c 700000 /dev/zero >"$build/old1.so"
head -c 700000 /dev/zero >"$build/old2.so"
touch -d '2 hours ago' "$build/old1.so"
touch -d '1 hour ago' "$build/old2.so"
printf 'kernel twice(x: f32[N]) grid(N) {\n  x[block_id(0)] = 2.0 * x[block_id(0)];\n}\n' >"$tmp/twice.tile"
printf 'local ts = require("tessera")\nts.kernel(arg[1], "twice"):launch{ts.tensor("f32", {3})}\n' \
  >"$tmp/run2.lua"
TESSERA_CACHE_MAX_MB=1 "$t" run "$tmp/run2.lua" "$tmp/twice.tile" >"$tmp/r4.out"
check '[[ $? == 0 && ! -e $build/old1.so && -e $build/old2.so && $(ls "$build"/*.so | wc -l) == 3 ]]' "past TESSERA_CACHE_MAX_MB the least recently used shared objects go, until under it"

# the PTX entries: unused for TESSERA_CACHE_MAX_DAYS (30) days they go at a
# process's first store; a hit marks an entry used; past TESSERA_CACHE_MAX_MB
# the least recently used go
rm -rf "$TESSERA_CACHE"
compile -o "$tmp/a.ptx" 2>/dev/null
entry=$(ls "$TESSERA_CACHE"/*.tsc)
touch -d '10 days ago' "$entry"
compile -o "$tmp/a.ptx" 2>/dev/null
check '[[ -n $(find "$entry" -newermt "1 hour ago") ]]' "a hit marks the entry used"
echo old >"$TESSERA_CACHE/0123456789abcdef0123456789abcdef.tsc"
touch -d '40 days ago' "$TESSERA_CACHE/0123456789abcdef0123456789abcdef.tsc"
compile -D BM=4 -o "$tmp/j.ptx" 2>/dev/null
check '[[ ! -e $TESSERA_CACHE/0123456789abcdef0123456789abcdef.tsc && -e $entry ]]' "an entry unused for 30 days goes, a recent one stays"
for i in 1 2 3; do
  head -c 500000 /dev/zero >"$TESSERA_CACHE/big$i.tsc"
  touch -d "$((4 - i)) hours ago" "$TESSERA_CACHE/big$i.tsc"
done
TESSERA_CACHE_MAX_MB=1 compile -D BM=8 -o "$tmp/k.ptx" 2>/dev/null
check '[[ ! -e $TESSERA_CACHE/big1.tsc && ! -e $TESSERA_CACHE/big2.tsc && -e $TESSERA_CACHE/big3.tsc && $(du -sk "$TESSERA_CACHE" | cut -f1) -le 1100 ]]' "past TESSERA_CACHE_MAX_MB the least recently used entries go"
TESSERA_CACHE_MAX_MB=1 compile -D BM=8 -o "$tmp/k2.ptx" 2>"$tmp/err"
check 'cmp -s "$tmp/k.ptx" "$tmp/k2.ptx"' "the entry just stored is kept"
# a limit that is not a number is reported, and the default used
TESSERA_CACHE_MAX_MB=lots compile -D BM=16 -o "$tmp/k3.ptx" 2>"$tmp/err"
check '[[ $? == 0 ]] && grep -q "TESSERA_CACHE_MAX_MB=.lots. is not a number >= 0; using 1024" "$tmp/err"' "a bad TESSERA_CACHE_MAX_MB is reported"

# TESSERA_DUMP: each form a kernel is compiled to, as text, named
# KERNEL-HASH.FORM (the CPU's MLIR before the pipeline, the simulator's,
# a CUDA device's PTX: the mock driver's); TESSERA_OVERRIDE: a file of that
# name used in place of what would be compiled, said on stderr, never kept
# in the cache; a broken one fails with its own location
cat >"$tmp/dbg.lua" <<'LUA'
local ts = require("tessera")
local dev = ts.device(arg[1] or "cpu")
local x = ts.tensor("f32", {3}, {1, 2, 3.5}):copy_to(dev)
ts.kernel(arg[2], "twice", {}, dev):launch{x}
print(table.concat(x:to_table(), " "))
LUA
rm -rf "$TESSERA_CACHE" "$tmp/dump" "$tmp/over"
"$t" run "$tmp/dbg.lua" cpu "$tmp/twice.tile" >/dev/null # (cached: dumping compiles anyway)
TESSERA_DUMP=$tmp/dump "$t" run "$tmp/dbg.lua" cpu "$tmp/twice.tile" >"$tmp/d1.out"
cpu_mlir=$(ls "$tmp"/dump/twice-*.cpu.mlir 2>/dev/null)
check '[[ $(cat "$tmp/d1.out") == "2.0 4.0 7.0" && -n $cpu_mlir ]] && grep -q "2.000000e+00 : f32" "$cpu_mlir"' "TESSERA_DUMP writes the CPU's MLIR, before the pipeline"
mkdir -p "$tmp/over"
sed 's/2.000000e+00 : f32/3.000000e+00 : f32/' "$cpu_mlir" >"$tmp/over/$(basename "$cpu_mlir")"
TESSERA_OVERRIDE=$tmp/over "$t" run "$tmp/dbg.lua" cpu "$tmp/twice.tile" >"$tmp/d2.out" 2>"$tmp/err"
check '[[ $(cat "$tmp/d2.out") == "3.0 6.0 10.5" ]] && grep -q "$(basename "$cpu_mlir") replaces the compiled cpu.mlir (TESSERA_OVERRIDE)" "$tmp/err"' "TESSERA_OVERRIDE's MLIR runs in place of the generated, and says so"
"$t" run "$tmp/dbg.lua" cpu "$tmp/twice.tile" >"$tmp/d3.out" 2>"$tmp/err"
check '[[ $(cat "$tmp/d3.out") == "2.0 4.0 7.0" && ! -s $tmp/err ]]' "an override is not kept in the cache"
printf 'module {\n  func.func @twice( {\n}\n' >"$tmp/over/$(basename "$cpu_mlir")"
TESSERA_OVERRIDE=$tmp/over "$t" run "$tmp/dbg.lua" cpu "$tmp/twice.tile" >"$tmp/d4.out" 2>"$tmp/err"
check '[[ $? != 0 ]] && grep -q "$(basename "$cpu_mlir"):2:[0-9]*: " "$tmp/err"' "a broken override fails, located in its file"
TESSERA_DUMP=$tmp/dump "$t" run "$tmp/dbg.lua" gpusim "$tmp/twice.tile" >"$tmp/d5.out"
check '[[ $(cat "$tmp/d5.out") == "2.0 4.0 7.0" ]] && ls "$tmp"/dump/twice-*.gpusim.mlir >/dev/null' "TESSERA_DUMP writes the simulator's form"
mock=$(dirname "$t")/tests/cuda_mock
if [[ -e $mock/libcuda.so.1 ]]; then
  LD_LIBRARY_PATH=$mock TESSERA_DUMP=$tmp/dump "$t" run "$tmp/dbg.lua" cuda "$tmp/twice.tile" \
    >/dev/null 2>"$tmp/err"
  ptx=$(ls "$tmp"/dump/twice-*.sm_90a.ptx 2>/dev/null)
  check '[[ -n $ptx ]] && grep -q ".entry twice" "$ptx"' "TESSERA_DUMP writes a CUDA device's PTX"
  # (its host program: the launch's grid and scratch functions, not the
  # kernel, which runs from the PTX)
  host=$(ls "$tmp"/dump/twice-*.host.mlir 2>/dev/null)
  check '[[ -n $host ]] && grep -q "@twice__grid" "$host" && ! grep -q "@twice(" "$host"' "a CUDA device's host program has no CPU kernel"
  sed 's/\.entry twice/.entry elsewhere/' "$ptx" >"$tmp/over/$(basename "$ptx")"
  LD_LIBRARY_PATH=$mock TESSERA_OVERRIDE=$tmp/over "$t" run "$tmp/dbg.lua" cuda "$tmp/twice.tile" \
    >/dev/null 2>"$tmp/err"
  check '[[ $? != 0 ]] && grep -q "replaces the compiled sm_90a.ptx" "$tmp/err"' "a CUDA device loads TESSERA_OVERRIDE's PTX (the mock: its entry renamed, not found)"
fi

echo "$pass passed, $fail failed"
((fail == 0))
