/* BPE model: one pre-token word → ids. Initial symbols are the word's characters (with
 * byte-fallback and unk handling as HF's BPE::merge_word), then the lowest-rank adjacent pair is
 * merged repeatedly (ties: leftmost) using a binary heap with lazy invalidation, so long words
 * (tokenizers without a pre-tokenizer) stay O(n log n). Results go through the word cache. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    bool dead;
} sym;

typedef struct heap_ent {
    uint32_t rank;
    int32_t pos;     /* left symbol index */
    int32_t merged;  /* the pair's merge result at push time (HF's validity check) */
} heap_ent;

static bool ent_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

typedef struct heap {
    heap_ent *v;
    size_t n, cap;
} heap;

static bool heap_push(heap *h, heap_ent e) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        heap_ent *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = e;
    return true;
}

static heap_ent heap_pop(heap *h) {
    heap_ent top = h->v[0];
    heap_ent last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const heap_ent *best = &last;
        if (l < h->n && ent_less(&h->v[l], best)) m = l, best = &h->v[l];
        if (r < h->n && ent_less(&h->v[r], best)) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct syms {
    sym *v;
    size_t n, cap;
} syms;

static bool syms_add(syms *s, int32_t id) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        sym *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = (sym){id, (int32_t)s->n - 1, -1, false};
    if (s->n) s->v[s->n - 1].next = (int32_t)s->n;
    s->n++;
    return true;
}

/* Initial symbols, following HF BPE::merge_word (including its order quirk: byte-fallback
 * tokens are added without flushing a pending unk). */
static vesta_status initial_symbols(const vesta_tokenizer *t, const char *w, size_t n, syms *s,
                                    vesta_error *err) {
    int32_t unk = -1; /* pending unk id */
    bool has_unk = false;
    tok_buf tmp = {0};
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = (size_t)tok_utf8_decode(w + i, n - i, &cp);
        const char *c = w + i;
        size_t cl = k;
        bool first = i == 0, last = i + k >= n;
        if ((!first && t->cont_prefix_len) || (last && t->eow_suffix_len)) {
            tmp.n = 0;
            if ((!first && !tok_buf_append(&tmp, t->cont_prefix, t->cont_prefix_len)) ||
                !tok_buf_append(&tmp, c, k) ||
                (last && !tok_buf_append(&tmp, t->eow_suffix, t->eow_suffix_len)))
                goto oom;
            c = tmp.p;
            cl = tmp.n;
        }
        int32_t id = tok_strmap_get(&t->vocab, c, cl);
        if (id >= 0) {
            if (has_unk) {
                if (!syms_add(s, unk)) goto oom;
                has_unk = false;
            }
            if (!syms_add(s, id)) goto oom;
        } else {
            bool done = false;
            if (t->byte_fallback) {
                bool all = true;
                for (size_t b = 0; b < cl; b++)
                    if (t->byte_ids[(uint8_t)c[b]] < 0) all = false;
                if (all) {
                    for (size_t b = 0; b < cl; b++)
                        if (!syms_add(s, t->byte_ids[(uint8_t)c[b]])) goto oom;
                    done = true;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (has_unk && !t->fuse_unk && !syms_add(s, unk)) goto oom;
                unk = t->unk_id;
                has_unk = true;
            }
        }
        i += k;
    }
    if (has_unk && !syms_add(s, unk)) goto oom;
    tok_buf_free(&tmp);
    return VESTA_OK;
oom:
    tok_buf_free(&tmp);
    return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
}

static bool push_pair(const vesta_tokenizer *t, heap *h, const syms *s, int32_t pos) {
    int32_t nx = s->v[pos].next;
    if (nx < 0) return true;
    uint32_t rank;
    int32_t merged;
    if (!tok_merge_map_get(&t->merges, s->v[pos].id, s->v[nx].id, &rank, &merged)) return true;
    return heap_push(h, (heap_ent){rank, pos, merged});
}

static vesta_status merge_all(const vesta_tokenizer *t, syms *s, vesta_error *err) {
    heap h = {0};
    for (size_t i = 0; i + 1 < s->n; i++)
        if (!push_pair(t, &h, s, (int32_t)i)) goto oom;
    while (h.n) {
        heap_ent e = heap_pop(&h);
        sym *a = &s->v[e.pos];
        if (a->dead || a->next < 0) continue;
        sym *b = &s->v[a->next];
        uint32_t rank;
        int32_t merged;
        if (!tok_merge_map_get(&t->merges, a->id, b->id, &rank, &merged) || merged != e.merged)
            continue;
        a->id = merged;
        b->dead = true;
        a->next = b->next;
        if (b->next >= 0) s->v[b->next].prev = e.pos;
        if (a->prev >= 0 && !push_pair(t, &h, s, a->prev)) goto oom;
        if (!push_pair(t, &h, s, e.pos)) goto oom;
    }
    free(h.v);
    return VESTA_OK;
oom:
    free(h.v);
    return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
}

/* BPE of one segment (no ignore_merges shortcut), through the cache. */
static vesta_status bpe_segment(const vesta_tokenizer *t, const char *w, size_t n, tok_ids *out,
                                vesta_error *err) {
    size_t before = out->n;
    if (tok_cache_get((tok_cache *)&t->cache, w, n, out)) return VESTA_OK;
    out->n = before;

    syms s = {0};
    vesta_status st = initial_symbols(t, w, n, &s, err);
    if (st == VESTA_OK) st = merge_all(t, &s, err);
    for (size_t i = 0; st == VESTA_OK && i < s.n; i++)
        if (!s.v[i].dead && !tok_ids_push(out, s.v[i].id))
            st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    if (st == VESTA_OK && out->n > before)
        tok_cache_put((tok_cache *)&t->cache, w, n, out->v + before, out->n - before);
    free(s.v);
    return st;
}

/* Cuts a long word where no merge can span (see vesta_tokenizer.bigrams) and encodes the
 * pieces separately; the result equals BPE over the whole word. */
static vesta_status bpe_segmented(const vesta_tokenizer *t, const char *w, size_t n, tok_ids *out,
                                  vesta_error *err) {
    size_t start = 0, i = 0;
    int32_t prev = -1;
    bool prev_in_vocab = false;
    while (i < n) {
        int32_t c;
        size_t k = (size_t)tok_utf8_decode(w + i, n - i, &c);
        bool in_vocab = tok_strmap_get(&t->vocab, w + i, k) >= 0;
        uint32_t r;
        int32_t m;
        if (i > start && prev_in_vocab && in_vocab && !tok_merge_map_get(&t->bigrams, prev, c, &r, &m)) {
            vesta_status st = bpe_segment(t, w + start, i - start, out, err);
            if (st != VESTA_OK) return st;
            start = i;
        }
        prev = c;
        prev_in_vocab = in_vocab;
        i += k;
    }
    return bpe_segment(t, w + start, n - start, out, err);
}

vesta_status tok_bpe_word(const vesta_tokenizer *t, const char *w, size_t n, tok_ids *out,
                          vesta_error *err) {
    if (n == 0) return VESTA_OK;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab, w, n);
        if (id >= 0) return tok_ids_push(out, id) ? VESTA_OK
                                                  : vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    }
    if (t->has_bigrams && n > TOK_CACHE_MAX_WORD) return bpe_segmented(t, w, n, out, err);
    return bpe_segment(t, w, n, out, err);
}
