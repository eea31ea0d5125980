/* Batch-invariant matrix products (--batch-invariant).
 *
 * A token's result must not depend on how many other rows share its step: otherwise a request
 * preempted and recomputed, prefilled in other chunks or decoded beside other requests gets other
 * last bits, and sooner or later another greedy token. cuBLAS picks its kernel per shape (and the
 * start-up tuning per n), and kernels differ in tiling and K splitting, so the default products
 * are not batch-invariant. Here each weight shape gets one cuBLASLt kernel for every n: a
 * candidate without a K split (each output element summed by one thread block, K in a fixed
 * order), picked for the largest step and accepted only after its rows came out bit-identical at
 * the probe sizes and row offsets below.
 *
 * One kernel for every n would leave small steps (decode of a few sequences) on a kernel tiled for
 * 16,384 rows. But kernels that walk K in the same order give the same bits whatever their tile
 * sizes, so for a few bands of small n the first of cuBLASLt's candidates for that n whose rows
 * are bit-identical to the reference kernel's at every probe is used instead (where none is, the
 * reference kernel serves the band). The choice depends only on cuBLASLt's heuristic and on these
 * comparisons, never on timings: every process on the same GPU model and cuBLAS takes the same
 * kernels. vk_gemv (n <= 4) and the tuned picks are not used (docs/cuda-backend.md). */
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

/* Upper n of the small-step bands; the last band (any n) is the reference kernel's. */
static const int band_limit[CUDA_INV_BANDS - 1] = {1, 4, 16, 64, 256};

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

/* The comparison state of one shape: the reference kernel's first keep rows (ref) and room for a
 * probe's rows. */
typedef struct inv_check {
    const inv_shape *sh;
    size_t row; /* bytes of an output row */
    int keep;
    unsigned char *ref, *probe;
} inv_check;

/* Rows [off, off + n) of x through a's kernel into y's first n rows; the first copy rows of the
 * result to host. */
static vesta_status run_rows(cuda_backend *be, cuda_gemm_algo *a, const inv_shape *sh, int off, int n, int copy,
                             void *host, vesta_error *err)
{
    const size_t row = (size_t)sh->out * (sh->f32 ? 4 : 2);
    if (cuda_gemm_lt(be, a, (const char *)sh->x + (size_t)off * sh->in * 2, sh->w, sh->y, 0.0f, err) != VESTA_OK)
        return VESTA_ERR_BACKEND;
    CU(cudaMemcpyAsync(host, sh->y, row * (size_t)copy, cudaMemcpyDeviceToHost, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Whether a's kernel gives every probe (within the reference's keep rows) the reference's bits.
 * Probes above limit rows that the kernel refuses are skipped (it will not serve them); a refusal
 * at or below limit, or a mismatch, makes *ok false. A cuBLAS failure is an error. */
static vesta_status probes_match(cuda_backend *be, cuda_gemm_algo *a, const inv_check *c, int limit, bool *ok,
                                 vesta_error *err)
{
    *ok = false;
    for (int i = 0; i < NPROBES; i++) {
        const int off = probes[i][0], n = probes[i][1];
        if (off + n > c->keep) continue;
        if (!usable_at(be, a, n)) {
            if (n <= limit) return VESTA_OK;
            continue;
        }
        if (run_rows(be, a, c->sh, off, n, n, c->probe, err) != VESTA_OK) return VESTA_ERR_BACKEND;
        if (memcmp(c->probe, c->ref + c->row * (size_t)off, c->row * (size_t)n) != 0) return VESTA_OK;
    }
    *ok = true;
    return VESTA_OK;
}

/* cuBLASLt's candidates for a's shape at a->n rows (layouts made here). */
static int candidates(cuda_backend *be, cuda_gemm_algo *a, cublasLtMatmulHeuristicResult_t *cand)
{
    int found = 0;
    if (!cuda_gemm_layouts_create(a) ||
        cublasLtMatmulAlgoGetHeuristic(be->lt, a->f32 ? be->lt_desc_f32 : be->lt_desc, a->la, a->lb, a->lc, a->lc,
                                       be->lt_pref, INV_CANDIDATES, cand, &found) != CUBLAS_STATUS_SUCCESS)
        return 0;
    return found;
}

/* The reference kernel: the first candidate at the largest n without a K split whose rows at every
 * probe equal its own rows of the largest product (c->ref is filled with those). */
static vesta_status pick_reference(cuda_backend *be, inv_check *c, cuda_gemm_algo *a, vesta_error *err)
{
    const inv_shape *sh = c->sh;
    cublasLtMatmulHeuristicResult_t cand[INV_CANDIDATES];
    *a = (cuda_gemm_algo){.n = sh->nref, .in = sh->in, .out = sh->out, .f32 = sh->f32, .use_lt = true};
    const int found = candidates(be, a, cand);
    int tried = 0;
    for (int i = 0; i < found; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || !no_k_split(&cand[i].algo)) continue;
        a->algo = cand[i].algo;
        tried++;
        if (!usable_at(be, a, sh->nref)) continue;
        bool ok = false;
        if (run_rows(be, a, sh, 0, sh->nref, c->keep, c->ref, err) != VESTA_OK ||
            probes_match(be, a, c, sh->nref, &ok, err) != VESTA_OK)
            return VESTA_ERR_BACKEND;
        if (ok) return VESTA_OK;
    }
    return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                           "no batch-invariant kernel for the %s product (%d x %d x %d): %d of cuBLASLt's %d "
                           "candidates have no K split, none gave the same bits at every n tried",
                           sh->name, sh->nref, sh->in, sh->out, tried, found);
}

/* The kernel for steps of at most limit rows: the first candidate at limit rows that matches the
 * reference at every probe, else the reference's kernel. *own: a kernel of its own was found. */
static vesta_status pick_band(cuda_backend *be, const inv_check *c, const cuda_gemm_algo *ref, int limit,
                              cuda_gemm_algo *a, bool *own, vesta_error *err)
{
    const inv_shape *sh = c->sh;
    cublasLtMatmulHeuristicResult_t cand[INV_CANDIDATES];
    *a = (cuda_gemm_algo){.n = limit, .in = sh->in, .out = sh->out, .f32 = sh->f32, .use_lt = true};
    const int found = candidates(be, a, cand);
    *own = false;
    for (int i = 0; i < found; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || !no_k_split(&cand[i].algo)) continue;
        if (!memcmp(&cand[i].algo, &ref->algo, sizeof ref->algo)) break; /* the reference itself */
        a->algo = cand[i].algo;
        bool ok = false;
        if (probes_match(be, a, c, limit, &ok, err) != VESTA_OK) return VESTA_ERR_BACKEND;
        if (ok) {
            *own = true;
            return VESTA_OK;
        }
    }
    if (!(a->la && a->lb && a->lc)) { /* candidates() failed part way: layouts again */
        cuda_gemm_algo_dispose(a);
        *a = (cuda_gemm_algo){.n = limit, .in = sh->in, .out = sh->out, .f32 = sh->f32, .use_lt = true};
        if (!cuda_gemm_layouts_create(a))
            return vesta_error_set(err, VESTA_ERR_BACKEND, "cublasLt: layouts of the %s product", sh->name);
    }
    a->algo = ref->algo;
    return VESTA_OK;
}

/* Every band's kernel for one shape into kernels[CUDA_INV_BANDS]; *own: bands with their own. */
static vesta_status pick_shape(cuda_backend *be, const inv_shape *sh, cuda_gemm_algo *kernels, int *own,
                               vesta_error *err)
{
    inv_check c = {.sh = sh, .row = (size_t)sh->out * (sh->f32 ? 4 : 2)};
    c.keep = (int)(INV_HOST_BYTES / c.row);
    if (c.keep > sh->nref) c.keep = sh->nref;
    if (c.keep < 1) c.keep = 1;
    c.ref = malloc(c.row * (size_t)c.keep);
    c.probe = malloc(c.row * (size_t)c.keep);
    vesta_status st = VESTA_OK;
    *own = 0;
    if (!c.ref || !c.probe) {
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of host memory");
        goto done;
    }
    /* inputs in [-1, 1]: every bit of the products is exercised */
    CU(vk_fill_random(VK_BF16, sh->x, (size_t)sh->nref * sh->in, 1.0f, 0x5eed + (uint64_t)sh->out, be->stream));
    cuda_gemm_algo *ref = &kernels[CUDA_INV_BANDS - 1];
    if ((st = pick_reference(be, &c, ref, err)) != VESTA_OK) goto done;
    for (int b = 0; b < CUDA_INV_BANDS - 1; b++) {
        bool mine = false;
        const int limit = band_limit[b] < sh->nref ? band_limit[b] : sh->nref;
        if ((st = pick_band(be, &c, ref, limit, &kernels[b], &mine, err)) != VESTA_OK) goto done;
        *own += mine;
    }
    goto done;
fail:
    st = VESTA_ERR_BACKEND;
done:
    free(c.ref);
    free(c.probe);
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
    char note[256];
    int len = 0;
    for (int i = 0; i < CUDA_INV_SHAPES; i++) {
        int own = 0;
        be->num_inv = i + 1; /* disposed from here on, whatever happens */
        if (pick_shape(be, &shapes[i], be->inv[i], &own, err) != VESTA_OK) {
            vesta_error_prefix(err, "cuda: --batch-invariant");
            return VESTA_ERR_BACKEND;
        }
        len += snprintf(note + len, sizeof note - (size_t)len, "%s%s %d", i ? ", " : "", shapes[i].name, own);
    }
    CU(cudaMemsetAsync(be->aarena, 0, be->abytes, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    fprintf(stderr,
            "cuda: batch-invariant products: one reference kernel per shape, bit-identical at %d row counts and "
            "offsets; small-step bands (of %d) with a kernel of their own matching it: %s\n",
            NPROBES, CUDA_INV_BANDS - 1, note);
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

vesta_status cuda_gemm_invariant_run(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                                     bool f32out, vesta_error *err)
{
    for (int i = 0; i < be->num_inv; i++) {
        cuda_gemm_algo *k = be->inv[i];
        if (k->in != in || k->out != out || k->f32 != f32out) continue;
        int b = 0;
        while (b < CUDA_INV_BANDS - 1 && n > band_limit[b]) b++;
        if (!set_cols(&k[b], n))
            return vesta_error_set(err, VESTA_ERR_BACKEND, "cublasLt: layout of a %d-row product", n);
        return cuda_gemm_lt(be, &k[b], x, w, y, 0.0f, err);
    }
    return vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: batch-invariant product %d x %d x %d has no kernel", n, in,
                           out);
}

void cuda_gemm_invariant_dispose(cuda_backend *be)
{
    for (int i = 0; i < be->num_inv; i++)
        for (int b = 0; b < CUDA_INV_BANDS; b++) cuda_gemm_algo_dispose(&be->inv[i][b]);
    be->num_inv = 0;
}
