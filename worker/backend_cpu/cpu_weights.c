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
        for (size_t i = 0; i < n; i++)
            dst[i] = is_norm ? 1.0f : 0.0f;
        return;
    }
    float a = 1.0f / sqrtf((float)cols);
    for (size_t i = 0; i < n; i++)
        dst[i] = a * (2.0f * (float)(splitmix64(&s) >> 40) / (float)(1 << 24) - 1.0f);
}

/* Reads tensor `name` of shape [rows] (cols == 0) or [rows][cols] into dst. */
static vesta_status load(weight_loader *l, const char *name, int64_t rows, int64_t cols, bool is_norm,
                         float *dst, vesta_error *err)
{
    if (l->dummy) {
        fill_dummy(l, rows, cols, is_norm, dst);
        return VESTA_OK;
    }
    const vesta_tensor_info *t = vesta_model_file_find(l->mf, name);
    if (!t)
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "%s: tensor %s is missing", l->path, name);
    bool ok = cols == 0 ? (t->ndim == 1 && t->shape[0] == rows)
                        : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        if (cols == 0)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %s: expected shape [%lld]", l->path,
                                   name, (long long)rows);
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %s: expected shape [%lld, %lld]", l->path,
                               name, (long long)rows, (long long)cols);
    }
    vesta_status st = vesta_model_file_read_rows(l->mf, name, VESTA_DTYPE_F32, 0, rows, dst, err);
    if (st != VESTA_OK)
        vesta_error_prefix(err, "loading %s", name);
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

static void layout(cpu_weights *w, const vesta_model_config *c, arena_cursor *cur)
{
    size_t H = (size_t)c->hidden_size, V = (size_t)c->vocab_size, I = (size_t)c->intermediate_size;
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

static vesta_status load_layer(weight_loader *l, const vesta_model_config *c, int i, cpu_layer *L,
                               vesta_error *err)
{
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int64_t q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    char name[160];
    vesta_status st;
#define LOAD(suffix, rows, cols, norm, dst)                                               \
    do {                                                                                 \
        snprintf(name, sizeof name, "model.layers.%d.%s", i, suffix);                    \
        if ((st = load(l, name, rows, cols, norm, dst, err)) != VESTA_OK)                \
            return st;                                                                   \
    } while (0)
    LOAD("input_layernorm.weight", H, 0, true, L->attn_norm);
    LOAD("self_attn.q_proj.weight", q, H, false, L->wqkv);
    LOAD("self_attn.k_proj.weight", kv, H, false, L->wqkv + q * H);
    LOAD("self_attn.v_proj.weight", kv, H, false, L->wqkv + (q + kv) * H);
    if (L->bqkv) {
        LOAD("self_attn.q_proj.bias", q, 0, false, L->bqkv);
        LOAD("self_attn.k_proj.bias", kv, 0, false, L->bqkv + q);
        LOAD("self_attn.v_proj.bias", kv, 0, false, L->bqkv + q + kv);
    }
    LOAD("self_attn.o_proj.weight", H, q, false, L->wo);
    LOAD("post_attention_layernorm.weight", H, 0, true, L->mlp_norm);
    LOAD("mlp.gate_proj.weight", I, H, false, L->wgu);
    LOAD("mlp.up_proj.weight", I, H, false, L->wgu + I * H);
    LOAD("mlp.down_proj.weight", H, I, false, L->wdown);
#undef LOAD
    return VESTA_OK;
}

vesta_status cpu_weights_load(cpu_weights *w, const vesta_model_file *mf, const vesta_model_config *c,
                              const vesta_backend_options *opts, vesta_error *err)
{
    memset(w, 0, sizeof *w);
    weight_loader l = {.mf = mf, .path = vesta_model_file_path(mf), .dummy = opts->load_dummy,
                       .seed = opts->dummy_seed};
    w->layers = calloc((size_t)c->num_layers, sizeof *w->layers);
    if (!w->layers)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", l.path);
    arena_cursor count = {0};
    layout(w, c, &count);
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
    layout(w, c, &cur);
    int64_t H = c->hidden_size, V = c->vocab_size;
    vesta_status st = load(&l, "model.embed_tokens.weight", V, H, false, w->embed, err);
    if (st == VESTA_OK)
        st = load(&l, "model.norm.weight", H, 0, true, w->final_norm, err);
    if (st == VESTA_OK && !c->tie_word_embeddings)
        st = load(&l, "lm_head.weight", V, H, false, w->lm_head, err);
    for (int i = 0; st == VESTA_OK && i < c->num_layers; i++)
        st = load_layer(&l, c, i, &w->layers[i], err);
    if (st != VESTA_OK)
        cpu_weights_free(w);
    return st;
}

void cpu_weights_free(cpu_weights *w)
{
    if (!w)
        return;
    free(w->arena);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
