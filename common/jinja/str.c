/* Strings that remember which of their bytes came from the request (taint spans). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jinja.h"

void jbuf_init(jbuf *b, jfail *f, size_t max)
{
    memset(b, 0, sizeof *b);
    b->f = f;
    b->max = max;
}

static void jbuf_reserve(jbuf *b, size_t extra)
{
    if (extra > SIZE_MAX / 4 - b->len)
        jfail_raise(b->f, VESTA_ERR_LIMIT, "string too long");
    size_t need = b->len + extra + 1;
    if (b->max && b->len + extra > b->max)
        jfail_raise(b->f, VESTA_ERR_LIMIT, "template output exceeds the limit of %zu bytes", b->max);
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    char *s = jalloc(b->f, cap);
    if (b->len)
        memcpy(s, b->s, b->len);
    b->s = s;
    b->cap = cap;
}

static void jbuf_add_span(jbuf *b, size_t from, size_t to)
{
    if (from >= to)
        return;
    if (b->nspans && b->spans[b->nspans - 1].e == from) {
        b->spans[b->nspans - 1].e = to;
        return;
    }
    if (b->nspans == b->capspans) {
        size_t cap = b->capspans ? b->capspans * 2 : 8;
        jspan *sp = jalloc(b->f, cap * sizeof *sp);
        if (b->nspans)
            memcpy(sp, b->spans, b->nspans * sizeof *sp);
        b->spans = sp;
        b->capspans = cap;
    }
    b->spans[b->nspans].b = from;
    b->spans[b->nspans].e = to;
    b->nspans++;
}

void jbuf_put(jbuf *b, const char *s, size_t n, bool tainted)
{
    if (!n)
        return;
    jbuf_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    if (tainted)
        jbuf_add_span(b, b->len, b->len + n);
    b->len += n;
    b->s[b->len] = 0;
}

void jbuf_puts(jbuf *b, const char *s) { jbuf_put(b, s, strlen(s), false); }
void jbuf_putc(jbuf *b, char c) { jbuf_put(b, &c, 1, false); }

void jbuf_put_str_range(jbuf *b, const jstr *s, size_t from, size_t to)
{
    if (to > s->len)
        to = s->len;
    if (from >= to)
        return;
    size_t base = b->len;
    jbuf_put(b, s->s + from, to - from, false);
    for (size_t i = 0; i < s->nspans; i++) {
        size_t sb = s->spans[i].b > from ? s->spans[i].b : from;
        size_t se = s->spans[i].e < to ? s->spans[i].e : to;
        if (sb < se)
            jbuf_add_span(b, base + sb - from, base + se - from);
    }
}

void jbuf_put_str(jbuf *b, const jstr *s) { jbuf_put_str_range(b, s, 0, s->len); }

void jbuf_printf(jbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        jbuf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1, false);
}

jstr *jbuf_finish(jbuf *b)
{
    jstr *s = jalloc(b->f, sizeof *s);
    s->s = b->s ? b->s : "";
    s->len = b->len;
    s->spans = b->spans;
    s->nspans = b->nspans;
    return s;
}

jstr *jstr_new(jfail *f, const char *s, size_t n, bool tainted)
{
    jstr *r = jalloc(f, sizeof *r);
    r->s = jstrndup(f, s, n);
    r->len = n;
    if (tainted && n) {
        jspan *sp = jalloc(f, sizeof *sp);
        sp->b = 0;
        sp->e = n;
        r->spans = sp;
        r->nspans = 1;
    }
    return r;
}

jstr *jstr_lit(jfail *f, const char *cstr) { return jstr_new(f, cstr, strlen(cstr), false); }

bool jstr_tainted(const jstr *s) { return s->nspans > 0; }

jstr *jstr_slice_bytes(jfail *f, const jstr *s, size_t from, size_t to)
{
    if (from == 0 && to >= s->len)
        return (jstr *)s;
    jbuf b;
    jbuf_init(&b, f, 0);
    jbuf_put_str_range(&b, s, from, to);
    return jbuf_finish(&b);
}

jstr *jstr_with_taint_of(jfail *f, const char *s, size_t n, bool tainted) { return jstr_new(f, s, n, tainted); }
