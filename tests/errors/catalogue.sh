#!/usr/bin/env bash
# catalogue.sh ROOT - docs/errors.md and tests/errors/ list the same
# diagnostics: every "### name" entry has tests/errors/name.tile and every
# test file has an entry.
set -u
root=$1
doc=$root/docs/errors.md
fail=0 count=0
for f in "$root"/tests/errors/*.tile; do
  name=$(basename "$f" .tile)
  count=$((count + 1))
  grep -qx "### $name" "$doc" || { echo "no entry in docs/errors.md for tests/errors/$name.tile"; fail=$((fail + 1)); }
done
while read -r name; do
  [[ -f $root/tests/errors/$name.tile ]] || { echo "docs/errors.md: '$name' has no test tests/errors/$name.tile"; fail=$((fail + 1)); }
done < <(sed -n 's/^### //p' "$doc")
echo "$((count - fail)) passed, $fail failed"
((fail == 0))
