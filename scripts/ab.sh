#!/usr/bin/env bash
# ab.sh - one command run in turns by another revision's build (A) and this
# tree's (B), for before/after timings on a host whose speed drifts between
# runs: builds REV's `tessera` in a git worktree of its own (build-ab/SHA,
# kept for the next call; build-ab/ is ignored; `rm -rf build-ab && git
# worktree prune` drops them), this tree's in build/, then
# runs `tessera ARGS...` RUNS times with each in turn, A first, under
# "== A REV run i" and "== B this tree run i" (a run that fails is said so,
# the others still run, and the script exits 1). Both run from this source
# root, so kernels/, model/ and bench/ are this tree's and only the
# compiler, runtime and Lua bindings differ (--own-files: A runs in its
# worktree, with its revision's files). Each executable loads the library
# of its own build folder (its RUNPATH), and the caches of compiled kernels
# are keyed by that library file, so neither side reuses the other's code:
# copying an old `tessera` beside the new library does not do that (it
# loads the new library).
# (TS_AB_DIR: another folder for the worktrees, as the test's.)
#   scripts/ab.sh REV [--runs N] [--own-files] -- tessera ARGS...
# e.g. scripts/ab.sh HEAD~2 --runs 3 -- tessera run bench/cpu_gemv.lua --rows 256
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/ab.sh REV [--runs N] [--own-files] -- tessera ARGS..." >&2
  exit 2
}
[[ $# -ge 1 && $1 != -* ]] || usage
rev=$1
shift
runs=3 own=0
while [[ $# -gt 0 && $1 != -- ]]; do
  case $1 in
  --runs)
    [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage
    runs=$2
    shift 2
    ;;
  --own-files) own=1 && shift ;;
  *) usage ;;
  esac
done
[[ $# -ge 2 && $1 == -- && $2 == tessera ]] || usage
shift 2
sha=$(git rev-parse --verify --quiet "$rev^{commit}") || {
  echo "ab.sh: '$rev' names no commit" >&2
  exit 2
}
tree=${TS_AB_DIR:-build-ab}/${sha:0:12}
if [[ ! -e $tree/.git ]]; then
  rm -rf "$tree"
  git worktree prune
  git worktree add --detach -q "$tree" "$sha"
fi
scripts/setup.sh build >/dev/null
if [[ ! -f $tree/build/build.ninja ]]; then
  cmake -S "$tree" -B "$tree/build" -G Ninja >/dev/null
fi
cmake --build "$tree/build" --target tessera >/dev/null
a=$(cd "$tree/build" && pwd)/tessera b=$PWD/build/tessera
failed=0
for ((i = 1; i <= runs; i++)); do
  echo "== A $rev run $i"
  st=0
  if ((own)); then (cd "$tree" && "$a" "$@") || st=$?; else "$a" "$@" || st=$?; fi
  ((st == 0)) || { echo "== A $rev run $i: exit $st" && failed=1; }
  echo "== B this tree run $i"
  st=0
  "$b" "$@" || st=$?
  ((st == 0)) || { echo "== B this tree run $i: exit $st" && failed=1; }
done
exit $failed
