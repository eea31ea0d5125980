/* Stream-K for the weight-streaming products (gemm_stream.cu, gemm_stream_tma.cu): how a product's
 * (row block, k step) items are cut into one contiguous range per CTA, and how a row block that
 * several ranges share is summed.
 *
 * The items are numbered row block first; CTA c takes [start(c), start(c + 1)), so every SM
 * streams the same number of weight bytes whatever the shape. A row block that one range covers
 * whole is written by that CTA directly. One that ranges share is summed by the warp that finishes
 * it last: each warp writes its fp32 partial to the workspace and counts itself in; the last one
 * adds the partials in range order. No warp ever waits for another, and the order is fixed, so
 * results are bit-reproducible run to run and do not depend on n (the ranges follow the shape). */
#pragma once

namespace vk {

/* T items = row blocks x kst k steps, over G CTAs. */
struct sk_plan {
    int T, kst, G;
};
__host__ __device__ __forceinline__ int sk_start(const sk_plan &p, int c) { return (int)((long long)c * p.T / p.G); }
/* The CTA whose range holds item s: the largest c with start(c) <= s, i.e. c * T / G < s + 1. */
__host__ __device__ __forceinline__ int sk_cta_of(const sk_plan &p, int s) {
    return (int)(((long long)(s + 1) * p.G + p.T - 1) / p.T - 1);
}

/* Workspace layout: partials [G][2 (a range's first / last row block)][WARPS][F floats x 32 lanes],
 * then one counter per (row block, warp), zero between products. */
template <int F, int WARPS> struct sk_combiner {
    const sk_plan &p;
    float *part;
    int *cnt;
    int warp, lane;

    __device__ float *tile(int cta, int rb) const {
        const int slot = rb == sk_start(p, cta) / p.kst ? 0 : 1;
        return part + (((size_t)cta * 2 + slot) * WARPS + warp) * (F * 32);
    }

    /* acc holds this warp's sum of row block rb over items [a, b) of the CTA's range (lane-major:
     * element i of lane l is float i * 32 + l of the partial). Returns true when acc now holds the
     * whole row block's sum (the range covered it, or this warp finished it last and added every
     * range's part in range order); false when another CTA's warp will. */
    __device__ bool combine(float (&acc)[F], int rb, int a, int b) const {
        const int first = rb * p.kst, last = first + p.kst;
        if (a == first && b == last) return true;
        float *mine = tile(blockIdx.x, rb);
#pragma unroll
        for (int i = 0; i < F; i++) __stcg(mine + i * 32 + lane, acc[i]);
        __threadfence(); /* the partial is visible GPU-wide before this warp counts itself in */
        __syncwarp();
        const int c_lo = sk_cta_of(p, first), c_hi = sk_cta_of(p, last - 1);
        int *counter = cnt + rb * WARPS + warp;
        int seen = 0;
        if (lane == 0) seen = atomicAdd(counter, 1);
        seen = __shfl_sync(0xffffffffu, seen, 0);
        if (seen != c_hi - c_lo) return false; /* another range still owes its part */
        __threadfence();
#pragma unroll
        for (int i = 0; i < F; i++) acc[i] = 0.f;
        for (int c = c_lo; c <= c_hi; c++) { /* fixed order: bit-reproducible */
            const float *src = tile(c, rb);
#pragma unroll
            for (int i = 0; i < F; i++) acc[i] += __ldcg(src + i * 32 + lane);
        }
        if (lane == 0) atomicExch(counter, 0); /* ready for the next product */
        return true;
    }
};

} // namespace vk
