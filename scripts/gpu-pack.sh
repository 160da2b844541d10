#!/usr/bin/env bash
# gpu-pack.sh - prepares, on this machine, what a lent GPU machine needs to
# run scripts/gpu.sh: that machine reaches no package registry, so it cannot
# install MLIR 22 and Lua, and it has no LLVM to build with. This script
#   - builds build/ if it is missing (scripts/setup.sh), strips
#     libtessera.so and removes the test caches from build/ (ctest makes
#     them again): about 25 MB;
#   - downloads the runtime packages build/tessera needs that a CUDA image
#     lacks into .gpu-debs/ (libllvm22, libmlir-22, liblua5.4-0, libz3-4,
#     libicu72, libxml2, libedit2 and its libbsd0, libmd0: about 63 MB),
#     ignored by git.
# The `run` tool carries 64 MiB a call, the checkout included, so the two go
# in two calls, the second while the machine is still warm (30 s):
#   run: scripts/gpu.sh --libs   carry: .gpu-debs            timeout_s: 120
#   run: scripts/gpu.sh          carry: build                timeout_s: 600
# The first unpacks the packages into /opt/tessera-libs (not into /) and
# stops; the second finds them there (gpu.sh puts them on LD_LIBRARY_PATH)
# and says which library is still missing, if any, before it runs anything.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/tessera ]] || scripts/setup.sh build
strip --strip-unneeded build/libtessera.so
rm -rf build/tests/mock-bench-cache build/tests/mock-model-cache build/tests/lua-tune-cache
grep -qxF "/.gpu-debs/" .git/info/exclude 2>/dev/null || echo "/.gpu-debs/" >>.git/info/exclude
rm -rf .gpu-debs
mkdir -p .gpu-debs
(cd .gpu-debs && apt-get download libllvm22 libmlir-22 liblua5.4-0 libz3-4 libicu72 libxml2 \
  libedit2 libbsd0 libmd0)
echo "gpu-pack.sh: .gpu-debs $(du -sh .gpu-debs | cut -f1), build $(du -sh build | cut -f1)" \
  "(each under the run tool's 64 MiB with the checkout, $(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1) bytes)"
