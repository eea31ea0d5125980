#!/usr/bin/env bash
# GPU runs for the CUDA backend, in two halves:
#   scripts/gpu-run.sh build            here (no GPU needed): builds the CUDA binaries into
#                                       build-gpu/ and fetches the Debian runtime libraries the
#                                       binaries link into .gpu/debs (both git-ignored)
#   scripts/gpu-run.sh run STAGE...     on the GPU machine (through the device tool, carrying
#                                       build-gpu/bin and .gpu): STAGE is kernels, e2e, bench or all
# Logs go to $OUT (the device tool's folder; ./out when unset); a short table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${VESTA_GPU_BUILD:-build-gpu}
OUT=${OUT:-$ROOT/out}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1

build() {
    cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    local targets="test_kernels kernel_bench"
    for t in vesta vesta_backend_cuda_test; do
        if cmake --build "$B" --target help | grep -q "^\.\.\. $t\$"; then targets="$targets $t"; fi
    done
    cmake --build "$B" -j2 --target $targets || exit 1
    mkdir -p .gpu/debs
    # Runtime libraries of our binaries that the GPU machine (Ubuntu, CUDA only) lacks.
    local need
    need=$(for f in "$B"/bin/*; do ldd "$f" 2>/dev/null; done | awk '/=>/ {print $3}' | sort -u |
        grep -v -e cuda -e libcublas -e libcudart -e '^/lib/x86_64-linux-gnu/lib\(c\|m\|dl\|rt\|pthread\|gcc_s\|stdc++\)\.so' |
        while read -r lib; do dpkg -S "$lib" 2>/dev/null | cut -d: -f1; done | sort -u)
    (cd .gpu/debs && for p in $need; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null 2>&1 || echo "could not fetch $p"; done)
    du -sh "$B/bin" .gpu
    echo "carry: $B/bin .gpu"
}

setup_remote() {
    mkdir -p "$OUT" /tmp/deb
    for f in .gpu/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /tmp/deb; done
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
    "$B/bin/test_kernels" all 2>&1 | tee "$OUT/kernels.log"
    local rc=${PIPESTATUS[0]}
    summary+=("kernel tests: $(tail -1 "$OUT/kernels.log") (rc $rc)")
    echo "== kernel bench =="
    "$B/bin/kernel_bench" "$OUT/kernel_bench.csv" 2>&1 | tee "$OUT/kernel_bench.log"
}

stage_e2e() {
    [ -x scripts/gpu-e2e.sh ] && scripts/gpu-e2e.sh "$B" "$OUT"
    summary+=("e2e: $(tail -1 "$OUT/e2e.log" 2>/dev/null)")
}

stage_bench() {
    [ -x scripts/gpu-bench.sh ] && scripts/gpu-bench.sh "$B" "$OUT"
    summary+=("bench: see $OUT/bench.log")
}

case "${1:-}" in
build) build ;;
run)
    shift
    setup_remote
    for s in "$@"; do
        case "$s" in
        kernels) stage_kernels ;;
        e2e) stage_e2e ;;
        bench) stage_bench ;;
        all) stage_kernels; stage_e2e; stage_bench ;;
        *) echo "unknown stage $s"; exit 2 ;;
        esac
    done
    echo "== summary =="
    printf '%s\n' "${summary[@]}"
    [ -f "$OUT/table.txt" ] && cat "$OUT/table.txt"
    ;;
*) sed -n '2,9p' "$0"; exit 2 ;;
esac
