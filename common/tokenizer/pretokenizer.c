/* Pre-tokenizers (HF tokenizers semantics): ByteLevel, Split, Metaspace, Digits, Sequence.
 * Each stage maps a piece list to a new piece list; split behaviours follow
 * NormalizedString::split. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

void tok_pre_free(tok_pre *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_children; i++) tok_pre_free(p->children[i]);
    free(p->children);
    tok_regex_free(&p->re);
    free(p);
}

/* ---- ByteLevel byte ↔ char table (GPT-2 bytes_to_unicode), computed, not stored ---- */

static int32_t byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    /* The remaining bytes get 256, 257, ... in increasing byte order. */
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
    return 256 + n;
}

typedef struct bl_table {
    char s[256][2];
    uint8_t len[256];
} bl_table;

static const bl_table *bl_get(void) {
    /* Immutable after first construction; the construction is idempotent, so a benign race
     * between threads writes identical bytes. */
    static bl_table t;
    static volatile int ready;
    if (!ready) {
        for (int b = 0; b < 256; b++) {
            char enc[4];
            int k = tok_utf8_encode(byte_to_cp((uint8_t)b), enc);
            memcpy(t.s[b], enc, 2);
            t.len[b] = (uint8_t)k;
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return &t;
}

const char *tok_bytelevel_char(uint8_t b, size_t *len) {
    const bl_table *t = bl_get();
    *len = t->len[b];
    return t->s[b];
}

int tok_bytelevel_byte(int32_t cp) {
    if (cp < 0 || cp > 323) return -1;
    if (cp < 256) {
        uint8_t b = (uint8_t)cp;
        return ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) ? cp : -1;
    }
    int n = cp - 256, seen = 0;
    for (int x = 0; x < 256; x++) {
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) {
            if (seen == n) return x;
            seen++;
        }
    }
    return -1;
}

/* ---- runs of (range, is_match) and split behaviours ---- */

typedef struct run {
    size_t b, e;
    bool m;
} run;
typedef struct runs {
    run *v;
    size_t n, cap;
} runs;

static bool runs_cb(void *ud, size_t b, size_t e, bool m) {
    runs *r = ud;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        run *v = realloc(r->v, cap * sizeof *v);
        if (!v) return false;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = (run){b, e, m};
    return true;
}

/* Rewrites r in place into the kept pieces (m = true means "remove"). */
static void apply_behavior(runs *r, tok_split_behavior beh, bool invert) {
    if (invert)
        for (size_t i = 0; i < r->n; i++) r->v[i].m = !r->v[i].m;
    size_t o = 0;
    bool prev = false;
    switch (beh) {
    case TOK_SPLIT_REMOVED:
        return;
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < r->n; i++) r->v[i].m = false;
        return;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < r->n; i++) {
            run x = r->v[i];
            if (x.m == prev && o > 0) r->v[o - 1].e = x.e;
            else r->v[o++] = (run){x.b, x.e, false};
            prev = x.m;
        }
        r->n = o;
        return;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < r->n; i++) {
            run x = r->v[i];
            if (x.m && !prev && o > 0) r->v[o - 1].e = x.e;
            else r->v[o++] = (run){x.b, x.e, false};
            prev = x.m;
        }
        r->n = o;
        return;
    case TOK_SPLIT_MERGED_NEXT: {
        /* Walk backwards, merging a match into the piece after it; written from the end. */
        size_t w = r->n;
        for (size_t i = r->n; i-- > 0;) {
            run x = r->v[i];
            if (x.m && !prev && w < r->n) r->v[w].b = x.b;
            else r->v[--w] = (run){x.b, x.e, false};
            prev = x.m;
        }
        if (r->n > w) memmove(r->v, r->v + w, (r->n - w) * sizeof *r->v);
        r->n -= w;
        return;
    }
    }
}

static vesta_status emit_runs(const runs *r, const char *s, bool origin, tok_pieces *out,
                              vesta_error *err) {
    for (size_t i = 0; i < r->n; i++) {
        const run *x = &r->v[i];
        if (x->m || x->e == x->b) continue;
        if (!tok_pieces_add_text(out, s + x->b, x->e - x->b, origin && x->b == 0))
            return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    }
    return VESTA_OK;
}

/* Char-predicate matches (Digits, Metaspace split): each matching char is its own match. */
static bool char_runs(const char *s, size_t n, bool (*pred)(int32_t, const tok_pre *),
                      const tok_pre *p, runs *r) {
    size_t last = 0, i = 0;
    while (i < n) {
        int32_t c;
        int k = tok_utf8_decode(s + i, n - i, &c);
        if (pred(c, p)) {
            if (last < i && !runs_cb(r, last, i, false)) return false;
            if (!runs_cb(r, i, i + (size_t)k, true)) return false;
            last = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (n > last && !runs_cb(r, last, n, false)) return false;
    return true;
}

static bool is_digit_pred(int32_t c, const tok_pre *p) {
    (void)p;
    return tok_cp_is_numeric(c);
}
static bool is_repl_pred(int32_t c, const tok_pre *p) { return c == p->repl_cp; }

/* ---- stages ---- */

static vesta_status split_piece(const tok_pre *p, const char *s, size_t n, bool origin,
                                tok_pieces *out, runs *r, vesta_error *err) {
    r->n = 0;
    vesta_status st = tok_regex_find_matches(&p->re, s, n, runs_cb, r, err);
    if (st != VESTA_OK) return st;
    apply_behavior(r, p->behavior, p->invert);
    return emit_runs(r, s, origin, out, err);
}

static vesta_status bytelevel_map(const char *s, size_t n, bool origin, tok_pieces *out,
                                  vesta_error *err) {
    const bl_table *t = bl_get();
    size_t off = out->text.n;
    if (!tok_buf_reserve(&out->text, n * 2))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    char *d = out->text.p + off;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        d[0] = t->s[b][0];
        if (t->len[b] == 2) d[1] = t->s[b][1];
        d += t->len[b];
    }
    size_t len = (size_t)(d - (out->text.p + off));
    out->text.n += len;
    out->text.p[out->text.n] = 0;
    if (!tok_pieces_push(out, off, len, origin))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    return VESTA_OK;
}

static vesta_status bytelevel_piece(const tok_pre *p, const char *s, size_t n, bool origin,
                                    tok_pieces *out, tok_pieces *tmp, runs *r, vesta_error *err) {
    tok_buf pref = {0};
    if (p->add_prefix_space && n > 0 && s[0] != ' ') {
        if (!tok_buf_append(&pref, " ", 1) || !tok_buf_append(&pref, s, n)) {
            tok_buf_free(&pref);
            return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        }
        s = pref.p;
        n = pref.n;
    }
    vesta_status st = VESTA_OK;
    if (p->use_regex) {
        tok_pieces_reset(tmp);
        st = split_piece(p, s, n, origin, tmp, r, err);
        for (size_t i = 0; st == VESTA_OK && i < tmp->n; i++)
            st = bytelevel_map(tmp->text.p + tmp->v[i].off, tmp->v[i].len, tmp->v[i].origin, out,
                               err);
    } else if (n > 0) {
        st = bytelevel_map(s, n, origin, out, err);
    }
    tok_buf_free(&pref);
    return st;
}

static vesta_status metaspace_piece(const tok_pre *p, const char *s, size_t n, bool origin,
                                    tok_pieces *out, runs *r, vesta_error *err) {
    tok_buf b = {0};
    bool ok = true;
    bool starts = n >= p->repl_len && !memcmp(s, p->repl, p->repl_len);
    /* Replace first: a leading space becomes the replacement, which then counts as "starts
     * with the replacement". */
    tok_buf rep = {0};
    for (size_t i = 0; ok && i < n; i++) {
        if (s[i] == ' ') ok = tok_buf_append(&rep, p->repl, p->repl_len);
        else ok = tok_buf_append(&rep, s + i, 1);
    }
    if (ok) {
        starts = rep.n >= p->repl_len && !memcmp(rep.p, p->repl, p->repl_len);
        bool prepend = rep.n > 0 && !starts &&
                       (p->prepend == TOK_PREPEND_ALWAYS ||
                        (p->prepend == TOK_PREPEND_FIRST && origin));
        if (prepend) ok = tok_buf_append(&b, p->repl, p->repl_len);
        if (ok) ok = tok_buf_append(&b, rep.p, rep.n);
    }
    tok_buf_free(&rep);
    if (!ok) {
        tok_buf_free(&b);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    }
    vesta_status st = VESTA_OK;
    if (p->split) {
        r->n = 0;
        if (!char_runs(b.p, b.n, is_repl_pred, p, r)) st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        else {
            apply_behavior(r, TOK_SPLIT_MERGED_NEXT, false);
            st = emit_runs(r, b.p, origin, out, err);
        }
    } else if (b.n > 0 && !tok_pieces_add_text(out, b.p, b.n, origin)) {
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    }
    tok_buf_free(&b);
    return st;
}

static vesta_status digits_piece(const tok_pre *p, const char *s, size_t n, bool origin,
                                 tok_pieces *out, runs *r, vesta_error *err) {
    r->n = 0;
    if (!char_runs(s, n, is_digit_pred, p, r))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    apply_behavior(r, p->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, false);
    return emit_runs(r, s, origin, out, err);
}

vesta_status tok_pre_apply(const tok_pre *p, const tok_pieces *in, tok_pieces *out,
                           vesta_error *err) {
    tok_pieces_reset(out);
    if (p->kind == TOK_PRE_SEQUENCE) {
        tok_pieces a = {0}, b = {0};
        vesta_status st = VESTA_OK;
        const tok_pieces *cur = in;
        for (size_t i = 0; st == VESTA_OK && i < p->n_children; i++) {
            tok_pieces *dst = (cur == &a) ? &b : &a;
            st = tok_pre_apply(p->children[i], cur, dst, err);
            cur = dst;
        }
        for (size_t i = 0; st == VESTA_OK && i < cur->n; i++)
            if (!tok_pieces_add_text(out, cur->text.p + cur->v[i].off, cur->v[i].len,
                                     cur->v[i].origin))
                st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        tok_pieces_free(&a);
        tok_pieces_free(&b);
        return st;
    }
    runs r = {0};
    tok_pieces tmp = {0};
    vesta_status st = VESTA_OK;
    for (size_t i = 0; st == VESTA_OK && i < in->n; i++) {
        const char *s = in->text.p + in->v[i].off;
        size_t n = in->v[i].len;
        bool origin = in->v[i].origin;
        switch (p->kind) {
        case TOK_PRE_BYTELEVEL:
            st = bytelevel_piece(p, s, n, origin, out, &tmp, &r, err);
            break;
        case TOK_PRE_SPLIT:
            st = split_piece(p, s, n, origin, out, &r, err);
            break;
        case TOK_PRE_METASPACE:
            st = metaspace_piece(p, s, n, origin, out, &r, err);
            break;
        case TOK_PRE_DIGITS:
            st = digits_piece(p, s, n, origin, out, &r, err);
            break;
        case TOK_PRE_SEQUENCE:
            break;
        }
    }
    free(r.v);
    tok_pieces_free(&tmp);
    return st;
}
