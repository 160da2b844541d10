#!/usr/bin/env bash
# setup.sh - shared by demo.sh and test.sh: installs the Debian packages that
# are missing, then configures and builds Tessera into build/ (or the folder
# given as $1, with extra CMake arguments after it). Quick when nothing
# changed: packages are checked with dpkg, CMake runs only once per folder.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build gcc g++ make python3
          libmlir-22-dev mlir-22-tools llvm-22-dev liblua5.4-dev
          clang libclang-rt-14-dev libopenblas-dev libsqlite3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

build=${1:-build}
shift || true
if [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja "$@"
fi
cmake --build "$build"
