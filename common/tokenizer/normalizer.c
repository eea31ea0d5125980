/* Normalizers (HF tokenizers semantics): Unicode forms via utf8proc, Lowercase, Prepend,
 * Replace (literal or regex), Strip, Sequence. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tok_internal.h"

void tok_norm_free(tok_norm *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_children; i++) tok_norm_free(n->children[i]);
    free(n->children);
    free(n->str);
    tok_regex_free(&n->re);
    free(n);
}

static vesta_status nomem(vesta_error *err) {
    return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
}

static vesta_status unicode_form(tok_norm_kind k, const char *in, size_t len, tok_buf *out,
                                 vesta_error *err) {
    int opts = UTF8PROC_STABLE;
    if (k == TOK_NORM_NFC) opts |= UTF8PROC_COMPOSE;
    if (k == TOK_NORM_NFD) opts |= UTF8PROC_DECOMPOSE;
    if (k == TOK_NORM_NFKC) opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    if (k == TOK_NORM_NFKD) opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    if (len == 0) return VESTA_OK;
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len, &res,
                                      (utf8proc_option_t)opts);
    if (n < 0) {
        free(res);
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "normalization failed: %s",
                               utf8proc_errmsg(n));
    }
    bool ok = tok_buf_append(out, res, (size_t)n);
    free(res);
    return ok ? VESTA_OK : nomem(err);
}

/* HF NormalizedString::lowercase: Rust char::to_lowercase per character (full mappings, so
 * U+0130 becomes "i\u0307"; no final-sigma context rule, unlike str::to_lowercase). */
static vesta_status lowercase(const char *in, size_t len, tok_buf *out, vesta_error *err) {
    for (size_t i = 0; i < len;) {
        int32_t c;
        int k = tok_utf8_decode(in + i, len - i, &c);
        char enc[8];
        int m;
        if (c == 0x130) {
            memcpy(enc, "i\xcc\x87", 3);
            m = 3;
        } else {
            m = tok_utf8_encode(utf8proc_tolower(c), enc);
        }
        if (!tok_buf_append(out, enc, (size_t)m)) return nomem(err);
        i += (size_t)k;
    }
    return VESTA_OK;
}

typedef struct replace_ctx {
    const char *in;
    const tok_norm *n;
    tok_buf *out;
} replace_ctx;

static bool replace_cb(void *ud, size_t b, size_t e, bool is_match) {
    replace_ctx *c = ud;
    if (is_match) return tok_buf_append(c->out, c->n->str, c->n->str_len);
    return tok_buf_append(c->out, c->in + b, e - b);
}

static vesta_status strip(const tok_norm *n, const char *in, size_t len, tok_buf *out,
                          vesta_error *err) {
    size_t b = 0, e = len;
    if (n->strip_left) {
        while (b < e) {
            int32_t c;
            int k = tok_utf8_decode(in + b, e - b, &c);
            if (!tok_cp_is_whitespace(c)) break;
            b += (size_t)k;
        }
    }
    if (n->strip_right) {
        while (e > b) {
            size_t s = e - 1;
            while (s > b && ((unsigned char)in[s] & 0xC0) == 0x80) s--;
            int32_t c;
            tok_utf8_decode(in + s, e - s, &c);
            if (!tok_cp_is_whitespace(c)) break;
            e = s;
        }
    }
    return tok_buf_append(out, in + b, e - b) ? VESTA_OK : nomem(err);
}

vesta_status tok_norm_apply(const tok_norm *n, const char *in, size_t len, tok_buf *out,
                            vesta_error *err) {
    out->n = 0;
    if (!tok_buf_reserve(out, len)) return nomem(err);
    out->p[0] = 0;
    switch (n->kind) {
    case TOK_NORM_NFC:
    case TOK_NORM_NFD:
    case TOK_NORM_NFKC:
    case TOK_NORM_NFKD:
        return unicode_form(n->kind, in, len, out, err);
    case TOK_NORM_LOWERCASE:
        return lowercase(in, len, out, err);
    case TOK_NORM_PREPEND:
        if (len && !tok_buf_append(out, n->str, n->str_len)) return nomem(err);
        return tok_buf_append(out, in, len) ? VESTA_OK : nomem(err);
    case TOK_NORM_REPLACE: {
        replace_ctx c = {in, n, out};
        return tok_regex_find_matches(&n->re, in, len, replace_cb, &c, err);
    }
    case TOK_NORM_STRIP:
        return strip(n, in, len, out, err);
    case TOK_NORM_SEQUENCE: {
        if (!tok_buf_append(out, in, len)) return nomem(err);
        tok_buf tmp = {0};
        for (size_t i = 0; i < n->n_children; i++) {
            vesta_status st = tok_norm_apply(n->children[i], out->p, out->n, &tmp, err);
            if (st != VESTA_OK) {
                tok_buf_free(&tmp);
                return st;
            }
            tok_buf swap = *out;
            *out = tmp;
            tmp = swap;
        }
        tok_buf_free(&tmp);
        return VESTA_OK;
    }
    }
    return vesta_error_set(err, VESTA_ERR_INTERNAL, "unknown normalizer");
}
