/* tokenizer.json / tokenizer_config.json loader. Every field is type-checked; errors name the
 * file and the JSON path of the offending field. Components Vesta does not implement are
 * refused (VESTA_ERR_UNSUPPORTED) rather than silently ignored, since ignoring one changes ids. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "tok_internal.h"
#include "vesta/gguf.h"
#include "vesta/tokenizer.h"

#define FAIL(code, ...) vesta_error_set(err, code, __VA_ARGS__)

typedef struct ld {
    const char *name; /* file name for messages */
    vesta_error *err;
} ld;

static vesta_status bad(ld *l, const char *path, const char *what) {
    return vesta_error_set(l->err, VESTA_ERR_FORMAT, "%s: field %s: %s", l->name, path, what);
}
static vesta_status unsupported(ld *l, const char *path, const char *what) {
    return vesta_error_set(l->err, VESTA_ERR_UNSUPPORTED, "%s: field %s: unsupported %s", l->name,
                           path, what);
}

static bool opt_bool(json_t *o, const char *k, bool def) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Reads a one-char string into (utf8, len, cp). */
static bool one_char(json_t *v, char out[8], size_t *len, int32_t *cp) {
    if (!json_is_string(v)) return false;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 4 || tok_utf8_valid_prefix(s, n) != n) return false;
    int k = tok_utf8_decode(s, n, cp);
    if ((size_t)k != n) return false;
    memcpy(out, s, n);
    *len = n;
    return true;
}

/* pattern: {"String": "..."} or {"Regex": "..."} */
static vesta_status parse_pattern(ld *l, json_t *p, const char *path, tok_regex *re) {
    json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    if (json_is_string(s))
        return tok_regex_compile(re, json_string_value(s), json_string_length(s), true, l->err);
    if (json_is_string(r)) {
        vesta_status st = tok_regex_compile(re, json_string_value(r), json_string_length(r), false,
                                            l->err);
        if (st != VESTA_OK) vesta_error_prefix(l->err, "%s: field %s", l->name, path);
        return st;
    }
    return bad(l, path, "expected {\"String\"|\"Regex\": string}");
}

/* ---- normalizer ---- */

static vesta_status parse_norm(ld *l, json_t *j, const char *path, int depth, tok_norm **out) {
    vesta_error *err = l->err;
    *out = NULL;
    if (depth > 16) return bad(l, path, "nested too deeply");
    if (!json_is_object(j)) return bad(l, path, "expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return bad(l, path, "missing \"type\"");
    tok_norm *n = calloc(1, sizeof *n);
    if (!n) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    *out = n;
    char sub[256];
    if (!strcmp(type, "Sequence")) {
        n->kind = TOK_NORM_SEQUENCE;
        json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr)) return bad(l, path, "Sequence without \"normalizers\" array");
        n->children = calloc(json_array_size(arr) + 1, sizeof *n->children);
        if (!n->children) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            vesta_status st = parse_norm(l, json_array_get(arr, i), sub, depth + 1,
                                         &n->children[n->n_children]);
            if (n->children[n->n_children]) n->n_children++;
            if (st != VESTA_OK) return st;
        }
    } else if (!strcmp(type, "NFC")) n->kind = TOK_NORM_NFC;
    else if (!strcmp(type, "NFD")) n->kind = TOK_NORM_NFD;
    else if (!strcmp(type, "NFKC")) n->kind = TOK_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) n->kind = TOK_NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) n->kind = TOK_NORM_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        n->kind = TOK_NORM_STRIP;
        n->strip_left = opt_bool(j, "strip_left", true);
        n->strip_right = opt_bool(j, "strip_right", true);
    } else if (!strcmp(type, "Prepend")) {
        n->kind = TOK_NORM_PREPEND;
        json_t *p = json_object_get(j, "prepend");
        if (!json_is_string(p)) return bad(l, path, "Prepend without \"prepend\" string");
        n->str = dup_n(json_string_value(p), json_string_length(p));
        n->str_len = json_string_length(p);
        if (!n->str) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    } else if (!strcmp(type, "Replace")) {
        n->kind = TOK_NORM_REPLACE;
        json_t *c = json_object_get(j, "content");
        if (!json_is_string(c)) return bad(l, path, "Replace without \"content\" string");
        n->str = dup_n(json_string_value(c), json_string_length(c));
        n->str_len = json_string_length(c);
        if (!n->str) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        snprintf(sub, sizeof sub, "%s.pattern", path);
        return parse_pattern(l, json_object_get(j, "pattern"), sub, &n->re);
    } else {
        return unsupported(l, path, type);
    }
    return VESTA_OK;
}

/* ---- pre-tokenizer ---- */

/* The GPT-2 pattern used by ByteLevel(use_regex=true). */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static vesta_status parse_behavior(ld *l, json_t *j, const char *path, tok_split_behavior *b) {
    const char *s = json_string_value(json_object_get(j, "behavior"));
    if (!s) return bad(l, path, "missing \"behavior\"");
    if (!strcmp(s, "Removed")) *b = TOK_SPLIT_REMOVED;
    else if (!strcmp(s, "Isolated")) *b = TOK_SPLIT_ISOLATED;
    else if (!strcmp(s, "MergedWithPrevious")) *b = TOK_SPLIT_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *b = TOK_SPLIT_MERGED_NEXT;
    else if (!strcmp(s, "Contiguous")) *b = TOK_SPLIT_CONTIGUOUS;
    else return bad(l, path, "unknown split behavior");
    return VESTA_OK;
}

static vesta_status parse_prepend_scheme(ld *l, json_t *j, const char *path,
                                         tok_prepend_scheme *ps) {
    json_t *v = json_object_get(j, "prepend_scheme");
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "always")) *ps = TOK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *ps = TOK_PREPEND_FIRST;
        else if (!strcmp(s, "never")) *ps = TOK_PREPEND_NEVER;
        else return bad(l, path, "unknown prepend_scheme");
    } else {
        /* Older files: add_prefix_space (default true) → always / never. */
        *ps = opt_bool(j, "add_prefix_space", true) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    }
    return VESTA_OK;
}

static vesta_status parse_pre(ld *l, json_t *j, const char *path, int depth, tok_pre **out) {
    vesta_error *err = l->err;
    *out = NULL;
    if (depth > 16) return bad(l, path, "nested too deeply");
    if (!json_is_object(j)) return bad(l, path, "expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return bad(l, path, "missing \"type\"");
    tok_pre *p = calloc(1, sizeof *p);
    if (!p) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    *out = p;
    char sub[256];
    if (!strcmp(type, "Sequence")) {
        p->kind = TOK_PRE_SEQUENCE;
        json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr)) return bad(l, path, "Sequence without \"pretokenizers\" array");
        p->children = calloc(json_array_size(arr) + 1, sizeof *p->children);
        if (!p->children) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            vesta_status st = parse_pre(l, json_array_get(arr, i), sub, depth + 1,
                                        &p->children[p->n_children]);
            if (p->children[p->n_children]) p->n_children++;
            if (st != VESTA_OK) return st;
        }
        return VESTA_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = TOK_PRE_BYTELEVEL;
        p->add_prefix_space = opt_bool(j, "add_prefix_space", true);
        p->use_regex = opt_bool(j, "use_regex", true);
        p->behavior = TOK_SPLIT_ISOLATED;
        if (p->use_regex) return tok_regex_compile(&p->re, GPT2_RE, sizeof GPT2_RE - 1, false, l->err);
        return VESTA_OK;
    }
    if (!strcmp(type, "Split")) {
        p->kind = TOK_PRE_SPLIT;
        p->invert = opt_bool(j, "invert", false);
        vesta_status st = parse_behavior(l, j, path, &p->behavior);
        if (st != VESTA_OK) return st;
        snprintf(sub, sizeof sub, "%s.pattern", path);
        return parse_pattern(l, json_object_get(j, "pattern"), sub, &p->re);
    }
    if (!strcmp(type, "Metaspace")) {
        p->kind = TOK_PRE_METASPACE;
        if (!one_char(json_object_get(j, "replacement"), p->repl, &p->repl_len, &p->repl_cp))
            return bad(l, path, "Metaspace \"replacement\" must be one character");
        p->split = opt_bool(j, "split", true);
        return parse_prepend_scheme(l, j, path, &p->prepend);
    }
    if (!strcmp(type, "Digits")) {
        p->kind = TOK_PRE_DIGITS;
        p->individual_digits = opt_bool(j, "individual_digits", false);
        return VESTA_OK;
    }
    return unsupported(l, path, type);
}

/* ---- decoder ---- */

static vesta_status parse_dec(ld *l, json_t *j, const char *path, int depth, tok_dec **out) {
    vesta_error *err = l->err;
    *out = NULL;
    if (depth > 16) return bad(l, path, "nested too deeply");
    if (!json_is_object(j)) return bad(l, path, "expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return bad(l, path, "missing \"type\"");
    tok_dec *d = calloc(1, sizeof *d);
    if (!d) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    *out = d;
    char sub[256];
    if (!strcmp(type, "Sequence")) {
        d->kind = TOK_DEC_SEQUENCE;
        json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr)) return bad(l, path, "Sequence without \"decoders\" array");
        d->children = calloc(json_array_size(arr) + 1, sizeof *d->children);
        if (!d->children) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            vesta_status st = parse_dec(l, json_array_get(arr, i), sub, depth + 1,
                                        &d->children[d->n_children]);
            if (d->children[d->n_children]) d->n_children++;
            if (st != VESTA_OK) return st;
        }
    } else if (!strcmp(type, "ByteLevel")) d->kind = TOK_DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d->kind = TOK_DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->kind = TOK_DEC_FUSE;
    else if (!strcmp(type, "Strip")) {
        d->kind = TOK_DEC_STRIP;
        char tmp[8];
        size_t tl;
        if (!one_char(json_object_get(j, "content"), tmp, &tl, &d->strip_cp))
            return bad(l, path, "Strip \"content\" must be one character");
        json_int_t s = json_integer_value(json_object_get(j, "start"));
        json_int_t e = json_integer_value(json_object_get(j, "stop"));
        if (s < 0 || e < 0 || s > 1 << 20 || e > 1 << 20) return bad(l, path, "Strip start/stop");
        d->strip_start = (size_t)s;
        d->strip_stop = (size_t)e;
    } else if (!strcmp(type, "Replace")) {
        d->kind = TOK_DEC_REPLACE;
        json_t *pat = json_object_get(json_object_get(j, "pattern"), "String");
        json_t *c = json_object_get(j, "content");
        if (!json_is_string(pat))
            return unsupported(l, path, "Replace decoder pattern (only {\"String\": ...})");
        if (!json_is_string(c)) return bad(l, path, "Replace without \"content\" string");
        d->pattern = dup_n(json_string_value(pat), json_string_length(pat));
        d->pattern_len = json_string_length(pat);
        d->content = dup_n(json_string_value(c), json_string_length(c));
        d->content_len = json_string_length(c);
        if (!d->pattern || !d->content) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = TOK_DEC_METASPACE;
        int32_t cp;
        if (!one_char(json_object_get(j, "replacement"), d->repl, &d->repl_len, &cp))
            return bad(l, path, "Metaspace \"replacement\" must be one character");
        return parse_prepend_scheme(l, j, path, &d->prepend);
    } else {
        return unsupported(l, path, type);
    }
    return VESTA_OK;
}

/* ---- post-processor ---- */

static vesta_status parse_post(ld *l, vesta_tokenizer *t, json_t *j, const char *path, int depth,
                               tok_post **out) {
    vesta_error *err = l->err;
    *out = NULL;
    if (depth > 8) return bad(l, path, "nested too deeply");
    if (!json_is_object(j)) return bad(l, path, "expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return bad(l, path, "missing \"type\"");
    tok_post *p = calloc(1, sizeof *p);
    if (!p) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    *out = p;
    char sub[256];
    if (!strcmp(type, "ByteLevel")) {
        p->kind = TOK_POST_NONE; /* only adjusts offsets, which Vesta does not return */
        return VESTA_OK;
    }
    if (!strcmp(type, "Sequence")) {
        p->kind = TOK_POST_SEQUENCE;
        json_t *arr = json_object_get(j, "processors");
        if (!json_is_array(arr)) return bad(l, path, "Sequence without \"processors\" array");
        p->children = calloc(json_array_size(arr) + 1, sizeof *p->children);
        if (!p->children) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            vesta_status st = parse_post(l, t, json_array_get(arr, i), sub, depth + 1,
                                         &p->children[p->n_children]);
            if (p->children[p->n_children]) p->n_children++;
            if (st != VESTA_OK) return st;
        }
        return VESTA_OK;
    }
    if (strcmp(type, "TemplateProcessing")) return unsupported(l, path, type);
    p->kind = TOK_POST_TEMPLATE;
    json_t *single = json_object_get(j, "single");
    json_t *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single)) return bad(l, path, "TemplateProcessing without \"single\" array");
    if (specials && !json_is_object(specials)) return bad(l, path, "special_tokens is not an object");
    p->items = calloc(json_array_size(single) + 1, sizeof *p->items);
    if (!p->items) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i);
        snprintf(sub, sizeof sub, "%s.single[%zu]", path, i);
        tok_post_item *pi = &p->items[p->n_items++];
        json_t *seq = json_object_get(it, "Sequence"), *sp = json_object_get(it, "SpecialToken");
        if (json_is_object(seq)) {
            const char *id = json_string_value(json_object_get(seq, "id"));
            if (!id || strcmp(id, "A")) return unsupported(l, sub, "sequence id (only $A)");
            pi->is_sequence = true;
            continue;
        }
        if (!json_is_object(sp)) return bad(l, sub, "expected Sequence or SpecialToken");
        const char *name = json_string_value(json_object_get(sp, "id"));
        if (!name) return bad(l, sub, "SpecialToken without \"id\"");
        json_t *def = json_object_get(specials, name);
        json_t *ids = json_object_get(def, "ids");
        if (!json_is_array(ids)) return bad(l, sub, "SpecialToken not in special_tokens");
        pi->ids = calloc(json_array_size(ids) + 1, sizeof *pi->ids);
        if (!pi->ids) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < json_array_size(ids); k++) {
            json_t *v = json_array_get(ids, k);
            json_int_t id = json_integer_value(v);
            if (!json_is_integer(v) || id < 0 || (size_t)id >= t->n_ids ||
                t->id_len[id] == UINT32_MAX)
                return bad(l, sub, "special token id is not in the vocabulary");
            pi->ids[pi->n_ids++] = (int32_t)id;
        }
    }
    return VESTA_OK;
}

/* ---- model ---- */

static vesta_status opt_str_field(ld *l, json_t *o, const char *k, const char *path, char **dst,
                                  size_t *len) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return VESTA_OK;
    if (!json_is_string(v)) return bad(l, path, "expected a string or null");
    *dst = dup_n(json_string_value(v), json_string_length(v));
    *len = json_string_length(v);
    return *dst ? VESTA_OK : vesta_error_set(l->err, VESTA_ERR_NOMEM, "out of memory");
}

static vesta_status add_merge(ld *l, vesta_tokenizer *t, const char *a, size_t al, const char *b,
                              size_t bl, size_t rank, size_t i) {
    vesta_error *err = l->err;
    int32_t ia = tok_strmap_get(&t->vocab, a, al), ib = tok_strmap_get(&t->vocab, b, bl);
    if (ia < 0 || ib < 0)
        return FAIL(VESTA_ERR_FORMAT, "%s: field model.merges[%zu]: token \"%.*s\" is not in the vocabulary",
                    l->name, i, (int)(ia < 0 ? al : bl), ia < 0 ? a : b);
    tok_buf cat = {0};
    /* HF forms the merged token as a + b[len(continuing_subword_prefix)..]. */
    size_t skip = t->cont_prefix_len <= bl ? t->cont_prefix_len : bl;
    if (!tok_buf_append(&cat, a, al) || !tok_buf_append(&cat, b + skip, bl - skip)) {
        tok_buf_free(&cat);
        return FAIL(VESTA_ERR_NOMEM, "out of memory");
    }
    int32_t im = tok_strmap_get(&t->vocab, cat.p, cat.n);
    tok_buf_free(&cat);
    if (im < 0)
        return FAIL(VESTA_ERR_FORMAT, "%s: field model.merges[%zu]: merged token \"%.*s%.*s\" is not in the vocabulary",
                    l->name, i, (int)al, a, (int)bl, b);
    bool existed;
    if (!tok_merge_map_put(&t->merges, ia, ib, (uint32_t)rank, im, &existed))
        return FAIL(VESTA_ERR_NOMEM, "out of memory");
    return VESTA_OK;
}

static vesta_status parse_model(ld *l, vesta_tokenizer *t, json_t *m) {
    vesta_error *err = l->err;
    if (!json_is_object(m)) return bad(l, "model", "expected an object");
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (type && strcmp(type, "BPE")) return unsupported(l, "model.type", type);
    if (!type && !json_is_array(merges)) return unsupported(l, "model", "model without type");
    if (!json_is_object(vocab)) return bad(l, "model.vocab", "expected an object");
    if (!json_is_array(merges)) return bad(l, "model.merges", "expected an array");
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) && !json_is_number(dropout))
        return bad(l, "model.dropout", "expected a number or null");
    t->fuse_unk = opt_bool(m, "fuse_unk", false);
    t->byte_fallback = opt_bool(m, "byte_fallback", false);
    t->ignore_merges = opt_bool(m, "ignore_merges", false);
    vesta_status st;
    if ((st = opt_str_field(l, m, "continuing_subword_prefix", "model.continuing_subword_prefix",
                            &t->cont_prefix, &t->cont_prefix_len)) != VESTA_OK ||
        (st = opt_str_field(l, m, "end_of_word_suffix", "model.end_of_word_suffix", &t->eow_suffix,
                            &t->eow_suffix_len)) != VESTA_OK)
        return st;

    size_t nv = json_object_size(vocab);
    if (!tok_strmap_init(&t->vocab, nv) || !tok_strmap_init(&t->all, nv + 1024) ||
        !tok_merge_map_init(&t->merges, json_array_size(merges)))
        return FAIL(VESTA_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        size_t kl = strlen(key); /* jansson keys cannot hold NUL */
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= (1 << 24))
            return FAIL(VESTA_ERR_FORMAT, "%s: field model.vocab[\"%.*s\"]: id must be an integer in [0, 2^24)",
                        l->name, (int)(kl > 64 ? 64 : kl), key);
        if ((size_t)id < t->n_ids && t->id_len[id] != UINT32_MAX)
            return FAIL(VESTA_ERR_FORMAT, "%s: field model.vocab[\"%.*s\"]: duplicate id %lld",
                        l->name, (int)(kl > 64 ? 64 : kl), key, (long long)id);
        bool existed;
        if (!tok_set_id(t, (int32_t)id, key, kl, 0) ||
            !tok_strmap_put(&t->vocab, key, kl, (int32_t)id, &existed) ||
            !tok_strmap_put(&t->all, key, kl, (int32_t)id, &existed))
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *e = json_array_get(merges, i);
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t n = json_string_length(e);
            const char *sp = memchr(s, ' ', n);
            if (!sp) return FAIL(VESTA_ERR_FORMAT, "%s: field model.merges[%zu]: expected \"a b\"", l->name, i);
            st = add_merge(l, t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, i, i);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
            st = add_merge(l, t, json_string_value(a), json_string_length(a), json_string_value(b),
                           json_string_length(b), i, i);
        } else {
            return FAIL(VESTA_ERR_FORMAT, "%s: field model.merges[%zu]: expected \"a b\" or [a, b]", l->name, i);
        }
        if (st != VESTA_OK) return st;
    }
    json_t *unk = json_object_get(m, "unk_token");
    if (json_is_string(unk)) {
        t->unk_id = tok_strmap_get(&t->vocab, json_string_value(unk), json_string_length(unk));
        /* HF accepts an unk_token missing from the vocabulary until it is needed; then it
         * fails. Refusing at load is the clearer equivalent. */
        if (t->unk_id < 0) return bad(l, "model.unk_token", "not in the vocabulary");
    } else if (unk && !json_is_null(unk)) {
        return bad(l, "model.unk_token", "expected a string or null");
    }
    return VESTA_OK;
}

/* ---- added tokens ---- */

static vesta_status parse_added(ld *l, vesta_tokenizer *t, json_t *arr) {
    vesta_error *err = l->err;
    if (!arr || json_is_null(arr)) return VESTA_OK;
    if (!json_is_array(arr)) return bad(l, "added_tokens", "expected an array");
    size_t n = json_array_size(arr);
    t->added = calloc(n + 1, sizeof *t->added);
    if (!t->added) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        json_t *c = json_object_get(o, "content"), *idv = json_object_get(o, "id");
        json_int_t id = json_integer_value(idv);
        if (!json_is_string(c) || !json_is_integer(idv) || id < 0 || id >= (1 << 24))
            return FAIL(VESTA_ERR_FORMAT, "%s: field added_tokens[%zu]: needs string \"content\" and id in [0, 2^24)",
                        l->name, i);
        const char *s = json_string_value(c);
        size_t len = json_string_length(c);
        tok_added *a = &t->added[t->n_added++];
        a->content = dup_n(s, len);
        if (!a->content) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        a->len = len;
        a->special = opt_bool(o, "special", false);
        a->single_word = opt_bool(o, "single_word", false);
        a->lstrip = opt_bool(o, "lstrip", false);
        a->rstrip = opt_bool(o, "rstrip", false);
        a->normalized = opt_bool(o, "normalized", !a->special);
        /* A spelling already in the model vocabulary keeps the model's id (HF add_tokens). */
        int32_t mid = tok_strmap_get(&t->vocab, s, len);
        if (mid >= 0) {
            a->id = mid;
        } else {
            a->id = (int32_t)id;
            if ((size_t)id < t->n_ids && t->id_len[id] != UINT32_MAX) {
                size_t ol;
                const char *os = vesta_tokenizer_id_to_token(t, (int32_t)id, &ol);
                if (ol != len || memcmp(os, s, len))
                    return FAIL(VESTA_ERR_FORMAT, "%s: field added_tokens[%zu]: id %lld already names another token",
                                l->name, i, (long long)id);
            } else if (!tok_set_id(t, (int32_t)id, s, len, 0)) {
                return FAIL(VESTA_ERR_NOMEM, "out of memory");
            }
        }
        t->id_flags[a->id] |= TOK_ID_ADDED | (a->special ? TOK_ID_SPECIAL : 0);
        bool existed;
        if (!tok_strmap_put(&t->all, s, len, a->id, &existed))
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
    }
    return VESTA_OK;
}

/* ---- tokenizer_config.json ---- */

bool tok_set_special_str(vesta_tokenizer *t, char **dst, int32_t *dst_id, const char *s) {
    free(*dst);
    *dst = strdup(s);
    if (!*dst) return false;
    *dst_id = tok_strmap_get(&t->all, s, strlen(s));
    return true;
}

static vesta_status config_token(ld *l, vesta_tokenizer *t, json_t *cfg, const char *key,
                                 char **dst, int32_t *dst_id) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return VESTA_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return bad(l, key, "expected a string or {\"content\": string}");
    if (!tok_set_special_str(t, dst, dst_id, json_string_value(v)))
        return vesta_error_set(l->err, VESTA_ERR_NOMEM, "out of memory");
    return VESTA_OK;
}

static bool add_template(vesta_tokenizer *t, const char *name, const char *body) {
    char **nn = realloc(t->tpl_names, (t->n_tpl + 1) * sizeof *nn);
    if (!nn) return false;
    t->tpl_names = nn;
    char **bb = realloc(t->tpl_bodies, (t->n_tpl + 1) * sizeof *bb);
    if (!bb) return false;
    t->tpl_bodies = bb;
    t->tpl_names[t->n_tpl] = strdup(name);
    t->tpl_bodies[t->n_tpl] = strdup(body);
    if (!t->tpl_names[t->n_tpl] || !t->tpl_bodies[t->n_tpl]) {
        free(t->tpl_names[t->n_tpl]);
        free(t->tpl_bodies[t->n_tpl]);
        return false;
    }
    t->n_tpl++;
    return true;
}

vesta_status tok_load_config(vesta_tokenizer *t, const char *json, size_t len, const char *name,
                             vesta_error *err) {
    json_error_t je;
    /* Reals for integers: configs carry values like model_max_length = 1e30 as integers. */
    json_t *cfg = json_loadb(json, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!cfg) return FAIL(VESTA_ERR_FORMAT, "%s: line %d: %s", name, je.line, je.text);
    ld l = {name, err};
    vesta_status st = VESTA_OK;
    if (!json_is_object(cfg)) {
        st = bad(&l, "(root)", "expected an object");
        goto done;
    }
    if ((st = config_token(&l, t, cfg, "bos_token", &t->bos_tok, &t->bos_id)) ||
        (st = config_token(&l, t, cfg, "eos_token", &t->eos_tok, &t->eos_id)) ||
        (st = config_token(&l, t, cfg, "pad_token", &t->pad_tok, &t->pad_id)) ||
        (st = config_token(&l, t, cfg, "unk_token", &t->unk_tok, &t->unk_cfg_id)))
        goto done;
    t->add_bos = opt_bool(cfg, "add_bos_token", false);
    t->add_eos = opt_bool(cfg, "add_eos_token", false);
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) {
        if (!add_template(t, "default", json_string_value(ct))) st = FAIL(VESTA_ERR_NOMEM, "out of memory");
    } else if (json_is_array(ct)) {
        for (size_t i = 0; i < json_array_size(ct); i++) {
            json_t *e = json_array_get(ct, i);
            const char *n = json_string_value(json_object_get(e, "name"));
            const char *b = json_string_value(json_object_get(e, "template"));
            if (!n || !b) {
                st = bad(&l, "chat_template", "list entries need string \"name\" and \"template\"");
                goto done;
            }
            if (!add_template(t, n, b)) {
                st = FAIL(VESTA_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    } else if (ct && !json_is_null(ct)) {
        st = bad(&l, "chat_template", "expected a string or a list");
    }
done:
    json_decref(cfg);
    return st;
}

/* ---- entry points ---- */

vesta_tokenizer *vesta_tokenizer_load_json(const char *json, size_t json_len, const char *config,
                                           size_t config_len, const char *name, vesta_error *err) {
    if (!name) name = "tokenizer.json";
    json_error_t je;
    json_t *root = json_loadb(json, json_len, 0, &je);
    if (!root) {
        FAIL(VESTA_ERR_FORMAT, "%s: line %d column %d: %s", name, je.line, je.column, je.text);
        return NULL;
    }
    vesta_tokenizer *t = tok_alloc();
    ld l = {name, err};
    vesta_status st = VESTA_OK;
    if (!t) {
        st = FAIL(VESTA_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!json_is_object(root)) {
        st = bad(&l, "(root)", "expected an object");
        goto done;
    }
    json_t *v;
    if ((st = parse_model(&l, t, json_object_get(root, "model"))) != VESTA_OK) goto done;
    if ((st = parse_added(&l, t, json_object_get(root, "added_tokens"))) != VESTA_OK) goto done;
    if ((v = json_object_get(root, "normalizer")) && !json_is_null(v) &&
        (st = parse_norm(&l, v, "normalizer", 0, &t->norm)) != VESTA_OK)
        goto done;
    if ((v = json_object_get(root, "pre_tokenizer")) && !json_is_null(v) &&
        (st = parse_pre(&l, v, "pre_tokenizer", 0, &t->pre)) != VESTA_OK)
        goto done;
    if ((v = json_object_get(root, "post_processor")) && !json_is_null(v) &&
        (st = parse_post(&l, t, v, "post_processor", 0, &t->post)) != VESTA_OK)
        goto done;
    if ((v = json_object_get(root, "decoder")) && !json_is_null(v) &&
        (st = parse_dec(&l, v, "decoder", 0, &t->dec)) != VESTA_OK)
        goto done;
    if ((v = json_object_get(root, "truncation")) && !json_is_null(v)) {
        st = unsupported(&l, "truncation", "truncation settings");
        goto done;
    }
    if ((v = json_object_get(root, "padding")) && !json_is_null(v)) {
        st = unsupported(&l, "padding", "padding settings");
        goto done;
    }
    if ((st = tok_finish_load(t, name, err)) != VESTA_OK) goto done;
    if (config && (st = tok_load_config(t, config, config_len, "tokenizer_config.json", err)) != VESTA_OK)
        goto done;
done:
    json_decref(root);
    if (st != VESTA_OK) {
        vesta_tokenizer_release(t);
        return NULL;
    }
    return t;
}

static char *read_file(const char *path, size_t *len, vesta_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        FAIL(VESTA_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    tok_buf b = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!tok_buf_append(&b, chunk, k)) {
            fclose(f);
            tok_buf_free(&b);
            FAIL(VESTA_ERR_NOMEM, "%s: out of memory", path);
            return NULL;
        }
    }
    bool bad_read = ferror(f);
    fclose(f);
    if (bad_read) {
        tok_buf_free(&b);
        FAIL(VESTA_ERR_IO, "%s: read error", path);
        return NULL;
    }
    if (!b.p && !tok_buf_append(&b, "", 0)) return NULL;
    *len = b.n;
    return b.p;
}

static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char m[4] = {0};
    size_t k = fread(m, 1, 4, f);
    fclose(f);
    return k == 4 && !memcmp(m, "GGUF", 4);
}

vesta_tokenizer *vesta_tokenizer_load(const char *path, vesta_error *err) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0) {
        FAIL(VESTA_ERR_IO, "%s: %s", path ? path : "(null)", strerror(errno));
        return NULL;
    }
    if (S_ISREG(sb.st_mode) && is_gguf(path)) {
        vesta_gguf *g = vesta_gguf_open(path, err);
        if (!g) return NULL;
        vesta_tokenizer *t = vesta_tokenizer_load_gguf(g, err);
        if (!t) vesta_error_prefix(err, "%s", path);
        vesta_gguf_close(g);
        return t;
    }
    tok_buf jpath = {0}, cpath = {0};
    bool ok;
    if (S_ISDIR(sb.st_mode)) {
        ok = tok_buf_append(&jpath, path, strlen(path)) && tok_buf_append(&jpath, "/tokenizer.json", 15) &&
             tok_buf_append(&cpath, path, strlen(path)) &&
             tok_buf_append(&cpath, "/tokenizer_config.json", 22);
    } else {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
        ok = tok_buf_append(&jpath, path, strlen(path)) && tok_buf_append(&cpath, path, dl) &&
             tok_buf_append(&cpath, "tokenizer_config.json", 21);
    }
    vesta_tokenizer *t = NULL;
    char *json = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    if (!ok) {
        FAIL(VESTA_ERR_NOMEM, "out of memory");
        goto done;
    }
    json = read_file(jpath.p, &jl, err);
    if (!json) goto done;
    struct stat cs;
    if (stat(cpath.p, &cs) == 0 && S_ISREG(cs.st_mode)) {
        cfg = read_file(cpath.p, &cl, err);
        if (!cfg) goto done;
    }
    t = vesta_tokenizer_load_json(json, jl, NULL, 0, jpath.p, err);
    if (t && cfg && tok_load_config(t, cfg, cl, cpath.p, err) != VESTA_OK) {
        vesta_tokenizer_release(t);
        t = NULL;
    }
done:
    free(json);
    free(cfg);
    tok_buf_free(&jpath);
    tok_buf_free(&cpath);
    return t;
}
