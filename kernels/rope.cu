/* RoPE (Hugging Face rotate_half convention) fused with the KV-cache write.
 * inv_freq comes from the host (vk_rope_inv_freq) computed in float32 the way HF computes it,
 * including llama3 and linear scaling; cos/sin are rounded to the storage type before use and
 * each product and the sum are rounded, as HF's apply_rotary_pos_emb does in bf16. */
#include <math.h>

#include "common.cuh"

using namespace vk;

extern "C" void vk_rope_inv_freq(const vk_rope_config *c, float *inv_freq) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf(c->theta, expo);
        if (c->scaling == 1) {
            f = f / c->factor;
        } else if (c->scaling == 2) {
            float old = (float)c->original_max_position;
            float low_wl = old / c->low_freq_factor, high_wl = old / c->high_freq_factor;
            float wl = (float)(2.0 * M_PI) / f;
            float fl = wl > low_wl ? f / c->factor : f;
            float smooth = (old / wl - c->low_freq_factor) / (c->high_freq_factor - c->low_freq_factor);
            float smoothed = (1.0f - smooth) * fl / c->factor + smooth * fl;
            bool medium = !(wl < high_wl) && !(wl > low_wl);
            f = medium ? smoothed : fl;
        }
        inv_freq[i] = f;
    }
}

/* The token's cos / sin table ([half] cos, then [half] sin; the same for every head), rounded to
 * the storage type as HF rounds them. Ends synced. Both versions use it, and rope_pair below, so
 * their results cannot drift apart. */
template <typename T> __device__ __forceinline__ void rope_table(float *cs, float pos, const float *inv_freq, int half) {
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float ang = pos * inv_freq[i];
        cs[i] = rnd<T>(cosf(ang));
        cs[half + i] = rnd<T>(sinf(ang));
    }
    __syncthreads();
}
/* One rotation pair (x1 at dim i, x2 at i + half) with cos c and sin sn, each product and the sum
 * rounded as HF's apply_rotary_pos_emb does in bf16 / fp16. */
template <typename T> __device__ __forceinline__ void rope_pair(float x1, float x2, float c, float sn, float *o1, float *o2) {
    *o1 = rnd<T>(rnd<T>(x1 * c) + rnd<T>(-x2 * sn));
    *o2 = rnd<T>(rnd<T>(x2 * c) + rnd<T>(x1 * sn));
}

template <typename T>
__global__ void rope_kv_kernel(T *qkv, const T *bias, const int32_t *positions, const int32_t *slots,
                               const float *inv_freq, T *kc, T *vc, int H, int KVH, int D) {
    extern __shared__ float cs[]; /* [D/2] cos, [D/2] sin: the same for every head of the token */
    int t = blockIdx.x;
    int half = D / 2;
    int width = (H + 2 * KVH) * D;
    T *row = qkv + (size_t)t * width;
    int slot = slots[t];
    pdl_allow_dependents();
    rope_table<T>(cs, (float)positions[t], inv_freq, half); /* step metadata: no kernel writes it */
    pdl_wait_previous();                                    /* the row is the q|k|v product's */
    /* q and k heads: one thread per rotation pair, RK pairs at a time, every load of a batch
     * issued before any store (the rows are written in place, so a load after a store would wait
     * for it: at a few tokens per step the kernel is a chain of memory round trips). */
    constexpr int RK = 8;
    const int pairs = (H + KVH) * half;
    for (int p0 = threadIdx.x; p0 < pairs; p0 += RK * blockDim.x) {
        float x1[RK], x2[RK];
#pragma unroll
        for (int u = 0; u < RK; u++) {
            const int p = p0 + u * blockDim.x, base = p / half * D + p % half;
            if (p >= pairs) break;
            x1[u] = to_f<T>(row[base]);
            x2[u] = to_f<T>(row[base + half]);
            if (bias) {
                x1[u] = rnd<T>(x1[u] + to_f<T>(bias[base]));
                x2[u] = rnd<T>(x2[u] + to_f<T>(bias[base + half]));
            }
        }
#pragma unroll
        for (int u = 0; u < RK; u++) {
            const int p = p0 + u * blockDim.x, head = p / half, i = p % half, base = head * D;
            if (p >= pairs) break;
            float o1, o2;
            rope_pair<T>(x1[u], x2[u], cs[i], cs[half + i], &o1, &o2);
            if (head < H) {
                row[base + i] = from_f<T>(o1);
                row[base + i + half] = from_f<T>(o2);
            } else if (slot >= 0) {
                T *k = kc + ((size_t)slot * KVH + (head - H)) * D;
                k[i] = from_f<T>(o1);
                k[i + half] = from_f<T>(o2);
            }
        }
    }
    if (slot < 0) return;
    const T *v = row + (H + KVH) * D;
    T *vd = vc + (size_t)slot * KVH * D;
    for (int e0 = threadIdx.x; e0 < KVH * D; e0 += RK * blockDim.x) {
        float x[RK];
#pragma unroll
        for (int u = 0; u < RK; u++) {
            const int e = e0 + u * blockDim.x;
            if (e >= KVH * D) break;
            x[u] = to_f<T>(v[e]);
            if (bias) x[u] = rnd<T>(x[u] + to_f<T>(bias[(H + KVH) * D + e]));
        }
#pragma unroll
        for (int u = 0; u < RK; u++) {
            const int e = e0 + u * blockDim.x;
            if (e >= KVH * D) break;
            vd[e] = from_f<T>(x[u]);
        }
    }
}

/* Version 2: the same arithmetic on 16-byte vectors. An item is 8 rotation pairs of a q or k head
 * (two vectors: dims i..i+7 and i+half..) or 8 elements of a v head; each thread loads all of its
 * items before it stores any (one memory round trip per step, not one per element batch). Needs
 * half % 8 == 0 and 16-byte aligned rows, cache and bias (vk_rope_kv_write checks). */
template <typename T>
__global__ void __launch_bounds__(128) rope_kv_kernel_v2(T *qkv, const T *bias, const int32_t *positions,
                                                         const int32_t *slots, const float *inv_freq, T *kc, T *vc,
                                                         int H, int KVH, int D) {
    extern __shared__ float cs[];
    constexpr int RK = 4; /* items per thread per batch */
    const int t = blockIdx.x, half = D / 2, hv = half / 8;
    T *row = qkv + (size_t)t * (H + 2 * KVH) * D;
    const int slot = slots[t];
    pdl_allow_dependents();
    rope_table<T>(cs, (float)positions[t], inv_freq, half); /* step metadata: no kernel writes it */
    pdl_wait_previous();                                    /* the row is the q|k|v product's */
    const int nrot = (H + KVH) * hv, nitems = nrot + (slot >= 0 ? KVH * D / 8 : 0);
    for (int p0 = threadIdx.x; p0 < nitems; p0 += RK * blockDim.x) {
        float x1[RK][8], x2[RK][8];
#pragma unroll
        for (int u = 0; u < RK; u++) {
            const int p = p0 + u * blockDim.x;
            if (p >= nitems) break;
            /* rotation: head p / hv, dims (p % hv) * 8 (+ half); v: element (p - nrot) * 8 of v */
            const int off = p < nrot ? p / hv * D + p % hv * 8 : (H + KVH) * D + (p - nrot) * 8;
            load8(row + off, x1[u]);
            if (p < nrot) load8(row + off + half, x2[u]);
            if (bias) {
                float b[8];
                load8(bias + off, b);
#pragma unroll
                for (int e = 0; e < 8; e++) x1[u][e] = rnd<T>(x1[u][e] + b[e]);
                if (p < nrot) {
                    load8(bias + off + half, b);
#pragma unroll
                    for (int e = 0; e < 8; e++) x2[u][e] = rnd<T>(x2[u][e] + b[e]);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < RK; u++) {
            const int p = p0 + u * blockDim.x;
            if (p >= nitems) break;
            if (p >= nrot) { /* v into the cache as is */
                store8(vc + (size_t)slot * KVH * D + (p - nrot) * 8, x1[u]);
                continue;
            }
            const int head = p / hv, i0 = p % hv * 8;
            float o1[8], o2[8];
#pragma unroll
            for (int e = 0; e < 8; e++) rope_pair<T>(x1[u][e], x2[u][e], cs[i0 + e], cs[half + i0 + e], &o1[e], &o2[e]);
            T *dst = head < H ? row + head * D : slot >= 0 ? kc + ((size_t)slot * KVH + (head - H)) * D : nullptr;
            if (!dst) continue;
            store8(dst + i0, o1);
            store8(dst + i0 + half, o2);
        }
    }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" cudaError_t vk_rope_kv_write_v(int version, vk_dtype dt, void *qkv, const void *bias,
                                          const int32_t *positions, const int32_t *slot_mapping,
                                          const float *inv_freq, void *k_cache, void *v_cache, int n, int H, int KVH,
                                          int D, int pdl, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (D % 2 || D <= 0 || H <= 0 || KVH <= 0 || version < 0 || version > 2) return cudaErrorInvalidValue;
    const bool vec = D % 16 == 0 && aligned16(qkv) && aligned16(k_cache) && aligned16(v_cache) && (!bias || aligned16(bias));
    if (version == 2 && !vec) return cudaErrorInvalidValue;
    const size_t smem = sizeof(float) * D;
    if (version != 1 && vec)
        VK_DISPATCH(dt, return launch_pdl(rope_kv_kernel_v2<T>, dim3(n), dim3(128), smem, s, pdl != 0, (T *)qkv,
                                          (const T *)bias, positions, slot_mapping, inv_freq, (T *)k_cache,
                                          (T *)v_cache, H, KVH, D));
    VK_DISPATCH(dt, return launch_pdl(rope_kv_kernel<T>, dim3(n), dim3(256), smem, s, pdl != 0, (T *)qkv,
                                      (const T *)bias, positions, slot_mapping, inv_freq, (T *)k_cache, (T *)v_cache,
                                      H, KVH, D));
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t vk_rope_kv_write(vk_dtype dt, void *qkv, const void *bias, const int32_t *positions,
                                        const int32_t *slot_mapping, const float *inv_freq, void *k_cache,
                                        void *v_cache, int n, int H, int KVH, int D, int pdl, cudaStream_t s) {
    return vk_rope_kv_write_v(0, dt, qkv, bias, positions, slot_mapping, inv_freq, k_cache, v_cache, n, H, KVH, D, pdl,
                              s);
}
