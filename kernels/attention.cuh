/* Internal entry points of the two attention kernels (vk_attention dispatches to them). */
#pragma once
#include "common.cuh"

cudaError_t vk_attention_decode(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v1(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v2(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v3(const vk_attention_args *a, cudaStream_t s); /* v1 + next-pass prefetch */
/* tensor cores (mma.sync) over the cp.async pipeline; _v5x: its configuration variant (0 = v5's own,
 * < VK_DECODE_V5_VARIANTS, else cudaErrorInvalidValue) */
cudaError_t vk_attention_decode_v5(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v5x(const vk_attention_args *a, int variant, cudaStream_t s);
/* version 5's arithmetic with persistent warps that each stream their own K/V chunks across work
 * items (no block barrier, no cross-warp merge); _v7x: configuration variant (< VK_DECODE_V7_VARIANTS) */
cudaError_t vk_attention_decode_v7(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v7x(const vk_attention_args *a, int variant, cudaStream_t s);
/* Whether a batch's (sequence, KV head) pairs give at least 7/8 of the warps of version 7's
 * default configuration a work item, whatever the contexts: a decode graph is captured for a batch
 * size with the longest context the model allows, so the real contexts are not known there. */
int vk_attention_decode_v7_fills(int num_seqs, int KVH);
/* The current device's SM count (132 when it cannot be read). */
int vk_sm_count(void);
/* ---- How the decode kernels cut sequences into key ranges (work units / items) ----
 * A range's partial result goes to the scratch and the combine kernel merges a sequence's
 * partials; one range writes the output directly. A decode graph is captured with the model's
 * longest context as its bound, so the host knows only the bound: versions 5 and 7 pick their
 * ranges on the device from the batch's longest REAL context (since run 153), and the combine
 * kernel makes version 5's pick again or reads version 7's from the partition slot (version 7's
 * pick depends on its grid); the host sizes the scratch stride (splits per (sequence, head)) for
 * any context up to the bound. */

/* Extra ranges the balanced pick may cut the longest context into, beyond ceil(max_ctx / pmax). */
#define VK_DECODE_EXTRA_SPLITS 3

/* 32-bit divisions throughout (the device runs these per block, and a 64-bit division is a long
 * software routine): products stay below 2^31 for up to 131,072 pairs (1,024 sequences x 128 KV
 * heads) and 16,384 ranges per pair. */
__host__ __device__ inline int vk_decode_round_up(int x, int m) { return (x + m - 1) / m * m; }

/* Keys per range for `pairs` (sequence, KV head) pairs dealt round-robin to `workers` (version 5's
 * blocks, version 7's warps), the longest context max_ctx, ranges of at most pmax keys in
 * multiples of `round`. The busiest worker gets ceil(items / workers) ranges: one range per pair
 * gives 150-255 sequences at 8 KV heads one or two items on each of an H100's 1,056 version-7
 * warps, the last third of the time on the warps holding two. Among n_min .. n_min + EXTRA ranges
 * for the longest context (n_min = ceil(max_ctx / pmax)) this takes the count that loads the
 * busiest worker least; a count above n_min only where it saves a quarter of n_min's load when
 * n_min is 1 (the cut brings partials and the combine kernel: run 149 measured a cut saving an
 * eighth 5 % slower), an eighth otherwise. B1's 512 sequences keep one range each. */
__host__ __device__ inline int vk_decode_balanced_part(int pairs, int workers, int max_ctx, int pmax, int round) {
    if (max_ctx < 1) max_ctx = 1;
    if (pairs < 1) pairs = 1;
    if (workers < 1) workers = 1;
    const int nmin = (max_ctx + pmax - 1) / pmax;
    int best = 0;
    long long best_load = 0, base_load = 0;
    for (int n = nmin; n <= nmin + VK_DECODE_EXTRA_SPLITS; n++) {
        const int per = vk_decode_round_up((max_ctx + n - 1) / n, round);
        const int items = pairs * ((max_ctx + per - 1) / per);
        const long long load = (long long)((items + workers - 1) / workers) * per;
        if (n == nmin) {
            base_load = best_load = load;
            best = per;
        } else if (load < best_load && (nmin == 1 ? 4 * load <= 3 * base_load : 8 * load <= 7 * base_load)) {
            best = per;
            best_load = load;
        }
    }
    return best;
}

/* Versions 1, 2 and 5: keys per range for a batch whose longest context is max_ctx, on a GPU of
 * `sms` SMs (version 5: 2 blocks per SM). Fewer pairs than blocks: about blocks / pairs ranges
 * per pair, so one sequence's long context is read by the whole GPU (single-stream decode), never
 * more units than blocks (a second, partial wave: 16 sequences under 640 keys took 0.035 ms in
 * three 224-key ranges against 0.029 in two, run 149). More: vk_decode_balanced_part over the
 * blocks (64-150 sequences over 640 keys ran 9-11 % faster whole than cut at 512 keys, run 149). */
__host__ __device__ inline int vk_decode_partition_on(int num_seqs, int KVH, int max_ctx, int sms) {
    const int pairs = num_seqs * KVH, slots = 2 * sms;
    if (max_ctx < 1) max_ctx = 1;
    if (pairs >= slots) return vk_decode_balanced_part(pairs, slots, max_ctx, VK_DECODE_PARTITION, 32);
    const int splits = slots / (pairs > 0 ? pairs : 1);
    const int p = vk_decode_round_up((max_ctx + splits - 1) / splits, 32);
    return p > VK_DECODE_PARTITION ? VK_DECODE_PARTITION : p;
}
int vk_decode_partition(int num_seqs, int KVH, int max_ctx); /* the same on this device's SMs */

/* Version 7's keys per range: `pairs` dealt to `warps` warps. */
__host__ __device__ inline int vk_decode_v7_partition_on(int pairs, int warps, int max_ctx) {
    return vk_decode_balanced_part(pairs, warps, max_ctx, VK_DECODE_PARTITION, 16);
}

/* The most splits per (sequence, head) the scratch holds for a batch of num_seqs: 8,192 / num_seqs,
 * at least 16. Without a cap the partials' layout took num_seqs x H x ceil(bound / 512) slots: 4.4
 * GB for 1,024 sequences under Llama-3.1-8B's 131,072-position bound, taken from the KV cache.
 * Under the cap a long bound gets longer ranges where many sequences share the step (which
 * keeps the GPU busy without splitting) and one sequence keeps its 264. */
__host__ __device__ inline int vk_decode_stride_cap(int num_seqs) {
    const int c = num_seqs > 0 ? 8192 / num_seqs : 8192;
    return c < 16 ? 16 : c;
}
/* Keys per range so that no context up to max_ctx splits more than max_splits times, a multiple
 * of `round` keys. */
__host__ __device__ inline int vk_decode_part_floor(int max_ctx, int max_splits, int round) {
    if (max_ctx < 1) max_ctx = 1;
    if (max_splits < 1) max_splits = 1;
    return vk_decode_round_up((max_ctx + max_splits - 1) / max_splits, round);
}
/* The partition from the bound (versions 1, 2, and 5 and 7 where the bound needs no split):
 * the version's pick at the bound, lengthened to the stride cap. */
int vk_decode_bound_partition(int num_seqs, int KVH, int bound);
int vk_decode_v7_bound_partition(int num_seqs, int KVH, int bound, int warps);

/* The scratch stride when version 5 or 7 picks on the device: the splits of any context up to
 * `bound` under the pick (at most the stride cap: the kernels lengthen their ranges to
 * vk_decode_part_floor of the real longest context and the stride). */
int vk_decode_v5_splits_bound(int num_seqs, int KVH, int bound);
int vk_decode_v7_splits_bound(int num_seqs, int bound);
/* The picks on the device from the batch's longest real context mx, for the launch's stride
 * max_splits. Version 5's is at most max(VK_DECODE_PARTITION, vk_decode_part_floor(bound,
 * max_splits, 32)), what its launcher sizes the block-table copy in shared memory for. */
__host__ __device__ inline int vk_decode_v5_device_part(int num_seqs, int KVH, int mx, int sms, int max_splits) {
    const int p = vk_decode_partition_on(num_seqs, KVH, mx, sms), f = vk_decode_part_floor(mx, max_splits, 32);
    return p > f ? p : f;
}
__host__ __device__ inline int vk_decode_v7_device_part(int pairs, int warps, int mx, int max_splits) {
    const int p = vk_decode_v7_partition_on(pairs, warps, mx), f = vk_decode_part_floor(mx, max_splits, 16);
    return p > f ? p : f;
}
/* Where the kernel that picked stores its partition for the combine kernel (part 0): after the
 * partials of the launch's stride. */
__device__ inline int *vk_decode_part_slot(const vk_attention_args &a, int max_splits) {
    return reinterpret_cast<int *>((float *)a.scratch + (size_t)a.num_seqs * a.H * max_splits * (a.D + 2));
}
/* The split-K merge of the decode kernels' partials. part 0: the attention kernel picked on the
 * device: with sms > 0 version 5's pick (vk_decode_v5_device_part on sms SMs), made again here from
 * the contexts before waiting on the attention kernel, else read from the partition slot. */
cudaError_t vk_decode_combine(const vk_attention_args *a, int max_splits, int part, int sms, cudaStream_t s);
size_t vk_attention_decode_scratch_bytes(int num_seqs, int H, int D, int max_context_len);
cudaError_t vk_attention_prefill(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_prefill_v2(const vk_attention_args *a, cudaStream_t s);
size_t vk_attention_prefill_scratch_bytes(int H, int D);
/* Wide tiles on wgmma (attention_prefill_wg.cu): the main kernel only, its partials (nsplit > 1)
 * at b->scratch for the prefill combine; cudaErrorNotSupported where
 * vk_prefill_wide_wgmma_supported says no. */
cudaError_t vk_attention_prefill_wide_wg(const vk_attention_args *b, int nsplit, int chunk, cudaStream_t s);
/* Whether its tensor copies take this block size: 8 or more consecutive slots of a block inside
 * a 64-key tile (gcd(block_size, 64) >= 8; 16, the default, copies whole blocks). */
int vk_attention_prefill_wide_wg_fits(int block_size);
/* Query rows (tiles x 64) whose prefill partials fit in scratch when the key range is split. */
#define VK_PREFILL_SPLIT_ROWS 4096
