/* vk_gemm_skinny (kernels/gemm_skinny.cu) against a CPU reference, and its batch invariance.
 *
 * Reference: double-precision dot products over the same storage-rounded inputs. Tolerance, per
 * element, with S = sum_k |x_k w_k| (the scale of the fp32 accumulation error):
 *     fp32 out:    |got - want| <= 2e-5 * S
 *     storage out: |got - want| <= 2e-5 * S + one storage half-ulp of |want| (2^-8 bf16, 2^-11 fp16)
 * (fp32 accumulation of in <= 14336 products in a fixed order stays far inside 2e-5 * S; a wrong
 * element, a missing K part or a stale row is off by O(S).) Outputs are poisoned with NaN first.
 * Shapes: random n in 1..64 (odd ones included), in a multiple of 8 but not of the 64-wide k step,
 * out not a multiple of the 128/256-row tile, every tiling (mt 1/2, ks 1/2/4/8) and the production
 * choice, both storage types, both output types, plus Llama-3-8B shapes at a few n.
 *
 * Batch invariance (what the engine relies on): with the production split, row i of x gives
 * bit-identical outputs at n = 5 and n = 64, at every n in 1..64, at another position in the
 * batch, with either CTA height (mt), and run to run.
 *
 * Usage: test_gemm_skinny [seed]. Exits 77 (ctest SKIP) when no GPU is present. */
#include <time.h>

#include <algorithm>
#include <string>

#include "kernel_ref.h"

using namespace ref;





struct problem {
    vk_dtype dt;
    int n, in, out;
    std::vector<uint16_t> x, w;
    std::vector<double> want, scale; /* [n][out]: exact dot product and sum of |terms| */
};

static problem make_problem(vk_dtype dt, int n, int in, int out, rng &r) {
    problem p{dt, n, in, out, rand_storage(dt, (size_t)n * in, r, 1.f), rand_storage(dt, (size_t)out * in, r, 0.05f), {}, {}};
    std::vector<float> fx(p.x.size()), fw(p.w.size());
    for (size_t i = 0; i < fx.size(); i++) fx[i] = s2f(dt, p.x[i]);
    for (size_t i = 0; i < fw.size(); i++) fw[i] = s2f(dt, p.w[i]);
    p.want.resize((size_t)n * out);
    p.scale.resize((size_t)n * out);
    for (int o = 0; o < out; o++) {
        const float *wr = &fw[(size_t)o * in];
        for (int i = 0; i < n; i++) {
            const float *xr = &fx[(size_t)i * in];
            double acc = 0, s = 0;
            for (int k = 0; k < in; k++) {
                double t = (double)xr[k] * wr[k];
                acc += t;
                s += fabs(t);
            }
            p.want[(size_t)i * out + o] = acc;
            p.scale[(size_t)i * out + o] = s;
        }
    }
    return p;
}

/* Runs one tiling (mt/ks > 0) or the production entry point (mt == 0) with both output types
 * and checks every element; returns the number of bad elements. */
static int check_problem(const problem &p, int mt, int ks, bool verbose) {
    dbuf<uint16_t> dx(p.x), dw(p.w), dy((size_t)p.n * p.out);
    dbuf<float> dyf((size_t)p.n * p.out);
    cudaError_t e1, e2;
    if (mt == 0) {
        e1 = vk_gemm_skinny(p.dt, 0, dy.p, dx.p, dw.p, p.n, p.in, p.out, 0);
        e2 = vk_gemm_skinny(p.dt, 1, dyf.p, dx.p, dw.p, p.n, p.in, p.out, 0);
    } else {
        e1 = vk_gemm_skinny_ex(p.dt, 0, dy.p, dx.p, dw.p, p.n, p.in, p.out, mt, ks, 0);
        e2 = vk_gemm_skinny_ex(p.dt, 1, dyf.p, dx.p, dw.p, p.n, p.in, p.out, mt, ks, 0);
    }
    CK(cudaDeviceSynchronize());
    if (mt != 0 && e1 == cudaErrorNotSupported && e2 == cudaErrorNotSupported) {
        printf("  %s n=%d mt=%d ks=%d: not supported on this device, skipped\n", dtn(p.dt), p.n, mt, ks);
        return 0;
    }
    if (e1 != cudaSuccess || e2 != cudaSuccess) {
        printf("  launch failed: %s / %s\n", cudaGetErrorString(e1), cudaGetErrorString(e2));
        return 1;
    }
    auto ys = dy.down();
    auto yf = dyf.down();
    const double half_ulp = p.dt == VK_BF16 ? 0x1p-8 : 0x1p-11;
    int bad = 0;
    double worst = 0; /* largest |err| / allowed */
    for (size_t i = 0; i < p.want.size(); i++) {
        double acc_tol = 2e-5 * p.scale[i] + 1e-30;
        double ef = fabs((double)yf[i] - p.want[i]), es = fabs((double)s2f(p.dt, ys[i]) - p.want[i]);
        double ts = acc_tol + half_ulp * fabs(p.want[i]);
        bool ok = ef <= acc_tol && es <= ts; /* NaN (unwritten) fails both comparisons */
        worst = std::max(worst, std::max(ef / acc_tol, es / ts));
        if (!ok && bad++ < 3)
            printf("  bad y[%zu][%zu]: fp32 %.8g, storage %.6g, want %.8g (scale %.4g)\n", i / p.out, i % p.out,
                   (double)yf[i], (double)s2f(p.dt, ys[i]), p.want[i], p.scale[i]);
    }
    if (verbose || bad)
        printf("%s n=%d in=%d out=%d mt=%d ks=%d: %d bad, worst err/tol %.3f\n", dtn(p.dt), p.n, p.in, p.out, mt,
               mt ? ks : vk_gemm_skinny_splits(p.in, p.out), bad, worst);
    return bad;
}

static void test_random_shapes(uint64_t seed) {
    rng r(seed);
    const int ins[] = {8, 72, 264, 576, 1000, 2056, 4104};
    const int outs[] = {1, 7, 129, 255, 1003, 2111};
    const int mts[] = {1, 2};
    const int kss[] = {1, 2, 4, 8};
    for (int c = 0; c < 24; c++) {
        vk_dtype dt = c % 3 == 2 ? VK_F16 : VK_BF16;
        int n = c < 4 ? 1 + 2 * c : 1 + r.below(64); /* 1, 3, 5, 7, then anything up to 64 */
        if (c == 4) n = 64;
        if (c == 5) n = 63;
        int in = ins[r.below(7)], out = outs[r.below(6)];
        problem p = make_problem(dt, n, in, out, r);
        int bad = check_problem(p, 0, 0, c < 6);
        bad += check_problem(p, mts[r.below(2)], kss[r.below(4)], c < 6);
        CHECK(bad == 0, "random shape %d: %s n=%d in=%d out=%d", c, dtn(dt), n, in, out);
    }
}

static void test_llama_shapes(uint64_t seed) {
    rng r(seed + 1);
    /* (out, in, n): q|k|v, o_proj, gate|up, down; n kept small where the CPU reference is long */
    const int shapes[][3] = {{6144, 4096, 32}, {4096, 4096, 64}, {28672, 4096, 5}, {4096, 14336, 9}};
    for (auto &s : shapes) {
        problem p = make_problem(VK_BF16, s[2], s[1], s[0], r);
        int bad = check_problem(p, 0, 0, true);
        CHECK(bad == 0, "llama shape out=%d in=%d n=%d", s[0], s[1], s[2]);
    }
}

/* Bitwise comparison of rows of y (elem bytes each element). */
static bool same_rows(const void *a, int ra, const void *b, int rb, int out, size_t elem) {
    return memcmp((const char *)a + (size_t)ra * out * elem, (const char *)b + (size_t)rb * out * elem, out * elem) == 0;
}

static void test_batch_invariance(uint64_t seed) {
    rng r(seed + 2);
    /* o_proj and down of Llama-3-8B: the shapes with a K split on an H100; plus an odd one */
    const int shapes[][2] = {{4096, 4096}, {4096, 14336}, {1003, 1000}};
    for (auto &s : shapes) {
        int out = s[0], in = s[1];
        vk_dtype dt = VK_BF16;
        auto x = rand_storage(dt, (size_t)64 * in, r, 1.f), w = rand_storage(dt, (size_t)out * in, r, 0.05f);
        dbuf<uint16_t> dx(x), dw(w), dy((size_t)64 * out);
        dbuf<float> dyf((size_t)64 * out);
        CK(vk_gemm_skinny(dt, 1, dyf.p, dx.p, dw.p, 64, in, out, 0));
        CK(vk_gemm_skinny(dt, 0, dy.p, dx.p, dw.p, 64, in, out, 0));
        auto ref_f = dyf.down();
        auto ref_s = dy.down();
        int bad_n = 0, first_bad = 0;
        for (int n = 1; n <= 64; n++) { /* every n, so every NT and both CTA heights are crossed */
            dyf.poison();
            dy.poison();
            CK(vk_gemm_skinny(dt, 1, dyf.p, dx.p, dw.p, n, in, out, 0));
            CK(vk_gemm_skinny(dt, 0, dy.p, dx.p, dw.p, n, in, out, 0));
            auto gf = dyf.down();
            auto gs = dy.down();
            bool ok = true;
            for (int i = 0; i < n; i++)
                ok = ok && same_rows(gf.data(), i, ref_f.data(), i, out, 4) && same_rows(gs.data(), i, ref_s.data(), i, out, 2);
            if (!ok && bad_n++ == 0) first_bad = n;
        }
        printf("batch invariance out=%d in=%d ks=%d: rows identical to n=64's at every n in 1..64: %s\n", out, in,
               vk_gemm_skinny_splits(in, out), bad_n ? "NO" : "yes");
        CHECK(bad_n == 0, "batch invariance out=%d in=%d: %d values of n differ (first n=%d)", out, in, bad_n, first_bad);

        /* n = 5 vs n = 64 explicitly, with rows of x moved to other batch positions: x5 holds rows
         * {17, 40, 3, 63, 9} of x at positions 0..4 (other mma columns, other 8-column tiles). */
        const int pick[5] = {17, 40, 3, 63, 9};
        std::vector<uint16_t> x5((size_t)5 * in);
        for (int i = 0; i < 5; i++) memcpy(&x5[(size_t)i * in], &x[(size_t)pick[i] * in], (size_t)in * 2);
        dbuf<uint16_t> dx5(x5);
        dyf.poison();
        CK(vk_gemm_skinny(dt, 1, dyf.p, dx5.p, dw.p, 5, in, out, 0));
        auto g5 = dyf.down();
        int moved_bad = 0;
        for (int i = 0; i < 5; i++) moved_bad += !same_rows(g5.data(), i, ref_f.data(), pick[i], out, 4);
        printf("batch invariance out=%d in=%d: n=5 with rows moved to other positions: %d of 5 rows differ\n", out, in,
               moved_bad);
        CHECK(moved_bad == 0, "moved rows out=%d in=%d", out, in);

        /* Either CTA height (mt) gives the same bits with the production split, and a rerun too. */
        int ks = vk_gemm_skinny_splits(in, out);
        int mt_bad = 0;
        for (int mt = 1; mt <= 2; mt++)
            for (int n : {8, 33, 64}) {
                dyf.poison();
                CK(vk_gemm_skinny_ex(dt, 1, dyf.p, dx.p, dw.p, n, in, out, mt, ks, 0));
                auto g = dyf.down();
                for (int i = 0; i < n; i++) mt_bad += !same_rows(g.data(), i, ref_f.data(), i, out, 4);
            }
        CHECK(mt_bad == 0, "mt changes results out=%d in=%d: %d rows differ", out, in, mt_bad);
    }
}

static void test_bad_args() {
    dbuf<uint16_t> d(64 * 64);
    CHECK(vk_gemm_skinny(VK_BF16, 0, d.p, d.p, d.p, 65, 64, 8, 0) == cudaErrorInvalidValue, "n > 64 accepted");
    CHECK(vk_gemm_skinny(VK_BF16, 0, d.p, d.p, d.p, 4, 60, 8, 0) == cudaErrorInvalidValue, "in %% 8 accepted");
    CHECK(vk_gemm_skinny_ex(VK_BF16, 0, d.p, d.p, d.p, 4, 64, 8, 3, 1, 0) == cudaErrorInvalidValue, "mt 3 accepted");
    CHECK(vk_gemm_skinny_ex(VK_BF16, 0, d.p, d.p, d.p, 4, 64, 8, 1, 3, 0) == cudaErrorInvalidValue, "ks 3 accepted");
    CHECK(vk_gemm_skinny(VK_BF16, 0, d.p, d.p, d.p, 0, 64, 8, 0) == cudaSuccess, "n = 0 is a no-op");
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], nullptr, 10) : (uint64_t)time(nullptr);
    printf("seed %llu\n", (unsigned long long)seed);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    test_bad_args();
    test_random_shapes(seed);
    test_llama_shapes(seed);
    test_batch_invariance(seed);
    CK(cudaDeviceSynchronize());
    printf("gemm_skinny: %s (%d failures)\n", ref::failures() ? "FAILED" : "ok", ref::failures());
    return ref::failures() ? 1 : 0;
}
