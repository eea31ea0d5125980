#!/bin/sh
# The vesta dispatcher and the argument checks of `vesta generate`, `vesta bench` and `vesta bench
# serve` (no model needed).
# Usage: cli_args.sh VESTA_BINARY
vesta="$1"
fail=0
expect() { # expect STATUS PATTERN -- ARGS...
    want="$1"; pattern="$2"; shift 3
    out=$("$vesta" "$@" 2>&1); got=$?
    if [ "$got" != "$want" ] || ! printf '%s' "$out" | grep -q -- "$pattern"; then
        echo "FAIL: vesta $* -> status $got (want $want), output: $out"; fail=1
    fi
}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo '{"prompt_token_ids": [1, 2]}' > "$tmp/in.jsonl"
expect 0 "generate" -- --help
expect 0 "^vesta [0-9]" -- --version
expect 2 "unknown command 'frobnicate'" -- frobnicate
expect 2 "usage" --
expect 0 "max-num-batched-tokens" -- generate --help
expect 2 "are required" -- generate --input "$tmp/in.jsonl"
expect 2 "invalid value 'abc' for --max-tokens" -- generate --model m --input i --output o --max-tokens abc
expect 2 "invalid value '0' for --block-size" -- generate --model m --input i --output o --block-size 0
expect 2 "invalid value 'safetensors' for --load-format" -- generate --model m --input i --output o --load-format safetensors
expect 2 "unknown or incomplete option '--bogus'" -- generate --model m --input i --output o --bogus
expect 2 "unexpected argument 'extra'" -- generate --model m --input i --output o extra
expect 2 "top_p" -- generate --model m --input i --output o --top-p 1.5
expect 2 "invalid value" -- generate --model m --input i --output o --stop-token-ids 1,x
expect 1 "$tmp/missing.gguf" -- generate --model "$tmp/missing.gguf" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl"
expect 1 "unknown backend \"tpu\"" -- generate --model "${VESTA_MODEL:-/nonexistent}" --backend tpu --input "$tmp/in.jsonl" --output "$tmp/out.jsonl"
# an invalid value names its own flag, whatever the order of the option tables
expect 2 "invalid value '0' for --tensor-parallel-size" -- generate --model m --input i --output o --tensor-parallel-size 0
expect 2 "invalid value '0' for --tensor-parallel-size" -- bench throughput --model m --tensor-parallel-size 0
expect 2 "invalid value 'x' for --max-concurrency" -- bench serve --max-concurrency x
expect 2 "unknown or incomplete option '--bogus'" -- bench throughput --model m --bogus
# vLLM's --trust-remote-code is accepted (and changes nothing): these fail later, at the model
expect 1 "$tmp/missing.gguf" -- generate --trust-remote-code --model "$tmp/missing.gguf" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl"
expect 1 "$tmp/missing.gguf" -- bench throughput --trust-remote-code --backend cpu --model "$tmp/missing.gguf"
expect 0 "trust-remote-code" -- bench serve --trust-remote-code --help
# --lora-modules: several values after one flag, parsed as vLLM takes them; refused with tensor
# parallelism (the tiny model of tests/models, its adapter of tests/golden/models)
root=$(cd "$(dirname "$0")/../../.." && pwd)
expect 2 "expected name=path" -- generate --model m --input i --output o --enable-lora --lora-modules sql
expect 2 "empty name or path" -- bench throughput --model m --enable-lora --lora-modules a=/x =/y
expect 2 "invalid value '0' for --max-loras" -- generate --model m --input i --output o --max-loras 0
expect 1 "needs --enable-lora" -- generate --model "$root/tests/models/tiny-llama" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" --lora-modules a="$root/tests/golden/models/lora-all"
expect 1 "tensor parallelism are not supported" -- generate --model "$root/tests/models/tiny-llama" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" --tensor-parallel-size 2 --enable-lora --lora-modules a="$root/tests/golden/models/lora-all" b="$root/tests/golden/models/lora-qv-rslora"
exit $fail
