/* Recursive-descent parser mirroring jinja2/parser.py's grammar and operator precedence. */
#include <string.h>

#include "lexer.h"

enum { JPARSE_MAX_DEPTH = 200 };

typedef struct ps {
    jfail *f;
    jtok *t;
    size_t n, i;
    int depth;
} ps;

static jtok *cur(ps *P) { return &P->t[P->i]; }
static jtok *peek(ps *P, size_t k) { return P->i + k < P->n ? &P->t[P->i + k] : &P->t[P->n - 1]; }
static void next(ps *P) { if (P->i + 1 < P->n) P->i++; }

static _Noreturn void perr(ps *P, const char *msg)
{
    jtok *t = cur(P);
    const char *what = t->kind == JTK_EOF ? "end of template" : t->kind == JTK_BLOCK_END ? "end of statement block"
                     : t->kind == JTK_VAR_END ? "end of print statement" : t->s;
    jfail_raise(P->f, VESTA_ERR_FORMAT, "template syntax error, line %d: %s (at '%s')", t->line, msg, what);
}

static bool is_op(ps *P, const char *op) { return cur(P)->kind == JTK_OP && strcmp(cur(P)->s, op) == 0; }
static bool is_name(ps *P, const char *nm) { return cur(P)->kind == JTK_NAME && strcmp(cur(P)->s, nm) == 0; }
static void expect_op(ps *P, const char *op)
{
    if (!is_op(P, op)) {
        char m[64];
        snprintf(m, sizeof m, "expected '%s'", op);
        perr(P, m);
    }
    next(P);
}
static const char *expect_name(ps *P)
{
    if (cur(P)->kind != JTK_NAME)
        perr(P, "expected a name");
    const char *s = cur(P)->s;
    next(P);
    return s;
}
static void expect_block_end(ps *P)
{
    if (cur(P)->kind != JTK_BLOCK_END)
        perr(P, "expected end of statement block");
    next(P);
}

static jnode *mk(ps *P, jnode_kind k)
{
    jnode *n = jalloc(P->f, sizeof *n);
    n->kind = k;
    n->line = cur(P)->line;
    return n;
}

typedef struct nvec {
    jnode **v;
    size_t n, cap;
} nvec;
static void nvec_push(ps *P, nvec *v, jnode *x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **nv = jalloc(P->f, cap * sizeof *nv);
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
}

static jnode *parse_expr(ps *P, bool with_condexpr);
static jnode *parse_unary(ps *P, bool with_filter);
static jnode *parse_primary(ps *P);
static jnode *parse_postfix(ps *P, jnode *node);
static jnode *parse_filter_expr(ps *P, jnode *node);

static void enter(ps *P)
{
    if (++P->depth > JPARSE_MAX_DEPTH)
        jfail_raise(P->f, VESTA_ERR_LIMIT, "template syntax error, line %d: nesting deeper than %d", cur(P)->line,
                    JPARSE_MAX_DEPTH);
}

/* Call arguments after '(' up to ')'. */
static void parse_call_args(ps *P, jnode *n)
{
    nvec args = {0}, kwargs = {0};
    const char **kwn = NULL;
    size_t kwcap = 0;
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (args.n || kwargs.n)
            expect_op(P, ",");
        if (is_op(P, ")"))
            break;
        if (is_op(P, "*") || is_op(P, "**"))
            perr(P, "*args and **kwargs in calls are not supported");
        if (cur(P)->kind == JTK_NAME && peek(P, 1)->kind == JTK_OP && strcmp(peek(P, 1)->s, "=") == 0) {
            const char *k = cur(P)->s;
            next(P);
            next(P);
            if (kwargs.n == kwcap) {
                size_t cap = kwcap ? kwcap * 2 : 4;
                const char **nk = jalloc(P->f, cap * sizeof *nk);
                if (kwargs.n)
                    memcpy(nk, kwn, kwargs.n * sizeof *nk);
                kwn = nk;
                kwcap = cap;
            }
            kwn[kwargs.n] = k;
            nvec_push(P, &kwargs, parse_expr(P, true));
        } else {
            if (kwargs.n)
                perr(P, "positional argument after keyword argument");
            nvec_push(P, &args, parse_expr(P, true));
        }
    }
    next(P);
    n->items = args.v;
    n->nitems = args.n;
    n->kwargs = kwargs.v;
    n->kwnames = kwn;
    n->nkwargs = kwargs.n;
}

static jnode *parse_tuple(ps *P, bool with_condexpr, bool simplified)
{
    jnode *first = simplified ? parse_primary(P) : parse_expr(P, with_condexpr);
    if (!is_op(P, ","))
        return first;
    jnode *t = mk(P, JN_TUPLE);
    nvec v = {0};
    nvec_push(P, &v, first);
    while (is_op(P, ",")) {
        next(P);
        /* A trailing comma ends the tuple. */
        if (cur(P)->kind == JTK_VAR_END || cur(P)->kind == JTK_BLOCK_END || is_op(P, ")") || is_name(P, "in") ||
            (cur(P)->kind == JTK_OP && strcmp(cur(P)->s, "=") == 0))
            break;
        nvec_push(P, &v, simplified ? parse_primary(P) : parse_expr(P, with_condexpr));
    }
    t->items = v.v;
    t->nitems = v.n;
    return t;
}

static jnode *parse_primary(ps *P)
{
    enter(P);
    jtok *t = cur(P);
    jnode *n;
    switch (t->kind) {
    case JTK_NAME:
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) {
            n = mk(P, JN_CONST);
            n->value = jv_bool(true);
        } else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            n = mk(P, JN_CONST);
            n->value = jv_bool(false);
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            n = mk(P, JN_CONST);
            n->value = jv_none();
        } else {
            n = mk(P, JN_NAME);
            n->name = t->s;
        }
        next(P);
        break;
    case JTK_STRING: {
        /* Adjacent string literals concatenate. */
        jbuf b;
        jbuf_init(&b, P->f, 0);
        n = mk(P, JN_CONST);
        while (cur(P)->kind == JTK_STRING) {
            jbuf_put(&b, cur(P)->s, cur(P)->len, false);
            next(P);
        }
        n->value = jv_str(jbuf_finish(&b));
        break;
    }
    case JTK_INT:
        n = mk(P, JN_CONST);
        n->value = jv_int(t->i);
        next(P);
        break;
    case JTK_FLOAT:
        n = mk(P, JN_CONST);
        n->value = jv_float(t->f);
        next(P);
        break;
    case JTK_OP:
        if (is_op(P, "(")) {
            next(P);
            if (is_op(P, ")")) {
                n = mk(P, JN_TUPLE);
                next(P);
                break;
            }
            jnode *inner = parse_expr(P, true);
            if (is_op(P, ",")) {
                jnode *tup = mk(P, JN_TUPLE);
                nvec v = {0};
                nvec_push(P, &v, inner);
                while (is_op(P, ",")) {
                    next(P);
                    if (is_op(P, ")"))
                        break;
                    nvec_push(P, &v, parse_expr(P, true));
                }
                tup->items = v.v;
                tup->nitems = v.n;
                inner = tup;
            }
            expect_op(P, ")");
            n = inner;
            break;
        }
        if (is_op(P, "[")) {
            n = mk(P, JN_LIST);
            next(P);
            nvec v = {0};
            while (!is_op(P, "]")) {
                if (v.n)
                    expect_op(P, ",");
                if (is_op(P, "]"))
                    break;
                nvec_push(P, &v, parse_expr(P, true));
            }
            next(P);
            n->items = v.v;
            n->nitems = v.n;
            break;
        }
        if (is_op(P, "{")) {
            n = mk(P, JN_DICT);
            next(P);
            nvec v = {0};
            while (!is_op(P, "}")) {
                if (v.n)
                    expect_op(P, ",");
                if (is_op(P, "}"))
                    break;
                nvec_push(P, &v, parse_expr(P, true));
                expect_op(P, ":");
                nvec_push(P, &v, parse_expr(P, true));
            }
            next(P);
            n->items = v.v;
            n->nitems = v.n;
            break;
        }
        perr(P, "unexpected operator");
    default:
        perr(P, "unexpected token");
    }
    P->depth--;
    return n;
}

static jnode *parse_subscript(ps *P)
{
    jnode *args[3] = {NULL, NULL, NULL};
    bool slice = false;
    int k = 0;
    if (!is_op(P, ":"))
        args[0] = parse_expr(P, true);
    while (is_op(P, ":") && k < 2) {
        slice = true;
        next(P);
        k++;
        if (!is_op(P, "]") && !is_op(P, ":"))
            args[k] = parse_expr(P, true);
    }
    if (!slice)
        return args[0];
    jnode *s = mk(P, JN_SLICE);
    s->a = args[0];
    s->b = args[1];
    s->c = args[2];
    return s;
}

static jnode *parse_postfix(ps *P, jnode *node)
{
    for (;;) {
        if (is_op(P, ".")) {
            next(P);
            jnode *g;
            if (cur(P)->kind == JTK_NAME) {
                g = mk(P, JN_GETATTR);
                g->name = cur(P)->s;
                next(P);
            } else if (cur(P)->kind == JTK_INT) {
                g = mk(P, JN_GETITEM);
                jnode *k = mk(P, JN_CONST);
                k->value = jv_int(cur(P)->i);
                g->b = k;
                next(P);
            } else {
                perr(P, "expected name or number after '.'");
            }
            g->a = node;
            node = g;
        } else if (is_op(P, "[")) {
            next(P);
            jnode *g = mk(P, JN_GETITEM);
            g->a = node;
            jnode *sub = parse_subscript(P);
            if (is_op(P, ",")) {
                /* x[a, b]: the key is the tuple (a, b) */
                if (sub->kind == JN_SLICE)
                    perr(P, "slices inside tuple subscripts are not supported");
                jnode *t = mk(P, JN_TUPLE);
                nvec v = {0};
                nvec_push(P, &v, sub);
                while (is_op(P, ",")) {
                    next(P);
                    if (is_op(P, "]"))
                        break;
                    nvec_push(P, &v, parse_expr(P, true));
                }
                t->items = v.v;
                t->nitems = v.n;
                sub = t;
            }
            expect_op(P, "]");
            if (sub->kind == JN_SLICE) {
                sub->d = node;
                node = sub;
            } else {
                g->b = sub;
                node = g;
            }
        } else if (is_op(P, "(")) {
            jnode *c = mk(P, JN_CALL);
            c->a = node;
            parse_call_args(P, c);
            node = c;
        } else {
            return node;
        }
    }
}

/* A filter or test name; jinja2 joins dotted names ("a.b"), which then exist nowhere and fail
 * when used. */
static const char *dotted_name(ps *P)
{
    const char *name = expect_name(P);
    while (is_op(P, ".")) {
        next(P);
        const char *part = expect_name(P);
        size_t la = strlen(name), lb = strlen(part);
        char *joined = jalloc(P->f, la + lb + 2);
        memcpy(joined, name, la);
        joined[la] = '.';
        memcpy(joined + la + 1, part, lb + 1);
        name = joined;
    }
    return name;
}

static jnode *parse_filter(ps *P, jnode *node, bool start_inline)
{
    while (is_op(P, "|") || start_inline) {
        if (!start_inline)
            next(P);
        start_inline = false;
        jnode *f = mk(P, JN_FILTER);
        const char *name = dotted_name(P);
        f->name = name;
        f->a = node;
        if (is_op(P, "("))
            parse_call_args(P, f);
        node = f;
    }
    return node;
}

static jnode *parse_test(ps *P, jnode *node)
{
    next(P); /* 'is' */
    bool negated = false;
    if (is_name(P, "not")) {
        negated = true;
        next(P);
    }
    jnode *t = mk(P, JN_TEST);
    t->name = dotted_name(P);
    t->a = node;
    jtok *c = cur(P);
    if (is_op(P, "(")) {
        parse_call_args(P, t);
    } else if ((c->kind == JTK_NAME || c->kind == JTK_STRING || c->kind == JTK_INT || c->kind == JTK_FLOAT ||
                is_op(P, "[") || is_op(P, "{")) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is"))
            perr(P, "you cannot chain multiple tests with is");
        jnode *arg = parse_postfix(P, parse_primary(P));
        t->items = jalloc(P->f, sizeof *t->items);
        t->items[0] = arg;
        t->nitems = 1;
    }
    if (negated) {
        jnode *n = mk(P, JN_NOT);
        n->a = t;
        return n;
    }
    return t;
}

static jnode *parse_filter_expr(ps *P, jnode *node)
{
    for (;;) {
        if (is_op(P, "|"))
            node = parse_filter(P, node, false);
        else if (is_name(P, "is"))
            node = parse_test(P, node);
        else if (is_op(P, "(")) {
            jnode *c = mk(P, JN_CALL);
            c->a = node;
            parse_call_args(P, c);
            node = c;
        } else
            return node;
    }
}

static jnode *parse_unary(ps *P, bool with_filter)
{
    enter(P);
    jnode *node;
    if (is_op(P, "-") || is_op(P, "+")) {
        jnode *u = mk(P, JN_UNOP);
        u->op = is_op(P, "-") ? JOP_NEG : JOP_POS;
        next(P);
        u->a = parse_unary(P, false);
        node = u;
    } else {
        node = parse_primary(P);
    }
    node = parse_postfix(P, node);
    if (with_filter)
        node = parse_filter_expr(P, node);
    P->depth--;
    return node;
}

static jnode *binop(ps *P, jop op, jnode *l, jnode *r)
{
    jnode *b = mk(P, JN_BINOP);
    b->op = op;
    b->a = l;
    b->b = r;
    return b;
}

static jnode *parse_pow(ps *P)
{
    jnode *l = parse_unary(P, true);
    while (is_op(P, "**")) {
        next(P);
        l = binop(P, JOP_POW, l, parse_unary(P, true));
    }
    return l;
}

static jnode *parse_math2(ps *P)
{
    jnode *l = parse_pow(P);
    for (;;) {
        jop op;
        if (is_op(P, "*")) op = JOP_MUL;
        else if (is_op(P, "/")) op = JOP_DIV;
        else if (is_op(P, "//")) op = JOP_FLOORDIV;
        else if (is_op(P, "%")) op = JOP_MOD;
        else return l;
        next(P);
        l = binop(P, op, l, parse_pow(P));
    }
}

static jnode *parse_concat(ps *P)
{
    jnode *l = parse_math2(P);
    if (!is_op(P, "~"))
        return l;
    jnode *c = mk(P, JN_CONCAT);
    nvec v = {0};
    nvec_push(P, &v, l);
    while (is_op(P, "~")) {
        next(P);
        nvec_push(P, &v, parse_math2(P));
    }
    c->items = v.v;
    c->nitems = v.n;
    return c;
}

static jnode *parse_math1(ps *P)
{
    jnode *l = parse_concat(P);
    for (;;) {
        jop op;
        if (is_op(P, "+")) op = JOP_ADD;
        else if (is_op(P, "-")) op = JOP_SUB;
        else return l;
        next(P);
        l = binop(P, op, l, parse_concat(P));
    }
}

static jnode *parse_compare(ps *P)
{
    jnode *l = parse_math1(P);
    nvec rhs = {0};
    jop *ops = NULL;
    size_t cap = 0;
    for (;;) {
        jop op;
        if (is_op(P, "==")) op = JOP_EQ;
        else if (is_op(P, "!=")) op = JOP_NE;
        else if (is_op(P, "<")) op = JOP_LT;
        else if (is_op(P, "<=")) op = JOP_LE;
        else if (is_op(P, ">")) op = JOP_GT;
        else if (is_op(P, ">=")) op = JOP_GE;
        else if (is_name(P, "in")) op = JOP_IN;
        else if (is_name(P, "not") && peek(P, 1)->kind == JTK_NAME && !strcmp(peek(P, 1)->s, "in")) {
            next(P);
            op = JOP_NOTIN;
        } else break;
        next(P);
        if (rhs.n == cap) {
            size_t nc = cap ? cap * 2 : 2;
            jop *no = jalloc(P->f, nc * sizeof *no);
            if (rhs.n)
                memcpy(no, ops, rhs.n * sizeof *no);
            ops = no;
            cap = nc;
        }
        ops[rhs.n] = op;
        nvec_push(P, &rhs, parse_math1(P));
    }
    if (!rhs.n)
        return l;
    jnode *c = mk(P, JN_COMPARE);
    c->a = l;
    c->items = rhs.v;
    c->nitems = rhs.n;
    c->ops = ops;
    return c;
}

static jnode *parse_not(ps *P)
{
    if (is_name(P, "not")) {
        enter(P);
        jnode *n = mk(P, JN_NOT);
        next(P);
        n->a = parse_not(P);
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_and(ps *P)
{
    jnode *l = parse_not(P);
    while (is_name(P, "and")) {
        jnode *n = mk(P, JN_AND);
        next(P);
        n->a = l;
        n->b = parse_not(P);
        l = n;
    }
    return l;
}

static jnode *parse_or(ps *P)
{
    jnode *l = parse_and(P);
    while (is_name(P, "or")) {
        jnode *n = mk(P, JN_OR);
        next(P);
        n->a = l;
        n->b = parse_and(P);
        l = n;
    }
    return l;
}

static jnode *parse_expr(ps *P, bool with_condexpr)
{
    enter(P);
    jnode *e = parse_or(P);
    if (with_condexpr) {
        while (is_name(P, "if")) {
            jnode *c = mk(P, JN_CONDEXPR);
            next(P);
            c->b = parse_or(P);
            c->a = e;
            if (is_name(P, "else")) {
                next(P);
                c->c = parse_expr(P, true);
            }
            e = c;
        }
    }
    P->depth--;
    return e;
}

/* ---- statements ---- */

static jnode *parse_body(ps *P, const char *const *ends);

static bool at_block_name(ps *P, const char *const *names)
{
    if (cur(P)->kind != JTK_BLOCK_BEGIN)
        return false;
    jtok *t = peek(P, 1);
    if (t->kind != JTK_NAME)
        return false;
    for (size_t i = 0; names && names[i]; i++)
        if (!strcmp(t->s, names[i]))
            return true;
    return false;
}

static jnode *parse_assign_target(ps *P, bool allow_ns)
{
    if (cur(P)->kind == JTK_NAME && allow_ns && peek(P, 1)->kind == JTK_OP && !strcmp(peek(P, 1)->s, ".")) {
        jnode *n = mk(P, JN_NSREF);
        n->a = mk(P, JN_NAME);
        n->a->name = expect_name(P);
        next(P);
        n->name = expect_name(P);
        return n;
    }
    bool paren = false;
    if (is_op(P, "(")) {
        paren = true;
        next(P);
    }
    nvec v = {0};
    for (;;) {
        jnode *n = mk(P, JN_NAME);
        n->name = expect_name(P);
        nvec_push(P, &v, n);
        if (!is_op(P, ","))
            break;
        next(P);
        if (cur(P)->kind != JTK_NAME)
            break;
    }
    if (paren)
        expect_op(P, ")");
    if (v.n == 1 && !paren)
        return v.v[0];
    jnode *t = mk(P, JN_TUPLE);
    t->items = v.v;
    t->nitems = v.n;
    return t;
}

static void parse_end(ps *P, const char *name)
{
    next(P); /* BLOCK_BEGIN */
    if (!is_name(P, name)) {
        char m[64];
        snprintf(m, sizeof m, "expected '%s'", name);
        perr(P, m);
    }
    next(P);
    expect_block_end(P);
}

static jnode *parse_for(ps *P)
{
    jnode *n = mk(P, JN_FOR);
    n->a = parse_assign_target(P, false);
    if (!is_name(P, "in"))
        perr(P, "expected 'in'");
    next(P);
    n->b = parse_tuple(P, false, false);
    if (is_name(P, "if")) {
        next(P);
        n->e = parse_expr(P, true);
    }
    if (is_name(P, "recursive")) {
        next(P);
        n->flag = true;
    }
    expect_block_end(P);
    static const char *const ends[] = {"endfor", "else", NULL};
    n->c = parse_body(P, ends);
    if (at_block_name(P, (const char *const[]){"else", NULL})) {
        next(P);
        next(P);
        expect_block_end(P);
        static const char *const ends2[] = {"endfor", NULL};
        n->d = parse_body(P, ends2);
    }
    parse_end(P, "endfor");
    return n;
}

static jnode *parse_if(ps *P)
{
    jnode *n = mk(P, JN_IF);
    n->a = parse_tuple(P, false, false);
    expect_block_end(P);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    n->b = parse_body(P, ends);
    if (at_block_name(P, (const char *const[]){"elif", NULL})) {
        next(P);
        next(P);
        n->c = parse_if(P);
        return n; /* the nested if consumed endif */
    }
    if (at_block_name(P, (const char *const[]){"else", NULL})) {
        next(P);
        next(P);
        expect_block_end(P);
        static const char *const ends2[] = {"endif", NULL};
        n->c = parse_body(P, ends2);
    }
    parse_end(P, "endif");
    return n;
}

static jnode *parse_set(ps *P)
{
    jnode *target = parse_assign_target(P, true);
    if (is_op(P, "=")) {
        next(P);
        jnode *n = mk(P, JN_SET);
        n->a = target;
        n->b = parse_tuple(P, true, false);
        expect_block_end(P);
        return n;
    }
    jnode *n = mk(P, JN_SET_BLOCK);
    n->a = target;
    if (is_op(P, "|")) {
        jnode *ph = mk(P, JN_CONST); /* the body is substituted at render time */
        n->c = parse_filter(P, ph, false);
        n->d = ph;
    }
    expect_block_end(P);
    static const char *const ends[] = {"endset", NULL};
    n->b = parse_body(P, ends);
    parse_end(P, "endset");
    return n;
}

static void parse_signature(ps *P, jnode *n)
{
    expect_op(P, "(");
    nvec defs = {0};
    const char **names = NULL;
    size_t cap = 0, np = 0;
    while (!is_op(P, ")")) {
        if (np)
            expect_op(P, ",");
        if (is_op(P, ")"))
            break;
        if (np == cap) {
            size_t nc = cap ? cap * 2 : 4;
            const char **nn = jalloc(P->f, nc * sizeof *nn);
            if (np)
                memcpy(nn, names, np * sizeof *nn);
            names = nn;
            cap = nc;
        }
        names[np] = expect_name(P);
        jnode *d = NULL;
        if (is_op(P, "=")) {
            next(P);
            d = parse_expr(P, true);
        } else if (defs.n && defs.v[defs.n - 1]) {
            perr(P, "non-default argument follows default argument");
        }
        nvec_push(P, &defs, d);
        np++;
    }
    next(P);
    n->params = names;
    n->nparams = np;
    n->items = defs.v;
    n->nitems = defs.n;
}

static jnode *parse_macro(ps *P)
{
    jnode *n = mk(P, JN_MACRO);
    n->name = expect_name(P);
    parse_signature(P, n);
    expect_block_end(P);
    static const char *const ends[] = {"endmacro", NULL};
    n->c = parse_body(P, ends);
    parse_end(P, "endmacro");
    return n;
}

static jnode *parse_call_block(ps *P)
{
    jnode *n = mk(P, JN_CALL_BLOCK);
    if (is_op(P, "("))
        parse_signature(P, n);
    jnode *call = parse_expr(P, true);
    if (call->kind != JN_CALL)
        perr(P, "expected call");
    n->a = call;
    expect_block_end(P);
    static const char *const ends[] = {"endcall", NULL};
    n->c = parse_body(P, ends);
    parse_end(P, "endcall");
    return n;
}

static jnode *parse_filter_block(ps *P)
{
    jnode *n = mk(P, JN_FILTER_BLOCK);
    jnode *ph = mk(P, JN_CONST);
    n->a = parse_filter(P, ph, true);
    n->d = ph;
    expect_block_end(P);
    static const char *const ends[] = {"endfilter", NULL};
    n->c = parse_body(P, ends);
    parse_end(P, "endfilter");
    return n;
}

static jnode *parse_with(ps *P)
{
    jnode *n = mk(P, JN_WITH);
    nvec v = {0};
    while (cur(P)->kind != JTK_BLOCK_END) {
        if (v.n)
            expect_op(P, ",");
        jnode *t = parse_assign_target(P, false);
        expect_op(P, "=");
        nvec_push(P, &v, t);
        nvec_push(P, &v, parse_expr(P, true));
    }
    n->items = v.v;
    n->nitems = v.n;
    expect_block_end(P);
    static const char *const ends[] = {"endwith", NULL};
    n->c = parse_body(P, ends);
    parse_end(P, "endwith");
    return n;
}

static jnode *parse_statement(ps *P)
{
    next(P); /* BLOCK_BEGIN */
    if (cur(P)->kind != JTK_NAME)
        perr(P, "tag name expected");
    const char *kw = cur(P)->s;
    int line = cur(P)->line;
    next(P);
    enter(P);
    jnode *n;
    if (!strcmp(kw, "for")) n = parse_for(P);
    else if (!strcmp(kw, "if")) n = parse_if(P);
    else if (!strcmp(kw, "set")) n = parse_set(P);
    else if (!strcmp(kw, "macro")) n = parse_macro(P);
    else if (!strcmp(kw, "call")) n = parse_call_block(P);
    else if (!strcmp(kw, "filter")) n = parse_filter_block(P);
    else if (!strcmp(kw, "with")) n = parse_with(P);
    else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        n = mk(P, kw[0] == 'b' ? JN_BREAK : JN_CONTINUE);
        expect_block_end(P);
    } else if (!strcmp(kw, "generation")) {
        n = mk(P, JN_GENERATION);
        expect_block_end(P);
        static const char *const ends[] = {"endgeneration", NULL};
        n->c = parse_body(P, ends);
        parse_end(P, "endgeneration");
    } else {
        P->i--;
        jfail_raise(P->f, VESTA_ERR_FORMAT, "template syntax error, line %d: unknown or unsupported tag '%s'", line, kw);
    }
    n->line = line;
    P->depth--;
    return n;
}

static jnode *parse_body(ps *P, const char *const *ends)
{
    jnode *body = mk(P, JN_BODY);
    nvec v = {0};
    for (;;) {
        jtok *t = cur(P);
        if (t->kind == JTK_EOF) {
            if (ends) {
                char m[96];
                snprintf(m, sizeof m, "unexpected end of template, expected '%s'", ends[0]);
                perr(P, m);
            }
            break;
        }
        if (t->kind == JTK_DATA) {
            jnode *n = mk(P, JN_TEXT);
            n->value = jv_str(jstr_new(P->f, t->s, t->len, false));
            nvec_push(P, &v, n);
            next(P);
        } else if (t->kind == JTK_VAR_BEGIN) {
            next(P);
            jnode *n = mk(P, JN_OUTPUT);
            n->a = parse_tuple(P, true, false);
            if (cur(P)->kind != JTK_VAR_END)
                perr(P, "expected end of print statement");
            next(P);
            nvec_push(P, &v, n);
        } else if (t->kind == JTK_BLOCK_BEGIN) {
            if (at_block_name(P, ends))
                break;
            jtok *nm = peek(P, 1);
            if (nm->kind == JTK_NAME && (!strncmp(nm->s, "end", 3) || !strcmp(nm->s, "else") || !strcmp(nm->s, "elif"))) {
                next(P);
                perr(P, "unexpected tag");
            }
            nvec_push(P, &v, parse_statement(P));
        } else {
            perr(P, "unexpected token");
        }
    }
    body->items = v.v;
    body->nitems = v.n;
    return body;
}

/* Unknown filters and tests fail at compile time, except inside an if-statement or an inline
 * if-expression, where jinja2 defers the error to the moment they run ("soft" frames). Loop,
 * macro and block bodies open new frames, which are not soft. */
static void check_names(jfail *f, const jnode *n, bool soft)
{
    if (!n)
        return;
    bool inner = soft;
    switch (n->kind) {
    case JN_FILTER:
        if (!soft && !jfilter_exists(n->name))
            jfail_raise(f, VESTA_ERR_FORMAT, "template syntax error, line %d: No filter named '%s'.", n->line, n->name);
        break;
    case JN_TEST:
        if (!soft && !jtest_exists(n->name))
            jfail_raise(f, VESTA_ERR_FORMAT, "template syntax error, line %d: No test named '%s'.", n->line, n->name);
        break;
    case JN_IF: case JN_CONDEXPR:
        inner = true;
        break;
    case JN_FOR:
        check_names(f, n->b, soft);
        check_names(f, n->a, false);
        check_names(f, n->c, false);
        check_names(f, n->d, false);
        check_names(f, n->e, false);
        return;
    case JN_MACRO: case JN_CALL_BLOCK: case JN_FILTER_BLOCK: case JN_SET_BLOCK: case JN_WITH: case JN_GENERATION:
        check_names(f, n->a, soft);
        check_names(f, n->b, n->kind == JN_SET_BLOCK ? false : soft);
        check_names(f, n->c, n->kind == JN_SET_BLOCK ? soft : false);
        for (size_t i = 0; i < n->nitems; i++)
            check_names(f, n->items[i], soft);
        return;
    default:
        break;
    }
    check_names(f, n->a, inner);
    check_names(f, n->b, inner);
    check_names(f, n->c, inner);
    check_names(f, n->d, inner);
    check_names(f, n->e, inner);
    for (size_t i = 0; i < n->nitems; i++)
        check_names(f, n->items[i], inner);
    for (size_t i = 0; i < n->nkwargs; i++)
        check_names(f, n->kwargs[i], inner);
}

jnode *jparse(jfail *f, const char *src, size_t len)
{
    jtokens toks = {0};
    jlex(f, src, len, &toks);
    ps P = {.f = f, .t = toks.t, .n = toks.n, .i = 0};
    jnode *root = parse_body(&P, NULL);
    check_names(f, root, false);
    return root;
}
