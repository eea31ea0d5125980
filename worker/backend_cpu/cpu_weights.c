/* Loading the weights: every tensor is read once, dequantized to float32, into one arena laid out
 * for the forward pass (q/k/v and gate/up stacked). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

typedef struct weight_loader {
    const vesta_model_file *mf;
    const char *path;
    bool dummy;
    uint64_t seed;
    uint64_t counter; /* dummy tensors get distinct streams */
} weight_loader;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Dummy weights (vLLM's --load-format dummy): matrices uniform in +-1/sqrt(in), norms 1, biases 0,
 * so that activations stay in a realistic range for benchmarks. */
static void fill_dummy(weight_loader *l, int64_t rows, int64_t cols, bool is_norm, float *dst)
{
    uint64_t s = l->seed ^ (0xD1B54A32D192ED03ull * ++l->counter);
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    if (cols == 0) {
        for (size_t i = 0; i < n; i++) dst[i] = is_norm ? 1.0f : 0.0f;
        return;
    }
    float a = 1.0f / sqrtf((float)cols);
    for (size_t i = 0; i < n; i++) dst[i] = a * (2.0f * (float)(splitmix64(&s) >> 40) / (float)(1 << 24) - 1.0f);
}

/* Rows or columns [b, e) of a tensor. */
static vesta_tp_slice rows_of(int64_t b, int64_t e) { return (vesta_tp_slice){VESTA_TP_SLICE_ROWS, b, e}; }
static vesta_tp_slice cols_of(int64_t b, int64_t e) { return (vesta_tp_slice){VESTA_TP_SLICE_COLS, b, e}; }

/* Dummy weights are generated whole and then sliced, so that every tensor-parallel layout sees
 * the same model. */
static vesta_status load_dummy_slice(weight_loader *l, int64_t rows, int64_t cols, bool is_norm, vesta_tp_slice sl,
                                     float *dst, vesta_error *err)
{
    if (sl.kind == VESTA_TP_SLICE_ALL) {
        fill_dummy(l, rows, cols, is_norm, dst);
        return VESTA_OK;
    }
    int64_t C = cols ? cols : 1;
    float *full = malloc(sizeof(float) * (size_t)rows * (size_t)C);
    if (!full) return vesta_error_set(err, VESTA_ERR_NOMEM, "dummy weights: out of memory");
    fill_dummy(l, rows, cols, is_norm, full);
    if (sl.kind == VESTA_TP_SLICE_ROWS)
        memcpy(dst, full + sl.begin * C, sizeof(float) * (size_t)((sl.end - sl.begin) * C));
    else
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + r * (sl.end - sl.begin), full + r * C + sl.begin, sizeof(float) * (size_t)(sl.end - sl.begin));
    free(full);
    return VESTA_OK;
}

/* Reads (this rank's slice of) tensor `name` of shape [rows] (cols == 0) or [rows][cols] into dst. */
static vesta_status load(weight_loader *l, const char *name, int64_t rows, int64_t cols, bool is_norm,
                         vesta_tp_slice sl, float *dst, vesta_error *err)
{
    if (l->dummy) return load_dummy_slice(l, rows, cols, is_norm, sl, dst, err);
    const vesta_tensor_info *t = vesta_model_file_find(l->mf, name);
    if (!t) return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "%s: tensor %s is missing", l->path, name);
    bool ok = cols == 0 ? (t->ndim == 1 && t->shape[0] == rows)
                        : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        if (cols == 0)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %s: expected shape [%lld]", l->path, name,
                                   (long long)rows);
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %s: expected shape [%lld, %lld]", l->path, name,
                               (long long)rows, (long long)cols);
    }
    vesta_status st;
    if (sl.kind == VESTA_TP_SLICE_COLS)
        st = vesta_model_file_read_cols(l->mf, name, VESTA_DTYPE_F32, sl.begin, sl.end, dst, err);
    else if (sl.kind == VESTA_TP_SLICE_ROWS)
        st = vesta_model_file_read_rows(l->mf, name, VESTA_DTYPE_F32, sl.begin, sl.end, dst, err);
    else
        st = vesta_model_file_read_rows(l->mf, name, VESTA_DTYPE_F32, 0, rows, dst, err);
    if (st != VESTA_OK) vesta_error_prefix(err, "loading %s", name);
    return st;
}

/* Hands out consecutive pieces of the arena (64-byte aligned). With base == NULL it only counts,
 * so the same code sizes and fills the arena and the two cannot disagree. */
typedef struct arena_cursor {
    float *base;
    size_t used;
    bool overflow;
} arena_cursor;

static float *take(arena_cursor *c, size_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    size_t r;
    /* Products of two dimensions (each < 2^31) fit in 64 bits; only the running sum can wrap. */
    if (__builtin_add_overflow(n, (size_t)15, &r) || __builtin_add_overflow(c->used, r & ~(size_t)15, &c->used))
        c->overflow = true;
    return p;
}

static void layout(cpu_weights *w, const vesta_model_config *c, const cpu_shard *sh, arena_cursor *cur)
{
    size_t H = (size_t)c->hidden_size, V = (size_t)sh->vocab_rows, I = (size_t)c->intermediate_size;
    size_t q = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t kv = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    size_t qkv = q + 2 * kv;
    w->embed = take(cur, V * H);
    w->final_norm = take(cur, H);
    w->lm_head = c->tie_word_embeddings ? w->embed : take(cur, V * H);
    for (int i = 0; i < c->num_layers; i++) {
        cpu_layer *L = &w->layers[i];
        L->attn_norm = take(cur, H);
        L->wqkv = take(cur, qkv * H);
        L->bqkv = c->attention_bias ? take(cur, qkv) : NULL;
        L->wo = take(cur, H * q);
        L->mlp_norm = take(cur, H);
        L->wgu = take(cur, 2 * I * H);
        L->wdown = take(cur, H * I);
    }
}

/* Megatron-style split: q/k/v and gate/up by output rows (this rank's heads / intermediate
 * columns), o_proj and down_proj by input columns; norms whole. */
static vesta_status load_layer(weight_loader *l, const vesta_model_config *full, const vesta_model_config *c,
                               const cpu_shard *sh, int i, cpu_layer *L, vesta_error *err)
{
    const int64_t D = c->head_dim, H = c->hidden_size, I = c->intermediate_size, FI = full->intermediate_size;
    const int64_t q = (int64_t)c->num_heads * D, kv = (int64_t)c->num_kv_heads * D;
    const int64_t FQ = (int64_t)full->num_heads * D, FKV = (int64_t)full->num_kv_heads * D;
    const vesta_tp_slice qs = rows_of(sh->head0 * D, sh->head0 * D + q);
    const vesta_tp_slice ks = rows_of(sh->kv_head0 * D, sh->kv_head0 * D + kv);
    const vesta_tp_slice is = rows_of(sh->inter0, sh->inter0 + I);
    const bool whole = sh->size == 1;
    char name[160];
    vesta_status st;
#define LOAD(suffix, rows, cols, norm, sl, dst)                                                                        \
    do {                                                                                                               \
        snprintf(name, sizeof name, "model.layers.%d.%s", i, suffix);                                                  \
        if ((st = load(l, name, rows, cols, norm, whole ? VESTA_TP_WHOLE : (sl), dst, err)) != VESTA_OK) return st;    \
    } while (0)
    LOAD("input_layernorm.weight", H, 0, true, VESTA_TP_WHOLE, L->attn_norm);
    LOAD("self_attn.q_proj.weight", FQ, H, false, qs, L->wqkv);
    LOAD("self_attn.k_proj.weight", FKV, H, false, ks, L->wqkv + q * H);
    LOAD("self_attn.v_proj.weight", FKV, H, false, ks, L->wqkv + (q + kv) * H);
    if (L->bqkv) {
        LOAD("self_attn.q_proj.bias", FQ, 0, false, qs, L->bqkv);
        LOAD("self_attn.k_proj.bias", FKV, 0, false, ks, L->bqkv + q);
        LOAD("self_attn.v_proj.bias", FKV, 0, false, ks, L->bqkv + q + kv);
    }
    LOAD("self_attn.o_proj.weight", H, FQ, false, cols_of(qs.begin, qs.end), L->wo);
    LOAD("post_attention_layernorm.weight", H, 0, true, VESTA_TP_WHOLE, L->mlp_norm);
    LOAD("mlp.gate_proj.weight", FI, H, false, is, L->wgu);
    LOAD("mlp.up_proj.weight", FI, H, false, is, L->wgu + I * H);
    LOAD("mlp.down_proj.weight", H, FI, false, cols_of(is.begin, is.end), L->wdown);
#undef LOAD
    return VESTA_OK;
}

/* The vocabulary slice: rows [vocab0, vocab0 + vocab_valid) of embed / lm_head, zero padding after. */
static vesta_status load_vocab(weight_loader *l, const char *name, const vesta_model_config *full, const cpu_shard *sh,
                               float *dst, vesta_error *err)
{
    const int64_t H = full->hidden_size;
    vesta_tp_slice sl = sh->size == 1 ? VESTA_TP_WHOLE : rows_of(sh->vocab0, sh->vocab0 + sh->vocab_valid);
    if (sh->vocab_valid > 0) {
        vesta_status st = load(l, name, full->vocab_size, H, false, sl, dst, err);
        if (st != VESTA_OK) return st;
    } else if (l->dummy) {
        l->counter++; /* keep the dummy streams of later tensors the same on every rank */
    }
    memset(dst + (size_t)sh->vocab_valid * (size_t)H, 0,
           sizeof(float) * (size_t)(sh->vocab_rows - sh->vocab_valid) * (size_t)H);
    return VESTA_OK;
}

vesta_status cpu_weights_load(cpu_weights *w, const vesta_model_file *mf, const vesta_model_config *full,
                              const vesta_model_config *c, const cpu_shard *sh, const vesta_backend_options *opts,
                              vesta_error *err)
{
    memset(w, 0, sizeof *w);
    weight_loader l = {
        .mf = mf, .path = vesta_model_file_path(mf), .dummy = opts->load_dummy, .seed = opts->dummy_seed};
    w->layers = calloc((size_t)c->num_layers, sizeof *w->layers);
    if (!w->layers) return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", l.path);
    arena_cursor count = {0};
    layout(w, c, sh, &count);
    size_t n = count.used, bytes;
    if (count.overflow || cpu_mul_size(n, sizeof(float), &bytes)) {
        cpu_weights_free(w);
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "%s: model dimensions overflow", l.path);
    }
    w->arena = aligned_alloc(64, bytes);
    if (!w->arena) {
        cpu_weights_free(w);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: cannot allocate %zu MiB of float32 weights", l.path,
                               bytes >> 20);
    }
    w->arena_floats = n;
    arena_cursor cur = {.base = w->arena};
    layout(w, c, sh, &cur);
    int64_t H = c->hidden_size;
    vesta_status st = load_vocab(&l, "model.embed_tokens.weight", full, sh, w->embed, err);
    if (st == VESTA_OK) st = load(&l, "model.norm.weight", H, 0, true, VESTA_TP_WHOLE, w->final_norm, err);
    if (st == VESTA_OK && !c->tie_word_embeddings) st = load_vocab(&l, "lm_head.weight", full, sh, w->lm_head, err);
    for (int i = 0; st == VESTA_OK && i < c->num_layers; i++) st = load_layer(&l, full, c, sh, i, &w->layers[i], err);
    if (st != VESTA_OK) cpu_weights_free(w);
    return st;
}

void cpu_weights_free(cpu_weights *w)
{
    if (!w) return;
    free(w->arena);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
