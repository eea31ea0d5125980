/* Encoding walks the same schema tables as decoding and enforces the same bounds, so every frame
 * this side emits is one the other side accepts. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "proto_internal.h"

typedef struct enc {
    msgpack_packer pk;
    vesta_error *err;
    int failed; /* a msgpack write failed (out of memory) */
} enc;

#define CAT(base, off, type) ((const type *)((const char *)(base) + (off)))

static void pack_str(enc *e, const char *s, size_t n)
{
    if (msgpack_pack_str(&e->pk, n) || msgpack_pack_str_body(&e->pk, s, n))
        e->failed = 1;
}

static void pack_key(enc *e, const char *k) { pack_str(e, k, strlen(k)); }

static void pack_i64(enc *e, int64_t v)
{
    if (msgpack_pack_int64(&e->pk, v))
        e->failed = 1;
}

static void pack_u64(enc *e, uint64_t v)
{
    if (msgpack_pack_uint64(&e->pk, v))
        e->failed = 1;
}

static void pack_float(enc *e, float v)
{
    if (msgpack_pack_float(&e->pk, v))
        e->failed = 1;
}

static void pack_array(enc *e, size_t n)
{
    if (msgpack_pack_array(&e->pk, n))
        e->failed = 1;
}

static vesta_status bad(enc *e, const char *path, const char *name, const char *what)
{
    return vesta_error_set(e->err, VESTA_ERR_INVALID_ARG, "%s.%s: %s", path, name, what);
}

/* Length of a NUL-terminated string within cap bytes, or -1. */
static long bounded_len(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    return nul ? (long)(nul - s) : -1;
}

static vesta_status encode_schema(enc *e, const proto_schema *s, const void *base, const char *path);

static vesta_status encode_count(enc *e, const proto_field *f, const void *base, const char *path,
                                 int *n)
{
    *n = *CAT(base, f->off_n, int);
    if (*n < 0 || *n > f->hi)
        return bad(e, path, f->name, "count out of range");
    if (*n == 0 && (f->flags & PF_NONEMPTY))
        return bad(e, path, f->name, "must not be empty");
    return VESTA_OK;
}

static vesta_status encode_logprobs(enc *e, const proto_field *f, const void *base, const char *path)
{
    const vesta_sample_result *lp = *CAT(base, f->off, vesta_sample_result *);
    int n = *CAT(base, f->off_n, int);
    if (!lp) {
        if (msgpack_pack_nil(&e->pk))
            e->failed = 1;
        return VESTA_OK;
    }
    pack_array(e, (size_t)n);
    for (int i = 0; i < n; i++) {
        if (lp[i].num_top < 0 || lp[i].num_top > VESTA_MAX_LOGPROBS)
            return bad(e, path, f->name, "num_top out of range");
        pack_array(e, 2);
        pack_float(e, lp[i].logprob);
        pack_array(e, (size_t)lp[i].num_top);
        for (int j = 0; j < lp[i].num_top; j++) {
            if (lp[i].top_ids[j] < 0)
                return bad(e, path, f->name, "negative token id");
            pack_array(e, 2);
            pack_i64(e, lp[i].top_ids[j]);
            pack_float(e, lp[i].top_logprobs[j]);
        }
    }
    return VESTA_OK;
}

static vesta_status encode_field(enc *e, const proto_field *f, const void *base, const char *path)
{
    int64_t iv = 0;
    int n;
    vesta_status st;
    switch (f->kind) {
    case PK_INT: iv = *CAT(base, f->off, int); goto ranged;
    case PK_I32: iv = *CAT(base, f->off, int32_t); goto ranged;
    case PK_I64: iv = *CAT(base, f->off, int64_t);
    ranged:
        if (iv < f->lo || iv > f->hi)
            return bad(e, path, f->name, "out of range");
        pack_i64(e, iv);
        return VESTA_OK;
    case PK_U64:
        pack_u64(e, *CAT(base, f->off, uint64_t));
        return VESTA_OK;
    case PK_FLOAT: {
        float v = *CAT(base, f->off, float);
        if (!isfinite(v) && !(f->flags & PF_NONFINITE_OK))
            return bad(e, path, f->name, "not a finite number");
        pack_float(e, v);
        return VESTA_OK;
    }
    case PK_DOUBLE: {
        double v = *CAT(base, f->off, double);
        if (!isfinite(v))
            return bad(e, path, f->name, "not a finite number");
        if (msgpack_pack_double(&e->pk, v))
            e->failed = 1;
        return VESTA_OK;
    }
    case PK_BOOL:
        if (*CAT(base, f->off, bool) ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk))
            e->failed = 1;
        return VESTA_OK;
    case PK_STR: {
        const char *s = CAT(base, f->off, char);
        long len = bounded_len(s, f->cap);
        if (len < 0)
            return bad(e, path, f->name, "too long");
        if (len == 0 && (f->flags & PF_NONEMPTY))
            return bad(e, path, f->name, "must not be empty");
        if (len == 0 && (f->flags & PF_NIL_EMPTY)) {
            if (msgpack_pack_nil(&e->pk))
                e->failed = 1;
        } else {
            pack_str(e, s, (size_t)len);
        }
        return VESTA_OK;
    }
    case PK_STRS:
        if ((st = encode_count(e, f, base, path, &n)))
            return st;
        pack_array(e, (size_t)n);
        for (int i = 0; i < n; i++) {
            const char *s = CAT(base, f->off + (size_t)i * f->cap, char);
            long len = bounded_len(s, f->cap);
            if (len <= 0)
                return bad(e, path, f->name, "a name is empty or too long");
            pack_str(e, s, (size_t)len);
        }
        return VESTA_OK;
    case PK_I32_FIXED:
    case PK_I32_ALLOC: {
        if ((st = encode_count(e, f, base, path, &n)))
            return st;
        const int32_t *a = f->kind == PK_I32_FIXED ? CAT(base, f->off, int32_t)
                                                   : *CAT(base, f->off, int32_t *);
        if (n > 0 && !a)
            return bad(e, path, f->name, "NULL array");
        pack_array(e, (size_t)n);
        for (int i = 0; i < n; i++) {
            if (a[i] < f->lo)
                return bad(e, path, f->name, "element out of range");
            pack_i64(e, a[i]);
        }
        return VESTA_OK;
    }
    case PK_U64_ALLOC: {
        if ((st = encode_count(e, f, base, path, &n)))
            return st;
        const uint64_t *a = *CAT(base, f->off, uint64_t *);
        if (n > 0 && !a)
            return bad(e, path, f->name, "NULL array");
        pack_array(e, (size_t)n);
        for (int i = 0; i < n; i++)
            pack_u64(e, a[i]);
        return VESTA_OK;
    }
    case PK_MAP: {
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", path, f->name);
        return encode_schema(e, f->sub, CAT(base, f->off, char), sub);
    }
    case PK_LOGIT_BIAS: {
        if ((st = encode_count(e, f, base, path, &n)))
            return st;
        const vesta_logit_bias *lb = CAT(base, f->off, vesta_logit_bias);
        pack_array(e, (size_t)n);
        for (int i = 0; i < n; i++) {
            if (lb[i].token < 0 || !isfinite(lb[i].bias))
                return bad(e, path, f->name, "bad entry");
            pack_array(e, 2);
            pack_i64(e, lb[i].token);
            pack_float(e, lb[i].bias);
        }
        return VESTA_OK;
    }
    case PK_LOGPROBS:
        return encode_logprobs(e, f, base, path);
    }
    return vesta_error_set(e->err, VESTA_ERR_INTERNAL, "%s.%s: unknown field kind", path, f->name);
}

static vesta_status encode_schema(enc *e, const proto_schema *s, const void *base, const char *path)
{
    vesta_status st;
    if (s->check && s->check(base, path, e->err)) {
        if (e->err)
            e->err->code = VESTA_ERR_INVALID_ARG;
        return VESTA_ERR_INVALID_ARG;
    }
    if (msgpack_pack_map(&e->pk, (size_t)s->num_fields))
        e->failed = 1;
    for (int i = 0; i < s->num_fields; i++) {
        pack_key(e, s->fields[i].name);
        if ((st = encode_field(e, &s->fields[i], base, path)))
            return st;
    }
    return VESTA_OK;
}

vesta_status vesta_msg_encode(const vesta_msg *m, msgpack_sbuffer *out, vesta_error *err)
{
    const proto_schema *s = proto_schema_of(m->type);
    if (!s)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "encode: unknown message type %d",
                               (int)m->type);
    size_t start = out->size;
    enc e = {.err = err};
    msgpack_packer_init(&e.pk, out, msgpack_sbuffer_write);
    if (msgpack_pack_map(&e.pk, 2 + (size_t)s->num_fields))
        e.failed = 1;
    pack_key(&e, "v");
    pack_i64(&e, VESTA_PROTO_VERSION);
    pack_key(&e, "type");
    pack_key(&e, s->name);
    vesta_status st = VESTA_OK;
    for (int i = 0; i < s->num_fields && !st; i++) {
        pack_key(&e, s->fields[i].name);
        st = encode_field(&e, &s->fields[i], &m->u, s->name);
    }
    if (!st && s->check)
        st = s->check(&m->u, s->name, err) ? VESTA_ERR_INVALID_ARG : VESTA_OK;
    if (!st && e.failed)
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "encode %s: out of memory", s->name);
    if (!st && out->size - start > VESTA_PROTO_MAX_MSG_BYTES)
        st = vesta_error_set(err, VESTA_ERR_INVALID_ARG, "encode %s: frame over %u bytes", s->name,
                             VESTA_PROTO_MAX_MSG_BYTES);
    if (st) {
        if (err)
            err->code = st;
        out->size = start; /* leave the buffer as it was */
    }
    return st;
}
