#!/bin/sh
# CPU batch-invariant mode against the default mode (and, given BASE, another build's
# batch-invariant mode) on three workloads, interleaved, greedy, EOS ignored:
#   one sequence generating 128 tokens; 32 sequences of 16 prompt tokens generating 64 each;
#   one 1,024-token prompt (its first token only).
# Usage: bench/cpu/invariant.sh VESTA MODEL [BASE_VESTA]   (docs/benchmarks.md, "CPU batch-invariant")
vesta=$1 model=$2 base=${3:-}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
run() { # run LABEL BINARY [flags]: the throughput line of one `vesta bench throughput`
    label=$1 bin=$2
    shift 2
    line=$("$bin" bench throughput --backend cpu --model "$model" --temperature 0 "$@" 2>&1 | grep '^Throughput')
    echo "$label: ${line:-FAILED}"
}
for w in "1 9 128" "32 16 64" "1 1024 1"; do
    set -- $w
    shape="--num-prompts $1 --input-len $2 --output-len $3"
    echo "== $1 x ($2 -> $3) =="
    run "default" "$vesta" $shape
    run "batch-invariant" "$vesta" $shape --batch-invariant
    [ -n "$base" ] && run "batch-invariant, base build" "$base" $shape --batch-invariant
done
exit 0
