/* Attribute access as the sandbox allows it: Python str/dict/list methods that chat templates
 * call, loop attributes, namespace attributes, and the HF globals (range, dict, namespace,
 * raise_exception, strftime_now). Mutating methods are refused like ImmutableSandboxedEnvironment. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "render.h"
#include "strops.h"

static jv mkfunc(jrender *r, const char *name, jfunc_impl impl, jv self)
{
    jfunc *fn = jalloc(r->f, sizeof *fn);
    fn->name = name;
    fn->impl = impl;
    fn->self = self;
    jv v = {.t = JT_FUNC};
    v.u.fn = fn;
    return v;
}

static jstr *arg_str(jrender *r, const jcall_args *a, size_t pos, const char *kw, const char *fname)
{
    jv v = jcall_args_get(a, pos, kw, jv_undef(NULL));
    if (v.t == JT_UNDEF || v.t == JT_NONE)
        return NULL;
    if (v.t != JT_STR)
        jrender_error(r, "%s() argument must be str or None, not %s", fname, jv_type_name(v));
    return v.u.s;
}

static int64_t arg_int(jrender *r, const jcall_args *a, size_t pos, const char *kw, int64_t dflt)
{
    jv v = jcall_args_get(a, pos, kw, jv_undef(NULL));
    if (v.t == JT_UNDEF || v.t == JT_NONE)
        return dflt;
    if (v.t == JT_INT) return v.u.i;
    if (v.t == JT_BOOL) return v.u.b;
    jrender_error(r, "'%s' object cannot be interpreted as an integer", jv_type_name(v));
}

/* ---- str methods ---- */
static jv m_strip(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_strip(r, self.u.s, arg_str(r, a, 0, "chars", "strip"), true, true)); }
static jv m_lstrip(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_strip(r, self.u.s, arg_str(r, a, 0, "chars", "lstrip"), true, false)); }
static jv m_rstrip(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_strip(r, self.u.s, arg_str(r, a, 0, "chars", "rstrip"), false, true)); }
static jv m_split(jrender *r, jv self, const jcall_args *a)
{
    return jv_list(jstrop_split(r, self.u.s, arg_str(r, a, 0, "sep", "split"), arg_int(r, a, 1, "maxsplit", -1), false));
}
static jv m_rsplit(jrender *r, jv self, const jcall_args *a)
{
    return jv_list(jstrop_split(r, self.u.s, arg_str(r, a, 0, "sep", "rsplit"), arg_int(r, a, 1, "maxsplit", -1), true));
}
static jv m_splitlines(jrender *r, jv self, const jcall_args *a)
{
    jv keep = jcall_args_get(a, 0, "keepends", jv_bool(false));
    return jv_list(jstrop_splitlines(r, self.u.s, jv_truthy(keep)));
}

static bool affix_match(jrender *r, const jstr *s, jv affix, bool suffix)
{
    if (affix.t == JT_LIST && affix.u.l->tuple) {
        for (size_t i = 0; i < affix.u.l->n; i++)
            if (affix_match(r, s, affix.u.l->items[i], suffix))
                return true;
        return false;
    }
    if (affix.t != JT_STR)
        jrender_error(r, "%s first arg must be str or a tuple of str, not %s", suffix ? "endswith" : "startswith",
                      jv_type_name(affix));
    const jstr *p = affix.u.s;
    if (p->len > s->len)
        return false;
    return memcmp(suffix ? s->s + s->len - p->len : s->s, p->s, p->len) == 0;
}
static jv m_startswith(jrender *r, jv self, const jcall_args *a)
{
    if (a->npos > 1)
        jrender_error(r, "startswith() with start/end is not supported");
    return jv_bool(affix_match(r, self.u.s, jcall_args_get(a, 0, NULL, jv_undef(NULL)), false));
}
static jv m_endswith(jrender *r, jv self, const jcall_args *a)
{
    if (a->npos > 1)
        jrender_error(r, "endswith() with start/end is not supported");
    return jv_bool(affix_match(r, self.u.s, jcall_args_get(a, 0, NULL, jv_undef(NULL)), true));
}
static jv m_upper(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_case(r, self.u.s, JCASE_UPPER)); }
static jv m_lower(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_case(r, self.u.s, JCASE_LOWER)); }
static jv m_title(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_case(r, self.u.s, JCASE_TITLE)); }
static jv m_capitalize(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_case(r, self.u.s, JCASE_CAPITALIZE)); }
static jv m_replace(jrender *r, jv self, const jcall_args *a)
{
    jv o = jcall_args_get(a, 0, NULL, jv_undef(NULL)), n = jcall_args_get(a, 1, NULL, jv_undef(NULL));
    if (o.t != JT_STR || n.t != JT_STR)
        jrender_error(r, "replace() arguments must be str");
    return jv_str(jstrop_replace(r, self.u.s, o.u.s, n.u.s, arg_int(r, a, 2, "count", -1)));
}
static jv find_impl(jrender *r, jv self, const jcall_args *a, bool rev)
{
    jv sub = jcall_args_get(a, 0, NULL, jv_undef(NULL));
    if (sub.t != JT_STR)
        jrender_error(r, "must be str, not %s", jv_type_name(sub));
    if (a->npos > 1)
        jrender_error(r, "find() with start/end is not supported");
    return jv_int(jstrop_find(self.u.s, sub.u.s, rev));
}
static jv m_find(jrender *r, jv self, const jcall_args *a) { return find_impl(r, self, a, false); }
static jv m_rfind(jrender *r, jv self, const jcall_args *a) { return find_impl(r, self, a, true); }
static jv m_index(jrender *r, jv self, const jcall_args *a)
{
    jv v = find_impl(r, self, a, false);
    if (v.u.i < 0)
        jrender_error(r, "substring not found");
    return v;
}
static jv m_count(jrender *r, jv self, const jcall_args *a)
{
    jv sub = jcall_args_get(a, 0, NULL, jv_undef(NULL));
    if (sub.t != JT_STR)
        jrender_error(r, "must be str, not %s", jv_type_name(sub));
    return jv_int(jstrop_count(self.u.s, sub.u.s));
}
static jv m_join(jrender *r, jv self, const jcall_args *a)
{
    jlist *l = jv_iterate(r, jcall_args_get(a, 0, NULL, jv_undef(NULL)));
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            jbuf_put_str(&b, self.u.s);
        if (l->items[i].t != JT_STR)
            jrender_error(r, "sequence item %zu: expected str instance, %s found", i, jv_type_name(l->items[i]));
        jbuf_put_str(&b, l->items[i].u.s);
    }
    return jv_str(jbuf_finish(&b));
}
static jv m_format(jrender *r, jv self, const jcall_args *a) { return jv_str(jstrop_format(r, self.u.s, a)); }

static jv str_pred(jrender *r, jv self, int kind)
{
    const jstr *s = self.u.s;
    if (!s->len)
        return jv_bool(false);
    bool any_cased = false;
    for (size_t i = 0; i < s->len;) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        i += adv;
        utf8proc_category_t c = utf8proc_category(cp);
        bool alpha = c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
                     c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
        bool digit = c == UTF8PROC_CATEGORY_ND;
        switch (kind) {
        case 0: if (!digit) return jv_bool(false); break;
        case 1: if (!alpha) return jv_bool(false); break;
        case 2: if (!alpha && !digit && c != UTF8PROC_CATEGORY_NL && c != UTF8PROC_CATEGORY_NO) return jv_bool(false); break;
        case 3: if (!py_isspace(cp)) return jv_bool(false); break;
        case 4:
            if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT)
                return jv_bool(false);
            any_cased |= c == UTF8PROC_CATEGORY_LL;
            break;
        case 5:
            if (c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT)
                return jv_bool(false);
            any_cased |= c == UTF8PROC_CATEGORY_LU;
            break;
        }
    }
    return jv_bool(kind >= 4 ? any_cased : true);
}
static jv m_isdigit(jrender *r, jv self, const jcall_args *a) { return str_pred(r, self, 0); }
static jv m_isalpha(jrender *r, jv self, const jcall_args *a) { return str_pred(r, self, 1); }
static jv m_isalnum(jrender *r, jv self, const jcall_args *a) { return str_pred(r, self, 2); }
static jv m_isspace(jrender *r, jv self, const jcall_args *a) { return str_pred(r, self, 3); }
static jv m_islower(jrender *r, jv self, const jcall_args *a) { return str_pred(r, self, 4); }
static jv m_isupper(jrender *r, jv self, const jcall_args *a) { return str_pred(r, self, 5); }

/* ---- dict methods ---- */
static jv m_items(jrender *r, jv self, const jcall_args *a)
{
    jlist *l = jlist_new(r->f, self.u.d->n);
    for (size_t i = 0; i < self.u.d->n; i++) {
        jlist *t = jlist_new(r->f, 2);
        t->tuple = true;
        jlist_push(r->f, t, self.u.d->e[i].key);
        jlist_push(r->f, t, self.u.d->e[i].val);
        jlist_push(r->f, l, jv_list(t));
    }
    return jv_list(l);
}
static jv m_keys(jrender *r, jv self, const jcall_args *a) { return jv_list(jv_iterate(r, self)); }
static jv m_values(jrender *r, jv self, const jcall_args *a)
{
    jlist *l = jlist_new(r->f, self.u.d->n);
    for (size_t i = 0; i < self.u.d->n; i++)
        jlist_push(r->f, l, self.u.d->e[i].val);
    return jv_list(l);
}
static jv m_get(jrender *r, jv self, const jcall_args *a)
{
    jv *v = jdict_get(self.u.d, jcall_args_get(a, 0, NULL, jv_undef(NULL)));
    return v ? *v : jcall_args_get(a, 1, "default", jv_none());
}
static jv m_copy(jrender *r, jv self, const jcall_args *a)
{
    if (self.t == JT_LIST) {
        jlist *l = jlist_new(r->f, self.u.l->n);
        for (size_t i = 0; i < self.u.l->n; i++)
            jlist_push(r->f, l, self.u.l->items[i]);
        return jv_list(l);
    }
    jdict *d = jdict_new(r->f, self.u.d->n);
    for (size_t i = 0; i < self.u.d->n; i++)
        jdict_set(r->f, d, self.u.d->e[i].key, self.u.d->e[i].val);
    return jv_dict(d);
}

/* ---- list methods ---- */
static jv m_list_index(jrender *r, jv self, const jcall_args *a)
{
    jv x = jcall_args_get(a, 0, NULL, jv_undef(NULL));
    for (size_t i = 0; i < self.u.l->n; i++)
        if (jv_equal(self.u.l->items[i], x))
            return jv_int((int64_t)i);
    jrender_error(r, "value is not in list");
}
static jv m_list_count(jrender *r, jv self, const jcall_args *a)
{
    jv x = jcall_args_get(a, 0, NULL, jv_undef(NULL));
    int64_t n = 0;
    for (size_t i = 0; i < self.u.l->n; i++)
        n += jv_equal(self.u.l->items[i], x);
    return jv_int(n);
}

/* ---- loop ---- */
static jv m_cycle(jrender *r, jv self, const jcall_args *a)
{
    if (!a->npos)
        jrender_error(r, "no items for cycling given");
    return a->pos[self.u.loop->index0 % a->npos];
}
static jv m_changed(jrender *r, jv self, const jcall_args *a)
{
    jlist *t = jlist_new(r->f, a->npos);
    for (size_t i = 0; i < a->npos; i++)
        jlist_push(r->f, t, a->pos[i]);
    jv v = jv_list(t);
    jloop *l = self.u.loop;
    if (l->has_changed && jv_equal(l->last_changed, v))
        return jv_bool(false);
    l->has_changed = true;
    l->last_changed = v;
    return jv_bool(true);
}

static jv loop_attr(jrender *r, jv lv, const char *name)
{
    jloop *l = lv.u.loop;
    size_t n = l->items->n, i = l->index0;
    if (!strcmp(name, "index")) return jv_int((int64_t)i + 1);
    if (!strcmp(name, "index0")) return jv_int((int64_t)i);
    if (!strcmp(name, "revindex")) return jv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i + 1 == n);
    if (!strcmp(name, "length")) return jv_int((int64_t)n);
    if (!strcmp(name, "depth")) return jv_int(1);
    if (!strcmp(name, "depth0")) return jv_int(0);
    if (!strcmp(name, "previtem")) return i ? l->items->items[i - 1] : jv_undef("there is no previous item");
    if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->items[i + 1] : jv_undef("there is no next item");
    if (!strcmp(name, "cycle")) return mkfunc(r, "cycle", m_cycle, lv);
    if (!strcmp(name, "changed")) return mkfunc(r, "changed", m_changed, lv);
    return jv_undef(NULL);
}

typedef struct method_entry {
    const char *name;
    jfunc_impl impl;
} method_entry;

static const method_entry str_methods[] = {
    {"strip", m_strip}, {"lstrip", m_lstrip}, {"rstrip", m_rstrip}, {"split", m_split}, {"rsplit", m_rsplit},
    {"splitlines", m_splitlines}, {"startswith", m_startswith}, {"endswith", m_endswith}, {"upper", m_upper},
    {"lower", m_lower}, {"title", m_title}, {"capitalize", m_capitalize}, {"replace", m_replace},
    {"find", m_find}, {"rfind", m_rfind}, {"index", m_index}, {"count", m_count}, {"join", m_join},
    {"format", m_format}, {"isdigit", m_isdigit}, {"isalpha", m_isalpha}, {"isalnum", m_isalnum},
    {"isspace", m_isspace}, {"islower", m_islower}, {"isupper", m_isupper}, {NULL, NULL},
};
static const method_entry dict_methods[] = {
    {"items", m_items}, {"keys", m_keys}, {"values", m_values}, {"get", m_get}, {"copy", m_copy}, {NULL, NULL},
};
static const method_entry list_methods[] = {
    {"index", m_list_index}, {"count", m_list_count}, {"copy", m_copy}, {NULL, NULL},
};
static const char *const dict_unsafe[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
static const char *const list_unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", NULL};

static jv find_method(jrender *r, const method_entry *t, const char *name, jv self)
{
    for (; t->name; t++)
        if (!strcmp(t->name, name))
            return mkfunc(r, t->name, t->impl, self);
    return jv_undef(NULL);
}

static void refuse_unsafe(jrender *r, const char *const *names, const char *name, const char *type)
{
    for (; *names; names++)
        if (!strcmp(*names, name))
            jfail_raise(r->f, VESTA_ERR_FORMAT, "access to attribute '%s' of '%s' object is unsafe.", name, type);
}

jv jgetattr(jrender *r, jv obj, const char *name)
{
    switch (obj.t) {
    case JT_STR: return find_method(r, str_methods, name, obj);
    case JT_DICT:
        refuse_unsafe(r, dict_unsafe, name, "dict");
        return find_method(r, dict_methods, name, obj);
    case JT_LIST:
        refuse_unsafe(r, list_unsafe, name, obj.u.l->tuple ? "tuple" : "list");
        return find_method(r, list_methods, name, obj);
    case JT_NS: {
        jv *v = jdict_get_cstr(obj.u.d, name);
        return v ? *v : jv_undef(NULL);
    }
    case JT_LOOP: return loop_attr(r, obj, name);
    case JT_UNDEF: jundef_error(r, obj);
    default: return jv_undef(NULL);
    }
}

/* ---- globals ---- */
enum { SANDBOX_MAX_RANGE = 100000 }; /* jinja2.sandbox.MAX_RANGE */

static jv g_range(jrender *r, jv self, const jcall_args *a)
{
    int64_t start = 0, stop, step = 1;
    if (a->npos == 0)
        jrender_error(r, "range expected at least 1 argument, got 0");
    if (a->npos == 1) {
        stop = arg_int(r, a, 0, NULL, 0);
    } else {
        start = arg_int(r, a, 0, NULL, 0);
        stop = arg_int(r, a, 1, NULL, 0);
        step = arg_int(r, a, 2, NULL, 1);
    }
    if (step == 0)
        jrender_error(r, "range() arg 3 must not be zero");
    jlist *l = jlist_new(r->f, 0);
    int64_t count = 0;
    if (step > 0 && start < stop)
        count = (int64_t)(((__int128)stop - start + step - 1) / step);
    else if (step < 0 && start > stop)
        count = (int64_t)(((__int128)start - stop - step - 1) / -step);
    if (count > SANDBOX_MAX_RANGE)
        jfail_raise(r->f, VESTA_ERR_LIMIT, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
                    SANDBOX_MAX_RANGE);
    for (int64_t i = 0; i < count; i++)
        jlist_push(r->f, l, jv_int(start + i * step));
    return jv_list(l);
}

static jdict *dict_from_args(jrender *r, const jcall_args *a, const char *what)
{
    jdict *d = jdict_new(r->f, 0);
    if (a->npos > 1)
        jrender_error(r, "%s expected at most 1 argument, got %zu", what, a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.t == JT_DICT || src.t == JT_NS) {
            for (size_t i = 0; i < src.u.d->n; i++)
                jdict_set(r->f, d, src.u.d->e[i].key, src.u.d->e[i].val);
        } else {
            jlist *l = jv_iterate(r, src);
            for (size_t i = 0; i < l->n; i++) {
                jlist *pair = jv_iterate(r, l->items[i]);
                if (pair->n != 2)
                    jrender_error(r, "dictionary update sequence element #%zu has length %zu; 2 is required", i, pair->n);
                jdict_set(r->f, d, pair->items[0], pair->items[1]);
            }
        }
    }
    for (size_t i = 0; i < a->nkw; i++)
        jdict_set(r->f, d, jv_str(jstr_lit(r->f, a->kwnames[i])), a->kw[i]);
    return d;
}

static jv g_dict(jrender *r, jv self, const jcall_args *a) { return jv_dict(dict_from_args(r, a, "dict")); }

static jv g_namespace(jrender *r, jv self, const jcall_args *a)
{
    jdict *d = dict_from_args(r, a, "namespace");
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].key.t == JT_STR && d->e[i].key.u.s->s[0] == '_')
            jrender_error(r, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'. "
                             "Please rename the attribute.", d->e[i].key.u.s->s);
    jv v = {.t = JT_NS};
    v.u.d = d;
    return v;
}

static jv g_raise_exception(jrender *r, jv self, const jcall_args *a)
{
    jv msg = jcall_args_get(a, 0, "message", jv_undef(NULL));
    jstr *s = jv_to_str(r, msg);
    jfail_raise(r->f, VESTA_ERR_FORMAT, "%.*s", (int)(s->len < 480 ? s->len : 480), s->s);
}

static jv g_strftime_now(jrender *r, jv self, const jcall_args *a)
{
    jv fmt = jcall_args_get(a, 0, "format", jv_undef(NULL));
    if (fmt.t != JT_STR)
        jrender_error(r, "strftime() argument 1 must be str, not %s", jv_type_name(fmt));
    time_t t = r->now >= 0 ? (time_t)r->now : time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char out[1024];
    if (fmt.u.s->len == 0)
        return jv_str(jstr_lit(r->f, ""));
    if (memchr(fmt.u.s->s, 0, fmt.u.s->len))
        jrender_error(r, "embedded null character");
    size_t n = strftime(out, sizeof out, fmt.u.s->s, &tm);
    if (n == 0)
        jrender_error(r, "strftime_now: format too long");
    return jv_str(jstr_new(r->f, out, n, false));
}

jv jglobal_lookup(const char *name)
{
    static const struct {
        const char *name;
        jfunc fn;
    } globals[] = {
        {"range", {"range", g_range, {0}}},
        {"dict", {"dict", g_dict, {0}}},
        {"namespace", {"namespace", g_namespace, {0}}},
        {"raise_exception", {"raise_exception", g_raise_exception, {0}}},
        {"strftime_now", {"strftime_now", g_strftime_now, {0}}},
    };
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        if (!strcmp(globals[i].name, name)) {
            jv v = {.t = JT_FUNC};
            v.u.fn = (jfunc *)&globals[i].fn;
            return v;
        }
    return jv_undef(NULL);
}
