#!/usr/bin/env python3
"""fuzz_compile.py - the whole compiler (front end, MLIR to LLVM IR and to PTX,
the CUDA C lowering) over inputs made from kernels/*.tile: each run takes one
kernel and either overrides one to three of its params with odd values (-D:
0, 1, 7, 33, 65536, -1, 2^31 - 1, a wrong dtype, ...) or mutates its text (a
number or a name replaced by another, a line dropped or repeated), then
compiles it for one target (cpu to LLVM IR, ptx for sm_90a or sm_80, cuda)
in a child process. Exit codes 0 (compiled), 1 (errors in the program) and
2 (usage) are answers; a signal, a time-out, "internal" in the diagnostics,
an LLVM/MLIR fatal error or a sanitizer's report (over an ASan + UBSan
build's tessera, as scripts/test.sh runs it) is a finding: its source and
command are kept in --out and the script exits 1. scripts/fuzz.sh's libFuzzer runs cover the
front end alone (no MLIR): this is the rest, slower (~10 compiles a second
on two cores), seeded so that a run is reproducible.

  scripts/fuzz_compile.py --tessera build/tessera [--seed 1] [--runs N]
      [--seconds S] [--out DIR]
"""
import argparse
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

INTS = ["0", "1", "2", "3", "4", "7", "8", "13", "16", "31", "32", "33", "64", "100",
        "127", "128", "255", "256", "1000", "4096", "65536", "-1", "-8", "2147483647",
        "4294967296"]
FLOATS = ["0", "-1", "1e30", "nan", "inf", "0.5", "1e-40"]
DTYPES = ["f32", "bf16", "f16", "fp8e4m3", "i8", "i32", "bool"]
TARGETS = [["--target", "cpu", "--emit", "llvm"], ["--target", "ptx", "--emit", "ptx"],
           ["--target", "ptx", "--arch", "sm_80", "--emit", "ptx"],
           ["--target", "cuda", "--emit", "cuda"]]
WORD = re.compile(r"\b\d+\b|\b[A-Za-z_]\w*\b")


def kernels_of(path):
    """(name, start, end, [(param, type)]) of each kernel in the file."""
    text = open(path).read()
    heads = list(re.finditer(r"^kernel\s+(\w+)", text, re.M))
    out = []
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[h.start():end]
        head = body[:body.find("{")] if "{" in body else body
        pm = re.search(r"params\((.*?)\)\s*(?:tune|grid|threads|\{|$)", head, re.S)
        params = re.findall(r"(\w+)\s*:\s*(int|bool|float|dtype)\s*=", pm.group(1)) if pm else []
        out.append((h.group(1), h.start(), end, params))
    return text, out


def overrides(rnd, params):
    picked = rnd.sample(params, min(len(params), rnd.choice([1, 1, 2, 3])))
    args = []
    for name, ty in picked:
        value = {"int": INTS, "bool": ["true", "false", "1", "2"], "float": FLOATS,
                 "dtype": DTYPES}[ty]
        args += ["-D", "%s=%s" % (name, rnd.choice(value))]
    return args


def mutate(rnd, body):
    names = sorted({w.group(0) for w in WORD.finditer(body) if not w.group(0)[0].isdigit()})
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        words = list(WORD.finditer(body))
        w = rnd.choice(words)
        if w.group(0)[0].isdigit() or rnd.random() < 0.3:
            rep = rnd.choice(INTS).lstrip("-")
        else:
            rep = rnd.choice(names)
        body = body[:w.start()] + rep + body[w.end():]
    if rnd.random() < 0.2:
        lines = body.split("\n")
        i = rnd.randrange(len(lines))
        if rnd.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        body = "\n".join(lines)
    return body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tessera", default="build/tessera")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--out", default="build/fuzz-compile")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tessera = os.path.abspath(a.tessera)
    files = sorted(glob.glob(os.path.join(root, "kernels", "*.tile")))
    rnd = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fuzz-compile-")
    for f in files:  # (a mutated file `use`s its neighbours from here)
        shutil.copy(f, work)
    start, runs, compiled, finds = time.time(), 0, 0, 0
    try:
        while runs < a.runs and time.time() - start < a.seconds:
            path = rnd.choice(files)
            text, ks = kernels_of(path)
            name, b, e, params = rnd.choice(ks)
            target = rnd.choice(TARGETS)
            src = os.path.join(work, os.path.basename(path))
            extra = []
            if params and rnd.random() < 0.5:
                extra = overrides(rnd, params)
                mutated = text
            else:
                mutated = text[:b] + mutate(rnd, text[b:e]) + text[e:]
            with open(src, "w") as fh:
                fh.write(mutated)
            cmd = [tessera, "compile", src, "--kernel", name, "--no-cache", "--no-tune-db"] + \
                target + extra + ["-o", os.path.join(work, "out")]
            runs += 1
            try:
                r = subprocess.run(cmd, capture_output=True, timeout=a.timeout, cwd=work)
                rc, err = r.returncode, r.stderr.decode(errors="replace")
            except subprocess.TimeoutExpired:
                rc, err = "time-out", ""
            compiled += rc == 0
            if rc not in (0, 1, 2) or re.search(r"internal|LLVM ERROR|Assertion|Sanitizer|"
                                                 r"runtime error:", err, re.I):
                finds += 1
                keep = os.path.join(a.out, "find%03d.tile" % finds)
                shutil.copy(src, keep)
                print("finding %d (exit %s): %s\n  %s" % (finds, rc, " ".join(
                    [keep if c == src else c for c in cmd[1:]]), err.strip()[:2000]), flush=True)
            with open(src, "w") as fh:  # (the neighbours stay as they were)
                fh.write(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("fuzz_compile: %d runs (seed %d, %.0f s), %d compiled, %d errors in the program or "
          "usage, %d findings" % (runs, a.seed, time.time() - start, compiled,
                                  runs - compiled - finds, finds))
    return 1 if finds else 0


if __name__ == "__main__":
    sys.exit(main())
