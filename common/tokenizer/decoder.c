/* Decoders (HF tokenizers semantics): ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace,
 * Sequence. Each transforms the list of token strings in place. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

void tok_dec_free(tok_dec *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_children; i++) tok_dec_free(d->children[i]);
    free(d->children);
    free(d->pattern);
    free(d->content);
    free(d);
}

static vesta_status nomem(vesta_error *err) {
    return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
}

/* Length of the maximal prefix of s that could start a valid UTF-8 sequence (>= 1); used to
 * substitute invalid bytes the way Rust's String::from_utf8_lossy does. */
static size_t invalid_run(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 1;
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) {
        k++;
        while (k <= need && k < n && (s[k] & 0xC0) == 0x80) k++;
    }
    return k;
}

static bool append_lossy(tok_buf *out, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t v = tok_utf8_valid_prefix(s + i, n - i);
        if (!tok_buf_append(out, s + i, v)) return false;
        i += v;
        if (i < n) {
            if (!tok_buf_append(out, "\xEF\xBF\xBD", 3)) return false;
            i += invalid_run((const unsigned char *)s + i, n - i);
        }
    }
    return true;
}

static vesta_status dec_bytelevel(tok_strs *t, vesta_error *err) {
    tok_buf bytes = {0};
    for (size_t i = 0; i < t->n; i++) {
        const char *s = t->v[i].p;
        size_t n = t->v[i].n;
        size_t start = bytes.n;
        bool all = true;
        for (size_t j = 0; j < n;) {
            int32_t c;
            int k = tok_utf8_decode(s + j, n - j, &c);
            int b = tok_bytelevel_byte(c);
            if (b < 0) {
                all = false;
                break;
            }
            char ch = (char)b;
            if (!tok_buf_append(&bytes, &ch, 1)) goto oom;
            j += (size_t)k;
        }
        if (!all) {
            bytes.n = start;
            if (!tok_buf_append(&bytes, s, n)) goto oom;
        }
    }
    tok_buf out = {0};
    if (!tok_buf_reserve(&out, bytes.n) || !append_lossy(&out, bytes.p ? bytes.p : "", bytes.n)) {
        tok_buf_free(&out);
        goto oom;
    }
    tok_buf_free(&bytes);
    for (size_t i = 0; i < t->n; i++) tok_buf_free(&t->v[i]);
    t->n = 0;
    if (!tok_strs_push(t, out.p ? out.p : "", out.n)) {
        tok_buf_free(&out);
        return nomem(err);
    }
    tok_buf_free(&out);
    return VESTA_OK;
oom:
    tok_buf_free(&bytes);
    return nomem(err);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" → byte (Rust u8::from_str_radix over the two chars, which also takes "+N"). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int a = hexval(s[3]), b = hexval(s[4]);
    return (a < 0 || b < 0) ? -1 : a * 16 + b;
}

static bool flush_bytes(tok_strs *out, tok_buf *bytes) {
    if (!bytes->n) return true;
    bool ok = true;
    if (tok_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n) ok = tok_strs_push(out, bytes->p, bytes->n);
    else
        for (size_t i = 0; ok && i < bytes->n; i++) ok = tok_strs_push(out, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
    return ok;
}

static vesta_status dec_bytefallback(tok_strs *t, vesta_error *err) {
    tok_strs out = {0};
    tok_buf bytes = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < t->n; i++) {
        int b = byte_token(t->v[i].p, t->v[i].n);
        if (b >= 0) {
            char c = (char)b;
            ok = tok_buf_append(&bytes, &c, 1);
        } else {
            ok = flush_bytes(&out, &bytes) && tok_strs_push(&out, t->v[i].p, t->v[i].n);
        }
    }
    ok = ok && flush_bytes(&out, &bytes);
    tok_buf_free(&bytes);
    if (!ok) {
        tok_strs_free(&out);
        return nomem(err);
    }
    tok_strs_free(t);
    *t = out;
    return VESTA_OK;
}

static vesta_status dec_fuse(tok_strs *t, vesta_error *err) {
    if (t->n <= 1) return VESTA_OK;
    for (size_t i = 1; i < t->n; i++) {
        if (!tok_buf_append(&t->v[0], t->v[i].p, t->v[i].n)) return nomem(err);
        tok_buf_free(&t->v[i]);
    }
    t->n = 1;
    return VESTA_OK;
}

static vesta_status dec_strip(const tok_dec *d, tok_strs *t, vesta_error *err) {
    char enc[4];
    size_t cl = (size_t)tok_utf8_encode(d->strip_cp, enc);
    for (size_t i = 0; i < t->n; i++) {
        tok_buf *b = &t->v[i];
        size_t s = 0, e = b->n;
        for (size_t k = 0; k < d->strip_start && e - s >= cl && !memcmp(b->p + s, enc, cl); k++)
            s += cl;
        for (size_t k = 0; k < d->strip_stop && e - s >= cl && !memcmp(b->p + e - cl, enc, cl); k++)
            e -= cl;
        if (e > s) memmove(b->p, b->p + s, e - s);
        b->n = e - s;
        if (b->p) b->p[b->n] = 0;
    }
    (void)err;
    return VESTA_OK;
}

static vesta_status dec_replace(const tok_dec *d, tok_strs *t, vesta_error *err) {
    for (size_t i = 0; i < t->n; i++) {
        tok_buf *b = &t->v[i];
        if (!d->pattern_len || b->n < d->pattern_len) continue;
        tok_buf o = {0};
        size_t j = 0;
        bool ok = tok_buf_reserve(&o, b->n);
        while (ok && j < b->n) {
            if (b->n - j >= d->pattern_len && !memcmp(b->p + j, d->pattern, d->pattern_len)) {
                ok = tok_buf_append(&o, d->content, d->content_len);
                j += d->pattern_len;
            } else {
                ok = tok_buf_append(&o, b->p + j, 1);
                j++;
            }
        }
        if (!ok) {
            tok_buf_free(&o);
            return nomem(err);
        }
        tok_buf_free(b);
        *b = o;
    }
    return VESTA_OK;
}

static vesta_status dec_metaspace(const tok_dec *d, tok_strs *t, vesta_error *err) {
    for (size_t i = 0; i < t->n; i++) {
        tok_buf *b = &t->v[i];
        tok_buf o = {0};
        bool ok = tok_buf_reserve(&o, b->n);
        size_t j = 0;
        while (ok && j < b->n) {
            if (b->n - j >= d->repl_len && !memcmp(b->p + j, d->repl, d->repl_len)) {
                /* The first token drops every replacement char (HF behaviour), others → ' '. */
                if (!(i == 0 && d->prepend != TOK_PREPEND_NEVER)) ok = tok_buf_append(&o, " ", 1);
                j += d->repl_len;
            } else {
                ok = tok_buf_append(&o, b->p + j, 1);
                j++;
            }
        }
        if (!ok) {
            tok_buf_free(&o);
            return nomem(err);
        }
        tok_buf_free(b);
        *b = o;
    }
    return VESTA_OK;
}

vesta_status tok_dec_apply(const tok_dec *d, tok_strs *t, vesta_error *err) {
    switch (d->kind) {
    case TOK_DEC_SEQUENCE:
        for (size_t i = 0; i < d->n_children; i++) {
            vesta_status st = tok_dec_apply(d->children[i], t, err);
            if (st != VESTA_OK) return st;
        }
        return VESTA_OK;
    case TOK_DEC_BYTELEVEL:
        return dec_bytelevel(t, err);
    case TOK_DEC_BYTEFALLBACK:
        return dec_bytefallback(t, err);
    case TOK_DEC_FUSE:
        return dec_fuse(t, err);
    case TOK_DEC_STRIP:
        return dec_strip(d, t, err);
    case TOK_DEC_REPLACE:
        return dec_replace(d, t, err);
    case TOK_DEC_METASPACE:
        return dec_metaspace(d, t, err);
    }
    return vesta_error_set(err, VESTA_ERR_INTERNAL, "unknown decoder");
}
