#!/usr/bin/env bash
# misses.sh SOURCE_DIR - scripts/misses.awk lists the rows of a benchmark
# report whose "of copy" is under 0.7 with their section, and nothing else:
# not rows at or over it, not "-" (no copy figure), not other tables'
# columns, not a table without the column.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/r.md" <<'MD'
# GPU run

## mHC

| kernel | tokens | ms | GB/s | of copy | extra |
|---|---|---|---|---|---|
| slow | 1 | 0.1 | 3 | 0.12 | 0.01 |
| fast | 64 | 0.1 | 3000 | 0.91 | 0.01 |
| edge | 64 | 0.1 | 2300 | 0.70 | |
| none | 64 | 0.1 | 0 | - | |

| kernel | of peak | of copy |
|---|---|---|
| two | 0.10 | 0.69 |

## GEMM

| n | of peak |
|---|---|
| 4096 | 0.30 |
MD
got=$(awk -f "$1/scripts/misses.awk" "$tmp/r.md")
want='- mHC:
  | slow | 1 | 0.1 | 3 | 0.12 | 0.01 |
  | two | 0.10 | 0.69 |'
if [[ $got == "$want" ]]; then
  echo "1 passed, 0 failed"
else
  printf 'FAIL: misses.awk printed\n%s\nwant\n%s\n' "$got" "$want"
  echo "0 passed, 1 failed"
  exit 1
fi
