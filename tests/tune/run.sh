#!/usr/bin/env bash
# run.sh TESSERA ROOT - `tessera tune` on the CPU: the ranked table, pruning
# before compiling, the correctness gate, the database (--show, a damaged
# file set aside, concurrent tuners), --budget, and usage errors.
set -u
t=$1 root=$2
cd "$root" || exit 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TESSERA_CACHE=$tmp/cache
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
has() { grep -qF -- "$2" "$1" && ok || { bad "$3: '$2' not in $1"; head -n 20 "$1"; }; }
tile=tests/tune/tune.tile
args=(--kernel scale_rows --shape M=333 --shape N=77 --shape s=0.5 --repeats 3)

"$t" tune $tile "${args[@]}" --jobs 2 >"$tmp/out" 2>"$tmp/err" && ok || bad "tune exits 0"
has "$tmp/out" "10 configs: 3 pruned before compiling, 4 timed, 3 wrong, 0 failed; the default is BM=2 SKEW=0" "summary"
has "$tmp/out" "| BM=8 SKEW=1 | inf | - | - | pruned: 8:54: the params break this 'require' |" "pruned by require"
has "$tmp/out" "pruned: 9:32: the thread count must be 1 to 1024, found 2048" "pruned by the thread limit"
has "$tmp/out" "| BM=1 SKEW=1 | inf | - | - | WRONG: 'y'[0] is" "the wrong config is rejected"
has "$tmp/out" "ok (default)" "the default config is timed"
has "$tmp/out" "recorded in $tmp/cache/tune.db" "recorded"
[[ $(grep -c '^| [0-9]' "$tmp/out") == 4 ]] && ok || bad "4 ranked rows"

# the configs close to the best timed again in turns: every one with --close
# 1e9, none with 1; a factor below 1 is a usage error
"$t" tune $tile "${args[@]}" --no-tune-db --close 1e9 >"$tmp/close" 2>&1 && ok || bad "--close exits 0"
[[ $(grep -c '^| [0-9].*, timed in turns' "$tmp/close") == 4 ]] && ok ||
  { bad "--close 1e9: the 4 timed configs timed in turns"; cat "$tmp/close"; }
"$t" tune $tile "${args[@]}" --no-tune-db --close 1 >"$tmp/close" 2>&1 && ok || bad "--close 1 exits 0"
grep -q "timed in turns" "$tmp/close" && bad "--close 1: none timed in turns" || ok
"$t" tune $tile "${args[@]}" --close 0.5 >"$tmp/close" 2>&1
[[ $? == 2 ]] && ok || bad "--close 0.5 is a usage error"
has "$tmp/close" "--close takes a factor of 1 or more, not '0.5'" "--close's message"

"$t" tune --show >"$tmp/show" 2>&1 && ok || bad "--show exits 0"
[[ $(grep -c '^| scale_rows | M=512 N=128 | cpu | BM=. SKEW=0 |' "$tmp/show") == 4 ]] &&
  ok || { bad "--show lists the 4 timed configs"; cat "$tmp/show"; }

# compiling with the shapes and no -D takes the best recorded config
best=$(grep -m1 '^| 1 |' "$tmp/out" | cut -d'|' -f3 | sed 's/^ *//; s/ *$//')
"$t" compile $tile --kernel scale_rows --shape M=400 --shape N=100 --emit mlir >/dev/null 2>"$tmp/err"
has "$tmp/err" "tuned params $best (the tuning database's best on cpu)" "compile takes the tuned config"
"$t" compile $tile --kernel scale_rows --shape M=400 --shape N=100 --emit mlir --no-tune-db >/dev/null 2>"$tmp/err"
grep -q "tuned params" "$tmp/err" && bad "--no-tune-db ignores the database" || ok
"$t" compile $tile --kernel scale_rows --shape M=9000 --shape N=100 --emit mlir >/dev/null 2>"$tmp/err"
grep -q "tuned params" "$tmp/err" && bad "another bucket keeps the defaults" || ok

# -D holds a param the sweep leaves alone (a dtype param): recorded with the
# shapes, and compile with the same -D and shapes takes the best config
"$t" tune $tile --kernel scale_typed --shape M=333 --shape N=77 --shape s=0.5 --repeats 2 \
  -D XT=bf16 >"$tmp/out" 2>&1 && ok || bad "tune -D exits 0"
has "$tmp/out" "shapes M=512 N=128 XT=bf16 (bucket)" "the held param is in the bucket"
has "$tmp/out" "3 configs: 0 pruned before compiling, 3 timed, 0 wrong" "bf16 configs timed"
best=$(grep -m1 '^| 1 |' "$tmp/out" | cut -d'|' -f3 | sed 's/^ *//; s/ *$//')
"$t" compile $tile --kernel scale_typed --shape M=400 --shape N=100 -D XT=bf16 --emit mlir \
  >/dev/null 2>"$tmp/err"
has "$tmp/err" "tuned params $best (the tuning database's best on cpu)" "compile -D takes the tuned config"
"$t" compile $tile --kernel scale_typed --shape M=400 --shape N=100 --emit mlir >/dev/null 2>"$tmp/err"
grep -q "tuned params" "$tmp/err" && bad "XT = f32 is another bucket" || ok
"$t" tune $tile --kernel scale_typed --shape M=3 --shape N=3 -D BM=2 >"$tmp/out" 2>&1
has "$tmp/out" "'BM' is swept by the kernel's 'tune(...)'" "a swept param cannot be held"

# --no-tune-db leaves the database alone; --db puts it elsewhere
"$t" tune $tile "${args[@]}" --no-tune-db >"$tmp/out" 2>&1 && ok || bad "--no-tune-db"
grep -q "recorded" "$tmp/out" && bad "--no-tune-db records nothing" || ok
"$t" tune $tile "${args[@]}" --db "$tmp/other/t.db" >"$tmp/out" 2>&1 && ok || bad "--db"
[[ -s $tmp/other/t.db ]] && ok || bad "--db writes there"

# a budget that runs out before the first timing
"$t" tune $tile "${args[@]}" --budget 0.000000001 --no-tune-db >"$tmp/out" 2>&1
has "$tmp/out" "not timed: the budget ran out" "--budget"

# a damaged database is set aside with a warning, and a new one works
printf 'this is not an SQLite database, just some bytes %.0s' {1..200} >"$tmp/bad.db"
"$t" tune $tile "${args[@]}" --db "$tmp/bad.db" >"$tmp/out" 2>"$tmp/err" && ok || bad "tune with a damaged db"
has "$tmp/err" "the tuning database was damaged" "damaged db warning"
[[ -f $tmp/bad.db.damaged ]] && ok || bad "the damaged file is kept aside"
"$t" tune --show --db "$tmp/bad.db" >"$tmp/show" 2>&1
[[ $(grep -c '^| scale_rows' "$tmp/show") == 4 ]] && ok || bad "the new database holds the run"

# tuners at once on one database: every run's rows arrive
for s in 100 300 700 1500; do
  "$t" tune $tile --kernel scale_rows --shape M=$s --shape N=33 --repeats 2 \
    --jobs 1 --db "$tmp/shared.db" >"$tmp/c$s" 2>&1 &
done
rcs=0
for j in $(jobs -p); do wait "$j" || rcs=$((rcs + 1)); done
((rcs == 0)) && ok || { bad "$rcs concurrent tuners failed"; cat "$tmp"/c*; }
"$t" tune --show --db "$tmp/shared.db" >"$tmp/show" 2>&1
[[ $(grep -c '^| scale_rows' "$tmp/show") == 16 ]] && ok ||
  { bad "4 buckets x 4 configs from concurrent tuners"; cat "$tmp/show"; }

# a GPU device's sweep: each compiled config through ptxas -v (a stand-in
# that reports a spill for the configs over 4 KiB of shared memory: pruned
# after compiling, not run; --keep-spills runs them); with the real ptxas
# their registers; without one, said so and everything runs
gpu=(--kernel stage_rows --device gpusim --shape M=70 --repeats 2 --no-tune-db)
PTXAS=$PWD/tests/tune/fake_ptxas.sh "$t" tune $tile "${gpu[@]}" >"$tmp/out" 2>&1 && ok ||
  bad "gpusim tune exits 0"
has "$tmp/out" "4 configs: 0 pruned before compiling, 2 timed, 0 wrong, 0 failed" "spilling configs not timed"
has "$tmp/out" "ptxas -v: the default config 40 registers, 0 bytes of spill; 2 configs that spill more pruned before running" "the spill bar"
has "$tmp/out" "| - | BM=32 | inf | - | - | pruned: spills 64 bytes a thread (ptxas -v, sm_90a; the default config 0) |" "a spilling config pruned"
has "$tmp/out" "ok (default), 40 registers, 0 B spill |" "registers shown"
PTXAS=$PWD/tests/tune/fake_ptxas.sh "$t" tune $tile "${gpu[@]}" --keep-spills >"$tmp/out" 2>&1
has "$tmp/out" "4 configs: 0 pruned before compiling, 4 timed" "--keep-spills times them"
if [[ -x /usr/local/cuda/bin/ptxas ]]; then
  "$t" tune $tile "${gpu[@]}" >"$tmp/out" 2>&1
  has "$tmp/out" "4 configs: 0 pruned before compiling, 4 timed" "no config spills with the real ptxas"
  grep -qE '^\| [0-9] \| BM=32 \| .* ok, [0-9]+ registers, 0 B spill \|$' "$tmp/out" && ok ||
    { bad "the real ptxas's registers"; cat "$tmp/out"; }
fi
PTXAS=$tmp/no-ptxas "$t" tune $tile "${gpu[@]}" >"$tmp/out" 2>&1
has "$tmp/out" "registers and spills not checked: ptxas (" "no ptxas: said so"
has "$tmp/out" "4 configs: 0 pruned before compiling, 4 timed" "no ptxas: all timed"

# usage and program errors
"$t" tune $tile --kernel scale_rows --shape M=3 >"$tmp/out" 2>&1
[[ $? == 2 ]] && ok || bad "a missing dim exits 2"
has "$tmp/out" "give the size of dim 'N' of 'x': --shape N=VALUE" "missing dim named"
"$t" tune kernels/rmsnorm.tile --kernel rmsnorm_f32 --shape T=3 --shape D=3 >"$tmp/out" 2>&1
has "$tmp/out" "has no 'tune(...)' clause" "no tune clause"
"$t" tune $tile --kernel scale_rows --device tpu >"$tmp/out" 2>&1
has "$tmp/out" "unknown device 'tpu'" "unknown device"
"$t" tune $tile --kernel scale_rows --jobs 0 >"$tmp/out" 2>&1
[[ $? == 2 ]] && ok || bad "--jobs 0 is a usage error"
# --shape values the kernel cannot take: named, not read as 0 nor left unused
"$t" tune $tile --kernel scale_rows --shape M=x --shape N=4 >"$tmp/out" 2>&1
[[ $? == 2 ]] && ok || bad "a size that is not a number exits 2"
has "$tmp/out" "--shape M=x: a dim's size is a whole number, 0 or more" "a bad size"
"$t" tune $tile --kernel scale_rows --shape M=-3 --shape N=4 >"$tmp/out" 2>&1
has "$tmp/out" "--shape M=-3: a dim's size is a whole number, 0 or more" "a negative size"
"$t" tune $tile --kernel scale_rows --shape M=3 --shape N=4 --shape s=half >"$tmp/out" 2>&1
has "$tmp/out" "--shape s=half: not a number" "a scalar argument that is not a number"
"$t" tune $tile --kernel scale_rows --shape M=3 --shape N=4 --shape Q=4 >"$tmp/out" 2>&1
has "$tmp/out" "--shape Q=4: 'scale_rows' has no dim or scalar argument 'Q' (its dims: M, N)" \
  "an unknown name"
"$t" compile $tile --kernel scale_rows --shape Q=4 --emit mlir >"$tmp/out" 2>&1
has "$tmp/out" "--shape Q=4: 'scale_rows' has no dim or scalar argument 'Q'" \
  "compile --shape with an unknown name"

echo "$pass passed, $fail failed"
((fail == 0))
