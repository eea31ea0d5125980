/* Sampling on the GPU, one 1024-thread block per row, matching the CPU reference sampler
 * (worker/sampler/sampler.c) step for step: raw logprobs, logit bias, min_tokens stop mask,
 * repetition / frequency / presence penalties, greedy argmax (ties: lowest id), temperature,
 * min_p, top_k, top_p, and the inverse-CDF draw with u = vk_rng_uniform(seed, offset).
 *
 * Rows without top-k / top-p draw in token-id order, as the reference does (sample_in_order: its
 * masses exp(double(x) - max) taken as expf, rescaled and summed in fp64). Rows with top-k or
 * top-p follow the reference's sorted path: its candidates
 * are ordered by (value descending, id ascending) and both the top-p cut and the draw walk that
 * order. No sort here: each of the three steps is one "select" over that order, a most-significant-
 * digit radix select over the 56-bit composite key (ordered float bits of x, then ~id) with 8-bit
 * digits and block-shared histograms of counts and masses:
 *   top_k: the k-th element by count; everything with a value >= its value stays (vLLM keeps ties);
 *   top_p: the last element whose exclusive head mass is < top_p * z (the reference removes, from
 *          the bottom, every element whose ascending cumulative mass is <= 1 - top_p);
 *   draw:  the first element whose inclusive head mass is > u * z.
 * Masses are exp(x - max) in fp32 (expf), summed as 64-bit fixed point (2^S units, S chosen so that
 * vocab * 2^S < 2^63), so the selection is exact and deterministic for those masses; against the
 * reference's fp64 masses a probability-mass boundary can move by ~1e-6 of the total (expf error,
 * fixed-point truncation), so the token can differ only where u or 1 - top_p lies that close to a
 * boundary. Once a step leaves <= SEL_LIST candidates they are gathered into shared memory and
 * the later steps run there instead of over the whole row. */
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

#define SEL_LIST 4096 /* candidates kept in shared memory once a step leaves at most this many */

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
/* ---- Selection over the reference's sorted order (rows with top-k / top-p) ---- */

/* Ordered key of a float: larger value, larger key; -0 and +0 equal (the reference compares
 * floats); every finite value and +inf gives a key >= 0x00800000, so 0 can mean "not a
 * candidate". */
__device__ __forceinline__ uint32_t fkey(float v) {
    if (v == 0.f) v = 0.f;
    uint32_t b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float kval(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
/* Composite: descending composite order = the reference's order (value descending, id ascending). */
__device__ __forceinline__ uint64_t comp_of(uint32_t key, int id) { return ((uint64_t)key << 32) | (uint32_t)~id; }

enum { SEL_COUNT = 0, SEL_TOPP = 1, SEL_DRAW = 2 };
enum { SEL_RUN = 0, SEL_FIND = 1, SEL_DONE = 2, SEL_NONE = 3 };

struct sel_shared {
    unsigned cnt[256];
    unsigned long long mass[256];
    unsigned long long prefix, mask, before, comp;
    unsigned before_c, kept, nlist;
    int state;
    uint32_t lkey[SEL_LIST]; /* the gathered candidates (key, id) */
    int32_t lid[SEL_LIST];
};

struct sel_in {
    const uint32_t *K; /* the row's keys (global); 0 = not a candidate */
    int n;             /* elements: vocab for the row, S.nlist for the shared list */
    uint64_t lo;       /* candidates: composite >= lo */
    float mx;          /* the max value (mass exp(x - mx) <= 1) */
    float scale;       /* 2^S fixed-point scale */
};

/* Fixed-point mass of a key. */
__device__ __forceinline__ unsigned long long key_mass(uint32_t key, float mx, float scale) {
    float e = expf(__fsub_rn(kval(key), mx));
    return e > 0.f ? __float2ull_rz(e * scale) : 0ull; /* NaN (x = +inf) weighs nothing */
}

/* Warp 0 picks the digit bucket holding the target, walking the 256 buckets from the top. */
__device__ void sel_choose(sel_shared &S, int step, int shift, bool mass, int mode, double param,
                           unsigned long long kparam, bool key_only, unsigned long long &target) {
    const int lane = threadIdx.x;
    /* read before the scan's shuffles: the lane that picks the bucket overwrites it below */
    const unsigned long long before = S.before;
    unsigned long long s = 0;
    unsigned sc = 0;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        int b = 255 - 8 * lane - e;
        sc += S.cnt[b];
        s += mass ? S.mass[b] : S.cnt[b];
    }
    unsigned long long incl = s;
    unsigned inclc = sc;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long y = __shfl_up_sync(0xffffffffu, incl, o);
        unsigned yc = __shfl_up_sync(0xffffffffu, inclc, o);
        if (lane >= o) {
            incl += y;
            inclc += yc;
        }
    }
    if (step == 0) {
        unsigned long long total = __shfl_sync(0xffffffffu, incl, 31);
        if (mode == SEL_COUNT) {
            target = kparam;
        } else if (mode == SEL_TOPP) {
            /* kept iff head mass (exclusive) < X = total - (1 - top_p) * total */
            double tz = (double)total;
            double x = ceil(tz - param * tz);
            unsigned long long xi = x < 1.0 ? 1ull : (x >= tz ? total : (unsigned long long)x);
            target = xi - 1;
        } else {
            double t = floor(param * (double)total);
            target = t >= (double)total ? total - 1 : (unsigned long long)t;
        }
        if (total == 0 || total <= target) {
            if (lane == 0) S.state = SEL_NONE;
            return;
        }
    }
    unsigned long long excl = incl - s;
    if (before + excl <= target && before + incl > target) {
        unsigned long long acc = before + excl;
        unsigned accc = S.before_c + inclc - sc;
        for (int e = 0; e < 8; e++) {
            int b = 255 - 8 * lane - e;
            unsigned long long w = mass ? S.mass[b] : S.cnt[b];
            if (acc + w > target) {
                unsigned c = S.cnt[b];
                unsigned long long prefix = S.prefix | ((unsigned long long)b << shift);
                unsigned long long mask = S.mask | (0xffull << shift);
                if (step == 3) { /* ids < 2^24: bits 31..24 of ~id are all ones */
                    prefix |= 0xff000000ull;
                    mask |= 0xff000000ull;
                }
                S.prefix = prefix;
                S.mask = mask;
                S.before = acc;
                S.before_c = accc;
                if (c == 1) {
                    S.state = SEL_FIND;
                    S.kept = accc + 1;
                } else if (key_only && step == 3) {
                    S.state = SEL_DONE;
                    S.comp = prefix & 0xffffffff00000000ull;
                    S.kept = accc + c;
                } else if (step == 6) {
                    S.state = SEL_DONE;
                    S.comp = prefix;
                    S.kept = accc + 1;
                }
                break;
            }
            acc += w;
            accc += S.cnt[b];
        }
    }
}

/* One select over the candidates (composite >= in.lo) of the row (LIST false) or of the shared
 * list (LIST true): the first element, in the reference's order, whose inclusive cumulative
 * weight (count, or fixed-point mass when MASS) exceeds the target:
 *   SEL_COUNT: kparam;  SEL_TOPP: ceil(total - param * total) - 1;  SEL_DRAW: floor(param * total).
 * Leaves S.state (SEL_NONE when no element qualifies), S.comp (its composite; with key_only, the
 * key with id bits 0, i.e. the lowest composite of that value) and S.kept (how many candidates come
 * before it, plus itself, plus with key_only its ties). All threads call it; ends synced. */
template <bool LIST, bool MASS>
__device__ void sel_run(sel_shared &S, const sel_in &in, int mode, double param, unsigned long long kparam,
                        bool key_only) {
    const int tid = threadIdx.x;
    __syncthreads(); /* every thread is done reading the previous select's results */
    if (tid == 0) {
        S.prefix = 0;
        S.mask = 0;
        S.before = 0;
        S.before_c = 0;
        S.state = SEL_RUN;
    }
    unsigned long long target = 0; /* warp 0's copy */
    for (int step = 0; step < 7; step++) {
        const int shift = step < 4 ? 56 - 8 * step : 16 - 8 * (step - 4);
        if (tid < 256) {
            S.cnt[tid] = 0;
            if (MASS) S.mass[tid] = 0;
        }
        __syncthreads();
        const unsigned long long prefix = S.prefix, mask = S.mask;
        /* Two running (digit, count, mass) entries per thread: the first digits of a row take few
         * distinct values, so most elements are added in registers, not by shared atomics. */
        int d0 = -1, d1 = -1;
        unsigned c0 = 0, c1 = 0;
        unsigned long long m0 = 0, m1 = 0;
        for (int j = tid; j < in.n; j += SAMPLE_THREADS) {
            uint32_t key = LIST ? S.lkey[j] : in.K[j];
            uint64_t c = comp_of(key, LIST ? S.lid[j] : j);
            if (c < in.lo || (c & mask) != prefix) continue;
            int d = (int)(c >> shift) & 255;
            unsigned long long w = MASS ? key_mass(key, in.mx, in.scale) : 0ull;
            if (d == d0) {
                c0++;
                m0 += w;
            } else if (d == d1) {
                c1++;
                m1 += w;
            } else {
                if (d1 >= 0) {
                    atomicAdd(&S.cnt[d1], c1);
                    if (MASS) atomicAdd(&S.mass[d1], m1);
                }
                d1 = d0;
                c1 = c0;
                m1 = m0;
                d0 = d;
                c0 = 1;
                m0 = w;
            }
        }
        if (d0 >= 0) {
            atomicAdd(&S.cnt[d0], c0);
            if (MASS) atomicAdd(&S.mass[d0], m0);
        }
        if (d1 >= 0) {
            atomicAdd(&S.cnt[d1], c1);
            if (MASS) atomicAdd(&S.mass[d1], m1);
        }
        __syncthreads();
        if (tid < 32) sel_choose(S, step, shift, MASS, mode, param, kparam, key_only, target);
        __syncthreads();
        if (S.state != SEL_RUN) break;
    }
    if (S.state == SEL_FIND) {
        const unsigned long long prefix = S.prefix, mask = S.mask;
        for (int j = tid; j < in.n; j += SAMPLE_THREADS) {
            uint32_t key = LIST ? S.lkey[j] : in.K[j];
            uint64_t c = comp_of(key, LIST ? S.lid[j] : j);
            if (c >= in.lo && (c & mask) == prefix) S.comp = key_only ? c & 0xffffffff00000000ull : c;
        }
        __syncthreads();
    }
}

/* Gathers the row's candidates (composite >= lo) into the shared list (their number is known to
 * be <= SEL_LIST). Ends synced. */
__device__ void sel_gather(sel_shared &S, const uint32_t *K, int V, uint64_t lo) {
    if (threadIdx.x == 0) S.nlist = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < V; j += SAMPLE_THREADS) {
        uint32_t key = K[j];
        if (comp_of(key, j) >= lo) {
            unsigned slot = atomicAdd(&S.nlist, 1u);
            if (slot < SEL_LIST) {
                S.lkey[slot] = key;
                S.lid[slot] = j;
            }
        }
    }
    __syncthreads();
    if (threadIdx.x == 0 && S.nlist > SEL_LIST) S.nlist = SEL_LIST; /* cannot happen: counted before */
    __syncthreads();
}

template <bool MASS>
__device__ void sel_any(sel_shared &S, bool list, const sel_in &in, int mode, double param, unsigned long long kparam,
                        bool key_only) {
    if (list) {
        sel_in l = in;
        l.n = (int)S.nlist;
        sel_run<true, MASS>(S, l, mode, param, kparam, key_only);
    } else {
        sel_run<false, MASS>(S, in, mode, param, kparam, key_only);
    }
}

/* The reference's sorted path for one row: min_p (already applied to K), top_k, top_p, draw.
 * Returns the token, or -1 when nothing is left. */
__device__ int sample_sorted(sel_shared &S, const uint32_t *K, int V, int ncand, float mx, const vk_sample_row &P) {
    if (ncand == 0) return -1;
    /* vocab * 2^S < 2^63 */
    int bits = 32 - __clz(V > 1 ? V - 1 : 1);
    float scale = __uint_as_float((uint32_t)(127 + 63 - bits) << 23);
    sel_in in = {K, V, 1ull << 32, mx, scale};
    bool list = false;
    unsigned m = (unsigned)ncand;
    if (P.top_k > 0 && (unsigned)P.top_k < m) {
        sel_any<false>(S, false, in, SEL_COUNT, 0.0, (unsigned long long)(P.top_k - 1), true);
        in.lo = S.comp;
        m = S.kept;
    }
    if (m <= SEL_LIST) {
        sel_gather(S, K, V, in.lo);
        list = true;
    }
    if (P.top_p < 1.0f && m > 1) {
        sel_any<true>(S, list, in, SEL_TOPP, 1.0 - (double)P.top_p, 0, false);
        if (S.state == SEL_NONE) return -1;
        in.lo = S.comp;
        m = S.kept;
        if (!list && m <= SEL_LIST) {
            sel_gather(S, K, V, in.lo);
            list = true;
        }
    }
    sel_any<true>(S, list, in, SEL_DRAW, rng_uniform(P.seed, P.offset), 0, false);
    if (S.state == SEL_NONE) return -1;
    return (int)~(uint32_t)S.comp;
}

/* The row's logits with logit bias, the stop mask and the penalties applied, in W; X = L when the
 * row has none of them (no copy). */
__device__ const float *sample_process(const float *L, float *W, int32_t *C, int V, const vk_sample_row &P,
                                       const int32_t *ids, const float *bias) {
    const int tid = threadIdx.x;
    const int nseen = P.num_prompt + P.num_output;
    const bool rep = P.repetition_penalty != 1.0f && nseen > 0;
    const bool freq = (P.frequency_penalty != 0.0f || P.presence_penalty != 0.0f) && P.num_output > 0;
    if (P.num_bias <= 0 && P.num_stop <= 0 && !rep && !freq) return L;
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
    if (rep) {
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
    if (freq) {
        for (int j = tid; j < P.num_output; j += SAMPLE_THREADS) {
            int t = ids[P.output_off + j];
            if (t >= 0 && t < V) atomicAdd(&C[t], 1);
        }
        __syncthreads();
        for (int j = tid; j < P.num_output; j += SAMPLE_THREADS) {
            int t = ids[P.output_off + j];
            if (t < 0 || t >= V) continue;
            int c = atomicExch(&C[t], 0);
            if (c) W[t] = __fsub_rn(W[t], __fadd_rn(__fmul_rn(P.frequency_penalty, (float)c), P.presence_penalty));
        }
        __syncthreads();
    }
    return W;
}

/* ---- The draw in id order (rows without top-k / top-p) ---- */

struct draw_shared {
    float wmax[32];
    double wmass[32];
    double prefix, target;
    float mx;
    int warp, token;
};

/* min_p keeps x iff exp(x - max) >= min_p, decided in fp64 like the reference; the log test
 * settles all but the values within 1e-9 of the threshold without an exp. */
__device__ __forceinline__ bool min_p_keeps(float x, float mx, float min_p, double lmp) {
    const double d = (double)x - (double)mx;
    return d > lmp + 1e-9 || (d >= lmp - 1e-9 && !(exp(d) < (double)min_p));
}

/* Loads VEC consecutive values (ids i.. < hi; past hi: -inf); VEC 4 needs X 16-byte aligned and i a
 * multiple of 4. */
template <int VEC>
__device__ __forceinline__ void row_load(const float *X, int i, int hi, float (&x)[VEC]) {
    bool whole = false;
    if constexpr (VEC == 4) {
        if (i + 3 < hi) {
            const float4 v = *reinterpret_cast<const float4 *>(X + i);
            x[0] = v.x;
            x[1] = v.y;
            x[2] = v.z;
            x[3] = v.w;
            whole = true;
        }
    }
    if (!whole)
#pragma unroll
        for (int e = 0; e < VEC; e++) x[e] = i + e < hi ? X[i + e] : -INFINITY;
}

/* The same scaled by inv_t. */
template <int VEC>
__device__ __forceinline__ void draw_load(const float *X, int i, int hi, float inv_t, float (&x)[VEC]) {
    row_load<VEC>(X, i, hi, x);
#pragma unroll
    for (int e = 0; e < VEC; e++) x[e] = __fmul_rn(x[e], inv_t);
}

/* Greedy: the largest value, ties to the lowest id (-1 when every value is -inf or NaN). */
template <int VEC>
__device__ int row_argmax(const float *X, int V, cand *shc) {
    cand best = {0.f, -1};
#pragma unroll 4
    for (int i = threadIdx.x * VEC; i < V; i += SAMPLE_THREADS * VEC) {
        float x[VEC];
        row_load<VEC>(X, i, V, x);
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            const cand c = {x[e], i + e};
            if (c.v > -INFINITY && before(c, best)) best = c;
        }
    }
    return block_best(best, shc).id;
}

/* The mass of one scaled value (0 for -inf, NaN and what min_p removes). */
__device__ __forceinline__ float draw_mass(float x, float mx, float min_p, double lmp) {
    if (!(x > -INFINITY)) return 0.f;
    if (min_p > 0.0f && !min_p_keeps(x, mx, min_p, lmp)) return 0.f;
    return expf(x - mx);
}

/* This warp's mass over ids [lo, hi) relative to its own max (wmax). Without min_p one pass with a
 * running max per lane; with min_p the block's max mx is known and applied. */
template <int VEC>
__device__ void draw_warp_mass(const float *X, int lo, int hi, float inv_t, float mx, float min_p, double lmp,
                               float &wmax, double &wmass) {
    const int lane = threadIdx.x & 31;
    float m = min_p > 0.0f ? mx : -INFINITY;
    double s = 0.0; /* fp64 sums and rescale factors: only the per-element expf rounds in fp32 */
#pragma unroll 2
    for (int i = lo + lane * VEC; i < hi; i += 32 * VEC) {
        float x[VEC];
        draw_load<VEC>(X, i, hi, inv_t, x);
        if (min_p > 0.0f) {
#pragma unroll
            for (int e = 0; e < VEC; e++) s += draw_mass(x[e], mx, min_p, lmp);
            continue;
        }
        float cm = m;
#pragma unroll
        for (int e = 0; e < VEC; e++)
            if (x[e] > cm) cm = x[e]; /* NaN never wins */
        if (cm > m) {
            s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)cm);
            m = cm;
        }
#pragma unroll
        for (int e = 0; e < VEC; e++) s += x[e] > -INFINITY ? expf(x[e] - m) : 0.f;
    }
    wmax = warp_max(m);
    double d = s > 0.0 ? s * exp((double)m - (double)wmax) : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    wmass = d;
}

/* Warp 0: the block's max, each warp's mass relative to it, and the warp whose range holds the
 * draw (the first with inclusive head mass > u * z; none when z = 0). */
__device__ void draw_pick_warp(draw_shared &D, double u) {
    const int lane = threadIdx.x;
    const float mx = warp_max(D.wmax[lane]);
    const double w = D.wmass[lane] > 0.0 ? D.wmass[lane] * exp((double)D.wmax[lane] - (double)mx) : 0.0;
    double incl = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        double y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    const double z = __shfl_sync(0xffffffffu, incl, 31), target = u * z;
    const unsigned over = __ballot_sync(0xffffffffu, w > 0.0 && incl > target);
    const unsigned any = __ballot_sync(0xffffffffu, w > 0.0);
    /* rounding can leave the target past the last warp's sum: the last warp with mass then */
    const int pick = over ? __ffs(over) - 1 : any ? 31 - __clz(any) : -1;
    if (lane == 0) {
        D.mx = mx;
        D.warp = z > 0.0 ? pick : -1;
        D.target = target;
        D.token = -1;
    }
    if (pick >= 0 && lane == pick) D.prefix = incl - w;
}

/* The picked warp walks its range in id order, 32 * VEC ids at a time. */
template <int VEC>
__device__ void draw_walk(draw_shared &D, const float *X, int lo, int hi, float inv_t, float min_p, double lmp) {
    const int lane = threadIdx.x & 31;
    const float mx = D.mx;
    const double target = D.target;
    double acc = D.prefix;
    int last = -1;
    for (int i0 = lo; i0 < hi; i0 += 32 * VEC) {
        const int i = i0 + lane * VEC;
        float x[VEC], p[VEC];
        draw_load<VEC>(X, i, hi, inv_t, x);
        double ls = 0.0;
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            p[e] = draw_mass(x[e], mx, min_p, lmp);
            ls += p[e];
            if (p[e] > 0.f) last = i + e;
        }
        double incl = ls;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            double y = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += y;
        }
        const unsigned over = __ballot_sync(0xffffffffu, acc + incl > target);
        if (over) {
            if (lane == __ffs(over) - 1) {
                double a = acc + (incl - ls);
                int tok = -1;
#pragma unroll
                for (int e = 0; e < VEC; e++) {
                    if (p[e] > 0.f) tok = i + e; /* rounding: the lane's last kept id */
                    a += p[e];
                    if (p[e] > 0.f && a > target) break;
                }
                D.token = tok;
            }
            return;
        }
        acc += __shfl_sync(0xffffffffu, incl, 31);
    }
    last = (int)warp_max((float)last); /* ids < 2^24: exact in float */
    if (lane == 0) D.token = last;
}

/* Rows without top-k / top-p: the reference draws in token-id order with probabilities
 * exp(double(x) - max). Warp w owns the contiguous ids [w seg, (w + 1) seg): one coalesced pass
 * gives each warp its mass (with a running max per lane, so without min_p X is read once), warp 0
 * finds the warp whose range holds the draw, and that warp walks its range again. Masses are expf
 * in fp32 (rescaled and summed in fp64): each differs from the reference's fp64 mass by its
 * rounding (~6e-8 of itself), so the token can differ only where u * z lies that close to a
 * boundary of the cumulative mass. */
template <int VEC>
__device__ int sample_in_order(draw_shared &D, const float *X, int V, const vk_sample_row &P, float *shf) {
    const int w = threadIdx.x >> 5;
    const float inv_t = 1.0f / P.temperature;
    const double lmp = P.min_p > 0.0f ? log((double)P.min_p) : 0.0;
    const int seg = ((V + 31) / 32 + 3) & ~3, lo = min(V, w * seg), hi = min(V, lo + seg);
    float mx = -INFINITY;
    if (P.min_p > 0.0f) { /* min_p needs the max before any mass */
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
            float x = __fmul_rn(X[i], inv_t);
            if (x > -INFINITY) mx = fmaxf(mx, x);
        }
        mx = block_max(mx, shf);
    }
    float wmax;
    double wmass;
    draw_warp_mass<VEC>(X, lo, hi, inv_t, mx, P.min_p, lmp, wmax, wmass);
    if ((threadIdx.x & 31) == 0) {
        D.wmax[w] = wmax;
        D.wmass[w] = wmass;
    }
    __syncthreads();
    if (w == 0) draw_pick_warp(D, rng_uniform(P.seed, P.offset));
    __syncthreads();
    if (w == D.warp) draw_walk<VEC>(D, X, lo, hi, inv_t, P.min_p, lmp);
    __syncthreads();
    return D.token;
}

/* ---- Raw logprobs ---- */

/* The top n of the row by n block-wide passes, each the best after the previous one's. */
__device__ void top_by_passes(const float *L, int V, int n, double lse, vk_sample_out *o, cand *shc) {
    cand prev = {0.f, -1};
    for (int r = 0; r < n; r++) {
        cand best = {0.f, -1};
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
            cand c = {L[i], i};
            if (c.v == c.v && (prev.id < 0 || before(prev, c)) && before(c, best)) best = c;
        }
        best = block_best(best, shc);
        if (threadIdx.x == 0) {
            o->top_ids[r] = best.id;
            o->top_logprobs[r] = (float)((double)best.v - lse);
        }
        prev = best;
    }
}

/* The log-softmax of the unprocessed logits L: the sampled token's logprob and the top n (order:
 * value descending, id ascending; NaN never listed). One pass gives the log-sum-exp (a running max
 * per thread, expf summed and rescaled in fp64) and each thread's best element; the n-th best of
 * those n..1024 elements, T, comes at or after the row's n-th in that order, so a second pass
 * gathers everything at or before T into shared memory and ranks it there. More than SEL_LIST of
 * them (values tied in their thousands), or fewer than n threads with an element: n passes over
 * the row instead. */
__device__ void sample_logprobs(const float *L, int V, int n, int token, vk_sample_out *o, sel_shared &S, cand *shc,
                                float *shf, double *shd) {
    const int tid = threadIdx.x;
    float m = -INFINITY;
    double s = 0.0;
    cand best = {0.f, -1};
#pragma unroll 4
    for (int i = tid; i < V; i += SAMPLE_THREADS) {
        const float x = L[i];
        const cand c = {x, i};
        if (x == x && before(c, best)) best = c;
        if (!(x > -INFINITY)) continue;
        if (x > m) {
            s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)x);
            m = x;
        }
        s += expf(x - m);
    }
    const float mx = block_max(m, shf);
    const double z = block_sum_d(s > 0.0 ? s * exp((double)m - (double)mx) : 0.0, shd);
    const double lse = (double)mx + log(z);
    if (tid == 0) o->logprob = token >= 0 ? (float)((double)L[token] - lse) : 0.f;
    if (n <= 0) return;
    cand T = {0.f, -1};
    bool taken = false;
    for (int r = 0; r < n; r++) { /* T: the n-th best of the threads' bests */
        T = block_best(taken || best.id < 0 ? cand{0.f, -1} : best, shc);
        if (T.id < 0) break;
        taken = taken || T.id == best.id;
    }
    if (T.id < 0) {
        top_by_passes(L, V, n, lse, o, shc);
        return;
    }
    __syncthreads();
    if (tid == 0) S.nlist = 0;
    __syncthreads();
    for (int i = tid; i < V; i += SAMPLE_THREADS) {
        const cand c = {L[i], i};
        if (c.v == c.v && !before(T, c)) {
            const unsigned slot = atomicAdd(&S.nlist, 1u);
            if (slot < SEL_LIST) {
                S.lkey[slot] = __float_as_uint(c.v);
                S.lid[slot] = i;
            }
        }
    }
    __syncthreads();
    const int cnt = (int)S.nlist;
    if (cnt > SEL_LIST) {
        top_by_passes(L, V, n, lse, o, shc);
        return;
    }
    for (int j = tid; j < cnt; j += SAMPLE_THREADS) { /* rank = how many come before it */
        const cand c = {__uint_as_float(S.lkey[j]), S.lid[j]};
        int rank = 0;
        for (int k = 0; k < cnt; k++) rank += before(cand{__uint_as_float(S.lkey[k]), S.lid[k]}, c);
        if (rank < n) {
            o->top_ids[rank] = c.id;
            o->top_logprobs[rank] = (float)((double)c.v - lse);
        }
    }
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *logits, int V, const vk_sample_row *params, const int32_t *ids,
              const float *bias, float *work, int32_t *counts, vk_sample_out *out) {
    __shared__ cand shc[32];
    __shared__ double shd[32];
    __shared__ float shf[32];
    __shared__ sel_shared S;
    __shared__ draw_shared D;
    const int row = blockIdx.x, tid = threadIdx.x;
    const vk_sample_row P = params[row];
    const float *L = logits + (size_t)row * V;
    float *W = work + (size_t)row * V;
    vk_sample_out *o = out + row;
    int token = -1;

    /* The reference sorts whenever top_k is set (even k >= vocab) or top_p < 1. */
    bool sorted = P.top_k > 0 || P.top_p < 1.0f;
    bool greedy = P.temperature < 1e-5f;
    {
        const float *X = sample_process(L, W, counts + (size_t)row * V, V, P, ids, bias);
        /* float4 loads need 16-byte aligned rows */
        const bool vec = V % 4 == 0 && ((uintptr_t)X & 15) == 0;
        if (greedy) {
            token = vec ? row_argmax<4>(X, V, shc) : row_argmax<1>(X, V, shc);
        } else if (sorted) {
            /* W becomes the keys (0: -inf / NaN, or removed by min_p), in one read of the row; min_p's
             * removals need the max, so they go over the keys again (the same thread's ids) */
            const float inv_t = 1.0f / P.temperature;
            uint32_t *K = reinterpret_cast<uint32_t *>(W);
            float mx = -INFINITY;
            int nc = 0;
            for (int i = tid; i < V; i += SAMPLE_THREADS) {
                const float x = __fmul_rn(X[i], inv_t);
                uint32_t k = 0;
                if (x > -INFINITY) {
                    k = fkey(x);
                    mx = fmaxf(mx, x);
                    nc++;
                }
                K[i] = k;
            }
            mx = block_max(mx, shf);
            if (P.min_p > 0.0f) {
                const double lmp = log((double)P.min_p);
                nc = 0;
                for (int i = tid; i < V; i += SAMPLE_THREADS) {
                    const uint32_t k = K[i];
                    if (k == 0) continue;
                    if (min_p_keeps(kval(k), mx, P.min_p, lmp)) nc++;
                    else K[i] = 0;
                }
            }
            nc = (int)block_sum_d((double)nc, shd);
            __syncthreads();
            token = sample_sorted(S, K, V, nc, mx, P);
        } else {
            token = vec ? sample_in_order<4>(D, X, V, P, shf) : sample_in_order<1>(D, X, V, P, shf);
        }
    }

    /* Raw logprobs (log-softmax of the unprocessed logits). */
    if (P.num_logprobs >= 0) sample_logprobs(L, V, min(min(P.num_logprobs, VK_MAX_LOGPROBS), V), token, o, S, shc, shf, shd);
    else if (tid == 0) o->logprob = 0.f;
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
