/* vk_gemm_stream (kernels/gemm_stream.cu; variant VK_GEMM_STREAM_TMA, kernels/gemm_stream_tma.cu,
 * where the GPU runs it) against a CPU reference, its reproducibility, its
 * independence of n, its workspace reuse across shapes and its programmatic dependent launch.
 *
 * Reference: double-precision dot products over the same storage-rounded inputs. Tolerance, per
 * element, with S = sum_k |x_k w_k| (the scale of the fp32 accumulation error):
 *     fp32 out:    |got - want| <= 2e-5 * S
 *     storage out: |got - want| <= 2e-5 * S + one storage half-ulp of |want| (2^-8 bf16, 2^-11 fp16)
 * (fp32 accumulation of in <= 14336 products in a fixed order stays far inside 2e-5 * S; a wrong
 * element, a missing K part or a stale row is off by O(S).) Outputs are poisoned with NaN first.
 * Shapes: random n in 1..64 (odd ones included), in a multiple of 8 but not of the 128-wide k
 * step, out not a multiple of the 128/256-row block, every variant, pdl on and off, both storage
 * types, both output types, plus Llama-3-8B shapes (one range per row block, ranges inside a row
 * block, ranges over many row blocks).
 *
 * Usage: test_gemm_stream [seed]. Exits 77 (ctest SKIP) when no GPU is present. */
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

/* Every element of y (storage type) and yf (fp32) against the reference; returns the bad count
 * and prints what (a label) with the worst error when verbose or anything is bad. */
static int verify(const problem &p, const std::vector<uint16_t> &ys, const std::vector<float> &yf, const char *what,
                  bool verbose) {
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
        printf("%s %s n=%d in=%d out=%d: %d bad, worst err/tol %.3f\n", what, dtn(p.dt), p.n, p.in, p.out, bad, worst);
    return bad;
}

/* Bitwise comparison of rows of y (elem bytes each element). */
static bool same_rows(const void *a, int ra, const void *b, int rb, int out, size_t elem) {
    return memcmp((const char *)a + (size_t)ra * out * elem, (const char *)b + (size_t)rb * out * elem, out * elem) == 0;
}

/* A zeroed workspace for products up to max_out rows. */
struct stream_ws {
    void *p = nullptr;
    size_t n = 0;
    explicit stream_ws(int max_out) : n(vk_gemm_stream_ws_bytes(max_out)) {
        CK(n ? cudaSuccess : cudaErrorInvalidValue);
        CK(cudaMalloc(&p, n));
        CK(cudaMemset(p, 0, n));
    }
    ~stream_ws() { cudaFree(p); }
};

/* One variant (bf16 only beyond 0) with pdl on or off, both output types, every element
 * against the reference with check_problem's tolerance; returns the bad count. */
static int check_stream(const problem &p, const stream_ws &ws, int variant, int pdl, bool verbose) {
    dbuf<uint16_t> dx(p.x), dw(p.w), dy((size_t)p.n * p.out);
    dbuf<float> dyf((size_t)p.n * p.out);
    cudaError_t e1 = vk_gemm_stream_ex(p.dt, 0, dy.p, dx.p, dw.p, p.n, p.in, p.out, ws.p, ws.n, variant, pdl, 0);
    cudaError_t e2 = vk_gemm_stream_ex(p.dt, 1, dyf.p, dx.p, dw.p, p.n, p.in, p.out, ws.p, ws.n, variant, pdl, 0);
    CK(cudaDeviceSynchronize());
    if (e1 != cudaSuccess || e2 != cudaSuccess) {
        printf("  stream launch failed: %s / %s\n", cudaGetErrorString(e1), cudaGetErrorString(e2));
        return 1;
    }
    char what[64];
    snprintf(what, sizeof what, "stream variant=%d pdl=%d", variant, pdl);
    int bad = verify(p, dy.down(), dyf.down(), what, verbose);
    return bad;
}

static void test_stream_shapes(uint64_t seed) {
    rng r(seed + 3);
    stream_ws ws(28672);
    const int ins[] = {8, 72, 264, 576, 1000, 2056, 4104};
    const int outs[] = {1, 7, 129, 255, 1003, 2111};
    for (int c = 0; c < 24; c++) {
        vk_dtype dt = c % 3 == 2 ? VK_F16 : VK_BF16;
        int n = c < 4 ? 1 + 2 * c : 1 + r.below(64);
        if (c == 4) n = 64;
        if (c == 5) n = 63;
        int in = ins[r.below(7)], out = outs[r.below(6)];
        problem p = make_problem(dt, n, in, out, r);
        int bad = check_stream(p, ws, 0, c & 1, c < 6);
        if (dt == VK_BF16) bad += check_stream(p, ws, 1 + r.below(VK_GEMM_STREAM_TMA - 1), 1, c < 6);
        if (vk_gemm_stream_has_tma()) {
            bad += check_stream(p, ws, VK_GEMM_STREAM_TMA, c & 1, c < 6);
            if (dt == VK_BF16)
                bad += check_stream(p, ws, VK_GEMM_STREAM_TMA + 1 + r.below(VK_GEMM_STREAM_VARIANTS - VK_GEMM_STREAM_TMA - 1),
                                    1, c < 6);
        }
        CHECK(bad == 0, "stream random shape %d: %s n=%d in=%d out=%d", c, dtn(dt), n, in, out);
    }
    /* Llama-3-8B shapes, every variant: one range per row block (q|k|v), ranges inside a row
     * block (down: 112 steps), ranges over many row blocks (gate|up). */
    const int shapes[][3] = {{6144, 4096, 32}, {4096, 4096, 64}, {28672, 4096, 5}, {4096, 14336, 9}};
    for (auto &s : shapes) {
        problem p = make_problem(VK_BF16, s[2], s[1], s[0], r);
        int bad = 0;
        for (int v = 0; v < VK_GEMM_STREAM_VARIANTS; v++)
            if (v < VK_GEMM_STREAM_TMA || vk_gemm_stream_has_tma()) bad += check_stream(p, ws, v, 1, true);
        CHECK(bad == 0, "stream llama shape out=%d in=%d n=%d", s[0], s[1], s[2]);
    }
}

/* Same bits run to run, at every n (a row's result does not depend on the batch), with pdl. */
static void test_stream_reproducible(uint64_t seed, int variant) {
    rng r(seed + 4);
    const int shapes[][2] = {{4096, 4096}, {4096, 14336}, {1003, 1000}};
    stream_ws ws(4096);
    for (auto &s : shapes) {
        int out = s[0], in = s[1];
        auto x = rand_storage(VK_BF16, (size_t)64 * in, r, 1.f), w = rand_storage(VK_BF16, (size_t)out * in, r, 0.05f);
        dbuf<uint16_t> dx(x), dw(w);
        dbuf<float> dyf((size_t)64 * out);
        CK(vk_gemm_stream_ex(VK_BF16, 1, dyf.p, dx.p, dw.p, 64, in, out, ws.p, ws.n, variant, 0, 0));
        auto ref64 = dyf.down();
        int bad_n = 0, first_bad = 0;
        for (int n = 1; n <= 64; n += (n < 10 ? 1 : 7)) {
            dyf.poison();
            CK(vk_gemm_stream_ex(VK_BF16, 1, dyf.p, dx.p, dw.p, n, in, out, ws.p, ws.n, variant, n & 1, 0));
            auto g = dyf.down();
            bool ok = true;
            for (int i = 0; i < n; i++) ok = ok && same_rows(g.data(), i, ref64.data(), i, out, 4);
            if (!ok && bad_n++ == 0) first_bad = n;
        }
        printf("stream variant %d out=%d in=%d: rows identical to n=64's at every n tried: %s\n", variant, out, in,
               bad_n ? "NO" : "yes");
        CHECK(bad_n == 0, "stream variant %d n-dependence out=%d in=%d: %d values of n differ (first %d)", variant, out, in,
              bad_n, first_bad);
    }
}

/* A chain of products launched back to back with pdl, each reading the previous one's output:
 * if a kernel read x before the previous kernel finished, the chain would see poisoned or stale
 * values. Shapes alternate so that one workspace serves different partitions in turn. The
 * result must equal the same chain run with pdl off and a sync after every product. */
static void test_stream_pdl_chain(uint64_t seed, int variant) {
    rng r(seed + 5);
    const int dims[] = {4096, 14336, 4096, 6144, 4096};
    const int L = 4, n = 16;
    stream_ws ws(14336);
    std::vector<dbuf<uint16_t> *> w;
    for (int i = 0; i < L; i++) w.push_back(new dbuf<uint16_t>(rand_storage(VK_BF16, (size_t)dims[i + 1] * dims[i], r, 0.02f)));
    dbuf<uint16_t> x0(rand_storage(VK_BF16, (size_t)n * dims[0], r, 1.f));
    std::vector<dbuf<uint16_t> *> act;
    for (int i = 0; i < L; i++) act.push_back(new dbuf<uint16_t>((size_t)n * dims[i + 1]));
    auto run = [&](int pdl) {
        for (auto *a : act) a->poison();
        CK(cudaDeviceSynchronize());
        for (int rep = 0; rep < 3; rep++)
            for (int i = 0; i < L; i++) {
                const void *in = i ? act[i - 1]->p : x0.p;
                CK(vk_gemm_stream_ex(VK_BF16, 0, act[i]->p, in, w[i]->p, n, dims[i], dims[i + 1], ws.p, ws.n, variant, pdl,
                                     0));
                if (!pdl) CK(cudaDeviceSynchronize());
            }
        CK(cudaDeviceSynchronize());
        return act[L - 1]->down();
    };
    auto want = run(0), got = run(1);
    bool finite = true;
    for (uint16_t v : want) finite = finite && !std::isnan(s2f(VK_BF16, v));
    CHECK(finite, "pdl chain: the reference chain has NaN");
    CHECK(memcmp(want.data(), got.data(), want.size() * 2) == 0, "pdl chain: results differ from the synchronous chain");
    printf("stream variant %d pdl chain of %d products x 3: %s\n", variant, L,
           memcmp(want.data(), got.data(), want.size() * 2) ? "DIFFERS" : "identical");
    for (auto *p : w) delete p;
    for (auto *p : act) delete p;
}

static void test_stream_bad_args() {
    dbuf<uint16_t> d(64 * 64);
    stream_ws ws(64);
    CHECK(vk_gemm_stream(VK_BF16, 0, d.p, d.p, d.p, 65, 64, 8, ws.p, ws.n, 0, 0) == cudaErrorInvalidValue, "stream n > 64 accepted");
    CHECK(vk_gemm_stream(VK_BF16, 0, d.p, d.p, d.p, 4, 60, 8, ws.p, ws.n, 0, 0) == cudaErrorInvalidValue, "stream in %% 8 accepted");
    CHECK(vk_gemm_stream(VK_BF16, 0, d.p, d.p, d.p, 4, 64, 8, nullptr, 0, 0, 0) == cudaErrorInvalidValue, "stream no workspace accepted");
    CHECK(vk_gemm_stream(VK_BF16, 0, d.p, d.p, d.p, 4, 64, 200, ws.p, ws.n, 0, 0) == cudaErrorInvalidValue,
          "stream workspace for 64 rows accepted for 200");
    CHECK(vk_gemm_stream_ex(VK_F16, 0, d.p, d.p, d.p, 4, 64, 8, ws.p, ws.n, 1, 0, 0) == cudaErrorInvalidValue, "stream fp16 bench variant accepted");
    CHECK(vk_gemm_stream_ex(VK_BF16, 0, d.p, d.p, d.p, 4, 64, 8, ws.p, ws.n, VK_GEMM_STREAM_VARIANTS, 0, 0) == cudaErrorInvalidValue, "stream variant out of range accepted");
    CHECK(vk_gemm_stream(VK_BF16, 0, d.p, d.p, d.p, 0, 64, 8, ws.p, ws.n, 0, 0) == cudaSuccess, "stream n = 0 is a no-op");
    CHECK(vk_gemm_stream_ws_bytes(0) == 0, "stream workspace for no rows");
    /* The TMA variant: where it cannot run it says so; where it can, a misaligned x is refused. */
    cudaError_t e = vk_gemm_stream_ex(VK_BF16, 0, d.p, (const char *)d.p + 2, d.p, 4, 64, 8, ws.p, ws.n, VK_GEMM_STREAM_TMA, 0, 0);
    CHECK(e == (vk_gemm_stream_has_tma() ? cudaErrorInvalidValue : cudaErrorNotSupported), "stream tma: misaligned x gave %s",
          cudaGetErrorString(e));
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
    test_stream_bad_args();
    test_stream_shapes(seed);
    printf("TMA variant (version 3): %s\n", vk_gemm_stream_has_tma() ? "runs here" : "not on this GPU / build");
    for (int v : {0, VK_GEMM_STREAM_TMA}) {
        if (v == VK_GEMM_STREAM_TMA && !vk_gemm_stream_has_tma()) continue;
        test_stream_reproducible(seed, v);
        test_stream_pdl_chain(seed, v);
    }
    CK(cudaDeviceSynchronize());
    printf("gemm_stream: %s (%d failures)\n", ref::failures() ? "FAILED" : "ok", ref::failures());
    return ref::failures() ? 1 : 0;
}
