/* Matrix products of the forward pass: y[n][out] = x[n][in] . w[out][in]^T,
 * bf16 inputs, fp32 accumulation, bf16 or fp32 output.
 *
 * cuBLAS's default choice (cublasGemmEx, its heuristic's first pick) is close
 * to the ceiling for prefill-sized n but not for the n of decode steps, where a
 * layer's product has too few output tiles to fill 132 SMs (o_proj at n = 512:
 * 64 tiles of 128 x 256) and the heuristic's pick can leave half the GPU idle.
 * So, once at start-up, for each n a decode graph is captured at and for the
 * largest (chunked-prefill) step, the backend times cuBLASLt's first candidates
 * for every weight shape against the default and keeps the fastest; other n use
 * the default. The choice only changes which kernel computes the product (every
 * candidate is a correct cuBLAS kernel), and it is made before the KV cache is
 * sized: no allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"

#define TUNE_CANDIDATES 8
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
                                 bool f32out, vesta_error *err)
{
    const float alpha = 1.0f, beta = 0.0f;
    CB(cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in,
                    &beta, y, f32out ? CUDA_R_32F : CUDA_R_16BF, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

static vesta_status gemm_lt(cuda_backend *be, const cuda_gemm_algo *a, const void *x, const void *w, void *y,
                            vesta_error *err)
{
    const float alpha = 1.0f, beta = 0.0f;
    CB(cublasLtMatmul(be->lt, a->f32 ? be->lt_desc_f32 : be->lt_desc, &alpha, w, a->la, x, a->lb, &beta, y, a->lc, y,
                      a->lc, &a->algo, be->blas_ws, be->blas_ws_bytes, be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

vesta_status cuda_gemm(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y, bool f32out,
                       vesta_error *err)
{
    if (n <= VK_GEMV_MAX_N) { /* weight streaming: a custom kernel beats cuBLAS at
                                 n <= 4 */
        CU(vk_gemv(VK_BF16, f32out, y, x, w, n, in, out, be->stream));
        return VESTA_OK;
    }
    /* vk_gemm_skinny (n <= 64) is not used here: on the H100 it streamed the
     * weights more slowly than cuBLAS at every n (bench_gemm_skinny, GPU run 10:
     * whole step 7.9-12.8 ms against 6.9-7.1 ms; docs/benchmarks.md). */
    const cuda_gemm_algo *a = algo_find(be, n, in, out, f32out);
    if (a && a->use_lt) return gemm_lt(be, a, x, w, y, err);
    return gemm_default(be, x, n, in, w, out, y, f32out, err);
fail:
    return VESTA_ERR_BACKEND;
}

/* Median of TUNE_REPS timed runs (after one untimed) of one product; a NULL:
 * cuBLAS's default. */
static float time_one(cuda_backend *be, const cuda_gemm_algo *a, const void *x, int n, int in, const void *w, int out,
                      void *y, bool f32, cudaEvent_t e0, cudaEvent_t e1)
{
    vesta_error err[1] = {{0}};
    float ms[TUNE_REPS];
    for (int r = -1; r < TUNE_REPS; r++) {
        if (r >= 0 && cudaEventRecord(e0, be->stream) != cudaSuccess) return -1.0f;
        vesta_status st = a ? gemm_lt(be, a, x, w, y, err) : gemm_default(be, x, n, in, w, out, y, f32, err);
        if (st != VESTA_OK) {
            cudaStreamSynchronize(be->stream);
            return -1.0f;
        }
        if (r < 0) continue;
        if (cudaEventRecord(e1, be->stream) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms[r], e0, e1) != cudaSuccess)
            return -1.0f;
    }
    for (int i = 1; i < TUNE_REPS; i++) /* insertion sort of three */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            float t = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = t;
        }
    return ms[TUNE_REPS / 2];
}

static void algo_dispose(cuda_gemm_algo *a)
{
    if (a->la) cublasLtMatrixLayoutDestroy(a->la);
    if (a->lb) cublasLtMatrixLayoutDestroy(a->lb);
    if (a->lc) cublasLtMatrixLayoutDestroy(a->lc);
    memset(a, 0, sizeof *a);
}

/* Times the default and cuBLASLt's first candidates for one shape; records the
 * winner. Sets *def_ms / *best_ms. A shape whose layouts or heuristic fail
 * keeps the default (no entry is an error: the default path is always valid).
 */
static vesta_status tune_shape(cuda_backend *be, int n, int in, const void *x, const void *w, int out, void *y,
                               bool f32, cudaEvent_t e0, cudaEvent_t e1, float *def_ms, float *best_ms,
                               vesta_error *err)
{
    if (be->num_algos >= CUDA_MAX_ALGOS || algo_find(be, n, in, out, f32)) return VESTA_OK;
    cuda_gemm_algo *a = &be->algos[be->num_algos];
    memset(a, 0, sizeof *a);
    a->n = n, a->in = in, a->out = out, a->f32 = f32;
    float d = time_one(be, NULL, x, n, in, w, out, y, f32, e0, e1);
    if (d < 0)
        return vesta_error_set(err, VESTA_ERR_BACKEND,
                               "cuda: GEMM tuning: default product %d x %d x %d "
                               "failed",
                               n, in, out);
    *def_ms += d;
    float best = d;
    cublasLtMatmulHeuristicResult_t cand[TUNE_CANDIDATES];
    int found = 0;
    if (cublasLtMatrixLayoutCreate(&a->la, CUDA_R_16BF, in, out, in) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&a->lb, CUDA_R_16BF, in, n, in) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&a->lc, f32 ? CUDA_R_32F : CUDA_R_16BF, out, n, out) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulAlgoGetHeuristic(be->lt, f32 ? be->lt_desc_f32 : be->lt_desc, a->la, a->lb, a->lc, a->lc,
                                       be->lt_pref, TUNE_CANDIDATES, cand, &found) != CUBLAS_STATUS_SUCCESS)
        found = 0;
    int pick = -1;
    for (int i = 0; i < found; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || cand[i].workspaceSize > be->blas_ws_bytes) continue;
        a->algo = cand[i].algo;
        float t = time_one(be, a, x, n, in, w, out, y, f32, e0, e1);
        if (t > 0 && t < best * (pick < 0 ? TUNE_WIN : 1.0f)) best = t, pick = i;
    }
    *best_ms += best;
    if (pick < 0) { /* the default stays; the entry only records that the shape
                       was tuned */
        cuda_gemm_algo keep = {.n = n, .in = in, .out = out, .f32 = f32};
        algo_dispose(a);
        *a = keep;
    } else {
        a->algo = cand[pick].algo;
        a->use_lt = true;
    }
    be->num_algos++;
    return VESTA_OK;
}

/* Every weight shape of a step at n rows (the four layer products of layer 0
 * and the LM head). */
static vesta_status tune_n(cuda_backend *be, int n, cudaEvent_t e0, cudaEvent_t e1, float *def_ms, float *best_ms,
                           vesta_error *err)
{
    const cuda_layer *y = &be->layers[0];
    const int Hd = be->Hd, qd = be->H * be->D;
    float d = 0, b = 0;
    vesta_status st = tune_shape(be, n, Hd, be->h, y->wqkv, be->W, be->qkv, false, e0, e1, &d, &b, err);
    if (!st) st = tune_shape(be, n, qd, be->attn, y->wo, Hd, be->tmp, false, e0, e1, &d, &b, err);
    if (!st) st = tune_shape(be, n, Hd, be->h, y->wgu, 2 * be->F, be->gu, false, e0, e1, &d, &b, err);
    if (!st) st = tune_shape(be, n, be->F, be->act, y->wdown, Hd, be->tmp, false, e0, e1, &d, &b, err);
    float hd = 0, hb = 0; /* LM head: once per step, not per layer */
    if (!st && n <= be->max_seqs)
        st = tune_shape(be, n, Hd, be->sh, be->lm_head, be->comm ? be->Vr : be->V, be->comm ? be->lslice : be->logits,
                        true, e0, e1, &hd, &hb, err);
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
    for (int i = 0; i < be->num_algos; i++) algo_dispose(&be->algos[i]);
    be->num_algos = 0;
    if (be->lt_pref) cublasLtMatmulPreferenceDestroy(be->lt_pref);
    if (be->lt_desc) cublasLtMatmulDescDestroy(be->lt_desc);
    if (be->lt_desc_f32) cublasLtMatmulDescDestroy(be->lt_desc_f32);
    if (be->lt) cublasLtDestroy(be->lt);
    be->lt_pref = NULL, be->lt_desc = be->lt_desc_f32 = NULL, be->lt = NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

vesta_status cuda_gemm_tune(cuda_backend *be, const int *ns, int count, vesta_error *err)
{
    cudaEvent_t e0 = NULL, e1 = NULL;
    double t0 = now_s();
    float tot_d = 0, tot_b = 0;
    int tuned = 0;
    /* defined inputs: the products are timed on the activation buffers */
    CU(cudaMemsetAsync(be->aarena, 0, be->abytes, be->stream));
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    for (int i = 0; i < count; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = ns[j] == ns[i];
        if (seen || ns[i] <= VK_GEMV_MAX_N || ns[i] > be->max_tokens) continue;
        float d = 0, b = 0;
        if (tune_n(be, ns[i], e0, e1, &d, &b, err) != VESTA_OK) goto fail_quiet;
        tot_d += d, tot_b += b, tuned++;
        if (be->gemm_tune > 1)
            fprintf(stderr,
                    "cuda: GEMM tuning n=%d: step's products %.3f ms with cuBLAS's "
                    "default, %.3f ms tuned\n",
                    ns[i], d, b);
    }
    CU(cudaMemsetAsync(be->aarena, 0, be->abytes, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    int lt = 0;
    for (int i = 0; i < be->num_algos; i++) lt += be->algos[i].use_lt;
    fprintf(stderr,
            "cuda: GEMM tuning: %d step sizes, %d of %d shapes use a cuBLASLt "
            "pick; their products "
            "%.2f ms -> %.2f ms summed over the sizes; %.2f s\n",
            tuned, lt, be->num_algos, tot_d, tot_b, now_s() - t0);
    return VESTA_OK;
fail:
fail_quiet:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return VESTA_ERR_BACKEND;
}
