#!/usr/bin/env bash
# scripts/ab.sh: its usage errors, then HEAD against this tree with the
# worktree in a temporary folder (removed after): both sides run, A's
# tessera loads its own build's library (RUNPATH), a command that fails on
# both (exit 2: no such script) is reported for each and makes the script
# exit 1.
#   tests/cli/ab.sh SOURCE_ROOT
set -uo pipefail
cd "$1"
pass=0 fail=0
check() { # check WHAT CONDITION...
  local what=$1
  shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)) && echo "FAIL: $what"; fi
}
out=$(mktemp) dir=$(mktemp -d)
trap 'rm -f "$out"; git worktree remove --force "$dir"/* 2>/dev/null; rm -rf "$dir"' EXIT

scripts/ab.sh >"$out" 2>&1
check "no arguments: usage, exit 2" test $? = 2
scripts/ab.sh HEAD --runs 0 -- tessera --version >"$out" 2>&1
check "--runs 0: exit 2" test $? = 2
scripts/ab.sh HEAD -- ls >"$out" 2>&1
check "a command that is not tessera: exit 2" test $? = 2
scripts/ab.sh no-such-revision -- tessera --version >"$out" 2>&1
check "an unknown revision: exit 2" test $? = 2
check "an unknown revision: said so" grep -q "names no commit" "$out"

if ! git rev-parse --verify -q HEAD >/dev/null; then
  echo "ab: not a git checkout; the run against HEAD skipped"
else
  TS_AB_DIR=$dir scripts/ab.sh HEAD --runs 2 -- tessera --version >"$out" 2>&1
  check "HEAD against this tree: exit 0" test $? = 0
  check "two runs a side" test "$(grep -c '^== [AB] ' "$out")" = 4
  check "each run printed the version" test "$(grep -c 'LLVM/MLIR' "$out")" = 4
  sha=$(git rev-parse HEAD)
  a=$dir/${sha:0:12}/build/tessera
  check "A's tessera loads its own build's library" \
    bash -c "readelf -d '$a' | grep -q 'RUNPATH.*${sha:0:12}/build'"
  TS_AB_DIR=$dir scripts/ab.sh HEAD --runs 1 -- tessera run no-such-script.lua >"$out" 2>&1
  check "a failing command: exit 1" test $? = 1
  check "a failing command: each side's exit said" test "$(grep -c ': exit 2$' "$out")" = 2
fi
echo "$pass passed, $fail failed"
((fail == 0))
