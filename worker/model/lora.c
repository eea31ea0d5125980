/* PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors -> float32 matrices with
 * the scaling folded into B. Everything read from the two files is checked against the base
 * model's configuration before anything is allocated from it. */
#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model_internal.h"
#include "vesta/lora.h"

#define LORA_CONFIG_MAX_BYTES (1 << 20)

static const char *const target_names[VESTA_LORA_NUM_TARGETS] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"};
static const char *const target_parent[VESTA_LORA_NUM_TARGETS] = {"self_attn", "self_attn", "self_attn", "self_attn",
                                                                  "mlp",       "mlp",       "mlp"};
/* Modules of a Llama-family model an adapter may name but Vesta does not adapt. */
static const char *const unsupported_modules[] = {"lm_head", "model.embed_tokens"};

const char *vesta_lora_target_name(vesta_lora_target t)
{
    return (unsigned)t < VESTA_LORA_NUM_TARGETS ? target_names[t] : "?";
}

void vesta_lora_target_dims(const vesta_model_config *c, vesta_lora_target t, int *in, int *out)
{
    const int q = c->num_heads * c->head_dim, kv = c->num_kv_heads * c->head_dim;
    const int H = c->hidden_size, I = c->intermediate_size;
    static const int kind[VESTA_LORA_NUM_TARGETS] = {0, 1, 1, 2, 3, 3, 4};
    const int ins[5] = {H, H, q, H, I}, outs[5] = {q, kv, H, I, H};
    *in = ins[kind[t]];
    *out = outs[kind[t]];
}

/* ---- adapter_config.json ---- */

typedef struct lora_cfg {
    const char *file;
    const vesta_model_config *c;
    int rank;
    double alpha;
    bool rslora;
    bool *targeted; /* [num_layers * VESTA_LORA_NUM_TARGETS] */
} lora_cfg;

static void module_key(char *buf, size_t cap, int layer, int t)
{
    snprintf(buf, cap, "model.layers.%d.%s.%s", layer, target_parent[t], target_names[t]);
}

/* PEFT's list rule: a module matches an entry equal to its full name or to a '.'-separated
 * suffix of it. */
static bool suffix_match(const char *key, const char *entry)
{
    size_t k = strlen(key), e = strlen(entry);
    return e > 0 && e <= k && strcmp(key + (k - e), entry) == 0 && (e == k || key[k - e - 1] == '.');
}

static vesta_status mark_entry(lora_cfg *g, const char *entry, vesta_error *err)
{
    const vesta_model_config *c = g->c;
    int hits = 0;
    char key[160];
    for (int l = 0; l < c->num_layers; l++)
        for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++) {
            module_key(key, sizeof(key), l, t);
            if (strcmp(entry, "all-linear") == 0 || suffix_match(key, entry)) {
                g->targeted[l * VESTA_LORA_NUM_TARGETS + t] = true;
                hits++;
            }
        }
    for (size_t i = 0; i < sizeof(unsupported_modules) / sizeof(*unsupported_modules); i++)
        if (suffix_match(unsupported_modules[i], entry))
            return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                                   "%s: target_modules: '%s' is not supported (adapters apply to q_proj, "
                                   "k_proj, v_proj, o_proj, gate_proj, up_proj and down_proj)",
                                   g->file, entry);
    if (hits == 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: target_modules: '%s' matches no module of the model",
                               g->file, entry);
    return VESTA_OK;
}

/* PEFT's string rule: the string is a regular expression that must match a module's whole name. */
static vesta_status mark_regex(lora_cfg *g, const char *pattern, vesta_error *err)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                   &code, &off, NULL);
    if (re == NULL)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: target_modules: bad regular expression at offset %zu",
                               g->file, (size_t)off);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    vesta_status st = md ? VESTA_OK : vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", g->file);
    int hits = 0;
    char key[160];
    for (size_t i = 0; st == VESTA_OK && i < sizeof(unsupported_modules) / sizeof(*unsupported_modules); i++)
        if (pcre2_match(re, (PCRE2_SPTR)unsupported_modules[i], PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0)
            st = vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                                 "%s: target_modules: the pattern matches '%s', "
                                 "which is not supported",
                                 g->file, unsupported_modules[i]);
    for (int l = 0; st == VESTA_OK && l < g->c->num_layers; l++)
        for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++) {
            module_key(key, sizeof(key), l, t);
            if (pcre2_match(re, (PCRE2_SPTR)key, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0) {
                g->targeted[l * VESTA_LORA_NUM_TARGETS + t] = true;
                hits++;
            }
        }
    if (st == VESTA_OK && hits == 0)
        st = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: target_modules: the pattern matches no module", g->file);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return st;
}

static vesta_status cfg_targets(lora_cfg *g, json_t *root, vesta_error *err)
{
    json_t *tm = json_object_get(root, "target_modules");
    if (json_is_string(tm)) return mark_regex(g, json_string_value(tm), err);
    if (!json_is_array(tm) || json_array_size(tm) == 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: 'target_modules' must be a non-empty list of names or a string", g->file);
    size_t i;
    json_t *x;
    json_array_foreach(tm, i, x)
    {
        if (!json_is_string(x))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: target_modules[%zu] is not a string", g->file, i);
        vesta_status st = mark_entry(g, json_string_value(x), err);
        if (st != VESTA_OK) return st;
    }
    return VESTA_OK;
}

/* Options that change what the adapter computes and that Vesta does not implement must be at
 * their defaults, or the output would silently differ from PEFT's. */
static vesta_status cfg_refuse(const lora_cfg *g, json_t *root, vesta_error *err)
{
    json_t *v;
    if ((v = json_object_get(root, "use_dora")) && !json_is_null(v) && !json_is_false(v))
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: 'use_dora': DoRA adapters are not supported", g->file);
    if ((v = json_object_get(root, "bias")) && !json_is_null(v) &&
        !(json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: 'bias' must be \"none\"", g->file);
    if ((v = json_object_get(root, "fan_in_fan_out")) && !json_is_null(v) && !json_is_false(v))
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: 'fan_in_fan_out' must be false", g->file);
    /* PEFT writes every option; these must be absent, null, false or empty. */
    static const char *const empty_keys[] = {
        "modules_to_save",         "layers_to_transform", "rank_pattern",      "alpha_pattern",
        "trainable_token_indices", "exclude_modules",     "layer_replication", "lora_bias",
        "target_parameters",       "use_qalora",          "use_bdlora",        "alora_invocation_tokens"};
    for (size_t i = 0; i < sizeof(empty_keys) / sizeof(*empty_keys); i++) {
        v = json_object_get(root, empty_keys[i]);
        bool empty = v == NULL || json_is_null(v) || json_is_false(v) ||
                     (json_is_array(v) && json_array_size(v) == 0) || (json_is_object(v) && json_object_size(v) == 0);
        if (!empty)
            return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: '%s' is not supported (must be empty)", g->file,
                                   empty_keys[i]);
    }
    return VESTA_OK;
}

static vesta_status cfg_fields(lora_cfg *g, json_t *root, int max_rank, vesta_error *err)
{
    json_t *pt = json_object_get(root, "peft_type"), *r = json_object_get(root, "r");
    json_t *alpha = json_object_get(root, "lora_alpha"), *rs = json_object_get(root, "use_rslora");
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "LORA") != 0)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: 'peft_type' must be \"LORA\"", g->file);
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > max_rank)
        return vesta_error_set(err, json_is_integer(r) ? VESTA_ERR_LIMIT : VESTA_ERR_FORMAT,
                               "%s: 'r' must be an integer in [1, %d] (--max-lora-rank)", g->file, max_rank);
    g->rank = (int)json_integer_value(r);
    g->alpha = 8.0; /* PEFT's LoraConfig default */
    if (alpha && !json_is_null(alpha)) {
        if (!json_is_number(alpha) || !isfinite(json_number_value(alpha)))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: 'lora_alpha' must be a number", g->file);
        g->alpha = json_number_value(alpha);
    }
    if (rs && !json_is_null(rs) && !json_is_boolean(rs))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: 'use_rslora' must be true or false", g->file);
    g->rslora = rs && json_is_true(rs);
    vesta_status st = cfg_refuse(g, root, err);
    return st != VESTA_OK ? st : cfg_targets(g, root, err);
}

static vesta_status cfg_parse(lora_cfg *g, const char *text, size_t len, int max_rank, vesta_error *err)
{
    if (len > LORA_CONFIG_MAX_BYTES)
        return vesta_error_set(err, VESTA_ERR_LIMIT, "%s: over %d bytes", g->file, LORA_CONFIG_MAX_BYTES);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: %s (line %d)", g->file, je.text, je.line);
    vesta_status st = json_is_object(root) ? cfg_fields(g, root, max_rank, err)
                                           : vesta_error_set(err, VESTA_ERR_FORMAT, "%s: not a JSON object", g->file);
    json_decref(root);
    return st;
}

/* ---- adapter_model.safetensors ---- */

/* base_model.model.model.layers.<l>.<parent>.<module>.lora_<A|B>.weight */
static bool parse_tensor_name(const char *name, int *layer, int *target, int *is_b)
{
    static const char pre[] = "base_model.model.model.layers.";
    if (strncmp(name, pre, sizeof(pre) - 1) != 0) return false;
    const char *p = name + sizeof(pre) - 1;
    long l = 0;
    int digits = 0;
    for (; isdigit((unsigned char)*p) && digits < 9; p++, digits++) l = l * 10 + (*p - '0');
    if (digits == 0 || *p++ != '.') return false;
    char tail[96];
    for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++)
        for (int b = 0; b < 2; b++) {
            snprintf(tail, sizeof(tail), "%s.%s.lora_%c.weight", target_parent[t], target_names[t], b ? 'B' : 'A');
            if (strcmp(p, tail) == 0) {
                *layer = (int)l;
                *target = t;
                *is_b = b;
                return true;
            }
        }
    return false;
}

static vesta_status tensor_dtype(const vesta_safetensors_tensor *s, const char *file, vesta_dtype *t, vesta_error *err)
{
    if (strcmp(s->dtype, "F32") == 0)
        *t = VESTA_DTYPE_F32;
    else if (strcmp(s->dtype, "F16") == 0)
        *t = VESTA_DTYPE_F16;
    else if (strcmp(s->dtype, "BF16") == 0)
        *t = VESTA_DTYPE_BF16;
    else
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s (need F32, F16 or BF16)", file,
                               s->name, s->dtype);
    return VESTA_OK;
}

/* Sizes the arena for every targeted (layer, projection) and points a / b into it. */
static vesta_status adapter_plan(vesta_lora_adapter *ad, const lora_cfg *g, vesta_error *err)
{
    const vesta_model_config *c = g->c;
    size_t total = 0;
    for (int l = 0; l < c->num_layers; l++)
        for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++) {
            int in, out;
            vesta_lora_target_dims(c, (vesta_lora_target)t, &in, &out);
            size_t n;
            if (g->targeted[l * VESTA_LORA_NUM_TARGETS + t] &&
                (__builtin_mul_overflow((size_t)g->rank, (size_t)in + (size_t)out, &n) ||
                 __builtin_add_overflow(total, n, &total) || total > SIZE_MAX / sizeof(float)))
                return vesta_error_set(err, VESTA_ERR_LIMIT, "%s: adapter too large", ad->path);
        }
    ad->a = calloc((size_t)c->num_layers, sizeof(*ad->a));
    ad->b = calloc((size_t)c->num_layers, sizeof(*ad->b));
    ad->arena = malloc(total * sizeof(float));
    if (!ad->a || !ad->b || !ad->arena)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory for %zu floats", ad->path, total);
    ad->arena_floats = total;
    float *p = ad->arena;
    for (int l = 0; l < c->num_layers; l++)
        for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++) {
            if (!g->targeted[l * VESTA_LORA_NUM_TARGETS + t]) continue;
            int in, out;
            vesta_lora_target_dims(c, (vesta_lora_target)t, &in, &out);
            ad->a[l][t] = p;
            p += (size_t)g->rank * (size_t)in;
            ad->b[l][t] = p;
            p += (size_t)out * (size_t)g->rank;
            ad->targets |= 1u << t;
        }
    return VESTA_OK;
}

static vesta_status adapter_tensor(vesta_lora_adapter *ad, const lora_cfg *g, const vesta_safetensors_tensor *s,
                                   const char *file, unsigned char *seen, vesta_error *err)
{
    int l, t, is_b;
    if (!parse_tensor_name(s->name, &l, &t, &is_b) || l >= g->c->num_layers)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor '%s': not a LoRA weight of this model", file,
                               s->name);
    if (!g->targeted[l * VESTA_LORA_NUM_TARGETS + t])
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': its module is not in target_modules", file,
                               s->name);
    int in, out;
    vesta_lora_target_dims(g->c, (vesta_lora_target)t, &in, &out);
    const int64_t rows = is_b ? out : g->rank, cols = is_b ? g->rank : in;
    if (s->ndim != 2 || s->shape[0] != rows || s->shape[1] != cols)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': shape must be [%lld, %lld]", file, s->name,
                               (long long)rows, (long long)cols);
    vesta_dtype dt = VESTA_DTYPE_F32;
    vesta_status st = tensor_dtype(s, file, &dt, err);
    if (st != VESTA_OK) return st;
    float *dst = is_b ? ad->b[l][t] : ad->a[l][t];
    vesta_model_decode_f32(dt, s->data, rows * cols, dst);
    if (is_b)
        for (int64_t i = 0; i < rows * cols; i++) dst[i] *= ad->scaling;
    seen[(l * VESTA_LORA_NUM_TARGETS + t) * 2 + is_b] = 1;
    return VESTA_OK;
}

static vesta_status adapter_weights(vesta_lora_adapter *ad, const lora_cfg *g, vesta_safetensors *st_file,
                                    vesta_error *err)
{
    const char *path = vesta_safetensors_path(st_file);
    const size_t pairs = (size_t)g->c->num_layers * VESTA_LORA_NUM_TARGETS;
    unsigned char *seen = calloc(pairs * 2, 1);
    vesta_status st = seen ? VESTA_OK : vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; st == VESTA_OK && i < vesta_safetensors_tensor_count(st_file); i++)
        st = adapter_tensor(ad, g, vesta_safetensors_tensor_at(st_file, i), path, seen, err);
    for (size_t k = 0; st == VESTA_OK && k < pairs * 2; k++)
        if (g->targeted[k / 2] && !seen[k]) {
            const int l = (int)(k / 2 / VESTA_LORA_NUM_TARGETS), t = (int)(k / 2 % VESTA_LORA_NUM_TARGETS);
            st = vesta_error_set(err, VESTA_ERR_NOT_FOUND,
                                 "%s: missing tensor 'base_model.model.model.layers.%d.%s.%s.lora_%c.weight'", path, l,
                                 target_parent[t], target_names[t], k % 2 ? 'B' : 'A');
        }
    free(seen);
    return st;
}

/* Both sources: the configuration's text (named cfg_name in errors) and an opened weights file. */
static vesta_lora_adapter *adapter_from(const char *name, const char *path, const char *cfg_name, const char *cfg,
                                        size_t cfg_len, vesta_safetensors *weights, const vesta_model_config *c,
                                        int max_rank, vesta_error *err)
{
    if (max_rank < 1 || max_rank > VESTA_LORA_MAX_RANK) max_rank = VESTA_LORA_MAX_RANK;
    vesta_lora_adapter *ad = calloc(1, sizeof(*ad));
    lora_cfg g = {cfg_name, c, 0, 0, false, calloc((size_t)c->num_layers * VESTA_LORA_NUM_TARGETS, sizeof(bool))};
    vesta_status st = ad && g.targeted ? VESTA_OK : vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    if (st == VESTA_OK) {
        snprintf(ad->name, sizeof(ad->name), "%s", name);
        snprintf(ad->path, sizeof(ad->path), "%s", path);
        ad->num_layers = c->num_layers;
        st = cfg_parse(&g, cfg, cfg_len, max_rank, err);
    }
    if (st == VESTA_OK) {
        ad->rank = g.rank;
        ad->scaling = (float)(g.rslora ? g.alpha / sqrt((double)g.rank) : g.alpha / g.rank);
        st = adapter_plan(ad, &g, err);
    }
    if (st == VESTA_OK) st = adapter_weights(ad, &g, weights, err);
    free(g.targeted);
    if (st != VESTA_OK) {
        vesta_lora_adapter_release(ad);
        return NULL;
    }
    return ad;
}

/* The weights file of a PEFT directory, or why there is none. */
static vesta_safetensors *open_weights(const char *dir, vesta_error *err)
{
    char path[1200];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    if (stat(path, &sb) == 0) return vesta_safetensors_open(path, err);
    snprintf(path, sizeof(path), "%s/adapter_model.bin", dir);
    if (stat(path, &sb) == 0)
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                        "%s: PyTorch pickles are not read; save the adapter with safetensors", path);
    else
        vesta_error_set(err, VESTA_ERR_IO, "%s/adapter_model.safetensors: missing", dir);
    return NULL;
}

vesta_lora_adapter *vesta_lora_adapter_load(const vesta_lora_spec *spec, const vesta_model_config *c, int max_rank,
                                            vesta_error *err)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/adapter_config.json", spec->path);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        vesta_error_set(err, VESTA_ERR_IO, "%s: missing (a LoRA adapter is a PEFT directory)", path);
        return NULL;
    }
    size_t len = 0;
    void *cfg = sb.st_size <= LORA_CONFIG_MAX_BYTES ? vesta_fmt_map_file(path, &len, err) : NULL;
    if (cfg == NULL) {
        if (sb.st_size > LORA_CONFIG_MAX_BYTES)
            vesta_error_set(err, VESTA_ERR_LIMIT, "%s: over %d bytes", path, LORA_CONFIG_MAX_BYTES);
        return NULL;
    }
    vesta_safetensors *w = open_weights(spec->path, err);
    vesta_lora_adapter *ad = w ? adapter_from(spec->name, spec->path, path, cfg, len, w, c, max_rank, err) : NULL;
    vesta_safetensors_close(w);
    vesta_fmt_unmap(cfg, len);
    return ad;
}

vesta_lora_adapter *vesta_lora_adapter_load_memory(const char *name, const void *cfg, size_t cfg_len,
                                                   const void *weights, size_t weights_len, const vesta_model_config *c,
                                                   int max_rank, vesta_error *err)
{
    vesta_safetensors *w = vesta_safetensors_open_memory(weights, weights_len, "adapter_model.safetensors", err);
    vesta_lora_adapter *ad =
        w ? adapter_from(name, "(memory)", "adapter_config.json", cfg, cfg_len, w, c, max_rank, err) : NULL;
    vesta_safetensors_close(w);
    return ad;
}

void vesta_lora_adapter_release(vesta_lora_adapter *ad)
{
    if (ad == NULL) return;
    free(ad->a);
    free(ad->b);
    free(ad->arena);
    free(ad);
}
