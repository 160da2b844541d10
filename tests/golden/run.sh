#!/usr/bin/env bash
# run.sh TESSERA STAGE FILE - one golden test.
#   STAGE tokens|ast|typed: `tessera compile FILE --emit STAGE` must equal
#                           FILE with .tile replaced by .STAGE
#   STAGE fmt:              `tessera fmt FILE` must equal FILE.fmt, and
#                           formatting that output again changes nothing
#   STAGE kernel:           FILE (a kernel in kernels/) checks, dumps its
#                           typed tree, and is in the canonical layout
# TS_UPDATE_GOLDEN=1 rewrites the expected files instead of comparing.
set -u
tessera=$1 stage=$2 file=$3
dir=$(cd "$(dirname "$file")" && pwd)
name=$(basename "$file" .tile)
cd "$dir" || exit 2
out=$(mktemp)
trap 'rm -f "$out" "$out.2"' EXIT

if [[ $stage == kernel ]]; then
  "$tessera" check "$name.tile" || { echo "FAIL: check"; exit 1; }
  "$tessera" compile "$name.tile" --emit typed >"$out" || { echo "FAIL: --emit typed"; exit 1; }
  [[ -s $out ]] || { echo "FAIL: empty typed dump"; exit 1; }
  "$tessera" fmt --check "$name.tile" || { echo "FAIL: not in the canonical layout (tessera fmt -w)"; exit 1; }
  echo "1 passed, 0 failed"
  exit 0
fi

if [[ $stage == fmt ]]; then
  "$tessera" fmt "$name.tile" >"$out" 2>&1
  expected=$name.fmt
else
  "$tessera" compile "$name.tile" --emit "$stage" >"$out" 2>&1
  expected=$name.$stage
fi
if [[ ${TS_UPDATE_GOLDEN:-0} == 1 ]]; then
  cp "$out" "$expected"
  echo "updated $dir/$expected"
  exit 0
fi
if ! diff -u "$expected" "$out"; then
  echo "FAIL: $dir/$expected differs (TS_UPDATE_GOLDEN=1 to accept)"
  exit 1
fi
if [[ $stage == fmt ]]; then
  cp "$out" "$out.2.tile" 2>/dev/null
  "$tessera" fmt "$out.2.tile" >"$out.2" 2>&1
  rm -f "$out.2.tile"
  if ! diff -u "$out" "$out.2"; then
    echo "FAIL: fmt is not idempotent"
    exit 1
  fi
fi
echo "1 passed, 0 failed"
