/* Decoding: proto_scan bounds the frame first (so msgpack-c's unpacker allocates O(frame) at
 * most), then msgpack_unpack_next builds the object tree and the schema tables check every key's
 * type and range while copying into the message struct. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define AT(base, off, type) ((type *)((char *)(base) + (off)))
#define MAX_DEPTH 8 /* deepest schema: tokens.logprobs[i][1][j] = 5 levels */

typedef struct dec {
    vesta_error *err;
    int logprobs_count; /* entries of the last PK_LOGPROBS decoded, -1 = none */
} dec;

static vesta_status fail(dec *d, const char *path, const char *name, const char *what)
{
    return vesta_error_set(d->err, VESTA_ERR_FORMAT, "%s.%s: %s", path, name, what);
}

/* 0 ok; -1 not an integer; -2 outside int64. */
static int obj_i64(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return -2;
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    return -1;
}

static int obj_double(const msgpack_object *o, double *out)
{
    int64_t i;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) {
        *out = o->via.f64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = (double)o->via.u64;
        return 0;
    }
    if (obj_i64(o, &i) == 0) {
        *out = (double)i;
        return 0;
    }
    return -1;
}

static vesta_status get_ranged(dec *d, const msgpack_object *o, const proto_field *f,
                               const char *path, int64_t *out)
{
    int rc = obj_i64(o, out);
    if (rc == -1)
        return fail(d, path, f->name, "expected an integer");
    if (rc == -2 || *out < f->lo || *out > f->hi)
        return fail(d, path, f->name, "integer out of range");
    return VESTA_OK;
}

static vesta_status get_float(dec *d, const msgpack_object *o, const proto_field *f,
                              const char *path, int nonfinite_ok, double *out)
{
    if (obj_double(o, out))
        return fail(d, path, f->name, "expected a number");
    if (!nonfinite_ok && !isfinite(*out))
        return fail(d, path, f->name, "not a finite number");
    return VESTA_OK;
}

static vesta_status get_str(dec *d, const msgpack_object *o, const proto_field *f,
                            const char *path, char *dst, size_t cap)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(d, path, f->name, "expected a string");
    size_t n = o->via.str.size;
    if (n >= cap)
        return fail(d, path, f->name, "string too long");
    if (n > 0 && memchr(o->via.str.ptr, '\0', n))
        return fail(d, path, f->name, "string contains a NUL byte");
    if (n == 0 && (f->flags & PF_NONEMPTY))
        return fail(d, path, f->name, "must not be empty");
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
    return VESTA_OK;
}

/* The array o with 0..f->hi elements (>= 1 with PF_NONEMPTY). */
static vesta_status get_array(dec *d, const msgpack_object *o, const proto_field *f,
                              const char *path, uint32_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return fail(d, path, f->name, "expected an array");
    *n = o->via.array.size;
    if ((int64_t)*n > f->hi)
        return fail(d, path, f->name, "too many elements");
    if (*n == 0 && (f->flags & PF_NONEMPTY))
        return fail(d, path, f->name, "must not be empty");
    return VESTA_OK;
}

static vesta_status get_i32_elems(dec *d, const msgpack_object *o, const proto_field *f,
                                  const char *path, int32_t *dst)
{
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        int64_t v;
        int rc = obj_i64(&o->via.array.ptr[i], &v);
        if (rc == -1)
            return fail(d, path, f->name, "expected an array of integers");
        if (rc == -2 || v < f->lo || v > INT32_MAX)
            return fail(d, path, f->name, "element out of range");
        dst[i] = (int32_t)v;
    }
    return VESTA_OK;
}

static vesta_status get_pair(dec *d, const msgpack_object *o, const proto_field *f,
                             const char *path, int32_t *id, double *val, int nonfinite_ok)
{
    int64_t v;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2)
        return fail(d, path, f->name, "expected [token, number] pairs");
    if (obj_i64(&o->via.array.ptr[0], &v) || v < 0 || v > INT32_MAX)
        return fail(d, path, f->name, "bad token id in a pair");
    if (obj_double(&o->via.array.ptr[1], val) || (!nonfinite_ok && !isfinite(*val)))
        return fail(d, path, f->name, "bad number in a pair");
    *id = (int32_t)v;
    return VESTA_OK;
}

static vesta_status get_logprobs(dec *d, const msgpack_object *o, const proto_field *f,
                                 const char *path, void *base)
{
    uint32_t n;
    vesta_status st = get_array(d, o, f, path, &n);
    if (st)
        return st;
    vesta_sample_result *lp = calloc(n ? n : 1, sizeof *lp);
    if (!lp)
        return vesta_error_set(d->err, VESTA_ERR_NOMEM, "%s.%s: out of memory", path, f->name);
    *AT(base, f->off, vesta_sample_result *) = lp;
    d->logprobs_count = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        double v;
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
            return fail(d, path, f->name, "expected [logprob, top] entries");
        if (obj_double(&e->via.array.ptr[0], &v))
            return fail(d, path, f->name, "logprob is not a number");
        lp[i].logprob = (float)v;
        const msgpack_object *top = &e->via.array.ptr[1];
        if (top->type != MSGPACK_OBJECT_ARRAY || top->via.array.size > VESTA_MAX_LOGPROBS)
            return fail(d, path, f->name, "top logprobs: expected an array of at most 20 pairs");
        lp[i].num_top = (int)top->via.array.size;
        for (uint32_t j = 0; j < top->via.array.size; j++) {
            if ((st = get_pair(d, &top->via.array.ptr[j], f, path, &lp[i].top_ids[j], &v, 1)))
                return st;
            lp[i].top_logprobs[j] = (float)v;
        }
        lp[i].token = -1; /* filled from token_ids after the map is read */
    }
    return VESTA_OK;
}

static vesta_status decode_schema(dec *d, const proto_schema *s, const msgpack_object *map,
                                  void *base, const char *path, int top);

static vesta_status decode_field(dec *d, const proto_field *f, const msgpack_object *o,
                                 void *base, const char *path)
{
    int64_t iv = 0; /* set by get_ranged on success; the initialiser quiets GCC's maybe-uninitialized */
    double dv = 0;
    uint32_t n;
    vesta_status st;
    if (o->type == MSGPACK_OBJECT_NIL && (f->flags & PF_NIL_EMPTY))
        return VESTA_OK; /* the init value: "" or NULL */
    switch (f->kind) {
    case PK_INT:
        if ((st = get_ranged(d, o, f, path, &iv)))
            return st;
        *AT(base, f->off, int) = (int)iv;
        return VESTA_OK;
    case PK_I32:
        if ((st = get_ranged(d, o, f, path, &iv)))
            return st;
        *AT(base, f->off, int32_t) = (int32_t)iv;
        return VESTA_OK;
    case PK_I64:
        if ((st = get_ranged(d, o, f, path, &iv)))
            return st;
        *AT(base, f->off, int64_t) = iv;
        return VESTA_OK;
    case PK_U64:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return fail(d, path, f->name, "expected an unsigned integer");
        *AT(base, f->off, uint64_t) = o->via.u64;
        return VESTA_OK;
    case PK_FLOAT:
        if ((st = get_float(d, o, f, path, f->flags & PF_NONFINITE_OK, &dv)))
            return st;
        if (!(f->flags & PF_NONFINITE_OK) && !isfinite((float)dv))
            return fail(d, path, f->name, "out of float range");
        *AT(base, f->off, float) = (float)dv;
        return VESTA_OK;
    case PK_DOUBLE:
        if ((st = get_float(d, o, f, path, 0, &dv)))
            return st;
        *AT(base, f->off, double) = dv;
        return VESTA_OK;
    case PK_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return fail(d, path, f->name, "expected a boolean");
        *AT(base, f->off, bool) = o->via.boolean;
        return VESTA_OK;
    case PK_STR:
        return get_str(d, o, f, path, AT(base, f->off, char), f->cap);
    case PK_STRS:
        if ((st = get_array(d, o, f, path, &n)))
            return st;
        for (uint32_t i = 0; i < n; i++) {
            proto_field one = *f;
            one.flags |= PF_NONEMPTY;
            if ((st = get_str(d, &o->via.array.ptr[i], &one, path,
                              AT(base, f->off + i * f->cap, char), f->cap)))
                return st;
        }
        *AT(base, f->off_n, int) = (int)n;
        return VESTA_OK;
    case PK_I32_FIXED:
        if ((st = get_array(d, o, f, path, &n)) ||
            (st = get_i32_elems(d, o, f, path, AT(base, f->off, int32_t))))
            return st;
        *AT(base, f->off_n, int) = (int)n;
        return VESTA_OK;
    case PK_I32_ALLOC: {
        if ((st = get_array(d, o, f, path, &n)))
            return st;
        int32_t *a = malloc((n ? n : 1) * sizeof *a);
        if (!a)
            return vesta_error_set(d->err, VESTA_ERR_NOMEM, "%s.%s: out of memory", path, f->name);
        *AT(base, f->off, int32_t *) = a;
        *AT(base, f->off_n, int) = (int)n;
        return get_i32_elems(d, o, f, path, a);
    }
    case PK_U64_ALLOC: {
        if ((st = get_array(d, o, f, path, &n)))
            return st;
        uint64_t *a = malloc((n ? n : 1) * sizeof *a);
        if (!a)
            return vesta_error_set(d->err, VESTA_ERR_NOMEM, "%s.%s: out of memory", path, f->name);
        *AT(base, f->off, uint64_t *) = a;
        *AT(base, f->off_n, int) = (int)n;
        for (uint32_t i = 0; i < n; i++) {
            if (o->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return fail(d, path, f->name, "expected an array of unsigned integers");
            a[i] = o->via.array.ptr[i].via.u64;
        }
        return VESTA_OK;
    }
    case PK_MAP: {
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", path, f->name);
        return decode_schema(d, f->sub, o, AT(base, f->off, char), sub, 0);
    }
    case PK_LOGIT_BIAS: {
        if ((st = get_array(d, o, f, path, &n)))
            return st;
        vesta_logit_bias *lb = AT(base, f->off, vesta_logit_bias);
        for (uint32_t i = 0; i < n; i++) {
            if ((st = get_pair(d, &o->via.array.ptr[i], f, path, &lb[i].token, &dv, 0)))
                return st;
            if (!isfinite((float)dv))
                return fail(d, path, f->name, "bias out of float range");
            lb[i].bias = (float)dv;
        }
        *AT(base, f->off_n, int) = (int)n;
        return VESTA_OK;
    }
    case PK_LOGPROBS:
        return get_logprobs(d, o, f, path, base);
    }
    return vesta_error_set(d->err, VESTA_ERR_INTERNAL, "%s.%s: unknown field kind", path, f->name);
}

static int key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

/* Fills the token of each logprobs entry from token_ids: the wire carries each id once.
 * PK_LOGPROBS only appears in "tokens". */
static vesta_status link_logprobs(dec *d, const proto_field *f, void *base, const char *path)
{
    vesta_msg_tokens *t = base;
    if (!t->logprobs)
        return VESTA_OK;
    if (d->logprobs_count != t->num_new)
        return fail(d, path, f->name, "entry count differs from token_ids");
    for (int i = 0; i < t->num_new; i++)
        t->logprobs[i].token = t->new_token_ids[i];
    return VESTA_OK;
}

static vesta_status decode_schema(dec *d, const proto_schema *s, const msgpack_object *map,
                                  void *base, const char *path, int top)
{
    uint64_t seen = 0;
    vesta_status st;
    if (map->type != MSGPACK_OBJECT_MAP)
        return vesta_error_set(d->err, VESTA_ERR_FORMAT, "%s: expected a map", path);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return vesta_error_set(d->err, VESTA_ERR_FORMAT, "%s: a key is not a string", path);
        if (top && (key_is(k, "v") || key_is(k, "type")))
            continue; /* the envelope, checked by the caller */
        for (int j = 0; j < s->num_fields; j++) {
            if (!key_is(k, s->fields[j].name))
                continue;
            if (seen & (1ull << j))
                return fail(d, path, s->fields[j].name, "duplicate key");
            seen |= 1ull << j;
            if ((st = decode_field(d, &s->fields[j], &map->via.map.ptr[i].val, base, path)))
                return st;
            break;
        }
    }
    for (int j = 0; j < s->num_fields; j++) {
        const proto_field *f = &s->fields[j];
        if ((f->flags & PF_REQUIRED) && !(seen & (1ull << j)))
            return fail(d, path, f->name, "missing");
        if (f->kind == PK_LOGPROBS && (st = link_logprobs(d, f, base, path)))
            return st;
    }
    return s->check ? s->check(base, path, d->err) : VESTA_OK;
}

/* Reads "v" and "type" from the top-level map. */
static vesta_status decode_envelope(dec *d, const msgpack_object *map, vesta_msg_type *type)
{
    const msgpack_object *v = NULL, *t = NULL;
    if (map->type != MSGPACK_OBJECT_MAP)
        return vesta_error_set(d->err, VESTA_ERR_FORMAT, "message: expected a map");
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            continue; /* reported by decode_schema */
        const msgpack_object **slot = key_is(k, "v") ? &v : key_is(k, "type") ? &t : NULL;
        if (!slot)
            continue;
        if (*slot)
            return vesta_error_set(d->err, VESTA_ERR_FORMAT, "message: duplicate key '%s'",
                                   slot == &v ? "v" : "type");
        *slot = &map->via.map.ptr[i].val;
    }
    if (!v || !t)
        return vesta_error_set(d->err, VESTA_ERR_FORMAT, "message: missing key '%s'",
                               v ? "type" : "v");
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return vesta_error_set(d->err, VESTA_ERR_FORMAT, "message.v: expected an unsigned integer");
    if (v->via.u64 != VESTA_PROTO_VERSION)
        return vesta_error_set(d->err, VESTA_ERR_UNSUPPORTED,
                               "protocol version %llu, this side speaks %d",
                               (unsigned long long)v->via.u64, VESTA_PROTO_VERSION);
    if (t->type != MSGPACK_OBJECT_STR)
        return vesta_error_set(d->err, VESTA_ERR_FORMAT, "message.type: expected a string");
    *type = vesta_msg_type_from_name(t->via.str.ptr, t->via.str.size);
    if (*type == VESTA_MSG_NONE) {
        char shown[33];
        size_t n = t->via.str.size < 32 ? t->via.str.size : 32;
        for (size_t i = 0; i < n; i++)
            shown[i] = isprint((unsigned char)t->via.str.ptr[i]) ? t->via.str.ptr[i] : '?';
        shown[n] = '\0';
        return vesta_error_set(d->err, VESTA_ERR_FORMAT, "unknown message type '%s'", shown);
    }
    return VESTA_OK;
}

vesta_status vesta_msg_decode(const char *data, size_t len, vesta_msg *out, vesta_error *err)
{
    dec d = {.err = err, .logprobs_count = -1};
    vesta_msg_type type;
    vesta_status st;
    memset(out, 0, sizeof *out);
    if (!data || len == 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "empty message");
    if (len > VESTA_PROTO_MAX_MSG_BYTES)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "message of %zu bytes is over the %u limit",
                               len, VESTA_PROTO_MAX_MSG_BYTES);
    if ((st = proto_scan(data, len, MAX_DEPTH, err)))
        return st;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&up, data, len, &off);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "message: out of memory");
    else if (rc != MSGPACK_UNPACK_SUCCESS || off != len)
        st = vesta_error_set(err, VESTA_ERR_FORMAT, "message: malformed msgpack");
    if (!st)
        st = decode_envelope(&d, &up.data, &type);
    if (!st) {
        vesta_msg_init(out, type);
        const proto_schema *s = proto_schema_of(type);
        st = decode_schema(&d, s, &up.data, &out->u, s->name, 1);
    }
    msgpack_unpacked_destroy(&up);
    if (st)
        vesta_msg_clear(out);
    return st;
}
