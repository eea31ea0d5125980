#!/usr/bin/env bash
# The whole test suite: a normal build and an ASan+UBSan build, each running ctest.
# Model-level end-to-end tests (label "slow") run in the normal build only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-model.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVESTA_SANITIZE=ON -DVESTA_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# OpenMP threads spin while waiting by default, which starves the other side of a shared 2-core
# machine (a SmolLM2 test: 3 min 45 s spinning vs 32 s passive).
export OMP_WAIT_POLICY=passive
export VESTA_MODEL="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export VESTA_PYTHON="$PWD/.venv/bin/python"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== ASan+UBSan build =="
(cd build-asan && ctest --output-on-failure -j"$jobs" -LE slow)
echo "== release build =="
(cd build && ctest --output-on-failure -j"$jobs")
