/* Model configuration from a Hugging Face config.json or from GGUF metadata, with the same
 * defaults and meaning transformers gives them (LlamaConfig, MistralConfig, Qwen2Config). */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model_internal.h"

/* ---- Hugging Face config.json ---- */

typedef struct json_ctx {
    const char *file;
    json_t *root;
    vesta_error *err;
} json_ctx;

/* Integer field: required (def < 0 means required) or defaulted; null counts as absent. */
static vesta_status json_int(json_ctx *j, const char *key, long long def, long long lo, long long hi,
                             int *out)
{
    json_t *v = json_object_get(j->root, key);
    if (v == NULL || json_is_null(v)) {
        if (def < 0)
            return vesta_error_set(j->err, VESTA_ERR_FORMAT, "%s: missing '%s'", j->file, key);
        *out = (int)def;
        return VESTA_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return vesta_error_set(j->err, VESTA_ERR_FORMAT, "%s: '%s' must be an integer in [%lld, %lld]",
                               j->file, key, lo, hi);
    *out = (int)json_integer_value(v);
    return VESTA_OK;
}

static vesta_status json_num(json_ctx *j, json_t *obj, const char *key, double def, bool required,
                             float *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return vesta_error_set(j->err, VESTA_ERR_FORMAT, "%s: missing '%s'", j->file, key);
        *out = (float)def;
        return VESTA_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return vesta_error_set(j->err, VESTA_ERR_FORMAT, "%s: '%s' must be a number", j->file, key);
    *out = (float)json_number_value(v);
    return VESTA_OK;
}

static vesta_status add_eos(vesta_model_config *c, long long id, const char *file, vesta_error *err)
{
    if (id < 0 || id > INT_MAX)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: eos_token_id %lld out of range", file, id);
    for (int i = 0; i < c->num_eos_token_ids; i++)
        if (c->eos_token_ids[i] == id)
            return VESTA_OK;
    if (c->num_eos_token_ids >= VESTA_MAX_EOS_IDS)
        return vesta_error_set(err, VESTA_ERR_LIMIT, "%s: more than %d eos_token_id values", file,
                               VESTA_MAX_EOS_IDS);
    c->eos_token_ids[c->num_eos_token_ids++] = (int)id;
    return VESTA_OK;
}

/* eos_token_id: absent, null, an integer or a list of integers. */
static vesta_status json_eos(json_t *root, vesta_model_config *c, const char *file, vesta_error *err)
{
    json_t *v = json_object_get(root, "eos_token_id");
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    if (json_is_integer(v))
        return add_eos(c, json_integer_value(v), file, err);
    if (!json_is_array(v))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: 'eos_token_id' must be an integer or a list",
                               file);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_integer(x))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: 'eos_token_id'[%zu] is not an integer",
                                   file, i);
        vesta_status st = add_eos(c, json_integer_value(x), file, err);
        if (st != VESTA_OK)
            return st;
    }
    return VESTA_OK;
}

/* rope_scaling (transformers < 5 spelling) or rope_parameters (>= 5): type, factor, ... */
static vesta_status json_rope(json_ctx *j, vesta_model_config *c)
{
    json_t *rs = json_object_get(j->root, "rope_scaling");
    json_t *rp = json_object_get(j->root, "rope_parameters");
    const char *key = "rope_scaling";
    vesta_status st;
    if ((st = json_num(j, j->root, "rope_theta", 10000.0, false, &c->rope_theta)) != VESTA_OK)
        return st;
    if (json_is_object(rp)) {
        if (json_object_get(rp, "rope_theta") != NULL &&
            (st = json_num(j, rp, "rope_theta", 10000.0, false, &c->rope_theta)) != VESTA_OK)
            return st;
        if (rs == NULL || json_is_null(rs)) {
            rs = rp;
            key = "rope_parameters";
        }
    }
    c->rope_scaling = VESTA_ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    if (rs == NULL || json_is_null(rs))
        return VESTA_OK;
    if (!json_is_object(rs))
        return vesta_error_set(j->err, VESTA_ERR_FORMAT, "%s: '%s' must be an object or null", j->file,
                               key);
    json_t *t = json_object_get(rs, "rope_type");
    if (t == NULL)
        t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "default";
    if (strcmp(type, "default") == 0)
        return VESTA_OK;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling = VESTA_ROPE_SCALING_LINEAR;
        return json_num(j, rs, "factor", 1.0, true, &c->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_scaling = VESTA_ROPE_SCALING_LLAMA3;
        float orig = 0;
        if ((st = json_num(j, rs, "factor", 1.0, true, &c->rope_factor)) != VESTA_OK ||
            (st = json_num(j, rs, "low_freq_factor", 1.0, true, &c->rope_low_freq_factor)) != VESTA_OK ||
            (st = json_num(j, rs, "high_freq_factor", 1.0, true, &c->rope_high_freq_factor)) != VESTA_OK ||
            (st = json_num(j, rs, "original_max_position_embeddings", 0, true, &orig)) != VESTA_OK)
            return st;
        c->rope_original_max_position = (int)orig;
        return VESTA_OK;
    }
    return vesta_error_set(j->err, VESTA_ERR_UNSUPPORTED,
                           "%s: '%s' type '%.40s' unsupported (supported: default, linear, llama3)",
                           j->file, key, type);
}

static bool json_flag(json_t *root, const char *key, bool def)
{
    json_t *v = json_object_get(root, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static vesta_status hf_fields(json_ctx *j, vesta_model_config *c)
{
    json_t *r = j->root;
    json_t *mt = json_object_get(r, "model_type");
    if (!json_is_string(mt))
        return vesta_error_set(j->err, VESTA_ERR_FORMAT, "%s: missing 'model_type'", j->file);
    const char *arch = json_string_value(mt);
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "mistral") != 0 && strcmp(arch, "qwen2") != 0)
        return vesta_error_set(j->err, VESTA_ERR_UNSUPPORTED,
                               "%s: model_type '%.40s' unsupported (supported: llama, mistral, qwen2)",
                               j->file, arch);
    snprintf(c->arch, sizeof(c->arch), "%s", arch);
    bool qwen2 = strcmp(arch, "qwen2") == 0, mistral = strcmp(arch, "mistral") == 0;
    json_t *act = json_object_get(r, "hidden_act");
    if (act != NULL && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        return vesta_error_set(j->err, VESTA_ERR_UNSUPPORTED, "%s: 'hidden_act' must be \"silu\"",
                               j->file);
    const long long big = 1 << 30;
    vesta_status st;
    if ((st = json_int(j, "vocab_size", -1, 1, big, &c->vocab_size)) ||
        (st = json_int(j, "hidden_size", -1, 1, 1 << 20, &c->hidden_size)) ||
        (st = json_int(j, "intermediate_size", -1, 1, 1 << 22, &c->intermediate_size)) ||
        (st = json_int(j, "num_hidden_layers", -1, 1, 4096, &c->num_layers)) ||
        (st = json_int(j, "num_attention_heads", -1, 1, 4096, &c->num_heads)) ||
        (st = json_int(j, "num_key_value_heads", c->num_heads, 1, 4096, &c->num_kv_heads)) ||
        (st = json_int(j, "head_dim", c->hidden_size / c->num_heads, 1, 4096, &c->head_dim)) ||
        (st = json_int(j, "max_position_embeddings", qwen2 ? 32768 : mistral ? 131072 : 2048, 1, big,
                       &c->max_position_embeddings)) ||
        (st = json_num(j, r, "rms_norm_eps", 1e-6, false, &c->rms_norm_eps)) || (st = json_rope(j, c)))
        return st;
    c->tie_word_embeddings = json_flag(r, "tie_word_embeddings", false);
    c->attention_bias = qwen2;
    if (!qwen2 && (json_flag(r, "attention_bias", false) || json_flag(r, "mlp_bias", false)))
        return vesta_error_set(j->err, VESTA_ERR_UNSUPPORTED,
                               "%s: 'attention_bias'/'mlp_bias' true unsupported for %s (o_proj/MLP "
                               "biases)",
                               j->file, arch);
    int sw = 0;
    if (mistral && (st = json_int(j, "sliding_window", 0, 0, big, &sw)))
        return st;
    if (qwen2 && json_flag(r, "use_sliding_window", false))
        return vesta_error_set(j->err, VESTA_ERR_UNSUPPORTED,
                               "%s: 'use_sliding_window' true unsupported for qwen2", j->file);
    c->sliding_window = sw;
    json_t *bos = json_object_get(r, "bos_token_id");
    c->bos_token_id = -1;
    if (bos != NULL && !json_is_null(bos)) {
        if (!json_is_integer(bos) || json_integer_value(bos) < 0 || json_integer_value(bos) > INT_MAX)
            return vesta_error_set(j->err, VESTA_ERR_FORMAT,
                                   "%s: 'bos_token_id' must be a non-negative integer or null", j->file);
        c->bos_token_id = (int)json_integer_value(bos);
    }
    return json_eos(r, c, j->file, j->err);
}

vesta_status vesta_model_config_from_hf(const char *dir, vesta_model_config *c, vesta_error *err)
{
    memset(c, 0, sizeof(*c));
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: %s (line %d)", path, jerr.text, jerr.line);
    vesta_status st = VESTA_OK;
    if (!json_is_object(root)) {
        st = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: not a JSON object", path);
    } else {
        json_ctx j = {path, root, err};
        st = hf_fields(&j, c);
    }
    json_decref(root);
    if (st != VESTA_OK)
        return st;

    /* generation_config.json: its eos ids extend the model's (both stop generation). */
    snprintf(path, sizeof(path), "%s/generation_config.json", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return vesta_model_config_check(c, dir, err);
    fclose(f);
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: %s (line %d)", path, jerr.text, jerr.line);
    if (!json_is_object(root))
        st = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: not a JSON object", path);
    else
        st = json_eos(root, c, path, err);
    json_t *bos = json_object_get(root, "bos_token_id");
    if (st == VESTA_OK && c->bos_token_id < 0 && json_is_integer(bos) && json_integer_value(bos) >= 0 &&
        json_integer_value(bos) <= INT_MAX)
        c->bos_token_id = (int)json_integer_value(bos);
    json_decref(root);
    if (st != VESTA_OK)
        return st;
    return vesta_model_config_check(c, dir, err);
}

/* ---- GGUF metadata ---- */

typedef struct gguf_ctx {
    const vesta_gguf *g;
    const char *arch;
    vesta_error *err;
} gguf_ctx;

static vesta_status gguf_int(gguf_ctx *x, const char *suffix, long long def, long long hi, int *out)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", x->arch, suffix);
    uint64_t v;
    if (!vesta_gguf_has_key(x->g, key)) {
        if (def < 0)
            return vesta_error_set(x->err, VESTA_ERR_FORMAT, "%s: missing key '%s'",
                                   vesta_gguf_path(x->g), key);
        *out = (int)def;
        return VESTA_OK;
    }
    if (!vesta_gguf_get_u64(x->g, key, &v) || v < 1 || v > (uint64_t)hi)
        return vesta_error_set(x->err, VESTA_ERR_FORMAT, "%s: key '%s' must be an integer in [1, %lld]",
                               vesta_gguf_path(x->g), key, hi);
    *out = (int)v;
    return VESTA_OK;
}

static vesta_status gguf_float(gguf_ctx *x, const char *suffix, double def, bool required, float *out)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", x->arch, suffix);
    double v;
    if (!vesta_gguf_has_key(x->g, key)) {
        if (required)
            return vesta_error_set(x->err, VESTA_ERR_FORMAT, "%s: missing key '%s'",
                                   vesta_gguf_path(x->g), key);
        *out = (float)def;
        return VESTA_OK;
    }
    if (!vesta_gguf_get_f64(x->g, key, &v) || !isfinite(v))
        return vesta_error_set(x->err, VESTA_ERR_FORMAT, "%s: key '%s' must be a number",
                               vesta_gguf_path(x->g), key);
    *out = (float)v;
    return VESTA_OK;
}

static vesta_status gguf_rope(gguf_ctx *x, vesta_model_config *c)
{
    const char *path = vesta_gguf_path(x->g);
    c->rope_scaling = VESTA_ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    /* Llama 3.1 GGUFs carry llama3 scaling as per-dimension factors in a tensor, which the
     * configuration cannot express. */
    if (vesta_gguf_find_tensor(x->g, "rope_freqs.weight") != NULL)
        return vesta_error_set(x->err, VESTA_ERR_UNSUPPORTED,
                               "%s: tensor 'rope_freqs.weight' (per-dimension rope factors) "
                               "unsupported; use the Hugging Face directory",
                               path);
    char key[128];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", x->arch);
    vesta_gguf_str s;
    if (!vesta_gguf_get_str(x->g, key, &s) || (s.len == 4 && memcmp(s.ptr, "none", 4) == 0))
        return VESTA_OK;
    if (s.len == 6 && memcmp(s.ptr, "linear", 6) == 0) {
        c->rope_scaling = VESTA_ROPE_SCALING_LINEAR;
        return gguf_float(x, "rope.scaling.factor", 1.0, true, &c->rope_factor);
    }
    return vesta_error_set(x->err, VESTA_ERR_UNSUPPORTED, "%s: key '%s' = '%.*s' unsupported", path,
                           key, s.len > 32 ? 32 : (int)s.len, s.ptr);
}

static int gguf_token_id(const vesta_gguf *g, const char *key)
{
    int64_t v;
    if (vesta_gguf_get_i64(g, key, &v) && v >= 0 && v <= INT_MAX)
        return (int)v;
    return -1;
}

vesta_status vesta_model_config_from_gguf(const vesta_gguf *g, vesta_model_config *c, vesta_error *err)
{
    memset(c, 0, sizeof(*c));
    const char *path = vesta_gguf_path(g);
    vesta_gguf_str a;
    if (!vesta_gguf_get_str(g, "general.architecture", &a))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: missing key 'general.architecture'", path);
    static const char *archs[] = {"llama", "mistral", "qwen2"};
    const char *arch = NULL;
    for (size_t i = 0; i < 3; i++)
        if (a.len == strlen(archs[i]) && memcmp(a.ptr, archs[i], a.len) == 0)
            arch = archs[i];
    if (arch == NULL)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "%s: key 'general.architecture' = '%.*s' unsupported (supported: "
                               "llama, mistral, qwen2)",
                               path, a.len > 32 ? 32 : (int)a.len, a.ptr);
    snprintf(c->arch, sizeof(c->arch), "%s", arch);
    /* As transformers does: llama.cpp converts Mistral models to the llama architecture. */
    vesta_gguf_str name;
    if (strcmp(arch, "llama") == 0 && vesta_gguf_get_str(g, "general.name", &name) &&
        memmem(name.ptr, name.len, "mistral", 7) != NULL)
        snprintf(c->arch, sizeof(c->arch), "mistral");
    gguf_ctx x = {g, arch, err};
    vesta_status st;
    int key_len = 0, rope_dims = 0;
    if ((st = gguf_int(&x, "block_count", -1, 4096, &c->num_layers)) ||
        (st = gguf_int(&x, "embedding_length", -1, 1 << 20, &c->hidden_size)) ||
        (st = gguf_int(&x, "feed_forward_length", -1, 1 << 22, &c->intermediate_size)) ||
        (st = gguf_int(&x, "attention.head_count", -1, 4096, &c->num_heads)) ||
        (st = gguf_int(&x, "attention.head_count_kv", c->num_heads, 4096, &c->num_kv_heads)) ||
        (st = gguf_int(&x, "context_length", -1, 1 << 30, &c->max_position_embeddings)) ||
        (st = gguf_int(&x, "attention.key_length", 0, 4096, &key_len)) ||
        (st = gguf_int(&x, "rope.dimension_count", 0, 4096, &rope_dims)) ||
        (st = gguf_float(&x, "attention.layer_norm_rms_epsilon", 1e-5, true, &c->rms_norm_eps)) ||
        (st = gguf_float(&x, "rope.freq_base", 10000.0, false, &c->rope_theta)) || (st = gguf_rope(&x, c)))
        return st;
    c->head_dim = key_len ? key_len : rope_dims ? rope_dims : c->hidden_size / c->num_heads;

    /* vocabulary: explicit key, else the tokenizer's token list, else the embedding rows */
    int vocab = 0;
    if ((st = gguf_int(&x, "vocab_size", 0, 1 << 30, &vocab)))
        return st;
    uint64_t ntok;
    vesta_gguf_type et;
    const vesta_gguf_tensor *emb = vesta_gguf_find_tensor(g, "token_embd.weight");
    if (vocab == 0 && vesta_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &ntok) && ntok > 0 &&
        ntok <= (1u << 30))
        vocab = (int)ntok;
    if (vocab == 0 && emb != NULL && emb->n_dims == 2 && emb->ne[1] <= (1u << 30))
        vocab = (int)emb->ne[1];
    if (vocab == 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: cannot determine the vocabulary size (no '%s.vocab_size', "
                               "'tokenizer.ggml.tokens' or 'token_embd.weight')",
                               path, arch);
    c->vocab_size = vocab;
    c->tie_word_embeddings = vesta_gguf_find_tensor(g, "output.weight") == NULL;
    c->attention_bias = strcmp(arch, "qwen2") == 0 || vesta_gguf_find_tensor(g, "blk.0.attn_q.bias");
    c->bos_token_id = gguf_token_id(g, "tokenizer.ggml.bos_token_id");
    int eos = gguf_token_id(g, "tokenizer.ggml.eos_token_id");
    if (eos >= 0)
        add_eos(c, eos, path, err);
    int sw = 0;
    if (strcmp(c->arch, "mistral") == 0 && (st = gguf_int(&x, "attention.sliding_window", 0, 1 << 30, &sw)))
        return st;
    c->sliding_window = sw;
    return vesta_model_config_check(c, path, err);
}

/* ---- shared checks ---- */

vesta_status vesta_model_config_check(const vesta_model_config *c, const char *src, vesta_error *err)
{
    if (c->num_heads % c->num_kv_heads != 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                               src, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2 != 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: head_dim %d is odd (rotary needs pairs)",
                               src, c->head_dim);
    if ((int64_t)c->num_heads * c->head_dim > (1 << 22))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: num_heads x head_dim too large", src);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: rms_norm_eps and rope_theta must be > 0",
                               src);
    if (c->rope_scaling != VESTA_ROPE_SCALING_NONE && !(c->rope_factor > 0))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: rope scaling factor must be > 0", src);
    if (c->rope_scaling == VESTA_ROPE_SCALING_LLAMA3 &&
        (c->rope_original_max_position <= 0 || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !(c->rope_low_freq_factor > 0)))
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: llama3 rope scaling needs original_max_position_embeddings > 0 "
                               "and 0 < low_freq_factor < high_freq_factor",
                               src);
    for (int i = 0; i < c->num_eos_token_ids; i++)
        if (c->eos_token_ids[i] >= c->vocab_size)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: eos token id %d >= vocab_size %d", src,
                                   c->eos_token_ids[i], c->vocab_size);
    if (c->bos_token_id >= c->vocab_size)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: bos token id %d >= vocab_size %d", src,
                               c->bos_token_id, c->vocab_size);
    return VESTA_OK;
}
