/* The encode/decode pipeline, following HF tokenizers' TokenizerImpl:
 *   added tokens that are not normalized are split out of the raw text → each remaining piece is
 *   normalized → normalized added tokens are split out → pre-tokenizer → BPE → post-processor.
 * Decode: ids → token strings (special ones dropped when asked) → decoder chain → concatenation. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "vesta/tokenizer.h"

static vesta_status nomem(vesta_error *err) {
    return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
}

vesta_tokenizer *tok_alloc(void) {
    vesta_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = -1;
    t->bos_id = t->eos_id = t->pad_id = t->unk_cfg_id = -1;
    for (int i = 0; i < 256; i++) t->byte_ids[i] = -1;
    return t;
}

#define TOK_MAX_ID (1 << 24) /* larger vocabularies are refused as hostile */

bool tok_set_id(vesta_tokenizer *t, int32_t id, const char *s, size_t n, uint8_t flags) {
    if (id < 0 || id >= TOK_MAX_ID || n > UINT32_MAX / 2) return false;
    if ((size_t)id >= t->n_ids) {
        /* Capacity grows geometrically (id_cap); n_ids is 1 + the largest id seen. */
        size_t want = (size_t)id + 1;
        if (want <= t->id_cap) {
            for (size_t i = t->n_ids; i < want; i++) t->id_len[i] = UINT32_MAX, t->id_flags[i] = 0;
            t->n_ids = want;
            goto set;
        }
        size_t cap = t->id_cap ? t->id_cap : 1024;
        while (cap < want) cap *= 2;
        uint32_t *off = realloc(t->id_off, cap * sizeof *off);
        if (!off) return false;
        t->id_off = off;
        uint32_t *len = realloc(t->id_len, cap * sizeof *len);
        if (!len) return false;
        t->id_len = len;
        uint8_t *fl = realloc(t->id_flags, cap);
        if (!fl) return false;
        t->id_flags = fl;
        for (size_t i = t->n_ids; i < want; i++) t->id_len[i] = UINT32_MAX, t->id_flags[i] = 0;
        t->n_ids = want;
        t->id_cap = cap;
    }
set:
    if (t->strings.n > UINT32_MAX - n) return false;
    t->id_off[id] = (uint32_t)t->strings.n;
    t->id_len[id] = (uint32_t)n;
    t->id_flags[id] |= flags;
    return tok_buf_append(&t->strings, s, n);
}

/* ---- trie ---- */

static int32_t trie_node(tok_trie *tr, uint8_t byte) {
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 256;
        tok_trie_node *v = realloc(tr->nodes, cap * sizeof *v);
        if (!v) return -1;
        tr->nodes = v;
        tr->cap = cap;
    }
    tr->nodes[tr->n] = (tok_trie_node){-1, -1, -1, byte};
    return (int32_t)tr->n++;
}

vesta_status tok_trie_build(tok_trie *tr, const tok_added *added, size_t n, bool normalized) {
    memset(tr, 0, sizeof *tr);
    tr->empty = true;
    if (trie_node(tr, 0) < 0) return VESTA_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const tok_added *a = &added[i];
        if (a->normalized != normalized) continue;
        const char *s = normalized ? a->norm_content : a->content;
        size_t len = normalized ? a->norm_len : a->len;
        if (!len) continue;
        int32_t cur = 0;
        for (size_t k = 0; k < len; k++) {
            uint8_t b = (uint8_t)s[k];
            int32_t c = tr->nodes[cur].first_child;
            while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].next_sibling;
            if (c < 0) {
                c = trie_node(tr, b);
                if (c < 0) return VESTA_ERR_NOMEM;
                tr->nodes[c].next_sibling = tr->nodes[cur].first_child;
                tr->nodes[cur].first_child = c;
            }
            cur = c;
        }
        /* The first token with a given spelling wins, like a map keyed by content. */
        if (tr->nodes[cur].token < 0) tr->nodes[cur].token = (int32_t)i;
        tr->first_byte[(uint8_t)s[0] >> 3] |= (uint8_t)(1u << ((uint8_t)s[0] & 7));
        tr->empty = false;
    }
    return VESTA_OK;
}

void tok_trie_free(tok_trie *tr) {
    free(tr->nodes);
    memset(tr, 0, sizeof *tr);
}

int32_t tok_trie_longest(const tok_trie *tr, const char *s, size_t n, size_t *mlen) {
    int32_t cur = 0, best = -1;
    for (size_t k = 0; k < n; k++) {
        uint8_t b = (uint8_t)s[k];
        int32_t c = tr->nodes[cur].first_child;
        while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].next_sibling;
        if (c < 0) break;
        cur = c;
        if (tr->nodes[cur].token >= 0) {
            best = tr->nodes[cur].token;
            *mlen = k + 1;
        }
    }
    return best;
}

/* ---- load completion ---- */

/* Whether the pre-tokenizer can leave arbitrarily long words (see vesta_tokenizer.bigrams). */
static bool long_words(const tok_pre *p) {
    if (!p) return true;
    if (p->kind == TOK_PRE_METASPACE) return !p->split;
    if (p->kind != TOK_PRE_SEQUENCE) return false;
    bool any_split = false;
    for (size_t i = 0; i < p->n_children; i++) {
        const tok_pre *c = p->children[i];
        if (c->kind == TOK_PRE_METASPACE && !c->split) continue;
        if (c->kind == TOK_PRE_DIGITS) continue;
        any_split = true;
    }
    return !any_split;
}

static bool build_bigrams(vesta_tokenizer *t) {
    if (!tok_merge_map_init(&t->bigrams, t->vocab.count * 2)) return false;
    for (size_t j = 0; j < t->vocab.cap; j++) {
        if (!t->vocab.hashes[j]) continue;
        const char *s = t->vocab.keys.p + t->vocab.key_off[j];
        size_t n = t->vocab.key_len[j];
        int32_t prev = -1;
        for (size_t i = 0; i < n;) {
            int32_t c;
            i += (size_t)tok_utf8_decode(s + i, n - i, &c);
            bool existed;
            if (prev >= 0 && !tok_merge_map_put(&t->bigrams, prev, c, 0, 0, &existed)) return false;
            prev = c;
        }
    }
    t->has_bigrams = true;
    return true;
}

vesta_status tok_finish_load(vesta_tokenizer *t, const char *name, vesta_error *err) {
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        if (a->normalized && t->norm) {
            tok_buf b = {0};
            vesta_status st = tok_norm_apply(t->norm, a->content, a->len, &b, err);
            if (st != VESTA_OK) {
                tok_buf_free(&b);
                vesta_error_prefix(err, "%s: added_tokens[%zu]", name, i);
                return st;
            }
            a->norm_content = b.p ? b.p : strdup("");
            a->norm_len = b.n;
            if (!a->norm_content) return nomem(err);
        } else {
            a->norm_content = malloc(a->len + 1);
            if (!a->norm_content) return nomem(err);
            memcpy(a->norm_content, a->content, a->len);
            a->norm_content[a->len] = 0;
            a->norm_len = a->len;
        }
    }
    if (tok_trie_build(&t->trie_raw, t->added, t->n_added, false) != VESTA_OK ||
        tok_trie_build(&t->trie_norm, t->added, t->n_added, true) != VESTA_OK)
        return nomem(err);
    if (t->byte_fallback) {
        for (int b = 0; b < 256; b++) {
            char name6[8];
            static const char hx[] = "0123456789ABCDEF";
            name6[0] = '<', name6[1] = '0', name6[2] = 'x', name6[3] = hx[b >> 4];
            name6[4] = hx[b & 15], name6[5] = '>';
            t->byte_ids[b] = tok_strmap_get(&t->vocab, name6, 6);
        }
    }
    if (!tok_cache_init(&t->cache)) return nomem(err);
    if (long_words(t->pre) && !t->cont_prefix_len && !t->eow_suffix_len && !build_bigrams(t))
        return nomem(err);
    return VESTA_OK;
}

/* ---- release and accessors ---- */

void vesta_tokenizer_release(vesta_tokenizer *t) {
    if (!t) return;
    free(t->id_off);
    free(t->id_len);
    free(t->id_flags);
    tok_buf_free(&t->strings);
    tok_strmap_free(&t->vocab);
    tok_strmap_free(&t->all);
    tok_merge_map_free(&t->merges);
    tok_merge_map_free(&t->bigrams);
    free(t->cont_prefix);
    free(t->eow_suffix);
    tok_norm_free(t->norm);
    tok_pre_free(t->pre);
    tok_post_free(t->post);
    tok_dec_free(t->dec);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].norm_content);
    }
    free(t->added);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    tok_cache_free(&t->cache);
    free(t->bos_tok);
    free(t->eos_tok);
    free(t->pad_tok);
    free(t->unk_tok);
    for (size_t i = 0; i < t->n_tpl; i++) {
        free(t->tpl_names[i]);
        free(t->tpl_bodies[i]);
    }
    free(t->tpl_names);
    free(t->tpl_bodies);
    free(t);
}

size_t vesta_tokenizer_vocab_size(const vesta_tokenizer *t) { return t->n_ids; }

int32_t vesta_tokenizer_token_to_id(const vesta_tokenizer *t, const char *token, size_t len) {
    return tok_strmap_get(&t->all, token, len);
}

const char *vesta_tokenizer_id_to_token(const vesta_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_ids || t->id_len[id] == UINT32_MAX) return NULL;
    if (len) *len = t->id_len[id];
    return t->strings.p + t->id_off[id];
}

bool vesta_tokenizer_is_special(const vesta_tokenizer *t, int32_t id) {
    return id >= 0 && (size_t)id < t->n_ids && (t->id_flags[id] & TOK_ID_SPECIAL);
}

int32_t vesta_tokenizer_bos_id(const vesta_tokenizer *t) { return t->bos_id; }
int32_t vesta_tokenizer_eos_id(const vesta_tokenizer *t) { return t->eos_id; }
int32_t vesta_tokenizer_pad_id(const vesta_tokenizer *t) { return t->pad_id; }
int32_t vesta_tokenizer_unk_id(const vesta_tokenizer *t) { return t->unk_cfg_id; }
const char *vesta_tokenizer_bos_token(const vesta_tokenizer *t) { return t->bos_tok; }
const char *vesta_tokenizer_eos_token(const vesta_tokenizer *t) { return t->eos_tok; }
const char *vesta_tokenizer_pad_token(const vesta_tokenizer *t) { return t->pad_tok; }
const char *vesta_tokenizer_unk_token(const vesta_tokenizer *t) { return t->unk_tok; }
bool vesta_tokenizer_add_bos(const vesta_tokenizer *t) { return t->add_bos; }
bool vesta_tokenizer_add_eos(const vesta_tokenizer *t) { return t->add_eos; }

const char *vesta_tokenizer_chat_template(const vesta_tokenizer *t, const char *name) {
    if (!name) name = "default";
    for (size_t i = 0; i < t->n_tpl; i++)
        if (!strcmp(t->tpl_names[i], name)) return t->tpl_bodies[i];
    return NULL;
}
size_t vesta_tokenizer_chat_template_count(const vesta_tokenizer *t) { return t->n_tpl; }
const char *vesta_tokenizer_chat_template_name(const vesta_tokenizer *t, size_t i) {
    return i < t->n_tpl ? t->tpl_names[i] : NULL;
}

/* ---- encode ---- */

typedef struct seg {
    size_t b, e;
    int32_t id; /* added token id, or -1 for text */
} seg;
typedef struct segs {
    seg *v;
    size_t n, cap;
} segs;

static bool segs_push(segs *s, size_t b, size_t e, int32_t id) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        seg *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (seg){b, e, id};
    return true;
}

typedef struct encode_ctx {
    const vesta_tokenizer *t;
    bool parse_special;
    const vesta_text_span *plain;
    size_t n_plain;
} encode_ctx;

static bool overlaps_plain(const encode_ctx *c, size_t b, size_t e) {
    for (size_t i = 0; i < c->n_plain; i++)
        if (c->plain[i].begin < e && b < c->plain[i].end) return true;
    return false;
}

static bool ends_with_word(const char *s, size_t n) {
    if (!n) return false;
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    int32_t c;
    tok_utf8_decode(s + i, n - i, &c);
    return tok_cp_is_word(c);
}

static bool starts_with_word(const char *s, size_t n) {
    if (!n) return false;
    int32_t c;
    tok_utf8_decode(s, n, &c);
    return tok_cp_is_word(c);
}

/* HF AddedVocabulary::find_matches over sentence s (n bytes). `plain_base` is the offset of s in
 * the original text when span filtering applies to raw matches, or SIZE_MAX when s is
 * normalized text whose offsets do not map (then `seg_plain` says whether the segment touched a
 * plain span at all). */
static bool find_added(const encode_ctx *c, const tok_trie *tr, const char *s, size_t n,
                       size_t plain_base, bool seg_plain, segs *out) {
    const vesta_tokenizer *t = c->t;
    size_t start_offset = 0, pos = 0;
    while (!tr->empty && pos < n) {
        size_t mb = 0, mlen = 0;
        int32_t idx = -1;
        for (size_t i = pos; i < n; i++) {
            uint8_t b = (uint8_t)s[i];
            if (!(tr->first_byte[b >> 3] & (1u << (b & 7)))) continue;
            idx = tok_trie_longest(tr, s + i, n - i, &mlen);
            if (idx >= 0) {
                mb = i;
                break;
            }
        }
        if (idx < 0) break;
        size_t me = mb + mlen;
        pos = me;
        const tok_added *a = &t->added[idx];
        if (a->special) {
            if (!c->parse_special) continue;
            if (plain_base != SIZE_MAX ? overlaps_plain(c, plain_base + mb, plain_base + me)
                                       : seg_plain)
                continue;
        }
        if (a->single_word) {
            bool start_space = mb == 0 || !ends_with_word(s, mb);
            bool stop_space = me == n || !starts_with_word(s + me, n - me);
            if (!start_space || !stop_space) continue;
        }
        size_t start = mb, stop = me;
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t q = ns - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                int32_t cp;
                tok_utf8_decode(s + q, ns - q, &cp);
                if (!tok_cp_is_whitespace(cp)) break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                int32_t cp;
                int k = tok_utf8_decode(s + stop, n - stop, &cp);
                if (!tok_cp_is_whitespace(cp)) break;
                stop += (size_t)k;
            }
        }
        if (start_offset < start && !segs_push(out, start_offset, start, -1)) return false;
        if (!segs_push(out, start, stop, a->id)) return false;
        start_offset = stop;
    }
    if (start_offset != n && !segs_push(out, start_offset, n, -1)) return false;
    return true;
}

/* Pre-tokenizes and BPE-encodes one normalized text piece. */
static vesta_status encode_piece(const vesta_tokenizer *t, const char *s, size_t n, bool origin,
                                 tok_pieces *a, tok_pieces *b, tok_ids *out, vesta_error *err) {
    if (n == 0) return VESTA_OK;
    if (!t->pre) return tok_bpe_word(t, s, n, out, err);
    tok_pieces_reset(a);
    if (!tok_pieces_add_text(a, s, n, origin)) return nomem(err);
    vesta_status st = tok_pre_apply(t->pre, a, b, err);
    for (size_t i = 0; st == VESTA_OK && i < b->n; i++)
        st = tok_bpe_word(t, b->text.p + b->v[i].off, b->v[i].len, out, err);
    return st;
}

static vesta_status encode_text(const encode_ctx *c, const char *text, size_t len, tok_ids *out,
                                vesta_error *err) {
    const vesta_tokenizer *t = c->t;
    segs raw = {0}, nsegs = {0};
    tok_buf norm = {0};
    tok_pieces pa = {0}, pb = {0};
    vesta_status st = VESTA_OK;
    if (!find_added(c, &t->trie_raw, text, len, 0, false, &raw)) {
        st = nomem(err);
        goto done;
    }
    for (size_t i = 0; st == VESTA_OK && i < raw.n; i++) {
        const seg *r = &raw.v[i];
        if (r->id >= 0) {
            if (!tok_ids_push(out, r->id)) st = nomem(err);
            continue;
        }
        const char *s = text + r->b;
        size_t n = r->e - r->b;
        if (n == 0) continue;
        if (t->norm) {
            st = tok_norm_apply(t->norm, s, n, &norm, err);
            if (st != VESTA_OK) break;
            s = norm.p ? norm.p : "";
            n = norm.n;
        }
        nsegs.n = 0;
        if (!find_added(c, &t->trie_norm, s, n, SIZE_MAX,
                        c->n_plain && overlaps_plain(c, r->b, r->e), &nsegs)) {
            st = nomem(err);
            break;
        }
        for (size_t k = 0; st == VESTA_OK && k < nsegs.n; k++) {
            const seg *g = &nsegs.v[k];
            if (g->id >= 0) {
                if (!tok_ids_push(out, g->id)) st = nomem(err);
            } else {
                st = encode_piece(t, s + g->b, g->e - g->b, r->b == 0 && g->b == 0, &pa, &pb, out,
                                  err);
            }
        }
    }
done:
    free(raw.v);
    free(nsegs.v);
    tok_buf_free(&norm);
    tok_pieces_free(&pa);
    tok_pieces_free(&pb);
    return st;
}

static vesta_status encode_common(const encode_ctx *c, const char *text, size_t len,
                                  bool add_special, int32_t **out_ids, size_t *out_n,
                                  vesta_error *err) {
    *out_ids = NULL;
    *out_n = 0;
    if (!text && len) return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "text is NULL");
    size_t v = tok_utf8_valid_prefix(text, len);
    if (v != len)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "text is not valid UTF-8 (byte %zu)", v);
    tok_ids ids = {0};
    vesta_status st = encode_text(c, text ? text : "", len, &ids, err);
    if (st == VESTA_OK && add_special && c->t->post) {
        tok_ids post = {0};
        if (!tok_post_apply(c->t->post, ids.v, ids.n, &post)) st = nomem(err);
        free(ids.v);
        ids = post;
    }
    if (st != VESTA_OK) {
        free(ids.v);
        return st;
    }
    *out_ids = ids.v;
    *out_n = ids.n;
    return VESTA_OK;
}

vesta_status vesta_tokenizer_encode(const vesta_tokenizer *t, const char *text, size_t len,
                                    bool add_special_tokens, bool parse_special,
                                    int32_t **out_ids, size_t *out_n, vesta_error *err) {
    encode_ctx c = {t, parse_special, NULL, 0};
    return encode_common(&c, text, len, add_special_tokens, out_ids, out_n, err);
}

vesta_status vesta_tokenizer_encode_spans(const vesta_tokenizer *t, const char *text, size_t len,
                                          bool add_special_tokens, const vesta_text_span *plain,
                                          size_t n_plain, int32_t **out_ids, size_t *out_n,
                                          vesta_error *err) {
    *out_ids = NULL;
    *out_n = 0;
    for (size_t i = 0; i < n_plain; i++) {
        if (plain[i].begin > plain[i].end || plain[i].end > len ||
            (i && plain[i].begin < plain[i - 1].end))
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "plain span %zu [%zu, %zu) is out of order or out of bounds", i,
                                   plain[i].begin, plain[i].end);
    }
    encode_ctx c = {t, true, plain, n_plain};
    return encode_common(&c, text, len, add_special_tokens, out_ids, out_n, err);
}

/* ---- post-processor ---- */

void tok_post_free(tok_post *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_items; i++) free(p->items[i].ids);
    free(p->items);
    for (size_t i = 0; i < p->n_children; i++) tok_post_free(p->children[i]);
    free(p->children);
    free(p);
}

bool tok_post_apply(const tok_post *p, const int32_t *ids, size_t n, tok_ids *out) {
    out->n = 0;
    switch (p->kind) {
    case TOK_POST_NONE:
        for (size_t i = 0; i < n; i++)
            if (!tok_ids_push(out, ids[i])) return false;
        return true;
    case TOK_POST_TEMPLATE:
        for (size_t k = 0; k < p->n_items; k++) {
            const tok_post_item *it = &p->items[k];
            if (it->is_sequence) {
                for (size_t i = 0; i < n; i++)
                    if (!tok_ids_push(out, ids[i])) return false;
            } else {
                for (size_t i = 0; i < it->n_ids; i++)
                    if (!tok_ids_push(out, it->ids[i])) return false;
            }
        }
        return true;
    case TOK_POST_SEQUENCE: {
        tok_ids cur = {0};
        for (size_t i = 0; i < n; i++)
            if (!tok_ids_push(&cur, ids[i])) return false;
        for (size_t c = 0; c < p->n_children; c++) {
            tok_ids next = {0};
            if (!tok_post_apply(p->children[c], cur.v, cur.n, &next)) {
                free(cur.v);
                free(next.v);
                return false;
            }
            free(cur.v);
            cur = next;
        }
        free(out->v);
        *out = cur;
        return true;
    }
    }
    return false;
}

/* ---- decode ---- */

vesta_status vesta_tokenizer_decode(const vesta_tokenizer *t, const int32_t *ids, size_t n,
                                    bool skip_special_tokens, char **out_text, size_t *out_len,
                                    vesta_error *err) {
    *out_text = NULL;
    if (out_len) *out_len = 0;
    tok_strs toks = {0};
    vesta_status st = VESTA_OK;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = vesta_tokenizer_id_to_token(t, ids[i], &len);
        if (!s) {
            st = vesta_error_set(err, VESTA_ERR_INVALID_ARG, "token id %d is not in the vocabulary",
                                 (int)ids[i]);
            goto done;
        }
        if (skip_special_tokens && (t->id_flags[ids[i]] & TOK_ID_SPECIAL)) continue;
        if (!tok_strs_push(&toks, s, len)) {
            st = nomem(err);
            goto done;
        }
    }
    tok_buf out = {0};
    if (t->dec) {
        st = tok_dec_apply(t->dec, &toks, err);
        if (st != VESTA_OK) goto done;
        for (size_t i = 0; i < toks.n; i++)
            if (!tok_buf_append(&out, toks.v[i].p, toks.v[i].n)) st = nomem(err);
    } else {
        for (size_t i = 0; i < toks.n; i++)
            if ((i && !tok_buf_append(&out, " ", 1)) ||
                !tok_buf_append(&out, toks.v[i].p, toks.v[i].n))
                st = nomem(err);
    }
    if (st == VESTA_OK && !out.p && !tok_buf_append(&out, "", 0)) st = nomem(err);
    if (st != VESTA_OK) {
        tok_buf_free(&out);
        goto done;
    }
    *out_text = out.p;
    if (out_len) *out_len = out.n;
done:
    tok_strs_free(&toks);
    return st;
}
