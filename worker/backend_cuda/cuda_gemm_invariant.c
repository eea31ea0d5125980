/* Batch-invariant matrix products (--batch-invariant).
 *
 * A token's result must not depend on how many other rows share its step: otherwise a request
 * preempted and recomputed, prefilled in other chunks or decoded beside other requests gets other
 * last bits, and sooner or later another greedy token. cuBLAS picks its kernel per shape (and the
 * start-up tuning per n), and kernels differ in tiling and K splitting, so the default products
 * are not batch-invariant. Here each weight shape gets one cuBLASLt kernel for every n: a
 * candidate without a K split (each output element summed by one thread block, K in a fixed
 * order), picked for the largest step and accepted only after its rows came out bit-identical at
 * the probe sizes and row offsets below. vk_gemv (n <= 4) and the tuned picks are not used.
 * The cost is speed at the n the kernel was not chosen for (docs/cuda-backend.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

#define INV_CANDIDATES 8
#define INV_HOST_BYTES ((size_t)32 << 20) /* rows of the reference product kept for comparison */

/* (first row, rows) of the probes, compared bit for bit with the same rows of the reference
 * product at the largest n: single rows at two offsets (decode of one sequence), small and odd
 * counts, counts around the usual tile heights (64, 128) and rows away from the tile origin. */
static const int probes[][2] = {{0, 1}, {7, 1}, {0, 2}, {3, 5}, {1, 16}, {17, 33}, {64, 65}, {5, 128}, {130, 200}};
#define NPROBES ((int)(sizeof probes / sizeof probes[0]))

/* One weight shape: input rows x (capacity nref rows of in), weight w [out][in], output y. */
typedef struct inv_shape {
    const char *name;
    void *x;
    int in;
    const void *w;
    int out;
    void *y;
    bool f32;
    int nref;
} inv_shape;

static bool set_cols(cuda_gemm_algo *a, int n)
{
    const uint64_t c = (uint64_t)n;
    return cublasLtMatrixLayoutSetAttribute(a->lb, CUBLASLT_MATRIX_LAYOUT_COLS, &c, sizeof c) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatrixLayoutSetAttribute(a->lc, CUBLASLT_MATRIX_LAYOUT_COLS, &c, sizeof c) == CUBLAS_STATUS_SUCCESS;
}

/* a's kernel accepted at n rows by cuBLASLt (shape, alignment, workspace). */
static bool usable_at(cuda_backend *be, cuda_gemm_algo *a, int n)
{
    cublasLtMatmulHeuristicResult_t r;
    return set_cols(a, n) &&
           cublasLtMatmulAlgoCheck(be->lt, a->f32 ? be->lt_desc_f32 : be->lt_desc, a->la, a->lb, a->lc, a->lc, &a->algo,
                                   &r) == CUBLAS_STATUS_SUCCESS &&
           r.state == CUBLAS_STATUS_SUCCESS && r.workspaceSize <= be->blas_ws_bytes;
}

static bool no_k_split(const cublasLtMatmulAlgo_t *algo)
{
    int32_t splits = 1;
    uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
    size_t got = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof splits, &got) !=
            CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof scheme,
                                             &got) != CUBLAS_STATUS_SUCCESS)
        return false;
    return splits <= 1 && scheme == CUBLASLT_REDUCTION_SCHEME_NONE;
}

/* Rows [off, off + n) of x through a's kernel into y's first n rows; the first copy rows of the
 * result to host. */
static vesta_status run_rows(cuda_backend *be, cuda_gemm_algo *a, const inv_shape *sh, int off, int n, int copy,
                             void *host, vesta_error *err)
{
    const size_t row = (size_t)sh->out * (sh->f32 ? 4 : 2);
    if (cuda_gemm_lt(be, a, (const char *)sh->x + (size_t)off * sh->in * 2, sh->w, sh->y, err) != VESTA_OK)
        return VESTA_ERR_BACKEND;
    CU(cudaMemcpyAsync(host, sh->y, row * (size_t)copy, cudaMemcpyDeviceToHost, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Whether a's kernel gives every probe (within the first keep rows) the reference product's bits.
 * ref, probe: room for keep rows each. A cuBLAS failure is an error; a refusal or a mismatch
 * only makes *ok false. */
static vesta_status check_invariant(cuda_backend *be, cuda_gemm_algo *a, const inv_shape *sh, int keep,
                                    unsigned char *ref, unsigned char *probe, bool *ok, vesta_error *err)
{
    const size_t row = (size_t)sh->out * (sh->f32 ? 4 : 2);
    *ok = false;
    if (!usable_at(be, a, sh->nref)) return VESTA_OK;
    if (run_rows(be, a, sh, 0, sh->nref, keep, ref, err) != VESTA_OK) return VESTA_ERR_BACKEND;
    for (int i = 0; i < NPROBES; i++) {
        const int off = probes[i][0], n = probes[i][1];
        if (off + n > keep) continue;
        if (!usable_at(be, a, n)) return VESTA_OK;
        if (run_rows(be, a, sh, off, n, n, probe, err) != VESTA_OK) return VESTA_ERR_BACKEND;
        if (memcmp(probe, ref + row * (size_t)off, row * (size_t)n) != 0) return VESTA_OK;
    }
    *ok = true;
    return VESTA_OK;
}

/* The first of cuBLASLt's candidates for sh at its largest n that has no K split and passes
 * check_invariant; kept in a (layouts included). */
static vesta_status pick(cuda_backend *be, const inv_shape *sh, cuda_gemm_algo *a, vesta_error *err)
{
    *a = (cuda_gemm_algo){.n = sh->nref, .in = sh->in, .out = sh->out, .f32 = sh->f32, .use_lt = true};
    const size_t row = (size_t)sh->out * (sh->f32 ? 4 : 2);
    int keep = (int)(INV_HOST_BYTES / row);
    if (keep > sh->nref) keep = sh->nref;
    if (keep < 1) keep = 1;
    unsigned char *ref = malloc(row * (size_t)keep), *probe = malloc(row * (size_t)keep);
    cublasLtMatmulHeuristicResult_t cand[INV_CANDIDATES];
    int found = 0, tried = 0;
    vesta_status st = VESTA_OK;
    if (!ref || !probe) {
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of host memory");
        goto done;
    }
    if (!cuda_gemm_layouts_create(a) ||
        cublasLtMatmulAlgoGetHeuristic(be->lt, a->f32 ? be->lt_desc_f32 : be->lt_desc, a->la, a->lb, a->lc, a->lc,
                                       be->lt_pref, INV_CANDIDATES, cand, &found) != CUBLAS_STATUS_SUCCESS)
        found = 0;
    /* inputs in [-1, 1]: every bit of the products is exercised */
    CU(vk_fill_random(VK_BF16, sh->x, (size_t)sh->nref * sh->in, 1.0f, 0x5eed + (uint64_t)sh->out, be->stream));
    for (int i = 0; i < found; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || !no_k_split(&cand[i].algo)) continue;
        bool ok = false;
        a->algo = cand[i].algo;
        tried++;
        if ((st = check_invariant(be, a, sh, keep, ref, probe, &ok, err)) != VESTA_OK || ok) goto done;
    }
    st = vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                         "no batch-invariant kernel for the %s product (%d x %d x %d): %d of cuBLASLt's %d "
                         "candidates have no K split, none gave the same bits at every n tried",
                         sh->name, sh->nref, sh->in, sh->out, tried, found);
    goto done;
fail:
    st = VESTA_ERR_BACKEND;
done:
    free(ref);
    free(probe);
    return st;
}

vesta_status cuda_gemm_invariant_init(cuda_backend *be, vesta_error *err)
{
    const cuda_layer *y = &be->layers[0];
    const int Hd = be->Hd, qd = be->H * be->D, nt = be->max_tokens;
    const inv_shape shapes[CUDA_INV_SHAPES] = {
        {"q|k|v", be->h, Hd, y->wqkv, be->W, be->qkv, false, nt},
        {"o_proj", be->attn, qd, y->wo, Hd, be->tmp, false, nt},
        {"gate|up", be->h, Hd, y->wgu, 2 * be->F, be->gu, false, nt},
        {"down", be->act, be->F, y->wdown, Hd, be->tmp, false, nt},
        {"LM head", be->sh, Hd, be->lm_head, be->comm ? be->Vr : be->V, be->comm ? be->lslice : be->logits, true,
         be->max_seqs},
    };
    for (int i = 0; i < CUDA_INV_SHAPES; i++) {
        if (pick(be, &shapes[i], &be->inv[i], err) != VESTA_OK) {
            cuda_gemm_algo_dispose(&be->inv[i]);
            vesta_error_prefix(err, "cuda: --batch-invariant");
            return VESTA_ERR_BACKEND;
        }
        be->num_inv = i + 1;
    }
    CU(cudaMemsetAsync(be->aarena, 0, be->abytes, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    fprintf(stderr,
            "cuda: batch-invariant: one cuBLASLt kernel per product shape, checked bit-identical at %d row "
            "counts and offsets\n",
            NPROBES);
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

vesta_status cuda_gemm_invariant_run(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                                     bool f32out, vesta_error *err)
{
    for (int i = 0; i < be->num_inv; i++) {
        cuda_gemm_algo *a = &be->inv[i];
        if (a->in != in || a->out != out || a->f32 != f32out) continue;
        if (!set_cols(a, n)) return vesta_error_set(err, VESTA_ERR_BACKEND, "cublasLt: layout of a %d-row product", n);
        return cuda_gemm_lt(be, a, x, w, y, err);
    }
    return vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: batch-invariant product %d x %d x %d has no kernel", n, in,
                           out);
}

void cuda_gemm_invariant_dispose(cuda_backend *be)
{
    for (int i = 0; i < be->num_inv; i++) cuda_gemm_algo_dispose(&be->inv[i]);
    be->num_inv = 0;
}
