/* Each Vesta CUDA kernel against its CPU reference (kernel_ref.h) on fresh random inputs, with the
 * tolerance stated at each check (ggml test-backend-ops style): odd sizes, fragmented block
 * tables, mixed decode/prefill batches, long contexts (split-K), both storage types.
 * Outputs are poisoned (NaN patterns) before each run so an unwritten element fails.
 * Usage: test_kernels <name>|all [seed]. Exits 77 (ctest SKIP) when no GPU is present. */
#include <algorithm>
#include <string>

#include "attention.cuh"
#include "kernel_ref.h"
#include "sampler.h"

using namespace ref;

static uint64_t g_seed = 1234;

static std::vector<float> to_f(vk_dtype dt, const std::vector<uint16_t> &s)
{
    std::vector<float> f(s.size());
    for (size_t i = 0; i < s.size(); i++) f[i] = s2f(dt, s[i]);
    return f;
}
/* One storage ulp at magnitude 1, times a few: the tolerance for elementwise results that the
 * kernel and the reference round at the same points (they differ only by fp32 reduction order). */
static double ulp_tol(vk_dtype dt) { return dt == VK_BF16 ? 1.6e-2 : 2e-3; }

static void test_embedding(vk_dtype dt)
{
    rng r(g_seed);
    int vocab = 1003, hidden = 264, n = 77;
    auto table = rand_storage(dt, (size_t)vocab * hidden, r, 1.f);
    std::vector<int32_t> ids(n);
    for (auto &x : ids) x = r.below(vocab + 10) - 5; /* some out of range */
    dbuf<uint16_t> dt_(table), dout((size_t)n * hidden);
    dbuf<int32_t> dids(ids);
    CK(vk_embedding(dt, dout.p, dt_.p, dids.p, n, hidden, vocab, 0));
    auto out = dout.down();
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < hidden; j++) {
            uint16_t want = ids[i] >= 0 && ids[i] < vocab ? table[(size_t)ids[i] * hidden + j] : 0;
            bad += out[(size_t)i * hidden + j] != want;
        }
    printf("embedding %s: %d mismatches (exact copy expected)\n", dtn(dt), bad);
    CHECK(bad == 0, "embedding %s", dtn(dt));
}

static void test_rmsnorm(vk_dtype dt)
{
    int sizes[] = {8, 576, 4096, 4104, 5120};
    for (int h : sizes) {
        rng r(g_seed + h);
        int n = 37;
        auto res = rand_storage(dt, (size_t)n * h, r, 2.f), x = rand_storage(dt, (size_t)n * h, r, 2.f);
        auto w = rand_storage(dt, h, r, 1.5f);
        for (int with_x = 0; with_x < 2; with_x++) {
            dbuf<uint16_t> dres(res), dx(x), dw(w), dout((size_t)n * h);
            CK(vk_add_rmsnorm(dt, dout.p, dres.p, with_x ? dx.p : nullptr, dw.p, n, h, 1e-5f, 0, 0));
            auto fres = to_f(dt, res), fx = to_f(dt, x), fw = to_f(dt, w);
            std::vector<float> fout((size_t)n * h);
            add_rmsnorm(dt, fout.data(), fres.data(), with_x ? fx.data() : nullptr, fw.data(), n, h, 1e-5f);
            err e = compare(to_f(dt, dout.down()), fout);
            err e2 = compare(to_f(dt, dres.down()), fres);
            printf("add_rmsnorm %s h=%d x=%d: rel %.2e max %.2e (tol rel %.1e), residual rel %.2e\n", dtn(dt), h,
                   with_x, e.rel, e.maxabs, ulp_tol(dt) / 4, e2.rel);
            CHECK(e.rel < ulp_tol(dt) / 4 && e2.rel == 0, "add_rmsnorm");
        }
    }
}

static void test_gather_silu(vk_dtype dt)
{
    rng r(g_seed + 7);
    int n = 19, F = 1432;
    auto gu = rand_storage(dt, (size_t)n * 2 * F, r, 4.f);
    dbuf<uint16_t> dgu(gu), dout((size_t)n * F);
    CK(vk_silu_and_mul(dt, dout.p, dgu.p, n, F, 0, 0));
    auto fgu = to_f(dt, gu);
    std::vector<float> ref((size_t)n * F);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++) {
            float g = fgu[(size_t)i * 2 * F + j], u = fgu[(size_t)i * 2 * F + F + j];
            ref[(size_t)i * F + j] = rnd(dt, rnd(dt, g / (1.f + expf(-g))) * u);
        }
    err e = compare(to_f(dt, dout.down()), ref);
    printf("silu_and_mul %s: rel %.2e (tol %.1e)\n", dtn(dt), e.rel, ulp_tol(dt) / 4);
    CHECK(e.rel < ulp_tol(dt) / 4, "silu_and_mul");

    std::vector<int32_t> idx = {5, 0, 18, 5, 3};
    dbuf<int32_t> didx(idx);
    dbuf<uint16_t> dg(idx.size() * 2 * F);
    CK(vk_gather_rows(dg.p, dgu.p, didx.p, (int)idx.size(), 2 * F, 2, 0));
    auto g = dg.down();
    int bad = 0;
    for (size_t i = 0; i < idx.size(); i++)
        for (int j = 0; j < 2 * F; j++) bad += g[i * 2 * F + j] != gu[(size_t)idx[i] * 2 * F + j];
    printf("gather_rows: %d mismatches\n", bad);
    CHECK(bad == 0, "gather_rows");
}

static void test_rope(vk_dtype dt)
{
    /* inv_freq: llama3 scaling against a double-precision evaluation of HF's formula. */
    vk_rope_config rc = {128, 500000.f, 2, 8.f, 1.f, 4.f, 8192};
    float inv[64];
    vk_rope_inv_freq(&rc, inv);
    double worst = 0;
    for (int i = 0; i < 64; i++) {
        double f = 1.0 / pow(500000.0, 2.0 * i / 128), wl = 2 * M_PI / f, lo = 8192 / 1.0, hi = 8192 / 4.0, g;
        if (wl < hi)
            g = f;
        else if (wl > lo)
            g = f / 8;
        else {
            double sm = (8192 / wl - 1) / (4 - 1);
            g = (1 - sm) * f / 8 + sm * f;
        }
        worst = std::max(worst, fabs(inv[i] - g) / g);
    }
    printf("rope inv_freq llama3: max rel %.2e (tol 1e-5)\n", worst);
    CHECK(worst < 1e-5, "inv_freq");

    int shapes[][3] = {{32, 8, 128}, {9, 3, 64}, {4, 4, 64}, {4, 2, 24}}; /* D = 24: no 16-byte vectors */
    for (auto &sh : shapes) {
        int H = sh[0], KVH = sh[1], D = sh[2];
        rng r(g_seed + H);
        int n = 45, bs = 16, nblocks = 10, W = (H + 2 * KVH) * D;
        auto qkv = rand_storage(dt, (size_t)n * W, r, 2.f);
        auto bias = rand_storage(dt, W, r, 0.5f);
        std::vector<int32_t> pos(n), slot(n);
        std::vector<int32_t> perm(nblocks * bs);
        for (int i = 0; i < nblocks * bs; i++) perm[i] = i;
        for (int i = nblocks * bs - 1; i > 0; i--) std::swap(perm[i], perm[r.below(i + 1)]);
        for (int i = 0; i < n; i++) {
            pos[i] = r.below(9000);
            slot[i] = i == 3 ? -1 : perm[i];
        }
        rc.head_dim = D;
        rc.scaling = 0;
        rc.theta = 10000.f;
        std::vector<float> invf(D / 2);
        vk_rope_inv_freq(&rc, invf.data());
        for (int run = 0; run < 6; run++) { /* version 0 (production), 1, 2; without and with a bias */
            const int version = run / 2, use_bias = run % 2;
            dbuf<uint16_t> dqkv(qkv), dbias(bias), kc((size_t)nblocks * bs * KVH * D),
                vc((size_t)nblocks * bs * KVH * D);
            dbuf<int32_t> dpos(pos), dslot(slot);
            dbuf<float> dinv(invf);
            const cudaError_t e = vk_rope_kv_write_v(version, dt, dqkv.p, use_bias ? dbias.p : nullptr, dpos.p,
                                                     dslot.p, dinv.p, kc.p, vc.p, n, H, KVH, D, 0, 0);
            if (version == 2 && D % 16) { /* refused; production takes version 1 there */
                CHECK(e == cudaErrorInvalidValue, "rope v2 accepted D=%d", D);
                continue;
            }
            CK(e);
            if (run == 0) /* misaligned (q of token 0 one element in) and unknown versions are refused */
                CHECK(vk_rope_kv_write_v(2, dt, dqkv.p + 1, nullptr, dpos.p, dslot.p, dinv.p, kc.p, vc.p, 1, H, KVH,
                                         D, 0, 0) == cudaErrorInvalidValue &&
                          vk_rope_kv_write_v(3, dt, dqkv.p, nullptr, dpos.p, dslot.p, dinv.p, kc.p, vc.p, n, H, KVH,
                                             D, 0, 0) == cudaErrorInvalidValue,
                      "rope: a misaligned v2 or version 3 accepted");
            auto oq = to_f(dt, dqkv.down()), ok = to_f(dt, kc.down()), ov = to_f(dt, vc.down());
            std::vector<float> gq, wq, gk, wk;
            for (int t = 0; t < n; t++) {
                for (int h = 0; h < H + 2 * KVH; h++) {
                    for (int i = 0; i < D; i++) {
                        int half = D / 2, j = i % half;
                        auto in = [&](int e) {
                            float x = s2f(dt, qkv[(size_t)t * W + h * D + e]);
                            return use_bias ? rnd(dt, x + s2f(dt, bias[h * D + e])) : x;
                        };
                        float want;
                        if (h < H + KVH) {
                            float ang = (float)pos[t] * invf[j];
                            float c = rnd(dt, cosf(ang)), s = rnd(dt, sinf(ang));
                            float x = in(i), other = i < half ? -in(i + half) : in(i - half);
                            want = rnd(dt, rnd(dt, x * c) + rnd(dt, other * s));
                        } else {
                            want = in(i);
                        }
                        float got;
                        if (h < H)
                            got = oq[(size_t)t * W + h * D + i];
                        else if (slot[t] < 0)
                            continue;
                        else if (h < H + KVH)
                            got = ok[((size_t)slot[t] * KVH + (h - H)) * D + i];
                        else
                            got = ov[((size_t)slot[t] * KVH + (h - H - KVH)) * D + i];
                        (h < H ? gq : gk).push_back(got);
                        (h < H ? wq : wk).push_back(want);
                    }
                }
            }
            err eq = compare(gq, wq), ek = compare(gk, wk);
            printf("rope_kv_write v%d %s H=%d KVH=%d D=%d bias=%d: q rel %.2e, kv rel %.2e (tol %.1e)\n", version,
                   dtn(dt), H, KVH, D, use_bias, eq.rel, ek.rel, ulp_tol(dt) / 4);
            CHECK(eq.rel < ulp_tol(dt) / 4 && ek.rel < ulp_tol(dt) / 4, "rope");
        }
    }
}

/* A batch of sequences (query_len, context_len) over a fragmented, shuffled block pool. bound > 0:
 * the launch's max_context_len, a decode graph's (the longest context the model allows) instead of
 * the batch's. */
static void run_attention_case(vk_dtype dt, int H, int KVH, int D, int bs, const std::vector<std::pair<int, int>> &seqs,
                               const char *label, int bound = 0)
{
    rng r(g_seed + H * 131 + D + seqs.size());
    int ns = (int)seqs.size();
    int max_ctx = 0, total_blocks = 0, ntok = 0;
    for (auto &s : seqs) {
        max_ctx = std::max(max_ctx, s.second);
        total_blocks += (s.second + bs - 1) / bs;
        ntok += s.first;
    }
    int pool = total_blocks + 7;
    int mbps = (max_ctx + bs - 1) / bs + 2;
    if (bound > max_ctx) max_ctx = bound;
    std::vector<int32_t> perm(pool);
    for (int i = 0; i < pool; i++) perm[i] = i;
    for (int i = pool - 1; i > 0; i--) std::swap(perm[i], perm[r.below(i + 1)]);
    std::vector<int32_t> bt((size_t)ns * mbps, -1), qs(ns + 1), cl(ns);
    int next = 0;
    qs[0] = 0;
    bool has_decode = false;
    for (int i = 0; i < ns; i++) {
        for (int b = 0; b < (seqs[i].second + bs - 1) / bs; b++) bt[(size_t)i * mbps + b] = perm[next++];
        qs[i + 1] = qs[i] + seqs[i].first;
        cl[i] = seqs[i].second;
        has_decode |= seqs[i].first == 1;
    }
    size_t cache_elems = (size_t)pool * bs * KVH * D;
    auto kc = rand_storage(dt, cache_elems, r, 1.f), vc = rand_storage(dt, cache_elems, r, 1.f);
    int qstride = (H + 2 * KVH) * D;
    auto q = rand_storage(dt, (size_t)ntok * qstride, r, 1.f);
    std::vector<int32_t> tiles(2 * vk_prefill_tiles_max(ntok, ns));
    int nt = vk_prefill_tiles_build(qs.data(), nullptr, ns, 0, H, KVH, tiles.data(), (int)tiles.size() / 2);
    dbuf<uint16_t> dk(kc), dv(vc), dq(q), dout((size_t)ntok * H * D);
    dbuf<int32_t> dbt(bt), dqs(qs), dcl(cl), dtiles(tiles);
    dbuf<char> scratch(vk_attention_scratch_bytes(ns, H, D, max_ctx));
    vk_attention_args a = {};
    a.dt = dt;
    a.out = dout.p;
    a.q = dq.p;
    a.q_stride = qstride;
    a.k_cache = dk.p;
    a.v_cache = dv.p;
    a.query_start = dqs.p;
    a.context_lens = dcl.p;
    a.block_tables = dbt.p;
    a.num_seqs = ns;
    a.max_blocks_per_seq = mbps;
    a.H = H;
    a.KVH = KVH;
    a.D = D;
    a.block_size = bs;
    a.scale = 1.0f / sqrtf((float)D);
    a.max_context_len = max_ctx;
    a.has_decode = has_decode;
    a.prefill_tiles = dtiles.p;
    a.num_prefill_tiles = nt;
    a.scratch = scratch.p;
    std::vector<std::vector<float>> gots;
    std::vector<std::string> names;
    std::vector<uint16_t> bits5, bits7; /* decode versions 5 and 7, for production's pick */
    /* 1: both first kernels; 2: one-pass decode + mma prefill; 3, 5, 7: decode v3 / v5 / v7 + mma
     * prefill (versions 4 and 6 were removed); 3, 5 and 7 only where there are decode rows (else the
     * same kernels as 2) */
    for (int version : {1, 2, 3, 5, 7}) {
        if (version >= 3 && !has_decode) continue;
        CK(cudaMemset(dout.p, 0xff, dout.n * 2)); /* poison */
        CK(vk_attention_v(&a, version, version == 1 ? 1 : 2, 0));
        CK(cudaDeviceSynchronize());
        gots.push_back(to_f(dt, dout.down()));
        names.push_back("v" + std::to_string(version));
        if (version == 5) bits5 = dout.down();
        if (version == 7) bits7 = dout.down();
    }
    if (has_decode && (D == 128 || D == 64) && H / KVH <= 8) {
        /* production's decode kernel: version 7 where its (sequence, KV head) pairs keep 7/8 of its
         * warps (2 blocks of 4 per SM) busy, version 5 below, whatever the contexts' bound */
        int sms = 0;
        CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        const bool v7 = 8L * ns * KVH >= 7L * 8 * sms;
        CK(cudaMemset(dout.p, 0xff, dout.n * 2));
        CK(vk_attention(&a, 0));
        CK(cudaDeviceSynchronize());
        CHECK(dout.down() == (v7 ? bits7 : bits5), "attention %s %s: production is not decode version %d", label, dtn(dt),
              v7 ? 7 : 5);
    }
    if (vk_pdl_supported()) { /* production launched as programmatic dependents: the same bits */
        std::vector<uint16_t> outs[2];
        for (int pdl = 0; pdl < 2; pdl++) {
            vk_attention_args ap = a;
            ap.pdl = pdl;
            CK(cudaMemset(dout.p, 0xff, dout.n * 2));
            CK(vk_attention(&ap, 0));
            CK(cudaDeviceSynchronize());
            outs[pdl] = dout.down();
        }
        CHECK(outs[0] == outs[1], "attention %s %s: pdl changed the output", label, dtn(dt));
    }
    /* decode v5's and v7's other configurations (1..: variant 0 is the version itself), every dtype
     * and shape */
    const struct { int version, base, count; } variants[] = {{5, VK_DECODE_V5_VARIANT_BASE, VK_DECODE_V5_VARIANTS},
                                                             {7, VK_DECODE_V7_VARIANT_BASE, VK_DECODE_V7_VARIANTS}};
    for (const auto &vs : variants)
        for (int v = 1; has_decode && v < vs.count; v++) {
            CK(cudaMemset(dout.p, 0xff, dout.n * 2));
            CK(vk_attention_v(&a, vs.base + v, 2, 0));
            CK(cudaDeviceSynchronize());
            gots.push_back(to_f(dt, dout.down()));
            names.push_back("v" + std::to_string(vs.version) + " variant " + std::to_string(v));
        }
    /* The prefill kernel with another tiling: per KV group in the default mode (split-K as usual),
     * or batch-invariant (every row through the prefill kernel, no key split). */
    auto run_tiled = [&](int mode, const char *label, int wide_kernel = VK_WIDE_MMA) {
        std::vector<int32_t> mtiles(2 * vk_prefill_tiles_max(ntok, ns));
        const int nmt = vk_prefill_tiles_build(qs.data(), cl.data(), ns, mode, H, KVH, mtiles.data(), (int)mtiles.size() / 2);
        CHECK(nmt >= 0, "%s tiles", label);
        dbuf<int32_t> dmtiles(mtiles);
        vk_attention_args am = a;
        am.prefill_tiles = dmtiles.p;
        am.num_prefill_tiles = nmt;
        am.group_heads = (mode & ~(VK_TILES_LONGEST_FIRST | VK_TILES_WIDE)) == VK_TILES_GROUP;
        am.wide_tiles = (mode & VK_TILES_WIDE) ? wide_kernel : 0;
        am.batch_invariant = mode == VK_TILES_INVARIANT;
        CK(cudaMemset(dout.p, 0xff, dout.n * 2)); /* poison */
        CK(vk_attention(&am, 0));
        CK(cudaDeviceSynchronize());
        gots.push_back(to_f(dt, dout.down()));
        names.push_back(label);
        if (am.wide_tiles && vk_pdl_supported()) { /* launched as a programmatic dependent: the same bits */
            const std::vector<uint16_t> plain = dout.down();
            am.pdl = 1;
            CK(cudaMemset(dout.p, 0xff, dout.n * 2));
            CK(vk_attention(&am, 0));
            CK(cudaDeviceSynchronize());
            CHECK(dout.down() == plain, "attention %s %s: pdl changed the wide tiles' output", label, dtn(dt));
        }
        if (mode == VK_TILES_GROUP && nmt > 0) /* prefill version 1 takes one head per tile only */
            CHECK(vk_attention_ex(&am, 1, 0) == cudaErrorInvalidValue, "prefill v1 accepted grouped tiles");
    };
    if (H / KVH <= VK_PREFILL_MAX_GROUP) run_tiled(VK_TILES_GROUP, "grouped prefill");
    if (H / KVH <= VK_PREFILL_MAX_GROUP)
        run_tiled(VK_TILES_GROUP | VK_TILES_LONGEST_FIRST, "grouped prefill, longest first"); /* production */
    /* wide tiles wherever the GPU has them, also where vk_prefill_wide would not pick them */
    if (H / KVH >= 2 && H / KVH <= VK_PREFILL_MAX_GROUP && vk_prefill_wide_supported(D)) {
        run_tiled(VK_TILES_GROUP | VK_TILES_WIDE, "wide prefill");
        run_tiled(VK_TILES_GROUP | VK_TILES_WIDE | VK_TILES_LONGEST_FIRST, "wide prefill, longest first");
        if (vk_prefill_wide_wgmma_supported(D, bs)) { /* the same tiles on wgmma */
            run_tiled(VK_TILES_GROUP | VK_TILES_WIDE, "wide prefill (wgmma)", VK_WIDE_WGMMA);
            run_tiled(VK_TILES_GROUP | VK_TILES_WIDE | VK_TILES_LONGEST_FIRST, "wide prefill, longest first (wgmma)",
                      VK_WIDE_WGMMA);
        }
    }
    run_tiled(VK_TILES_HEAD | VK_TILES_LONGEST_FIRST, "prefill per head, longest first");
    run_tiled(VK_TILES_INVARIANT, "batch-invariant");
    auto fk = to_f(dt, kc), fv = to_f(dt, vc), fq = to_f(dt, q);
    std::vector<float> want((size_t)ntok * H * D);
    int G = H / KVH;
    for (int i = 0; i < ns; i++) {
        int qlen = seqs[i].first, ctx = seqs[i].second;
        for (int qi = 0; qi < qlen; qi++) {
            int t = qs[i] + qi, p = ctx - qlen + qi;
            for (int h = 0; h < H; h++) {
                std::vector<const float *> ks, vs;
                for (int j = 0; j <= p; j++) {
                    size_t off = (((size_t)bt[(size_t)i * mbps + j / bs] * bs + j % bs) * KVH + h / G) * D;
                    ks.push_back(&fk[off]);
                    vs.push_back(&fv[off]);
                }
                attend(&fq[(size_t)t * qstride + h * D], ks, vs, D, a.scale, &want[((size_t)t * H + h) * D]);
            }
        }
    }
    /* bf16 output rounding alone is ~2e-3 relative; P is rounded to the storage type before P V. */
    double tol = dt == VK_BF16 ? 1e-2 : 3e-3;
    for (size_t k = 0; k < gots.size(); k++) {
        err e = compare(gots[k], want);
        const std::string &vn = names[k];
        printf("attention %s %s %s H=%d KVH=%d D=%d bs=%d seqs=%d tokens=%d tiles=%d: rel %.2e max %.2e "
               "(tol %.1e)\n",
               label, dtn(dt), vn.c_str(), H, KVH, D, bs, ns, ntok, nt, e.rel, e.maxabs, tol);
        CHECK(e.rel < tol, "attention %s %s", label, vn.c_str());
    }
}

static void test_attention(vk_dtype dt)
{
    /* decode only: short, exactly one partition, just over, long (split-K over 10 partitions) */
    run_attention_case(dt, 32, 8, 128, 16, {{1, 1}, {1, 17}, {1, 512}, {1, 513}, {1, 5000}, {1, 300}}, "decode");
    run_attention_case(dt, 9, 3, 64, 16, {{1, 7}, {1, 1100}, {1, 64}}, "decode-gqa3");
    run_attention_case(dt, 8, 8, 128, 32, {{1, 40}, {1, 2049}}, "decode-mha");
    run_attention_case(dt, 32, 8, 128, 16, {{1, 700}}, "decode-single-stream"); /* short partitions */
    std::vector<std::pair<int, int>> full; /* 40 x 8 KV heads fill an H100: full partitions */
    for (int i = 0; i < 40; i++) full.push_back({1, 1 + (i * 997) % 1500});
    run_attention_case(dt, 32, 8, 128, 16, full, "decode-full-batch");
    /* more (sequence, KV head) items than version 7's warps: several items per warp, ranges split
     * past 1,024 keys, prefill rows among them (items the warps skip) */
    std::vector<std::pair<int, int>> many;
    for (int i = 0; i < 300; i++) many.push_back(i % 97 == 5 ? std::make_pair(9, 40 + i) : std::make_pair(1, 1 + (i * 613) % 2300));
    run_attention_case(dt, 32, 8, 128, 16, many, "decode-many");
    /* production's pick under a decode graph's bound: one sequence (version 5, even under
     * Llama-3.1's 131,072 tokens), one per SM (version 7) and half as many (version 5) */
    run_attention_case(dt, 32, 8, 128, 16, {{1, 640}}, "decode-pick-one-long-bound", 131072);
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    for (int n : {sms, sms / 2}) {
        std::vector<std::pair<int, int>> batch;
        for (int i = 0; i < n; i++) batch.push_back({1, 1 + (i * 389) % 900});
        run_attention_case(dt, 32, 8, 128, 16, batch, n == sms ? "decode-pick-per-sm" : "decode-pick-half", 8192);
    }
    /* partitions picked on the device from the real contexts (versions 5 and 7, since run 153): a few
     * sequences of 1-3,000 keys and one of 20,000 (ranges capped at 512 keys) under Llama-3.1's
     * bound (version 5); 1.4 sequences per SM, where version 7 cuts short ranges in two or more,
     * under their own bound (a combine kernel only for the cut) and under 8,192 */
    std::vector<std::pair<int, int>> few;
    for (int i = 0; i < 8; i++) few.push_back({1, 1 + (i * 1231) % 3000});
    run_attention_case(dt, 32, 8, 128, 16, few, "decode-device-part-few", 131072);
    run_attention_case(dt, 32, 8, 128, 16, {{1, 20000}}, "decode-device-part-long", 131072);
    std::vector<std::pair<int, int>> cut;
    for (int i = 0; i < sms * 7 / 5; i++) cut.push_back({1, 1 + (i * 271) % 640});
    run_attention_case(dt, 32, 8, 128, 16, cut, "decode-device-part-cut");
    run_attention_case(dt, 32, 8, 128, 16, cut, "decode-device-part-cut-bound", 8192);
    /* many sequences under a long bound: the partials' stride is capped (vk_decode_stride_cap: 16
     * splits at 520 sequences, not 256), so ranges from the bound grow to 8,192 keys */
    std::vector<std::pair<int, int>> capped;
    for (int i = 0; i < 520; i++) capped.push_back({1, 1 + (i * 613) % 1500});
    run_attention_case(dt, 32, 8, 128, 16, capped, "decode-stride-capped", 131072);
    /* prefill from empty, odd lengths; chunked prefill / prefix hits (context > query) */
    run_attention_case(dt, 32, 8, 128, 16, {{63, 63}, {65, 65}, {2, 2}, {200, 200}}, "prefill");
    run_attention_case(dt, 32, 8, 128, 16, {{100, 1124}, {64, 80}, {3, 515}}, "chunked");
    run_attention_case(dt, 9, 3, 64, 16, {{130, 130}, {17, 400}}, "prefill-gqa3");
    /* mixed batch as the scheduler builds it: decodes and prefill chunks together */
    run_attention_case(dt, 32, 8, 128, 16, {{1, 33}, {77, 77}, {1, 700}, {129, 2177}, {1, 1}}, "mixed");
    /* few query rows over a long cached context: the prefill kernel splits the key range */
    run_attention_case(dt, 32, 8, 128, 16, {{32, 4128}}, "prefix-hit-split");
    run_attention_case(dt, 9, 3, 64, 16, {{5, 3000}, {1, 900}, {70, 2000}}, "split-gqa3");
    /* wide tiles' shapes: groups of 8 and 2, several sequences and decode rows, a split whose keys
     * end inside a block, a tile that starts past its sequence's last query row's keys */
    run_attention_case(dt, 16, 2, 128, 16, {{20, 3000}, {1, 2500}, {48, 1500}, {17, 17}}, "split-gqa8");
    run_attention_case(dt, 8, 4, 64, 16, {{64, 2600}, {3, 700}, {1, 1}, {130, 1200}}, "split-gqa2");
    run_attention_case(dt, 32, 8, 128, 16, {{32, 4128}, {31, 9000}, {96, 600}}, "prefix-hits");
    /* a block size that is not a power of two (the kernels' gathers divide instead of shifting) */
    run_attention_case(dt, 32, 8, 128, 12, {{1, 700}, {100, 1124}, {32, 2000}, {1, 13}}, "block-size-12");
    /* blocks smaller than the rows between a decode thread's copies (version 5 steps a row's
     * block more than once) and of one slot; decode rows over many ranges */
    run_attention_case(dt, 32, 8, 128, 4, {{1, 700}, {100, 1124}, {1, 5000}, {1, 13}}, "block-size-4");
    run_attention_case(dt, 32, 8, 128, 1, {{1, 300}, {20, 257}, {1, 2100}}, "block-size-1");
    /* blocks of 32 slots: the wgmma kernel's tensor copies take 32 slots at a time */
    run_attention_case(dt, 32, 8, 128, 32, {{32, 2000}, {100, 1124}, {1, 700}, {45, 45}}, "block-size-32");
}

/* Batch invariance (vesta_kernels.h, batch_invariant): attention rows of one L-token document
 * computed as one whole prompt are compared bit for bit with the same rows computed as decode
 * rows, as chunks starting at unaligned positions and beside other sequences. */
static void run_attention_invariant(vk_dtype dt, int H, int KVH, int D, int L)
{
    const int bs = 16, nblk = (L + bs - 1) / bs, pool = nblk + 5;
    const int qstride = (H + 2 * KVH) * D;
    rng r(g_seed + 4242);
    std::vector<int32_t> perm(pool);
    for (int i = 0; i < pool; i++) perm[i] = i;
    for (int i = pool - 1; i > 0; i--) std::swap(perm[i], perm[r.below(i + 1)]);
    auto kc = rand_storage(dt, (size_t)pool * bs * KVH * D, r, 1.f), vc = rand_storage(dt, kc.size(), r, 1.f);
    auto q = rand_storage(dt, (size_t)L * qstride, r, 1.f);
    dbuf<uint16_t> dk(kc), dv(vc);
    /* parts: (first query position, query rows) of each sequence; all read the same document */
    auto run = [&](const std::vector<std::pair<int, int>> &parts) {
        const int ns = (int)parts.size();
        std::vector<int32_t> qs(ns + 1, 0), cl(ns), bt((size_t)ns * nblk);
        std::vector<uint16_t> qq;
        int max_ctx = 1;
        bool has_decode = false;
        for (int i = 0; i < ns; i++) {
            const int p0 = parts[i].first, len = parts[i].second;
            qs[i + 1] = qs[i] + len;
            cl[i] = p0 + len;
            max_ctx = std::max(max_ctx, cl[i]);
            has_decode |= len == 1;
            std::copy(perm.begin(), perm.begin() + nblk, bt.begin() + (size_t)i * nblk);
            qq.insert(qq.end(), q.begin() + (size_t)p0 * qstride, q.begin() + (size_t)(p0 + len) * qstride);
        }
        const int ntok = qs[ns];
        std::vector<int32_t> tiles(2 * vk_prefill_tiles_max(ntok, ns));
        const int nt = vk_prefill_tiles_build(qs.data(), nullptr, ns, 1, H, KVH, tiles.data(), (int)tiles.size() / 2);
        dbuf<uint16_t> dq(qq), dout((size_t)ntok * H * D);
        dbuf<int32_t> dbt(bt), dqs(qs), dcl(cl), dtiles(tiles);
        dbuf<char> scratch(vk_attention_scratch_bytes(ns, H, D, max_ctx));
        vk_attention_args a = {};
        a.dt = dt, a.out = dout.p, a.q = dq.p, a.q_stride = qstride, a.k_cache = dk.p, a.v_cache = dv.p;
        a.query_start = dqs.p, a.context_lens = dcl.p, a.block_tables = dbt.p, a.num_seqs = ns;
        a.max_blocks_per_seq = nblk, a.H = H, a.KVH = KVH, a.D = D, a.block_size = bs;
        a.scale = 1.0f / sqrtf((float)D), a.max_context_len = max_ctx, a.has_decode = has_decode;
        a.prefill_tiles = dtiles.p, a.num_prefill_tiles = nt, a.scratch = scratch.p, a.batch_invariant = 1;
        a.decode_only = ntok == ns; /* batch 0: decode rows only (the smaller fold buffer) */
        CK(vk_attention(&a, 0));
        CK(cudaDeviceSynchronize());
        return dout.down();
    };
    const auto whole = run({{0, L}});
    std::vector<std::pair<int, int>> many; /* enough decode rows that each block folds its own chunks */
    for (int i = 0; i < 300 / KVH + 1; i++) many.push_back({(i * 53 + L / 2) % L, 1});
    const std::vector<std::vector<std::pair<int, int>>> batches = {
        {{0, 1}, {1, 1}, {63, 1}, {64, 1}, {65, 1}, {400, 1}, {L - 1, 1}}, /* decode rows */
        many,
        {{100, 37}, {5, 1}, {640, 137}},                                  /* chunks beside a decode row */
        {{0, 64}, {64, 64}, {128, 300}, {428, L - 428}},                   /* the prompt in chunks */
    };
    const size_t row = (size_t)H * D;
    for (size_t bi = 0; bi < batches.size(); bi++) {
        const auto got = run(batches[bi]);
        int bad = 0, rows = 0, t = 0;
        for (auto &part : batches[bi])
            for (int j = 0; j < part.second; j++, t++, rows++)
                bad += memcmp(&got[(size_t)t * row], &whole[(size_t)(part.first + j) * row], row * 2) != 0;
        printf("attention batch-invariant %s H=%d KVH=%d D=%d L=%d: batch %zu: %d of %d rows differ from the "
               "whole prompt's (0 expected)\n",
               dtn(dt), H, KVH, D, L, bi, bad, rows);
        CHECK(bad == 0, "attention batch invariance, batch %zu", bi);
    }
}

static void test_attention_invariant(vk_dtype dt)
{
    /* The whole prompt folds its chunks inside the blocks (a large grid); the decode rows and the
     * chunks beside them split theirs over blocks (a small grid) and fold in the combine kernel. */
    run_attention_invariant(dt, 32, 8, 128, 777);  /* Llama-3-8B: groups of 4, 16 tokens per tile */
    run_attention_invariant(dt, 9, 3, 64, 777);    /* SmolLM2-135M: groups of 3, 21 tokens per tile */
    run_attention_invariant(dt, 8, 8, 128, 777);   /* no GQA: 64 tokens per tile */
    run_attention_invariant(dt, 32, 8, 128, 2100); /* 5 chunks of VK_INVARIANT_CHUNK */
}

static void test_gemv(vk_dtype dt)
{
    int shapes[][2] = {{4096, 6144}, {576, 1536}, {14336, 4096}, {264, 1003}};
    for (auto &sh : shapes) {
        int in = sh[0], out = sh[1];
        for (int n = 1; n <= VK_GEMV_MAX_N; n++) {
            rng r(g_seed + in + n);
            auto x = rand_storage(dt, (size_t)n * in, r, 1.f), w = rand_storage(dt, (size_t)out * in, r, 0.05f);
            dbuf<uint16_t> dx(x), dw(w), dy((size_t)n * out);
            dbuf<float> dyf((size_t)n * out);
            CK(vk_gemv(dt, 0, dy.p, dx.p, dw.p, n, in, out, n & 1, 0));
            CK(vk_gemv(dt, 1, dyf.p, dx.p, dw.p, n, in, out, n & 1, 0));
            auto fx = to_f(dt, x), fw = to_f(dt, w);
            std::vector<float> want((size_t)n * out);
            for (int i = 0; i < n; i++)
                for (int o = 0; o < out; o++) {
                    double acc = 0;
                    for (int k = 0; k < in; k++) acc += (double)fx[(size_t)i * in + k] * fw[(size_t)o * in + k];
                    want[(size_t)i * out + o] = (float)acc;
                }
            err e = compare(to_f(dt, dy.down()), want), ef = compare(dyf.down(), want);
            if (n == 1 || n == VK_GEMV_MAX_N)
                printf("gemv %s n=%d in=%d out=%d: rel %.2e (storage out, tol %.1e), %.2e (fp32 out, tol 1e-5)\n",
                       dtn(dt), n, in, out, e.rel, ulp_tol(dt) / 4, ef.rel);
            CHECK(e.rel < ulp_tol(dt) / 4 && ef.rel < 1e-5, "gemv");
        }
    }
}

static void test_copy_blocks()
{
    rng r(g_seed + 99);
    int nc = 4, nb = 12;
    size_t bb = 16 * 8 * 128 * 2;
    std::vector<std::vector<uint16_t>> host(nc);
    std::vector<dbuf<uint16_t> *> dev;
    std::vector<void *> ptrs;
    for (int c = 0; c < nc; c++) {
        host[c] = rand_storage(VK_BF16, nb * bb / 2, r, 1.f);
        dev.push_back(new dbuf<uint16_t>(host[c]));
        ptrs.push_back(dev.back()->p);
    }
    std::vector<int32_t> src = {1, 5, 5}, dst = {2, 7, 11};
    dbuf<void *> dptrs(ptrs);
    dbuf<int32_t> dsrc(src), ddst(dst);
    CK(vk_copy_blocks(dptrs.p, nc, dsrc.p, ddst.p, 3, bb, 0));
    int bad = 0;
    for (int c = 0; c < nc; c++) {
        auto got = dev[c]->down();
        auto want = host[c];
        for (size_t i = 0; i < src.size(); i++) memcpy(&want[dst[i] * bb / 2], &host[c][src[i] * bb / 2], bb);
        bad += got != want;
        delete dev[c];
    }
    printf("copy_blocks: %d caches differ\n", bad);
    CHECK(bad == 0, "copy_blocks");
}

static bool sample_near_boundary(const float *logits, int V, const vesta_sample_row &row, vesta_sampler_scratch *s,
                                 double tol);

/* A reference row with parameters p and a random draw (seed, offset) from r; no ids yet. */
static void reference_row(vesta_sample_row &row, const vesta_sampling_params &p, rng &r)
{
    memset(&row, 0, sizeof row);
    row.params = &p;
    row.rng_seed = r.next();
    row.rng_offset = r.below(1000);
}

/* The kernel's row for the reference's parameters and draw (pools left to the caller). */
static void kernel_row(vk_sample_row &k, const vesta_sampling_params &p, const vesta_sample_row &row)
{
    memset(&k, 0, sizeof k);
    k.temperature = p.temperature;
    k.top_p = p.top_p;
    k.min_p = p.min_p;
    k.top_k = p.top_k;
    k.presence_penalty = p.presence_penalty;
    k.frequency_penalty = p.frequency_penalty;
    k.repetition_penalty = p.repetition_penalty;
    k.num_logprobs = p.logprobs;
    k.seed = row.rng_seed;
    k.offset = row.rng_offset;
}

/* A test row with output ids: the reference's row (parameters p, a random draw from r) and the
 * kernel's, whose output ids go to the end of the ids pool (no prompt, stop or bias ids). */
static void row_with_outputs(vesta_sample_row &row, vk_sample_row &k, const vesta_sampling_params &p, rng &r,
                             const std::vector<int32_t> &outs, std::vector<int32_t> &ids)
{
    reference_row(row, p, r);
    row.output_ids = outs.data();
    row.num_output = (int)outs.size();
    kernel_row(k, p, row);
    k.prompt_off = k.output_off = k.bias_off = k.stop_off = (int)ids.size();
    k.num_output = row.num_output;
    ids.insert(ids.end(), outs.begin(), outs.end());
}

/* Runs vk_sample over R rows of V logits (kernel rows kr, with their ids and bias pools) on counts
 * scratch zeroed first, as the backend keeps it; returns each row's output and, in counts_zero,
 * whether the kernel left the scratch counts zero again. */
static std::vector<vk_sample_out> gpu_sample(const std::vector<float> &logits, int R, int V,
                                             const std::vector<vk_sample_row> &kr, const std::vector<int32_t> &ids,
                                             const std::vector<float> &biasv, bool &counts_zero)
{
    dbuf<float> dl(logits), dbias(biasv), work((size_t)R * V);
    dbuf<int32_t> dids(ids), counts((size_t)R * V);
    CK(cudaMemset(counts.p, 0, counts.n * 4));
    dbuf<vk_sample_row> dparams(kr);
    dbuf<vk_sample_out> dout(R);
    CK(vk_sample(dl.p, R, V, dparams.p, dids.p, dbias.p, work.p, counts.p, dout.p, 0));
    auto got = dout.down();
    auto cnt = counts.down();
    counts_zero = std::all_of(cnt.begin(), cnt.end(), [](int32_t c) { return c == 0; });
    return got;
}

/* One row's logprobs against the reference's: counts top ids that differ into id_bad and keeps the
 * largest absolute logprob error in worst. */
static void compare_logprobs(const vk_sample_out &got, const vesta_sample_result &want, int &id_bad, double &worst)
{
    worst = std::max(worst, (double)fabsf(got.logprob - want.logprob));
    for (int j = 0; j < want.num_top; j++) {
        id_bad += got.top_ids[j] != want.top_ids[j];
        worst = std::max(worst, (double)fabsf(got.top_logprobs[j] - want.top_logprobs[j]));
    }
}

/* The kernel's and the reference's results for R rows: got[i] from vk_sample (gpu_sample), want[i]
 * from vesta_sampler_sample where ok[i] (the reference refuses a row whose every token is masked).
 * The reference's scratch s stays for sample_near_boundary. */
struct sample_check {
    std::vector<vk_sample_out> got;
    std::vector<vesta_sample_result> want;
    std::vector<char> ok;
    bool counts_zero = false;
    vesta_sampler_scratch *s = nullptr;
    sample_check(const std::vector<float> &logits, int R, int V, const std::vector<vk_sample_row> &kr,
                 const std::vector<int32_t> &ids, const std::vector<float> &biasv,
                 const std::vector<vesta_sample_row> &rows)
        : want(R), ok(R, 0)
    {
        got = gpu_sample(logits, R, V, kr, ids, biasv, counts_zero);
        vesta_error err;
        s = vesta_sampler_scratch_create(V, &err);
        for (int i = 0; i < R; i++)
            ok[i] = s && vesta_sampler_sample(&logits[(size_t)i * V], V, &rows[i], &want[i], s, &err) == VESTA_OK;
    }
    sample_check(const sample_check &) = delete;
    sample_check &operator=(const sample_check &) = delete;
    ~sample_check() { vesta_sampler_scratch_release(s); }
};


/* Every row against the reference: a token that differs counts as near where sample_near_boundary
 * (1e-5 of the mass) says the draw is ambiguous, else as bad (printed); refused rows (every token
 * masked) are counted, with those where the kernel answered -1; distinct: how many different
 * reference tokens the rows from same_from on drew (one row's logits under many seeds). */
struct sample_tally {
    int bad = 0, near = 0, lp_bad = 0, refused = 0, refused_minus1 = 0, distinct = 0;
    double worst_lp = 0;
};
static sample_tally sample_compare(const sample_check &c, const std::vector<float> &logits, int V,
                                   const std::vector<vesta_sample_row> &rows,
                                   const std::vector<vesta_sampling_params> &sp, int same_from)
{
    sample_tally t;
    std::vector<int> same;
    for (size_t i = 0; i < rows.size(); i++) {
        if (!c.ok[i]) {
            t.refused++;
            t.refused_minus1 += c.got[i].token == -1;
            continue;
        }
        const vesta_sample_result &want = c.want[i];
        if ((int)i >= same_from) same.push_back(want.token);
        if (c.got[i].token != want.token) {
            if (sample_near_boundary(&logits[i * V], V, rows[i], c.s, 1e-5)) {
                t.near++;
            } else {
                t.bad++;
                printf("  row %zu: gpu %d cpu %d (T=%.2f top_k=%d top_p=%g min_p=%g)\n", i, c.got[i].token,
                       want.token, sp[i].temperature, sp[i].top_k, sp[i].top_p, sp[i].min_p);
            }
        }
        if (sp[i].logprobs >= 0) compare_logprobs(c.got[i], want, t.lp_bad, t.worst_lp);
    }
    std::sort(same.begin(), same.end());
    t.distinct = (int)(std::unique(same.begin(), same.end()) - same.begin());
    return t;
}

/* GPU sampler vs the CPU reference sampler (worker/sampler), row by row. */
static void test_sampling()
{
    rng r(g_seed + 5);
    const int V = 32003, R = 40;
    std::vector<float> logits((size_t)R * V);
    for (auto &x : logits) x = r.sym(8.f);
    for (int i = 0; i < 50; i++) logits[r.below(V)] = 25.f; /* ties at the top in some rows */
    logits[7] = -INFINITY;
    std::vector<vesta_sampling_params> sp(R);
    std::vector<vesta_sample_row> rows(R);
    std::vector<vk_sample_row> kr(R);
    std::vector<int32_t> ids;
    std::vector<float> biasv;
    std::vector<std::vector<int32_t>> prompts(R), outs(R);
    static const int32_t eos[2] = {2, 11};
    for (int i = 0; i < R; i++) {
        vesta_sampling_params &p = sp[i];
        vesta_sampling_params_init(&p);
        int kind = i % 8;
        p.temperature = kind == 0 ? 0.f : (float)(0.3 + r.uni() * 1.5);
        if (kind == 2) p.min_p = 0.05f;
        if (kind == 3 || kind == 0) {
            p.repetition_penalty = 1.3f;
            p.frequency_penalty = 0.4f;
            p.presence_penalty = 0.6f;
        }
        if (kind == 4) {
            p.num_logit_bias = 3;
            p.logit_bias[0] = {5, 30.f};
            p.logit_bias[1] = {6, -100.f};
            p.logit_bias[2] = {5, 1.f};
        }
        if (kind == 5) p.top_k = 40;
        if (kind == 6) p.top_p = 0.8f;
        p.logprobs = i % 3 == 0 ? 5 : (i % 3 == 1 ? -1 : 20);
        if (kind == 7) {
            p.num_stop_token_ids = 1;
            p.stop_token_ids[0] = 9;
        }
        int np = 1 + r.below(300), no = r.below(100);
        for (int j = 0; j < np; j++) prompts[i].push_back(r.below(V));
        for (int j = 0; j < no; j++) outs[i].push_back(j % 3 ? r.below(50) : r.below(V));
        vesta_sample_row &row = rows[i];
        reference_row(row, p, r);
        row.prompt_ids = prompts[i].data();
        row.num_prompt = np;
        row.output_ids = outs[i].data();
        row.num_output = no;
        row.suppress_stop = kind == 7 || kind == 0;
        row.eos_ids = eos;
        row.num_eos = 2;
        vk_sample_row &k = kr[i];
        kernel_row(k, p, row);
        k.prompt_off = (int)ids.size();
        k.num_prompt = np;
        ids.insert(ids.end(), prompts[i].begin(), prompts[i].end());
        k.output_off = (int)ids.size();
        k.num_output = no;
        ids.insert(ids.end(), outs[i].begin(), outs[i].end());
        biasv.resize(ids.size());
        k.bias_off = (int)ids.size();
        k.num_bias = p.num_logit_bias;
        for (int j = 0; j < p.num_logit_bias; j++) {
            ids.push_back(p.logit_bias[j].token);
            biasv.push_back(p.logit_bias[j].bias);
        }
        k.stop_off = (int)ids.size();
        if (row.suppress_stop) {
            ids.insert(ids.end(), eos, eos + 2);
            for (int j = 0; j < p.num_stop_token_ids; j++) ids.push_back(p.stop_token_ids[j]);
        }
        k.num_stop = (int)ids.size() - k.stop_off;
        biasv.resize(ids.size());
    }
    sample_check c(logits, R, V, kr, ids, biasv, rows);
    const sample_tally t = sample_compare(c, logits, V, rows, sp, R);
    printf("sampling V=%d rows=%d: %d token mismatches (0 expected; %d more within 1e-5 of a mass boundary), %d "
           "refused by the reference, %d top-id mismatches, logprob max err %.2e (tol 1e-4), scratch counts zero "
           "again: %d\n",
           V, R, t.bad, t.near, t.refused, t.lp_bad, t.worst_lp, c.counts_zero);
    CHECK(t.bad == 0 && t.refused == 0 && t.lp_bad == 0 && t.worst_lp < 1e-4 && c.counts_zero, "sampling");
}

/* Whether vk_sample's stated tolerance covers a disagreement on this row: the reference's draw u
 * lies within tol of a cumulative-mass boundary of its final distribution (walked in its order:
 * sorted by probability, ties by id, when top-k or top-p is on; else by id), or its top-p cut
 * (tail mass of the sorted candidates against 1 - top_p) lies within tol. There fp32 masses (GPU)
 * and fp64 masses (reference) may pick neighbouring tokens. */
static bool sample_near_boundary(const float *logits, int V, const vesta_sample_row &row, vesta_sampler_scratch *s,
                                 double tol)
{
    const vesta_sampling_params &p = *row.params;
    if (p.temperature < 1e-5f) return false;
    std::vector<float> probs(V);
    std::vector<std::pair<float, int>> kept;
    vesta_error err;
    auto collect = [&](bool sorted) {
        kept.clear();
        for (int i = 0; i < V; i++)
            if (probs[i] > 0.f) kept.push_back({probs[i], i});
        if (sorted)
            std::sort(kept.begin(), kept.end(), [](const std::pair<float, int> &a, const std::pair<float, int> &b) {
                return a.first > b.first || (a.first == b.first && a.second < b.second);
            });
    };
    if (p.top_p < 1.f) {
        vesta_sampling_params q = p;
        q.top_p = 1.f;
        vesta_sample_row r2 = row;
        r2.params = &q;
        if (vesta_sampler_probs(logits, V, &r2, probs.data(), s, &err) != VESTA_OK) return true;
        collect(true);
        double tail = 0, limit = 1.0 - (double)p.top_p;
        for (size_t i = kept.size(); i-- > 1;) {
            tail += kept[i].first;
            if (fabs(tail - limit) < tol) return true;
            if (tail > limit + tol) break;
        }
    }
    if (vesta_sampler_probs(logits, V, &row, probs.data(), s, &err) != VESTA_OK) return true;
    collect(p.top_k > 0 || p.top_p < 1.f);
    double u = vesta_rng_uniform(row.rng_seed, row.rng_offset), cum = 0;
    for (auto &k : kept) {
        cum += k.first;
        if (fabs(cum - u) < tol) return true;
    }
    return false;
}

/* Rows without top-k / top-p (the draw in id order, one range of ids per warp) against the
 * reference: continuous, flat, peaked, ramped, wide and masked logits (-inf scattered, in whole
 * ranges, all but one token, every token), temperatures, min_p, rows with and without penalties
 * and bias (the copy of the row and the direct read), greedy rows, many seeds on one row. V = 32000 takes the
 * 16-byte loads, odd V the scalar ones, V = 100 leaves most warps without ids. Tokens must be equal
 * except where sample_near_boundary (tol 1e-5 of the mass) says the draw is ambiguous; a row with
 * every token masked gives -1 (the reference refuses it). */
static void test_sampling_in_order(int V)
{
    rng r(g_seed + 13 + V);
    const int R = 320, SAME = 64;
    std::vector<float> logits((size_t)R * V);
    for (int i = 0; i < R - SAME; i++) {
        float *l = &logits[(size_t)i * V];
        const int kind = i % 9, lo = r.below(V), n = 1 + r.below(50);
        for (int j = 0; j < V; j++) {
            float x = r.sym(8.f);
            if (kind == 1) x = r.sym(0.05f);                    /* flat */
            if (kind == 3 && r.below(5) == 0) x = -INFINITY;    /* scattered mask */
            if (kind == 4 && (j < lo || j >= lo + n)) x = -INFINITY; /* a few ids in one range */
            if (kind == 5 && j != lo) x = -INFINITY;            /* one token */
            if (kind == 6) x = 8.f * (float)j / (float)V;       /* mass towards the end */
            if (kind == 7) x = r.sym(40.f);                     /* a few tokens carry it */
            if (kind == 8 && i == 8) x = -INFINITY;             /* every token masked */
            l[j] = x;
        }
        if (kind == 2)
            for (int j = 0; j < 20; j++) l[r.below(V)] = 10.f + (float)r.below(5); /* peaked */
    }
    for (int i = R - SAME; i < R; i++) memcpy(&logits[(size_t)i * V], &logits[0], (size_t)V * 4);
    static const float mps[] = {0.f, 0.f, 0.f, 0.05f, 0.3f};
    std::vector<vesta_sampling_params> sp(R);
    std::vector<vesta_sample_row> rows(R);
    std::vector<vk_sample_row> kr(R);
    std::vector<std::vector<int32_t>> outs(R);
    std::vector<int32_t> ids;
    std::vector<float> biasv;
    for (int i = 0; i < R; i++) {
        vesta_sampling_params &p = sp[i];
        vesta_sampling_params_init(&p);
        if (i < R - SAME) {
            p.temperature = i % 11 == 10 ? 0.f : (float)(0.3 + r.uni() * 1.4); /* some greedy rows */
            p.min_p = mps[r.below(5)];
            if (r.below(4) == 0) {
                p.repetition_penalty = 1.2f;
                p.frequency_penalty = 0.3f;
                for (int j = 0; j < 40; j++) outs[i].push_back(r.below(j % 2 ? 100 : V));
            }
            if (r.below(6) == 0) {
                p.num_logit_bias = 1;
                p.logit_bias[0] = {(int32_t)r.below(V), 3.f};
            }
            if (r.below(4) == 0) p.logprobs = 3;
        }
        vk_sample_row &k = kr[i];
        row_with_outputs(rows[i], k, p, r, outs[i], ids);
        biasv.resize(ids.size(), 0.f);
        k.bias_off = (int)ids.size();
        k.num_bias = p.num_logit_bias;
        for (int j = 0; j < p.num_logit_bias; j++) {
            ids.push_back(p.logit_bias[j].token);
            biasv.push_back(p.logit_bias[j].bias);
        }
    }
    ids.push_back(0);
    biasv.resize(ids.size(), 0.f);
    sample_check c(logits, R, V, kr, ids, biasv, rows);
    const sample_tally t = sample_compare(c, logits, V, rows, sp, R - SAME);
    printf("sampling in id order V=%d rows=%d: %d token mismatches (0 expected), %d more within 1e-5 of a mass "
           "boundary, %d/%d all-masked rows give -1, %d distinct tokens over %d seeds, %d top-id mismatches, "
           "logprob max err %.2e (tol 1e-4)\n",
           V, R, t.bad, t.near, t.refused_minus1, t.refused, t.distinct, SAME, t.lp_bad, t.worst_lp);
    CHECK(t.bad == 0 && t.refused == 1 && t.refused_minus1 == 1 && t.distinct > 1 && t.lp_bad == 0 &&
              t.worst_lp < 1e-4 && c.counts_zero,
          "sampling in id order");
}

/* Logprobs where the gather of the candidates cannot work and the kernel takes n passes over the
 * row: a large vocabulary whose first 19 threads' ids all lie above the 20th thread's best (more
 * candidates than the shared list holds), and a row of NaN but for a few values (fewer threads with
 * an element than logprobs asked); with a plain row beside them. Against the reference's top 20. */
static void test_logprobs_fallback()
{
    rng r(g_seed + 17);
    const int V = 300000, R = 3;
    std::vector<float> logits((size_t)R * V);
    for (int j = 0; j < V; j++) {
        const int t = j % 1024; /* the kernel's thread of id j */
        logits[j] = t < 19 ? 10.f + r.sym(1.f) : t == 19 ? 5.f : r.sym(1.f) - 2.f;
        logits[(size_t)V + j] = j % 29989 == 3 ? r.sym(4.f) : NAN; /* 11 values */
        logits[(size_t)2 * V + j] = r.sym(6.f);
    }
    std::vector<vesta_sampling_params> sp(R);
    std::vector<vesta_sample_row> rows(R);
    std::vector<vk_sample_row> kr(R);
    for (int i = 0; i < R; i++) {
        vesta_sampling_params_init(&sp[i]);
        sp[i].temperature = 0.f;
        sp[i].logprobs = 20;
        reference_row(rows[i], sp[i], r);
        kernel_row(kr[i], sp[i], rows[i]);
    }
    std::vector<int32_t> ids = {0};
    std::vector<float> biasv = {0.f};
    sample_check c(logits, R, V, kr, ids, biasv, rows);
    const sample_tally t = sample_compare(c, logits, V, rows, sp, R);
    printf("logprobs, n passes: %d token mismatches, %d refused by the reference, %d top-id mismatches, logprob max "
           "err %.2e (tol 1e-4)\n",
           t.bad, t.refused, t.lp_bad, t.worst_lp);
    CHECK(t.bad == 0 && t.refused == 0 && t.lp_bad == 0 && t.worst_lp < 1e-4 && c.counts_zero, "logprobs fallback");
}

/* top-k / top-p / min-p rows (the GPU select path) against the reference: continuous, quantised
 * (ties), peaked, flat (top-p keeps most of the vocabulary: the whole-row path) and partly masked
 * logits; k from 1 to past the vocabulary, p from 1e-3 to 1, temperatures, penalties, many seeds
 * (the last 64 rows: one row's logits and parameters with 64 seeds). Tokens must be equal except
 * where sample_near_boundary (tol 1e-5 of the mass) says the draw is ambiguous. */
static void test_sampling_select()
{
    rng r(g_seed + 11);
    const int V = 50021, R = 384, SAME = 64;
    std::vector<float> logits((size_t)R * V);
    for (int i = 0; i < R - SAME; i++) {
        float *l = &logits[(size_t)i * V];
        int kind = i % 5;
        for (int j = 0; j < V; j++) {
            float x = r.sym(8.f);
            if (kind == 1) x = roundf(x * 2.f) * 0.5f;       /* ties everywhere */
            if (kind == 3) x = r.sym(0.05f);                 /* flat */
            if (kind == 4 && r.below(5) == 0) x = -INFINITY; /* masked */
            l[j] = x;
        }
        if (kind == 2)
            for (int j = 0; j < 20; j++) l[r.below(V)] = 10.f + (float)r.below(5); /* peaked, tied spikes */
    }
    for (int i = R - SAME; i < R; i++) memcpy(&logits[(size_t)i * V], &logits[0], (size_t)V * 4);
    static const int ks[] = {0, 1, 7, 50, 1000, 6000, V, V + 5};
    static const float ps[] = {1.f, 0.9f, 0.5f, 1e-3f, 0.999f, 0.95f, 1.f};
    static const float mps[] = {0.f, 0.f, 0.f, 0.02f, 0.2f};
    std::vector<vesta_sampling_params> sp(R);
    std::vector<vesta_sample_row> rows(R);
    std::vector<vk_sample_row> kr(R);
    std::vector<std::vector<int32_t>> outs(R);
    std::vector<int32_t> ids;
    for (int i = 0; i < R; i++) {
        vesta_sampling_params &p = sp[i];
        vesta_sampling_params_init(&p);
        if (i >= R - SAME) {
            p.top_k = 50;
            p.top_p = 0.9f;
        } else {
            p.temperature = i % 16 == 15 ? 0.f : (float)(0.3 + r.uni() * 1.4);
            p.top_k = ks[r.below(8)];
            p.top_p = ps[r.below(7)];
            p.min_p = mps[r.below(5)];
            if (p.top_k == 0 && p.top_p == 1.f && i % 8) p.top_k = 50; /* mostly the select path */
            if (r.below(4) == 0) {
                p.repetition_penalty = 1.2f;
                p.frequency_penalty = 0.3f;
                p.presence_penalty = 0.5f;
                for (int j = 0; j < 40; j++) outs[i].push_back(r.below(j % 2 ? 100 : V));
            }
            if (r.below(3) == 0) p.logprobs = 5;
        }
        row_with_outputs(rows[i], kr[i], p, r, outs[i], ids);
    }
    ids.push_back(0);
    std::vector<float> biasv(ids.size(), 0.f);
    sample_check c(logits, R, V, kr, ids, biasv, rows);
    const sample_tally t = sample_compare(c, logits, V, rows, sp, R - SAME);
    int near = 0; /* how close the draws come: every fourth row, whatever the tokens */
    for (int i = 0; i < R; i += 4) near += sample_near_boundary(&logits[(size_t)i * V], V, rows[i], c.s, 1e-5);
    printf("sampling select V=%d rows=%d: %d token mismatches (0 expected), %d more within 1e-5 of a mass boundary "
           "(%d of %d sampled rows are that close), %d refused by the reference, %d top-id mismatches, logprob max "
           "err %.2e (tol 1e-4), %d distinct tokens over %d seeds, scratch counts zero again: %d\n",
           V, R, t.bad, t.near, near, R / 4, t.refused, t.lp_bad, t.worst_lp, t.distinct, SAME, c.counts_zero);
    CHECK(t.bad == 0 && t.near <= 2 && t.refused == 0 && t.lp_bad == 0 && t.worst_lp < 1e-4 && c.counts_zero &&
              t.distinct > 1,
          "sampling select");
}

static void test_rng()
{
    int bad = 0;
    for (uint64_t i = 0; i < 1000; i++) bad += vk_rng_uniform(i * 7919, i) != vesta_rng_uniform(i * 7919, i);
    printf("rng: %d mismatches with vesta_rng_uniform\n", bad);
    CHECK(bad == 0, "rng");
}

/* The prefill tile lists (host only): every query token of every sequence in exactly one tile of
 * at most vk_prefill_tile_tokens tokens, tiles in order (with VK_TILES_LONGEST_FIRST: each
 * sequence's by first row descending); decode sequences only in batch-invariant lists; refusals for groups
 * above VK_PREFILL_MAX_GROUP and for a short cap. */
/* The decode kernels' key partitions (host-only: the same inline functions run on the device).
 * For random batches under random bounds: no sequence splits more often than the launch's
 * stride, whichever rule cut its ranges (version 5 and 7 on the device from the real contexts,
 * 1, 2 and 5 from the bound, 7's fixed ranges); the partials of any batch up to the allocation's
 * size fit its scratch; version 5's device partition never needs more table entries than its
 * launcher gave it room for. Then version 7's rule on the batches it was made for. */
static void test_splits()
{
    rng r(g_seed + 11);
    const int sms = vk_sm_count(); /* 132 without a GPU */
    const long warps = 2L * 4 * sms;
    int bad = 0, cases = 0;
    for (int trial = 0; trial < 4000; trial++, cases++) {
        const int KVH = 1 << r.below(4), H = KVH * (1 + r.below(8)), D = r.below(2) ? 128 : 64;
        const int smax = 1 + r.below(1200), ns = 1 + r.below(smax);
        const int bound = r.below(4) ? 1 + r.below(140000) : 1 + r.below(2048);
        const int mx = 1 + r.below(bound), x = 1 + r.below(mx); /* the longest real context, another */
        const int s5 = vk_decode_v5_splits_bound(ns, KVH, bound), s7 = vk_decode_v7_splits_bound(ns, bound);
        const int hi = vk_decode_bound_partition(ns, KVH, bound), h7 = vk_decode_v7_bound_partition(ns, KVH, bound, warps);
        const int p5 = vk_decode_v5_device_part(ns, KVH, mx, sms, s5);
        const int p7 = vk_decode_v7_device_part(ns * KVH, warps, mx, s7);
        const int f7 = std::max(VK_DECODE_PARTITION, vk_decode_part_floor(bound, vk_decode_stride_cap(ns), 16));
        const int fixed5 = (bound + hi - 1) / hi, fixed7 = (bound + f7 - 1) / f7, bound7 = (bound + h7 - 1) / h7;
        const int need[] = {s5, s7, fixed5, fixed7, bound7};
        const int got[] = {(mx + p5 - 1) / p5, (mx + p7 - 1) / p7, (x + hi - 1) / hi, (x + f7 - 1) / f7, (x + h7 - 1) / h7};
        for (int k = 0; k < 5; k++) {
            const bool ok = got[k] <= need[k] && need[k] <= vk_decode_stride_cap(ns);
            if (!ok && bad < 5)
                printf("splits: rule %d ns=%d KVH=%d bound=%d mx=%d: %d splits, stride %d, cap %d\n", k, ns, KVH, bound, mx,
                       got[k], need[k], vk_decode_stride_cap(ns));
            bad += !ok;
        }
        /* version 5's launcher sizes its shared block-table copy for this many keys */
        const int p5_most = std::max(VK_DECODE_PARTITION, vk_decode_part_floor(bound, s5, 32));
        bad += p5 > p5_most || p5 < 32 || p5 % 32 != 0 || p7 % 16 != 0 || p7 < 16;
        const size_t have = vk_attention_decode_scratch_bytes(smax, H, D, bound);
        const size_t used = sizeof(float) * (size_t)ns * H * std::max(std::max(std::max(s5, s7), std::max(fixed5, fixed7)), bound7) * (D + 2) + 4;
        if (used > have && bad < 5)
            printf("splits: ns=%d of %d, H=%d bound=%d: %zu bytes of partials in %zu\n", ns, smax, H, bound, used, have);
        bad += used > have;
        bad += vk_attention_decode_scratch_bytes(ns, H, D, bound) > have; /* non-decreasing in the batch */
    }
    CHECK(bad == 0, "decode splits: %d of %d cases", bad, cases);
    /* version 7 on an H100's 1,056 warps: B1's 512 sequences at 8 KV heads keep one range per pair
     * (also at their 1,024-key bound: no combine kernel); 150 and 192 sequences over 640 keys are
     * cut, 224 not (the cut would save an eighth); version 5 on 264 blocks: one sequence over 640
     * keys in 33 ranges of 32, 16 sequences in two (not three: a second wave), 64 whole;
     * 1,024 sequences under Llama-3.1's bound: 8,192-key ranges (a capped stride of 16) */
    const struct { int pairs, workers, ctx, round, part; } picks[] = {
        {512 * 8, 1056, 767, 16, 768}, {512 * 8, 1056, 1024, 16, 1024}, {150 * 8, 1056, 640, 16, 160},
        {192 * 8, 1056, 640, 16, 320}, {224 * 8, 1056, 640, 16, 640}};
    for (auto &p : picks)
        CHECK(vk_decode_balanced_part(p.pairs, p.workers, p.ctx, VK_DECODE_PARTITION, p.round) == p.part,
              "balanced pick for %d pairs over %d keys: %d, want %d", p.pairs, p.ctx,
              vk_decode_balanced_part(p.pairs, p.workers, p.ctx, VK_DECODE_PARTITION, p.round), p.part);
    CHECK(vk_decode_partition_on(1, 8, 640, 132) == 32 && vk_decode_partition_on(16, 8, 640, 132) == 320 &&
              vk_decode_partition_on(64, 8, 640, 132) == 640,
          "version 5's pick: %d %d %d", vk_decode_partition_on(1, 8, 640, 132), vk_decode_partition_on(16, 8, 640, 132),
          vk_decode_partition_on(64, 8, 640, 132));
    CHECK(vk_decode_stride_cap(1024) == 16 && vk_decode_bound_partition(1024, 8, 131072) == 8192, "stride cap");
    const size_t big = vk_attention_decode_scratch_bytes(1024, 32, 128, 131072);
    printf("splits: %d cases; decode scratch for 1,024 sequences, 32 heads under 131,072: %.1f MB\n", cases, big / 1e6);
    CHECK(big < 300e6, "decode scratch %zu bytes", big);
}

static void test_tiles()
{
    rng r(g_seed + 7);
    int bad = 0, lists = 0;
    const int shapes[][2] = {{32, 8}, {9, 3}, {8, 8}, {64, 8}, {14, 2}}; /* H, KVH: groups 4, 3, 1, 8, 7 */
    const int modes[] = {VK_TILES_HEAD, VK_TILES_INVARIANT, VK_TILES_GROUP, VK_TILES_GROUP | VK_TILES_WIDE};
    for (auto &sh : shapes)
        for (int mode : modes)
            for (int trial = 0; trial < 50; trial++, lists++) {
                const bool inv = mode == VK_TILES_INVARIANT;
                const int ns = 1 + r.below(40);
                std::vector<int32_t> qs(ns + 1, 0);
                for (int i = 0; i < ns; i++) qs[i + 1] = qs[i] + (r.below(3) ? 1 : 1 + r.below(300));
                const int tt = mode != VK_TILES_HEAD ? (mode & VK_TILES_WIDE ? 2 : 1) * VK_PREFILL_TILE_M / (sh[0] / sh[1])
                                                     : VK_PREFILL_TILE_M;
                CHECK(vk_prefill_tile_tokens(mode, sh[0], sh[1]) == tt, "tile tokens H=%d KVH=%d mode=%d", sh[0],
                      sh[1], mode);
                std::vector<int32_t> want;
                for (int i = 0; i < ns; i++) {
                    const int len = qs[i + 1] - qs[i];
                    if (len == 1 && !inv) continue;
                    for (int m = 0; m < len; m += tt) want.insert(want.end(), {i, m});
                }
                const int cap = vk_prefill_tiles_max(qs[ns], ns);
                std::vector<int32_t> got(2 * (size_t)cap);
                const int n = vk_prefill_tiles_build(qs.data(), nullptr, ns, mode, sh[0], sh[1], got.data(), cap);
                got.resize(n < 0 ? 0 : 2 * (size_t)n);
                bad += got != want;
                if (n > 0) /* one pair short of what it needs */
                    bad += vk_prefill_tiles_build(qs.data(), nullptr, ns, mode, sh[0], sh[1], got.data(), n - 1) != -1;
                /* longest first: each sequence's pairs by first row descending, without context
                 * lengths for every sequence, with them where the last tile sees at least twice the
                 * keys of the first (a random cached prefix before each query) */
                std::vector<int32_t> ctx(ns);
                for (int i = 0; i < ns; i++) ctx[i] = qs[i + 1] - qs[i] + (r.below(2) ? 0 : r.below(2000));
                for (int with_ctx = 0; with_ctx < 2; with_ctx++) {
                    std::vector<int32_t> want_lf;
                    for (size_t j = 0; j < want.size();) {
                        size_t e = j;
                        while (e < want.size() && want[e] == want[j]) e += 2;
                        const int i = want[j], len = qs[i + 1] - qs[i];
                        const bool rev = !with_ctx || ctx[i] >= 2 * (ctx[i] - len + std::min(len, tt));
                        for (size_t k = j; k < e; k += 2) {
                            const size_t f = rev ? e - 2 - (k - j) : k;
                            want_lf.insert(want_lf.end(), {want[f], want[f + 1]});
                        }
                        j = e;
                    }
                    got.assign(2 * (size_t)cap, 0);
                    const int nl = vk_prefill_tiles_build(qs.data(), with_ctx ? ctx.data() : nullptr, ns,
                                                          mode | VK_TILES_LONGEST_FIRST, sh[0], sh[1], got.data(), cap);
                    got.resize(nl < 0 ? 0 : 2 * (size_t)nl);
                    bad += got != want_lf;
                }
            }
    std::vector<int32_t> qs = {0, 5}, t(64);
    const int over = vk_prefill_tiles_build(qs.data(), nullptr, 1, 1, 16, 1, t.data(), 32); /* group 16 */
    /* the wide tiles' pick: 32 queries over 4,128 keys (B4's second request; 2 KV heads, so that
     * any GPU with 4 SMs has room for two splits) take them; a short context, 512 sequences'
     * prompts or a shape without grouped tiles do not */
    std::vector<int32_t> many(513);
    for (int i = 0; i <= 512; i++) many[i] = 64 * i;
    const int32_t hit[] = {0, 32};
    CHECK(vk_prefill_wide(hit, 1, 8, 2, 4128) == 1 && vk_prefill_wide(hit, 1, 8, 2, 300) == 0 &&
              vk_prefill_wide(many.data(), 512, 32, 8, 4128) == 0 && vk_prefill_wide(hit, 1, 16, 1, 4128) == 0,
          "wide tiles' pick");
    printf("prefill tiles: %d of %d lists differ from the expected tiling; group 16: %d (-1 expected)\n", bad, lists,
           over);
    CHECK(bad == 0 && over == -1 && vk_prefill_tile_tokens(VK_TILES_INVARIANT, 16, 1) == -1 &&
              vk_prefill_tile_tokens(VK_TILES_GROUP, 16, 1) == -1 && vk_prefill_tile_tokens(3, 32, 8) == -1 &&
              vk_prefill_tile_tokens(VK_TILES_HEAD | VK_TILES_WIDE, 32, 8) == -1 &&
              vk_prefill_tile_tokens(VK_TILES_INVARIANT | VK_TILES_WIDE, 32, 8) == -1,
          "prefill tiles");
}

/* Programmatic dependent launch: a layer's chain SiLU -> RoPE + KV write -> attention (a decode
 * row, a prefix hit over a split key range, a fresh prompt) -> add + RMSNorm, each kernel reading
 * the previous one's output, run K times back to back with pdl and plainly, eager and from a
 * graph: every output bit-identical (each kernel waits for its predecessor before it reads; a
 * kernel that did not would race here). */
static void test_pdl_chain(vk_dtype dt)
{
    if (!vk_pdl_supported()) {
        printf("pdl chain %s: not supported on this GPU / build: skipped\n", dtn(dt));
        return;
    }
    const int H = 8, KVH = 2, D = 128, bs = 16, F = (H + 2 * KVH) * D, HD = H * D, K = 6;
    const std::vector<std::pair<int, int>> seqs = {{1, 300}, {33, 700}, {64, 64}};
    rng r(g_seed + 77);
    int ns = (int)seqs.size(), ntok = 0, max_ctx = 0, mbps = 0;
    for (auto &q : seqs) {
        ntok += q.first;
        max_ctx = std::max(max_ctx, q.second);
        mbps = std::max(mbps, (q.second + bs - 1) / bs);
    }
    std::vector<int32_t> bt((size_t)ns * mbps, 0), qs(ns + 1, 0), cl(ns), pos, slot;
    int next = 0;
    for (int i = 0; i < ns; i++) {
        for (int b = 0; b < (seqs[i].second + bs - 1) / bs; b++) bt[(size_t)i * mbps + b] = next++;
        qs[i + 1] = qs[i] + seqs[i].first;
        cl[i] = seqs[i].second;
        for (int t = 0; t < seqs[i].first; t++) {
            const int p = seqs[i].second - seqs[i].first + t;
            pos.push_back(p);
            slot.push_back(bt[(size_t)i * mbps + p / bs] * bs + p % bs);
        }
    }
    const size_t cache = (size_t)next * bs * KVH * D;
    auto gu = rand_storage(dt, (size_t)ntok * 2 * F, r, 2.f), kc0 = rand_storage(dt, cache, r, 1.f),
         vc0 = rand_storage(dt, cache, r, 1.f), res0 = rand_storage(dt, (size_t)ntok * HD, r, 1.f),
         w = rand_storage(dt, HD, r, 1.f);
    vk_rope_config rc = {D, 500000.f, 2, 8.f, 1.f, 4.f, 8192};
    std::vector<float> invf(D / 2);
    vk_rope_inv_freq(&rc, invf.data());
    dbuf<uint16_t> dgu(gu), dw(w), qkv((size_t)ntok * F), attn((size_t)ntok * HD), out((size_t)ntok * HD);
    dbuf<int32_t> dbt(bt), dqs(qs), dcl(cl), dpos(pos), dslot(slot);
    dbuf<float> dinv(invf);
    dbuf<char> scratch(vk_attention_scratch_bytes(ns, H, D, max_ctx));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    struct state { std::vector<uint16_t> out, res, kc, vc; };
    /* the grouped tiles, and the wide ones: their blocks request the cached keys' tiles before the
     * wait, while the RoPE kernel before them writes the new keys */
    for (int wide = 0; wide <= VK_WIDE_WGMMA; wide++) {
        if ((wide && !vk_prefill_wide_supported(D)) || (wide == VK_WIDE_WGMMA && !vk_prefill_wide_wgmma_supported(D, bs)))
            continue;
        std::vector<int32_t> tiles(2 * vk_prefill_tiles_max(ntok, ns));
        const int nt = vk_prefill_tiles_build(qs.data(), cl.data(), ns,
                                              VK_TILES_GROUP | VK_TILES_LONGEST_FIRST | (wide ? VK_TILES_WIDE : 0), H, KVH,
                                              tiles.data(), (int)tiles.size() / 2);
        CHECK(nt > 0, "pdl chain tiles");
        dbuf<int32_t> dtiles(tiles);
        auto run = [&](int pdl, bool graph) {
            dbuf<uint16_t> kc(kc0), vc(vc0), res(res0);
            vk_attention_args a = {};
            a.dt = dt, a.out = attn.p, a.q = qkv.p, a.q_stride = F, a.k_cache = kc.p, a.v_cache = vc.p;
            a.query_start = dqs.p, a.context_lens = dcl.p, a.block_tables = dbt.p, a.num_seqs = ns;
            a.max_blocks_per_seq = mbps, a.H = H, a.KVH = KVH, a.D = D, a.block_size = bs;
            a.scale = 1.0f / sqrtf((float)D), a.max_context_len = max_ctx, a.has_decode = 1;
            a.prefill_tiles = dtiles.p, a.num_prefill_tiles = nt, a.scratch = scratch.p, a.group_heads = 1;
            a.wide_tiles = wide;
            a.pdl = pdl;
            auto layer = [&]() {
                CK(vk_silu_and_mul(dt, qkv.p, dgu.p, ntok, F, pdl, st));
                CK(vk_rope_kv_write(dt, qkv.p, nullptr, dpos.p, dslot.p, dinv.p, kc.p, vc.p, ntok, H, KVH, D, pdl, st));
                CK(vk_attention(&a, st));
                CK(vk_add_rmsnorm(dt, out.p, res.p, attn.p, dw.p, ntok, HD, 1e-5f, pdl, st));
            };
            cudaGraphExec_t ex = nullptr;
            if (graph) {
                cudaGraph_t g;
                CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                layer();
                CK(cudaStreamEndCapture(st, &g));
                CK(cudaGraphInstantiate(&ex, g, 0));
                CK(cudaGraphDestroy(g));
            }
            for (int k = 0; k < K; k++) /* the residual grows each round: a stale read shows */
                if (graph) CK(cudaGraphLaunch(ex, st));
                else layer();
            CK(cudaStreamSynchronize(st));
            if (ex) CK(cudaGraphExecDestroy(ex));
            return state{out.down(), res.down(), kc.down(), vc.down()};
        };
        const state plain = run(0, false);
        const struct { int pdl; bool graph; const char *name; } modes[] = {
            {1, false, "pdl eager"}, {1, true, "pdl graph"}, {0, true, "plain graph"}};
        for (const auto &m : modes) {
            const state got = run(m.pdl, m.graph);
            const bool same = got.out == plain.out && got.res == plain.res && got.kc == plain.kc && got.vc == plain.vc;
            printf("pdl chain %s %s (%d rounds, %d tokens, %d %stiles): %s\n", dtn(dt), m.name, K, ntok, nt,
                   wide == VK_WIDE_WGMMA ? "wide (wgmma) " : wide ? "wide " : "", same ? "identical" : "DIFFERENT");
            CHECK(same, "pdl chain %s %s%s differs from the plain chain", dtn(dt), m.name,
                  wide == VK_WIDE_WGMMA ? " (wide tiles, wgmma)" : wide ? " (wide tiles)" : "");
        }
    }
    CK(cudaStreamDestroy(st));
}

/* vk_lora against ref::lora: two projections sharing x (their columns side by side in y, like q
 * and k), three slots of ranks 4, 16 and 96 (the second without matrices for the first projection;
 * 96 takes expand's rank in two chunks); first rows of mixed slots and the base model (-1), as in a
 * decode step, then runs of one slot, as in prefill chunks. Rows of the base model and columns
 * outside the projections must be unchanged. Then batch invariance: with invariant, every row's
 * bits equal those of the same row computed alone. */
static void test_lora(vk_dtype dt)
{
    const int dims[][3] = {{576, 192, 64}, {1032, 4104, 1024}};
    for (const auto &d : dims) {
        const int in = d[0], out0 = d[1], out1 = d[2], n = 77, off = 8, ldy = off + out0 + out1 + 16;
        rng r(g_seed + in);
        const std::vector<int> rank = {4, 16, 96};
        std::vector<std::vector<uint16_t>> a[2], b[2];
        std::vector<vk_lora_slot> tab[2];
        std::vector<dbuf<uint16_t> *> keep;
        const int outs[2] = {out0, out1};
        for (int t = 0; t < 2; t++) {
            a[t].resize(3), b[t].resize(3), tab[t].resize(3);
            for (int s = 0; s < 3; s++) {
                if (t == 0 && s == 1) continue; /* no matrices for this projection */
                a[t][s] = rand_storage(dt, (size_t)rank[s] * in, r, 0.1f);
                b[t][s] = rand_storage(dt, (size_t)outs[t] * rank[s], r, 0.1f);
                keep.push_back(new dbuf<uint16_t>(a[t][s]));
                tab[t][s].a = keep.back()->p;
                keep.push_back(new dbuf<uint16_t>(b[t][s]));
                tab[t][s].b = keep.back()->p;
                tab[t][s].rank = rank[s];
            }
        }
        std::vector<int32_t> slots(n);
        for (int i = 0; i < n; i++) slots[i] = i < 37 ? r.below(4) - 1 : (i - 37) / 13 % 4 - 1;
        auto x = rand_storage(dt, (size_t)n * in, r, 1.f), y = rand_storage(dt, (size_t)n * ldy, r, 1.f);
        dbuf<uint16_t> dx(x), dy(y);
        dbuf<vk_lora_slot> dtab0(tab[0]), dtab1(tab[1]);
        dbuf<int32_t> dslots(slots);
        dbuf<float> ws(vk_lora_ws_floats(n, 96, 1));
        vk_lora_targets tg = {};
        tg.tab[0] = dtab0.p, tg.tab[1] = dtab1.p;
        tg.num = 2;
        auto run = [&](int rows, int first, int invariant) {
            tg.y[0] = dy.p + (size_t)first * ldy + off;
            tg.y[1] = dy.p + (size_t)first * ldy + off + out0;
            tg.out[0] = out0, tg.out[1] = out1;
            CK(vk_lora(dt, &tg, ldy, dx.p + (size_t)first * in, in, dslots.p + first, rows, ws.p, 96, invariant, 0, 0));
        };
        run(n, 0, 0);
        auto fx = to_f(dt, x), want = to_f(dt, y);
        for (int t = 0; t < 2; t++) {
            std::vector<float> fa[3], fb[3];
            std::vector<const float *> pa(3, nullptr), pb(3, nullptr);
            for (int s = 0; s < 3; s++)
                if (!a[t][s].empty())
                    fa[s] = to_f(dt, a[t][s]), fb[s] = to_f(dt, b[t][s]), pa[s] = fa[s].data(), pb[s] = fb[s].data();
            ref::lora(dt, want.data() + off + (t ? out0 : 0), ldy, outs[t], fx.data(), in, pa, pb, rank, slots.data(),
                      n);
        }
        auto got = dy.down();
        int untouched_bad = 0;
        for (int i = 0; i < n; i++)
            for (int o = 0; o < ldy; o++) {
                const bool col0 = o >= off && o < off + out0, col1 = o >= off + out0 && o < off + out0 + out1;
                const bool adapted = slots[i] >= 0 && ((col0 && slots[i] != 1) || col1);
                if (!adapted) untouched_bad += got[(size_t)i * ldy + o] != y[(size_t)i * ldy + o];
            }
        err e = compare(to_f(dt, got), want);
        printf("lora %s in=%d out=%d+%d: rel %.2e (tol %.1e), %d changed outside the adapted rows/columns\n", dtn(dt),
               in, out0, out1, e.rel, ulp_tol(dt) / 4, untouched_bad);
        CHECK(e.rel < ulp_tol(dt) / 4 && untouched_bad == 0, "lora %s", dtn(dt));

        dy.up(y); /* invariance: the whole batch, then each of a few rows alone */
        run(n, 0, 1);
        auto all = dy.down();
        int differ = 0;
        for (int i : {0, 5, 40, 76}) {
            dy.up(y);
            run(1, i, 1);
            auto one = dy.down();
            for (int o = 0; o < ldy; o++) differ += one[(size_t)i * ldy + o] != all[(size_t)i * ldy + o];
        }
        printf("lora %s invariant: %d elements differ between a row alone and in the batch\n", dtn(dt), differ);
        CHECK(differ == 0, "lora invariant %s", dtn(dt));
        for (auto *p : keep) delete p;
    }
}

int main(int argc, char **argv)
{
    std::string what = argc > 1 ? argv[1] : "all";
    if (argc > 2)
        g_seed = strtoull(argv[2], nullptr, 10);
    else
        g_seed = (uint64_t)time(nullptr); /* fresh inputs every run; the seed is printed */
    printf("seed %llu\n", (unsigned long long)g_seed);
    if (what == "rng" || what == "all") test_rng();
    if (what == "tiles" || what == "all") test_tiles();
    if (what == "splits" || what == "all") test_splits();
    if (what == "rng" || what == "tiles" || what == "splits") return ref::failures() ? 1 : 0; /* host-only: run without a GPU */
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: skipped\n");
        return ref::failures() ? 1 : 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    if (what == "pdl" && !vk_pdl_supported()) { /* nothing to test: the backend never launches with pdl here */
        printf("programmatic dependent launch not supported on this GPU / build: skipped\n");
        return ref::failures() ? 1 : 77;
    }
    for (vk_dtype dt : {VK_BF16, VK_F16}) {
        if (what == "embedding" || what == "all") test_embedding(dt);
        if (what == "rmsnorm" || what == "all") test_rmsnorm(dt);
        if (what == "silu" || what == "all") test_gather_silu(dt);
        if (what == "rope" || what == "all") test_rope(dt);
        if (what == "attention" || what == "all") test_attention(dt);
        if (what == "invariant" || what == "all") test_attention_invariant(dt);
        if (what == "gemv" || what == "all") test_gemv(dt);
        if (what == "pdl" || what == "all") test_pdl_chain(dt);
        if (what == "lora" || what == "all") test_lora(dt);
    }
    if (what == "copy_blocks" || what == "all") test_copy_blocks();
    if (what == "sampling" || what == "all") {
        test_sampling();
        test_sampling_select();
        test_sampling_in_order(32000);
        test_sampling_in_order(32003);
        test_sampling_in_order(100);
        test_logprobs_fallback();
    }
    CK(cudaDeviceSynchronize());
    printf("%s: %s (%d failures)\n", what.c_str(), ref::failures() ? "FAILED" : "ok", ref::failures());
    return ref::failures() ? 1 : 0;
}
