/* GGUF v3 reader: one bounds-checked pass at open builds an index of the metadata (keys hashed,
 * string arrays with a per-element offset table) and of the tensor infos; accessors afterwards
 * only read what the pass has proven to lie inside the buffer. */
#include "vesta/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format_util.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ARRAY_DEPTH 8 /* nested arrays of arrays: deeper nesting is hostile */

typedef struct gguf_kv {
    vesta_gguf_str key;
    vesta_gguf_type type;
    size_t value_off;        /* offset of the value (for arrays: of the element type field) */
    vesta_gguf_type elem_type; /* arrays only */
    uint64_t count;            /* arrays only */
    size_t elems_off;          /* arrays only: offset of the first element */
    uint64_t *str_offs;        /* string arrays: offset of each element's length field */
} gguf_kv;

struct vesta_gguf {
    const uint8_t *base;
    size_t size;
    bool mapped;
    char *path;
    gguf_kv *kvs;
    uint64_t n_kv;
    vesta_fmt_index kv_index;
    vesta_gguf_tensor *tensors;
    uint64_t n_tensors;
    vesta_fmt_index tensor_index;
    uint64_t alignment;
    size_t data_off;
};

/* ---- ggml type table (block size in elements, bytes per block) ---- */

typedef struct ggml_type_size {
    uint32_t block;
    uint32_t bytes;
} ggml_type_size;

static ggml_type_size ggml_type_size_of(uint32_t t)
{
    static const ggml_type_size table[] = {
        [0] = {1, 4},      /* F32 */
        [1] = {1, 2},      /* F16 */
        [2] = {32, 18},    /* Q4_0 */
        [3] = {32, 20},    /* Q4_1 */
        [6] = {32, 22},    /* Q5_0 */
        [7] = {32, 24},    /* Q5_1 */
        [8] = {32, 34},    /* Q8_0 */
        [9] = {32, 40},    /* Q8_1 */
        [10] = {256, 84},  /* Q2_K */
        [11] = {256, 110}, /* Q3_K */
        [12] = {256, 144}, /* Q4_K */
        [13] = {256, 176}, /* Q5_K */
        [14] = {256, 210}, /* Q6_K */
        [15] = {256, 292}, /* Q8_K */
        [16] = {256, 66},  /* IQ2_XXS */
        [17] = {256, 74},  /* IQ2_XS */
        [18] = {256, 98},  /* IQ3_XXS */
        [19] = {256, 50},  /* IQ1_S */
        [20] = {32, 18},   /* IQ4_NL */
        [21] = {256, 110}, /* IQ3_S */
        [22] = {256, 82},  /* IQ2_S */
        [23] = {256, 136}, /* IQ4_XS */
        [24] = {1, 1},     /* I8 */
        [25] = {1, 2},     /* I16 */
        [26] = {1, 4},     /* I32 */
        [27] = {1, 8},     /* I64 */
        [28] = {1, 8},     /* F64 */
        [29] = {256, 56},  /* IQ1_M */
        [30] = {1, 2},     /* BF16 */
        [34] = {256, 54},  /* TQ1_0 */
        [35] = {256, 66},  /* TQ2_0 */
        [39] = {32, 17},   /* MXFP4 */
    };
    if (t >= sizeof(table) / sizeof(table[0]))
        return (ggml_type_size){0, 0};
    return table[t];
}

/* ---- bounded cursor ---- */

typedef struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    const char *path;
    vesta_error *err;
} cursor;

static vesta_status cur_fail(cursor *c, const char *what)
{
    return vesta_error_set(c->err, VESTA_ERR_FORMAT, "%s: %s (at byte %zu of %zu)", c->path, what,
                           c->pos, c->size);
}

static size_t cur_left(const cursor *c)
{
    return c->size - c->pos;
}

static bool cur_skip(cursor *c, uint64_t n)
{
    if (n > cur_left(c))
        return false;
    c->pos += (size_t)n;
    return true;
}

static bool cur_u32(cursor *c, uint32_t *out)
{
    if (cur_left(c) < 4)
        return false;
    *out = vesta_fmt_le32(c->base + c->pos);
    c->pos += 4;
    return true;
}

static bool cur_u64(cursor *c, uint64_t *out)
{
    if (cur_left(c) < 8)
        return false;
    *out = vesta_fmt_le64(c->base + c->pos);
    c->pos += 8;
    return true;
}

static bool cur_str(cursor *c, vesta_gguf_str *out)
{
    uint64_t len;
    if (!cur_u64(c, &len) || len > cur_left(c))
        return false;
    out->ptr = (const char *)(c->base + c->pos);
    out->len = len;
    c->pos += (size_t)len;
    return true;
}

/* Size of one scalar of type t; 0 for string/array/unknown. */
static uint64_t scalar_size(uint32_t t)
{
    switch (t) {
    case VESTA_GGUF_UINT8:
    case VESTA_GGUF_INT8:
    case VESTA_GGUF_BOOL: return 1;
    case VESTA_GGUF_UINT16:
    case VESTA_GGUF_INT16: return 2;
    case VESTA_GGUF_UINT32:
    case VESTA_GGUF_INT32:
    case VESTA_GGUF_FLOAT32: return 4;
    case VESTA_GGUF_UINT64:
    case VESTA_GGUF_INT64:
    case VESTA_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static bool type_known(uint32_t t)
{
    return t <= VESTA_GGUF_FLOAT64;
}

/* Skips one value of type t (validating nested arrays up to a fixed depth). */
static bool skip_value(cursor *c, uint32_t t, int depth)
{
    uint64_t sz = scalar_size(t);
    if (sz)
        return cur_skip(c, sz);
    if (t == VESTA_GGUF_STRING) {
        vesta_gguf_str s;
        return cur_str(c, &s);
    }
    if (t != VESTA_GGUF_ARRAY || depth >= GGUF_MAX_ARRAY_DEPTH)
        return false;
    uint32_t et;
    uint64_t n;
    if (!cur_u32(c, &et) || !type_known(et) || !cur_u64(c, &n))
        return false;
    uint64_t esz = scalar_size(et);
    if (esz) {
        if (n > cur_left(c) / esz)
            return false;
        return cur_skip(c, n * esz);
    }
    /* Strings take >= 8 bytes, nested arrays >= 12: a count beyond that cannot be honest. */
    uint64_t min_elem = et == VESTA_GGUF_STRING ? 8 : 12;
    if (n > cur_left(c) / min_elem)
        return false;
    for (uint64_t i = 0; i < n; i++)
        if (!skip_value(c, et, depth + 1))
            return false;
    return true;
}

/* ---- parsing ---- */

static vesta_status parse_kv(vesta_gguf *g, cursor *c, gguf_kv *kv)
{
    char what[160];
    if (!cur_str(c, &kv->key))
        return cur_fail(c, "metadata key truncated or length out of bounds");
    int kl = kv->key.len > 64 ? 64 : (int)kv->key.len;
    uint32_t t;
    if (!cur_u32(c, &t)) {
        snprintf(what, sizeof(what), "key '%.*s': value type truncated", kl, kv->key.ptr);
        return cur_fail(c, what);
    }
    if (!type_known(t)) {
        snprintf(what, sizeof(what), "key '%.*s': unknown value type %u", kl, kv->key.ptr, t);
        return cur_fail(c, what);
    }
    kv->type = (vesta_gguf_type)t;
    kv->value_off = c->pos;
    if (t == VESTA_GGUF_ARRAY) {
        uint32_t et = 0;
        uint64_t n = 0;
        cursor probe = *c;
        if (!cur_u32(&probe, &et) || !type_known(et) || !cur_u64(&probe, &n)) {
            snprintf(what, sizeof(what), "key '%.*s': array header truncated or bad element type",
                     kl, kv->key.ptr);
            return cur_fail(c, what);
        }
        kv->elem_type = (vesta_gguf_type)et;
        kv->count = n;
        kv->elems_off = probe.pos;
    }
    if (!skip_value(c, t, 0)) {
        snprintf(what, sizeof(what), "key '%.*s': value truncated, out of bounds or nested too deep",
                 kl, kv->key.ptr);
        return cur_fail(c, what);
    }
    if (t == VESTA_GGUF_ARRAY && kv->elem_type == VESTA_GGUF_STRING && kv->count > 0) {
        /* O(1) element access for the tokenizer's 100k-string vocabularies. */
        kv->str_offs = malloc((size_t)kv->count * sizeof(uint64_t));
        if (kv->str_offs == NULL)
            return vesta_error_set(c->err, VESTA_ERR_NOMEM, "%s: key '%.*s': out of memory", c->path,
                                   kl, kv->key.ptr);
        size_t p = kv->elems_off;
        for (uint64_t i = 0; i < kv->count; i++) {
            kv->str_offs[i] = p;
            p += 8 + (size_t)vesta_fmt_le64(g->base + p); /* validated by skip_value */
        }
    }
    return VESTA_OK;
}

static vesta_status parse_tensor_info(cursor *c, vesta_gguf_tensor *t, uint64_t *offset)
{
    char what[200];
    if (!cur_str(c, &t->name))
        return cur_fail(c, "tensor name truncated or length out of bounds");
    int nl = t->name.len > 64 ? 64 : (int)t->name.len;
    if (!cur_u32(c, &t->n_dims)) {
        snprintf(what, sizeof(what), "tensor '%.*s': n_dims truncated", nl, t->name.ptr);
        return cur_fail(c, what);
    }
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
        snprintf(what, sizeof(what), "tensor '%.*s': n_dims %u not in 1..%d", nl, t->name.ptr,
                 t->n_dims, GGUF_MAX_DIMS);
        return cur_fail(c, what);
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!cur_u64(c, &t->ne[d])) {
            snprintf(what, sizeof(what), "tensor '%.*s': shape truncated", nl, t->name.ptr);
            return cur_fail(c, what);
        }
    }
    if (!cur_u32(c, &t->ggml_type) || !cur_u64(c, offset)) {
        snprintf(what, sizeof(what), "tensor '%.*s': type/offset truncated", nl, t->name.ptr);
        return cur_fail(c, what);
    }
    ggml_type_size ts = ggml_type_size_of(t->ggml_type);
    if (ts.block == 0) {
        snprintf(what, sizeof(what), "tensor '%.*s': unknown ggml type %u", nl, t->name.ptr,
                 t->ggml_type);
        return cur_fail(c, what);
    }
    uint64_t nelem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] > (uint64_t)INT64_MAX || vesta_fmt_mul_overflow(nelem, t->ne[d], &nelem)) {
            snprintf(what, sizeof(what), "tensor '%.*s': element count overflows", nl, t->name.ptr);
            return cur_fail(c, what);
        }
    }
    if (t->ne[0] % ts.block != 0) {
        snprintf(what, sizeof(what), "tensor '%.*s': row length %llu not a multiple of block size %u",
                 nl, t->name.ptr, (unsigned long long)t->ne[0], ts.block);
        return cur_fail(c, what);
    }
    /* nelem / block * bytes cannot overflow when nelem*bytes does not; check the latter loosely. */
    uint64_t nblocks = nelem / ts.block;
    if (vesta_fmt_mul_overflow(nblocks, ts.bytes, &t->nbytes)) {
        snprintf(what, sizeof(what), "tensor '%.*s': byte size overflows", nl, t->name.ptr);
        return cur_fail(c, what);
    }
    return VESTA_OK;
}

static vesta_status index_kvs(vesta_gguf *g, vesta_error *err)
{
    if (vesta_fmt_index_init(&g->kv_index, g->n_kv) != 0)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const vesta_gguf_str *k = &g->kvs[i].key;
        if (!vesta_fmt_index_insert(&g->kv_index, k->ptr, (size_t)k->len, i))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: duplicate metadata key '%.*s'", g->path,
                                   k->len > 64 ? 64 : (int)k->len, k->ptr);
    }
    return VESTA_OK;
}

static vesta_status index_tensors(vesta_gguf *g, vesta_error *err)
{
    if (vesta_fmt_index_init(&g->tensor_index, g->n_tensors) != 0)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const vesta_gguf_str *n = &g->tensors[i].name;
        if (!vesta_fmt_index_insert(&g->tensor_index, n->ptr, (size_t)n->len, i))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: duplicate tensor name '%.*s'", g->path,
                                   n->len > 64 ? 64 : (int)n->len, n->ptr);
    }
    return VESTA_OK;
}

static const gguf_kv *find_kv(const vesta_gguf *g, const char *key)
{
    if (g == NULL || key == NULL)
        return NULL;
    uint64_t i;
    if (!vesta_fmt_index_find(&g->kv_index, key, strlen(key), &i))
        return NULL;
    return &g->kvs[i];
}

static vesta_status read_alignment(vesta_gguf *g, vesta_error *err)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = find_kv(g, "general.alignment");
    if (kv == NULL)
        return VESTA_OK;
    if (kv->type != VESTA_GGUF_UINT32)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: key 'general.alignment' must be uint32",
                               g->path);
    uint32_t a = vesta_fmt_le32(g->base + kv->value_off);
    if (a == 0 || (a & (a - 1)) != 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: key 'general.alignment' = %u is not a power of two", g->path, a);
    g->alignment = a;
    return VESTA_OK;
}

static vesta_status parse(vesta_gguf *g, vesta_error *err)
{
    cursor c = {.base = g->base, .size = g->size, .pos = 0, .path = g->path, .err = err};
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: not a GGUF file (bad magic)", g->path);
    c.pos = 4;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (!cur_u32(&c, &version))
        return cur_fail(&c, "header truncated");
    if (version != GGUF_VERSION)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: GGUF version %u unsupported (need %d)",
                               g->path, version, GGUF_VERSION);
    if (!cur_u64(&c, &n_tensors) || !cur_u64(&c, &n_kv))
        return cur_fail(&c, "header truncated");
    /* Each KV takes >= 13 bytes (key len, type, 1-byte value) and each tensor info >= 32. */
    if (n_kv > cur_left(&c) / 13)
        return cur_fail(&c, "metadata count exceeds the file size");
    if (n_tensors > cur_left(&c) / 32)
        return cur_fail(&c, "tensor count exceeds the file size");

    g->kvs = calloc(n_kv ? (size_t)n_kv : 1, sizeof(gguf_kv));
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(vesta_gguf_tensor));
    uint64_t *offsets = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(uint64_t));
    vesta_status st = VESTA_OK;
    if (g->kvs == NULL || g->tensors == NULL || offsets == NULL) {
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", g->path);
        goto out;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1; /* so that close frees what was allocated */
        if ((st = parse_kv(g, &c, &g->kvs[i])) != VESTA_OK)
            goto out;
    }
    if ((st = index_kvs(g, err)) != VESTA_OK || (st = read_alignment(g, err)) != VESTA_OK)
        goto out;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if ((st = parse_tensor_info(&c, &g->tensors[i], &offsets[i])) != VESTA_OK)
            goto out;
    }
    if ((st = index_tensors(g, err)) != VESTA_OK)
        goto out;

    /* The data section starts at the next multiple of the alignment (absent if no tensors). */
    uint64_t data_off = c.pos;
    uint64_t rem = data_off % g->alignment;
    if (rem != 0)
        data_off += g->alignment - rem;
    if (n_tensors > 0 && data_off > g->size) {
        st = cur_fail(&c, "data section starts beyond the end of the file");
        goto out;
    }
    g->data_off = (size_t)data_off;
    for (uint64_t i = 0; i < n_tensors; i++) {
        vesta_gguf_tensor *t = &g->tensors[i];
        int nl = t->name.len > 64 ? 64 : (int)t->name.len;
        uint64_t avail = g->size - g->data_off;
        if (offsets[i] % g->alignment != 0) {
            st = vesta_error_set(err, VESTA_ERR_FORMAT,
                                 "%s: tensor '%.*s': offset %llu not aligned to %llu", g->path, nl,
                                 t->name.ptr, (unsigned long long)offsets[i],
                                 (unsigned long long)g->alignment);
            goto out;
        }
        if (offsets[i] > avail || t->nbytes > avail - offsets[i]) {
            st = vesta_error_set(err, VESTA_ERR_FORMAT,
                                 "%s: tensor '%.*s': data [%llu, +%llu) lies outside the file "
                                 "(data section has %llu bytes)",
                                 g->path, nl, t->name.ptr, (unsigned long long)offsets[i],
                                 (unsigned long long)t->nbytes, (unsigned long long)avail);
            goto out;
        }
        t->data = g->base + g->data_off + offsets[i];
    }
out:
    free(offsets);
    return st;
}

/* ---- open / close ---- */

static vesta_gguf *gguf_new(const char *name, vesta_error *err)
{
    vesta_gguf *g = calloc(1, sizeof(*g));
    if (g != NULL)
        g->path = strdup(name ? name : "<memory>");
    if (g == NULL || g->path == NULL) {
        free(g);
        vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", name ? name : "<memory>");
        return NULL;
    }
    return g;
}

vesta_gguf *vesta_gguf_open_memory(const void *data, size_t len, const char *name, vesta_error *err)
{
    vesta_gguf *g = gguf_new(name, err);
    if (g == NULL)
        return NULL;
    static const uint8_t empty[1];
    g->base = data ? data : empty;
    g->size = data ? len : 0;
    if (parse(g, err) != VESTA_OK) {
        vesta_gguf_close(g);
        return NULL;
    }
    return g;
}

vesta_gguf *vesta_gguf_open(const char *path, vesta_error *err)
{
    size_t size;
    void *map = vesta_fmt_map_file(path, &size, err);
    if (map == NULL)
        return NULL;
    vesta_gguf *g = gguf_new(path, err);
    if (g == NULL) {
        vesta_fmt_unmap(map, size);
        return NULL;
    }
    g->base = map;
    g->size = size;
    g->mapped = true;
    if (parse(g, err) != VESTA_OK) {
        vesta_gguf_close(g);
        return NULL;
    }
    return g;
}

void vesta_gguf_close(vesta_gguf *g)
{
    if (g == NULL)
        return;
    if (g->kvs != NULL)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kvs[i].str_offs);
    free(g->kvs);
    free(g->tensors);
    vesta_fmt_index_free(&g->kv_index);
    vesta_fmt_index_free(&g->tensor_index);
    if (g->mapped)
        vesta_fmt_unmap((void *)g->base, g->size);
    free(g->path);
    free(g);
}

const char *vesta_gguf_path(const vesta_gguf *g)
{
    return g ? g->path : NULL;
}

/* ---- metadata accessors ---- */

typedef enum num_kind { NUM_NONE, NUM_U, NUM_I, NUM_F } num_kind;

typedef struct num_value {
    num_kind kind;
    uint64_t u;
    int64_t i;
    double f;
} num_value;

static num_value decode_num(const uint8_t *p, vesta_gguf_type t)
{
    num_value v = {NUM_NONE, 0, 0, 0};
    switch (t) {
    case VESTA_GGUF_UINT8: v.kind = NUM_U; v.u = p[0]; break;
    case VESTA_GGUF_UINT16: v.kind = NUM_U; v.u = vesta_fmt_le16(p); break;
    case VESTA_GGUF_UINT32: v.kind = NUM_U; v.u = vesta_fmt_le32(p); break;
    case VESTA_GGUF_UINT64: v.kind = NUM_U; v.u = vesta_fmt_le64(p); break;
    case VESTA_GGUF_INT8: v.kind = NUM_I; v.i = (int8_t)p[0]; break;
    case VESTA_GGUF_INT16: v.kind = NUM_I; v.i = (int16_t)vesta_fmt_le16(p); break;
    case VESTA_GGUF_INT32: v.kind = NUM_I; v.i = (int32_t)vesta_fmt_le32(p); break;
    case VESTA_GGUF_INT64: v.kind = NUM_I; v.i = (int64_t)vesta_fmt_le64(p); break;
    case VESTA_GGUF_FLOAT32: {
        uint32_t b = vesta_fmt_le32(p);
        float f;
        memcpy(&f, &b, 4);
        v.kind = NUM_F;
        v.f = f;
        break;
    }
    case VESTA_GGUF_FLOAT64: {
        uint64_t b = vesta_fmt_le64(p);
        memcpy(&v.f, &b, 8);
        v.kind = NUM_F;
        break;
    }
    default: break;
    }
    return v;
}

static bool num_to_u64(num_value v, uint64_t *out)
{
    if (v.kind == NUM_U) {
        *out = v.u;
        return true;
    }
    if (v.kind == NUM_I && v.i >= 0) {
        *out = (uint64_t)v.i;
        return true;
    }
    return false;
}

static bool num_to_i64(num_value v, int64_t *out)
{
    if (v.kind == NUM_I) {
        *out = v.i;
        return true;
    }
    if (v.kind == NUM_U && v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v.u;
        return true;
    }
    return false;
}

static bool num_to_f64(num_value v, double *out)
{
    switch (v.kind) {
    case NUM_U: *out = (double)v.u; return true;
    case NUM_I: *out = (double)v.i; return true;
    case NUM_F: *out = v.f; return true;
    default: return false;
    }
}

static num_value scalar_of(const vesta_gguf *g, const char *key)
{
    const gguf_kv *kv = find_kv(g, key);
    num_value none = {NUM_NONE, 0, 0, 0};
    if (kv == NULL)
        return none;
    return decode_num(g->base + kv->value_off, kv->type);
}

bool vesta_gguf_has_key(const vesta_gguf *g, const char *key)
{
    return find_kv(g, key) != NULL;
}

bool vesta_gguf_get_u64(const vesta_gguf *g, const char *key, uint64_t *out)
{
    return num_to_u64(scalar_of(g, key), out);
}

bool vesta_gguf_get_i64(const vesta_gguf *g, const char *key, int64_t *out)
{
    return num_to_i64(scalar_of(g, key), out);
}

bool vesta_gguf_get_f64(const vesta_gguf *g, const char *key, double *out)
{
    return num_to_f64(scalar_of(g, key), out);
}

bool vesta_gguf_get_bool(const vesta_gguf *g, const char *key, bool *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != VESTA_GGUF_BOOL)
        return false;
    *out = g->base[kv->value_off] != 0;
    return true;
}

bool vesta_gguf_get_str(const vesta_gguf *g, const char *key, vesta_gguf_str *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != VESTA_GGUF_STRING)
        return false;
    out->len = vesta_fmt_le64(g->base + kv->value_off);
    out->ptr = (const char *)(g->base + kv->value_off + 8);
    return true;
}

bool vesta_gguf_get_array(const vesta_gguf *g, const char *key, vesta_gguf_type *elem_type,
                          uint64_t *count)
{
    const gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != VESTA_GGUF_ARRAY)
        return false;
    if (elem_type)
        *elem_type = kv->elem_type;
    if (count)
        *count = kv->count;
    return true;
}

bool vesta_gguf_array_str(const vesta_gguf *g, const char *key, uint64_t i, vesta_gguf_str *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != VESTA_GGUF_ARRAY || kv->elem_type != VESTA_GGUF_STRING ||
        i >= kv->count)
        return false;
    const uint8_t *p = g->base + kv->str_offs[i];
    out->len = vesta_fmt_le64(p);
    out->ptr = (const char *)(p + 8);
    return true;
}

static num_value array_num(const vesta_gguf *g, const char *key, uint64_t i)
{
    num_value none = {NUM_NONE, 0, 0, 0};
    const gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != VESTA_GGUF_ARRAY || i >= kv->count)
        return none;
    uint64_t esz = scalar_size(kv->elem_type);
    if (esz == 0 || kv->elem_type == VESTA_GGUF_BOOL)
        return none;
    return decode_num(g->base + kv->elems_off + i * esz, kv->elem_type);
}

bool vesta_gguf_array_i64(const vesta_gguf *g, const char *key, uint64_t i, int64_t *out)
{
    return num_to_i64(array_num(g, key, i), out);
}

bool vesta_gguf_array_f64(const vesta_gguf *g, const char *key, uint64_t i, double *out)
{
    return num_to_f64(array_num(g, key, i), out);
}

/* ---- tensors ---- */

uint64_t vesta_gguf_tensor_count(const vesta_gguf *g)
{
    return g ? g->n_tensors : 0;
}

const vesta_gguf_tensor *vesta_gguf_tensor_at(const vesta_gguf *g, uint64_t i)
{
    if (g == NULL || i >= g->n_tensors)
        return NULL;
    return &g->tensors[i];
}

const vesta_gguf_tensor *vesta_gguf_find_tensor(const vesta_gguf *g, const char *name)
{
    if (g == NULL || name == NULL)
        return NULL;
    uint64_t i;
    if (!vesta_fmt_index_find(&g->tensor_index, name, strlen(name), &i))
        return NULL;
    return &g->tensors[i];
}
