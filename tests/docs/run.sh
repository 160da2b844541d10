#!/usr/bin/env bash
# run.sh TESSERA ROOT - every ```tile example in docs/*.md passes
# `tessera check`: the examples in the docs are tests.
set -u
t=$1 root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
for doc in "$root"/docs/*.md; do
  awk -v dir="$tmp" -v base="$(basename "$doc" .md)" '
    /^```tile$/ { n++; file = sprintf("%s/%s_%02d.tile", dir, base, n); inb = 1; next }
    /^```$/ { inb = 0; next }
    inb { print > file }
  ' "$doc"
done
for f in "$tmp"/*.tile; do
  [[ -e $f ]] || continue
  if "$t" check --color=never "$f"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: example $(basename "$f") does not check"
  fi
done
echo "$pass passed, $fail failed"
((fail == 0 && pass > 0))
