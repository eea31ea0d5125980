#!/bin/sh
# GPU machine, one GPU: the NCCL tensor-parallel path at N = 1 against the plain CUDA backend
# (issue 6). VESTA_TP_FORCE_REPLICA=1 makes `vesta generate --backend cuda` start a GPU replica of
# one rank: the leader's "tp" backend broadcasting each step over shared memory, the NCCL
# communicator (1 rank), the vocabulary-parallel embedding + bf16 all-reduce, the all-reduces after
# o_proj and down, the LM head's all-gather and reordering. A sum over one rank is the identity,
# so the outputs must be byte-identical: token ids, log-probabilities (top 20), text.
# Compared in three modes: decode CUDA graphs, --enforce-eager, and seeded random sampling.
#   gpu_tp1_exact.sh VESTA MODEL PROMPTS.jsonl [extra generate args...]
# TP1_MODES (default "graphs eager sampled") picks the modes. Prints one PASS/FAIL line per mode;
# exit 1 on any difference.
set -u
vesta=$1; model=$2; prompts=$3; shift 3
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
export NCCL_NVLS_ENABLE=0
# A replica's ranks multiply with cuBLAS at every size (the weight-streaming kernel that the plain
# backend takes for 5-16 rows on sm_90a is not used on shards): the plain run does the same, so
# that the two differ only in the tensor-parallel path.
export VESTA_GEMM_STREAM=0
fail=0
run() { # NAME FORCE ARGS...
    name=$1; force=$2; shift 2
    VESTA_TP_FORCE_REPLICA=$force "$vesta" generate --backend cuda --model "$model" --input "$prompts" \
        --output "$dir/$name.jsonl" --max-tokens 32 --ignore-eos --logprobs 20 --no-progress "$@" \
        2>"$dir/$name.err" || { echo "FAIL: $name: vesta generate failed:"; tail -5 "$dir/$name.err"; return 1; }
}
pair() { # MODE ARGS...
    mode=$1; shift
    run "${mode}_plain" 0 "$@" && run "${mode}_tp1" 1 "$@" || { fail=1; return; }
    if ! grep -q "tp: GPU replica of 1 rank" "$dir/${mode}_tp1.err"; then
        echo "FAIL: $mode: the forced run did not start a GPU replica"; tail -3 "$dir/${mode}_tp1.err"; fail=1; return
    fi
    if grep -q "tp: GPU replica" "$dir/${mode}_plain.err"; then
        echo "FAIL: $mode: the plain run started a replica"; fail=1; return
    fi
    n=$(wc -l <"$dir/${mode}_plain.jsonl")
    if [ "$n" -gt 0 ] && cmp -s "$dir/${mode}_plain.jsonl" "$dir/${mode}_tp1.jsonl"; then
        echo "PASS: $mode: NCCL TP=1 replica identical to the plain backend ($n prompts, tokens + top-20 logprobs)"
    else
        echo "FAIL: $mode: outputs differ ($n prompts)"; diff "$dir/${mode}_plain.jsonl" "$dir/${mode}_tp1.jsonl" | head -4 | cut -c1-300
        fail=1
    fi
}
for mode in ${TP1_MODES:-graphs eager sampled}; do
    case $mode in
    graphs) pair graphs --temperature 0 "$@" ;;
    eager) pair eager --temperature 0 --enforce-eager "$@" ;;
    sampled) pair sampled --temperature 0.8 --top-p 0.95 --seed 7 "$@" ;;
    *) echo "FAIL: unknown mode $mode"; fail=1 ;;
    esac
done
exit $fail
