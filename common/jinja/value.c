/* Values with Python semantics: truthiness, equality, ordering, str(), repr() and json.dumps(). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "jinja.h"

jlist *jlist_new(jfail *f, size_t cap)
{
    jlist *l = jalloc(f, sizeof *l);
    if (cap) {
        if (cap > SIZE_MAX / sizeof(jv) / 2)
            jfail_raise(f, VESTA_ERR_LIMIT, "list too long");
        l->items = jalloc(f, cap * sizeof(jv));
        l->cap = cap;
    }
    return l;
}

void jlist_push(jfail *f, jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *items = jalloc(f, cap * sizeof(jv));
        if (l->n)
            memcpy(items, l->items, l->n * sizeof(jv));
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = v;
}

jdict *jdict_new(jfail *f, size_t cap)
{
    jdict *d = jalloc(f, sizeof *d);
    if (cap) {
        d->e = jalloc(f, cap * sizeof *d->e);
        d->cap = cap;
    }
    return d;
}

/* Python dict keys: 1, 1.0 and True are the same key; strings compare by bytes. */
jv *jdict_get(const jdict *d, jv key)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->e[i].key, key))
            return &d->e[i].val;
    return NULL;
}

jv *jdict_get_cstr(const jdict *d, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++) {
        jv k = d->e[i].key;
        if (k.t == JT_STR && k.u.s->len == n && memcmp(k.u.s->s, key, n) == 0)
            return &d->e[i].val;
    }
    return NULL;
}

void jdict_set(jfail *f, jdict *d, jv key, jv val)
{
    jv *slot = jdict_get(d, key);
    if (slot) {
        *slot = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jdict_entry *e = jalloc(f, cap * sizeof *e);
        if (d->n)
            memcpy(e, d->e, d->n * sizeof *e);
        d->e = e;
        d->cap = cap;
    }
    d->e[d->n].key = key;
    d->e[d->n].val = val;
    d->n++;
}

bool jv_truthy(jv v)
{
    switch (v.t) {
    case JT_UNDEF: case JT_NONE: return false;
    case JT_BOOL: return v.u.b;
    case JT_INT: return v.u.i != 0;
    case JT_FLOAT: return v.u.f != 0.0;
    case JT_STR: return v.u.s->len != 0;
    case JT_LIST: return v.u.l->n != 0;
    case JT_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static bool is_num(jv v) { return v.t == JT_INT || v.t == JT_FLOAT || v.t == JT_BOOL; }
static double num_f(jv v) { return v.t == JT_FLOAT ? v.u.f : v.t == JT_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t num_i(jv v) { return v.t == JT_INT ? v.u.i : (int64_t)v.u.b; }

bool jv_equal(jv a, jv b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t == JT_FLOAT || b.t == JT_FLOAT)
            return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a.t != b.t)
        return false;
    switch (a.t) {
    case JT_UNDEF: case JT_NONE: return true;
    case JT_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->s, b.u.s->s, a.u.s->len) == 0;
    case JT_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->items[i], b.u.l->items[i]))
                return false;
        return true;
    case JT_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = jdict_get(b.u.d, a.u.d->e[i].key);
            if (!o || !jv_equal(a.u.d->e[i].val, *o))
                return false;
        }
        return true;
    case JT_NS: return a.u.d == b.u.d;
    case JT_MACRO: return a.u.m == b.u.m;
    case JT_FUNC: return a.u.fn == b.u.fn;
    case JT_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

const char *jv_type_name(jv v)
{
    switch (v.t) {
    case JT_UNDEF: return "Undefined";
    case JT_NONE: return "NoneType";
    case JT_BOOL: return "bool";
    case JT_INT: return "int";
    case JT_FLOAT: return "float";
    case JT_STR: return "str";
    case JT_LIST: return v.u.l->tuple ? "tuple" : "list";
    case JT_DICT: return "dict";
    case JT_NS: return "Namespace";
    case JT_MACRO: return "Macro";
    case JT_FUNC: return "function";
    case JT_LOOP: return "LoopContext";
    case JT_CYCLER: return "Cycler";
    case JT_JOINER: return "Joiner";
    }
    return "object";
}

/* Python's repr(float): the shortest string that round-trips, in Python's layout. */
void py_float_repr(double d, char out[40])
{
    if (isnan(d)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d < 0 ? "-inf" : "inf");
        return;
    }
    char buf[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* buf: [-]D[.DDD]e[+-]XX */
    const char *p = buf;
    bool neg = *p == '-';
    if (neg)
        p++;
    char digits[20];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char *o = out;
    if (neg)
        *o++ = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp - 1; i++)
                *o++ = '0';
            for (int i = 0; i < nd; i++)
                *o++ = digits[i];
        } else {
            for (int i = 0; i <= exp; i++)
                *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++)
                    *o++ = digits[i];
            else
                *o++ = '0';
        }
        *o = 0;
        return;
    }
    *o++ = digits[0];
    if (nd > 1) {
        *o++ = '.';
        for (int i = 1; i < nd; i++)
            *o++ = digits[i];
    }
    snprintf(o, 16, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
}

static bool py_printable(int32_t cp)
{
    if (cp == ' ')
        return true;
    if (cp < 0x20 || cp == 0x7f)
        return false;
    if (cp < 0x7f)
        return true;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

static void write_str_repr(jbuf *b, const jstr *s)
{
    bool has_sq = memchr(s->s, '\'', s->len) != NULL, has_dq = memchr(s->s, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    bool t = jstr_tainted(s);
    jbuf_putc(b, q);
    for (size_t i = 0; i < s->len;) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        if (cp == q || cp == '\\') {
            char e[2] = {'\\', (char)cp};
            jbuf_put(b, e, 2, t);
        } else if (cp == '\n') jbuf_put(b, "\\n", 2, t);
        else if (cp == '\r') jbuf_put(b, "\\r", 2, t);
        else if (cp == '\t') jbuf_put(b, "\\t", 2, t);
        else if (py_printable(cp)) jbuf_put(b, s->s + i, adv, t);
        else {
            char e[16];
            int n = cp < 0x100 ? snprintf(e, sizeof e, "\\x%02x", cp) : cp < 0x10000 ? snprintf(e, sizeof e, "\\u%04x", cp)
                                                                                         : snprintf(e, sizeof e, "\\U%08x", cp);
            jbuf_put(b, e, (size_t)n, t);
        }
        i += adv;
    }
    jbuf_putc(b, q);
}

void jv_write_repr(jrender *r, jbuf *b, jv v)
{
    jrender_step(r);
    switch (v.t) {
    case JT_STR:
        write_str_repr(b, v.u.s);
        return;
    case JT_LIST: {
        jlist *l = v.u.l;
        jbuf_putc(b, l->tuple ? '(' : '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                jbuf_puts(b, ", ");
            jv_write_repr(r, b, l->items[i]);
        }
        if (l->tuple && l->n == 1)
            jbuf_putc(b, ',');
        jbuf_putc(b, l->tuple ? ')' : ']');
        return;
    }
    case JT_DICT: case JT_NS: {
        if (v.t == JT_NS)
            jbuf_puts(b, "<Namespace ");
        jbuf_putc(b, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                jbuf_puts(b, ", ");
            jv_write_repr(r, b, v.u.d->e[i].key);
            jbuf_puts(b, ": ");
            jv_write_repr(r, b, v.u.d->e[i].val);
        }
        jbuf_putc(b, '}');
        if (v.t == JT_NS)
            jbuf_putc(b, '>');
        return;
    }
    case JT_UNDEF:
        jbuf_puts(b, "Undefined");
        return;
    default:
        jv_write_str(r, b, v);
    }
}

void jv_write_str(jrender *r, jbuf *b, jv v)
{
    char tmp[40];
    switch (v.t) {
    case JT_UNDEF: return;
    case JT_NONE: jbuf_puts(b, "None"); return;
    case JT_BOOL: jbuf_puts(b, v.u.b ? "True" : "False"); return;
    case JT_INT: jbuf_printf(b, "%lld", (long long)v.u.i); return;
    case JT_FLOAT: py_float_repr(v.u.f, tmp); jbuf_puts(b, tmp); return;
    case JT_STR: jbuf_put_str(b, v.u.s); return;
    case JT_LIST: case JT_DICT: case JT_NS: jv_write_repr(r, b, v); return;
    case JT_MACRO: jbuf_puts(b, "<Macro>"); return;
    case JT_FUNC: jbuf_printf(b, "<built-in function %s>", v.u.fn->name); return;
    case JT_LOOP: jbuf_puts(b, "<LoopContext>"); return;
    default: jbuf_printf(b, "<%s object>", jv_type_name(v)); return;
    }
}

jstr *jv_to_str(jrender *r, jv v)
{
    if (v.t == JT_STR)
        return v.u.s;
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    jv_write_str(r, &b, v);
    return jbuf_finish(&b);
}

static void json_put_string(jbuf *b, const jstr *s, bool *tainted)
{
    if (jstr_tainted(s))
        *tainted = true;
    jbuf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            jbuf_put(b, s->s + run, i - run, false);
            jbuf_puts(b, esc);
            run = i + 1;
        }
    }
    jbuf_put(b, s->s + run, s->len - run, false);
    jbuf_putc(b, '"');
}

static void json_newline(jbuf *b, int indent, int level)
{
    jbuf_putc(b, '\n');
    for (int i = 0; i < indent * level; i++)
        jbuf_putc(b, ' ');
}

static int key_cmp_r(const void *a, const void *b, void *ctx)
{
    return jv_compare(ctx, ((const jdict_entry *)a)->key, ((const jdict_entry *)b)->key);
}

static bool json_value(jrender *r, jbuf *b, jv v, int indent, const char *isep, const char *ksep, bool sort_keys,
                       int level, bool *tainted)
{
    jrender_step(r);
    if (level > (int)r->lim->max_depth)
        jrender_error(r, "tojson: value nested too deeply");
    char tmp[40];
    switch (v.t) {
    case JT_NONE: jbuf_puts(b, "null"); return true;
    case JT_BOOL: jbuf_puts(b, v.u.b ? "true" : "false"); return true;
    case JT_INT: jbuf_printf(b, "%lld", (long long)v.u.i); return true;
    case JT_FLOAT:
        if (isnan(v.u.f)) jbuf_puts(b, "NaN");
        else if (isinf(v.u.f)) jbuf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else { py_float_repr(v.u.f, tmp); jbuf_puts(b, tmp); }
        return true;
    case JT_STR: json_put_string(b, v.u.s, tainted); return true;
    case JT_LIST: {
        jlist *l = v.u.l;
        if (!l->n) { jbuf_puts(b, "[]"); return true; }
        jbuf_putc(b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jbuf_puts(b, isep);
            if (indent >= 0) json_newline(b, indent, level + 1);
            json_value(r, b, l->items[i], indent, isep, ksep, sort_keys, level + 1, tainted);
        }
        if (indent >= 0) json_newline(b, indent, level);
        jbuf_putc(b, ']');
        return true;
    }
    case JT_DICT: {
        jdict *d = v.u.d;
        if (!d->n) { jbuf_puts(b, "{}"); return true; }
        jdict_entry *e = d->e;
        if (sort_keys) {
            e = jalloc(r->f, d->n * sizeof *e);
            memcpy(e, d->e, d->n * sizeof *e);
            qsort_r(e, d->n, sizeof *e, key_cmp_r, r);
        }
        jbuf_putc(b, '{');
        for (size_t i = 0; i < d->n; i++) {
            if (i) jbuf_puts(b, isep);
            if (indent >= 0) json_newline(b, indent, level + 1);
            jv k = e[i].key;
            if (k.t == JT_STR) json_put_string(b, k.u.s, tainted);
            else if (k.t == JT_NONE) jbuf_puts(b, "\"null\"");
            else if (k.t == JT_BOOL) jbuf_puts(b, k.u.b ? "\"true\"" : "\"false\"");
            else if (k.t == JT_INT || k.t == JT_FLOAT) {
                jbuf_putc(b, '"');
                json_value(r, b, k, indent, isep, ksep, sort_keys, level + 1, tainted);
                jbuf_putc(b, '"');
            } else jrender_error(r, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
            jbuf_puts(b, ksep);
            json_value(r, b, e[i].val, indent, isep, ksep, sort_keys, level + 1, tainted);
        }
        if (indent >= 0) json_newline(b, indent, level);
        jbuf_putc(b, '}');
        return true;
    }
    default:
        jrender_error(r, "Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

void jv_write_json(jrender *r, jbuf *b, jv v, int indent, const char *item_sep, const char *key_sep, bool sort_keys,
                   int depth)
{
    bool tainted = false;
    jbuf tmp;
    jbuf_init(&tmp, r->f, r->lim->max_output);
    json_value(r, &tmp, v, indent, item_sep, key_sep, sort_keys, depth, &tainted);
    jbuf_put(b, tmp.s ? tmp.s : "", tmp.len, tainted);
}

int jv_compare(jrender *r, jv a, jv b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t == JT_FLOAT || b.t == JT_FLOAT) {
            double x = num_f(a), y = num_f(b);
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.t == JT_STR && b.t == JT_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->s, b.u.s->s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len ? 1 : 0;
    }
    if (a.t == JT_LIST && b.t == JT_LIST && a.u.l->tuple == b.u.l->tuple) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.l->items[i], b.u.l->items[i]))
                continue;
            return jv_compare(r, a.u.l->items[i], b.u.l->items[i]);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n ? 1 : 0;
    }
    if (a.t == JT_UNDEF || b.t == JT_UNDEF)
        jrender_error(r, "'%s' is undefined", a.t == JT_UNDEF && a.u.undef_name ? a.u.undef_name
                                                 : b.t == JT_UNDEF && b.u.undef_name ? b.u.undef_name : "value");
    jrender_error(r, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

size_t jv_len(jrender *r, jv v)
{
    switch (v.t) {
    case JT_UNDEF: return 0;
    case JT_STR: return utf8_count(v.u.s->s, v.u.s->len);
    case JT_LIST: return v.u.l->n;
    case JT_DICT: case JT_NS: return v.u.d->n;
    case JT_LOOP: return v.u.loop->items->n;
    default: jrender_error(r, "object of type '%s' has no len()", jv_type_name(v));
    }
}

jlist *jv_iterate(jrender *r, jv v)
{
    switch (v.t) {
    case JT_UNDEF: return jlist_new(r->f, 0);
    case JT_LIST: return v.u.l;
    case JT_DICT: {
        jlist *l = jlist_new(r->f, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            jlist_push(r->f, l, v.u.d->e[i].key);
        return l;
    }
    case JT_STR: {
        jstr *s = v.u.s;
        jlist *l = jlist_new(r->f, s->len);
        for (size_t i = 0; i < s->len;) {
            size_t adv;
            utf8_decode(s->s + i, s->len - i, &adv);
            jlist_push(r->f, l, jv_str(jstr_slice_bytes(r->f, s, i, i + adv)));
            i += adv;
        }
        return l;
    }
    case JT_LOOP: return v.u.loop->items;
    default: jrender_error(r, "'%s' object is not iterable", jv_type_name(v));
    }
}
