/* Small containers used by the tokenizer: byte buffers, id arrays, UTF-8 helpers, the vocabulary
 * and merge hash maps, and pipeline piece lists. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>
#include <xxhash.h>

#include "tok_internal.h"

bool tok_buf_reserve(tok_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->n) return false;
    size_t need = b->n + extra + 1; /* room for a NUL */
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

bool tok_buf_append(tok_buf *b, const void *s, size_t n) {
    if (!tok_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

bool tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return true;
}

/* ---- UTF-8 ---- */

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

int tok_utf8_decode(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return (int)k;
}

int tok_utf8_encode(int32_t cp, char out[4]) {
    return (int)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
}

bool tok_cp_is_whitespace(int32_t c) {
    /* Rust char::is_whitespace: Unicode White_Space. */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool tok_cp_is_numeric(int32_t c) {
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
           cat == UTF8PROC_CATEGORY_NO;
}

bool tok_cp_is_word(int32_t c) {
    if (c == '_' || c == 0x200C || c == 0x200D) return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* ---- string map ---- */

static uint64_t str_hash(const char *k, size_t n) {
    uint64_t h = XXH3_64bits(k, n);
    return h ? h : 1; /* 0 marks an empty slot */
}

bool tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    m->cap = cap;
    m->hashes = calloc(cap, sizeof *m->hashes);
    m->key_off = malloc(cap * sizeof *m->key_off);
    m->key_len = malloc(cap * sizeof *m->key_len);
    m->vals = malloc(cap * sizeof *m->vals);
    return m->hashes && m->key_off && m->key_len && m->vals;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->hashes);
    free(m->key_off);
    free(m->key_len);
    free(m->vals);
    tok_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

static bool strmap_grow(tok_strmap *m) {
    tok_strmap g = {0};
    size_t cap = m->cap * 2;
    g.cap = cap;
    g.hashes = calloc(cap, sizeof *g.hashes);
    g.key_off = malloc(cap * sizeof *g.key_off);
    g.key_len = malloc(cap * sizeof *g.key_len);
    g.vals = malloc(cap * sizeof *g.vals);
    if (!g.hashes || !g.key_off || !g.key_len || !g.vals) {
        free(g.hashes), free(g.key_off), free(g.key_len), free(g.vals);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hashes[i]) continue;
        size_t j = m->hashes[i] & (cap - 1);
        while (g.hashes[j]) j = (j + 1) & (cap - 1);
        g.hashes[j] = m->hashes[i];
        g.key_off[j] = m->key_off[i];
        g.key_len[j] = m->key_len[i];
        g.vals[j] = m->vals[i];
    }
    free(m->hashes), free(m->key_off), free(m->key_len), free(m->vals);
    m->hashes = g.hashes, m->key_off = g.key_off, m->key_len = g.key_len, m->vals = g.vals;
    m->cap = cap;
    return true;
}

bool tok_strmap_put(tok_strmap *m, const char *k, size_t n, int32_t v, bool *existed) {
    if (existed) *existed = false;
    if (n > UINT32_MAX || m->keys.n > UINT32_MAX - n) return false;
    if ((m->count + 1) * 4 > m->cap * 3 && !strmap_grow(m)) return false;
    uint64_t h = str_hash(k, n);
    size_t j = h & (m->cap - 1);
    while (m->hashes[j]) {
        if (m->hashes[j] == h && m->key_len[j] == n && !memcmp(m->keys.p + m->key_off[j], k, n)) {
            if (existed) *existed = true;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    size_t off = m->keys.n;
    if (!tok_buf_append(&m->keys, k, n)) return false;
    m->hashes[j] = h;
    m->key_off[j] = (uint32_t)off;
    m->key_len[j] = (uint32_t)n;
    m->vals[j] = v;
    m->count++;
    return true;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    uint64_t h = str_hash(k, n);
    size_t j = h & (m->cap - 1);
    while (m->hashes[j]) {
        if (m->hashes[j] == h && m->key_len[j] == n && !memcmp(m->keys.p + m->key_off[j], k, n))
            return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

/* ---- merge map ---- */

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}
static inline size_t pair_slot(uint64_t k, size_t cap) {
    k ^= k >> 31;
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 17) & (cap - 1);
}

bool tok_merge_map_init(tok_merge_map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    m->cap = cap;
    m->keys = calloc(cap, sizeof *m->keys);
    m->rank = malloc(cap * sizeof *m->rank);
    m->merged = malloc(cap * sizeof *m->merged);
    return m->keys && m->rank && m->merged;
}

void tok_merge_map_free(tok_merge_map *m) {
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

bool tok_merge_map_put(tok_merge_map *m, int32_t a, int32_t b, uint32_t rank, int32_t merged,
                       bool *existed) {
    *existed = false;
    if ((m->count + 1) * 4 > m->cap * 3) {
        tok_merge_map g;
        if (!tok_merge_map_init(&g, m->cap)) {
            tok_merge_map_free(&g);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t j = pair_slot(m->keys[i], g.cap);
            while (g.keys[j]) j = (j + 1) & (g.cap - 1);
            g.keys[j] = m->keys[i], g.rank[j] = m->rank[i], g.merged[j] = m->merged[i];
        }
        g.count = m->count;
        tok_merge_map_free(m);
        *m = g;
    }
    uint64_t k = pair_key(a, b);
    size_t j = pair_slot(k, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == k) {
            /* HF collects merges into a map: a repeated pair takes the later rank. */
            *existed = true;
            m->rank[j] = rank;
            m->merged[j] = merged;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = k, m->rank[j] = rank, m->merged[j] = merged;
    m->count++;
    return true;
}

bool tok_merge_map_get(const tok_merge_map *m, int32_t a, int32_t b, uint32_t *rank,
                       int32_t *merged) {
    uint64_t k = pair_key(a, b);
    size_t j = pair_slot(k, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == k) {
            *rank = m->rank[j];
            *merged = m->merged[j];
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

/* ---- pieces ---- */

bool tok_pieces_push(tok_pieces *p, size_t off, size_t len, bool origin) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        tok_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) return false;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (tok_piece){off, len, origin};
    return true;
}

bool tok_pieces_add_text(tok_pieces *p, const char *s, size_t n, bool origin) {
    size_t off = p->text.n;
    return tok_buf_append(&p->text, s, n) && tok_pieces_push(p, off, n, origin);
}

void tok_pieces_reset(tok_pieces *p) {
    p->n = 0;
    p->text.n = 0;
}

void tok_pieces_free(tok_pieces *p) {
    tok_buf_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* ---- decoder token lists ---- */

bool tok_strs_push(tok_strs *s, const char *p, size_t n) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        tok_buf *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    tok_buf *b = &s->v[s->n++];
    memset(b, 0, sizeof *b);
    return tok_buf_append(b, p, n);
}

void tok_strs_free(tok_strs *s) {
    for (size_t i = 0; i < s->n; i++) tok_buf_free(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}
