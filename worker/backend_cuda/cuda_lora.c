/* Multi-LoRA on the CUDA backend. Adapters are uploaded at start-up (before the KV plan, so they
 * come out of the same memory budget) in bf16 with the scaling folded into B. Per layer the
 * projections that share an input form a group (q|k|v, o, gate|up, down), and an adapter's A rows
 * of a group are stored stacked, [targets][rank][in], so that one product computes A x for the
 * whole group. Two paths compute y += B (A x):
 *   - kernels (vk_lora, kernels/lora.cu): per-row adapters read from the step's metadata, so a
 *     decode graph captured once serves any mix of adapters; decode steps and small steps;
 *   - products (cuBLAS): eager steps of CUDA_LORA_GEMM_MIN_N rows or more (prefill chunks): for
 *     each adapter in the step, over its rows (contiguous: the engine orders a step by adapter),
 *     t = x A^T on tensor cores, then y += t B^T with beta = 1 for each of its projections. Rows
 *     that are not contiguous (another engine) take all rows, the others zeroed (vk_lora_mask).
 *     Measured against the kernels on prefill steps in docs/benchmarks.md (session 18).
 * Every step uploads each token's adapter slot (-1: the base model) with its other metadata. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

static const int group_first[CUDA_LORA_GROUPS] = {VESTA_LORA_Q, VESTA_LORA_O, VESTA_LORA_GATE, VESTA_LORA_DOWN};
static const int group_count[CUDA_LORA_GROUPS] = {3, 1, 2, 1};

static size_t tab_index(int l, int t, int slot)
{
    return ((size_t)l * VESTA_LORA_NUM_TARGETS + (size_t)t) * VESTA_LORA_MAX_ADAPTERS + (size_t)slot;
}

static int group_of(int first)
{
    for (int g = 0; g < CUDA_LORA_GROUPS; g++)
        if (group_first[g] == first) return g;
    return -1;
}

/* Elements of the adapter's device copy: per layer and group its stacked A (when it targets any
 * projection of the group), then B of each projection it targets. */
static size_t packed_elems(const cuda_backend *be, const vesta_lora_adapter *ad)
{
    size_t n = 0;
    for (int l = 0; l < be->L; l++)
        for (int g = 0; g < CUDA_LORA_GROUPS; g++) {
            bool any = false;
            for (int t = group_first[g]; t < group_first[g] + group_count[g]; t++) {
                int in, out;
                vesta_lora_target_dims(&be->base.config, (vesta_lora_target)t, &in, &out);
                if (ad->a[l][t]) n += (size_t)out * ad->rank, any = true;
            }
            int in, out;
            vesta_lora_target_dims(&be->base.config, (vesta_lora_target)group_first[g], &in, &out);
            if (any) n += (size_t)group_count[g] * ad->rank * in;
        }
    return n;
}

/* Packs the adapter in that layout (bf16, zeros for the A rows of projections it leaves alone)
 * and fills its table entries and stacked-A pointers; dev is the device copy's address. */
static void pack(cuda_backend *be, int slot, const vesta_lora_adapter *ad, uint16_t *host, const char *dev)
{
    size_t off = 0;
    const int r = ad->rank;
    for (int l = 0; l < be->L; l++)
        for (int g = 0; g < CUDA_LORA_GROUPS; g++) {
            const int t0 = group_first[g], tn = group_count[g];
            bool any = false;
            for (int t = t0; t < t0 + tn; t++) any |= ad->a[l][t] != NULL;
            if (!any) continue;
            int in, out;
            vesta_lora_target_dims(&be->base.config, (vesta_lora_target)t0, &in, &out);
            const size_t a_off = off;
            be->lora_agrp[((size_t)slot * be->L + l) * CUDA_LORA_GROUPS + g] = (void *)(dev + a_off * 2);
            for (int t = t0; t < t0 + tn; t++, off += (size_t)r * in) {
                if (ad->a[l][t])
                    vesta_dtype_from_f32(VESTA_DTYPE_BF16, ad->a[l][t], (int64_t)r * in, host + off);
                else
                    memset(host + off, 0, (size_t)r * in * 2);
            }
            for (int t = t0; t < t0 + tn; t++) {
                if (!ad->a[l][t]) continue;
                vesta_lora_target_dims(&be->base.config, (vesta_lora_target)t, &in, &out);
                vesta_dtype_from_f32(VESTA_DTYPE_BF16, ad->b[l][t], (int64_t)out * r, host + off);
                vk_lora_slot *e = &be->lora_tab_host[tab_index(l, t, slot)];
                e->a = dev + (a_off + (size_t)(t - t0) * r * in) * 2;
                e->b = dev + off * 2;
                e->rank = r;
                be->lora_any[l * VESTA_LORA_NUM_TARGETS + t] = true;
                off += (size_t)out * r;
            }
        }
}

static vesta_status upload(cuda_backend *be, int slot, const vesta_lora_adapter *ad, vesta_error *err)
{
    const size_t n = packed_elems(be, ad);
    uint16_t *host = malloc(n * 2);
    if (!host) return vesta_error_set(err, VESTA_ERR_NOMEM, "adapter '%s': out of host memory", ad->name);
    cudaError_t ce = cudaMalloc(&be->lora_mem[slot], n * 2);
    if (ce == cudaSuccess) {
        pack(be, slot, ad, host, be->lora_mem[slot]);
        ce = cudaMemcpy(be->lora_mem[slot], host, n * 2, cudaMemcpyHostToDevice);
    }
    free(host);
    if (ce != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "adapter '%s': %.1f MiB on the GPU: %s", ad->name,
                               n * 2 / 1048576.0, cudaGetErrorString(ce));
    be->lora_rank[slot] = ad->rank;
    return VESTA_OK;
}

/* Start-up: the tables, and both paths' workspaces sized for the largest rank so far. */
static vesta_status reserve(cuda_backend *be, int rank, vesta_error *err)
{
    const size_t n = (size_t)be->L * VESTA_LORA_NUM_TARGETS * VESTA_LORA_MAX_ADAPTERS;
    if (!be->lora_tab_host) {
        be->lora_tab_host = calloc(n, sizeof(vk_lora_slot));
        be->lora_any = calloc((size_t)be->L * VESTA_LORA_NUM_TARGETS, sizeof(bool));
        be->lora_agrp = calloc((size_t)VESTA_LORA_MAX_ADAPTERS * be->L * CUDA_LORA_GROUPS, sizeof(void *));
        if (!be->lora_tab_host || !be->lora_any || !be->lora_agrp)
            return vesta_error_set(err, VESTA_ERR_NOMEM, "lora: out of memory");
        CU(cudaMalloc((void **)&be->lora_tab, n * sizeof(vk_lora_slot)));
    }
    if (rank > be->lora_rank_max) {
        CU(cudaFree(be->lora_t));
        CU(cudaFree(be->lora_tg));
        be->lora_t = NULL, be->lora_tg = NULL;
        CU(cudaMalloc((void **)&be->lora_t,
                      vk_lora_ws_floats(be->max_tokens, rank, be->batch_invariant) * sizeof(float)));
        CU(cudaMalloc(&be->lora_tg, (size_t)be->max_tokens * 3 * (size_t)rank * 2));
        be->lora_rank_max = rank;
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_NOMEM;
}

vesta_status cuda_lora_add(vesta_backend *base, int slot, const vesta_lora_adapter *ad, vesta_error *err)
{
    cuda_backend *be = (cuda_backend *)base;
    if (be->comm)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "LoRA adapters with tensor parallelism are not supported (adapter '%s')", ad->name);
    if (be->kv || slot != be->num_loras || slot >= VESTA_LORA_MAX_ADAPTERS || ad->num_layers != be->L ||
        ad->rank > VK_LORA_MAX_RANK)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "lora_add: adapter '%s' as slot %d (%d loaded, %d layers)",
                               ad->name, slot, be->num_loras, ad->num_layers);
    for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++) {
        int in, out;
        vesta_lora_target_dims(&be->base.config, (vesta_lora_target)t, &in, &out);
        if (in % 8 || out % 8) /* every matrix 16-byte aligned in the upload, rows read 8 at a time */
            return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                                   "adapter '%s': %s is %d x %d (the CUDA backend needs multiples of 8)", ad->name,
                                   vesta_lora_target_name((vesta_lora_target)t), in, out);
    }
    CU(cudaSetDevice(be->dev));
    if (reserve(be, ad->rank, err) != VESTA_OK || upload(be, slot, ad, err) != VESTA_OK) return VESTA_ERR_NOMEM;
    const size_t n = (size_t)be->L * VESTA_LORA_NUM_TARGETS * VESTA_LORA_MAX_ADAPTERS;
    CU(cudaMemcpy(be->lora_tab, be->lora_tab_host, n * sizeof(vk_lora_slot), cudaMemcpyHostToDevice));
    be->num_loras++;
    fprintf(stderr, "cuda: LoRA adapter '%s' (rank %d) as slot %d: %.1f MiB\n", ad->name, ad->rank, slot,
            packed_elems(be, ad) * 2 / 1048576.0);
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

bool cuda_lora_rows(cuda_backend *be, const vesta_batch *b, int rows)
{
    bool any = false;
    for (int i = 0; i < b->num_seqs; i++) {
        const int32_t slot = b->lora_slots ? b->lora_slots[i] : -1;
        for (int t = b->query_start[i]; t < b->query_start[i + 1]; t++) be->hm.lora_rows[t] = slot;
        any |= slot >= 0;
    }
    for (int t = b->num_tokens; t < rows; t++) be->hm.lora_rows[t] = -1; /* graph padding */
    return any;
}

void cuda_lora_plan(cuda_backend *be, const vesta_batch *b, bool graph)
{
    be->lora_gemm = be->lora_step && !graph && !be->batch_invariant && b->num_tokens >= CUDA_LORA_GEMM_MIN_N;
    be->num_lora_active = 0;
    int rows[VESTA_LORA_MAX_ADAPTERS] = {0};
    for (int i = 0; be->lora_gemm && i < b->num_seqs; i++) {
        const int s = b->lora_slots[i], t0 = b->query_start[i], t1 = b->query_start[i + 1];
        if (s < 0) continue;
        int k = 0;
        while (k < be->num_lora_active && be->lora_active[k] != s) k++;
        if (k == be->num_lora_active) {
            be->lora_active[be->num_lora_active++] = s;
            be->lora_r0[k] = t0, be->lora_r1[k] = t1;
        }
        be->lora_r0[k] = t0 < be->lora_r0[k] ? t0 : be->lora_r0[k];
        be->lora_r1[k] = t1 > be->lora_r1[k] ? t1 : be->lora_r1[k];
        rows[k] += t1 - t0;
    }
    for (int k = 0; k < be->num_lora_active; k++) {
        be->lora_masked[k] = rows[k] != be->lora_r1[k] - be->lora_r0[k];
        if (be->lora_masked[k]) be->lora_r0[k] = 0, be->lora_r1[k] = b->num_tokens;
    }
}

/* The products path for one group: per adapter of the step, over its rows [r0, r1): t = x A_grp^T
 * (bf16, PEFT's rounding of A x; rows of other adapters inside the range zeroed), then
 * y_t += t_t B_t^T for each projection t it targets. */
static vesta_status apply_gemm(cuda_backend *be, int l, int g, const void *x, void *y, int ldy, vesta_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    int in, out;
    vesta_lora_target_dims(&be->base.config, (vesta_lora_target)group_first[g], &in, &out);
    for (int k = 0; k < be->num_lora_active; k++) {
        const int s = be->lora_active[k], r = be->lora_rank[s], K = group_count[g] * r;
        const int r0 = be->lora_r0[k], n = be->lora_r1[k] - r0;
        const void *agrp = be->lora_agrp[((size_t)s * be->L + l) * CUDA_LORA_GROUPS + g];
        if (!agrp) continue;
        const char *xr = (const char *)x + (size_t)r0 * in * 2;
        char *yr = (char *)y + (size_t)r0 * ldy * 2;
        CB(cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, K, n, in, &one, agrp, CUDA_R_16BF, in, xr, CUDA_R_16BF, in,
                        &zero, be->lora_tg, CUDA_R_16BF, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        if (be->lora_masked[k]) CU(vk_lora_mask(VK_BF16, be->lora_tg, K, n, be->m.lora_rows + r0, s, be->stream));
        int off = 0;
        for (int t = group_first[g]; t < group_first[g] + group_count[g]; t++) {
            vesta_lora_target_dims(&be->base.config, (vesta_lora_target)t, &in, &out);
            const vk_lora_slot *e = &be->lora_tab_host[tab_index(l, t, s)];
            const int tl = t - group_first[g];
            if (e->b)
                CB(cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, r, &one, e->b, CUDA_R_16BF, r,
                                (const char *)be->lora_tg + (size_t)tl * r * 2, CUDA_R_16BF, K, &one,
                                yr + (size_t)off * 2, CUDA_R_16BF, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            off += out;
        }
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

vesta_status cuda_lora_apply(cuda_backend *be, int l, vesta_lora_target first, int count, const void *x, void *y,
                             int ldy, int n, vesta_error *err)
{
    if (!be->lora_step) return VESTA_OK;
    if (be->lora_gemm) return apply_gemm(be, l, group_of(first), x, y, ldy, err);
    vk_lora_targets tg = {.num = 0};
    int in = 0, off = 0;
    for (int t = (int)first; t < (int)first + count; t++) { /* the targets' columns follow each other in y */
        int out;
        vesta_lora_target_dims(&be->base.config, (vesta_lora_target)t, &in, &out);
        if (be->lora_any[l * VESTA_LORA_NUM_TARGETS + t]) {
            tg.tab[tg.num] = be->lora_tab + tab_index(l, t, 0);
            tg.y[tg.num] = (char *)y + (size_t)off * 2;
            tg.out[tg.num++] = out;
        }
        off += out;
    }
    CU(vk_lora(VK_BF16, &tg, ldy, x, in, be->m.lora_rows, n, be->lora_t, be->lora_rank_max, be->batch_invariant,
               be->kernel_pdl, be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

void cuda_lora_free(cuda_backend *be)
{
    for (int i = 0; i < be->num_loras; i++) cudaFree(be->lora_mem[i]);
    cudaFree(be->lora_tab);
    cudaFree(be->lora_t);
    cudaFree(be->lora_tg);
    free(be->lora_tab_host);
    free(be->lora_any);
    free(be->lora_agrp);
}
