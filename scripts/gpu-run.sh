#!/usr/bin/env bash
# GPU runs for the CUDA backend, in two halves:
#   scripts/gpu-run.sh build [TARGET..] here (no GPU needed): builds the CUDA binaries into
#                                       build-gpu/ and fetches the Debian runtime libraries the
#                                       binaries link into .gpu/debs (both git-ignored)
#   scripts/gpu-run.sh build-portable   the portable path alone (compute_80 PTX) into build-gpu80,
#                                       packed as .gpu/bins80.tar.xz (stage portable)
#   scripts/gpu-run.sh build-base DIR [TARGET..]  vesta and kernel_bench (or the TARGETs) of another
#                                       checkout (an earlier commit's worktree) into DIR/build,
#                                       packed as .gpu/base.tar.xz (stages base, baseab, attnab, serveab)
#   scripts/gpu-run.sh run STAGE...     on the GPU machine (through the device tool, carrying
#                                       build-gpu/bin and .gpu): STAGE is kernels, e2e, bench, peer,
#                                       serve, tune, small, e2e8b, profile, cache, decode, ncu, invariant, invariant-real,
#                                       invariant-bench, tp2 (two GPUs), stream, tma, gemm, smalln, b1ab, b3ab, b3prof, gemmprof, portable, pdl, prefill, b4probe,
#                                       b4attn, prefillprof, attncheck, kbbaseline, final, base, baseab, tiles, ref320, tp4check, tp4lat, tp70, tp4b1, tp4prof, tp4nccl, tpar, tp70lat, tpcut, tp4hf (four GPUs), b4, pdlall, rows, tp1, gemmtests, attnab, same320, serveab, tp2pdl, serveenv, wide, widekb, wideab, b4trace, b1trace, overlap, green, b1budget, v7prof, addrab, addrbench, v7var, v7swz, v7rule, v5loop, devpart, devbench, alias, tp2wide, widencu, wg, wgall, resadd, resbench, partgemm, lora (each described at its
#                                       function below) or all (kernels e2e bench)
# Logs go to $OUT (the device tool's folder; ./out when unset); a short table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${VESTA_GPU_BUILD:-build-gpu}
OUT=${OUT:-$ROOT/out}
P80=build-gpu80 # the portable build (build-portable)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1

# build [DIR ARCH PACK TARGETS...]: by default the H100 machine code only (no PTX) for the carried
# binaries, which must fit in 64 MiB; build-portable: the portable path alone (compute_80 PTX, which
# the driver compiles for the GPU it finds) for the tests and vesta, into build-gpu80.
build() {
    local dir=${1:-$B} arch=${2:-90a-real} pack=${3:-.gpu/bins.tar.xz}
    shift 3 2>/dev/null
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null || exit 1
    local targets="${*:-test_kernels kernel_bench test_gemm_stream bench_gemm_stream vesta vesta-router vesta-worker vesta-tp-rank test_tp_p2p}"
    cmake --build "$dir" -j2 --target $targets || exit 1
    strip "$dir"/bin/* 2>/dev/null # the device calls carry at most 64 MiB
    mkdir -p .gpu/debs
    # Runtime libraries of our binaries that the GPU machine (Ubuntu, CUDA only) lacks.
    local need
    need=$(for f in "$dir"/bin/*; do ldd "$f" 2>/dev/null; done | awk '/=>/ {print $3}' | sort -u |
        grep -v -e cuda -e libcublas -e libcudart -e '^/lib/x86_64-linux-gnu/lib\(c\|m\|dl\|rt\|pthread\|gcc_s\|stdc++\)\.so' |
        while read -r lib; do { dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null; } | head -1 | cut -d: -f1; done |
        grep -v -x -e libc6 | sort -u) # never Debian's libc over the machine's own (another glibc)
    (cd .gpu/debs && for p in $need; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null 2>&1 || echo "could not fetch $p"; done)
    rm -f .gpu/debs/libc6_*.deb
    # The same libraries alone (no documentation), one xz stream: 12 MB against the packages' 17,
    # for calls whose carry is near the 64 MiB limit (carry .gpu/libs.tar.xz instead of .gpu/debs).
    rm -rf .gpu/debx && mkdir -p .gpu/debx && for f in .gpu/debs/*.deb; do dpkg -x "$f" .gpu/debx; done
    (cd .gpu/debx && find . -path '*lib/x86_64-linux-gnu*' \( -type f -o -type l \) -print0 |
        tar --null -T - -cf - | xz -T2 -9e -c >../libs.tar.xz) && rm -rf .gpu/debx
    # The binaries each hold the kernels' machine code (~77 MB in all); packed they are ~6 MB, which
    # leaves room under the 64 MiB per call for the repository and the runtime libraries.
    # only the targets: a folder also built for everything else holds many more binaries
    tar -C "$dir" -cf - $(for t in $targets; do echo "bin/$t"; done) | xz -T2 -9e -c >"$pack" # -9e: one dictionary across the binaries (half the size of -6)
    du -sh "$dir/bin" "$pack" .gpu/debs
    echo "carry: $pack .gpu/debs or .gpu/libs.tar.xz (and .gpu/smollm2-4l.gguf where room allows)"
}

setup_remote() {
    mkdir -p "$OUT" /tmp/deb
    if [ ! -x "$B/bin/vesta" ] && [ -f .gpu/bins.tar.xz ]; then
        mkdir -p "$B" && xz -dc .gpu/bins.tar.xz | tar -C "$B" -xf - || exit 1
    fi
    if [ ! -x "$P80/bin/vesta" ] && [ -f .gpu/bins80.tar.xz ]; then
        mkdir -p "$P80" && xz -dc .gpu/bins80.tar.xz | tar -C "$P80" -xf - || exit 1
    fi
    for f in .gpu/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /tmp/deb; done
    [ -f .gpu/libs.tar.xz ] && { xz -dc .gpu/libs.tar.xz | tar -C /tmp/deb -xf - || exit 1; }
    export LD_LIBRARY_PATH=/tmp/deb/usr/lib/x86_64-linux-gnu:/tmp/deb/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
        nproc; free -g | head -2; df -h /tmp | tail -1
        python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
        for f in "$B"/bin/*; do echo "$f"; ldd "$f" | grep "not found"; done
    } >"$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
}

summary=()
stage_kernels() {
    echo "== kernel tests =="
    timeout 240 "$B/bin/test_kernels" ${VESTA_KERNEL_TESTS:-all} 2>&1 | tee "$OUT/kernels.log"
    local rc=${PIPESTATUS[0]}
    summary+=("kernel tests: $(tail -1 "$OUT/kernels.log") (rc $rc)")
    if [ -z "${VESTA_SKIP_STREAM:-}" ]; then # VESTA_SKIP_STREAM: vk_gemm_stream (off by default) is not run
        echo "== vk_gemm_stream tests =="
        timeout 200 "$B/bin/test_gemm_stream" 2>&1 | tee "$OUT/gemm_stream_test.log" | tail -15
        rc=${PIPESTATUS[0]}
        summary+=("vk_gemm_stream tests: $(tail -1 "$OUT/gemm_stream_test.log") (rc $rc)")
    fi
    if [ -n "${VESTA_KERNEL_BENCH:-}" ]; then
        echo "== kernel bench =="
        timeout 240 "$B/bin/kernel_bench" "$OUT/kernel_bench.csv" 2>&1 | tee "$OUT/kernel_bench.log"
        [ -n "${VESTA_SKIP_STREAM:-}" ] && return
        echo "== small-n GEMM bench =="
        timeout 300 "$B/bin/bench_gemm_stream" 2>&1 | tee "$OUT/gemm_stream_bench.log"
    fi
}

V="$B/bin/vesta"
M8=/tmp/llama8b
SMALL=.gpu/smollm2-4l.gguf
W=/tmp/vesta-work
mkdir -p "$W"

# vesta generate, greedy, 32 tokens, top-20 logprobs: gen MODEL PROMPTS OUTNAME [engine flags]
gen() {
    local model=$1 prompts=$2 name=$3
    shift 3
    echo "-- vesta generate $name: $*" >>"$W/e2e.log"
    "$V" generate --backend cuda --model "$model" --input "$prompts" --output "$W/$name.jsonl" --temperature 0 \
        --max-tokens 32 --ignore-eos --logprobs 20 --no-progress "$@" >>"$W/e2e.log" 2>&1
    local rc=$?
    tail -1 "$W/e2e.log"
    return $rc
}
cmp_ref() { python3 bench/gpu/compare_e2e.py "$@" 2>&1 | tee -a "$W/e2e.log" | head -1; }

stage_e2e() {
    stage_small
    stage_e2e_8b
}

# The small real model is 38 MB: with the binaries, the runtime libraries and the repository it
# exceeds one call's 64 MiB, so it may come in two pieces over two calls to the same warm
# machine (.gpu/smollm2-4l.part1 in the first, .part2 in the second; ignored files stay there).
stage_small() {
    if [ ! -f "$SMALL" ] && [ -f "${SMALL%.gguf}.part1" ] && [ -f "${SMALL%.gguf}.part2" ]; then
        cat "${SMALL%.gguf}.part1" "${SMALL%.gguf}.part2" >"$SMALL"
    fi
    if [ ! -f "$SMALL" ]; then
        echo "== e2e: $SMALL not carried: small real model skipped =="
    else
    echo "== e2e: small real model (SmolLM2-135M, first 4 layers) =="
    local G=bench/gpu/golden/smollm2_4l_hf.json
    python3 -c "import json; [print(json.dumps({'prompt_token_ids': p['prompt_token_ids']})) for p in json.load(open('$G'))['prompts']]" >"$W/small_prompts.jsonl"
    gen "$SMALL" "$W/small_prompts.jsonl" small
    summary+=("$(cmp_ref "$G" "$W/small.jsonl" --label 'small real model vs HF (fp32 CPU golden)')")
    # 30 blocks of 16 tokens hold the longest sequence (332 tokens) but not all eight at once
    gen "$SMALL" "$W/small_prompts.jsonl" small_preempt --num-gpu-blocks-override 30 --max-model-len 480
    summary+=("$(cmp_ref --same "$W/small.jsonl" "$W/small_preempt.jsonl" --label 'small real model: preemption vs default')")
    gen "$SMALL" "$W/small_prompts.jsonl" small_pc_off --no-enable-prefix-caching
    summary+=("$(cmp_ref --same "$W/small.jsonl" "$W/small_pc_off.jsonl" --label 'small real model: prefix caching off vs on')")
    gen "$SMALL" "$W/small_prompts.jsonl" small_eager --enforce-eager
    summary+=("$(cmp_ref "$G" "$W/small_eager.jsonl" --label 'small real model --enforce-eager vs HF')")
    fi
}

stage_e2e_8b() {
    echo "== e2e: Llama-3-8B shape, random weights =="
    [ -f "$M8/hf_ref.json" ] || python3 bench/gpu/hf_e2e.py make "$M8" 2>&1 | tee "$W/hf.log" | grep '\[hf\]'
    local P="$M8/prompts.jsonl" R="$M8/hf_ref.json"
    cp "$R" "$W/"
    gen "$M8" "$P" llama --max-model-len 1536
    summary+=("$(cmp_ref "$R" "$W/llama.jsonl" --label 'llama8b vs HF bf16')")
    gen "$M8" "$P" llama_eager --max-model-len 1536 --enforce-eager
    summary+=("$(cmp_ref "$R" "$W/llama_eager.jsonl" --label 'llama8b --enforce-eager vs HF')")
    gen "$M8" "$P" llama_pc_on --max-model-len 1536 --max-num-seqs 2
    gen "$M8" "$P" llama_pc_off --max-model-len 1536 --max-num-seqs 2 --no-enable-prefix-caching
    summary+=("$(cmp_ref --same "$W/llama_pc_on.jsonl" "$W/llama_pc_off.jsonl" --label 'prefix caching on vs off')")
    summary+=("$(cmp_ref "$R" "$W/llama_pc_on.jsonl" --label 'llama8b prefix caching on vs HF')")
    # decode attention version 7 takes full batches only; forced here on the 8 prompts, against HF
    VESTA_DECODE_ATTENTION=7 gen "$M8" "$P" llama_v7 --max-model-len 1536
    summary+=("$(cmp_ref "$R" "$W/llama_v7.jsonl" --label 'llama8b, decode attention v7 forced, vs HF bf16')")
    gen "$M8" "$P" llama_preempt --max-model-len 1536 --num-gpu-blocks-override 100
    summary+=("$(cmp_ref "$R" "$W/llama_preempt.jsonl" --label 'llama8b 100 KV blocks (preemption) vs HF')")
    summary+=("$(cmp_ref --same "$W/llama.jsonl" "$W/llama_preempt.jsonl" --label 'preemption vs default')")
    grep -h "memory plan\|KV cache:\|captured\|preemptions\|weights" "$W/e2e.log" | sort | uniq -c | head -20
    [ -n "${VESTA_SKIP_TP1:-}" ] && return
    stage_tp1
}

# The NCCL tensor-parallel path at N = 1 (VESTA_TP_FORCE_REPLICA) against the plain backend: the
# small real model where carried, the 8B checkpoint with graphs and eager (stage e2e8b writes it).
stage_tp1() {
    echo "== e2e: NCCL path at N = 1 (VESTA_TP_FORCE_REPLICA) against the plain backend =="
    local tp=0
    if [ -f "$SMALL" ]; then
        sh tests/worker/tp/gpu_tp1_exact.sh "$V" "$SMALL" "$W/small_prompts.jsonl" >>"$W/tp1.log" 2>&1 || tp=1
    fi
    TP1_MODES="graphs eager" sh tests/worker/tp/gpu_tp1_exact.sh "$V" "$M8" "$M8/prompts.jsonl" --max-model-len 1536 \
        >>"$W/tp1.log" 2>&1 || tp=1
    grep -h "PASS\|FAIL" "$W/tp1.log"
    summary+=("NCCL TP=1 replica vs plain: $(grep -c '^PASS' "$W/tp1.log") PASS, $(grep -c '^FAIL' "$W/tp1.log") FAIL (rc $tp)")
}

# vesta bench MODE [flags]: logs and one JSON per run under $W. VESTA_BENCH_DUMMY=1: the same
# model shape with --load-format dummy (config.json only; no 16 GB checkpoint to write first, and
# the timings do not depend on the weights' values: EOS is ignored).
M8D=/tmp/llama8b-config
vb() {
    local name=$1
    shift
    local model=(--model "$M8")
    [ -n "${VESTA_BENCH_DUMMY:-}" ] && model=(--model "$M8D" --load-format dummy)
    echo "-- vesta bench $name: $* ${model[*]}" >>"$W/bench.log"
    timeout 300 "$V" bench "$@" "${model[@]}" --output-json "$W/bench_$name.json" >>"$W/bench.log" 2>&1
    grep -v "^cuda:" "$W/bench.log" | tail -2
}

stage_peer() {
    echo "== HF peer: generate() batch 128, same card =="
    local d=$M8
    if [ -n "${VESTA_BENCH_DUMMY:-}" ]; then
        d=$M8D
        [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    fi
    python3 bench/gpu/hf_e2e.py peer "$d" 2>&1 | grep '\[hf\]' | tee -a "$W/bench.log"
}

stage_bench() {
    if [ -n "${VESTA_BENCH_DUMMY:-}" ]; then
        [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    else
        [ -f "$M8/config.json" ] || python3 bench/gpu/hf_e2e.py make "$M8" 2>&1 | tee "$W/hf.log" | grep '\[hf\]'
    fi
    echo "== B1 offline throughput: 512 x (512 in -> 256 out) =="
    vb b1 throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
    echo "== B1 with vLLM's smaller defaults (GPUs under 70 GiB): 256 sequences, 8192 tokens per step =="
    vb b1_small throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024 \
        --max-num-seqs 256 --max-num-batched-tokens 8192
    echo "== B2 single stream: 128 in -> 512 out =="
    vb b2 latency --input-len 128 --output-len 512 --num-iters 3 --num-iters-warmup 1 --temperature 0
    echo "== B3 time to first token, 2048-token prompt =="
    vb b3 latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 --temperature 0
    echo "== B4 prefix caching, 4096-token shared document =="
    vb b4 prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
    python3 - "$W" <<'PY' | tee "$OUT/table.txt"
import glob, json, os, sys
w = sys.argv[1]
def j(n):
    p = os.path.join(w, f"bench_{n}.json")
    return json.load(open(p)) if os.path.exists(p) else {}
b1, b2, b3, b4, b1w = j("b1"), j("b2"), j("b3"), j("b4"), j("b1_small")
print("| bench | measured | goal |")
print("| --- | --- | --- |")
print(f"| B1 offline throughput (output tok/s) | {b1.get('output_tokens_per_s', float('nan')):.0f} | >= 12000 |")
print(f"| B1 with 256 seqs / 8192 tokens per step | {b1w.get('output_tokens_per_s', float('nan')):.0f} | >= 12000 |")
for n, b in (("B1", b1), ("B1 256 seqs", b1w)):
    st = b.get("steps") or 1
    print(f"| {n} step phases (ms/step: schedule / execute / update) | "
          f"{1e3 * b.get('time_schedule_s', 0) / st:.2f} / {1e3 * b.get('time_execute_s', 0) / st:.2f} / "
          f"{1e3 * b.get('time_update_s', 0) / st:.2f} | |")
print(f"| B2 single stream (tok/s) | {b2.get('decode_tokens_per_s', float('nan')):.1f} | >= 165 |")
print(f"| B3 TTFT 2048 tokens (ms) | {b3.get('ttft_ms', float('nan')):.1f} | <= 55 |")
print(f"| B4 second/first TTFT | {100 * b4.get('second_over_first', float('nan')):.1f}% | <= 5% |")
print(f"| B5 start-up (s) | {b1.get('startup_s', float('nan')):.1f} | <= 20 |")
PY
}

. scripts/bench-serve.sh # defines bench_serve_stage
stage_serve() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    echo "== HTTP serving: vesta serve (8B shape, dummy weights) + vesta bench serve, 512 in -> 256 out =="
    bench_serve_stage "$B/bin" "$M8D" "$W/serve" --backend cuda --load-format dummy | tee "$OUT/serve_table.txt"
}

# The A/B stages' workload: 320 prompts of 16-299 random token ids (fixed seed) into FILE.
prompts320() { python3 -c "import json, random; r = random.Random(1); [print(json.dumps({'prompt_token_ids': [r.randrange(128000) for _ in range(r.randrange(16, 300))]})) for i in range(320)]" >"$1"; }
# gen320 PROMPTS OUTPUT LOG [engine flags]: the 8B shape with dummy weights, 32 greedy tokens per
# prompt with their top-5 logprobs (compare_e2e.py --top5 / --same read them); environment
# assignments before the call apply to it.
gen320() {
    local prompts=$1 output=$2 log=$3
    shift 3
    timeout 240 "$V" generate --backend cuda --model "$M8D" --load-format dummy --input "$prompts" --output "$output" \
        --temperature 0 --max-tokens 32 --ignore-eos --logprobs 5 --no-progress --max-model-len 1024 "$@" >>"$log" 2>&1
}

# same_ab PROMPTS TAG LABEL [engine flags]: the base build (/tmp/vesta-base) and this one on the
# same prompts in one call (gen320), compared token by token and byte by byte (summary); with
# AB_RULE=--top5 by the top-5 rule instead (top5_ab).
same_ab() {
    local prompts=$1 tag=$2 label=$3 rule=${AB_RULE:---same}
    shift 3
    V=/tmp/vesta-base/bin/vesta gen320 "$prompts" "$W/${tag}_base.jsonl" "$W/$tag.log" "$@"
    gen320 "$prompts" "$W/${tag}_this.jsonl" "$W/$tag.log" "$@"
    summary+=("$(python3 bench/gpu/compare_e2e.py "$rule" "$W/${tag}_base.jsonl" "$W/${tag}_this.jsonl" \
        --label "$label" | tee -a "$W/$tag.log")")
    [ "$rule" = --same ] || return 0
    summary+=("  output files: $(cmp -s "$W/${tag}_base.jsonl" "$W/${tag}_this.jsonl" && echo byte-identical || echo differ)")
}
# top5_ab PROMPTS TAG LABEL [engine flags]: same_ab by the top-5 rule, for builds whose arithmetic
# differs.
top5_ab() { AB_RULE=--top5 same_ab "$@"; }

# vs_ref320 TAG: the 320 prompts with this build (into $W/TAG.jsonl, log $W/TAG.log) against an
# earlier build's tokens (.gpu/ref320.jsonl, carried) by the top-5 rule (summary).
vs_ref320() {
    local tag=$1
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    prompts320 "$W/${tag}_prompts.jsonl"
    gen320 "$W/${tag}_prompts.jsonl" "$W/$tag.jsonl" "$W/$tag.log"
    echo "generate: rc $?"
    [ -f .gpu/ref320.jsonl ] && summary+=("$(python3 bench/gpu/compare_e2e.py --top5 .gpu/ref320.jsonl "$W/$tag.jsonl" \
        --label '320 prompts, this build vs the reference build' | tee -a "$W/$tag.log")")
}

# pair320 RULE VAR TAG LABEL NAME_A:VALUE_A NAME_B:VALUE_B [engine flags]: the 320 prompts generated
# with VAR=VALUE_A and with VAR=VALUE_B (into $W/TAG_NAME.jsonl, log $W/TAG.log), compared by
# compare_e2e.py's RULE (--top5: the top-5 rule; --same: token for token, and the files byte for
# byte) into the summary.
pair320() {
    local rule=$1 var=$2 tag=$3 label=$4 a=$5 b=$6 v name val
    shift 6
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    prompts320 "$W/${tag}_prompts.jsonl"
    for v in "$a" "$b"; do
        IFS=: read -r name val <<<"$v"
        (export "$var=$val" && gen320 "$W/${tag}_prompts.jsonl" "$W/${tag}_$name.jsonl" "$W/$tag.log" "$@")
        echo "generate $name ($var=$val): rc $?"
    done
    local fa="$W/${tag}_${a%%:*}.jsonl" fb="$W/${tag}_${b%%:*}.jsonl"
    summary+=("$(python3 bench/gpu/compare_e2e.py "$rule" "$fa" "$fb" --label "$label" | tee -a "$W/$tag.log")")
    [ "$rule" = --same ] && summary+=("  output files (tokens and logprobs): $(cmp -s "$fa" "$fb" && echo byte-identical || echo differ)")
    return 0
}
# ab320 VAR TAG LABEL NAME_A:VALUE_A NAME_B:VALUE_B: pair320 by the top-5 rule at the default batch.
ab320() { pair320 --top5 "$@"; }

# Start-up GEMM tuning (VESTA_GEMM_TUNE) against cuBLAS's default picks: greedy outputs of 320
# prompts by the top-5 rule, then B1 and B4 with each, in the same call.
stage_tune() {
    ab320 VESTA_GEMM_TUNE ab "320 prompts x 32 greedy tokens, tuned vs plain" plain:0 tuned:2
    grep -h "GEMM tuning" "$W/ab.log" | tail -30
    local v
    for v in plain:0 tuned:1; do
        IFS=: read -r name tune <<<"$v"
        echo "== B1 / B4 $name (VESTA_GEMM_TUNE=$tune) =="
        VESTA_GEMM_TUNE=$tune vb "b1_$name" throughput --num-prompts 512 --input-len 512 --output-len 256 \
            --max-model-len 1024
        summary+=("B1 $name: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        VESTA_GEMM_TUNE=$tune vb "b4_$name" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
        summary+=("B4 $name: $(grep -h 'second TTFT' "$W/bench.log" | tail -1)")
    done
}

# The GEMM tuning cache: a first run times the products and writes the cache, later runs take
# the same picks from it (same greedy tokens, no timing).
stage_cache() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    prompts320 "$W/gc_prompts.jsonl"
    rm -f "$W/gemm.bin"
    local run
    for run in 1 2 3; do
        VESTA_GEMM_CACHE="$W/gemm.bin" gen320 "$W/gc_prompts.jsonl" "$W/gc_$run.jsonl" "$W/gc.log"
        echo "generate run $run: rc $? $(grep -h 'GEMM tuning:' "$W/gc.log" | tail -1)"
    done
    ls -l "$W/gemm.bin"
    summary+=("$(python3 bench/gpu/compare_e2e.py --same "$W/gc_1.jsonl" "$W/gc_2.jsonl" --label 'tuning cache: run 2 (cache) vs run 1 (timed)')")
    summary+=("$(python3 bench/gpu/compare_e2e.py --same "$W/gc_2.jsonl" "$W/gc_3.jsonl" --label 'tuning cache: run 3 vs run 2 (both from the cache)')")
}

# Where the device time goes (VESTA_PROFILE=1: an event after every operation of an eager step;
# --enforce-eager runs the same kernels as the graphs): B1 and B2.
stage_profile() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    echo "== B1, eager, profiled =="
    VESTA_PROFILE=1 vb b1_profile throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024 \
        --enforce-eager
    awk '/^-- vesta bench b1_profile/ {f = 1} /^-- vesta bench b1_eager/ {f = 0} f && /cuda: profile/' "$W/bench.log" |
        tee "$W/profile_b1.txt"
    echo "== B1, eager, not profiled (the events' own cost) =="
    vb b1_eager throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024 --enforce-eager
    echo "== B2, eager, profiled =="
    VESTA_PROFILE=1 vb b2_profile latency --input-len 128 --output-len 512 --num-iters 1 --num-iters-warmup 1 \
        --temperature 0 --enforce-eager
    awk '/^-- vesta bench b2_profile/ {f = 1} f && /cuda: profile/' "$W/bench.log" | tee "$W/profile_b2.txt"
}

# Batch-invariant mode (--batch-invariant): the same greedy tokens, bit for bit, whatever the
# batch, the chunking, preemption or graphs vs eager. Stage invariant: the kernel test and 320
# prompts of the 8B shape (dummy weights: near-ties everywhere); invariant-real: the small real
# model (where carried) and the saved 8B checkpoint, against HF too; invariant-bench: what it costs
# (B1-B4 beside the default, same call).
stage_invariant() {
    echo "== batch-invariant attention (kernel test) =="
    timeout 120 "$B/bin/test_kernels" invariant 2>&1 | tee "$OUT/invariant_kernels.log" | grep -v "^seed\|^device"
    summary+=("batch-invariant attention kernel test: $(tail -1 "$OUT/invariant_kernels.log")")
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    prompts320 "$W/bi_prompts.jsonl"
    local v
    for v in "ref:" "small_batches:--max-num-seqs 37 --max-num-batched-tokens 512" \
        "preempt:--num-gpu-blocks-override 400" "eager:--enforce-eager"; do
        local name=${v%%:*} flags=${v#*:}
        # shellcheck disable=SC2086
        gen320 "$W/bi_prompts.jsonl" "$W/bi_$name.jsonl" "$W/bi.log" --batch-invariant $flags
        echo "generate --batch-invariant $name ($flags): rc $? $(grep -h 'preemptions' "$W/bi.log" | tail -1)"
        [ "$name" = ref ] && continue
        summary+=("$(python3 bench/gpu/compare_e2e.py --same "$W/bi_ref.jsonl" "$W/bi_$name.jsonl" \
            --label "8B dummy, 320 prompts, --batch-invariant: $name vs default" | tee -a "$W/bi.log")")
    done
    grep -h "batch-invariant" "$W/bi.log" | sort | uniq -c
}

stage_invariant_real() {
    if [ -f "$SMALL" ] || [ -f "${SMALL%.gguf}.part2" ]; then
        [ -f "$SMALL" ] || cat "${SMALL%.gguf}.part1" "${SMALL%.gguf}.part2" >"$SMALL"
        local G=bench/gpu/golden/smollm2_4l_hf.json
        python3 -c "import json; [print(json.dumps({'prompt_token_ids': p['prompt_token_ids']})) for p in json.load(open('$G'))['prompts']]" >"$W/small_prompts.jsonl"
        gen "$SMALL" "$W/small_prompts.jsonl" small_bi --batch-invariant
        summary+=("$(cmp_ref "$G" "$W/small_bi.jsonl" --label 'small real model --batch-invariant vs HF')")
        gen "$SMALL" "$W/small_prompts.jsonl" small_bi_preempt --batch-invariant --num-gpu-blocks-override 30 \
            --max-model-len 480
        summary+=("$(cmp_ref --same "$W/small_bi.jsonl" "$W/small_bi_preempt.jsonl" --label 'small real model --batch-invariant: preemption vs default')")
        gen "$SMALL" "$W/small_prompts.jsonl" small_bi_seq1 --batch-invariant --max-num-seqs 1
        summary+=("$(cmp_ref --same "$W/small_bi.jsonl" "$W/small_bi_seq1.jsonl" --label 'small real model --batch-invariant: one sequence at a time vs default')")
    fi
    echo "== batch-invariant: the saved 8B-shaped checkpoint =="
    [ -f "$M8/hf_ref.json" ] || python3 bench/gpu/hf_e2e.py make "$M8" 2>&1 | tee "$W/hf.log" | grep '\[hf\]'
    local P="$M8/prompts.jsonl" R="$M8/hf_ref.json"
    gen "$M8" "$P" llama_bi --max-model-len 1536 --batch-invariant
    summary+=("$(cmp_ref "$R" "$W/llama_bi.jsonl" --label 'llama8b --batch-invariant vs HF bf16')")
    gen "$M8" "$P" llama_bi_preempt --max-model-len 1536 --num-gpu-blocks-override 100 --batch-invariant
    summary+=("$(cmp_ref --same "$W/llama_bi.jsonl" "$W/llama_bi_preempt.jsonl" --label 'llama8b --batch-invariant: preemption vs default')")
    gen "$M8" "$P" llama_bi_chunk --max-model-len 1536 --max-num-batched-tokens 128 --batch-invariant
    summary+=("$(cmp_ref --same "$W/llama_bi.jsonl" "$W/llama_bi_chunk.jsonl" --label 'llama8b --batch-invariant: 128-token chunks vs default')")
}

stage_invariant_bench() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1 v
    for v in "default:" "invariant:--batch-invariant"; do
        local name=${v%%:*} flags=${v#*:}
        echo "== B1 / B2, $name =="
        # shellcheck disable=SC2086
        vb "b1_$name" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024 $flags
        summary+=("B1 $name: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        # shellcheck disable=SC2086
        vb "b2_$name" latency --input-len 128 --output-len 512 --num-iters 2 --num-iters-warmup 1 --temperature 0 $flags
        summary+=("B2 $name: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        # shellcheck disable=SC2086
        vb "b3_$name" latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 --temperature 0 $flags
        summary+=("B3 $name: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        # shellcheck disable=SC2086
        vb "b4_$name" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0 $flags
        summary+=("B4 $name: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
    done
}

# Decode-attention versions side by side (VESTA_DECODE_ATTENTION; 0 = production: version 7 for
# batches that fill the GPU): 320 prompts' greedy tokens by the top-5 rule with version 5 forced
# and with production, then B1 with each, twice, interleaved, in the same call.
stage_decode() {
    ab320 VESTA_DECODE_ATTENTION dec "320 prompts x 32 greedy tokens, production (v7) vs v5" v5:5 prod:0
    local v
    local VESTA_BENCH_DUMMY=1 i
    for i in 1 2; do
        for v in v5:5 prod:0; do
            IFS=: read -r name ver <<<"$v"
            echo "== B1 $name (VESTA_DECODE_ATTENTION=$ver), round $i =="
            VESTA_DECODE_ATTENTION=$ver vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 \
                --output-len 256 --max-model-len 1024
            summary+=("B1 $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}

# The weight-streaming GEMM (vk_gemm_stream, VESTA_GEMM_STREAM; 0 = cuBLAS / vk_gemv as before):
# its tests and bench (isolated products, variants, the whole step back to back), then 320 prompts
# at 48 sequences per step (decode steps of <= 48 rows: the products it takes) by the top-5 rule
# against cuBLAS, pdl on vs off (must be identical), and B4 and decode at 32 sequences with each
# setting (B2 too for the version-2 kernel, which also takes n <= 4 in mode 2), interleaved, in
# the same call. gemm_ab NAME MODE: the kernel of VESTA_GEMM_STREAM=MODE against cuBLAS; it stops
# after the tests when they fail.
gemm_kernels() { # the GEMM tests and bench; fails when the tests do
    echo "== gemm tests =="
    timeout 200 "$B/bin/test_gemm_stream" 2>&1 | tee "$OUT/gemm_stream_test.log" | grep -v "^  \(bad\|stream\)" | tail -25
    local trc=${PIPESTATUS[0]}
    summary+=("gemm tests: $(tail -1 "$OUT/gemm_stream_test.log") (rc $trc)")
    echo "== gemm bench =="
    timeout 300 "$B/bin/bench_gemm_stream" 2>&1 | tee "$OUT/gemm_stream_bench.log"
    summary+=("gemm bench: $(tail -1 "$OUT/gemm_stream_bench.log")")
    [ "$trc" = 0 ]
}
gemm_ab() {
    local kname=$1 mode=$2
    gemm_kernels || return
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    prompts320 "$W/gs_prompts.jsonl"
    local v name val
    for v in cublas:0:1 "$kname:$mode:1" nopdl:$mode:0; do
        IFS=: read -r name val pdl <<<"$v"
        VESTA_GEMM_STREAM=$val VESTA_PDL=$pdl gen320 "$W/gs_prompts.jsonl" "$W/gs_$name.jsonl" "$W/gs.log" \
            --max-num-seqs 48
        echo "generate $name (VESTA_GEMM_STREAM=$val VESTA_PDL=$pdl): rc $?"
    done
    summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/gs_cublas.jsonl" "$W/gs_$kname.jsonl" \
        --label "320 prompts at 48 seqs, $kname vs cuBLAS" | tee -a "$W/gs.log")")
    summary+=("$(python3 bench/gpu/compare_e2e.py --same "$W/gs_$kname.jsonl" "$W/gs_nopdl.jsonl" \
        --label "320 prompts at 48 seqs, $kname pdl on vs off" | tee -a "$W/gs.log")")
    local VESTA_BENCH_DUMMY=1 i
    for i in 1 2; do
        for v in cublas:0 "$kname:$mode" all:2; do
            IFS=: read -r name val <<<"$v"
            [ "$name" = all ] && [ "$mode" != 1 ] && continue
            echo "== round $i: $name (VESTA_GEMM_STREAM=$val) =="
            if [ "$mode" = 1 ]; then
                VESTA_GEMM_STREAM=$val vb "b2_${name}_$i" latency --input-len 128 --output-len 512 --num-iters 3 \
                    --num-iters-warmup 1 --temperature 0
                summary+=("B2 $name round $i: $(grep -h 'tokens/s decode' "$W/bench.log" | tail -1)")
            fi
            [ "$name" = all ] && continue
            VESTA_GEMM_STREAM=$val vb "b4_${name}_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 \
                --temperature 0
            summary+=("B4 $name round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
            VESTA_GEMM_STREAM=$val vb "d32_${name}_$i" throughput --num-prompts 128 --input-len 512 --output-len 256 \
                --max-model-len 1024 --max-num-seqs 32
            summary+=("decode at 32 seqs $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}
stage_stream() { gemm_ab stream 1; }
# Version 3 (TMA + wgmma, VESTA_GEMM_STREAM=3) the same way.
stage_tma() { gemm_ab tma 3; }
stage_gemm() { gemm_kernels; } # the GEMM tests and bench alone
# B1 with the products of 5-16 rows on cuBLAS (VESTA_GEMM_STREAM=0) and as the default has them
# (version 3), interleaved, two rounds.
stage_b1ab() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1 i v name val
    for i in 1 2; do
        for v in cublas:0 default:; do
            IFS=: read -r name val <<<"$v"
            VESTA_GEMM_STREAM=$val vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 --output-len 256 \
                --max-model-len 1024
            summary+=("B1 $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}
# B3 on both kinds of weights: b3_weights KIND NAME, KIND real (the checkpoint: transformers'
# random init, read from disk) or dummy (--load-format dummy, vk_fill_random).
b3_weights() {
    [ -f "$M8/config.json" ] || python3 bench/gpu/hf_e2e.py make "$M8" 2>&1 | tee "$W/hf.log" | grep '\[hf\]'
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=
    [ "$1" = dummy ] && VESTA_BENCH_DUMMY=1
    vb "$2" latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 --temperature 0
    summary+=("B3 $2: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
}
# The same kernels on other data: B3 with each kind of weights, interleaved, two rounds.
stage_b3ab() {
    local i d
    for i in 1 2; do
        for d in real dummy; do b3_weights "$d" "b3_${d}_$i"; done
    done
}
# Where B3's time goes with each kind of weights: VESTA_PROFILE=1 (an event after every operation
# of the eager steps; the per-class table goes to bench.log at exit), checkpoint then dummy.
stage_b3prof() {
    local VESTA_PROFILE=1
    export VESTA_PROFILE
    b3_weights real b3prof_real
    b3_weights dummy b3prof_dummy
    sed -n '/b3prof_real/,$p' "$W/bench.log" | grep -v "^cuda: GEMM\\|^Start-up" | tail -60
}
# decode_at SEQS PROMPTS TAG [VAR=VALUE...]: PROMPTS requests of 512 -> 128 tokens at --max-num-seqs
# SEQS (the caller's model choice, VESTA_BENCH_DUMMY), with the environment assignments for this
# run only; its throughput line into the summary.
decode_at() {
    local s=$1 n=$2 tag=$3
    shift 3
    (if [ $# -gt 0 ]; then export "$@"; fi
     vb "d${s}_$tag" throughput --num-prompts "$n" --input-len 512 --output-len 128 --max-model-len 1024 \
        --max-num-seqs "$s")
    summary+=("decode at $s seqs $tag: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
}

# Decode at 8 and 16 sequences (64 requests, 512 in -> 128 out) with cuBLAS (VESTA_GEMM_STREAM=0)
# and with vk_gemm_stream's version 3 (3), interleaved, two rounds.
stage_smalln() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1 i s v name val
    for i in 1 2; do
        for s in 8 16; do
            for v in cublas:0 tma:3; do
                IFS=: read -r name val <<<"$v"
                decode_at "$s" 64 "${name}_$i" VESTA_GEMM_STREAM="$val"
            done
        done
    done
}

# Programmatic dependent launch of the small-n products alone (VESTA_PDL=1) against none (0;
# vk_gemv at n <= 4): the gemv tests, the GEMM bench (its whole-step section has vk_gemv with and
# without pdl), 320 prompts at 4 sequences per step with pdl on and off (must be identical), B2
# with each, interleaved; then B4 profiled step by step (VESTA_PROFILE=2: where the second
# request's time goes).
stage_pdl() {
    echo "== gemv tests =="
    timeout 120 "$B/bin/test_kernels" gemv 2>&1 | tail -3
    echo "== gemm bench =="
    timeout 300 "$B/bin/bench_gemm_stream" 2>&1 | tee "$OUT/gemm_pdl_bench.log" | sed -n '/whole step back/,$p'
    pair320 --same VESTA_PDL pdl '320 prompts at 4 seqs, pdl on vs off' pdl:1 nopdl:0 --max-num-seqs 4
    local v name val i VESTA_BENCH_DUMMY=1
    for i in 1 2; do
        for v in nopdl:0 pdl:1; do
            IFS=: read -r name val <<<"$v"
            VESTA_PDL=$val vb "b2_${name}_$i" latency --input-len 128 --output-len 512 --num-iters 3 \
                --num-iters-warmup 1 --temperature 0
            summary+=("B2 $name round $i: $(grep -h 'tokens/s decode' "$W/bench.log" | tail -1)")
        done
    done
    VESTA_PROFILE=2 vb b4_profile prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
    grep -h "profile step\|^Prefix caching" "$W/bench.log" | tail -12 | tee "$W/profile_b4.txt"
}

# small_rows_round TAG ENV...: B2, B4 and decode at 8 and 32 sequences with the environment
# assignments ENV (summary lines tagged TAG).
small_rows_round() {
    local tag=$1
    shift
    (export "$@" && vb "b2_$tag" latency --input-len 128 --output-len 512 --num-iters 3 --num-iters-warmup 1 \
        --temperature 0)
    summary+=("B2 $tag: $(grep -h 'tokens/s decode' "$W/bench.log" | tail -1)")
    (export "$@" && vb "b4_$tag" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0)
    summary+=("B4 $tag: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
    local s
    for s in 8 32; do
        decode_at "$s" 64 "$tag" "$@"
    done
}

# Programmatic dependent launch of every kernel of a step (VESTA_PDL=2, the default) against the
# products alone (1): the kernel tests that chain them (test_kernels pdl, attention), 320 prompts
# at the default batch and at 4 sequences per step with each (must be identical), then B2, B4 and
# decode at 8 and 32 sequences interleaved over two rounds, and B1 with each.
stage_pdlall() {
    echo "== kernel tests: pdl chains, attention =="
    timeout 200 "$B/bin/test_kernels" pdl 2>&1 | tee "$OUT/kernels_pdl.log" | grep -v "^attention"
    summary+=("kernel tests pdl: $(tail -1 "$OUT/kernels_pdl.log")")
    timeout 200 "$B/bin/test_kernels" attention 2>&1 | tee "$OUT/kernels_attention.log" | tail -2
    summary+=("kernel tests attention: $(tail -1 "$OUT/kernels_attention.log")")
    local v name val i seqs
    for seqs in 1024 4; do
        pair320 --same VESTA_PDL "pa$seqs" "320 prompts at up to $seqs seqs, every kernel pdl vs the products only" \
            prod:1 all:2 --max-num-seqs "$seqs"
    done
    local VESTA_BENCH_DUMMY=1
    for i in 1 2; do
        small_rows_round "prod_$i" VESTA_PDL=1
        small_rows_round "all_$i" VESTA_PDL=2
    done
    for v in prod:1 all:2; do
        IFS=: read -r name val <<<"$v"
        VESTA_PDL=$val vb "b1_$name" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
        summary+=("B1 $name: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
    done
}

# A prefill-attention change that must not move any bit, against the previous build
# (.gpu/base.tar.xz) and that build's outputs (.gpu/ref320b.jsonl: vs_ref320's 320 prompts from
# it): the attention and pdl tests, kernel_bench's prefill rows of both builds, the 320 prompts
# compared token by token and byte by byte, then B4, B3 and B1 of both, interleaved, two rounds.
stage_attnab() {
    base_unpack || return
    timeout 200 "$B/bin/test_kernels" attention 2>&1 | tee "$OUT/kernels_attention.log" | tail -1
    summary+=("kernel tests attention: $(tail -1 "$OUT/kernels_attention.log")")
    timeout 100 "$B/bin/test_kernels" pdl 2>&1 | tail -1
    ab_kb_prefill
    prompts320 "$W/ab_prompts.jsonl"
    gen320 "$W/ab_prompts.jsonl" "$W/ab_this.jsonl" "$W/ab.log"
    summary+=("$(python3 bench/gpu/compare_e2e.py --same .gpu/ref320b.jsonl "$W/ab_this.jsonl" \
        --label '320 prompts, this build vs the previous build' | tee -a "$W/ab.log")")
    summary+=("  output files: $(cmp -s .gpu/ref320b.jsonl "$W/ab_this.jsonl" && echo byte-identical || echo differ)")
    ab_b4_b3_b1
}

# kernel_bench's prefill rows of the base build (/tmp/vesta-base) and this one, interleaved, two
# rounds; B4's and B3's attention rows into the summary.
ab_kb_prefill() {
    local i v name bin
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin/kernel_bench this:"$B/bin/kernel_bench"; do
            IFS=: read -r name bin <<<"$v"
            VESTA_KB_PREFILL=1 timeout 200 "$bin" "$OUT/kb_prefill_${name}_$i.csv" >"$OUT/kb_prefill_${name}_$i.log" 2>&1
            summary+=("$(grep -h 'prefix-hit-v2 seqs=1 q=32 ctx=4128 per KV group' "$OUT/kb_prefill_${name}_$i.log" |
                head -1 | sed "s/^/kb $name round $i: /")")
            summary+=("$(grep -h 'prefill-v2 seqs=1 q=2048 ctx=2048 per KV group longest' "$OUT/kb_prefill_${name}_$i.log" |
                tail -1 | sed "s/^/kb $name round $i: /")")
        done
    done
}
# B4, B3 and B1 of the base build and this one (dummy weights), interleaved, two rounds.
ab_b4_b3_b1() {
    local VESTA_BENCH_DUMMY=1 i v name bin
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
            IFS=: read -r name bin <<<"$v"
            V=$bin vb "b4_${name}_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
            summary+=("B4 $name round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
            V=$bin vb "b3_${name}_$i" latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 \
                --temperature 0
            summary+=("B3 $name round $i: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
            V=$bin vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
            summary+=("B1 $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}

# b4_with VAR VALUE NAME ROUND [flags]: B4 (dummy weights) with VAR=VALUE, into the summary as "B4
# NAME round ROUND".
b4_with() {
    (export "$1=$2" VESTA_BENCH_DUMMY=1 && vb "b4_$3_$4" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 \
        --temperature 0 "${@:5}")
    summary+=("B4 $3 round $4: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
}
# b4_ab VAR NAME_A:VALUE_A NAME_B:VALUE_B [flags]: b4_with for each, interleaved, two rounds.
b4_ab() {
    local var=$1 a=$2 b=$3 i v name val
    shift 3
    for i in 1 2; do
        for v in "$a" "$b"; do
            IFS=: read -r name val <<<"$v"
            b4_with "$var" "$val" "$name" "$i" "$@"
        done
    done
}
# doc_top5 TAG LOG LABEL NAME...: $W/TAG_wide.jsonl against each $W/TAG_NAME.jsonl by the top-5 rule.
doc_top5() {
    local tag=$1 log=$2 label=$3 v
    shift 3
    for v in "$@"; do
        summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/${tag}_$v.jsonl" "$W/${tag}_wide.jsonl" \
            --label "$label: wide tiles vs $v" | tee -a "$log")")
    done
}
# Wide prefill tiles (VESTA_PREFILL_WIDE): the kernel tests (attention with wide tiles against the
# CPU reference and with pdl, the pdl chains with both tilings, the tile lists), the greedy tokens
# of 12 prompts sharing a 4,096-token document (one at a time: 32-token prefix-cache hits) with
# wide tiles against without them and against no prefix caching, by the top-5 rule, then B4 with
# and without them, interleaved, two rounds.
# gendoc OUTPUT LOG [engine flags]: docprompts' 12 prompts ($W/doc_prompts.jsonl), one at a time, 32
# greedy tokens each with their top-5 logprobs (the 8B shape, dummy weights).
gendoc() {
    local out=$1 log=$2
    shift 2
    timeout 240 "$V" generate --backend cuda --model "$M8D" --load-format dummy --input "$W/doc_prompts.jsonl" \
        --output "$out" --temperature 0 --max-tokens 32 --ignore-eos --logprobs 5 --no-progress --max-model-len 4200 \
        --max-num-seqs 1 "$@" >>"$log" 2>&1
}
docprompts() { python3 -c "import json, random; r = random.Random(2); d = [r.randrange(128000) for _ in range(4096)]; [print(json.dumps({'prompt_token_ids': d + [r.randrange(128000) for _ in range(32)]})) for i in range(12)]" >"$1"; }
# wide_kernel_tests PATTERN: test_kernels attention, pdl and tiles into the summary, their lines
# matching PATTERN (and failures) printed.
wide_kernel_tests() {
    local t
    for t in attention pdl tiles; do
        timeout 300 "$B/bin/test_kernels" $t >"$OUT/kernels_$t.log" 2>&1
        summary+=("kernel tests $t: rc $? $(tail -1 "$OUT/kernels_$t.log")")
    done
    grep -h -e "$1" -e FAIL "$OUT/kernels_attention.log" "$OUT/kernels_pdl.log" | head -40
}
# wide_docs NAME:VALUE...: docprompts' 12 prompts with VESTA_PREFILL_WIDE=VALUE into
# $W/doc_NAME.jsonl (NAME nocache: without prefix caching).
wide_docs() {
    local v name val
    docprompts "$W/doc_prompts.jsonl"
    for v in "$@"; do
        IFS=: read -r name val <<<"$v"
        (export VESTA_PREFILL_WIDE=$val && gendoc "$W/doc_$name.jsonl" "$W/doc.log" \
            $([ "$name" = nocache ] && echo --no-enable-prefix-caching))
        summary+=("generate doc $name: rc $? $(grep -h 'prefix cache' "$W/doc.log" | tail -1)")
    done
}
stage_wide() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    wide_kernel_tests wide
    wide_docs wide:1 grouped:0 nocache:1
    doc_top5 doc "$W/doc.log" "12 prompts sharing a 4,096-token document" grouped nocache
    b4_ab VESTA_PREFILL_WIDE grouped:0 wide:1
}
# Wide tiles on wgmma (VESTA_PREFILL_WIDE=2, kernels/attention_prefill_wg.cu): the kernel tests
# (attention: both wide kernels against the CPU reference and with pdl; the pdl chains; the tile
# lists; vk_gemm_stream, whose wgmma wrappers moved to kernels/wgmma.cuh), kernel_bench's prefill
# rows (no wide tiles, mma.sync, wgmma, interleaved), the 12 document prompts on wgmma against
# mma.sync and against no prefix caching by the top-5 rule, then B4 with each, interleaved.
stage_wg() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    wide_kernel_tests wgmma
    if [ -x "$B/bin/test_gemm_stream" ]; then # (a cold call carries vesta and test_kernels only)
        timeout 200 "$B/bin/test_gemm_stream" >"$OUT/gemm_stream_test.log" 2>&1
        summary+=("vk_gemm_stream tests: rc $? $(tail -1 "$OUT/gemm_stream_test.log")")
    fi
    [ -x "$B/bin/kernel_bench" ] && stage_widekb
    wide_docs wide:2 mma:1 nocache:2
    doc_top5 doc "$W/doc.log" "12 prompts sharing a 4,096-token document (wide: wgmma)" mma nocache
    b4_ab VESTA_PREFILL_WIDE mma:1 wgmma:2
}
# ab_env_b4_b3_b1 VAR NAME_A:VALUE_A NAME_B:VALUE_B: B4, B3 and B1 (dummy weights) with VAR=VALUE_A
# and with VAR=VALUE_B, interleaved, two rounds, into the summary.
ab_env_b4_b3_b1() {
    local var=$1 a=$2 b=$3 i v name val
    for i in 1 2; do
        for v in "$a" "$b"; do
            IFS=: read -r name val <<<"$v"
            (export "$var=$val" VESTA_BENCH_DUMMY=1 &&
                vb "b4_${name}_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0)
            summary+=("B4 $name round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
            (export "$var=$val" VESTA_BENCH_DUMMY=1 &&
                vb "b3_${name}_$i" latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 \
                    --temperature 0)
            summary+=("B3 $name round $i: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
            (export "$var=$val" VESTA_BENCH_DUMMY=1 &&
                vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024)
            summary+=("B1 $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}
# Wide tiles on wgmma for every step with prefill rows (VESTA_PREFILL_WIDE=2, the default since
# session 13) against session 12's choice (1: 64-row tiles for whole prompts, mma.sync wide tiles
# where vk_prefill_wide picks them): the attention kernel tests, the 320 prompts by the top-5 rule,
# then B4, B3 and B1 with each, interleaved, two rounds.
stage_wgall() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    timeout 300 "$B/bin/test_kernels" attention >"$OUT/kernels_attention.log" 2>&1
    summary+=("kernel tests attention: rc $? $(tail -1 "$OUT/kernels_attention.log")")
    pair320 --top5 VESTA_PREFILL_WIDE wgall "320 prompts, wgmma wide tiles everywhere (2) vs 1" mma:1 wgmma:2
    ab_env_b4_b3_b1 VESTA_PREFILL_WIDE mma:1 wgmma:2
}
# Nsight Compute on one wide-tile attention launch of B4's second request (replayed alone, so the
# wait for its predecessor is not in it): throughput, warp stalls, scheduler, occupancy, memory.
stage_widencu() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local ncu=/usr/local/cuda/bin/ncu
    [ -x "$ncu" ] || ncu=ncu
    # VESTA_NCU_KERNEL: another kernel's name (regex), VESTA_NCU_SECTIONS: more --section flags
    timeout 200 "$ncu" --kernel-name-base mangled -k "regex:${VESTA_NCU_KERNEL:-prefill_mma_kernel.*Li8ELi5E}" \
        --launch-skip 5 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
        --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis ${VESTA_NCU_SECTIONS:-} "$V" bench prefix --model "$M8D" --load-format dummy \
        --prefix-len 4096 --num-iters 1 --num-iters-warmup 0 --temperature 0 >"$OUT/ncu_wide.txt" 2>&1
    summary+=("ncu wide: rc $? ($(grep -c 'Section: GPU Speed Of Light' "$OUT/ncu_wide.txt") kernel reports)")
}
# Wide prefill tiles under tensor parallelism (two GPUs: 4 KV heads a rank; the carry needs
# vesta-tp-rank beside vesta): the 12 document prompts at TP=1 and at TP=2 with and without wide
# tiles, by the top-5 rule, then B4 at TP=2 with each, interleaved, two rounds.
stage_tp2wide() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    docprompts "$W/doc_prompts.jsonl"
    local v name tp val
    for v in tp1:1:1 wide:2:1 grouped:2:0; do
        IFS=: read -r name tp val <<<"$v"
        (export VESTA_PREFILL_WIDE=$val && gendoc "$W/tpdoc_$name.jsonl" "$W/tpdoc.log" --tensor-parallel-size "$tp")
        summary+=("generate doc $name (TP=$tp, VESTA_PREFILL_WIDE=$val): rc $?")
    done
    doc_top5 tpdoc "$W/tpdoc.log" "12 document prompts at TP=2 (TP=1: tp1)" tp1 grouped
    b4_ab VESTA_PREFILL_WIDE tp2_grouped:0 tp2_wide:1 --tensor-parallel-size 2
}
# kernel_bench's prefill rows: wide tiles against grouped ones (interleaved there, two rounds).
stage_widekb() {
    VESTA_KB_PREFILL=1 timeout 200 "$B/bin/kernel_bench" "$OUT/kb_prefill.csv" >"$OUT/kb_prefill.log" 2>&1
    summary+=("kernel_bench prefill rows: rc $?" "$(grep -h 'longest-first' "$OUT/kb_prefill.log" | grep prefix-hit)")
}
# A kernel trace of B4 (one iteration after one warm-up, dummy weights): the second request's step
# kernel by kernel, with the time each adds to the step (bench/gpu/trace_summary.py). Nsight
# Systems where the machine has it, else bench/gpu/cupti_trace.c (carry build-gpu/bin/
# libvesta_cupti_trace.so; CUPTI from the CUDA toolkit or the Python packages).
# traced CSV LOG CMD...: runs CMD with every kernel's start and end recorded into CSV (Nsight
# Systems where the machine has it, else bench/gpu/cupti_trace.c through LD_PRELOAD); the command's
# output goes to LOG. Fails (into the summary) without either.
traced() {
    local csv=$1 log=$2 nsys=/usr/local/cuda/bin/nsys cupti
    shift 2
    [ -x "$nsys" ] || nsys=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
    if [ -n "$nsys" ] && [ -x "$nsys" ]; then
        timeout 300 "$nsys" profile -t cuda -o "${csv%.csv}" --force-overwrite true "$@" >"$log" 2>&1
        timeout 300 "$nsys" stats --report cuda_gpu_trace --format csv --output "${csv%.csv}" "${csv%.csv}.nsys-rep" >>"$log" 2>&1
        mv "$(ls "${csv%.csv}"*cuda_gpu_trace*.csv | head -1)" "$csv"
        return
    fi
    cupti=$(find /usr/local/cuda* /usr/lib /usr/local/lib /usr/lib/python3 -name 'libcupti.so.13*' 2>/dev/null | head -1)
    if [ -z "$cupti" ] || [ ! -f "$B/bin/libvesta_cupti_trace.so" ]; then
        summary+=("trace: no nsys, and no CUPTI (${cupti:-none}) or tracer library")
        return 1
    fi
    LD_LIBRARY_PATH=$(dirname "$cupti"):$LD_LIBRARY_PATH LD_PRELOAD=$ROOT/$B/bin/libvesta_cupti_trace.so \
        VESTA_CUPTI_TRACE=$csv timeout 300 "$@" >"$log" 2>&1
}
stage_b4trace() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    traced "$W/b4.csv" "$W/b4trace.log" "$V" bench prefix --model "$M8D" --load-format dummy --prefix-len 4096 \
        --num-iters 1 --num-iters-warmup 1 --temperature 0 || return
    python3 bench/gpu/trace_summary.py "$W/b4.csv" --start embedding --top 25 | tee "$OUT/b4trace.txt"
    summary+=("b4trace: $(grep -h '^Prefix caching' "$W/b4trace.log" | tail -1)" "$(head -2 "$OUT/b4trace.txt" 2>/dev/null)")
}
# B1 traced kernel by kernel (every step; the summary splits steps with prefill rows from
# decode-only ones), then untraced, to show the tracer's cost.
stage_b1trace() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local b1=(throughput --model "$M8D" --load-format dummy --num-prompts 512 --input-len 512 --output-len 256
        --max-model-len 1024)
    traced "$W/b1.csv" "$W/b1trace.log" "$V" bench "${b1[@]}" || return
    python3 bench/gpu/trace_summary.py "$W/b1.csv" --all-steps --start embedding --top 30 | tee "$OUT/b1trace.txt"
    summary+=("b1trace: $(grep -h '^Throughput' "$W/b1trace.log" | tail -1)" "$(head -1 "$OUT/b1trace.txt" 2>/dev/null)")
    VESTA_BENCH_DUMMY=1 vb b1_untraced throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
    summary+=("B1 untraced: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
}
# Version 7's configurations (kernels/attention_decode_v7.cu): kernel_bench's decode rows, then
# B1 with each forced (VESTA_DECODE_ATTENTION=70 + i; VESTA_V7_VARIANTS, default "74 70": padded
# rows, then production's swizzled ones) beside production's choice (0), interleaved, two rounds.
stage_v7var() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    VESTA_KB_DECODE=1 timeout 300 "$B/bin/kernel_bench" "$OUT/kb_decode.csv" >"$OUT/kb_decode.txt" 2>&1
    summary+=("kernel_bench decode rows: rc $?")
    local i v
    for i in 1 2; do
        for v in 0 ${VESTA_V7_VARIANTS:-74 70}; do
            VESTA_DECODE_ATTENTION=$v VESTA_BENCH_DUMMY=1 vb "b1_v${v}_$i" throughput --num-prompts 512 --input-len 512 \
                --output-len 256 --max-model-len 1024 >/dev/null
            summary+=("B1 decode attention $v round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}
# Swizzled rows in decode version 7 change where bytes sit in shared memory, not the arithmetic:
# 320 prompts with version 7 forced, padded (74) against swizzled (70), must be bit-identical;
# then stage v7var.
stage_v7swz() {
    pair320 --same VESTA_DECODE_ATTENTION v7swz "320 prompts x 32 greedy tokens, v7 swizzled (70) vs padded (74)" \
        padded:74 swizzled:70
    stage_v7var
}
# Under Llama-3.1's 131,072-position bound (the caller's m128 = config_128k's folder; dummy weights;
# the caller's VESTA_DECODE_ATTENTION or V apply), one summary line each: bound_b2 TAG LABEL, B2's
# shape; bound_requests N TAG LABEL, N requests of 512 -> 256 tokens at once.
bound_b2() {
    M8D=$m128 VESTA_BENCH_DUMMY=1 vb "b2l_$1" latency --input-len 128 --output-len 512 --num-iters 3 \
        --num-iters-warmup 1 --temperature 0 --max-model-len 131072 >/dev/null
    summary+=("B2 at a 131,072 bound, $2: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
}
bound_requests() {
    M8D=$m128 VESTA_BENCH_DUMMY=1 vb "c$1l_$2" throughput --num-prompts "$1" --input-len 512 --output-len 256 \
        --max-num-seqs "$1" --max-model-len 131072 >/dev/null
    summary+=("$1 requests at a 131,072 bound, $3: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
}
# config_128k: the 8B shape's config with Llama-3.1's 131,072 positions (dummy weights), made
# once; prints its folder.
config_128k() {
    local d=/tmp/llama8b-128k
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]' >&2
    mkdir -p "$d"
    python3 -c "import json, sys; c = json.load(open(sys.argv[1])); c['max_position_embeddings'] = 131072; json.dump(c, open(sys.argv[2], 'w'))" \
        "$M8D/config.json" "$d/config.json" || return 1
    echo "$d"
}
# Decode attention's choice since run 143 (version 7 only where 7/8 of its warps get a (sequence,
# KV head) pair; version 5 with swizzled rows below): kernel_bench's decode rows (version 7's
# configurations; production beside versions 5 and 7 over batch sizes and contexts), 320 prompts at
# 64 sequences by the top-5 rule against version 7 forced (production's pick there before), then,
# interleaved, two rounds, each against the kernel the earlier rule picked there (forced): B1 (74,
# version 7 with padded rows), B2 (56, version 5 with padded rows), 64 requests at once (74) and
# one sequence with Llama-3.1's 131,072-token bound (74; B2's shape and a 32K-token prompt).
stage_v7rule() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    VESTA_KB_DECODE=1 timeout 300 "$B/bin/kernel_bench" "$OUT/kb_decode.csv" >"$OUT/kb_decode.txt" 2>&1
    summary+=("kernel_bench decode rows: rc $?")
    pair320 --top5 VESTA_DECODE_ATTENTION rule64 "320 prompts at 64 sequences, production (version 5 there) vs version 7" \
        v7:74 prod:0 --max-num-seqs 64
    local m128 i v
    m128=$(config_128k) || return
    for i in 1 2; do
        for v in 74 0; do
            VESTA_DECODE_ATTENTION=$v VESTA_BENCH_DUMMY=1 vb "b1_v${v}_$i" throughput --num-prompts 512 --input-len 512 \
                --output-len 256 --max-model-len 1024 >/dev/null
            summary+=("B1 decode attention $v round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            VESTA_DECODE_ATTENTION=$v VESTA_BENCH_DUMMY=1 vb "c64_v${v}_$i" throughput --num-prompts 64 --input-len 512 \
                --output-len 256 --max-num-seqs 64 >/dev/null
            summary+=("64 requests decode attention $v round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            VESTA_DECODE_ATTENTION=$v bound_b2 "v${v}_$i" "decode attention $v round $i"
            VESTA_DECODE_ATTENTION=$v M8D=$m128 VESTA_BENCH_DUMMY=1 vb "l32_v${v}_$i" latency --input-len 32768 --output-len 256 \
                --num-iters 2 --num-iters-warmup 1 --temperature 0 --max-model-len 131072 >/dev/null
            summary+=("32K prompt at a 131,072 bound, decode attention $v round $i: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        done
        for v in 56 0; do
            VESTA_DECODE_ATTENTION=$v VESTA_BENCH_DUMMY=1 vb "b2_v${v}_$i" latency --input-len 128 --output-len 512 \
                --num-iters 3 --num-iters-warmup 1 --temperature 0 >/dev/null
            summary+=("B2 decode attention $v round $i: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        done
    done
}
# Version 5 looping over its splits (a wave of blocks instead of one per split of the bound):
# kernel_bench's decode rows (with production under 640 / 8,192 / 131,072-key bounds), then,
# interleaved, two rounds, under Llama-3.1's 131,072-position bound: B2's shape and 64 requests at
# once, production against version 7 forced (74, the earlier rule's pick there); then B2 and B1.
stage_v5loop() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    VESTA_KB_DECODE=1 timeout 400 "$B/bin/kernel_bench" "$OUT/kb_decode.csv" >"$OUT/kb_decode.txt" 2>&1
    summary+=("kernel_bench decode rows: rc $?")
    local m128 i v
    m128=$(config_128k) || return
    for i in 1 2; do
        for v in 74 0; do
            VESTA_DECODE_ATTENTION=$v bound_b2 "v${v}_$i" "decode attention $v round $i"
            VESTA_DECODE_ATTENTION=$v bound_requests 64 "v${v}_$i" "decode attention $v round $i"
        done
    done
    VESTA_BENCH_DUMMY=1 vb b2 latency --input-len 128 --output-len 512 --num-iters 3 --num-iters-warmup 1 --temperature 0 >/dev/null
    summary+=("B2: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
    VESTA_BENCH_DUMMY=1 vb b1 throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024 >/dev/null
    summary+=("B1: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
}
# The base build (/tmp/vesta-base, base_unpack) and this one, one after the other, dummy weights:
# ab_kv_128k, the memory plan and KV cache each leaves under Llama-3.1's bound at the offline
# default of 1,024 sequences (the caller's m128 = config_128k's folder); ab_b1, B1.
ab_kv_128k() {
    local v name bin
    for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
        IFS=: read -r name bin <<<"$v"
        V=$bin M8D=$m128 VESTA_BENCH_DUMMY=1 vb "kv_$name" latency --input-len 128 --output-len 8 --num-iters 1 \
            --num-iters-warmup 0 --temperature 0 --max-model-len 131072 >/dev/null
        summary+=("$name build at a 131,072 bound: $(grep -h 'memory plan' "$W/bench.log" | tail -1 | sed 's/.*in use/in use/')")
        summary+=("  $(grep -h 'KV cache:' "$W/bench.log" | tail -1)")
    done
}
ab_b1() {
    local v name bin
    for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
        IFS=: read -r name bin <<<"$v"
        V=$bin VESTA_BENCH_DUMMY=1 vb "b1_$name" throughput --num-prompts 512 --input-len 512 --output-len 256 \
            --max-model-len 1024 >/dev/null
        summary+=("B1, $name: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
    done
}
# Decode ranges picked on the device from the real contexts (runs 149-151; versions 5 and 7; 57 and
# 75 force each version with its ranges from the bound): the attention and split-rule kernel
# tests, kernel_bench's decode rows, 320 prompts at 16 sequences (version 5) and 192 (version 7)
# against the base build (.gpu/base.tar.xz: the earlier ranges) by the top-5 rule, and the KV cache
# each build leaves under Llama-3.1's bound. devbench: the base build and this one, interleaved,
# two rounds: B2's shape and 8 / 64 requests at once under the 131,072-position bound, 192 requests
# at once and B2; then B1 with each.
stage_devpart() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local t rc n m128
    for t in splits attention; do
        timeout 300 "$B/bin/test_kernels" $t >"$OUT/kernels_$t.log" 2>&1
        rc=$?
        summary+=("kernel tests ($t): $(tail -1 "$OUT/kernels_$t.log") (rc $rc)")
    done
    VESTA_KB_DECODE=1 timeout 400 "$B/bin/kernel_bench" "$OUT/kb_decode.csv" >"$OUT/kb_decode.txt" 2>&1
    summary+=("kernel_bench decode rows: rc $?")
    base_unpack || return
    VESTA_KB_DECODE=1 timeout 300 /tmp/vesta-base/bin/kernel_bench "$OUT/kb_decode_base.csv" >"$OUT/kb_decode_base.txt" 2>&1
    summary+=("base build's kernel_bench decode rows: rc $?")
    prompts320 "$W/dp_prompts.jsonl"
    for n in 16 192; do
        V=/tmp/vesta-base/bin/vesta gen320 "$W/dp_prompts.jsonl" "$W/dp${n}_base.jsonl" "$W/dp$n.log" --max-num-seqs $n
        gen320 "$W/dp_prompts.jsonl" "$W/dp${n}_this.jsonl" "$W/dp$n.log" --max-num-seqs $n
        summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/dp${n}_base.jsonl" "$W/dp${n}_this.jsonl" \
            --label "320 prompts at $n sequences, base build vs this" | tee -a "$W/dp$n.log")")
    done
    m128=$(config_128k) || return
    ab_kv_128k
}
stage_devbench() {
    local m128 i v name bin
    base_unpack || return
    m128=$(config_128k) || return
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
            IFS=: read -r name bin <<<"$v"
            V=$bin bound_b2 "${name}_$i" "$name round $i"
            V=$bin bound_requests 8 "${name}_$i" "$name round $i"
            V=$bin bound_requests 64 "${name}_$i" "$name round $i"
            V=$bin VESTA_BENCH_DUMMY=1 vb "c192_${name}_$i" throughput --num-prompts 192 \
                --input-len 512 --output-len 256 --max-num-seqs 192 >/dev/null
            summary+=("192 requests at once, $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            V=$bin VESTA_BENCH_DUMMY=1 vb "b2_${name}_$i" latency --input-len 128 --output-len 512 \
                --num-iters 3 --num-iters-warmup 1 --temperature 0 >/dev/null
            summary+=("B2, $name round $i: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        done
    done
    ab_b1
}
# Decode versions 5 and 7 with the rows' cache offsets worked out once a tile (v5) or a chunk (v7)
# instead of with two divisions by the block size per 16-byte copy (session 16): the same
# arithmetic, so no bit may move. The kernel tests; the base build (.gpu/base.tar.xz) and this one
# on the 320 prompts at 64 sequences (v5) and at the default 1,024 (v7 from 116), and on 16 long
# prompts (3-7K tokens: several key ranges and the combine kernel), byte for byte; kernel_bench's
# decode and partition rows of both; 64 and 192 requests at once, interleaved, two rounds.
stage_addrab() {
    local t rc n v i name bin
    for t in splits attention; do
        timeout 300 "$B/bin/test_kernels" $t >"$OUT/kernels_$t.log" 2>&1
        rc=$?
        summary+=("kernel tests ($t): $(tail -1 "$OUT/kernels_$t.log") (rc $rc)")
    done
    base_unpack || return
    prompts320 "$W/ad_prompts.jsonl"
    python3 -c "import json, random; r = random.Random(2); [print(json.dumps({'prompt_token_ids': [r.randrange(128000) for _ in range(r.randrange(3000, 7000))]})) for i in range(16)]" >"$W/ad_long.jsonl"
    for n in 64 1024 long; do
        local in="$W/ad_prompts.jsonl" flags=(--max-num-seqs $n)
        [ $n = long ] && in="$W/ad_long.jsonl" flags=(--max-num-seqs 16 --max-model-len 8192)
        same_ab "$in" "ad$n" "prompts $n, base build vs this" "${flags[@]}"
    done
    for v in base:/tmp/vesta-base/bin/kernel_bench this:"$B/bin/kernel_bench"; do
        IFS=: read -r name bin <<<"$v"
        VESTA_KB_DECODE=1 timeout 300 "$bin" "$OUT/kb_decode_$name.csv" >"$OUT/kb_decode_$name.txt" 2>&1
        summary+=("kernel_bench decode rows, $name: rc $?")
        VESTA_KB_GREEN=reads timeout 120 "$bin" "$OUT/kb_reads_$name.csv" >"$OUT/kb_reads_$name.txt" 2>&1
        summary+=("partition reads, $name: $(grep -A1 'production on 16 SMs' "$OUT/kb_reads_$name.txt" | tr -s ' ' | tr '\n' ' ')")
    done
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
            IFS=: read -r name bin <<<"$v"
            for n in 64 192; do
                V=$bin VESTA_BENCH_DUMMY=1 vb "c${n}_${name}_$i" throughput --num-prompts $n \
                    --input-len 512 --output-len 256 --max-num-seqs $n --max-model-len 1024 >/dev/null
                summary+=("$n requests at once, $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            done
        done
    done
}
# The same two builds end to end, interleaved, two rounds, dummy weights: B1, B2, and 128 and 256
# requests at once (512 -> 256 tokens; version 7's batches).
stage_addrbench() {
    local i v name bin n
    base_unpack || return
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
            IFS=: read -r name bin <<<"$v"
            V=$bin VESTA_BENCH_DUMMY=1 vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 \
                --output-len 256 --max-model-len 1024 >/dev/null
            summary+=("B1, $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            V=$bin VESTA_BENCH_DUMMY=1 vb "b2_${name}_$i" latency --input-len 128 --output-len 512 \
                --num-iters 3 --num-iters-warmup 1 --temperature 0 >/dev/null
            summary+=("B2, $name round $i: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
            for n in 128 256; do
                V=$bin VESTA_BENCH_DUMMY=1 vb "c${n}_${name}_$i" throughput --num-prompts $n --input-len 512 \
                    --output-len 256 --max-num-seqs $n --max-model-len 1024 >/dev/null
                summary+=("$n requests at once, $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            done
        done
    done
}
# The MLP activations and the logits / sampler work in one region (run 156): the base build
# (.gpu/base.tar.xz: the same kernels, separate buffers) and this one on the 320 prompts, greedy
# with 5 logprobs and sampled (temperature 1, top-p 0.9, frequency penalty 0.5, seed 7), token
# for token and byte for byte; the KV cache each leaves under Llama-3.1's bound at 1,024
# sequences; B1 with each.
stage_alias() {
    local m128 mode
    base_unpack || return
    prompts320 "$W/al_prompts.jsonl"
    for mode in greedy sampled; do
        local flags=()
        [ $mode = sampled ] && flags=(--temperature 1 --top-p 0.9 --frequency-penalty 0.5 --seed 7)
        same_ab "$W/al_prompts.jsonl" "al_$mode" "320 prompts $mode, base build vs this" "${flags[@]}"
    done
    m128=$(config_128k) || return
    ab_kv_128k
    ab_b1
}
# kernel_bench's overlap rows: a prefill chunk's product beside B1's decode attention on two
# streams, cuBLAS at all SMs and fewer.
stage_overlap() {
    VESTA_KB_OVERLAP=1 timeout 300 "$B/bin/kernel_bench" "$OUT/overlap.csv" >"$OUT/overlap.txt" 2>&1
    summary+=("overlap: rc $? $(grep -h 'overlap:' "$OUT/overlap.txt" | sort -t'(' -k2 -n | tail -1)")
}

# The same on SM partitions (green contexts): eight layers of a prefill chunk's MLP products
# beside B1's decode attention, one after the other on all SMs, on two streams, and with each on
# its own SMs (kernel_bench's VESTA_KB_GREEN rows; VESTA_KB_GREEN=reads: only what the attention
# and a plain read pull on 16-64 SMs).
stage_green() {
    VESTA_KB_GREEN=${VESTA_KB_GREEN:-1} timeout 400 "$B/bin/kernel_bench" "$OUT/green.csv" >"$OUT/green.txt" 2>&1
    summary+=("green: rc $? $(grep -h 'saved' "$OUT/green.txt" | sort -t: -k2 -n | tail -3 | tr '\n' ';')")
}

# B1 under smaller token budgets (dummy weights): how a schedule that mixes prompt chunks into
# every decode step (what an overlap of the two would need) runs without the overlap.
stage_b1budget() {
    local VESTA_BENCH_DUMMY=1 t
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    for t in 16384 4096 2048; do
        vb "b1_t$t" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024 \
            --max-num-batched-tokens "$t"
        summary+=("b1 budget $t: $(python3 -c "import json,sys; b=json.load(open(sys.argv[1])); print(round(b['output_tokens_per_s']), 'tok/s', b['steps'], 'steps')" "$W/bench_b1_t$t.json" 2>&1)")
    done
}
# The base build (.gpu/base.tar.xz) against this one: the 320 prompts token by token and byte by
# byte in one call (the grouped tiles' loop was reshaped: no bit may move), kernel_bench's prefill
# rows, then B4, B3 and B1, interleaved, two rounds.
stage_wideab() {
    stage_same320 || return
    ab_kb_prefill
    ab_b4_b3_b1
}

# The base build (.gpu/base.tar.xz) and this one on the same 320 prompts in one call (one GEMM
# tuning cache: picks timed on another machine or in another cache give other bits), compared
# token by token and byte by byte.
stage_same320() {
    base_unpack || return
    prompts320 "$W/same_prompts.jsonl"
    same_ab "$W/same_prompts.jsonl" same '320 prompts, this build vs the base build, one call'
}

# The HTTP serving path at moderate load, the base build (.gpu/base.tar.xz with vesta,
# vesta-router and vesta-worker: `build-base DIR vesta vesta-router vesta-worker`) against this
# one: `vesta serve` + `vesta bench serve` (512 -> 256 tokens, dummy weights) at request rates
# VESTA_SERVE_RATES ("4 12"; VESTA_SERVE_PROMPTS "120 240"), where decode steps run 5-48
# sequences, interleaved over two rounds; a table per run.
stage_serveab() {
    base_unpack || return
    local i v name bin
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin this:"$B/bin"; do
            IFS=: read -r name bin <<<"$v"
            echo "== serving, round $i: $name =="
            VESTA_SERVE_RATES=${VESTA_SERVE_RATES:-4 12} VESTA_SERVE_PROMPTS=${VESTA_SERVE_PROMPTS:-120 240} \
                bench_serve_stage "$bin" "$M8D" "$W/serve_${name}_$i" --backend cuda --load-format dummy |
                tee "$OUT/serve_${name}_$i.txt"
            summary+=("serving $name round $i:" "$(grep '^| [0-9]' "$OUT/serve_${name}_$i.txt")")
        done
    done
}

# The HTTP serving path at 12 requests/s (240 prompts, 512 -> 256) with this build under
# VESTA_SERVE_ENVS (space-separated, each NAME=VALUE[,NAME=VALUE]; default: VESTA_PDL=1, VESTA_PDL=2
# and VESTA_GEMM_STREAM=0), interleaved over two rounds: which setting moves the TPOT tail.
stage_serveenv() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local i e
    for i in 1 2; do
        for e in ${VESTA_SERVE_ENVS:-VESTA_PDL=1 VESTA_PDL=2 VESTA_GEMM_STREAM=0}; do
            (export ${e//,/ } && VESTA_SERVE_RATES=12 VESTA_SERVE_PROMPTS=240 \
                bench_serve_stage "$B/bin" "$M8D" "$W/serve_${e//[=,]/_}_$i" --backend cuda --load-format dummy) |
                tee "$OUT/serve_${e//[=,]/_}_$i.txt"
            summary+=("serving $e round $i: $(grep '^| 12' "$OUT/serve_${e//[=,]/_}_$i.txt")")
        done
    done
}

# Programmatic dependent launch under tensor parallelism (two GPUs): 8 prompts x 32 greedy tokens
# at TP=1, then at TP=2 with every kernel chained (VESTA_PDL=2) and with the products only (1):
# TP=2 against TP=1 by the top-5 rule, the two TP=2 runs token for token (the second reads the
# first's GEMM tuning cache); then single-stream decode at TP=2 with each.
stage_tp2pdl() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    python3 -c "import json, random; r = random.Random(0); [print(json.dumps({'prompt_token_ids': [r.randrange(128000) for _ in range(r.randrange(16, 300))]})) for i in range(8)]" >"$W/tp_prompts.jsonl"
    local v name tp pdl
    for v in tp1:1:2 all:2:2 prod:2:1; do
        IFS=: read -r name tp pdl <<<"$v"
        VESTA_PDL=$pdl timeout 240 "$V" generate --backend cuda --model "$M8D" --load-format dummy \
            --input "$W/tp_prompts.jsonl" --output "$W/tpp_$name.jsonl" --temperature 0 --max-tokens 32 --ignore-eos \
            --logprobs 5 --no-progress --max-model-len 1024 --tensor-parallel-size "$tp" >>"$W/tp2pdl.log" 2>&1
        echo "generate $name (TP=$tp, VESTA_PDL=$pdl): rc $?"
    done
    summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/tpp_tp1.jsonl" "$W/tpp_all.jsonl" \
        --label 'TP=2 (every kernel pdl) vs TP=1' | tee -a "$W/tp2pdl.log")")
    summary+=("$(python3 bench/gpu/compare_e2e.py --same "$W/tpp_prod.jsonl" "$W/tpp_all.jsonl" \
        --label 'TP=2: every kernel pdl vs the products only' | tee -a "$W/tp2pdl.log")")
    for v in prod:1 all:2 prod:1 all:2; do
        IFS=: read -r name pdl <<<"$v"
        summary+=("TP=2 single stream $name: $(VESTA_PDL=$pdl timeout 200 "$V" bench latency --model "$M8D" \
            --load-format dummy --input-len 128 --output-len 256 --num-iters 2 --num-iters-warmup 1 --temperature 0 \
            --tensor-parallel-size 2 2>&1 | grep 'tokens/s decode' | tail -1)")
    done
}

# vk_gemm_stream version 3 (VESTA_GEMM_STREAM=3: 5-64 rows) against cuBLAS above 16 rows (0), every
# kernel chained by pdl: B4 (a 32-row step) and decode at 24, 32, 48 and 64 sequences, interleaved
# over two rounds, then 320 prompts at 64 sequences per step with each by the top-5 rule. Run 105
# measured the first cut (32 rows) and an L2 prefetch of o_proj's weights, since removed.
stage_rows() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1 i v name val s
    for i in 1 2; do
        for v in cublas:0 tma:3; do
            IFS=: read -r name val <<<"$v"
            b4_with VESTA_GEMM_STREAM "$val" "$name" "$i"
            for s in 24 32 48 64; do
                decode_at "$s" 128 "${name}_$i" VESTA_GEMM_STREAM="$val"
            done
        done
    done
    pair320 --top5 VESTA_GEMM_STREAM rows '320 prompts at 64 seqs, version 3 vs cuBLAS above 16 rows' cublas:0 tma:3 \
        --max-num-seqs 64
}

# ab_prefill VAR TAG LABEL NAME_A:VALUE_A NAME_B:VALUE_B: a prefill-attention setting against
# another: 320 prompts' greedy tokens by the top-5 rule, then B4, B3 and B1 with each, interleaved,
# in the same call.
ab_prefill() {
    local var=$1 tag=$2
    ab320 "$@"
    local VESTA_BENCH_DUMMY=1 i v name val
    for i in 1 2; do
        for v in "$4" "$5"; do
            IFS=: read -r name val <<<"$v"
            echo "== round $i: $name ($var=$val) =="
            (export "$var=$val" && vb "b4_${name}_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 \
                --temperature 0)
            summary+=("B4 $name round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
            (export "$var=$val" && vb "b3_${name}_$i" latency --input-len 2048 --output-len 1 --num-iters 5 \
                --num-iters-warmup 2 --temperature 0)
            summary+=("B3 $name round $i: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
            (export "$var=$val" && vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 --output-len 256 \
                --max-model-len 1024)
            summary+=("B1 $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}

# Prefill attention per KV group (VESTA_PREFILL_GROUP=1, the default) against one head per block (0).
stage_prefill() {
    ab_prefill VESTA_PREFILL_GROUP pg "320 prompts x 32 greedy tokens, prefill per KV group vs per head" head:0 group:1
}

# tests_and_prefill_rows WHAT: test_kernels WHAT (summary), then kernel_bench's prefill rows.
tests_and_prefill_rows() {
    echo "== kernel tests: $1 =="
    timeout 240 "$B/bin/test_kernels" "$1" 2>&1 | tee "$OUT/kernels.log" | tail -2
    summary+=("kernel tests: $(tail -1 "$OUT/kernels.log")")
    VESTA_KB_PREFILL=1 timeout 150 "$B/bin/kernel_bench" "$OUT/kb_prefill.csv" 2>&1 | tee "$OUT/kb_prefill.log"
}

# A check of a prefill-attention change that must not move any bit: the attention tests,
# kernel_bench's prefill rows, 320 prompts against an earlier build's tokens (.gpu/ref320.jsonl,
# carried), and B4 twice.
stage_attncheck() {
    tests_and_prefill_rows attention
    vs_ref320 ac
    local VESTA_BENCH_DUMMY=1 i
    for i in 1 2; do
        vb "b4_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
        summary+=("B4 round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
    done
}

# kernel_bench's prefill rows of an earlier build (.gpu/kb_baseline.tar.xz, carried: bin/kernel_bench
# built from that commit, see docs/benchmarks.md) and of this build, alternated twice in one call,
# into $OUT/kb_{baseline,this}_{1,2}.csv.
stage_kbbaseline() {
    mkdir -p /tmp/kb-baseline && xz -dc .gpu/kb_baseline.tar.xz | tar -C /tmp/kb-baseline -xf - || return
    local i
    for i in 1 2; do
        echo "== round $i: baseline =="
        VESTA_KB_PREFILL=1 timeout 120 /tmp/kb-baseline/bin/kernel_bench "$OUT/kb_baseline_$i.csv" 2>&1 | tail -8
        echo "== round $i: this build =="
        VESTA_KB_PREFILL=1 timeout 120 "$B/bin/kernel_bench" "$OUT/kb_this_$i.csv" 2>&1 | tail -8
    done
}

# Where B4's second request goes: VESTA_PROFILE=2 (each prefill step's device time per class and
# the host's time to issue it), then Nsight Compute on the second request's first layer (norm, RoPE,
# prefill attention and its combine: the first request's 129 matching launches skipped).
stage_b4probe() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1
    VESTA_PROFILE=2 vb b4_profile prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
    grep -h "profile step\|^Prefix caching" "$W/bench.log" | tail -9 | tee "$W/profile_b4.txt"
    local ncu=/usr/local/cuda/bin/ncu
    [ -x "$ncu" ] || ncu=ncu
    timeout 300 "$ncu" -k "regex:add_rmsnorm|rope_kv|prefill_mma|prefill_combine" --launch-skip 129 --launch-count 6 \
        --section SpeedOfLight --section LaunchStats --section Occupancy "$V" bench prefix --model "$M8D" \
        --load-format dummy --prefix-len 4096 --num-iters 1 --num-iters-warmup 0 --temperature 0 >"$OUT/ncu_b4.txt" 2>&1
    summary+=("ncu b4: rc $? ($(grep -c 'Section: GPU Speed Of Light' "$OUT/ncu_b4.txt") kernel reports)")
    grep -E "^  [a-z_]+.*\(|Duration|Grid Size|Registers Per|Achieved Occupancy|Memory Throughput|Compute \(SM\)" \
        "$OUT/ncu_b4.txt" | head -60
}

# Nsight Compute on decode version 7 in kernel_bench's partition rows (VESTA_KB_GREEN=reads): the
# 1st launch (all 132 SMs, DRAM-bound) and the 289th (production on a 16-SM green partition, where
# it reads ~27 GB/s an SM against a plain read's ~126): stall reasons, issue and the hot
# instructions, into $OUT/ncu_v7_SKIP.txt (VESTA_NCU_SKIPS: other launches).
stage_v7prof() {
    local ncu=/usr/local/cuda/bin/ncu skip
    [ -x "$ncu" ] || ncu=ncu
    for skip in ${VESTA_NCU_SKIPS:-0 288}; do
        VESTA_KB_GREEN=reads timeout 240 "$ncu" -k "regex:decode_v7" --launch-skip $skip --launch-count 1 \
            --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats \
            --section Occupancy --section LaunchStats --section SourceCounters --import-source no \
            "$B/bin/kernel_bench" >"$OUT/ncu_v7_$skip.txt" 2>&1
        summary+=("ncu v7 launch $skip: rc $? ($(grep -c 'Section: ' "$OUT/ncu_v7_$skip.txt") sections)")
        grep -E "Duration|Grid Size|Stall|Warp Cycles|Issued|Eligible|Active Warps|Memory Throughput|Compute \(SM\)" \
            "$OUT/ncu_v7_$skip.txt" | head -30
    done
}

# Prefill attention per head against per KV group (kernel_bench's prefill rows, VESTA_KB_PREFILL),
# then Nsight Compute on B4's shape (32 queries over 4,128 keys) with each tiling.
stage_b4attn() {
    VESTA_KB_PREFILL=1 timeout 120 "$B/bin/kernel_bench" "$OUT/kb_prefill.csv" 2>&1 | tee "$OUT/kb_prefill.log"
    local ncu=/usr/local/cuda/bin/ncu skip
    [ -x "$ncu" ] || ncu=ncu
    for skip in 46 138; do
        VESTA_KB_PREFILL=1 timeout 150 "$ncu" -k "regex:prefill_mma|prefill_combine" --launch-skip $skip --launch-count 2 \
            --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
            "$B/bin/kernel_bench" >"$OUT/ncu_attn_$skip.txt" 2>&1
        grep -E "^  [a-z_ ]+.*\(|Duration|Grid Size|Registers Per|Achieved Occupancy|Memory Throughput|Compute \(SM\)|Stall|Warp Cycles Per Issued" \
            "$OUT/ncu_attn_$skip.txt" | head -30
    done
}

# Nsight Compute's detailed sections (stall reasons, instruction mix, shared-memory traffic, the
# source lines that stall) on the production prefill kernel: kernel_bench's prefill rows, the 139th
# prefill_mma launch (run 57: the per-KV-group prefix hit, B4's 32 queries over 4,128 keys), into
# $OUT/ncu_prefill.txt; VESTA_NCU_SKIP picks another launch.
stage_prefillprof() {
    local ncu=/usr/local/cuda/bin/ncu
    [ -x "$ncu" ] || ncu=ncu
    VESTA_KB_PREFILL=1 timeout 300 "$ncu" -k "regex:prefill_mma" --launch-skip "${VESTA_NCU_SKIP:-138}" --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
        --section Occupancy --section SourceCounters --import-source no "$B/bin/kernel_bench" >"$OUT/ncu_prefill.txt" 2>&1
    summary+=("ncu prefill: rc $? ($(grep -c 'Section: ' "$OUT/ncu_prefill.txt") sections)")
    grep -E "^  [a-z_ ]+.*\(|Duration|Stall|Warp Cycles|Issued|Eligible|Bank|Pipe|Executed Ipc|Throughput" \
        "$OUT/ncu_prefill.txt" | head -60
}

# A session's final build: the kernel tests, the prefill-attention and elementwise rows, 320
# prompts against an earlier build's greedy tokens (.gpu/ref320.jsonl, carried: run 47's output)
# by the top-5 rule, and B1-B4.
stage_final() {
    tests_and_prefill_rows all
    VESTA_KB_ELEMENTWISE=1 timeout 120 "$B/bin/kernel_bench" "$OUT/kb_elementwise.csv" 2>&1 | tee "$OUT/kb_elementwise.log"
    vs_ref320 fin
    local VESTA_BENCH_DUMMY=1 i
    for i in 1 2; do
        vb "b4_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
        summary+=("B4 round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
        vb "b2_$i" latency --input-len 128 --output-len 512 --num-iters 3 --num-iters-warmup 1 --temperature 0
        summary+=("B2 round $i: $(grep -h 'tokens/s decode' "$W/bench.log" | tail -1)")
    done
    for i in 1 2; do
        vb "b3_$i" latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 --temperature 0
        summary+=("B3 round $i: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
    done
    vb b1 throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
    summary+=("B1: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
}

# Side by side with an earlier build (.gpu/base.tar.xz, from `scripts/gpu-run.sh build-base DIR`:
# that tree's vesta and kernel_bench): kernel_bench's sampling rows (VESTA_KB_SAMPLING), 320
# prompts sampled at temperature 1 with fixed seeds by both (the same draws: equal tokens expected
# but where a draw lies within ~1e-7 of a probability boundary), then B1, B3 and B2 interleaved,
# two rounds.
# The base build (.gpu/base.tar.xz, unpacked into /tmp/vesta-base) and the 8B shape's config.
base_unpack() {
    mkdir -p /tmp/vesta-base && xz -dc .gpu/base.tar.xz | tar -C /tmp/vesta-base -xf - || return 1
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    return 0
}
# B1, B3 and B2 (and B4 with VESTA_AB_B4=1) of the base build and this one, interleaved, two rounds,
# dummy weights.
ab_bench() {
    local VESTA_BENCH_DUMMY=1 i v name bin
    for i in 1 2; do
        for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
            IFS=: read -r name bin <<<"$v"
            V=$bin vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
            summary+=("B1 $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
            V=$bin vb "b3_${name}_$i" latency --input-len 2048 --output-len 1 --num-iters 5 --num-iters-warmup 2 \
                --temperature 0
            summary+=("B3 $name round $i: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
            V=$bin vb "b2_${name}_$i" latency --input-len 128 --output-len 512 --num-iters 3 --num-iters-warmup 1 \
                --temperature 0
            summary+=("B2 $name round $i: $(grep -h 'tokens/s decode' "$W/bench.log" | tail -1)")
            [ -n "${VESTA_AB_B4:-}" ] || continue
            V=$bin vb "b4_${name}_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
            summary+=("B4 $name round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
        done
    done
}
stage_base() {
    base_unpack || return
    local BB=/tmp/vesta-base i
    for i in 1 2; do
        echo "== sampling rows, round $i: base, then this build =="
        VESTA_KB_SAMPLING=1 timeout 60 "$BB/bin/kernel_bench" "$OUT/kb_sampling_base_$i.csv" 2>&1 | tail -12
        VESTA_KB_SAMPLING=1 timeout 60 "$B/bin/kernel_bench" "$OUT/kb_sampling_this_$i.csv" 2>&1 | tail -12
    done
    prompts320 "$W/t1_prompts.jsonl"
    V="$BB/bin/vesta" gen320 "$W/t1_prompts.jsonl" "$W/t1_base.jsonl" "$W/t1.log" --temperature 1 --seed 7
    gen320 "$W/t1_prompts.jsonl" "$W/t1_this.jsonl" "$W/t1.log" --temperature 1 --seed 7
    summary+=("$(python3 bench/gpu/compare_e2e.py --same "$W/t1_base.jsonl" "$W/t1_this.jsonl" \
        --label '320 prompts at temperature 1 (seed 7), this build vs base' | tee -a "$W/t1.log")")
    ab_bench
}
# B1-B4 of this build against the base build alone (no kernel rows).
stage_baseab() { base_unpack && VESTA_AB_B4=1 ab_bench; }

# The residual add in the O and down products' epilogue (cuBLAS's beta = 1 where it computes them:
# cuda_gemm_adds; VESTA_RESIDUAL_ADD, session 17) against the base build (.gpu/base.tar.xz, the
# add in the norm kernel): every kernel test; the 320 prompts by the top-5 rule at 1,024 sequences
# (every step on cuBLAS), at 16 and at 2 (decode steps on vk_gemm_stream / vk_gemv, which store;
# the prompts' steps add). Stage resbench: B1-B4 interleaved, two rounds, and B1 eager and
# profiled with each build (the norms' share; profile_base.txt, profile_this.txt).
stage_resadd() {
    local n rc v name bin
    timeout 300 "$B/bin/test_kernels" all >"$OUT/kernels.log" 2>&1
    rc=$?
    summary+=("kernel tests: $(tail -1 "$OUT/kernels.log") (rc $rc)")
    timeout 200 "$B/bin/test_gemm_stream" >"$OUT/gemm_stream_test.log" 2>&1
    rc=$?
    summary+=("vk_gemm_stream tests: $(tail -1 "$OUT/gemm_stream_test.log") (rc $rc)")
    base_unpack || return
    prompts320 "$W/ra_prompts.jsonl"
    for n in 1024 16 2; do
        top5_ab "$W/ra_prompts.jsonl" "ra$n" "320 prompts at $n sequences, base build vs this" --max-num-seqs $n
    done
}
stage_resbench() {
    local v name bin
    base_unpack || return
    VESTA_AB_B4=1 ab_bench
    for v in base:/tmp/vesta-base/bin/vesta this:"$V"; do
        IFS=: read -r name bin <<<"$v"
        V=$bin VESTA_BENCH_DUMMY=1 VESTA_PROFILE=1 vb "b1prof_$name" throughput --num-prompts 512 --input-len 512 \
            --output-len 256 --max-model-len 1024 --enforce-eager >/dev/null
        awk -v t="-- vesta bench b1prof_$name" 'index($0, t) == 1 {f = 1; next} /^-- vesta bench/ {f = 0}
            f && /cuda: profile/' "$W/bench.log" >"$OUT/profile_$name.txt"
        summary+=("B1 eager profiled, $name: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
    done
}

# A prefill chunk's MLP products on a green partition with cuBLASLt's candidates timed there,
# beside B1's decode attention on the other SMs (kernel_bench VESTA_KB_GREEN=gemm; session 17).
stage_partgemm() {
    VESTA_KB_GREEN=gemm timeout 400 "$B/bin/kernel_bench" "$OUT/partgemm.csv" >"$OUT/partgemm.txt" 2>&1
    summary+=("partition gemm rows: rc $? ($(grep -c 'saved' "$OUT/partgemm.txt") pairs; partgemm.txt)")
}

# Multi-LoRA on one GPU. The LoRA kernels against their CPU reference. Then the CUDA backend
# against the CPU backend (which tests/worker/cli/check_lora.py and test_backend_cpu_lora hold
# to PEFT): a small random Llama (hf_e2e.py small) with two random adapters (make_lora_adapter.py,
# ranks 16 and 8 on every projection), 8 prompts each under the base model and both adapters, all
# in one run (--max-loras 2 on the GPU, so steps mix them), with graphs and eager; by the top-5
# rule (compare_e2e.py --top5), and the adapters must change the CPU's tokens. Then the 8B shape
# (dummy weights) with random rank-16 adapters on every projection (make_lora_adapter.py),
# single stream (B2's command) and offline throughput (256 requests, 512 -> 256) without
# adapters, under one, and over four in turn (--max-loras 4), in the same call. VESTA_LORA_PROFILE=1
# adds an eager, profiled throughput run without and with one adapter (lora_profile_*.txt).
stage_lora() {
    echo "== LoRA kernels =="
    timeout 120 "$B/bin/test_kernels" lora 2>&1 | tee "$OUT/lora_kernels.log" | tail -6
    summary+=("LoRA kernel tests: $(tail -1 "$OUT/lora_kernels.log")")
    local S=/tmp/small-llama mode tag
    [ -f "$S/config.json" ] || python3 bench/gpu/hf_e2e.py small "$S" 2>&1 | grep '\[hf\]'
    [ -f /tmp/lora-s1/adapter_config.json ] || python3 bench/gpu/make_lora_adapter.py "$S/config.json" /tmp/lora-s1 16 1 0.05
    [ -f /tmp/lora-s2/adapter_config.json ] || python3 bench/gpu/make_lora_adapter.py "$S/config.json" /tmp/lora-s2 8 2 0.05
    python3 -c "import json, random; r = random.Random(3); ps = [[r.randrange(32000) for _ in range(r.randrange(5, 300))] for i in range(8)]; [print(json.dumps(dict({'prompt_token_ids': p}, **l))) for p in ps for l in ({}, {'lora_name': 's1'}, {'lora_name': 's2'})]" >"$W/lora_prompts.jsonl"
    local flags=(--model "$S" --input "$W/lora_prompts.jsonl" --temperature 0 --max-tokens 32 --ignore-eos --logprobs 5
                 --no-progress --max-model-len 1024 --enable-lora --lora-modules s1=/tmp/lora-s1 s2=/tmp/lora-s2)
    "$V" generate --backend cpu --output "$W/lora_cpu.jsonl" "${flags[@]}" >>"$W/lora.log" 2>&1
    echo "cpu: rc $?"
    for mode in graphs eager; do
        tag=(); [ $mode = eager ] && tag=(--enforce-eager)
        "$V" generate --backend cuda --output "$W/lora_$mode.jsonl" --max-loras 2 "${flags[@]}" "${tag[@]}" >>"$W/lora.log" 2>&1
        echo "cuda $mode: rc $?"
        summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/lora_cpu.jsonl" "$W/lora_$mode.jsonl" \
            --label "small model, base + 2 adapters x 8 prompts, cuda ($mode) vs cpu")")
    done
    for tag in 1 2; do # lines 3k: base, 3k + tag: adapter tag
        python3 -c "import json; rows = sorted((json.loads(l) for l in open('$W/lora_cpu.jsonl')), key=lambda r: r['index']); print(sum(rows[i]['outputs'][0]['token_ids'] != rows[i + $tag]['outputs'][0]['token_ids'] for i in range(0, len(rows), 3)), 'of', len(rows) // 3)" >"$W/lora_moved_$tag.txt"
        summary+=("adapter s$tag changes the CPU's greedy tokens of $(cat "$W/lora_moved_$tag.txt") prompts")
    done
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local i
    for i in 1 2 3 4; do
        [ -f "/tmp/lora8b-$i/adapter_config.json" ] || python3 bench/gpu/make_lora_adapter.py "$M8D/config.json" "/tmp/lora8b-$i" 16 "$i"
    done
    local one=(--enable-lora --lora-modules a1=/tmp/lora8b-1)
    local four=(--enable-lora --max-loras 4 --lora-modules a1=/tmp/lora8b-1 a2=/tmp/lora8b-2 a3=/tmp/lora8b-3 a4=/tmp/lora8b-4)
    local VESTA_BENCH_DUMMY=1
    for i in 1 2; do
        vb "lora_b2_base_$i" latency --input-len 128 --output-len 512 --num-iters 3 --temperature 0
        summary+=("B2 no adapter, round $i: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        vb "lora_b2_one_$i" latency --input-len 128 --output-len 512 --num-iters 3 --temperature 0 "${one[@]}"
        summary+=("B2 one adapter, round $i: $(grep -h '^Latency' "$W/bench.log" | tail -1)")
        vb "lora_tp_base_$i" throughput --num-prompts 256 --input-len 512 --output-len 256 --max-model-len 1024
        summary+=("256 requests no adapter, round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        vb "lora_tp_one_$i" throughput --num-prompts 256 --input-len 512 --output-len 256 --max-model-len 1024 "${one[@]}"
        summary+=("256 requests one adapter, round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        vb "lora_tp_four_$i" throughput --num-prompts 256 --input-len 512 --output-len 256 --max-model-len 1024 "${four[@]}"
        summary+=("256 requests four adapters, round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
    done
    if [ -n "${VESTA_LORA_PROFILE:-}" ]; then # where the adapters' time goes: eager, profiled, by product
        for v in base one; do
            local fl=(); [ $v = one ] && fl=("${one[@]}")
            VESTA_PROFILE=1 vb "lora_prof_$v" throughput --num-prompts 256 --input-len 512 --output-len 256 \
                --max-model-len 1024 --enforce-eager "${fl[@]}" >/dev/null
            awk -v t="-- vesta bench lora_prof_$v" 'index($0, t) == 1 {f = 1; next} /^-- vesta bench/ {f = 0}
                f && /cuda: profile/' "$W/bench.log" >"$OUT/lora_profile_$v.txt"
        done
    fi
    grep -h "LoRA adapter\|memory plan" "$W/bench.log" | sort | uniq -c | head -8
}

# The prefill tile order: longest first (VESTA_PREFILL_ORDER=1, the default) against sequence by
# sequence (0) on kernel_bench's prefill rows (interleaved there), then B3, B4 and B1 interleaved,
# two rounds.
stage_tiles() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1 i v name val
    echo "== prefill tile order =="
    VESTA_KB_PREFILL=1 timeout 150 "$B/bin/kernel_bench" "$OUT/kb_prefill.csv" 2>&1 | tee "$OUT/kb_prefill.log" | tail -12
    for i in 1 2; do
        for v in seq:0 longest:1; do
            IFS=: read -r name val <<<"$v"
            VESTA_PREFILL_ORDER=$val vb "b3_${name}_$i" latency --input-len 2048 --output-len 1 --num-iters 5 \
                --num-iters-warmup 2 --temperature 0
            summary+=("B3 tiles $name round $i: $(grep -h 'time to first token' "$W/bench.log" | tail -1)")
            VESTA_PREFILL_ORDER=$val vb "b4_${name}_$i" prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 \
                --temperature 0
            summary+=("B4 tiles $name round $i: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
            VESTA_PREFILL_ORDER=$val vb "b1_${name}_$i" throughput --num-prompts 512 --input-len 512 --output-len 256 \
                --max-model-len 1024
            summary+=("B1 tiles $name round $i: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
        done
    done
}

# Four GPUs (issue 7), in stages that each keep their logs: tp4check (TP=1/2/4 on the 8B shape,
# dummy weights: greedy tokens of 8 prompts against TP=1 by the top-5 rule; NCCL's topology search
# logged at TP=4 for the link bandwidth it reports), tp4lat (single-stream decode at each N),
# tp70 (the 70B shape at TP=4, dummy weights: start-up, single stream, a 256-request batch, and
# `vesta bench serve` through the router), tp4b1 (B1 at each N) and tp4prof (where a TP=4 decode
# step goes, the all-reduce among it: VESTA_PROFILE=1, eager).
M70D=/tmp/llama70b-config
tp_prompts() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    [ -f "$W/tp_prompts.jsonl" ] || python3 -c "import json, random; r = random.Random(0); [print(json.dumps({'prompt_token_ids': [r.randrange(128000) for _ in range(r.randrange(16, 300))]})) for i in range(8)]" >"$W/tp_prompts.jsonl"
}
# Configurations of the TP stages: N, and "Nn" for N ranks with --disable-custom-all-reduce (NCCL
# for every all-reduce instead of the peer-to-peer one for small ones).
tp_args() { echo "--tensor-parallel-size ${1%n}$([ "${1%n}" != "$1" ] && echo ' --disable-custom-all-reduce')"; }
stage_tp4check() {
    tp_prompts
    nvidia-smi topo -m 2>&1 | head -8 | tee "$W/topo.txt"
    local n
    for n in 1 2 2n 4 4n; do
        local dbg=()
        [ $n = 4n ] && dbg=(env NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,GRAPH)
        # shellcheck disable=SC2046
        "${dbg[@]}" timeout 240 "$V" generate --backend cuda --model "$M8D" --load-format dummy --input "$W/tp_prompts.jsonl" \
            --output "$W/tp$n.jsonl" --temperature 0 --max-tokens 32 --ignore-eos --logprobs 5 --no-progress \
            --max-model-len 1024 $(tp_args $n) >"$W/tp4_gen$n.log" 2>&1
        echo "generate TP=$n: rc $? $(grep -h 'Start-up\|tp: GPU replica\|tp: peer-to-peer\|unavailable' "$W/tp4_gen$n.log" | tail -2 | tr '\n' ' ')"
    done
    grep -h "Pattern\|bw \|NVLS\|P2P/\|via P2P" "$W/tp4_gen4n.log" | sort | uniq -c | sort -rn | head -12 | tee "$W/nccl_bw.txt"
    for n in 2 2n 4 4n; do
        summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/tp1.jsonl" "$W/tp$n.jsonl" \
            --label "TP=$n vs TP=1 (8 prompts x 32 greedy tokens)" | tee -a "$W/tp4.log")")
        echo "${summary[-1]}"
    done
    # two ranks: NCCL's sum of two bf16 values is the fp32 sum rounded once, as the peer-to-peer one's
    summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/tp2n.jsonl" "$W/tp2.jsonl" \
        --label "TP=2 peer-to-peer vs TP=2 NCCL" | tee -a "$W/tp4.log")")
    echo "${summary[-1]}"
}
# Single-stream decode (128 -> 256) and a 32-request batch (128 -> 256: 32-row decode steps, 256 KB
# all-reduces) at each configuration.
stage_tp4lat() {
    tp_prompts
    local n
    for n in 1 2 2n 4 4n; do
        # shellcheck disable=SC2046
        timeout 200 "$V" bench latency --model "$M8D" --load-format dummy --input-len 128 --output-len 256 --num-iters 2 \
            --num-iters-warmup 1 --temperature 0 $(tp_args $n) >"$W/tp4_lat$n.log" 2>&1
        summary+=("single stream TP=$n: $(grep -h '^Latency' "$W/tp4_lat$n.log" | tail -1)")
        echo "${summary[-1]}"
        # shellcheck disable=SC2046
        timeout 200 "$V" bench throughput --model "$M8D" --load-format dummy --num-prompts 32 --input-len 128 \
            --output-len 256 --max-model-len 1024 $(tp_args $n) >"$W/tp4_b32_$n.log" 2>&1
        summary+=("32 requests TP=$n: $(grep -h '^Throughput' "$W/tp4_b32_$n.log" | tail -1)")
        echo "${summary[-1]}"
    done
}
# The 70B shape's single stream at TP=4 with the peer-to-peer all-reduce (16 KB a row) and without.
stage_tp70lat() {
    [ -f "$M70D/config.json" ] || python3 bench/gpu/hf_e2e.py config70b "$M70D" 2>&1 | grep '\[hf\]'
    local n
    for n in 4 4n; do
        # shellcheck disable=SC2046
        timeout 200 "$V" bench latency --model "$M70D" --load-format dummy --input-len 128 --output-len 128 --num-iters 2 \
            --num-iters-warmup 1 --temperature 0 --max-model-len 1024 $(tp_args $n) >"$W/tp70_lat$n.log" 2>&1
        summary+=("70B single stream TP=$n: $(grep -h '^Latency' "$W/tp70_lat$n.log" | tail -1)")
        echo "${summary[-1]}"
    done
}
# The peer-to-peer all-reduce up to each VESTA_TP_P2P_KB_LIST size (KB per rank; 0 = NCCL only) at
# each of VESTA_TPCUT_TP (2): the 32-request batch (128 -> 256: 256 KB all-reduces), or B1 (512 rows:
# 4 MB) with VESTA_TPCUT_B1=1; the sizes interleaved, VESTA_TPCUT_ROUNDS (1) rounds.
stage_tpcut() {
    tp_prompts
    local kb n r work=(--num-prompts 32 --input-len 128 --output-len 256) name="32 requests"
    [ -n "${VESTA_TPCUT_B1:-}" ] && work=(--num-prompts 512 --input-len 512 --output-len 256) name=B1
    for r in $(seq "${VESTA_TPCUT_ROUNDS:-1}"); do
        for n in ${VESTA_TPCUT_TP:-2}; do
            for kb in ${VESTA_TP_P2P_KB_LIST:-256 64 0}; do
                VESTA_TP_P2P_MAX_KB=$kb timeout 200 "$V" bench throughput --model "$M8D" --load-format dummy "${work[@]}" \
                    --max-model-len 1024 --tensor-parallel-size "$n" >"$W/tpcut_${n}_${kb}_$r.log" 2>&1
                summary+=("$name TP=$n, p2p up to $kb KB, round $r: $(grep -h '^Throughput' "$W/tpcut_${n}_${kb}_$r.log" | tail -1)")
                echo "${summary[-1]}"
            done
        done
    done
}
# TP=2 and TP=4 against Hugging Face on the saved 8B-shaped checkpoint (made here first), and the
# NCCL replica of one rank against the plain backend.
stage_tp4hf() {
    [ -f "$M8/hf_ref.json" ] || python3 bench/gpu/hf_e2e.py make "$M8" 2>&1 | tee "$W/hf.log" | grep '\[hf\]'
    local n
    for n in 2 4; do
        gen "$M8" "$M8/prompts.jsonl" llama_tp$n --max-model-len 1536 --tensor-parallel-size $n
        summary+=("$(cmp_ref "$M8/hf_ref.json" "$W/llama_tp$n.jsonl" --label "llama8b TP=$n vs HF bf16")")
        echo "${summary[-1]}"
    done
    # a replica of one rank (the peer-to-peer all-reduce over one rank included) against the plain
    # backend: byte-identical outputs
    TP1_MODES="graphs eager" sh tests/worker/tp/gpu_tp1_exact.sh "$V" "$M8" "$M8/prompts.jsonl" --max-model-len 1536 \
        >"$W/tp1x.log" 2>&1
    summary+=("TP=1 replica vs plain: $(grep -c '^PASS' "$W/tp1x.log") PASS, $(grep -c '^FAIL' "$W/tp1x.log") FAIL")
    grep -h "PASS\|FAIL" "$W/tp1x.log"
}
# The peer-to-peer all-reduce across processes (tests/worker/tp/test_tp_p2p.c): its checks at 2 and
# 4 ranks, then its time per all-reduce against NCCL's at 8 KB to 8 MB per rank; the lone rank's
# call ends by its own bound at 2 ranks and by the wait's abort at 4 (--lone-host).
stage_tpar() {
    local n rc
    for n in 2 4; do
        # shellcheck disable=SC2046
        timeout 240 "$B/bin/test_tp_p2p" --time $([ $n = 4 ] && echo --lone-host) $n >"$W/tpar$n.log" 2>&1
        rc=$?
        tail -16 "$W/tpar$n.log"
        summary+=("p2p all-reduce test, $n ranks: $(tail -1 "$W/tpar$n.log") (rc $rc)")
    done
}
stage_tp70() {
    [ -f "$M70D/config.json" ] || python3 bench/gpu/hf_e2e.py config70b "$M70D" 2>&1 | grep '\[hf\]'
    timeout 300 "$V" bench latency --model "$M70D" --load-format dummy --input-len 128 --output-len 128 --num-iters 2 \
        --num-iters-warmup 1 --temperature 0 --max-model-len 1024 --tensor-parallel-size 4 >"$W/tp70_lat.log" 2>&1
    summary+=("70B TP=4 single stream: rc $? $(grep -h '^Latency' "$W/tp70_lat.log" | tail -1) $(grep -h '^Start-up' "$W/tp70_lat.log" | tail -1)")
    echo "${summary[-1]}"
    timeout 300 "$V" bench throughput --model "$M70D" --load-format dummy --num-prompts 256 --input-len 512 \
        --output-len 128 --max-model-len 1024 --tensor-parallel-size 4 >"$W/tp70_tput.log" 2>&1
    summary+=("70B TP=4 batch: rc $? $(grep -h '^Throughput' "$W/tp70_tput.log" | tail -1)")
    echo "${summary[-1]}"
    VESTA_SERVE_RATES=inf VESTA_SERVE_PROMPTS=200 VESTA_SERVE_IN=512 VESTA_SERVE_OUT=128 \
        bench_serve_stage "$B/bin" "$M70D" "$W/serve70" --backend cuda --load-format dummy --tensor-parallel-size 4 |
        tee "$OUT/serve70_table.txt"
    summary+=("70B TP=4 serve: $(tail -1 "$OUT/serve70_table.txt")")
}
stage_tp4b1() {
    tp_prompts
    local n
    for n in 1 2 4; do
        timeout 240 "$V" bench throughput --model "$M8D" --load-format dummy --num-prompts 512 --input-len 512 \
            --output-len 256 --max-model-len 1024 --tensor-parallel-size $n >"$W/tp4_b1_$n.log" 2>&1
        summary+=("B1 TP=$n: $(grep -h '^Throughput' "$W/tp4_b1_$n.log" | tail -1)")
        echo "${summary[-1]}"
    done
}
stage_tp4prof() {
    tp_prompts
    VESTA_PROFILE=1 timeout 200 "$V" bench latency --model "$M8D" --load-format dummy --input-len 128 --output-len 128 \
        --num-iters 1 --num-iters-warmup 1 --temperature 0 --tensor-parallel-size 4 --enforce-eager >"$W/tp4_prof.log" 2>&1
    grep -h "cuda: profile" "$W/tp4_prof.log" | head -32 | tee "$OUT/tp4_profile.txt"
}

# NCCL's choices for the decode steps' small all-reduces (8 KB at one sequence): single-stream
# decode at TP=2 and TP=4 with NCCL's defaults and with each setting below forced (environment
# only; the rank processes inherit it).
stage_tp4nccl() {
    tp_prompts
    local n cfg
    for n in 2 4; do
        for cfg in default NCCL_ALGO=Ring NCCL_ALGO=Tree NCCL_PROTO=LL NCCL_PROTO=Simple NCCL_MAX_NCHANNELS=2 \
            NCCL_MAX_NCHANNELS=4; do
            local e=()
            [ "$cfg" != default ] && e=(env "$cfg")
            "${e[@]}" timeout 120 "$V" bench latency --model "$M8D" --load-format dummy --input-len 128 --output-len 256 \
                --num-iters 2 --num-iters-warmup 1 --temperature 0 --tensor-parallel-size $n >"$W/tpn_${n}_$cfg.log" 2>&1
            summary+=("TP=$n $cfg: $(grep -h '^Latency' "$W/tpn_${n}_$cfg.log" | tail -1 | sed 's/.*time per output token/per token/')")
            echo "${summary[-1]}"
        done
    done
}

# Greedy tokens of the 320 prompts against an earlier build's (.gpu/ref320.jsonl, carried).
stage_ref320() { vs_ref320 ref; }

# vk_gemm_stream's tests alone (versions 2 and 3 against the reference, rows identical at every n).
stage_gemmtests() {
    timeout 200 "$B/bin/test_gemm_stream" 2>&1 | tee "$OUT/gemm_stream_test.log" | tail -6
    summary+=("vk_gemm_stream tests: $(tail -1 "$OUT/gemm_stream_test.log") (rc ${PIPESTATUS[0]})")
}

# B4 alone (a quick check of a build).
stage_b4() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    local VESTA_BENCH_DUMMY=1
    vb b4 prefix --prefix-len 4096 --num-iters 3 --num-iters-warmup 1 --temperature 0
    summary+=("B4: $(grep -h '^Prefix caching' "$W/bench.log" | tail -1)")
}

# Nsight Compute on kernel_bench: the first VESTA_NCU_COUNT (2) launches of the kernels matching
# VESTA_NCU_KERNEL (decode_v7_kernel: production decode attention, 256 x 640 keys first) with the
# throughput, memory, warp-stall, occupancy and scheduler sections, into $OUT/ncu.txt.
stage_ncu() {
    local ncu=/usr/local/cuda/bin/ncu
    [ -x "$ncu" ] || ncu=ncu
    echo "== ncu: ${VESTA_NCU_KERNEL:-decode_v7_kernel} =="
    timeout 400 "$ncu" -k "regex:${VESTA_NCU_KERNEL:-decode_v7_kernel}" -c "${VESTA_NCU_COUNT:-2}" \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
        --section LaunchStats --section SchedulerStats "$B/bin/kernel_bench" >"$OUT/ncu.txt" 2>&1
    summary+=("ncu: rc $? ($(grep -c 'Section: GPU Speed Of Light' "$OUT/ncu.txt") kernel reports in ncu.txt)")
}

# The portable path (build-portable: compute_80 PTX, JIT-compiled by the driver for this GPU, so
# none of the sm_90 code: no bulk copies, no wgmma, no griddepcontrol): its kernel tests and
# vk_gemm_stream tests, 320 prompts at 48 sequences against this build's H100 code by the top-5
# rule, then B2 and B1 with it, for the record of what another GPU's code path costs here.
stage_portable() {
    if [ ! -x "$P80/bin/vesta" ]; then
        summary+=("portable: no $P80 (scripts/gpu-run.sh build-portable, carry .gpu/bins80.tar.xz)")
        return
    fi
    export CUDA_CACHE_MAXSIZE=4294967296 # the JIT-compiled kernels, kept for the next process
    echo "== portable kernel tests =="
    timeout 400 "$P80/bin/test_kernels" all 2>&1 | tee "$OUT/portable_kernels.log" | tail -8
    summary+=("portable kernel tests: $(tail -1 "$OUT/portable_kernels.log") (rc ${PIPESTATUS[0]})")
    timeout 300 "$P80/bin/test_gemm_stream" 2>&1 | tee "$OUT/portable_gemm_stream.log" | grep -v "^  \|^stream" | tail -6
    summary+=("portable vk_gemm_stream tests: $(tail -1 "$OUT/portable_gemm_stream.log") (rc ${PIPESTATUS[0]})")
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    prompts320 "$W/pt_prompts.jsonl"
    gen320 "$W/pt_prompts.jsonl" "$W/pt_h100.jsonl" "$W/pt.log" --max-num-seqs 48
    V="$P80/bin/vesta" gen320 "$W/pt_prompts.jsonl" "$W/pt_portable.jsonl" "$W/pt.log" --max-num-seqs 48
    summary+=("$(python3 bench/gpu/compare_e2e.py --top5 "$W/pt_h100.jsonl" "$W/pt_portable.jsonl" \
        --label '320 prompts at 48 seqs, portable path vs sm_90a' | tee -a "$W/pt.log")")
    local VESTA_BENCH_DUMMY=1 name v
    for name in h100 portable; do
        v=$V
        [ "$name" = portable ] && v="$P80/bin/vesta"
        V=$v vb "b2_$name" latency --input-len 128 --output-len 512 --num-iters 3 --num-iters-warmup 1 --temperature 0
        summary+=("B2 $name: $(grep -h 'tokens/s decode' "$W/bench.log" | tail -1)")
        V=$v vb "b1_$name" throughput --num-prompts 512 --input-len 512 --output-len 256 --max-model-len 1024
        summary+=("B1 $name: $(grep -h '^Throughput' "$W/bench.log" | tail -1)")
    done
}

# Nsight Compute on one launch of vk_gemm_stream's version 3 in bench_gemm_stream (by default the
# third: q|k|v at n = 32 in the bench's correctness checks), whole-GPU sections including how the
# work spread over the SMs; the bench is stopped after that launch.
stage_gemmprof() {
    local ncu=/usr/local/cuda/bin/ncu
    [ -x "$ncu" ] || ncu=ncu
    timeout 300 "$ncu" -k "regex:gst_kernel" --launch-skip "${VESTA_NCU_SKIP:-2}" --launch-count 1 --kill yes \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
        --section LaunchStats --section Occupancy --section WorkloadDistribution \
        "$B/bin/bench_gemm_stream" >"$OUT/ncu_gemm.txt" 2>&1
    summary+=("ncu gemm: rc $? ($(grep -c 'Section: ' "$OUT/ncu_gemm.txt") sections)")
    grep -E "gst_kernel|Duration|Throughput|Stall|Eligible|Issued|Active|Cycles|Waves|Registers|Shared" \
        "$OUT/ncu_gemm.txt" | head -70
}

# Two or more GPUs: TP=2 against TP=1 on the 8B shape with dummy weights (the same random model at
# every N: the weights are made whole, then sliced), single-stream decode and B1 at each.
stage_tp2() {
    [ -f "$M8D/config.json" ] || python3 bench/gpu/hf_e2e.py config "$M8D" 2>&1 | grep '\[hf\]'
    nvidia-smi topo -m 2>&1 | head -5 | tee "$W/topo.txt"
    python3 -c "import json, random; r = random.Random(0); [print(json.dumps({'prompt_token_ids': [r.randrange(128000) for _ in range(r.randrange(16, 300))]})) for i in range(8)]" >"$W/tp_prompts.jsonl"
    local n
    for n in 1 2; do
        timeout 240 "$V" generate --backend cuda --model "$M8D" --load-format dummy --input "$W/tp_prompts.jsonl" \
            --output "$W/tp$n.jsonl" --temperature 0 --max-tokens 32 --ignore-eos --logprobs 5 --no-progress \
            --max-model-len 1024 --tensor-parallel-size $n >>"$W/tp2.log" 2>&1
        echo "generate TP=$n: rc $? $(grep -h 'tp: GPU replica' "$W/tp2.log" | tail -1)"
    done
    python3 bench/gpu/compare_e2e.py --top5 "$W/tp1.jsonl" "$W/tp2.jsonl" \
        --label "TP=2 vs TP=1 (8 prompts x 32 greedy tokens)" | tee -a "$W/tp2.log"
    [ -n "${VESTA_TP_QUICK:-}" ] && return # VESTA_TP_QUICK: the comparison only
    for n in 1 2; do
        echo "== single stream TP=$n: 128 in -> 256 out =="
        timeout 200 "$V" bench latency --model "$M8D" --load-format dummy --input-len 128 --output-len 256 --num-iters 2 \
            --num-iters-warmup 1 --temperature 0 --tensor-parallel-size $n 2>&1 | grep -v "^cuda:" | tail -2
    done
    for n in 1 2; do
        echo "== B1 at TP=$n =="
        timeout 240 "$V" bench throughput --model "$M8D" --load-format dummy --num-prompts 512 --input-len 512 \
            --output-len 256 --max-model-len 1024 --tensor-parallel-size $n 2>&1 | grep -v "^cuda:" | tail -3
    done
    [ -n "${VESTA_TP_HF:-}" ] || return
    echo "== TP=2 against Hugging Face on the saved 8B-shaped checkpoint =="
    [ -f "$M8/hf_ref.json" ] || python3 bench/gpu/hf_e2e.py make "$M8" 2>&1 | tee "$W/hf.log" | grep '\[hf\]'
    gen "$M8" "$M8/prompts.jsonl" llama_tp2 --max-model-len 1536 --tensor-parallel-size 2
    summary+=("$(cmp_ref "$M8/hf_ref.json" "$W/llama_tp2.jsonl" --label 'llama8b TP=2 vs HF bf16')")
    gen "$M8" "$M8/prompts.jsonl" llama_tp2_eager --max-model-len 1536 --tensor-parallel-size 2 --enforce-eager
    summary+=("$(cmp_ref "$M8/hf_ref.json" "$W/llama_tp2_eager.jsonl" --label 'llama8b TP=2 --enforce-eager vs HF')")
}

case "${1:-}" in
build) shift; build "$B" 90a-real .gpu/bins.tar.xz "$@" ;; # build [TARGET...]: only these packed (a smaller carry)
build-portable) build "$P80" 80-virtual .gpu/bins80.tar.xz test_kernels test_gemm_stream vesta ;;
build-base) # build-base DIR [TARGET...]: DIR's vesta and kernel_bench, or the TARGETs (same flags,
    # its own build folder) for the stages that compare with it (base, baseab, attnab, serveab)
    [ -d "${2:-}" ] || { echo "build-base DIR: DIR is the checkout to build"; exit 2; }
    dir=$2
    shift 2
    targets="${*:-vesta kernel_bench}"
    cmake -S "$dir" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real >/dev/null || exit 1
    cmake --build "$dir/build" -j2 --target $targets || exit 1
    for t in $targets; do strip "$dir/build/bin/$t"; done
    tar -C "$dir/build" -cf - $(for t in $targets; do echo "bin/$t"; done) | xz -T2 -6 -c >.gpu/base.tar.xz
    du -sh .gpu/base.tar.xz
    ;;
run)
    shift
    setup_remote
    for s in "$@"; do
        case "$s" in
        kernels) stage_kernels ;;
        e2e) stage_e2e ;;
        small) stage_small ;;
        e2e8b) stage_e2e_8b ;;
        resadd) stage_resadd ;;
        resbench) stage_resbench ;;
        partgemm) stage_partgemm ;;
        lora) stage_lora ;;
        invariant) stage_invariant ;;
        invariant-real) stage_invariant_real ;;
        invariant-bench) stage_invariant_bench ;;
        bench) stage_bench ;;
        peer) stage_peer ;;
        serve) stage_serve ;;
        tp2) stage_tp2 ;;
        tune) stage_tune ;;
        profile) stage_profile ;;
        cache) stage_cache ;;
        decode) stage_decode ;;
        ncu) stage_ncu ;;
        stream) stage_stream ;;
        tma) stage_tma ;;
        gemm) stage_gemm ;;
        smalln) stage_smalln ;;
        b1ab) stage_b1ab ;;
        b3ab) stage_b3ab ;;
        b3prof) stage_b3prof ;;
        gemmprof) stage_gemmprof ;;
        portable) stage_portable ;;
        pdl) stage_pdl ;;
        pdlall) stage_pdlall ;;
        rows) stage_rows ;;
        tp1) stage_tp1 ;;
        gemmtests) stage_gemmtests ;;
        attnab) stage_attnab ;;
        same320) stage_same320 ;;
        serveab) stage_serveab ;;
        tp2pdl) stage_tp2pdl ;;
        serveenv) stage_serveenv ;;
        prefill) stage_prefill ;;
        attncheck) stage_attncheck ;;
        kbbaseline) stage_kbbaseline ;;
        b4probe) stage_b4probe ;;
        b4attn) stage_b4attn ;;
        prefillprof) stage_prefillprof ;;
        final) stage_final ;;
        base) stage_base ;;
        baseab) stage_baseab ;;
        tiles) stage_tiles ;;
        ref320) stage_ref320 ;;
        tp4check) stage_tp4check ;;
        tp4lat) stage_tp4lat ;;
        tp70) stage_tp70 ;;
        tp4b1) stage_tp4b1 ;;
        tp4prof) stage_tp4prof ;;
        tp4nccl) stage_tp4nccl ;;
        tpar) stage_tpar ;;
        tp70lat) stage_tp70lat ;;
        tpcut) stage_tpcut ;;
        tp4hf) stage_tp4hf ;;
        b4) stage_b4 ;;
        wide) stage_wide ;;
        widekb) stage_widekb ;;
        b4trace) stage_b4trace ;;
        b1trace) stage_b1trace ;;
        overlap) stage_overlap ;;
        green) stage_green ;;
        addrab) stage_addrab ;;
        addrbench) stage_addrbench ;;
        v7prof) stage_v7prof ;;
        b1budget) stage_b1budget ;;
        v7var) stage_v7var ;;
        v7swz) stage_v7swz ;;
        v7rule) stage_v7rule ;;
        v5loop) stage_v5loop ;;
        devpart) stage_devpart ;;
        devbench) stage_devbench ;;
        alias) stage_alias ;;
        tp2wide) stage_tp2wide ;;
        widencu) stage_widencu ;;
        wideab) stage_wideab ;;
        wg) stage_wg ;;
        wgall) stage_wgall ;;
        all) stage_kernels; stage_e2e; stage_bench ;;
        *) echo "unknown stage $s"; exit 2 ;;
        esac
        tar -C "$W" -czf "$OUT/logs.tgz" . 2>/dev/null # after every stage: a time-out keeps what ran
    done
    tar -C "$W" -czf "$OUT/logs.tgz" . 2>/dev/null
    echo "== summary =="
    printf '%s\n' "${summary[@]}"
    [ -f "$OUT/table.txt" ] && cat "$OUT/table.txt"
    ;;
*) sed -n '2,9p' "$0"; exit 2 ;;
esac
