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

/* ---- ByteLevel byte <-> char tables ----
 * GPT-2 bytes_to_unicode, generated from its rule: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100, U+0101, ... in byte order. UTF-8 of each byte's char, its length, and
 * the inverse for code points 0..323 (-1: not a mapped char). */
static const char BL_UTF8[256][3] = {
    "\xc4\x80", "\xc4\x81", "\xc4\x82", "\xc4\x83", "\xc4\x84", "\xc4\x85", "\xc4\x86", "\xc4\x87",
    "\xc4\x88", "\xc4\x89", "\xc4\x8a", "\xc4\x8b", "\xc4\x8c", "\xc4\x8d", "\xc4\x8e", "\xc4\x8f",
    "\xc4\x90", "\xc4\x91", "\xc4\x92", "\xc4\x93", "\xc4\x94", "\xc4\x95", "\xc4\x96", "\xc4\x97",
    "\xc4\x98", "\xc4\x99", "\xc4\x9a", "\xc4\x9b", "\xc4\x9c", "\xc4\x9d", "\xc4\x9e", "\xc4\x9f",
    "\xc4\xa0", "\x21", "\x22", "\x23", "\x24", "\x25", "\x26", "\x27",
    "\x28", "\x29", "\x2a", "\x2b", "\x2c", "\x2d", "\x2e", "\x2f",
    "\x30", "\x31", "\x32", "\x33", "\x34", "\x35", "\x36", "\x37",
    "\x38", "\x39", "\x3a", "\x3b", "\x3c", "\x3d", "\x3e", "\x3f",
    "\x40", "\x41", "\x42", "\x43", "\x44", "\x45", "\x46", "\x47",
    "\x48", "\x49", "\x4a", "\x4b", "\x4c", "\x4d", "\x4e", "\x4f",
    "\x50", "\x51", "\x52", "\x53", "\x54", "\x55", "\x56", "\x57",
    "\x58", "\x59", "\x5a", "\x5b", "\x5c", "\x5d", "\x5e", "\x5f",
    "\x60", "\x61", "\x62", "\x63", "\x64", "\x65", "\x66", "\x67",
    "\x68", "\x69", "\x6a", "\x6b", "\x6c", "\x6d", "\x6e", "\x6f",
    "\x70", "\x71", "\x72", "\x73", "\x74", "\x75", "\x76", "\x77",
    "\x78", "\x79", "\x7a", "\x7b", "\x7c", "\x7d", "\x7e", "\xc4\xa1",
    "\xc4\xa2", "\xc4\xa3", "\xc4\xa4", "\xc4\xa5", "\xc4\xa6", "\xc4\xa7", "\xc4\xa8", "\xc4\xa9",
    "\xc4\xaa", "\xc4\xab", "\xc4\xac", "\xc4\xad", "\xc4\xae", "\xc4\xaf", "\xc4\xb0", "\xc4\xb1",
    "\xc4\xb2", "\xc4\xb3", "\xc4\xb4", "\xc4\xb5", "\xc4\xb6", "\xc4\xb7", "\xc4\xb8", "\xc4\xb9",
    "\xc4\xba", "\xc4\xbb", "\xc4\xbc", "\xc4\xbd", "\xc4\xbe", "\xc4\xbf", "\xc5\x80", "\xc5\x81",
    "\xc5\x82", "\xc2\xa1", "\xc2\xa2", "\xc2\xa3", "\xc2\xa4", "\xc2\xa5", "\xc2\xa6", "\xc2\xa7",
    "\xc2\xa8", "\xc2\xa9", "\xc2\xaa", "\xc2\xab", "\xc2\xac", "\xc5\x83", "\xc2\xae", "\xc2\xaf",
    "\xc2\xb0", "\xc2\xb1", "\xc2\xb2", "\xc2\xb3", "\xc2\xb4", "\xc2\xb5", "\xc2\xb6", "\xc2\xb7",
    "\xc2\xb8", "\xc2\xb9", "\xc2\xba", "\xc2\xbb", "\xc2\xbc", "\xc2\xbd", "\xc2\xbe", "\xc2\xbf",
    "\xc3\x80", "\xc3\x81", "\xc3\x82", "\xc3\x83", "\xc3\x84", "\xc3\x85", "\xc3\x86", "\xc3\x87",
    "\xc3\x88", "\xc3\x89", "\xc3\x8a", "\xc3\x8b", "\xc3\x8c", "\xc3\x8d", "\xc3\x8e", "\xc3\x8f",
    "\xc3\x90", "\xc3\x91", "\xc3\x92", "\xc3\x93", "\xc3\x94", "\xc3\x95", "\xc3\x96", "\xc3\x97",
    "\xc3\x98", "\xc3\x99", "\xc3\x9a", "\xc3\x9b", "\xc3\x9c", "\xc3\x9d", "\xc3\x9e", "\xc3\x9f",
    "\xc3\xa0", "\xc3\xa1", "\xc3\xa2", "\xc3\xa3", "\xc3\xa4", "\xc3\xa5", "\xc3\xa6", "\xc3\xa7",
    "\xc3\xa8", "\xc3\xa9", "\xc3\xaa", "\xc3\xab", "\xc3\xac", "\xc3\xad", "\xc3\xae", "\xc3\xaf",
    "\xc3\xb0", "\xc3\xb1", "\xc3\xb2", "\xc3\xb3", "\xc3\xb4", "\xc3\xb5", "\xc3\xb6", "\xc3\xb7",
    "\xc3\xb8", "\xc3\xb9", "\xc3\xba", "\xc3\xbb", "\xc3\xbc", "\xc3\xbd", "\xc3\xbe", "\xc3\xbf"
};
static const uint8_t BL_LEN[256] = {
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2
};
static const int16_t BL_CP_TO_BYTE[324] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89,
    90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107,
    108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125,
    126, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 161,
    162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, -1, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197,
    198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215,
    216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233,
    234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251,
    252, 253, 254, 255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
    14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143,
    144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 173
};

const char *tok_bytelevel_char(uint8_t b, size_t *len) {
    *len = BL_LEN[b];
    return BL_UTF8[b];
}

int tok_bytelevel_byte(int32_t cp) {
    return cp >= 0 && cp < 324 ? BL_CP_TO_BYTE[cp] : -1;
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
    size_t off = out->text.n;
    if (!tok_buf_reserve(&out->text, n * 2))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    char *d = out->text.p + off;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        d[0] = BL_UTF8[b][0];
        d[1] = BL_UTF8[b][1]; /* harmless when the char is one byte: overwritten or past the end */
        d += BL_LEN[b];
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
