/* Matrix products of the forward pass: y[n][out] = x[n][in] . w[out][in]^T, bf16 inputs, fp32
 * accumulation, bf16 or fp32 output.
 *
 * cuBLAS's default choice (cublasGemmEx, its heuristic's first pick) is close to the ceiling for
 * prefill-sized n but not for the n of decode steps, where a layer's product has too few output
 * tiles to fill 132 SMs (o_proj at n = 512: 64 tiles of 128 x 256) and the heuristic's pick can
 * leave half the GPU idle. So, once at start-up, for each n a decode graph is captured at and for
 * the largest (chunked-prefill) step, the backend times cuBLASLt's first candidates for every
 * weight shape against the default and keeps the fastest; other n use the default. The choice
 * only changes which kernel computes the product (every candidate is a correct cuBLAS kernel),
 * and it is made before the KV cache is sized: no allocation.
 *
 * Timings differ a little from run to run, and so would the picks near a tie -- and with them the
 * results' last bits. The picks are therefore kept in a cache file (gemm_cache.h) per GPU model
 * and cuBLAS version: a restart reuses them (re-checked with cublasLtMatmulAlgoCheck) and times
 * only the shapes it has not seen. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"
#include "gemm_cache.h"

#define TUNE_CANDIDATES 8 /* asked for 32 or 64, cuBLASLt offers no more for these shapes (run 173) */
#define TUNE_REPS 3
#define TUNE_WIN 0.98f /* a candidate replaces the default only when at least 2 % faster */

size_t cuda_gemm_workspace_bytes(void) { return (size_t)64 << 20; }

static cuda_gemm_algo *algo_find(cuda_backend *be, int n, int in, int out, bool f32)
{
    for (int i = 0; i < be->num_algos; i++) {
        cuda_gemm_algo *a = &be->algos[i];
        if (a->n == n && a->in == in && a->out == out && a->f32 == f32) return a;
    }
    return NULL;
}

static vesta_status gemm_default(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                                 bool f32out, float beta, vesta_error *err)
{
    const float alpha = 1.0f;
    CB(cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in,
                    &beta, y, f32out ? CUDA_R_32F : CUDA_R_16BF, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

vesta_status cuda_gemm_lt(cuda_backend *be, const cuda_gemm_algo *a, const void *x, const void *w, void *y, float beta,
                          vesta_error *err)
{
    const float alpha = 1.0f;
    CB(cublasLtMatmul(be->lt, a->f32 ? be->lt_desc_f32 : be->lt_desc, &alpha, w, a->la, x, a->lb, &beta, y, a->lc, y,
                      a->lc, &a->algo, be->blas_ws, be->blas_ws_bytes, be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

bool cuda_gemm_streams(const cuda_backend *be, int n)
{
    if (be->gemm_stream < 0) return n > VK_GEMV_MAX_N && n <= CUDA_GEMM_STREAM_AUTO_MAX_N;
    if (!be->gemm_stream || n > VK_GEMM_STREAM_MAX_N) return false;
    return n > VK_GEMV_MAX_N || be->gemm_stream == 2;
}

bool cuda_gemm_adds(const cuda_backend *be, int n)
{
    return be->residual_add && n > VK_GEMV_MAX_N && !cuda_gemm_streams(be, n);
}

vesta_status cuda_gemm(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                       cuda_gemm_out mode, vesta_error *err)
{
    const bool f32out = mode == CUDA_GEMM_F32;
    if (mode == CUDA_GEMM_ADD && !cuda_gemm_adds(be, n))
        return vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: a product of %d rows cannot add into y here", n);
    if (be->batch_invariant) return cuda_gemm_invariant_run(be, x, n, in, w, out, y, f32out, err);
    if (cuda_gemm_streams(be, n)) { /* VESTA_GEMM_STREAM; by default version 3 at 5-48 rows */
        const int variant = be->gemm_stream == 1 || be->gemm_stream == 2 ? 0 : VK_GEMM_STREAM_TMA;
        CU(vk_gemm_stream_ex(VK_BF16, f32out, y, x, w, n, in, out, be->gs_ws, be->gs_ws_bytes, variant, be->gemm_pdl,
                             be->stream));
        return VESTA_OK;
    }
    if (n <= VK_GEMV_MAX_N) { /* weight streaming: vk_gemv beats cuBLAS at n <= 4 */
        CU(vk_gemv(VK_BF16, f32out, y, x, w, n, in, out, be->gemm_pdl, be->stream));
        return VESTA_OK;
    }
    /* CUDA_GEMM_ADD: beta = 1 with C = D = y, which cuBLAS(Lt) computes in place: the sum in fp32,
     * rounded once */
    const float beta = mode == CUDA_GEMM_ADD ? 1.0f : 0.0f;
    const cuda_gemm_algo *a = algo_find(be, n, in, out, f32out);
    if (a && a->use_lt) return cuda_gemm_lt(be, a, x, w, y, beta, err);
    return gemm_default(be, x, n, in, w, out, y, f32out, beta, err);
fail:
    return VESTA_ERR_BACKEND;
}

/* One tuning pass: the timing events and the cache (NULL: none). */
typedef struct tune_ctx {
    cudaEvent_t e0, e1;
    vesta_gemm_cache *cache;
    int from_cache, timed;
    bool dirty;
} tune_ctx;

/* Median of TUNE_REPS timed runs (after one untimed) of one product; a NULL: cuBLAS's default. */
static float time_one(cuda_backend *be, const cuda_gemm_algo *a, const void *x, int n, int in, const void *w, int out,
                      void *y, bool f32, const tune_ctx *t)
{
    vesta_error err[1] = {{0}};
    float ms[TUNE_REPS];
    for (int r = -1; r < TUNE_REPS; r++) {
        if (r >= 0 && cudaEventRecord(t->e0, be->stream) != cudaSuccess) return -1.0f;
        vesta_status st =
            a ? cuda_gemm_lt(be, a, x, w, y, 0.0f, err) : gemm_default(be, x, n, in, w, out, y, f32, 0.0f, err);
        if (st != VESTA_OK) {
            cudaStreamSynchronize(be->stream);
            return -1.0f;
        }
        if (r < 0) continue;
        if (cudaEventRecord(t->e1, be->stream) != cudaSuccess || cudaEventSynchronize(t->e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms[r], t->e0, t->e1) != cudaSuccess)
            return -1.0f;
    }
    for (int i = 1; i < TUNE_REPS; i++) /* insertion sort of three */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            float tmp = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = tmp;
        }
    return ms[TUNE_REPS / 2];
}

void cuda_gemm_algo_dispose(cuda_gemm_algo *a)
{
    if (a->la) cublasLtMatrixLayoutDestroy(a->la);
    if (a->lb) cublasLtMatrixLayoutDestroy(a->lb);
    if (a->lc) cublasLtMatrixLayoutDestroy(a->lc);
    memset(a, 0, sizeof *a);
}

bool cuda_gemm_layouts_create(cuda_gemm_algo *a)
{
    return cublasLtMatrixLayoutCreate(&a->la, CUDA_R_16BF, a->in, a->out, a->in) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&a->lb, CUDA_R_16BF, a->in, a->n, a->in) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutCreate(&a->lc, a->f32 ? CUDA_R_32F : CUDA_R_16BF, a->out, a->n, a->out) ==
               CUBLAS_STATUS_SUCCESS;
}

/* The cache's pick for a's shape, if it has one that cuBLASLt still accepts here. */
static bool from_cache(cuda_backend *be, cuda_gemm_algo *a, const tune_ctx *t)
{
    const vesta_gemm_cache_entry *e = t->cache ? vesta_gemm_cache_find(t->cache, a->n, a->in, a->out, a->f32) : NULL;
    if (!e) return false;
    if (!e->use_lt) return true; /* cuBLAS's default was kept */
    _Static_assert(sizeof a->algo == sizeof e->algo, "cublasLtMatmulAlgo_t is 64 bytes");
    memcpy(&a->algo, e->algo, sizeof e->algo);
    cublasLtMatmulHeuristicResult_t r;
    if (!cuda_gemm_layouts_create(a) ||
        cublasLtMatmulAlgoCheck(be->lt, a->f32 ? be->lt_desc_f32 : be->lt_desc, a->la, a->lb, a->lc, a->lc, &a->algo,
                                &r) != CUBLAS_STATUS_SUCCESS ||
        r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > be->blas_ws_bytes)
        return false;
    a->use_lt = true;
    return true;
}

/* Times the default and cuBLASLt's first candidates for a's shape; keeps the winner in a. */
static vesta_status time_shape(cuda_backend *be, cuda_gemm_algo *a, const void *x, const void *w, void *y,
                               const tune_ctx *t, float *def_ms, float *best_ms, vesta_error *err)
{
    const int n = a->n, in = a->in, out = a->out;
    const bool f32 = a->f32;
    float d = time_one(be, NULL, x, n, in, w, out, y, f32, t);
    if (d < 0)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: GEMM tuning: default product %d x %d x %d failed", n, in,
                               out);
    float best = d;
    cublasLtMatmulHeuristicResult_t cand[TUNE_CANDIDATES];
    int found = 0;
    if (!cuda_gemm_layouts_create(a) ||
        cublasLtMatmulAlgoGetHeuristic(be->lt, f32 ? be->lt_desc_f32 : be->lt_desc, a->la, a->lb, a->lc, a->lc,
                                       be->lt_pref, TUNE_CANDIDATES, cand, &found) != CUBLAS_STATUS_SUCCESS)
        found = 0;
    int pick = -1;
    for (int i = 0; i < found; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || cand[i].workspaceSize > be->blas_ws_bytes) continue;
        a->algo = cand[i].algo;
        float ms = time_one(be, a, x, n, in, w, out, y, f32, t);
        if (ms > 0 && ms < best * (pick < 0 ? TUNE_WIN : 1.0f)) best = ms, pick = i;
    }
    *def_ms += d;
    *best_ms += best;
    if (pick >= 0) {
        a->algo = cand[pick].algo;
        a->use_lt = true;
    }
    return VESTA_OK;
}

/* One product shape: from the cache, else timed (and then added to the cache). */
static vesta_status tune_shape(cuda_backend *be, int n, int in, const void *x, const void *w, int out, void *y,
                               bool f32, tune_ctx *t, float *def_ms, float *best_ms, vesta_error *err)
{
    if (be->num_algos >= CUDA_MAX_ALGOS || algo_find(be, n, in, out, f32)) return VESTA_OK;
    cuda_gemm_algo *a = &be->algos[be->num_algos];
    *a = (cuda_gemm_algo){.n = n, .in = in, .out = out, .f32 = f32};
    if (from_cache(be, a, t)) {
        t->from_cache++;
    } else {
        cuda_gemm_algo_dispose(a);
        *a = (cuda_gemm_algo){.n = n, .in = in, .out = out, .f32 = f32};
        if (time_shape(be, a, x, w, y, t, def_ms, best_ms, err) != VESTA_OK) {
            cuda_gemm_algo_dispose(a);
            return VESTA_ERR_BACKEND;
        }
        t->timed++;
        vesta_gemm_cache_entry e = {.n = n, .in = in, .out = out, .f32 = f32, .use_lt = a->use_lt};
        if (a->use_lt) memcpy(e.algo, &a->algo, sizeof e.algo);
        if (t->cache && vesta_gemm_cache_put(t->cache, &e)) t->dirty = true;
    }
    if (!a->use_lt) { /* the default: the entry only records that the shape is settled */
        cuda_gemm_algo keep = {.n = n, .in = in, .out = out, .f32 = f32};
        cuda_gemm_algo_dispose(a);
        *a = keep;
    }
    be->num_algos++;
    return VESTA_OK;
}

/* Every weight shape of a step at n rows (the four layer products of layer 0 and the LM head);
 * *def_ms / *best_ms: a step's products with the defaults / the picks, over the timed shapes. */
static vesta_status tune_n(cuda_backend *be, int n, tune_ctx *t, float *def_ms, float *best_ms, vesta_error *err)
{
    const cuda_layer *y = &be->layers[0];
    const int Hd = be->Hd, qd = be->H * be->D;
    float d = 0, b = 0;
    vesta_status st = tune_shape(be, n, Hd, be->h, y->wqkv, be->W, be->qkv, false, t, &d, &b, err);
    void *res = cuda_gemm_adds(be, n) ? be->x : be->tmp; /* the O and down products' rows (cuda_forward.c) */
    if (!st) st = tune_shape(be, n, qd, be->attn, y->wo, Hd, res, false, t, &d, &b, err);
    if (!st) st = tune_shape(be, n, Hd, be->h, y->wgu, 2 * be->F, be->gu, false, t, &d, &b, err);
    if (!st) st = tune_shape(be, n, be->F, be->act, y->wdown, Hd, res, false, t, &d, &b, err);
    float hd = 0, hb = 0; /* LM head: once per step, not per layer */
    if (!st && n <= be->max_seqs)
        st = tune_shape(be, n, Hd, be->sh, be->lm_head, be->comm ? be->Vr : be->V, be->comm ? be->lslice : be->logits,
                        true, t, &hd, &hb, err);
    *def_ms = d * be->L + hd;
    *best_ms = b * be->L + hb;
    return st;
}

vesta_status cuda_gemm_init(cuda_backend *be, vesta_error *err)
{
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    uint64_t ws = be->blas_ws_bytes;
    CB(cublasLtCreate(&be->lt));
    CB(cublasLtMatmulDescCreate(&be->lt_desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CB(cublasLtMatmulDescCreate(&be->lt_desc_f32, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasLtMatmulDesc_t ds[2] = {be->lt_desc, be->lt_desc_f32};
    for (int i = 0; i < 2; i++) {
        CB(cublasLtMatmulDescSetAttribute(ds[i], CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        CB(cublasLtMatmulDescSetAttribute(ds[i], CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    }
    CB(cublasLtMatmulPreferenceCreate(&be->lt_pref));
    CB(cublasLtMatmulPreferenceSetAttribute(be->lt_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

void cuda_gemm_dispose(cuda_backend *be)
{
    for (int i = 0; i < be->num_algos; i++) cuda_gemm_algo_dispose(&be->algos[i]);
    be->num_algos = 0;
    if (be->lt_pref) cublasLtMatmulPreferenceDestroy(be->lt_pref);
    if (be->lt_desc) cublasLtMatmulDescDestroy(be->lt_desc);
    if (be->lt_desc_f32) cublasLtMatmulDescDestroy(be->lt_desc_f32);
    if (be->lt) cublasLtDestroy(be->lt);
    be->lt_pref = NULL, be->lt_desc = be->lt_desc_f32 = NULL, be->lt = NULL;
}

/* The cache for this GPU and cuBLAS (NULL when turned off or unreadable: then every shape is
 * timed; a malformed file is reported and replaced). */
static vesta_gemm_cache *cache_open(cuda_backend *be, char *path, size_t cap)
{
    struct cudaDeviceProp prop;
    char device[VESTA_GEMM_CACHE_DEVICE];
    if (!vesta_gemm_cache_default_path(path, cap) || cudaGetDeviceProperties(&prop, be->dev) != cudaSuccess)
        return NULL;
    snprintf(device, sizeof device, "%.80s, %d SMs, sm_%d%d", prop.name, prop.multiProcessorCount, prop.major,
             prop.minor);
    vesta_gemm_cache *c = malloc(sizeof *c);
    if (!c) return NULL;
    vesta_error e = {0};
    if (vesta_gemm_cache_load(c, path, device, (uint64_t)cublasLtGetVersion(), &e) != VESTA_OK) {
        fprintf(stderr, "cuda: GEMM tuning cache ignored (it will be rewritten): %s\n", e.msg);
        vesta_gemm_cache_init(c, device, (uint64_t)cublasLtGetVersion());
    }
    return c;
}

vesta_status cuda_gemm_tune(cuda_backend *be, const int *ns, int count, vesta_error *err)
{
    char path[4096];
    tune_ctx t = {0};
    double t0 = cuda_now_s();
    float tot_d = 0, tot_b = 0;
    int sizes = 0;
    t.cache = cache_open(be, path, sizeof path);
    /* defined inputs: the products are timed on the activation buffers */
    CU(cudaMemsetAsync(be->aarena, 0, be->abytes, be->stream));
    CU(cudaEventCreate(&t.e0));
    CU(cudaEventCreate(&t.e1));
    for (int i = 0; i < count; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = ns[j] == ns[i];
        if (seen || ns[i] <= VK_GEMV_MAX_N || ns[i] > be->max_tokens || cuda_gemm_streams(be, ns[i]))
            continue; /* not cuBLAS's */
        float d = 0, b = 0;
        int timed = t.timed;
        if (tune_n(be, ns[i], &t, &d, &b, err) != VESTA_OK) goto fail_quiet;
        tot_d += d, tot_b += b, sizes++;
        if (be->gemm_tune > 1 && t.timed > timed)
            fprintf(stderr,
                    "cuda: GEMM tuning n=%d: the step's timed products %.3f ms with cuBLAS's default, %.3f ms "
                    "tuned\n",
                    ns[i], d, b);
    }
    CU(cudaMemsetAsync(be->aarena, 0, be->abytes, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    int lt = 0;
    for (int i = 0; i < be->num_algos; i++) lt += be->algos[i].use_lt;
    fprintf(stderr,
            "cuda: GEMM tuning: %d step sizes, %d shapes (%d from the cache%s%s, %d timed: %.2f -> %.2f ms), "
            "%d use a cuBLASLt pick; %.2f s\n",
            sizes, be->num_algos, t.from_cache, t.cache ? " " : ": none", t.cache ? path : "", t.timed, tot_d, tot_b,
            lt, cuda_now_s() - t0);
    if (t.cache && t.dirty) {
        vesta_error e = {0};
        if (vesta_gemm_cache_save(t.cache, path, &e) != VESTA_OK)
            fprintf(stderr, "cuda: GEMM tuning cache not saved: %s\n", e.msg);
    }
    free(t.cache);
    cudaEventDestroy(t.e0);
    cudaEventDestroy(t.e1);
    return VESTA_OK;
fail:
fail_quiet:
    free(t.cache);
    if (t.e0) cudaEventDestroy(t.e0);
    if (t.e1) cudaEventDestroy(t.e1);
    return VESTA_ERR_BACKEND;
}
