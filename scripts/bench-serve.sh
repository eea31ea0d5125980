#!/usr/bin/env bash
# The HTTP serving benchmark (vLLM's `vllm bench serve`): `vesta serve` (router + one worker) on a
# model, then `vesta bench serve` at several request rates, then the server stopped.
#
# Sourced by scripts/gpu-run.sh, which calls
#     bench_serve_stage BIN_DIR MODEL_DIR WORK_DIR [extra `vesta serve` flags]
# (e.g. bench_serve_stage "$B/bin" /tmp/llama8b-config "$W" --backend cuda --load-format dummy);
# or standalone with the same arguments:
#     scripts/bench-serve.sh BIN_DIR MODEL_DIR WORK_DIR [flags]
# Environment: VESTA_SERVE_RATES ("4 16 inf"), VESTA_SERVE_PROMPTS ("200 400 500", one per rate),
# VESTA_SERVE_IN (512), VESTA_SERVE_OUT (256), VESTA_SERVE_PORT (8931).
# Results: WORK_DIR/serve_<rate>.json (vLLM's result fields), WORK_DIR/bench_serve.log (the
# printouts), WORK_DIR/serve.log (the server's log); a table on stdout.
#
# A model directory with config.json but no tokenizer (the --load-format dummy shape) gets a
# synthetic byte-level BPE tokenizer.json covering config.json's vocab_size: the router needs a
# tokenizer to detokenize the stream, and the prompts are token ids anyway, so the text is
# meaningless but every id decodes. No real tokenizer is changed: the file is only written where
# none exists.

# Writes DIR/tokenizer.json (+ tokenizer_config.json) for DIR/config.json's vocab_size.
bench_serve_dummy_tokenizer() {
    python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
cfg = json.load(open(os.path.join(d, "config.json")))
V = int(cfg["vocab_size"])
n_special = min(256, max(0, V - 512))
n_base = V - n_special
# GPT-2's byte <-> printable-character map (what the ByteLevel decoder inverts)
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
cs = bs[:]
k = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + k)
        k += 1
chars = [chr(c) for c in cs]
vocab = {}
for i, c in enumerate(chars):
    vocab[c] = i
# then every 2-character string, then 3-character strings, until n_base entries
def more():
    for a in chars:
        for b in chars:
            yield a + b
    for a in chars:
        for b in chars:
            for c in chars:
                yield a + b + c
gen = more()
while len(vocab) < n_base:
    vocab[next(gen)] = len(vocab)
added = []
for i in range(n_special):
    content = {0: "<|begin_of_text|>", 1: "<|end_of_text|>"}.get(i, f"<|reserved_special_token_{i}|>")
    added.append({"id": n_base + i, "content": content, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": None,
       "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                 "ignore_merges": False, "vocab": vocab, "merges": []}}
json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w"))
if n_special >= 2:
    json.dump({"bos_token": added[0]["content"], "eos_token": added[1]["content"]},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
print(f"[bench-serve] synthetic tokenizer for {V} ids written to {d}")
PY
}

# Polls GET /health until N live workers (or the server process dies, or T seconds pass).
bench_serve_wait() {
    local port=$1 n=$2 pid=$3 t=$4
    python3 - "$port" "$n" "$pid" "$t" <<'PY'
import json, os, sys, time, urllib.request
port, n, pid, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
deadline = time.time() + t
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("[bench-serve] vesta serve exited before it was ready")
    try:
        h = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2))
        if h["workers"]["live"] >= n:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.25)
sys.exit(f"[bench-serve] not ready after {t} s")
PY
}

bench_serve_stage() {
    local bin=$1 model=$2 work=$3
    shift 3
    local port=${VESTA_SERVE_PORT:-8931}
    local zport=$((port + 1))
    local in=${VESTA_SERVE_IN:-512} out=${VESTA_SERVE_OUT:-256}
    local rates prompts
    read -r -a rates <<<"${VESTA_SERVE_RATES:-4 16 inf}"
    read -r -a prompts <<<"${VESTA_SERVE_PROMPTS:-200 400 500}"
    mkdir -p "$work"
    if [ ! -e "$model/tokenizer.json" ] && [ -f "$model/config.json" ]; then
        bench_serve_dummy_tokenizer "$model" || return 1
    fi
    local t0=$SECONDS
    "$bin/vesta" serve --model "$model" --workers 1 --port "$port" --zmq-bind "tcp://127.0.0.1:$zport" \
        --max-model-len $((in + out)) "$@" >"$work/serve.log" 2>&1 &
    local pid=$!
    if ! bench_serve_wait "$port" 1 "$pid" 600; then
        tail -20 "$work/serve.log"
        kill -TERM "$pid" 2>/dev/null
        wait "$pid"
        return 1
    fi
    echo "[bench-serve] vesta serve ready in $((SECONDS - t0)) s: $*"
    local i rc=0
    # one seed per rate: the same prompts again would hit the prefix cache the earlier rate filled
    for i in "${!rates[@]}"; do
        local r=${rates[$i]} n=${prompts[$i]:-${prompts[-1]}}
        echo "-- vesta bench serve: rate $r, $n prompts, $in in -> $out out" | tee -a "$work/bench_serve.log"
        "$bin/vesta" bench serve --port "$port" --num-prompts "$n" --random-input-len "$in" \
            --random-output-len "$out" --ignore-eos --request-rate "$r" --seed $((i + 1)) \
            --save-result --result-filename "$work/serve_$r.json" >>"$work/bench_serve.log" 2>&1 || rc=1
    done
    python3 -c "import urllib.request as u; [print('[bench-serve] /metrics:', l) for l in u.urlopen('http://127.0.0.1:$port/metrics').read().decode().splitlines() if l.startswith('vesta:prefix_cache')]" 2>&1 | tee -a "$work/bench_serve.log"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    python3 - "$work" "${rates[@]}" <<'PY'
import json, os, sys
w = sys.argv[1]
print("| request rate | prompts | ok / failed | duration s | req/s | output tok/s | TTFT mean / p99 ms | TPOT mean / p99 ms | ITL p99 ms | E2EL mean ms |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in sys.argv[2:]:
    p = os.path.join(w, f"serve_{r}.json")
    if not os.path.exists(p):
        print(f"| {r} | (no result) |")
        continue
    j = json.load(open(p))
    print(f"| {r} | {j['num_prompts']} | {j['completed']} / {j['failed']} | {j['duration']:.1f} | "
          f"{j['request_throughput']:.2f} | {j['output_throughput']:.0f} | {j['mean_ttft_ms']:.1f} / {j['p99_ttft_ms']:.1f} | "
          f"{j['mean_tpot_ms']:.2f} / {j['p99_tpot_ms']:.2f} | {j['p99_itl_ms']:.2f} | {j['mean_e2el_ms']:.0f} |")
PY
    return $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    if [ $# -lt 3 ]; then
        sed -n '2,21p' "$0"
        exit 2
    fi
    bench_serve_stage "$@"
fi
