/* Internal interface of the Jinja2 interpreter behind include/vesta/chat_template.h.
 * Every allocation of a compile or of a render comes from an arena; errors unwind with longjmp
 * to the entry point, which then drops the arena (nothing else is allocated, so nothing leaks). */
#ifndef VESTA_JINJA_INTERNAL_H
#define VESTA_JINJA_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/chat_template.h"
#include "vesta/error.h"

/* ---- arena (arena.c) ---- */
typedef struct jarena_chunk jarena_chunk;
typedef struct jarena {
    jarena_chunk *head;
    size_t used;  /* bytes handed out, for the memory limit */
    size_t limit; /* 0: none */
} jarena;

void jarena_init(jarena *a, size_t limit);
void jarena_free(jarena *a);
/* NULL when the limit is reached or malloc fails. */
void *jarena_alloc(jarena *a, size_t n);

/* ---- errors: every failure inside compile/render jumps back to the entry point ---- */
typedef struct jfail {
    jmp_buf jmp;
    vesta_error *err;
    jarena *arena;
} jfail;

_Noreturn void jfail_raise(jfail *f, vesta_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *jalloc(jfail *f, size_t n); /* raises VESTA_ERR_LIMIT/NOMEM on failure; zeroed */
char *jstrndup(jfail *f, const char *s, size_t n);

/* ---- strings with taint spans (str.c) ---- */
typedef struct jspan {
    size_t b, e;
} jspan;

typedef struct jstr {
    const char *s; /* NUL-terminated */
    size_t len;
    size_t nspans;
    const jspan *spans; /* tainted byte ranges, sorted, disjoint, merged */
} jstr;

/* A growing string with spans (output buffers, builders). */
typedef struct jbuf {
    jfail *f;
    char *s;
    size_t len, cap;
    jspan *spans;
    size_t nspans, capspans;
    size_t max; /* 0: unlimited; exceeding raises VESTA_ERR_LIMIT */
} jbuf;

void jbuf_init(jbuf *b, jfail *f, size_t max);
void jbuf_put(jbuf *b, const char *s, size_t n, bool tainted);
void jbuf_puts(jbuf *b, const char *s);
void jbuf_putc(jbuf *b, char c);
/* Appends str's bytes [from, to) keeping the spans that cover them. */
void jbuf_put_str_range(jbuf *b, const jstr *s, size_t from, size_t to);
void jbuf_put_str(jbuf *b, const jstr *s);
void jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jstr *jbuf_finish(jbuf *b);

jstr *jstr_new(jfail *f, const char *s, size_t n, bool tainted);
jstr *jstr_lit(jfail *f, const char *cstr);
bool jstr_tainted(const jstr *s); /* any byte tainted */
jstr *jstr_slice_bytes(jfail *f, const jstr *s, size_t from, size_t to);
/* Same bytes, tainted wholly if any input byte was (position-changing transformations). */
jstr *jstr_with_taint_of(jfail *f, const char *s, size_t n, bool tainted);

/* UTF-8 helpers (utf8.c): decode one code point (invalid bytes decode as themselves, length 1). */
int32_t utf8_decode(const char *s, size_t len, size_t *adv);
size_t utf8_encode(int32_t cp, char out[4]);
size_t utf8_count(const char *s, size_t len);
bool py_isspace(int32_t cp);
bool py_linebreak(int32_t cp); /* str.splitlines separators */

/* ---- values (value.c) ---- */
typedef enum jtype {
    JT_UNDEF = 0,
    JT_NONE,
    JT_BOOL,
    JT_INT,
    JT_FLOAT,
    JT_STR,
    JT_LIST,
    JT_DICT,
    JT_NS,
    JT_MACRO,
    JT_FUNC,  /* builtin global or bound method */
    JT_LOOP,  /* loop variable */
    JT_CYCLER,
    JT_JOINER,
} jtype;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jmacro jmacro;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    jtype t;
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d; /* dict and namespace */
        jmacro *m;
        jfunc *fn;
        jloop *loop;
        const char *undef_name; /* for the error message; may be NULL */
    } u;
} jv;

struct jlist {
    jv *items;
    size_t n, cap;
    bool tuple;
};

typedef struct jdict_entry {
    jv key;
    jv val;
} jdict_entry;

struct jdict {
    jdict_entry *e;
    size_t n, cap;
};

struct jloop {
    jlist *items; /* filtered sequence */
    size_t index0;
    size_t depth0;
    jv last_changed;
    bool has_changed;
};

typedef struct jrender jrender;
typedef struct jnode jnode;

/* Builtins: globals (range, namespace, ...), bound methods (str.strip, dict.items, ...). */
typedef struct jcall_args {
    jv *pos;
    size_t npos;
    const char **kwnames;
    jv *kw;
    size_t nkw;
} jcall_args;

typedef jv (*jfunc_impl)(jrender *r, jv self, const jcall_args *a);
struct jfunc {
    const char *name;
    jfunc_impl impl;
    jv self;
};

static inline jv jv_undef(const char *name) { jv v = {.t = JT_UNDEF}; v.u.undef_name = name; return v; }
static inline jv jv_none(void) { jv v = {.t = JT_NONE}; return v; }
static inline jv jv_bool(bool b) { jv v = {.t = JT_BOOL}; v.u.b = b; return v; }
static inline jv jv_int(int64_t i) { jv v = {.t = JT_INT}; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {.t = JT_FLOAT}; v.u.f = f; return v; }
static inline jv jv_str(jstr *s) { jv v = {.t = JT_STR}; v.u.s = s; return v; }
static inline jv jv_list(jlist *l) { jv v = {.t = JT_LIST}; v.u.l = l; return v; }
static inline jv jv_dict(jdict *d) { jv v = {.t = JT_DICT}; v.u.d = d; return v; }

jlist *jlist_new(jfail *f, size_t cap);
void jlist_push(jfail *f, jlist *l, jv v);
jdict *jdict_new(jfail *f, size_t cap);
jv *jdict_get(const jdict *d, jv key); /* NULL if absent */
jv *jdict_get_cstr(const jdict *d, const char *key);
void jdict_set(jfail *f, jdict *d, jv key, jv val);

bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
const char *jv_type_name(jv v); /* Python type names for messages: "str", "dict", ... */
/* str(v) as Python prints it; strings are returned as-is (keeping taint). */
jstr *jv_to_str(jrender *r, jv v);
void jv_write_str(jrender *r, jbuf *b, jv v);  /* str(v) */
void jv_write_repr(jrender *r, jbuf *b, jv v); /* repr(v) */
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys); indent < 0: None. */
void jv_write_json(jrender *r, jbuf *b, jv v, int indent, const char *item_sep, const char *key_sep,
                   bool sort_keys, int depth);
void py_float_repr(double d, char out[40]);
int jv_compare(jrender *r, jv a, jv b); /* <0, 0, >0; raises TypeError-like error if unorderable */
size_t jv_len(jrender *r, jv v);        /* raises if it has no length */
/* Materialises an iterable (list, tuple, dict keys, string chars, undefined = empty). */
jlist *jv_iterate(jrender *r, jv v);

/* ---- AST (parser.c) ---- */
typedef enum jnode_kind {
    /* statements */
    JN_BODY, /* list of statements */
    JN_TEXT,
    JN_OUTPUT, /* {{ expr }} */
    JN_IF,
    JN_FOR,
    JN_SET,       /* target = expr */
    JN_SET_BLOCK, /* {% set x %}...{% endset %} */
    JN_MACRO,
    JN_CALL_BLOCK,
    JN_FILTER_BLOCK,
    JN_BREAK,
    JN_CONTINUE,
    JN_GENERATION,
    JN_WITH,
    /* expressions */
    JN_CONST,
    JN_NAME,
    JN_GETATTR,
    JN_GETITEM,
    JN_SLICE,
    JN_CALL,
    JN_FILTER,
    JN_TEST,
    JN_BINOP,
    JN_UNOP,
    JN_AND,
    JN_OR,
    JN_NOT,
    JN_COMPARE,
    JN_CONDEXPR,
    JN_LIST,
    JN_TUPLE,
    JN_DICT,
    JN_CONCAT, /* ~ */
    JN_NSREF,  /* ns.attr as an assignment target */
} jnode_kind;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW,
    JOP_NEG, JOP_POS,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
} jop;

struct jnode {
    jnode_kind kind;
    int line;
    jop op;
    const char *name; /* NAME, GETATTR attr, FILTER/TEST name, MACRO name, NSREF attr */
    jv value;         /* CONST */
    jnode *a, *b, *c; /* children: meaning by kind */
    jnode **items;    /* BODY statements; LIST/TUPLE/DICT items (dict: k0,v0,k1,v1...); CALL args */
    size_t nitems;
    const char **kwnames; /* CALL/FILTER/TEST keyword names, parallel to kwargs */
    jnode **kwargs;
    size_t nkwargs;
    /* IF: a=cond b=then c=else. FOR: a=target b=iter c=body, d=else, e=filter, recursive.
       COMPARE: a=left, items = right operands, ops = operators. */
    jnode *d, *e;
    jop *ops;
    bool flag; /* FOR recursive; SLICE has step; etc. */
    const char **params; /* MACRO parameter names; defaults in items (NULL when none) */
    size_t nparams;
};

typedef struct jtemplate_src {
    jarena arena;
    jnode *root;
} jtemplate_src;

/* Parses source into root (allocations in f->arena). Raises on error. */
jnode *jparse(jfail *f, const char *src, size_t len);

/* ---- render (render.c) ---- */
typedef struct jscope jscope;

struct jrender {
    jfail *f;
    const vesta_chat_limits *lim;
    uint64_t steps;
    uint32_t depth;
    int64_t now;
    jscope *globals; /* builtins + context variables */
    jbuf *out;
    jbuf *top; /* the render's own output (generation ranges are recorded only there) */
    size_t ngen;
    jspan *gen;
    size_t gencap;
};

jv jcall_value(jrender *r, jv callee, const jcall_args *a);
jv jfilter_apply(jrender *r, const char *name, jv v, const jcall_args *a, int line);
bool jtest_apply(jrender *r, const char *name, jv v, const jcall_args *a, int line);
bool jtest_exists(const char *name);
bool jfilter_exists(const char *name);
/* Attribute/method lookup (methods.c): `x.name`; undefined when absent. */
jv jgetattr(jrender *r, jv obj, const char *name);
jv jgetitem(jrender *r, jv obj, jv key);
jv jglobal_lookup(const char *name); /* builtin globals; undefined when absent */
_Noreturn void jrender_error(jrender *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jrender_step(jrender *r);
jv jcall_args_get(const jcall_args *a, size_t pos, const char *kw, jv dflt);

#endif
