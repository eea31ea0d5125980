#!/usr/bin/env bash
# One command for a fresh Debian machine: installs dependencies, fetches the default model,
# builds Vesta (the CUDA backend too when nvcc is present) and runs an offline batch generation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-model.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# A short offline generation checks the build (skip with --no-run).
if [ "${1:-}" != "--no-run" ]; then
  build/bin/vesta generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
    --input configs/examples/prompts.jsonl --output build/generate-output.jsonl --max-tokens 32
  cat build/generate-output.jsonl
fi
