/* Tree-walking evaluator. Scopes follow Jinja2: a for-loop iteration and a macro call get a
 * fresh scope (a `set` there does not leak out), if-blocks do not. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "render.h"

struct jscope {
    jscope *parent;
    jdict *vars;
};

struct jmacro {
    const jnode *def;
    jscope *closure;
    jv caller; /* set for the macro behind {% call %} */
};

typedef enum exec_status { EX_NORMAL = 0, EX_BREAK, EX_CONTINUE } exec_status;

_Noreturn void jrender_error(jrender *r, const char *fmt, ...)
{
    char msg[VESTA_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jfail_raise(r->f, VESTA_ERR_FORMAT, "%s", msg);
}

void jrender_step(jrender *r)
{
    if (++r->steps > r->lim->max_steps)
        jfail_raise(r->f, VESTA_ERR_LIMIT, "template exceeded the limit of %llu steps",
                    (unsigned long long)r->lim->max_steps);
}

static void enter(jrender *r)
{
    if (++r->depth > r->lim->max_depth)
        jfail_raise(r->f, VESTA_ERR_LIMIT, "template exceeded the recursion limit of %u", r->lim->max_depth);
}
static void leave(jrender *r) { r->depth--; }

jscope *jscope_new(jrender *r, jscope *parent)
{
    jscope *s = jalloc(r->f, sizeof *s);
    s->parent = parent;
    s->vars = jdict_new(r->f, 0);
    return s;
}

static jv name_key(jrender *r, const char *name)
{
    return jv_str(jstr_lit(r->f, name));
}

void jscope_set(jrender *r, jscope *s, const char *name, jv v)
{
    jv *slot = jdict_get_cstr(s->vars, name);
    if (slot)
        *slot = v;
    else
        jdict_set(r->f, s->vars, name_key(r, name), v);
}

static jv lookup(jrender *r, jscope *s, const char *name)
{
    for (; s; s = s->parent) {
        jv *v = jdict_get_cstr(s->vars, name);
        if (v)
            return *v;
    }
    jv g = jglobal_lookup(name);
    if (g.t != JT_UNDEF)
        return g;
    return jv_undef(name);
}

_Noreturn void jundef_error(jrender *r, jv u)
{
    if (u.u.undef_name && u.u.undef_name[0] == '\x01')
        jrender_error(r, "%s", u.u.undef_name + 1);
    jrender_error(r, "'%s' is undefined", u.u.undef_name ? u.u.undef_name : "value");
}

static jv eval(jrender *r, jscope *s, const jnode *n);

static jstr *slice_str(jrender *r, jstr *s, jv start, jv stop, jv step);

static int64_t to_index(jrender *r, jv v, const char *what)
{
    if (v.t == JT_INT) return v.u.i;
    if (v.t == JT_BOOL) return v.u.b;
    jrender_error(r, "%s must be an integer or None, not %s", what, jv_type_name(v));
}

/* Python slice bounds for a sequence of length n. */
static void slice_bounds(jrender *r, size_t n, jv start, jv stop, jv step, int64_t *pstart, int64_t *pstop,
                         int64_t *pstep)
{
    int64_t st = 1;
    if (step.t != JT_NONE && step.t != JT_UNDEF)
        st = to_index(r, step, "slice step");
    if (st == 0)
        jrender_error(r, "slice step cannot be zero");
    int64_t len = (int64_t)n, a, b;
    if (start.t == JT_NONE || start.t == JT_UNDEF)
        a = st < 0 ? len - 1 : 0;
    else {
        a = to_index(r, start, "slice index");
        if (a < 0) { a += len; if (a < 0) a = st < 0 ? -1 : 0; }
        else if (a >= len) a = st < 0 ? len - 1 : len;
    }
    if (stop.t == JT_NONE || stop.t == JT_UNDEF)
        b = st < 0 ? -1 : len;
    else {
        b = to_index(r, stop, "slice index");
        if (b < 0) { b += len; if (b < 0) b = st < 0 ? -1 : 0; }
        else if (b >= len) b = st < 0 ? len - 1 : len;
    }
    *pstart = a;
    *pstop = b;
    *pstep = st;
}

jv jslice(jrender *r, jv obj, jv start, jv stop, jv step)
{
    if (obj.t == JT_STR)
        return jv_str(slice_str(r, obj.u.s, start, stop, step));
    if (obj.t == JT_LIST) {
        int64_t a, b, st;
        slice_bounds(r, obj.u.l->n, start, stop, step, &a, &b, &st);
        jlist *l = jlist_new(r->f, 0);
        l->tuple = obj.u.l->tuple;
        for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
            jlist_push(r->f, l, obj.u.l->items[i]);
        return jv_list(l);
    }
    if (obj.t == JT_UNDEF)
        jundef_error(r, obj);
    /* jinja2 folds constant expressions at compile time, where a failed slice becomes Undefined;
     * at run time (what templates do with their variables) slicing these fails. */
    if (obj.t == JT_DICT || obj.t == JT_NS)
        jrender_error(r, "unhashable type: 'slice'");
    jrender_error(r, "'%s' object is not subscriptable", jv_type_name(obj));
}

static jstr *slice_str(jrender *r, jstr *s, jv start, jv stop, jv step)
{
    /* Code point offsets of s. */
    size_t ncp = utf8_count(s->s, s->len);
    size_t *off = jalloc(r->f, (ncp + 1) * sizeof *off);
    size_t k = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xC0) != 0x80)
            off[k++] = i;
    off[ncp] = s->len;
    int64_t a, b, st;
    slice_bounds(r, ncp, start, stop, step, &a, &b, &st);
    if (st == 1)
        return jstr_slice_bytes(r->f, s, a < b ? off[a] : 0, a < b ? off[b] : 0);
    jbuf out;
    jbuf_init(&out, r->f, r->lim->max_output);
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        jbuf_put_str_range(&out, s, off[i], off[i + 1]);
    return jbuf_finish(&out);
}

jv jgetitem(jrender *r, jv obj, jv key)
{
    switch (obj.t) {
    case JT_UNDEF:
        jundef_error(r, obj);
    case JT_DICT: {
        jv *v = jdict_get(obj.u.d, key);
        if (v)
            return *v;
        break;
    }
    case JT_LIST:
        if (key.t == JT_INT || key.t == JT_BOOL) {
            int64_t i = key.t == JT_INT ? key.u.i : key.u.b;
            int64_t n = (int64_t)obj.u.l->n;
            if (i < 0)
                i += n;
            if (i >= 0 && i < n)
                return obj.u.l->items[i];
        }
        break;
    case JT_STR:
        if (key.t == JT_INT) {
            int64_t n = (int64_t)utf8_count(obj.u.s->s, obj.u.s->len);
            int64_t i = key.u.i < 0 ? key.u.i + n : key.u.i;
            if (i >= 0 && i < n)
                return jslice(r, obj, jv_int(i), jv_int(i + 1), jv_none());
        }
        break;
    default:
        break;
    }
    if (key.t == JT_STR) {
        jv a = jgetattr(r, obj, key.u.s->s);
        if (a.t != JT_UNDEF)
            return a;
    }
    jbuf b;
    jbuf_init(&b, r->f, 0);
    jbuf_putc(&b, '\x01');
    if (key.t == JT_STR)
        jbuf_printf(&b, "'%s object' has no attribute '%.200s'", jv_type_name(obj), key.u.s->s);
    else {
        jbuf_printf(&b, "'%s object' has no element ", jv_type_name(obj));
        jv_write_repr(r, &b, key);
    }
    return jv_undef(b.s);
}

static jv call_node(jrender *r, jscope *s, const jnode *n, jv callee);

static jcall_args eval_args(jrender *r, jscope *s, const jnode *n, jv *first)
{
    jcall_args a = {0};
    size_t extra = first ? 1 : 0;
    a.npos = n->nitems + extra;
    a.pos = jalloc(r->f, (a.npos + 1) * sizeof(jv));
    if (first)
        a.pos[0] = *first;
    for (size_t i = 0; i < n->nitems; i++)
        a.pos[i + extra] = eval(r, s, n->items[i]);
    a.nkw = n->nkwargs;
    a.kwnames = n->kwnames;
    a.kw = jalloc(r->f, (a.nkw + 1) * sizeof(jv));
    for (size_t i = 0; i < n->nkwargs; i++)
        a.kw[i] = eval(r, s, n->kwargs[i]);
    return a;
}

jv jcall_args_get(const jcall_args *a, size_t pos, const char *kw, jv dflt)
{
    if (kw)
        for (size_t i = 0; i < a->nkw; i++)
            if (!strcmp(a->kwnames[i], kw))
                return a->kw[i];
    if (pos < a->npos)
        return a->pos[pos];
    return dflt;
}

static void exec_body(jrender *r, jscope *s, const jnode *body, exec_status *st);

static jv call_macro(jrender *r, jmacro *m, const jcall_args *a)
{
    const jnode *def = m->def;
    enter(r);
    jscope *sc = jscope_new(r, m->closure);
    if (a->npos > def->nparams)
        jrender_error(r, "macro '%s' takes not more than %zu argument(s)", def->name ? def->name : "caller",
                      def->nparams);
    for (size_t i = 0; i < def->nparams; i++) {
        jv v = jv_undef(def->params[i]);
        bool have = false;
        if (i < a->npos) {
            v = a->pos[i];
            have = true;
        }
        for (size_t k = 0; k < a->nkw; k++)
            if (!strcmp(a->kwnames[k], def->params[i])) {
                v = a->kw[k];
                have = true;
            }
        if (!have && def->items[i])
            v = eval(r, sc, def->items[i]);
        jscope_set(r, sc, def->params[i], v);
    }
    for (size_t k = 0; k < a->nkw; k++) {
        bool known = false;
        for (size_t i = 0; i < def->nparams; i++)
            known |= !strcmp(a->kwnames[k], def->params[i]);
        if (!known)
            jrender_error(r, "macro '%s' takes no keyword argument '%s'", def->name ? def->name : "caller",
                          a->kwnames[k]);
    }
    if (m->caller.t != JT_UNDEF)
        jscope_set(r, sc, "caller", m->caller);
    jbuf *saved = r->out;
    jbuf out;
    jbuf_init(&out, r->f, r->lim->max_output);
    r->out = &out;
    exec_status st = EX_NORMAL;
    exec_body(r, sc, def->c, &st);
    r->out = saved;
    leave(r);
    return jv_str(jbuf_finish(&out));
}

jv jcall_value(jrender *r, jv callee, const jcall_args *a)
{
    jrender_step(r);
    switch (callee.t) {
    case JT_MACRO: return call_macro(r, callee.u.m, a);
    case JT_FUNC: return callee.u.fn->impl(r, callee.u.fn->self, a);
    case JT_UNDEF: jundef_error(r, callee);
    case JT_LOOP: jrender_error(r, "recursive loops are not supported");
    default: jrender_error(r, "'%s' object is not callable", jv_type_name(callee));
    }
}

static jv call_node(jrender *r, jscope *s, const jnode *n, jv callee)
{
    jcall_args a = eval_args(r, s, n, NULL);
    return jcall_value(r, callee, &a);
}

static jv arith(jrender *r, jop op, jv a, jv b)
{
    if (op == JOP_MOD && a.t == JT_STR && b.t == JT_UNDEF) {
        /* str % Undefined: Python treats Undefined as a mapping, so a format without fields
         * passes through and one with fields fails. */
        if (memchr(a.u.s->s, '%', a.u.s->len))
            jundef_error(r, b);
        return a;
    }
    if (a.t == JT_UNDEF) jundef_error(r, a);
    if (b.t == JT_UNDEF) jundef_error(r, b);
    bool an = a.t == JT_INT || a.t == JT_BOOL || a.t == JT_FLOAT;
    bool bn = b.t == JT_INT || b.t == JT_BOOL || b.t == JT_FLOAT;
    if (op == JOP_ADD && a.t == JT_STR && b.t == JT_STR) {
        jbuf o;
        jbuf_init(&o, r->f, r->lim->max_output);
        jbuf_put_str(&o, a.u.s);
        jbuf_put_str(&o, b.u.s);
        return jv_str(jbuf_finish(&o));
    }
    if (op == JOP_ADD && a.t == JT_LIST && b.t == JT_LIST && a.u.l->tuple == b.u.l->tuple) {
        jlist *l = jlist_new(r->f, a.u.l->n + b.u.l->n);
        l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++) jlist_push(r->f, l, a.u.l->items[i]);
        for (size_t i = 0; i < b.u.l->n; i++) jlist_push(r->f, l, b.u.l->items[i]);
        return jv_list(l);
    }
    if (op == JOP_MUL && ((a.t == JT_STR || a.t == JT_LIST) && (b.t == JT_INT || b.t == JT_BOOL))) {
        int64_t k = b.t == JT_INT ? b.u.i : b.u.b;
        if (a.t == JT_STR) {
            jbuf o;
            jbuf_init(&o, r->f, r->lim->max_output);
            for (int64_t i = 0; i < k; i++) {
                jrender_step(r);
                jbuf_put_str(&o, a.u.s);
            }
            return jv_str(jbuf_finish(&o));
        }
        jlist *l = jlist_new(r->f, 0);
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < a.u.l->n; j++) {
                jrender_step(r);
                jlist_push(r->f, l, a.u.l->items[j]);
            }
        return jv_list(l);
    }
    if (op == JOP_MUL && (b.t == JT_STR || b.t == JT_LIST) && (a.t == JT_INT || a.t == JT_BOOL))
        return arith(r, op, b, a);
    if (op == JOP_MOD && a.t == JT_STR)
        return jstr_percent_format(r, a.u.s, b);
    if (!an || !bn) {
        static const char *sym[] = {"+", "-", "*", "/", "//", "%", "**"};
        jrender_error(r, "unsupported operand type(s) for %s: '%s' and '%s'", sym[op], jv_type_name(a), jv_type_name(b));
    }
    bool fl = a.t == JT_FLOAT || b.t == JT_FLOAT;
    if (!fl && op != JOP_DIV && op != JOP_POW) {
        int64_t x = a.t == JT_INT ? a.u.i : a.u.b, y = b.t == JT_INT ? b.u.i : b.u.b, z;
        switch (op) {
        case JOP_ADD: if (__builtin_add_overflow(x, y, &z)) goto ovf; return jv_int(z);
        case JOP_SUB: if (__builtin_sub_overflow(x, y, &z)) goto ovf; return jv_int(z);
        case JOP_MUL: if (__builtin_mul_overflow(x, y, &z)) goto ovf; return jv_int(z);
        case JOP_FLOORDIV: case JOP_MOD: {
            if (y == 0) jrender_error(r, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) goto ovf;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
            return jv_int(op == JOP_MOD ? m : q);
        }
        default: break;
        }
    }
    if (op == JOP_POW && !fl) {
        int64_t x = a.t == JT_INT ? a.u.i : a.u.b, y = b.t == JT_INT ? b.u.i : b.u.b;
        if (y >= 0) {
            int64_t z = 1;
            for (int64_t i = 0; i < y; i++) {
                if (__builtin_mul_overflow(z, x, &z)) goto ovf;
                if (z == 0 || z == 1) break;
            }
            return jv_int(z);
        }
    }
    {
        double x = a.t == JT_FLOAT ? a.u.f : a.t == JT_INT ? (double)a.u.i : a.u.b;
        double y = b.t == JT_FLOAT ? b.u.f : b.t == JT_INT ? (double)b.u.i : b.u.b;
        switch (op) {
        case JOP_ADD: return jv_float(x + y);
        case JOP_SUB: return jv_float(x - y);
        case JOP_MUL: return jv_float(x * y);
        case JOP_DIV: if (y == 0) jrender_error(r, "division by zero"); return jv_float(x / y);
        case JOP_FLOORDIV: if (y == 0) jrender_error(r, "float floor division by zero"); return jv_float(floor(x / y));
        case JOP_MOD: {
            if (y == 0) jrender_error(r, "float modulo");
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return jv_float(m);
        }
        case JOP_POW: return jv_float(pow(x, y));
        default: break;
        }
    }
ovf:
    jfail_raise(r->f, VESTA_ERR_UNSUPPORTED, "integer overflow in template arithmetic");
}

bool jcontains(jrender *r, jv container, jv item)
{
    switch (container.t) {
    case JT_STR:
        if (item.t != JT_STR)
            jrender_error(r, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        return memmem(container.u.s->s, container.u.s->len, item.u.s->s, item.u.s->len) != NULL ||
               item.u.s->len == 0;
    case JT_LIST:
        for (size_t i = 0; i < container.u.l->n; i++)
            if (jv_equal(container.u.l->items[i], item))
                return true;
        return false;
    case JT_DICT:
        if (item.t == JT_DICT || item.t == JT_NS || (item.t == JT_LIST && !item.u.l->tuple))
            jrender_error(r, "unhashable type: '%s'", jv_type_name(item));
        return jdict_get(container.u.d, item) != NULL;
    case JT_UNDEF: return false;
    default: jrender_error(r, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

static bool compare(jrender *r, jop op, jv a, jv b)
{
    switch (op) {
    case JOP_EQ: return jv_equal(a, b);
    case JOP_NE: return !jv_equal(a, b);
    case JOP_LT: return jv_compare(r, a, b) < 0;
    case JOP_LE: return jv_compare(r, a, b) <= 0;
    case JOP_GT: return jv_compare(r, a, b) > 0;
    case JOP_GE: return jv_compare(r, a, b) >= 0;
    case JOP_IN: return jcontains(r, b, a);
    case JOP_NOTIN: return !jcontains(r, b, a);
    default: return false;
    }
}

static jv eval(jrender *r, jscope *s, const jnode *n)
{
    jrender_step(r);
    enter(r);
    jv v;
    switch (n->kind) {
    case JN_CONST: v = n->value; break;
    case JN_NAME: v = lookup(r, s, n->name); break;
    case JN_GETATTR: {
        jv o = eval(r, s, n->a);
        if (o.t == JT_UNDEF)
            jundef_error(r, o);
        v = jgetattr(r, o, n->name);
        if (v.t == JT_UNDEF) {
            jv *dv = o.t == JT_DICT ? jdict_get_cstr(o.u.d, n->name) : NULL;
            if (dv) {
                v = *dv;
            } else {
                jbuf b;
                jbuf_init(&b, r->f, 0);
                jbuf_putc(&b, '\x01');
                jbuf_printf(&b, "'%s object' has no attribute '%s'", jv_type_name(o), n->name);
                v = jv_undef(b.s);
            }
        }
        break;
    }
    case JN_GETITEM: {
        jv o = eval(r, s, n->a);
        v = jgetitem(r, o, eval(r, s, n->b));
        break;
    }
    case JN_SLICE: {
        jv o = eval(r, s, n->d);
        jv a = n->a ? eval(r, s, n->a) : jv_none();
        jv b = n->b ? eval(r, s, n->b) : jv_none();
        jv c = n->c ? eval(r, s, n->c) : jv_none();
        v = jslice(r, o, a, b, c);
        break;
    }
    case JN_CALL: v = call_node(r, s, n, eval(r, s, n->a)); break;
    case JN_FILTER: {
        jv x = eval(r, s, n->a);
        jcall_args a = eval_args(r, s, n, NULL);
        v = jfilter_apply(r, n->name, x, &a, n->line);
        break;
    }
    case JN_TEST: {
        jv x = eval(r, s, n->a);
        jcall_args a = eval_args(r, s, n, NULL);
        v = jv_bool(jtest_apply(r, n->name, x, &a, n->line));
        break;
    }
    case JN_BINOP: v = arith(r, n->op, eval(r, s, n->a), eval(r, s, n->b)); break;
    case JN_UNOP: {
        jv x = eval(r, s, n->a);
        if (x.t == JT_INT) v = n->op == JOP_NEG ? jv_int(-x.u.i) : x;
        else if (x.t == JT_BOOL) v = jv_int(n->op == JOP_NEG ? -(int64_t)x.u.b : x.u.b);
        else if (x.t == JT_FLOAT) v = n->op == JOP_NEG ? jv_float(-x.u.f) : x;
        else if (x.t == JT_UNDEF) jundef_error(r, x);
        else jrender_error(r, "bad operand type for unary %c: '%s'", n->op == JOP_NEG ? '-' : '+', jv_type_name(x));
        break;
    }
    case JN_AND: {
        jv a = eval(r, s, n->a);
        v = jv_truthy(a) ? eval(r, s, n->b) : a;
        break;
    }
    case JN_OR: {
        jv a = eval(r, s, n->a);
        v = jv_truthy(a) ? a : eval(r, s, n->b);
        break;
    }
    case JN_NOT: v = jv_bool(!jv_truthy(eval(r, s, n->a))); break;
    case JN_COMPARE: {
        jv left = eval(r, s, n->a);
        v = jv_bool(true);
        for (size_t i = 0; i < n->nitems; i++) {
            jv right = eval(r, s, n->items[i]);
            if (!compare(r, n->ops[i], left, right)) {
                v = jv_bool(false);
                break;
            }
            left = right;
        }
        break;
    }
    case JN_CONDEXPR:
        if (jv_truthy(eval(r, s, n->b)))
            v = eval(r, s, n->a);
        else
            v = n->c ? eval(r, s, n->c) : jv_undef(NULL);
        break;
    case JN_LIST: case JN_TUPLE: {
        jlist *l = jlist_new(r->f, n->nitems);
        l->tuple = n->kind == JN_TUPLE;
        for (size_t i = 0; i < n->nitems; i++)
            jlist_push(r->f, l, eval(r, s, n->items[i]));
        v = jv_list(l);
        break;
    }
    case JN_DICT: {
        jdict *d = jdict_new(r->f, n->nitems / 2);
        for (size_t i = 0; i + 1 < n->nitems; i += 2) {
            jv k = eval(r, s, n->items[i]);
            if (k.t == JT_LIST && !k.u.l->tuple)
                jrender_error(r, "unhashable type: 'list'");
            if (k.t == JT_DICT)
                jrender_error(r, "unhashable type: 'dict'");
            jdict_set(r->f, d, k, eval(r, s, n->items[i + 1]));
        }
        v = jv_dict(d);
        break;
    }
    case JN_CONCAT: {
        jbuf o;
        jbuf_init(&o, r->f, r->lim->max_output);
        for (size_t i = 0; i < n->nitems; i++)
            jv_write_str(r, &o, eval(r, s, n->items[i]));
        v = jv_str(jbuf_finish(&o));
        break;
    }
    default:
        jrender_error(r, "line %d: unexpected node in expression", n->line);
    }
    leave(r);
    return v;
}

static void assign(jrender *r, jscope *s, const jnode *target, jv v)
{
    if (target->kind == JN_NAME) {
        jscope_set(r, s, target->name, v);
        return;
    }
    if (target->kind == JN_NSREF) {
        jv ns = lookup(r, s, target->a->name);
        if (ns.t != JT_NS)
            jrender_error(r, "cannot assign attribute on non-namespace object");
        if (target->name[0] == '_')
            jrender_error(r, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'. "
                             "Please rename the attribute.", target->name);
        jdict_set(r->f, ns.u.d, name_key(r, target->name), v);
        return;
    }
    /* tuple unpacking */
    jlist *items = jv_iterate(r, v);
    if (items->n != target->nitems)
        jrender_error(r, items->n > target->nitems ? "too many values to unpack (expected %zu)"
                                                   : "not enough values to unpack (expected %zu, got %zu)",
                      target->nitems, items->n);
    for (size_t i = 0; i < target->nitems; i++)
        assign(r, s, target->items[i], items->items[i]);
}

static void exec_node(jrender *r, jscope *s, const jnode *n, exec_status *st);

static void exec_body(jrender *r, jscope *s, const jnode *body, exec_status *st)
{
    if (!body)
        return;
    for (size_t i = 0; i < body->nitems && *st == EX_NORMAL; i++)
        exec_node(r, s, body->items[i], st);
}

static void exec_for(jrender *r, jscope *s, const jnode *n)
{
    jv seq = eval(r, s, n->b);
    jlist *all = jv_iterate(r, seq);
    jlist *items = all;
    if (n->e) {
        /* The filter sees the loop target but not `loop`. */
        items = jlist_new(r->f, 0);
        for (size_t i = 0; i < all->n; i++) {
            jscope *fs = jscope_new(r, s);
            assign(r, fs, n->a, all->items[i]);
            if (jv_truthy(eval(r, fs, n->e)))
                jlist_push(r->f, items, all->items[i]);
        }
    }
    if (!items->n) {
        exec_status st = EX_NORMAL;
        exec_body(r, s, n->d, &st);
        return;
    }
    jloop *loop = jalloc(r->f, sizeof *loop);
    loop->items = items;
    jv lv = {.t = JT_LOOP};
    lv.u.loop = loop;
    for (size_t i = 0; i < items->n; i++) {
        jrender_step(r);
        loop->index0 = i;
        jscope *it = jscope_new(r, s);
        jscope_set(r, it, "loop", lv);
        assign(r, it, n->a, items->items[i]);
        exec_status st = EX_NORMAL;
        exec_body(r, it, n->c, &st);
        if (st == EX_BREAK)
            break;
    }
}

static jscope *set_scope(jscope *s) { return s; }

static jv render_to_string(jrender *r, jscope *s, const jnode *body)
{
    jbuf *saved = r->out;
    jbuf out;
    jbuf_init(&out, r->f, r->lim->max_output);
    r->out = &out;
    exec_status st = EX_NORMAL;
    exec_body(r, s, body, &st);
    r->out = saved;
    return jv_str(jbuf_finish(&out));
}

/* Applies the filter chain parsed with a placeholder constant as its innermost operand. */
static jv apply_filter_chain(jrender *r, jscope *s, const jnode *chain, const jnode *placeholder, jv input)
{
    if (chain == placeholder)
        return input;
    jv x = apply_filter_chain(r, s, chain->a, placeholder, input);
    jcall_args a = eval_args(r, s, chain, NULL);
    return jfilter_apply(r, chain->name, x, &a, chain->line);
}

static jv caller_impl(jrender *r, jv self, const jcall_args *a)
{
    return call_macro(r, self.u.m, a);
}

static void exec_node(jrender *r, jscope *s, const jnode *n, exec_status *st)
{
    jrender_step(r);
    enter(r);
    switch (n->kind) {
    case JN_TEXT: jbuf_put_str(r->out, n->value.u.s); break;
    case JN_OUTPUT: jv_write_str(r, r->out, eval(r, s, n->a)); break;
    case JN_IF: {
        const jnode *c = n;
        for (;;) {
            if (jv_truthy(eval(r, s, c->a))) {
                exec_body(r, s, c->b, st);
                break;
            }
            if (c->c && c->c->kind == JN_IF) {
                c = c->c;
                continue;
            }
            exec_body(r, s, c->c, st);
            break;
        }
        break;
    }
    case JN_FOR: exec_for(r, s, n); break;
    case JN_SET: assign(r, set_scope(s), n->a, eval(r, s, n->b)); break;
    case JN_SET_BLOCK: {
        jv body = render_to_string(r, s, n->b);
        if (n->c)
            body = apply_filter_chain(r, s, n->c, n->d, body);
        assign(r, s, n->a, body);
        break;
    }
    case JN_MACRO: {
        jmacro *m = jalloc(r->f, sizeof *m);
        m->def = n;
        m->closure = s;
        m->caller = jv_undef(NULL);
        jv mv = {.t = JT_MACRO};
        mv.u.m = m;
        jscope_set(r, s, n->name, mv);
        break;
    }
    case JN_CALL_BLOCK: {
        jmacro *cm = jalloc(r->f, sizeof *cm);
        cm->def = n; /* params/defaults/body (c) of the call block */
        cm->closure = s;
        cm->caller = jv_undef(NULL);
        jfunc *fn = jalloc(r->f, sizeof *fn);
        fn->name = "caller";
        fn->impl = caller_impl;
        fn->self.t = JT_MACRO;
        fn->self.u.m = cm;
        jv callee = eval(r, s, n->a->a);
        if (callee.t != JT_MACRO)
            jrender_error(r, "{%% call %%} needs a macro");
        jmacro *with_caller = jalloc(r->f, sizeof *with_caller);
        *with_caller = *callee.u.m;
        with_caller->caller.t = JT_FUNC;
        with_caller->caller.u.fn = fn;
        jcall_args a = eval_args(r, s, n->a, NULL);
        jv out = call_macro(r, with_caller, &a);
        jv_write_str(r, r->out, out);
        break;
    }
    case JN_FILTER_BLOCK: {
        jv body = render_to_string(r, s, n->c);
        jv_write_str(r, r->out, apply_filter_chain(r, s, n->a, n->d, body));
        break;
    }
    case JN_BREAK: *st = EX_BREAK; break;
    case JN_CONTINUE: *st = EX_CONTINUE; break;
    case JN_GENERATION: {
        size_t begin = r->out->len;
        exec_body(r, s, n->c, st);
        if (r->out == r->top && r->ngen < SIZE_MAX / 2) {
            if (r->ngen == r->gencap) {
                size_t cap = r->gencap ? r->gencap * 2 : 8;
                jspan *g = jalloc(r->f, cap * sizeof *g);
                if (r->ngen)
                    memcpy(g, r->gen, r->ngen * sizeof *g);
                r->gen = g;
                r->gencap = cap;
            }
            r->gen[r->ngen].b = begin;
            r->gen[r->ngen].e = r->out->len;
            r->ngen++;
        }
        break;
    }
    case JN_WITH: {
        jscope *ws = jscope_new(r, s);
        for (size_t i = 0; i + 1 < n->nitems; i += 2)
            assign(r, ws, n->items[i], eval(r, s, n->items[i + 1]));
        exec_body(r, ws, n->c, st);
        break;
    }
    case JN_BODY: exec_body(r, s, n, st); break;
    default: jrender_error(r, "line %d: unexpected node", n->line);
    }
    leave(r);
}

void jrender_run(jrender *r, jscope *root, const jnode *body)
{
    exec_status st = EX_NORMAL;
    exec_body(r, root, body, &st);
}
