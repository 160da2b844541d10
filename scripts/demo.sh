#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, and runs the main job on the
# CPU. Until the back end lands, the main job checks every kernel in
# kernels/ and prints what the front end made of it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
echo
build/tessera --version
build/tessera devices
echo
echo "== tessera check -v kernels/*.tile"
build/tessera check -v kernels/*.tile
echo
echo "== tessera compile kernels/softmax.tile --kernel softmax_rows --emit typed (head)"
build/tessera compile kernels/softmax.tile --kernel softmax_rows --emit typed | head -n 12
