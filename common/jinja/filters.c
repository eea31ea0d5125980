/* Jinja2's builtin filters and tests (the ones chat templates use), with HF's tojson. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "render.h"
#include "strops.h"

typedef jv (*filter_fn)(jrender *r, jv v, const jcall_args *a);

static jv arg(const jcall_args *a, size_t pos, const char *kw, jv d) { return jcall_args_get(a, pos, kw, d); }

static jstr *soft_str(jrender *r, jv v) { return jv_to_str(r, v); }

static jv f_tojson(jrender *r, jv v, const jcall_args *a)
{
    jv ind = arg(a, 0, "indent", jv_none());
    jv seps = arg(a, 1, "separators", jv_none());
    bool sort_keys = jv_truthy(arg(a, 2, "sort_keys", jv_bool(false)));
    bool ensure_ascii = jv_truthy(arg(a, 3, "ensure_ascii", jv_bool(false)));
    int indent = -1;
    if (ind.t == JT_INT || ind.t == JT_BOOL) {
        int64_t k = ind.t == JT_INT ? ind.u.i : ind.u.b;
        indent = k < 0 ? 0 : k > 64 ? 64 : (int)k;
    } else if (ind.t != JT_NONE && ind.t != JT_UNDEF) {
        jrender_error(r, "tojson: indent must be an integer or None");
    }
    const char *isep = indent >= 0 ? "," : ", ", *ksep = ": ";
    if (seps.t == JT_LIST && seps.u.l->n == 2 && seps.u.l->items[0].t == JT_STR && seps.u.l->items[1].t == JT_STR) {
        isep = seps.u.l->items[0].u.s->s;
        ksep = seps.u.l->items[1].u.s->s;
    } else if (seps.t != JT_NONE && seps.t != JT_UNDEF) {
        jrender_error(r, "tojson: separators must be a pair of strings");
    }
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    jv_write_json(r, &b, v, indent, isep, ksep, sort_keys, 0);
    if (!ensure_ascii)
        return jv_str(jbuf_finish(&b));
    jbuf o;
    jbuf_init(&o, r->f, r->lim->max_output);
    bool t = b.nspans > 0;
    for (size_t i = 0; i < b.len;) {
        size_t adv;
        int32_t cp = utf8_decode(b.s + i, b.len - i, &adv);
        if (cp < 0x80) {
            jbuf_put(&o, b.s + i, 1, t);
        } else if (cp < 0x10000) {
            jbuf_printf(&o, "\\u%04x", cp);
        } else {
            cp -= 0x10000;
            jbuf_printf(&o, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        }
        i += adv;
    }
    if (t && o.len) {
        o.nspans = 0;
        jbuf_put(&o, "", 0, false);
        jstr *s = jstr_new(r->f, o.s, o.len, true);
        return jv_str(s);
    }
    return jv_str(jbuf_finish(&o));
}

static jv f_trim(jrender *r, jv v, const jcall_args *a)
{
    jv chars = arg(a, 0, "chars", jv_none());
    return jv_str(jstrop_strip(r, soft_str(r, v), chars.t == JT_STR ? chars.u.s : NULL, true, true));
}
static jv f_upper(jrender *r, jv v, const jcall_args *a) { return jv_str(jstrop_case(r, soft_str(r, v), JCASE_UPPER)); }
static jv f_lower(jrender *r, jv v, const jcall_args *a) { return jv_str(jstrop_case(r, soft_str(r, v), JCASE_LOWER)); }
static jv f_capitalize(jrender *r, jv v, const jcall_args *a) { return jv_str(jstrop_case(r, soft_str(r, v), JCASE_CAPITALIZE)); }

/* Jinja's own title(): words start after runs of [-\s({\[<]. */
static jv f_title(jrender *r, jv v, const jcall_args *a)
{
    jstr *s = soft_str(r, v);
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    bool t = jstr_tainted(s), start = true;
    for (size_t i = 0; i < s->len;) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        bool sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
        int32_t o = sep ? cp : start ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        start = sep;
        char u[4];
        jbuf_put(&b, u, utf8_encode(o, u), t);
        i += adv;
    }
    return jv_str(jbuf_finish(&b));
}

static jv f_length(jrender *r, jv v, const jcall_args *a) { return jv_int((int64_t)jv_len(r, v)); }

static jv f_first(jrender *r, jv v, const jcall_args *a)
{
    jlist *l = jv_iterate(r, v);
    return l->n ? l->items[0] : jv_undef("\x01No first item, sequence was empty.");
}
static jv f_last(jrender *r, jv v, const jcall_args *a)
{
    jlist *l = jv_iterate(r, v); /* a dict gives its last key (dicts are reversible) */
    return l->n ? l->items[l->n - 1] : jv_undef("\x01No last item, sequence was empty.");
}

/* Dotted attribute path "a.b.0" as jinja's make_attrgetter resolves it. */
static jv attr_path(jrender *r, jv item, const jstr *path)
{
    size_t b = 0;
    for (size_t i = 0; i <= path->len; i++) {
        if (i < path->len && path->s[i] != '.')
            continue;
        char *part = jstrndup(r->f, path->s + b, i - b);
        char *end;
        long long idx = strtoll(part, &end, 10);
        jv key = (*part && *end == 0) ? jv_int(idx) : jv_str(jstr_lit(r->f, part));
        item = jgetitem(r, item, key); /* fails on Undefined, as jinja2's getitem does */
        b = i + 1;
    }
    return item;
}

static jv attr_arg(jrender *r, jv item, jv attribute)
{
    if (attribute.t == JT_NONE || attribute.t == JT_UNDEF)
        return item;
    if (attribute.t == JT_INT)
        return jgetitem(r, item, attribute);
    if (attribute.t != JT_STR)
        jrender_error(r, "attribute must be a string or an integer");
    return attr_path(r, item, attribute.u.s);
}

static jv f_join(jrender *r, jv v, const jcall_args *a)
{
    jv sep = arg(a, 0, "d", jv_undef(NULL));
    jv attribute = arg(a, 1, "attribute", jv_none());
    jlist *l = jv_iterate(r, v);
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    jstr *sp = sep.t == JT_UNDEF ? NULL : soft_str(r, sep);
    for (size_t i = 0; i < l->n; i++) {
        jrender_step(r);
        if (i && sp)
            jbuf_put_str(&b, sp);
        jv_write_str(r, &b, attr_arg(r, l->items[i], attribute));
    }
    return jv_str(jbuf_finish(&b));
}

static jv f_default(jrender *r, jv v, const jcall_args *a)
{
    jv d = arg(a, 0, "default_value", jv_str(jstr_lit(r->f, "")));
    bool boolean = jv_truthy(arg(a, 1, "boolean", jv_bool(false)));
    if (v.t == JT_UNDEF || (boolean && !jv_truthy(v)))
        return d;
    return v;
}

static jv f_replace(jrender *r, jv v, const jcall_args *a)
{
    jv o = arg(a, 0, "old", jv_undef(NULL)), n = arg(a, 1, "new", jv_undef(NULL));
    jv cnt = arg(a, 2, "count", jv_none());
    return jv_str(jstrop_replace(r, soft_str(r, v), soft_str(r, o), soft_str(r, n), cnt.t == JT_INT ? cnt.u.i : -1));
}

static jv f_string(jrender *r, jv v, const jcall_args *a) { return jv_str(soft_str(r, v)); }
static jv f_safe(jrender *r, jv v, const jcall_args *a) { return jv_str(soft_str(r, v)); }

static bool parse_int_text(const char *s, size_t len, int base, int64_t *out)
{
    /* Python int(str): surrounding whitespace, sign, digits with single underscores. */
    size_t i = 0, e = len;
    while (i < e && py_isspace((unsigned char)s[i])) i++;
    while (e > i && py_isspace((unsigned char)s[e - 1])) e--;
    bool neg = false;
    if (i < e && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i >= e || s[i] == '_')
        return false;
    __int128 v = 0;
    for (; i < e; i++) {
        char c = s[i];
        if (c == '_' && i + 1 < e && s[i + 1] != '_')
            continue;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : c >= 'A' && c <= 'Z' ? c - 'A' + 10 : 99;
        if (d >= base)
            return false;
        v = v * base + d;
        if (v > INT64_MAX)
            return false;
    }
    *out = (int64_t)(neg ? -v : v);
    return true;
}

static bool parse_float_text(const char *s, size_t len, double *out)
{
    char *tmp = malloc(len + 1);
    if (!tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    char *p = tmp;
    while (*p && py_isspace((unsigned char)*p)) p++;
    char *end;
    double d = strtod(p, &end);
    bool ok = end != p;
    while (*end && py_isspace((unsigned char)*end)) end++;
    ok = ok && *end == 0 && !memchr(p, 'x', (size_t)(end - p)) && !memchr(p, 'X', (size_t)(end - p));
    free(tmp);
    *out = d;
    return ok;
}

static jv f_int(jrender *r, jv v, const jcall_args *a)
{
    jv d = arg(a, 0, "default", jv_int(0));
    int base = (int)(arg(a, 1, "base", jv_int(10)).u.i);
    if (base < 2 || base > 36)
        base = 10;
    switch (v.t) {
    case JT_INT: return v;
    case JT_BOOL: return jv_int(v.u.b);
    case JT_FLOAT:
        if (isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) return jv_int((int64_t)v.u.f);
        return d;
    case JT_STR: {
        int64_t i;
        if (parse_int_text(v.u.s->s, v.u.s->len, base, &i)) return jv_int(i);
        double f;
        if (parse_float_text(v.u.s->s, v.u.s->len, &f) && isfinite(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
        return d;
    }
    default: return d;
    }
}

static jv f_float(jrender *r, jv v, const jcall_args *a)
{
    jv d = arg(a, 0, "default", jv_float(0.0));
    switch (v.t) {
    case JT_INT: return jv_float((double)v.u.i);
    case JT_BOOL: return jv_float(v.u.b);
    case JT_FLOAT: return v;
    case JT_STR: {
        double f;
        if (parse_float_text(v.u.s->s, v.u.s->len, &f)) return jv_float(f);
        return d;
    }
    default: return d;
    }
}

static jv f_abs(jrender *r, jv v, const jcall_args *a)
{
    if (v.t == JT_INT) return jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    if (v.t == JT_BOOL) return jv_int(v.u.b);
    if (v.t == JT_FLOAT) return jv_float(fabs(v.u.f));
    jrender_error(r, "bad operand type for abs(): '%s'", jv_type_name(v));
}

static jv f_round(jrender *r, jv v, const jcall_args *a)
{
    int64_t prec = arg(a, 0, "precision", jv_int(0)).u.i;
    jv method = arg(a, 1, "method", jv_undef(NULL));
    const char *m = method.t == JT_STR ? method.u.s->s : "common";
    if (v.t != JT_INT && v.t != JT_FLOAT && v.t != JT_BOOL)
        jrender_error(r, "type %s doesn't define __round__ method", jv_type_name(v));
    double x = v.t == JT_FLOAT ? v.u.f : v.t == JT_INT ? (double)v.u.i : v.u.b;
    double p = pow(10.0, (double)prec);
    if (!strcmp(m, "common")) {
        if (v.t != JT_FLOAT)
            return v.t == JT_BOOL ? jv_int(v.u.b) : v;
        double y = x * p, ry = nearbyint(y); /* round half to even, as Python's round() */
        return jv_float(ry / p);
    }
    if (!strcmp(m, "ceil")) return jv_float(ceil(x * p) / p);
    if (!strcmp(m, "floor")) return jv_float(floor(x * p) / p);
    jrender_error(r, "method must be common, ceil or floor");
}

static jv f_list(jrender *r, jv v, const jcall_args *a)
{
    jlist *src = jv_iterate(r, v);
    jlist *l = jlist_new(r->f, src->n);
    for (size_t i = 0; i < src->n; i++)
        jlist_push(r->f, l, src->items[i]);
    return jv_list(l);
}

static jv f_items(jrender *r, jv v, const jcall_args *a)
{
    if (v.t == JT_UNDEF)
        return jv_list(jlist_new(r->f, 0));
    if (v.t != JT_DICT)
        jrender_error(r, "Can only get item pairs from a mapping.");
    jlist *l = jlist_new(r->f, v.u.d->n);
    for (size_t i = 0; i < v.u.d->n; i++) {
        jlist *t = jlist_new(r->f, 2);
        t->tuple = true;
        jlist_push(r->f, t, v.u.d->e[i].key);
        jlist_push(r->f, t, v.u.d->e[i].val);
        jlist_push(r->f, l, jv_list(t));
    }
    return jv_list(l);
}

typedef struct sort_ctx {
    jrender *r;
    bool case_sensitive;
    bool reverse;
} sort_ctx;

static jv sort_key(sort_ctx *c, jv v)
{
    if (!c->case_sensitive && v.t == JT_STR)
        return jv_str(jstrop_case(c->r, v.u.s, JCASE_LOWER));
    return v;
}

typedef struct keyed {
    jv key;
    jv val;
    size_t idx;
} keyed;

static int keyed_cmp(const void *pa, const void *pb, void *ctx)
{
    sort_ctx *c = ctx;
    const keyed *a = pa, *b = pb;
    int k = jv_compare(c->r, a->key, b->key);
    if (c->reverse)
        k = -k;
    if (k)
        return k;
    return a->idx < b->idx ? -1 : a->idx > b->idx; /* stable, like Python's sort */
}

static jlist *sorted(jrender *r, jlist *src, jv attribute, bool case_sensitive, bool reverse, int pair_field)
{
    sort_ctx c = {r, case_sensitive, reverse};
    keyed *k = jalloc(r->f, (src->n + 1) * sizeof *k);
    for (size_t i = 0; i < src->n; i++) {
        jv item = src->items[i];
        jv key = item;
        if (pair_field >= 0)
            key = item.u.l->items[pair_field];
        else
            key = attr_arg(r, item, attribute);
        k[i].key = sort_key(&c, key);
        k[i].val = item;
        k[i].idx = i;
    }
    qsort_r(k, src->n, sizeof *k, keyed_cmp, &c);
    jlist *l = jlist_new(r->f, src->n);
    for (size_t i = 0; i < src->n; i++)
        jlist_push(r->f, l, k[i].val);
    return l;
}

static jv f_sort(jrender *r, jv v, const jcall_args *a)
{
    bool reverse = jv_truthy(arg(a, 0, "reverse", jv_bool(false)));
    bool cs = jv_truthy(arg(a, 1, "case_sensitive", jv_bool(false)));
    jv attribute = arg(a, 2, "attribute", jv_none());
    return jv_list(sorted(r, jv_iterate(r, v), attribute, cs, reverse, -1));
}

static jv f_dictsort(jrender *r, jv v, const jcall_args *a)
{
    bool cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(false)));
    jv by = arg(a, 1, "by", jv_undef(NULL));
    bool reverse = jv_truthy(arg(a, 2, "reverse", jv_bool(false)));
    int field = 0;
    if (by.t == JT_STR && !strcmp(by.u.s->s, "value"))
        field = 1;
    else if (by.t == JT_STR && strcmp(by.u.s->s, "key"))
        jrender_error(r, "You can only sort by either \"key\" or \"value\"");
    jv items = f_items(r, v, a);
    return jv_list(sorted(r, items.u.l, jv_none(), cs, reverse, field));
}

static bool run_test(jrender *r, jv item, const jcall_args *a, size_t first, bool have_test)
{
    if (!have_test)
        return jv_truthy(item);
    jv name = a->pos[first];
    if (name.t != JT_STR)
        jrender_error(r, "test name must be a string");
    jcall_args ta = {a->pos + first + 1, a->npos - first - 1, a->kwnames, a->kw, a->nkw};
    return jtest_apply(r, name.u.s->s, item, &ta, 0);
}

static jv select_impl(jrender *r, jv v, const jcall_args *a, bool by_attr, bool keep)
{
    if (!jv_truthy(v)) /* jinja2: `if value:` before iterating */
        return jv_list(jlist_new(r->f, 0));
    jlist *src = jv_iterate(r, v);
    jlist *l = jlist_new(r->f, 0);
    size_t first = by_attr ? 1 : 0;
    if (by_attr && a->npos < 1)
        jrender_error(r, "Missing parameter for attribute name");
    for (size_t i = 0; i < src->n; i++) {
        jrender_step(r);
        jv item = src->items[i];
        jv probe = by_attr ? attr_arg(r, item, a->pos[0]) : item;
        if (run_test(r, probe, a, first, a->npos > first) == keep)
            jlist_push(r->f, l, item);
    }
    return jv_list(l);
}
static jv f_select(jrender *r, jv v, const jcall_args *a) { return select_impl(r, v, a, false, true); }
static jv f_reject(jrender *r, jv v, const jcall_args *a) { return select_impl(r, v, a, false, false); }
static jv f_selectattr(jrender *r, jv v, const jcall_args *a) { return select_impl(r, v, a, true, true); }
static jv f_rejectattr(jrender *r, jv v, const jcall_args *a) { return select_impl(r, v, a, true, false); }

static jv f_map(jrender *r, jv v, const jcall_args *a)
{
    if (!jv_truthy(v)) /* jinja2: `if value:` before iterating */
        return jv_list(jlist_new(r->f, 0));
    jlist *src = jv_iterate(r, v);
    jlist *l = jlist_new(r->f, src->n);
    jv attribute = arg(a, SIZE_MAX, "attribute", jv_undef(NULL));
    if (attribute.t != JT_UNDEF) {
        jv dflt = arg(a, SIZE_MAX, "default", jv_undef(NULL));
        for (size_t i = 0; i < src->n; i++) {
            jv x = attr_arg(r, src->items[i], attribute);
            jlist_push(r->f, l, x.t == JT_UNDEF && dflt.t != JT_UNDEF ? dflt : x);
        }
        return jv_list(l);
    }
    if (!a->npos || a->pos[0].t != JT_STR)
        jrender_error(r, "map requires a filter name or attribute=");
    jcall_args fa = {a->pos + 1, a->npos - 1, a->kwnames, a->kw, a->nkw};
    for (size_t i = 0; i < src->n; i++)
        jlist_push(r->f, l, jfilter_apply(r, a->pos[0].u.s->s, src->items[i], &fa, 0));
    return jv_list(l);
}

static jv f_unique(jrender *r, jv v, const jcall_args *a)
{
    bool cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(false)));
    jv attribute = arg(a, 1, "attribute", jv_none());
    jlist *src = jv_iterate(r, v);
    jlist *seen = jlist_new(r->f, 0), *l = jlist_new(r->f, 0);
    sort_ctx c = {r, cs, false};
    for (size_t i = 0; i < src->n; i++) {
        jrender_step(r);
        jv key = sort_key(&c, attr_arg(r, src->items[i], attribute));
        if (key.t == JT_DICT || key.t == JT_NS || (key.t == JT_LIST && !key.u.l->tuple))
            jrender_error(r, "unhashable type: '%s'", jv_type_name(key));
        bool dup = false;
        for (size_t k = 0; k < seen->n && !dup; k++)
            dup = jv_equal(seen->items[k], key);
        if (!dup) {
            jlist_push(r->f, seen, key);
            jlist_push(r->f, l, src->items[i]);
        }
    }
    return jv_list(l);
}

static jv f_reverse(jrender *r, jv v, const jcall_args *a)
{
    if (v.t == JT_STR)
        return jslice(r, v, jv_none(), jv_none(), jv_int(-1));
    jlist *src = jv_iterate(r, v);
    jlist *l = jlist_new(r->f, src->n);
    for (size_t i = src->n; i-- > 0;)
        jlist_push(r->f, l, src->items[i]);
    return jv_list(l);
}

static jv f_indent(jrender *r, jv v, const jcall_args *a)
{
    jv width = arg(a, 0, "width", jv_int(4));
    bool first = jv_truthy(arg(a, 1, "first", jv_bool(false)));
    bool blank = jv_truthy(arg(a, 2, "blank", jv_bool(false)));
    jstr *ind;
    if (width.t == JT_STR) {
        ind = width.u.s;
    } else {
        int64_t w = width.t == JT_INT ? width.u.i : 4;
        if (w < 0) w = 0;
        if (w > 1024) w = 1024;
        char *sp = jalloc(r->f, (size_t)w + 1);
        memset(sp, ' ', (size_t)w);
        ind = jstr_new(r->f, sp, (size_t)w, false);
    }
    if (v.t != JT_STR) /* jinja2 appends "\n" to the value itself */
        jrender_error(r, "unsupported operand type(s) for +=: '%s' and 'str'", jv_type_name(v));
    jbuf src;
    jbuf_init(&src, r->f, r->lim->max_output);
    jbuf_put_str(&src, soft_str(r, v));
    jbuf_putc(&src, '\n'); /* jinja appends a newline before splitting */
    jlist *lines = jstrop_splitlines(r, jbuf_finish(&src), false);
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    if (first)
        jbuf_put_str(&b, ind);
    for (size_t i = 0; i < lines->n; i++) {
        jstr *ln = lines->items[i].u.s;
        if (i) {
            jbuf_putc(&b, '\n');
            if (blank || ln->len)
                jbuf_put_str(&b, ind);
        }
        jbuf_put_str(&b, ln);
    }
    return jv_str(jbuf_finish(&b));
}

static jv f_wordcount(jrender *r, jv v, const jcall_args *a)
{
    jstr *s = soft_str(r, v);
    int64_t n = 0;
    bool in = false;
    for (size_t i = 0; i < s->len;) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        utf8proc_category_t c = utf8proc_category(cp);
        bool w = cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
                 (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
        if (w && !in) n++;
        in = w;
        i += adv;
    }
    return jv_int(n);
}

static jv minmax(jrender *r, jv v, const jcall_args *a, int sign)
{
    bool cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(false)));
    jv attribute = arg(a, 1, "attribute", jv_none());
    jlist *src = jv_iterate(r, v);
    if (!src->n)
        return jv_undef("\x01No aggregated item, sequence was empty.");
    sort_ctx c = {r, cs, false};
    jv best = src->items[0], bk = sort_key(&c, attr_arg(r, best, attribute));
    for (size_t i = 1; i < src->n; i++) {
        jv k = sort_key(&c, attr_arg(r, src->items[i], attribute));
        if (jv_compare(r, k, bk) * sign > 0) {
            best = src->items[i];
            bk = k;
        }
    }
    return best;
}
static jv f_min(jrender *r, jv v, const jcall_args *a) { return minmax(r, v, a, -1); }
static jv f_max(jrender *r, jv v, const jcall_args *a) { return minmax(r, v, a, 1); }

static jv f_sum(jrender *r, jv v, const jcall_args *a)
{
    jv attribute = arg(a, 0, "attribute", jv_none());
    jv total = arg(a, 1, "start", jv_int(0));
    jlist *src = jv_iterate(r, v);
    for (size_t i = 0; i < src->n; i++) {
        jv x = attr_arg(r, src->items[i], attribute);
        jv pair[2] = {total, x};
        (void)pair;
        if ((total.t == JT_INT || total.t == JT_BOOL) && (x.t == JT_INT || x.t == JT_BOOL)) {
            int64_t s;
            if (__builtin_add_overflow(total.t == JT_INT ? total.u.i : total.u.b, x.t == JT_INT ? x.u.i : x.u.b, &s))
                jfail_raise(r->f, VESTA_ERR_UNSUPPORTED, "integer overflow in sum");
            total = jv_int(s);
        } else if ((total.t == JT_INT || total.t == JT_FLOAT || total.t == JT_BOOL) &&
                   (x.t == JT_INT || x.t == JT_FLOAT || x.t == JT_BOOL)) {
            double p = total.t == JT_FLOAT ? total.u.f : total.t == JT_INT ? (double)total.u.i : total.u.b;
            double q = x.t == JT_FLOAT ? x.u.f : x.t == JT_INT ? (double)x.u.i : x.u.b;
            total = jv_float(p + q);
        } else {
            jrender_error(r, "unsupported operand type(s) for +: '%s' and '%s'", jv_type_name(total), jv_type_name(x));
        }
    }
    return total;
}

static jv f_escape(jrender *r, jv v, const jcall_args *a)
{
    jstr *s = soft_str(r, v);
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    bool t = jstr_tainted(s);
    for (size_t i = 0; i < s->len; i++) {
        const char *e = NULL;
        switch (s->s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        }
        if (e) jbuf_put(&b, e, strlen(e), t);
        else jbuf_put_str_range(&b, s, i, i + 1);
    }
    return jv_str(jbuf_finish(&b));
}

static jv f_center(jrender *r, jv v, const jcall_args *a)
{
    jstr *s = soft_str(r, v);
    int64_t w = arg(a, 0, "width", jv_int(80)).u.i;
    int64_t n = (int64_t)utf8_count(s->s, s->len);
    if (w <= n || w > (int64_t)r->lim->max_output)
        return jv_str(s);
    int64_t marg = w - n, left = marg / 2 + (marg & w & 1);
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    for (int64_t i = 0; i < left; i++) jbuf_putc(&b, ' ');
    jbuf_put_str(&b, s);
    for (int64_t i = 0; i < marg - left; i++) jbuf_putc(&b, ' ');
    return jv_str(jbuf_finish(&b));
}

static jv f_format(jrender *r, jv v, const jcall_args *a)
{
    jstr *s = soft_str(r, v);
    if (a->nkw)
        jrender_error(r, "format filter with keyword arguments is not supported");
    jlist *t = jlist_new(r->f, a->npos);
    t->tuple = true;
    for (size_t i = 0; i < a->npos; i++)
        jlist_push(r->f, t, a->pos[i]);
    return jstr_percent_format(r, s, jv_list(t));
}

static jv f_attr(jrender *r, jv v, const jcall_args *a)
{
    jv name = arg(a, 0, "name", jv_undef(NULL));
    if (name.t != JT_STR)
        jrender_error(r, "attr name must be a string");
    return jgetattr(r, v, name.u.s->s);
}

static jv f_batch(jrender *r, jv v, const jcall_args *a)
{
    int64_t n = arg(a, 0, "linecount", jv_int(0)).u.i;
    jv fill = arg(a, 1, "fill_with", jv_none());
    bool have_fill = a->npos > 1 || a->nkw;
    if (n <= 0)
        jrender_error(r, "batch size must be positive");
    jlist *src = jv_iterate(r, v), *out = jlist_new(r->f, 0), *cur = NULL;
    for (size_t i = 0; i < src->n; i++) {
        if (!cur || (int64_t)cur->n == n) {
            cur = jlist_new(r->f, (size_t)(n < 64 ? n : 64));
            jlist_push(r->f, out, jv_list(cur));
        }
        jlist_push(r->f, cur, src->items[i]);
    }
    if (cur && have_fill)
        while ((int64_t)cur->n < n) {
            jrender_step(r);
            jlist_push(r->f, cur, fill);
        }
    return jv_list(out);
}

/* groupby(attribute, default=None, case_sensitive=False): sorted (grouper, items) tuples. */
static jv f_groupby(jrender *r, jv v, const jcall_args *a)
{
    jv attribute = arg(a, 0, "attribute", jv_undef(NULL));
    jv dflt = arg(a, 1, "default", jv_undef(NULL));
    bool cs = jv_truthy(arg(a, 2, "case_sensitive", jv_bool(false)));
    jlist *src = jv_iterate(r, v);
    jlist *keyed_items = jlist_new(r->f, src->n);
    for (size_t i = 0; i < src->n; i++) {
        jv k = attr_arg(r, src->items[i], attribute);
        if (k.t == JT_UNDEF && dflt.t != JT_UNDEF)
            k = dflt;
        jlist *pair = jlist_new(r->f, 2);
        pair->tuple = true;
        jlist_push(r->f, pair, k);
        jlist_push(r->f, pair, src->items[i]);
        jlist_push(r->f, keyed_items, jv_list(pair));
    }
    jlist *sorted_items = sorted(r, keyed_items, jv_none(), cs, false, 0);
    sort_ctx c = {r, cs, false};
    jlist *out = jlist_new(r->f, 0);
    jlist *group = NULL;
    jv gkey = jv_undef(NULL);
    for (size_t i = 0; i < sorted_items->n; i++) {
        jlist *pair = sorted_items->items[i].u.l;
        jv k = sort_key(&c, pair->items[0]);
        if (!group || !jv_equal(k, gkey)) {
            group = jlist_new(r->f, 0);
            jlist *t = jlist_new(r->f, 2);
            t->tuple = true;
            jlist_push(r->f, t, pair->items[0]);
            jlist_push(r->f, t, jv_list(group));
            jlist_push(r->f, out, jv_list(t));
            gkey = k;
        }
        jlist_push(r->f, group, pair->items[1]);
    }
    return jv_list(out);
}

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"groupby", f_groupby},
    {"tojson", f_tojson}, {"trim", f_trim}, {"upper", f_upper}, {"lower", f_lower}, {"title", f_title},
    {"capitalize", f_capitalize}, {"length", f_length}, {"count", f_length}, {"first", f_first},
    {"last", f_last}, {"join", f_join}, {"default", f_default}, {"d", f_default}, {"replace", f_replace},
    {"string", f_string}, {"safe", f_safe}, {"int", f_int}, {"float", f_float}, {"abs", f_abs},
    {"round", f_round}, {"list", f_list}, {"items", f_items}, {"dictsort", f_dictsort}, {"sort", f_sort},
    {"select", f_select}, {"reject", f_reject}, {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},
    {"map", f_map}, {"unique", f_unique}, {"reverse", f_reverse}, {"indent", f_indent},
    {"wordcount", f_wordcount}, {"min", f_min}, {"max", f_max}, {"sum", f_sum}, {"escape", f_escape},
    {"e", f_escape}, {"forceescape", f_escape}, {"center", f_center}, {"format", f_format}, {"attr", f_attr},
    {"batch", f_batch},
};

bool jfilter_exists(const char *name)
{
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        if (!strcmp(filters[i].name, name))
            return true;
    return false;
}

jv jfilter_apply(jrender *r, const char *name, jv v, const jcall_args *a, int line)
{
    jrender_step(r);
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        if (!strcmp(filters[i].name, name)) {
            /* Most filters see Undefined as empty (soft_str, iteration); these fail on it. */
            if (v.t == JT_UNDEF && (!strcmp(name, "tojson") || !strcmp(name, "abs") || !strcmp(name, "round") ||
                                    !strcmp(name, "attr") || !strcmp(name, "dictsort") || !strcmp(name, "int") ||
                                    !strcmp(name, "float")))
                jundef_error(r, v);
            return filters[i].fn(r, v, a);
        }
    jrender_error(r, "No filter named '%s'.", name);
}

/* ---- tests ---- */

static bool is_intlike(jv v) { return v.t == JT_INT; }

static jv targ(const jcall_args *a) { return jcall_args_get(a, 0, NULL, jv_undef(NULL)); }

static int64_t num_arg(jrender *r, jv v)
{
    if (v.t == JT_INT) return v.u.i;
    if (v.t == JT_BOOL) return v.u.b;
    if (v.t == JT_UNDEF) jundef_error(r, v);
    jrender_error(r, "unsupported operand type for %%: '%s'", jv_type_name(v));
}

static const char *const test_names[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping",
    "iterable", "sequence", "callable", "sameas", "equalto", "eq", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">",
    "ge", ">=", "in", "odd", "even", "divisibleby", "lower", "upper", "escaped", "filter", "test", "lessthan",
    "greaterthan", NULL,
};

bool jtest_exists(const char *name)
{
    for (size_t i = 0; test_names[i]; i++)
        if (!strcmp(test_names[i], name))
            return true;
    return false;
}

static const char *const unary_tests[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping",
    "iterable", "sequence", "callable", "odd", "even", "lower", "upper", "escaped", "filter", "test", NULL,
};

static bool py_cased_pred(const jstr *s, bool upper)
{
    /* str.isupper()/islower(): at least one cased character and none of the other case. */
    bool cased = false;
    for (size_t i = 0; i < s->len;) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        i += adv;
        utf8proc_category_t c = utf8proc_category(cp);
        if (c == UTF8PROC_CATEGORY_LT || c == (upper ? UTF8PROC_CATEGORY_LL : UTF8PROC_CATEGORY_LU))
            return false;
        cased |= c == (upper ? UTF8PROC_CATEGORY_LU : UTF8PROC_CATEGORY_LL);
    }
    return cased;
}

bool jtest_apply(jrender *r, const char *n, jv v, const jcall_args *a, int line)
{
    jrender_step(r);
    if (!jtest_exists(n))
        jrender_error(r, "No test named '%s'.", n);
    bool unary = false;
    for (size_t i = 0; unary_tests[i]; i++)
        unary |= !strcmp(unary_tests[i], n);
    size_t nargs = a->npos + a->nkw;
    if (unary && nargs)
        jrender_error(r, "test_%s() takes 1 positional argument but %zu were given", n, nargs + 1);
    if (!unary && nargs != 1)
        jrender_error(r, "test '%s' takes exactly one argument", n);
    if (!strcmp(n, "defined")) return v.t != JT_UNDEF;
    if (!strcmp(n, "undefined")) return v.t == JT_UNDEF;
    if (!strcmp(n, "none")) return v.t == JT_NONE;
    if (!strcmp(n, "boolean")) return v.t == JT_BOOL;
    if (!strcmp(n, "false")) return v.t == JT_BOOL && !v.u.b;
    if (!strcmp(n, "true")) return v.t == JT_BOOL && v.u.b;
    if (!strcmp(n, "integer")) return is_intlike(v);
    if (!strcmp(n, "float")) return v.t == JT_FLOAT;
    if (!strcmp(n, "number")) return v.t == JT_INT || v.t == JT_FLOAT || v.t == JT_BOOL;
    if (!strcmp(n, "string")) return v.t == JT_STR;
    if (!strcmp(n, "mapping")) return v.t == JT_DICT;
    if (!strcmp(n, "iterable")) return v.t == JT_STR || v.t == JT_LIST || v.t == JT_DICT || v.t == JT_UNDEF || v.t == JT_LOOP;
    if (!strcmp(n, "sequence")) return v.t == JT_STR || v.t == JT_LIST || v.t == JT_DICT || v.t == JT_UNDEF;
    if (!strcmp(n, "callable")) return v.t == JT_MACRO || v.t == JT_FUNC || v.t == JT_NS;
    if (!strcmp(n, "sameas")) {
        jv o = targ(a);
        if (v.t != o.t) return false;
        switch (v.t) {
        case JT_NONE: case JT_UNDEF: return true;
        case JT_BOOL: return v.u.b == o.u.b;
        case JT_INT: return v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256; /* CPython small-int cache */
        case JT_STR: return v.u.s == o.u.s;
        case JT_LIST: return v.u.l == o.u.l;
        case JT_DICT: case JT_NS: return v.u.d == o.u.d;
        default: return jv_equal(v, o);
        }
    }
    if (!strcmp(n, "equalto") || !strcmp(n, "eq") || !strcmp(n, "==")) return jv_equal(v, targ(a));
    if (!strcmp(n, "ne") || !strcmp(n, "!=")) return !jv_equal(v, targ(a));
    if (!strcmp(n, "lt") || !strcmp(n, "<") || !strcmp(n, "lessthan")) return jv_compare(r, v, targ(a)) < 0;
    if (!strcmp(n, "le") || !strcmp(n, "<=")) return jv_compare(r, v, targ(a)) <= 0;
    if (!strcmp(n, "gt") || !strcmp(n, ">") || !strcmp(n, "greaterthan")) return jv_compare(r, v, targ(a)) > 0;
    if (!strcmp(n, "ge") || !strcmp(n, ">=")) return jv_compare(r, v, targ(a)) >= 0;
    if (!strcmp(n, "in")) return jcontains(r, targ(a), v);
    if ((!strcmp(n, "odd") || !strcmp(n, "even") || !strcmp(n, "divisibleby")) &&
        (v.t == JT_FLOAT || (n[0] == 'd' && targ(a).t == JT_FLOAT))) {
        /* Python float modulo: the result takes the divisor's sign. */
        jv d = n[0] == 'd' ? targ(a) : jv_int(2);
        double x = v.t == JT_FLOAT ? v.u.f : (double)num_arg(r, v);
        double y = d.t == JT_FLOAT ? d.u.f : (double)num_arg(r, d);
        if (y == 0)
            jrender_error(r, "float modulo");
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0)))
            m += y;
        return n[0] == 'o' ? m == 1.0 : m == 0.0;
    }
    if (!strcmp(n, "odd")) { int64_t x = num_arg(r, v); return (x % 2 + 2) % 2 == 1; }
    if (!strcmp(n, "even")) { int64_t x = num_arg(r, v); return x % 2 == 0; }
    if (!strcmp(n, "divisibleby")) {
        int64_t x = num_arg(r, v), d = num_arg(r, targ(a));
        if (d == 0) jrender_error(r, "integer division or modulo by zero");
        if (d == -1) return true;
        return x % d == 0;
    }
    if (!strcmp(n, "lower") || !strcmp(n, "upper"))
        return py_cased_pred(jv_to_str(r, v), n[0] == 'u');
    if (!strcmp(n, "escaped")) return false;
    if (!strcmp(n, "filter")) return v.t == JT_STR && jfilter_exists(v.u.s->s);
    if (!strcmp(n, "test")) return v.t == JT_STR && jtest_exists(v.u.s->s);
    jrender_error(r, "No test named '%s'.", n);
}
