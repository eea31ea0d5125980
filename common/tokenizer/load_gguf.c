/* GGUF tokenizer (tokenizer.ggml.*) → the same in-memory model as tokenizer.json.
 * Supported: tokenizer.ggml.model "gpt2" (byte-level BPE) with the pre-tokenizer named by
 * tokenizer.ggml.pre, mapped to the Hugging Face pre-tokenizer of the original model (the same
 * regexes llama.cpp uses), and "llama" (SentencePiece BPE) rebuilt as transformers does. Control tokens (token_type 3) become special added tokens and
 * user-defined ones (4) non-special added tokens, as transformers' GGUF converter does. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "vesta/gguf.h"
#include "vesta/tokenizer.h"

#define FAIL(code, ...) vesta_error_set(err, code, __VA_ARGS__)

static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Builds the pre-tokenizer for a tokenizer.ggml.pre name. */
static vesta_status make_pre(const char *pre, size_t len, tok_pre **out, vesta_error *err) {
    *out = NULL;
    enum { GPT2, LLAMA3, QWEN2, DIGITS_GPT2 } kind;
#define IS(s) (len == sizeof(s) - 1 && !memcmp(pre, s, len))
    if (!pre || IS("default") || IS("gpt2") || IS("gpt-2")) kind = GPT2;
    else if (IS("llama3") || IS("llama-bpe") || IS("llama-v3") || IS("smaug-bpe")) kind = LLAMA3;
    else if (IS("qwen2")) kind = QWEN2;
    else if (IS("smollm") || IS("starcoder") || IS("refact")) kind = DIGITS_GPT2;
    else
        return FAIL(VESTA_ERR_UNSUPPORTED, "field tokenizer.ggml.pre: unsupported pre-tokenizer \"%.*s\"",
                    (int)(len > 64 ? 64 : len), pre);
#undef IS
    tok_pre *seq = calloc(1, sizeof *seq);
    if (!seq) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    *out = seq;
    seq->kind = TOK_PRE_SEQUENCE;
    seq->children = calloc(2, sizeof *seq->children);
    if (!seq->children) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    tok_pre *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    if (a) seq->children[seq->n_children++] = a;
    if (b) seq->children[seq->n_children++] = b;
    if (!a || !b) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    b->kind = TOK_PRE_BYTELEVEL;
    b->add_prefix_space = false;
    if (kind == GPT2 || kind == DIGITS_GPT2) {
        /* HF: [Digits(individual_digits=true)], ByteLevel(use_regex=true) */
        if (kind == DIGITS_GPT2) {
            a->kind = TOK_PRE_DIGITS;
            a->individual_digits = true;
        } else {
            seq->children[0] = b;
            seq->n_children = 1;
            free(a);
        }
        b->use_regex = true;
        b->behavior = TOK_SPLIT_ISOLATED;
        return tok_regex_compile(&b->re, RE_GPT2, sizeof RE_GPT2 - 1, false, err);
    }
    /* HF: Split(regex, Isolated), ByteLevel(use_regex=false) */
    a->kind = TOK_PRE_SPLIT;
    a->behavior = TOK_SPLIT_ISOLATED;
    b->use_regex = false;
    const char *re = kind == LLAMA3 ? RE_LLAMA3 : RE_QWEN2;
    return tok_regex_compile(&a->re, re, strlen(re), false, err);
}

static bool get_id(const vesta_gguf *g, const char *key, int32_t *out) {
    int64_t v;
    if (!vesta_gguf_get_i64(g, key, &v) || v < 0 || v >= (1 << 24)) return false;
    *out = (int32_t)v;
    return true;
}

static vesta_status load_templates(vesta_tokenizer *t, const vesta_gguf *g, vesta_error *err) {
    vesta_gguf_str s;
    if (vesta_gguf_get_str(g, "tokenizer.chat_template", &s)) {
        t->tpl_names = calloc(1, sizeof *t->tpl_names);
        t->tpl_bodies = calloc(1, sizeof *t->tpl_bodies);
        if (!t->tpl_names || !t->tpl_bodies) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        t->tpl_names[0] = strdup("default");
        t->tpl_bodies[0] = malloc(s.len + 1);
        if (!t->tpl_names[0] || !t->tpl_bodies[0]) {
            free(t->tpl_names[0]);
            free(t->tpl_bodies[0]);
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
        }
        if (s.len) memcpy(t->tpl_bodies[0], s.ptr, s.len);
        t->tpl_bodies[0][s.len] = 0;
        t->n_tpl = 1;
    }
    vesta_gguf_type et;
    uint64_t n;
    if (!vesta_gguf_get_array(g, "tokenizer.chat_templates", &et, &n) || et != VESTA_GGUF_STRING)
        return VESTA_OK;
    for (uint64_t i = 0; i < n && i < 64; i++) {
        vesta_gguf_str name;
        if (!vesta_gguf_array_str(g, "tokenizer.chat_templates", i, &name) || name.len > 200) continue;
        char key[256];
        snprintf(key, sizeof key, "tokenizer.chat_template.%.*s", (int)name.len, name.ptr);
        vesta_gguf_str body;
        if (!vesta_gguf_get_str(g, key, &body)) continue;
        char **nn = realloc(t->tpl_names, (t->n_tpl + 1) * sizeof *nn);
        if (!nn) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        t->tpl_names = nn;
        char **bb = realloc(t->tpl_bodies, (t->n_tpl + 1) * sizeof *bb);
        if (!bb) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        t->tpl_bodies = bb;
        char *nm = malloc(name.len + 1), *bd = malloc(body.len + 1);
        if (!nm || !bd) {
            free(nm);
            free(bd);
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
        }
        if (name.len) memcpy(nm, name.ptr, name.len);
        nm[name.len] = 0;
        if (body.len) memcpy(bd, body.ptr, body.len);
        bd[body.len] = 0;
        t->tpl_names[t->n_tpl] = nm;
        t->tpl_bodies[t->n_tpl] = bd;
        t->n_tpl++;
    }
    return VESTA_OK;
}

static vesta_status load_vocab(vesta_tokenizer *t, const vesta_gguf *g, vesta_error *err) {
    vesta_gguf_type et, tt;
    uint64_t n, ntypes;
    if (!vesta_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n) || et != VESTA_GGUF_STRING)
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.tokens: missing or not a string array");
    if (n == 0 || n >= (1 << 24))
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.tokens: %llu tokens is out of range",
                    (unsigned long long)n);
    bool have_types = vesta_gguf_get_array(g, "tokenizer.ggml.token_type", &tt, &ntypes);
    if (have_types && ntypes != n)
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.token_type: %llu entries for %llu tokens",
                    (unsigned long long)ntypes, (unsigned long long)n);
    if (!tok_strmap_init(&t->vocab, n) || !tok_strmap_init(&t->all, n))
        return FAIL(VESTA_ERR_NOMEM, "out of memory");
    size_t n_added = 0;
    t->added = calloc(n + 4, sizeof *t->added); /* + the configured special tokens */
    if (!t->added) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        vesta_gguf_str s;
        int64_t type = 1;
        if (!vesta_gguf_array_str(g, "tokenizer.ggml.tokens", i, &s))
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.tokens[%llu]: unreadable", (unsigned long long)i);
        if (have_types && !vesta_gguf_array_i64(g, "tokenizer.ggml.token_type", i, &type))
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.token_type[%llu]: not an integer",
                        (unsigned long long)i);
        if (tok_utf8_valid_prefix(s.ptr, s.len) != s.len)
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.tokens[%llu]: not valid UTF-8",
                        (unsigned long long)i);
        bool existed;
        if (!tok_set_id(t, (int32_t)i, s.ptr, s.len, 0) ||
            !tok_strmap_put(&t->vocab, s.ptr, s.len, (int32_t)i, &existed))
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
        if (existed)
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.tokens[%llu]: duplicate token \"%.*s\"",
                        (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr);
        if (!tok_strmap_put(&t->all, s.ptr, s.len, (int32_t)i, &existed))
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
        if (type == 3 || type == 4) {
            tok_added *a = &t->added[n_added++];
            t->n_added = n_added; /* so that release() frees it if a later check fails */
            a->content = malloc(s.len + 1);
            if (!a->content) return FAIL(VESTA_ERR_NOMEM, "out of memory");
            if (s.len) memcpy(a->content, s.ptr, s.len);
            a->content[s.len] = 0;
            a->len = s.len;
            a->id = (int32_t)i;
            a->special = type == 3;
            a->normalized = false;
            t->id_flags[i] |= TOK_ID_ADDED | (a->special ? TOK_ID_SPECIAL : 0);
        } else if (type == 6 && !(s.len == 6 && !memcmp(s.ptr, "<0x", 3) && s.ptr[5] == '>' &&
                                  strchr("0123456789ABCDEF", s.ptr[3]) && s.ptr[3] &&
                                  strchr("0123456789ABCDEF", s.ptr[4]) && s.ptr[4])) {
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.tokens[%llu]: byte token \"%.*s\" is not <0xNN>",
                        (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr);
        } else if (type < 1 || type > 6) {
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.token_type[%llu]: unknown type %lld",
                        (unsigned long long)i, (long long)type);
        }
    }
    t->n_added = n_added;
    return VESTA_OK;
}

typedef struct gen_merge {
    int32_t l, r, merged;
    float score;
    uint32_t len_l, len_r; /* in code points */
    uint32_t order;        /* position before sorting (the sort must be stable) */
} gen_merge;

static int cmp_local(const void *a, const void *b) {
    const gen_merge *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    if (x->r != y->r) return x->r < y->r ? -1 : 1;
    return 0;
}

/* Python sorted(key=(score, len_l, len_r), reverse=True), which is stable. */
static int cmp_global(const void *a, const void *b) {
    const gen_merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->len_l != y->len_l) return x->len_l > y->len_l ? -1 : 1;
    if (x->len_r != y->len_r) return x->len_r > y->len_r ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

/* A SentencePiece vocabulary without merges: they are recovered from the vocabulary and the
 * scores exactly as transformers' generate_merges does (every split of every token into two
 * vocabulary tokens, ordered by the token's score, then by the pieces' lengths). */
static vesta_status generate_merges(vesta_tokenizer *t, const vesta_gguf *g, vesta_error *err) {
    vesta_gguf_type et;
    uint64_t ns;
    if (!vesta_gguf_get_array(g, "tokenizer.ggml.scores", &et, &ns) || et != VESTA_GGUF_FLOAT32)
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.scores: missing or not a float32 array");
    if (ns != t->n_ids)
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.scores: %llu entries for %zu tokens",
                    (unsigned long long)ns, t->n_ids);
    gen_merge *all = NULL, *local = NULL;
    size_t n_all = 0, cap_all = 0, cap_local = 0;
    vesta_status st = VESTA_OK;
    for (size_t id = 0; id < t->n_ids && st == VESTA_OK; id++) {
        size_t len;
        const char *s = vesta_tokenizer_id_to_token(t, (int32_t)id, &len);
        double score;
        if (!vesta_gguf_array_f64(g, "tokenizer.ggml.scores", id, &score)) {
            st = FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.scores[%zu]: unreadable", id);
            break;
        }
        size_t n_local = 0, cp_l = 0, total_cp = 0;
        for (size_t i = 0; i < len;) {
            int32_t c;
            i += (size_t)tok_utf8_decode(s + i, len - i, &c);
            total_cp++;
        }
        for (size_t k = 0; k < len;) {
            int32_t c;
            k += (size_t)tok_utf8_decode(s + k, len - k, &c);
            cp_l++;
            if (k >= len) break;
            int32_t l = tok_strmap_get(&t->vocab, s, k), r = tok_strmap_get(&t->vocab, s + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n_local == cap_local) {
                cap_local = cap_local ? cap_local * 2 : 16;
                gen_merge *v = realloc(local, cap_local * sizeof *v);
                if (!v) {
                    st = FAIL(VESTA_ERR_NOMEM, "out of memory");
                    break;
                }
                local = v;
            }
            local[n_local++] = (gen_merge){l, r, (int32_t)id, (float)score, (uint32_t)cp_l,
                                           (uint32_t)(total_cp - cp_l), 0};
        }
        if (st != VESTA_OK) break;
        if (n_local) qsort(local, n_local, sizeof *local, cmp_local);
        if (n_all + n_local > cap_all) {
            size_t cap = cap_all ? cap_all : 1024;
            while (cap < n_all + n_local) cap *= 2;
            gen_merge *v = realloc(all, cap * sizeof *v);
            if (!v) {
                st = FAIL(VESTA_ERR_NOMEM, "out of memory");
                break;
            }
            all = v;
            cap_all = cap;
        }
        for (size_t i = 0; i < n_local; i++) {
            local[i].order = (uint32_t)n_all;
            all[n_all++] = local[i];
        }
    }
    if (st == VESTA_OK) {
        if (n_all) qsort(all, n_all, sizeof *all, cmp_global);
        if (!tok_merge_map_init(&t->merges, n_all)) st = FAIL(VESTA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == VESTA_OK && i < n_all; i++) {
            bool existed;
            if (!tok_merge_map_put(&t->merges, all[i].l, all[i].r, (uint32_t)i, all[i].merged, &existed))
                st = FAIL(VESTA_ERR_NOMEM, "out of memory");
        }
    }
    free(all);
    free(local);
    return st;
}

static vesta_status load_merges(vesta_tokenizer *t, const vesta_gguf *g, bool spm, vesta_error *err) {
    vesta_gguf_type et;
    uint64_t n;
    if (spm && !vesta_gguf_has_key(g, "tokenizer.ggml.merges")) return generate_merges(t, g, err);
    if (!vesta_gguf_get_array(g, "tokenizer.ggml.merges", &et, &n) || et != VESTA_GGUF_STRING)
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.merges: missing or not a string array");
    if (!tok_merge_map_init(&t->merges, n)) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    tok_buf cat = {0};
    for (uint64_t i = 0; i < n; i++) {
        vesta_gguf_str s;
        if (!vesta_gguf_array_str(g, "tokenizer.ggml.merges", i, &s)) goto bad;
        const char *sp = memchr(s.ptr, ' ', s.len);
        if (!sp) goto bad;
        size_t al = (size_t)(sp - s.ptr), bl = s.len - al - 1;
        int32_t a = tok_strmap_get(&t->vocab, s.ptr, al), b = tok_strmap_get(&t->vocab, sp + 1, bl);
        cat.n = 0;
        if (!tok_buf_append(&cat, s.ptr, al) || !tok_buf_append(&cat, sp + 1, bl)) {
            tok_buf_free(&cat);
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
        }
        int32_t m = tok_strmap_get(&t->vocab, cat.p, cat.n);
        if (a < 0 || b < 0 || m < 0) {
            tok_buf_free(&cat);
            return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.merges[%llu]: \"%.*s\" refers to a token not in the vocabulary",
                        (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr);
        }
        bool existed;
        if (!tok_merge_map_put(&t->merges, a, b, (uint32_t)i, m, &existed)) {
            tok_buf_free(&cat);
            return FAIL(VESTA_ERR_NOMEM, "out of memory");
        }
        continue;
    bad:
        tok_buf_free(&cat);
        return FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.merges[%llu]: expected \"a b\"", (unsigned long long)i);
    }
    tok_buf_free(&cat);
    return VESTA_OK;
}

static vesta_status special_ids(vesta_tokenizer *t, const vesta_gguf *g, vesta_error *err) {
    static const struct {
        const char *key;
        size_t off_id, off_str;
    } keys[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(vesta_tokenizer, bos_id), offsetof(vesta_tokenizer, bos_tok)},
        {"tokenizer.ggml.eos_token_id", offsetof(vesta_tokenizer, eos_id), offsetof(vesta_tokenizer, eos_tok)},
        {"tokenizer.ggml.padding_token_id", offsetof(vesta_tokenizer, pad_id), offsetof(vesta_tokenizer, pad_tok)},
        {"tokenizer.ggml.unknown_token_id", offsetof(vesta_tokenizer, unk_cfg_id), offsetof(vesta_tokenizer, unk_tok)},
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        if (!vesta_gguf_has_key(g, keys[k].key)) continue;
        int32_t id;
        if (!get_id(g, keys[k].key, &id) || (size_t)id >= t->n_ids)
            return FAIL(VESTA_ERR_FORMAT, "field %s: not a token id of the vocabulary", keys[k].key);
        *(int32_t *)((char *)t + keys[k].off_id) = id;
        char **dst = (char **)((char *)t + keys[k].off_str);
        size_t len;
        const char *s = vesta_tokenizer_id_to_token(t, id, &len);
        *dst = malloc(len + 1);
        if (!*dst) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        memcpy(*dst, s, len);
        (*dst)[len] = 0;
    }
    bool b;
    if (vesta_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (vesta_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;
    return VESTA_OK;
}

/* BOS/EOS added by encode(add_special_tokens) follow add_bos_token/add_eos_token. */
static vesta_status make_post(vesta_tokenizer *t, vesta_error *err) {
    t->post = calloc(1, sizeof *t->post);
    if (!t->post) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    t->post->kind = TOK_POST_TEMPLATE;
    t->post->items = calloc(3, sizeof *t->post->items);
    if (!t->post->items) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    tok_post_item *it = t->post->items;
    if (t->add_bos && t->bos_id >= 0) {
        it->ids = malloc(sizeof *it->ids);
        if (!it->ids) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        it->ids[0] = t->bos_id;
        it->n_ids = 1;
        it++;
    }
    it->is_sequence = true;
    it++;
    if (t->add_eos && t->eos_id >= 0) {
        it->ids = malloc(sizeof *it->ids);
        if (!it->ids) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        it->ids[0] = t->eos_id;
        it->n_ids = 1;
        it++;
    }
    t->post->n_items = (size_t)(it - t->post->items);
    return VESTA_OK;
}

/* SentencePiece pipeline of transformers' LlamaTokenizer (what its GGUF converter builds):
 * Metaspace(prepend_scheme=first, split=false), byte fallback, fuse_unk, no unk token, and the
 * decoders Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0). */
static vesta_status make_spm(vesta_tokenizer *t, vesta_error *err) {
    t->byte_fallback = true;
    t->fuse_unk = true;
    t->pre = calloc(1, sizeof *t->pre);
    if (!t->pre) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    t->pre->kind = TOK_PRE_METASPACE;
    memcpy(t->pre->repl, "\xe2\x96\x81", 3);
    t->pre->repl_len = 3;
    t->pre->repl_cp = 0x2581;
    t->pre->prepend = TOK_PREPEND_FIRST;
    t->pre->split = false;
    tok_dec *seq = calloc(1, sizeof *seq);
    if (!seq) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    t->dec = seq;
    seq->kind = TOK_DEC_SEQUENCE;
    seq->children = calloc(4, sizeof *seq->children);
    if (!seq->children) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    static const tok_dec_kind kinds[4] = {TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP};
    for (int i = 0; i < 4; i++) {
        tok_dec *d = calloc(1, sizeof *d);
        if (!d) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        seq->children[seq->n_children++] = d;
        d->kind = kinds[i];
    }
    tok_dec *rep = seq->children[0], *strip = seq->children[3];
    rep->pattern = strdup("\xe2\x96\x81");
    rep->content = strdup(" ");
    if (!rep->pattern || !rep->content) return FAIL(VESTA_ERR_NOMEM, "out of memory");
    rep->pattern_len = 3;
    rep->content_len = 1;
    strip->strip_cp = ' ';
    strip->strip_start = 1;
    return VESTA_OK;
}

/* The configured bos/eos/unk/pad tokens are special added tokens (transformers registers them
 * so), whatever their token_type. */
static vesta_status special_config_tokens(vesta_tokenizer *t, vesta_error *err) {
    int32_t ids[4] = {t->bos_id, t->eos_id, t->unk_cfg_id, t->pad_id};
    for (int k = 0; k < 4; k++) {
        int32_t id = ids[k];
        if (id < 0 || (t->id_flags[id] & TOK_ID_ADDED)) continue;
        size_t len;
        const char *s = vesta_tokenizer_id_to_token(t, id, &len);
        tok_added *a = &t->added[t->n_added];
        memset(a, 0, sizeof *a);
        a->content = malloc(len + 1);
        if (!a->content) return FAIL(VESTA_ERR_NOMEM, "out of memory");
        if (len) memcpy(a->content, s, len);
        a->content[len] = 0;
        a->len = len;
        a->id = id;
        a->special = true;
        t->n_added++;
        t->id_flags[id] |= TOK_ID_ADDED | TOK_ID_SPECIAL;
    }
    return VESTA_OK;
}

vesta_tokenizer *vesta_tokenizer_load_gguf(const vesta_gguf *g, vesta_error *err) {
    vesta_gguf_str model, pre, arch;
    if (!vesta_gguf_get_str(g, "tokenizer.ggml.model", &model)) {
        FAIL(VESTA_ERR_FORMAT, "field tokenizer.ggml.model: missing");
        return NULL;
    }
    bool gpt2 = model.len == 4 && !memcmp(model.ptr, "gpt2", 4);
    bool spm = model.len == 5 && !memcmp(model.ptr, "llama", 5);
    if (!gpt2 && !spm) {
        FAIL(VESTA_ERR_UNSUPPORTED, "field tokenizer.ggml.model: unsupported tokenizer \"%.*s\" (\"gpt2\" and \"llama\" are)",
             (int)(model.len > 64 ? 64 : model.len), model.ptr);
        return NULL;
    }
    if (spm && vesta_gguf_get_str(g, "general.architecture", &arch) &&
        ((arch.len >= 5 && !memcmp(arch.ptr, "gemma", 5)) || (arch.len == 4 && !memcmp(arch.ptr, "phi3", 4)))) {
        /* transformers rebuilds these SentencePiece tokenizers differently (respelled space
         * tokens, file-order merges, a Prepend normalizer); not implemented. */
        FAIL(VESTA_ERR_UNSUPPORTED, "field general.architecture: SentencePiece GGUF tokenizer of \"%.*s\" is not supported; use its tokenizer.json",
             (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
        return NULL;
    }
    bool has_pre = vesta_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    vesta_tokenizer *t = tok_alloc();
    if (!t) {
        FAIL(VESTA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (spm) t->add_bos = true; /* llama.cpp and transformers default for SentencePiece files */
    vesta_status st;
    if ((st = load_vocab(t, g, err)) != VESTA_OK || (st = load_merges(t, g, spm, err)) != VESTA_OK ||
        (st = special_ids(t, g, err)) != VESTA_OK || (st = special_config_tokens(t, err)) != VESTA_OK ||
        (st = make_post(t, err)) != VESTA_OK || (st = load_templates(t, g, err)) != VESTA_OK)
        goto fail;
    if (spm) {
        if ((st = make_spm(t, err)) != VESTA_OK) goto fail;
    } else {
        if ((st = make_pre(has_pre ? pre.ptr : NULL, has_pre ? pre.len : 0, &t->pre, err)) != VESTA_OK)
            goto fail;
        t->dec = calloc(1, sizeof *t->dec);
        if (!t->dec) {
            FAIL(VESTA_ERR_NOMEM, "out of memory");
            goto fail;
        }
        t->dec->kind = TOK_DEC_BYTELEVEL;
    }
    if ((st = tok_finish_load(t, "gguf", err)) != VESTA_OK) goto fail;
    return t;
fail:
    vesta_tokenizer_release(t);
    return NULL;
}
