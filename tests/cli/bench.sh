#!/usr/bin/env bash
# bench.sh TESSERA ROOT - `tessera bench`: one benchmark run writes its
# tables as Markdown and JSON with the machine, versions and date; names
# and options are checked.
set -u
t=$1 root=$2
cd "$root" || exit 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$t" bench --list >"$tmp/list" && grep -q "^cpu_softmax" "$tmp/list" && ok || bad "--list"
"$t" bench cpu_softmax --out "$tmp/res" >"$tmp/out" 2>"$tmp/err" && ok || { bad "bench exits 0"; cat "$tmp/err"; }
md=$(grep '\.md$' "$tmp/out") js=$(grep '\.json$' "$tmp/out")
[[ -s $md && -s $js ]] && ok || bad "writes .md and .json ($md, $js)"
grep -q "^Device: cpu (" "$md" && grep -q "tessera 0.1.0 (LLVM/MLIR" "$md" && ok || bad "md header"
grep -q "^| 2048 x 7168 | " "$md" && ok || bad "md has the softmax table"
python3 - "$js" <<'PY' && ok || bad "json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["device"] == "cpu" and d["cores"] >= 1 and d["date"], d
b = d["benchmarks"]
assert [x["name"] for x in b] == ["cpu_softmax"] and b[0]["ok"], b
t = b[0]["tables"]
assert len(t) == 2, t
assert t[0]["columns"][0] == "rows x cols" and t[0]["columns"][-1] == "softmax / copy", t[0]
assert len(t[0]["rows"]) == 5 and all(len(r) == len(t[0]["columns"]) for r in t[0]["rows"])
assert float(t[0]["rows"][-1][-1]) > 0
assert t[1]["columns"][-1] == "rmsnorm / copy" and len(t[1]["rows"]) == 3
PY
"$t" bench no_such >"$tmp/out" 2>&1; [[ $? == 2 ]] && grep -q "no benchmark 'no_such'" "$tmp/out" && ok || bad "unknown name"
"$t" bench --device cuda >"$tmp/out" 2>&1; [[ $? != 0 ]] && grep -q "no GPU" "$tmp/out" && ok || bad "--device cuda without a GPU"
"$t" bench gpu_gemm >"$tmp/out" 2>&1; [[ $? == 2 ]] && grep -q "the cuda suite" "$tmp/out" && ok || bad "a GPU benchmark on the CPU"
grep -q "^gpu_gemm  *cuda" "$tmp/list" && ok || bad "--list shows the GPU suite"
(cd "$tmp" && "$t" bench cpu_softmax >"$tmp/out" 2>&1); [[ $? == 2 ]] && grep -q "source root" "$tmp/out" && ok || bad "outside the source root"
echo "$pass passed, $fail failed"
((fail == 0))
