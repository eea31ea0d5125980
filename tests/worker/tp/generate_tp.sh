#!/bin/sh
# `vesta generate --tensor-parallel-size N` (N rank processes) against the single-process run:
# greedy outputs byte-identical (token ids, finish reasons, text), and nothing left behind (no
# shared-memory segment). The n = 3 line shares its prompt's partial block: copy-on-write
# (COPY_BLOCKS) goes to every rank.
#   generate_tp.sh VESTA MODEL N    (MODEL "VESTA_MODEL": the default model from the environment)
set -eu
vesta=$1; model=$2; n=$3
if [ "$model" = VESTA_MODEL ]; then
    model=${VESTA_MODEL:?VESTA_MODEL is not set (scripts/fetch-model.sh fetches the model)}
fi
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cat > "$dir/in.jsonl" <<'IN'
{"prompt_token_ids": [1, 5, 9, 200, 31, 77]}
{"prompt_token_ids": [4, 4, 4, 8, 100, 200, 30, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 2, 3]}
{"prompt_token_ids": [17, 250, 3, 99, 12, 12, 140], "max_tokens": 5}
{"prompt_token_ids": [9, 8, 7, 6, 5, 4, 3, 2, 1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 30], "n": 3}
IN
common="--model $model --input $dir/in.jsonl --temperature 0 --max-tokens 16 --ignore-eos --num-threads 1
        --max-num-batched-tokens 16 --no-progress"
"$vesta" generate $common --output "$dir/one.jsonl" 2>"$dir/one.err" || { cat "$dir/one.err"; exit 1; }
"$vesta" generate $common --tensor-parallel-size "$n" --output "$dir/tp.jsonl" 2>"$dir/tp.err" ||
    { cat "$dir/tp.err"; exit 1; }
if ! cmp "$dir/one.jsonl" "$dir/tp.jsonl"; then
    echo "FAIL: TP=$n output differs from TP=1"; diff "$dir/one.jsonl" "$dir/tp.jsonl" | head; exit 1
fi
lines=$(wc -l < "$dir/tp.jsonl")
[ "$lines" -eq 4 ] || { echo "FAIL: $lines output lines"; exit 1; }
if ls /dev/shm 2>/dev/null | grep -q "^vesta-tp-$$"; then echo "FAIL: shm segment left"; exit 1; fi
echo "TP=$n identical to TP=1 ($lines prompts, chunked prefill of 16 tokens)"
