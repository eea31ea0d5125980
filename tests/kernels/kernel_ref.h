/* CPU references for the Vesta CUDA kernels (shared by tests/kernels and bench/gpu): plain loops
 * in float/double over inputs rounded to the storage type, rounding where the kernels' contract
 * (and Hugging Face) rounds. Plus small host helpers: storage conversion, a seeded generator,
 * error norms, a checked-CUDA macro. */
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "vesta_kernels.h"

/* A test check: prints and counts a failure (ref::failures()), never stops the program. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  FAIL: " __VA_ARGS__);                                                        \
            printf("\n");                                                                          \
            ref::failures()++;                                                                     \
        }                                                                                          \
    } while (0)

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

namespace ref {

/* Failed checks of the test program (one per process). */
inline int &failures() {
    static int n = 0;
    return n;
}

/* A device buffer of n elements, poisoned (0xff bytes: NaN for float/bf16/fp16) at creation and on
 * demand, so that an element a kernel fails to write cannot pass a check. */
template <typename X> struct dbuf {
    X *p = nullptr;
    size_t n = 0;
    explicit dbuf(size_t n_) : n(n_) {
        CK(cudaMalloc(&p, (n ? n : 1) * sizeof(X)));
        poison();
    }
    explicit dbuf(const std::vector<X> &v) : dbuf(v.size()) { up(v); }
    ~dbuf() { cudaFree(p); }
    dbuf(const dbuf &) = delete;
    dbuf &operator=(const dbuf &) = delete;
    void poison() { CK(cudaMemset(p, 0xff, (n ? n : 1) * sizeof(X))); }
    void up(const std::vector<X> &v) { CK(cudaMemcpy(p, v.data(), v.size() * sizeof(X), cudaMemcpyHostToDevice)); }
    std::vector<X> down() const {
        std::vector<X> v(n);
        CK(cudaMemcpy(v.data(), p, n * sizeof(X), cudaMemcpyDeviceToHost));
        return v;
    }
};

inline const char *dtn(vk_dtype dt) { return dt == VK_BF16 ? "bf16" : "fp16"; }

/* Benches: the median of 20 timings (CUDA events on the default stream) after 3 warm-up runs;
 * f gets the run's index (benches rotate their buffers by it to defeat the L2). */
inline float median_ms(const std::function<void(int)> &f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    int it = 0;
    for (int i = 0; i < 3; i++) f(it++);
    std::vector<float> t;
    for (int i = 0; i < 20; i++) {
        CK(cudaEventRecord(a));
        f(it++);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[t.size() / 2];
}

/* Storage rounding on the host. */
inline uint16_t f2s(vk_dtype dt, float f) {
    if (dt == VK_BF16) {
        __nv_bfloat16 b = __float2bfloat16(f);
        uint16_t u;
        memcpy(&u, &b, 2);
        return u;
    }
    __half h = __float2half(f);
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
inline float s2f(vk_dtype dt, uint16_t u) {
    if (dt == VK_BF16) {
        __nv_bfloat16 b;
        memcpy((void *)&b, &u, 2);
        return __bfloat162float(b);
    }
    __half h;
    memcpy((void *)&h, &u, 2);
    return __half2float(h);
}
inline float rnd(vk_dtype dt, float f) { return s2f(dt, f2s(dt, f)); }

struct rng {
    uint64_t s;
    explicit rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    double uni() { return (double)(next() >> 11) * 0x1.0p-53; }
    float sym(float a) { return (float)((2 * uni() - 1) * a); }
    int below(int n) { return (int)(next() % (uint64_t)n); }
};

inline std::vector<uint16_t> rand_storage(vk_dtype dt, size_t n, rng &r, float scale) {
    std::vector<uint16_t> v(n);
    for (auto &x : v) x = f2s(dt, r.sym(scale));
    return v;
}

/* ||a - b|| / ||b|| and max |a - b|. */
struct err {
    double rel, maxabs;
};
inline err compare(const std::vector<float> &a, const std::vector<float> &b) {
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < a.size(); i++) {
        double d = (double)a[i] - b[i];
        if (!(d == d)) return {INFINITY, INFINITY};
        num += d * d;
        den += (double)b[i] * b[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    return {den > 0 ? sqrt(num / den) : sqrt(num), mx};
}

inline void add_rmsnorm(vk_dtype dt, float *out, float *res, const float *x, const float *w, int n, int h, float eps) {
    for (int i = 0; i < n; i++) {
        float *r = res + (size_t)i * h;
        double ss = 0;
        for (int j = 0; j < h; j++) {
            if (x) r[j] = rnd(dt, r[j] + x[(size_t)i * h + j]);
            ss += (double)r[j] * r[j];
        }
        float inv = 1.0f / sqrtf((float)(ss / h) + eps);
        for (int j = 0; j < h; j++) out[(size_t)i * h + j] = rnd(dt, w[j] * rnd(dt, r[j] * inv));
    }
}

/* Attention for one query row over keys [0, nk): out[D] in double. */
inline void attend(const float *q, const std::vector<const float *> &k, const std::vector<const float *> &v, int D,
                   float scale, float *out) {
    size_t nk = k.size();
    std::vector<double> s(nk);
    double m = -INFINITY;
    for (size_t j = 0; j < nk; j++) {
        double d = 0;
        for (int e = 0; e < D; e++) d += (double)q[e] * k[j][e];
        s[j] = d * scale;
        if (s[j] > m) m = s[j];
    }
    double z = 0;
    for (size_t j = 0; j < nk; j++) z += (s[j] = exp(s[j] - m));
    for (int e = 0; e < D; e++) {
        double acc = 0;
        for (size_t j = 0; j < nk; j++) acc += s[j] * v[j][e];
        out[e] = (float)(acc / z);
    }
}

/* vk_lora_shrink + vk_lora_expand: for each row i whose slot s = row_slot[i] >= 0 has matrices,
 * y[i][o] = round(y[i][o] + round(sum_j round(A_s[j] . x[i]) B_s[o][j])). A_s [rank_s][in], B_s
 * [out][rank_s]; y rows ldy apart. Sums in double. */
inline void lora(vk_dtype dt, float *y, int ldy, int out, const float *x, int in, const std::vector<const float *> &A,
                 const std::vector<const float *> &B, const std::vector<int> &rank, const int32_t *row_slot, int n)
{
    for (int i = 0; i < n; i++) {
        const int s = row_slot[i];
        if (s < 0 || !A[s]) continue;
        std::vector<float> t(rank[s]);
        for (int j = 0; j < rank[s]; j++) {
            double acc = 0;
            for (int k = 0; k < in; k++) acc += (double)A[s][(size_t)j * in + k] * x[(size_t)i * in + k];
            t[j] = rnd(dt, (float)acc);
        }
        for (int o = 0; o < out; o++) {
            double d = 0;
            for (int j = 0; j < rank[s]; j++) d += (double)t[j] * B[s][(size_t)o * rank[s] + j];
            float &yv = y[(size_t)i * ldy + o];
            yv = rnd(dt, yv + rnd(dt, (float)d));
        }
    }
}

} // namespace ref
