/* Opening a model: a Hugging Face directory (config.json, model.safetensors or a sharded
 * model.safetensors.index.json, or no weights at all for dummy loading) or one GGUF file.
 * Every tensor is entered in one table under its Hugging Face name and shape. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_internal.h"

const char *vesta_dtype_name(vesta_dtype t)
{
    static const char *names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "I32", "I64"};
    if ((unsigned)t >= VESTA_DTYPE_COUNT)
        return "?";
    return names[t];
}

uint64_t vesta_model_row_bytes(vesta_dtype t, int64_t n)
{
    if (n < 0)
        return 0;
    uint64_t u = (uint64_t)n;
    switch (t) {
    case VESTA_DTYPE_F32:
    case VESTA_DTYPE_I32: return u * 4;
    case VESTA_DTYPE_F16:
    case VESTA_DTYPE_BF16: return u * 2;
    case VESTA_DTYPE_I64: return u * 8;
    case VESTA_DTYPE_Q8_0: return u % 32 ? 0 : u / 32 * 34;
    case VESTA_DTYPE_Q4_0: return u % 32 ? 0 : u / 32 * 18;
    case VESTA_DTYPE_Q4_1: return u % 32 ? 0 : u / 32 * 20;
    default: return 0;
    }
}

/* ---- the tensor table ---- */

static vesta_status add_tensor(vesta_model_file *mf, size_t *cap, mf_tensor *t, vesta_error *err)
{
    if (mf->n_tensors == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        mf_tensor *p = realloc(mf->tensors, ncap * sizeof(*p));
        if (p == NULL) {
            free((char *)t->info.name);
            return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", mf->path);
        }
        mf->tensors = p;
        *cap = ncap;
    }
    mf->tensors[mf->n_tensors++] = *t;
    return VESTA_OK;
}

static vesta_status build_index(vesta_model_file *mf, vesta_error *err)
{
    if (vesta_fmt_index_init(&mf->index, mf->n_tensors) != 0)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", mf->path);
    for (size_t i = 0; i < mf->n_tensors; i++) {
        const char *n = mf->tensors[i].info.name;
        if (!vesta_fmt_index_insert(&mf->index, n, strlen(n), i))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s' appears twice",
                                   mf->tensors[i].file, n);
    }
    return VESTA_OK;
}

/* storage rows x row length from the HF shape; 1-D tensors are one storage row */
static void set_rows(mf_tensor *t)
{
    const vesta_tensor_info *i = &t->info;
    t->row_len = i->ndim ? i->shape[i->ndim - 1] : 1;
    t->n_rows = 1;
    for (int d = 0; d + 1 < i->ndim; d++)
        t->n_rows *= i->shape[d];
}

/* ---- GGUF ---- */

static bool gguf_dtype(uint32_t ggml_type, vesta_dtype *out)
{
    switch (ggml_type) {
    case 0: *out = VESTA_DTYPE_F32; return true;
    case 1: *out = VESTA_DTYPE_F16; return true;
    case 2: *out = VESTA_DTYPE_Q4_0; return true;
    case 3: *out = VESTA_DTYPE_Q4_1; return true;
    case 8: *out = VESTA_DTYPE_Q8_0; return true;
    case 26: *out = VESTA_DTYPE_I32; return true;
    case 27: *out = VESTA_DTYPE_I64; return true;
    case 30: *out = VESTA_DTYPE_BF16; return true;
    default: return false;
    }
}

/* GGUF name -> Hugging Face name (llama.cpp's tensor naming); unknown names are kept. */
static char *hf_name(const vesta_gguf_str *g)
{
    static const struct {
        const char *gguf, *hf;
    } top[] = {{"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}},
      layer[] = {{"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
                 {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
                 {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
                 {"ffn_down", "mlp.down_proj"},      {"attn_norm", "input_layernorm"},
                 {"ffn_norm", "post_attention_layernorm"}};
    char name[256];
    size_t len = g->len < sizeof(name) - 1 ? (size_t)g->len : sizeof(name) - 1;
    memcpy(name, g->ptr, len);
    name[len] = '\0';
    char out[320];
    const char *dot = strrchr(name, '.');
    const char *suffix = dot ? dot + 1 : "";
    size_t stem = dot ? (size_t)(dot - name) : len;
    if (dot && (strcmp(suffix, "weight") == 0 || strcmp(suffix, "bias") == 0)) {
        for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
            if (strlen(top[i].gguf) == stem && memcmp(name, top[i].gguf, stem) == 0) {
                snprintf(out, sizeof(out), "%s.%s", top[i].hf, suffix);
                return strdup(out);
            }
        /* "blk.<N>." with N at most 6 digits (sscanf would overflow silently) */
        unsigned layer_no = 0;
        int pos = 0;
        if (strncmp(name, "blk.", 4) == 0) {
            int d = 4;
            while (name[d] >= '0' && name[d] <= '9' && d < 10)
                layer_no = layer_no * 10 + (unsigned)(name[d++] - '0');
            if (d > 4 && name[d] == '.')
                pos = d + 1;
        }
        if (pos > 0 && (size_t)pos < stem) {
            for (size_t i = 0; i < sizeof(layer) / sizeof(layer[0]); i++)
                if (strlen(layer[i].gguf) == stem - (size_t)pos &&
                    memcmp(name + pos, layer[i].gguf, stem - (size_t)pos) == 0) {
                    snprintf(out, sizeof(out), "model.layers.%u.%s.%s", layer_no, layer[i].hf, suffix);
                    return strdup(out);
                }
        }
    }
    return strdup(name);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static vesta_status open_gguf(vesta_model_file *mf, vesta_error *err)
{
    mf->gguf = vesta_gguf_open(mf->path, err);
    if (mf->gguf == NULL)
        return err ? err->code : VESTA_ERR_FORMAT;
    vesta_status st = vesta_model_config_from_gguf(mf->gguf, &mf->config, err);
    if (st != VESTA_OK)
        return st;
    /* llama.cpp's converter permutes Q/K rows of llama-family models for its rotary layout. */
    bool permuted = strcmp(mf->config.arch, "qwen2") != 0;
    size_t cap = 0;
    uint64_t n = vesta_gguf_tensor_count(mf->gguf);
    for (uint64_t i = 0; i < n; i++) {
        const vesta_gguf_tensor *g = vesta_gguf_tensor_at(mf->gguf, i);
        mf_tensor t = {.file = mf->path};
        if (memchr(g->name.ptr, '\0', g->name.len) != NULL || g->name.len > 200)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %llu has a malformed name",
                                   mf->path, (unsigned long long)i);
        if (!gguf_dtype(g->ggml_type, &t.info.dtype))
            return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                                   "%s: tensor '%.*s': ggml type %u unsupported (supported: F32, F16, "
                                   "BF16, Q8_0, Q4_0, Q4_1, I32, I64)",
                                   mf->path, (int)g->name.len, g->name.ptr, g->ggml_type);
        t.info.name = hf_name(&g->name);
        if (t.info.name == NULL)
            return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", mf->path);
        t.info.ndim = (int)g->n_dims;
        for (uint32_t d = 0; d < g->n_dims; d++)
            t.info.shape[d] = (int64_t)g->ne[g->n_dims - 1 - d];
        t.info.data = g->data;
        t.info.nbytes = (size_t)g->nbytes;
        set_rows(&t);
        if (permuted && (ends_with(t.info.name, "self_attn.q_proj.weight") ||
                         ends_with(t.info.name, "self_attn.q_proj.bias")))
            t.permute_heads = mf->config.num_heads;
        if (permuted && (ends_with(t.info.name, "self_attn.k_proj.weight") ||
                         ends_with(t.info.name, "self_attn.k_proj.bias")))
            t.permute_heads = mf->config.num_kv_heads;
        if (t.permute_heads && t.info.shape[0] % (2 * t.permute_heads) != 0) {
            vesta_error_set(err, VESTA_ERR_FORMAT,
                            "%s: tensor '%s': %lld rows do not split into %d rotary heads", mf->path,
                            t.info.name, (long long)t.info.shape[0], t.permute_heads);
            free((char *)t.info.name);
            return VESTA_ERR_FORMAT;
        }
        if ((st = add_tensor(mf, &cap, &t, err)) != VESTA_OK)
            return st;
    }
    return build_index(mf, err);
}

/* ---- Hugging Face directory ---- */

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static vesta_status st_dtype(const vesta_safetensors_tensor *s, const char *file, vesta_dtype *out,
                             vesta_error *err)
{
    static const struct {
        const char *name;
        vesta_dtype t;
    } map[] = {{"F32", VESTA_DTYPE_F32},
               {"F16", VESTA_DTYPE_F16},
               {"BF16", VESTA_DTYPE_BF16},
               {"I32", VESTA_DTYPE_I32},
               {"I64", VESTA_DTYPE_I64}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(s->dtype, map[i].name) == 0) {
            *out = map[i].t;
            return VESTA_OK;
        }
    return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                           "%s: tensor '%s': dtype %s unsupported (supported: F32, F16, BF16, I32, I64)",
                           file, s->name, s->dtype);
}

static vesta_status add_shard(vesta_model_file *mf, const char *path, size_t *cap, vesta_error *err)
{
    vesta_safetensors **p = realloc(mf->shards, (mf->n_shards + 1) * sizeof(*p));
    if (p == NULL)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", path);
    mf->shards = p;
    vesta_safetensors *s = vesta_safetensors_open(path, err);
    if (s == NULL)
        return err ? err->code : VESTA_ERR_FORMAT;
    mf->shards[mf->n_shards++] = s;
    const char *file = vesta_safetensors_path(s);
    for (size_t i = 0; i < vesta_safetensors_tensor_count(s); i++) {
        const vesta_safetensors_tensor *x = vesta_safetensors_tensor_at(s, i);
        mf_tensor t = {.file = file};
        vesta_status st = st_dtype(x, file, &t.info.dtype, err);
        if (st != VESTA_OK)
            return st;
        if (x->ndim > 4)
            return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (max 4)",
                                   file, x->name, x->ndim);
        t.info.name = strdup(x->name);
        if (t.info.name == NULL)
            return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", file);
        t.info.ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++)
            t.info.shape[d] = x->shape[d];
        t.info.data = x->data;
        t.info.nbytes = (size_t)x->nbytes;
        set_rows(&t);
        if ((st = add_tensor(mf, cap, &t, err)) != VESTA_OK)
            return st;
    }
    return VESTA_OK;
}

/* model.safetensors.index.json: opens every shard its weight_map names and checks that each
 * listed tensor is in the shard the map says. */
static vesta_status open_sharded(vesta_model_file *mf, const char *index_path, size_t *cap,
                                 vesta_error *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: %s (line %d)", index_path, jerr.text,
                               jerr.line);
    vesta_status st = VESTA_OK;
    json_t *wm = json_object_get(root, "weight_map");
    const char *name;
    json_t *v;
    if (!json_is_object(wm)) {
        st = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: missing object 'weight_map'", index_path);
        goto out;
    }
    json_object_foreach(wm, name, v)
    {
        const char *shard = json_string_value(v);
        if (shard == NULL || shard[0] == '\0' || strchr(shard, '/') != NULL || shard[0] == '.') {
            st = vesta_error_set(err, VESTA_ERR_FORMAT,
                                 "%s: weight_map['%s'] must be a plain file name in the directory",
                                 index_path, name);
            goto out;
        }
        bool seen = false;
        for (size_t i = 0; i < mf->n_shards && !seen; i++) {
            const char *p = vesta_safetensors_path(mf->shards[i]);
            const char *base = strrchr(p, '/');
            seen = strcmp(base ? base + 1 : p, shard) == 0;
        }
        if (!seen) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", mf->path, shard);
            if ((st = add_shard(mf, path, cap, err)) != VESTA_OK)
                goto out;
        }
    }
    json_object_foreach(wm, name, v)
    {
        const char *shard = json_string_value(v);
        bool found = false;
        for (size_t i = 0; i < mf->n_shards && !found; i++) {
            const char *p = vesta_safetensors_path(mf->shards[i]);
            const char *base = strrchr(p, '/');
            if (strcmp(base ? base + 1 : p, shard) == 0)
                found = vesta_safetensors_find(mf->shards[i], name) != NULL;
        }
        if (!found) {
            st = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s' is not in shard '%s'",
                                 index_path, name, shard);
            goto out;
        }
    }
out:
    json_decref(root);
    return st;
}

static vesta_status open_dir(vesta_model_file *mf, vesta_error *err)
{
    vesta_status st = vesta_model_config_from_hf(mf->path, &mf->config, err);
    if (st != VESTA_OK)
        return st;
    char path[4096];
    size_t cap = 0;
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", mf->path);
    if (file_exists(path)) {
        st = open_sharded(mf, path, &cap, err);
    } else {
        snprintf(path, sizeof(path), "%s/model.safetensors", mf->path);
        if (file_exists(path))
            st = add_shard(mf, path, &cap, err);
        /* else: no weights (dummy loading); validate reports the missing tensors */
    }
    if (st != VESTA_OK)
        return st;
    return build_index(mf, err);
}

/* ---- public ---- */

vesta_model_file *vesta_model_file_open(const char *path, vesta_error *err)
{
    if (path == NULL) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model path is NULL");
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        vesta_error_set(err, VESTA_ERR_IO, "%s: no such file or directory", path);
        return NULL;
    }
    vesta_model_file *mf = calloc(1, sizeof(*mf));
    if (mf == NULL || (mf->path = strdup(path)) == NULL) {
        free(mf);
        vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    size_t n = strlen(mf->path);
    while (n > 1 && mf->path[n - 1] == '/')
        mf->path[--n] = '\0';
    vesta_status st = S_ISDIR(sb.st_mode) ? open_dir(mf, err) : open_gguf(mf, err);
    if (st != VESTA_OK) {
        vesta_model_file_close(mf);
        return NULL;
    }
    return mf;
}

void vesta_model_file_close(vesta_model_file *mf)
{
    if (mf == NULL)
        return;
    for (size_t i = 0; i < mf->n_tensors; i++)
        free((char *)mf->tensors[i].info.name);
    free(mf->tensors);
    vesta_fmt_index_free(&mf->index);
    for (size_t i = 0; i < mf->n_shards; i++)
        vesta_safetensors_close(mf->shards[i]);
    free(mf->shards);
    vesta_gguf_close(mf->gguf);
    free(mf->path);
    free(mf);
}

const vesta_model_config *vesta_model_file_config(const vesta_model_file *mf)
{
    return mf ? &mf->config : NULL;
}

const char *vesta_model_file_path(const vesta_model_file *mf)
{
    return mf ? mf->path : NULL;
}

const vesta_tensor_info *vesta_model_file_find(const vesta_model_file *mf, const char *name)
{
    if (mf == NULL || name == NULL)
        return NULL;
    uint64_t i;
    if (!vesta_fmt_index_find(&mf->index, name, strlen(name), &i))
        return NULL;
    return &mf->tensors[i].info;
}

/* ---- validation ---- */

static vesta_status expect(const vesta_model_file *mf, const char *name, int ndim, int64_t d0,
                           int64_t d1, vesta_error *err)
{
    uint64_t i;
    if (!vesta_fmt_index_find(&mf->index, name, strlen(name), &i))
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "%s: missing tensor '%s'", mf->path, name);
    const mf_tensor *t = &mf->tensors[i];
    const vesta_tensor_info *x = &t->info;
    if (x->dtype == VESTA_DTYPE_I32 || x->dtype == VESTA_DTYPE_I64)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor '%s': integer dtype %s",
                               t->file, name, vesta_dtype_name(x->dtype));
    if (x->ndim != ndim || x->shape[0] != d0 || (ndim == 2 && x->shape[1] != d1)) {
        char want[64], got[96] = "";
        if (ndim == 2)
            snprintf(want, sizeof(want), "[%lld, %lld]", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof(want), "[%lld]", (long long)d0);
        size_t o = 0;
        for (int d = 0; d < x->ndim && o < sizeof(got) - 24; d++)
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%lld", d ? ", " : "", (long long)x->shape[d]);
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: tensor '%s' has shape [%s] but the configuration implies %s",
                               t->file, name, got, want);
    }
    return VESTA_OK;
}

vesta_status vesta_model_file_validate(const vesta_model_file *mf, vesta_error *err)
{
    if (mf == NULL)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model file is NULL");
    const vesta_model_config *c = &mf->config;
    int64_t H = c->hidden_size, V = c->vocab_size, I = c->intermediate_size;
    int64_t Q = (int64_t)c->num_heads * c->head_dim, KV = (int64_t)c->num_kv_heads * c->head_dim;
    vesta_status st;
    if ((st = expect(mf, "model.embed_tokens.weight", 2, V, H, err)) ||
        (st = expect(mf, "model.norm.weight", 1, H, 0, err)))
        return st;
    if ((!c->tie_word_embeddings || vesta_model_file_find(mf, "lm_head.weight") != NULL) &&
        (st = expect(mf, "lm_head.weight", 2, V, H, err)))
        return st;
    char n[160];
    for (int l = 0; l < c->num_layers; l++) {
        const struct {
            const char *suffix;
            int ndim;
            int64_t d0, d1;
            bool need;
        } w[] = {
            {"self_attn.q_proj.weight", 2, Q, H, true},
            {"self_attn.k_proj.weight", 2, KV, H, true},
            {"self_attn.v_proj.weight", 2, KV, H, true},
            {"self_attn.o_proj.weight", 2, H, Q, true},
            {"self_attn.q_proj.bias", 1, Q, 0, c->attention_bias},
            {"self_attn.k_proj.bias", 1, KV, 0, c->attention_bias},
            {"self_attn.v_proj.bias", 1, KV, 0, c->attention_bias},
            {"mlp.gate_proj.weight", 2, I, H, true},
            {"mlp.up_proj.weight", 2, I, H, true},
            {"mlp.down_proj.weight", 2, H, I, true},
            {"input_layernorm.weight", 1, H, 0, true},
            {"post_attention_layernorm.weight", 1, H, 0, true},
        };
        for (size_t k = 0; k < sizeof(w) / sizeof(w[0]); k++) {
            if (!w[k].need)
                continue;
            snprintf(n, sizeof(n), "model.layers.%d.%s", l, w[k].suffix);
            if ((st = expect(mf, n, w[k].ndim, w[k].d0, w[k].d1, err)) != VESTA_OK)
                return st;
        }
    }
    return VESTA_OK;
}
