/* Sampling on the GPU, one 1024-thread block per row, matching the CPU reference sampler
 * (worker/sampler/sampler.h) step for step: raw logprobs, logit bias, min_tokens stop mask,
 * repetition / frequency / presence penalties, greedy argmax (ties: lowest id), temperature,
 * min_p, and the inverse-CDF draw in token-id order with u = vk_rng_uniform(seed, offset),
 * probabilities as exp(double(x) - max) like the reference. Rows with top-k or top-p active are
 * NOT sampled here: their token is set to VK_SAMPLE_ON_HOST (-2) and the caller samples them with
 * the reference (which sorts); everything else in this file runs for them too (nothing). */
#include <float.h>

#include "common.cuh"

using namespace vk;

#define SAMPLE_THREADS 1024
#define SEEN_BIT 0x40000000

__host__ __device__ static inline uint64_t rng_mix(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

__host__ __device__ static inline double rng_uniform(uint64_t seed, uint64_t offset) {
    uint64_t x = rng_mix(seed ^ rng_mix(offset + 0x9E3779B97F4A7C15ULL));
    return (double)(x >> 11) * 0x1.0p-53;
}

extern "C" double vk_rng_uniform(uint64_t seed, uint64_t offset) { return rng_uniform(seed, offset); }

extern "C" size_t vk_sample_work_bytes(int rows, int vocab) { return (size_t)rows * vocab * sizeof(float); }

struct cand {
    float v;
    int id;
};
/* The reference's total order: larger value first, then smaller id. id < 0 = none. */
__device__ __forceinline__ bool before(cand a, cand b) {
    if (b.id < 0) return a.id >= 0;
    if (a.id < 0) return false;
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}
__device__ __forceinline__ cand warp_best(cand c) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        cand x;
        x.v = __shfl_xor_sync(0xffffffffu, c.v, o);
        x.id = __shfl_xor_sync(0xffffffffu, c.id, o);
        if (before(x, c)) c = x;
    }
    return c;
}
__device__ cand block_best(cand c, cand *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    c = warp_best(c);
    __syncthreads();
    if (lane == 0) sh[w] = c;
    __syncthreads();
    c = lane < (int)(blockDim.x >> 5) ? sh[lane] : cand{0.f, -1};
    return warp_best(c);
}
__device__ double block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/* Exclusive prefix sum over the block's threads. */
__device__ double block_exclusive_scan_d(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    double incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        double y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    __syncthreads();
    if (lane == 31) sh[w] = incl;
    __syncthreads();
    if (w == 0) {
        double s = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        double si = s;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            double y = __shfl_up_sync(0xffffffffu, si, o);
            if (lane >= o) si += y;
        }
        sh[lane] = si - s; /* exclusive over warps */
    }
    __syncthreads();
    return sh[w] + incl - v;
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *logits, int V, const vk_sample_row *params, const int32_t *ids,
              const float *bias, float *work, int32_t *counts, vk_sample_out *out) {
    __shared__ cand shc[32];
    __shared__ double shd[32];
    __shared__ float shf[32];
    __shared__ int found;
    const int row = blockIdx.x, tid = threadIdx.x;
    const vk_sample_row P = params[row];
    const float *L = logits + (size_t)row * V;
    float *W = work + (size_t)row * V;
    int32_t *C = counts + (size_t)row * V;
    vk_sample_out *o = out + row;
    int token = -1;

    bool filtered = (P.top_k > 0 && P.top_k < V) || P.top_p < 1.0f;
    bool greedy = P.temperature < 1e-5f;
    if (filtered && !greedy) {
        token = -2; /* VK_SAMPLE_ON_HOST */
    } else {
        for (int i = tid; i < V; i += SAMPLE_THREADS) W[i] = L[i];
        __syncthreads();
        for (int j = tid; j < P.num_bias; j += SAMPLE_THREADS) {
            int t = ids[P.bias_off + j];
            if (t >= 0 && t < V) atomicAdd(&W[t], bias[P.bias_off + j]);
        }
        __syncthreads();
        for (int j = tid; j < P.num_stop; j += SAMPLE_THREADS) {
            int t = ids[P.stop_off + j];
            if (t >= 0 && t < V) W[t] = -INFINITY;
        }
        __syncthreads();
        int nseen = P.num_prompt + P.num_output;
        if (P.repetition_penalty != 1.0f) {
            for (int j = tid; j < nseen; j += SAMPLE_THREADS) {
                int t = j < P.num_prompt ? ids[P.prompt_off + j] : ids[P.output_off + j - P.num_prompt];
                if (t >= 0 && t < V) atomicOr(&C[t], SEEN_BIT);
            }
            __syncthreads();
            for (int j = tid; j < nseen; j += SAMPLE_THREADS) {
                int t = j < P.num_prompt ? ids[P.prompt_off + j] : ids[P.output_off + j - P.num_prompt];
                if (t >= 0 && t < V && (atomicAnd(&C[t], ~SEEN_BIT) & SEEN_BIT)) {
                    float l = W[t];
                    W[t] = l > 0 ? __fdiv_rn(l, P.repetition_penalty) : __fmul_rn(l, P.repetition_penalty);
                }
            }
            __syncthreads();
        }
        if (P.frequency_penalty != 0.0f || P.presence_penalty != 0.0f) {
            for (int j = tid; j < P.num_output; j += SAMPLE_THREADS) {
                int t = ids[P.output_off + j];
                if (t >= 0 && t < V) atomicAdd(&C[t], 1);
            }
            __syncthreads();
            for (int j = tid; j < P.num_output; j += SAMPLE_THREADS) {
                int t = ids[P.output_off + j];
                if (t < 0 || t >= V) continue;
                int c = atomicExch(&C[t], 0);
                if (c)
                    W[t] = __fsub_rn(W[t], __fadd_rn(__fmul_rn(P.frequency_penalty, (float)c), P.presence_penalty));
            }
            __syncthreads();
        }

        if (greedy) {
            cand best = {0.f, -1};
            for (int i = tid; i < V; i += SAMPLE_THREADS) {
                cand c = {W[i], i};
                if (c.v > -INFINITY && before(c, best)) best = c;
            }
            token = block_best(best, shc).id;
        } else {
            float inv_t = 1.0f / P.temperature;
            float mx = -INFINITY;
            for (int i = tid; i < V; i += SAMPLE_THREADS) {
                float x = __fmul_rn(W[i], inv_t);
                if (x > -INFINITY) mx = fmaxf(mx, x);
            }
            mx = block_max(mx, shf);
            /* Each thread owns a contiguous chunk (the walk is in id order). */
            int chunk = (V + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
            int b = tid * chunk, e = min(V, b + chunk);
            double local = 0.0;
            int last_kept = -1;
            for (int i = b; i < e; i++) {
                float x = __fmul_rn(W[i], inv_t);
                if (!(x > -INFINITY)) continue;
                double p = exp((double)x - (double)mx);
                if (P.min_p > 0.0f && p < (double)P.min_p) continue;
                local += p;
                last_kept = i;
            }
            double pre = block_exclusive_scan_d(local, shd);
            double z = block_sum_d(local, shd);
            int lk = (int)block_max((float)last_kept, shf); /* ids < 2^24: exact in float */
            double target = rng_uniform(P.seed, P.offset) * z;
            if (tid == 0) found = lk;
            __syncthreads();
            if (local > 0.0 && pre + local > target && !(pre > target)) {
                double acc = pre;
                for (int i = b; i < e; i++) {
                    float x = __fmul_rn(W[i], inv_t);
                    if (!(x > -INFINITY)) continue;
                    double p = exp((double)x - (double)mx);
                    if (P.min_p > 0.0f && p < (double)P.min_p) continue;
                    acc += p;
                    if (acc > target) {
                        atomicMin(&found, i);
                        break;
                    }
                }
            }
            __syncthreads();
            token = z > 0.0 ? found : -1;
        }
    }

    /* Raw logprobs (log-softmax of the unprocessed logits). */
    if (P.num_logprobs >= 0 && token != -2) {
        float mx = -INFINITY;
        for (int i = tid; i < V; i += SAMPLE_THREADS) mx = fmaxf(mx, L[i]);
        mx = block_max(mx, shf);
        double z = 0.0;
        for (int i = tid; i < V; i += SAMPLE_THREADS)
            if (L[i] > -INFINITY) z += exp((double)L[i] - (double)mx);
        z = block_sum_d(z, shd);
        double lse = (double)mx + log(z);
        if (tid == 0) o->logprob = token >= 0 ? (float)((double)L[token] - lse) : 0.f;
        int n = min(min(P.num_logprobs, VK_MAX_LOGPROBS), V);
        cand prev = {0.f, -1};
        for (int r = 0; r < n; r++) {
            cand best = {0.f, -1};
            for (int i = tid; i < V; i += SAMPLE_THREADS) {
                cand c = {L[i], i};
                if (c.v == c.v && (prev.id < 0 || before(prev, c)) && before(c, best)) best = c;
            }
            best = block_best(best, shc);
            if (tid == 0) {
                o->top_ids[r] = best.id;
                o->top_logprobs[r] = (float)((double)best.v - lse);
            }
            prev = best;
        }
    } else if (tid == 0) {
        o->logprob = 0.f;
    }
    if (tid == 0) o->token = token;
}

extern "C" cudaError_t vk_sample(const float *logits, int rows, int vocab, const vk_sample_row *params,
                                 const int32_t *ids_pool, const float *bias_pool, float *work,
                                 int32_t *counts, vk_sample_out *out, cudaStream_t s) {
    if (rows <= 0) return cudaSuccess;
    if (vocab <= 0 || vocab >= (1 << 24)) return cudaErrorInvalidValue;
    sample_kernel<<<rows, SAMPLE_THREADS, 0, s>>>(logits, vocab, params, ids_pool, bias_pool, work, counts, out);
    return cudaGetLastError();
}
