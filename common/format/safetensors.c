/* safetensors: [u64 LE header length N][N bytes of JSON][data section]. The JSON maps tensor
 * names to {"dtype", "shape", "data_offsets": [begin, end]} relative to the data section. */
#include "vesta/safetensors.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format_util.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

struct vesta_safetensors {
    const uint8_t *base;
    size_t size;
    bool mapped;
    char *path;
    vesta_safetensors_tensor *tensors;
    size_t n_tensors;
    vesta_fmt_index index;
};

typedef struct st_dtype {
    const char *name;
    size_t itemsize;
} st_dtype;

static const st_dtype *dtype_lookup(const char *s)
{
    static const st_dtype table[] = {
        {"F64", 8},  {"F32", 4},  {"F16", 2},  {"BF16", 2},   {"I64", 8},     {"I32", 4},
        {"I16", 2},  {"I8", 1},   {"U64", 8},  {"U32", 4},    {"U16", 2},     {"U8", 1},
        {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].name, s) == 0)
            return &table[i];
    return NULL;
}

static vesta_status parse_entry(vesta_safetensors *st, const char *name, json_t *v,
                                uint64_t data_len, const uint8_t *data, vesta_safetensors_tensor *t,
                                vesta_error *err)
{
    const char *p = st->path;
    if (!json_is_object(v))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': entry is not an object", p,
                               name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: tensor '%s': needs string 'dtype', array 'shape' and "
                               "'data_offsets' [begin, end]",
                               p, name);
    const st_dtype *dt = dtype_lookup(json_string_value(jd));
    if (dt == NULL)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%.32s'",
                               p, name, json_string_value(jd));
    t->dtype = dt->name;
    t->itemsize = dt->itemsize;
    size_t nd = json_array_size(js);
    if (nd > VESTA_SAFETENSORS_MAX_DIMS)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (max %d)", p,
                               name, nd, VESTA_SAFETENSORS_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t nelem = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return vesta_error_set(err, VESTA_ERR_FORMAT,
                                   "%s: tensor '%s': shape[%zu] is not a non-negative integer", p,
                                   name, d);
        t->shape[d] = json_integer_value(x);
        if (vesta_fmt_mul_overflow(nelem, (uint64_t)t->shape[d], &nelem))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': element count overflows",
                                   p, name);
    }
    if (vesta_fmt_mul_overflow(nelem, dt->itemsize, &t->nbytes))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': byte size overflows", p, name);
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < json_integer_value(jb))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", p, name);
    uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
    if (e > data_len)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets [%llu, %llu) beyond the data section "
                               "(%llu bytes)",
                               p, name, (unsigned long long)b, (unsigned long long)e,
                               (unsigned long long)data_len);
    if (e - b != t->nbytes)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets span %llu bytes but dtype %s x shape "
                               "needs %llu",
                               p, name, (unsigned long long)(e - b), dt->name,
                               (unsigned long long)t->nbytes);
    t->data = data + b;
    t->name = strdup(name);
    if (t->name == NULL)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", p);
    return VESTA_OK;
}

static int by_offset(const void *a, const void *b)
{
    const vesta_safetensors_tensor *x = a, *y = b;
    const uint8_t *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static vesta_status parse(vesta_safetensors *st, vesta_error *err)
{
    const char *p = st->path;
    if (st->size < 8)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: truncated (no header length)", p);
    uint64_t hlen = vesta_fmt_le64(st->base);
    if (hlen > st->size - 8 || hlen > ST_MAX_HEADER)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: header length %llu exceeds the file (%zu bytes) or 100 MB", p,
                               (unsigned long long)hlen, st->size);
    if (hlen < 2 || st->base[8] != '{')
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: header is not a JSON object", p);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)st->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: header JSON: %s (line %d)", p, jerr.text,
                               jerr.line);
    vesta_status rc = VESTA_OK;
    if (!json_is_object(root)) {
        rc = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: header is not a JSON object", p);
        goto out;
    }
    size_t n = json_object_size(root);
    st->tensors = calloc(n ? n : 1, sizeof(*st->tensors));
    if (st->tensors == NULL) {
        rc = vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", p);
        goto out;
    }
    const uint8_t *data = st->base + 8 + hlen;
    uint64_t data_len = st->size - 8 - hlen;
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v)
    {
        if (strcmp(name, "__metadata__") == 0)
            continue;
        vesta_safetensors_tensor *t = &st->tensors[st->n_tensors];
        if ((rc = parse_entry(st, name, v, data_len, data, t, err)) != VESTA_OK)
            goto out;
        st->n_tensors++;
    }
    qsort(st->tensors, st->n_tensors, sizeof(*st->tensors), by_offset);
    for (size_t i = 1; i < st->n_tensors; i++) {
        const vesta_safetensors_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if ((const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data) {
            rc = vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", p,
                                 a->name, b->name);
            goto out;
        }
    }
    if (vesta_fmt_index_init(&st->index, st->n_tensors) != 0) {
        rc = vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", p);
        goto out;
    }
    for (size_t i = 0; i < st->n_tensors; i++)
        vesta_fmt_index_insert(&st->index, st->tensors[i].name, strlen(st->tensors[i].name), i);
out:
    json_decref(root);
    return rc;
}

static vesta_safetensors *st_new(const char *name, vesta_error *err)
{
    vesta_safetensors *st = calloc(1, sizeof(*st));
    if (st != NULL)
        st->path = strdup(name ? name : "<memory>");
    if (st == NULL || st->path == NULL) {
        free(st);
        vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", name ? name : "<memory>");
        return NULL;
    }
    return st;
}

vesta_safetensors *vesta_safetensors_open_memory(const void *data, size_t len, const char *name,
                                                 vesta_error *err)
{
    vesta_safetensors *st = st_new(name, err);
    if (st == NULL)
        return NULL;
    static const uint8_t empty[1];
    st->base = data ? data : empty;
    st->size = data ? len : 0;
    if (parse(st, err) != VESTA_OK) {
        vesta_safetensors_close(st);
        return NULL;
    }
    return st;
}

vesta_safetensors *vesta_safetensors_open(const char *path, vesta_error *err)
{
    size_t size;
    void *map = vesta_fmt_map_file(path, &size, err);
    if (map == NULL)
        return NULL;
    vesta_safetensors *st = st_new(path, err);
    if (st == NULL) {
        vesta_fmt_unmap(map, size);
        return NULL;
    }
    st->base = map;
    st->size = size;
    st->mapped = true;
    if (parse(st, err) != VESTA_OK) {
        vesta_safetensors_close(st);
        return NULL;
    }
    return st;
}

void vesta_safetensors_close(vesta_safetensors *st)
{
    if (st == NULL)
        return;
    if (st->tensors != NULL)
        for (size_t i = 0; i < st->n_tensors; i++)
            free((char *)st->tensors[i].name);
    free(st->tensors);
    vesta_fmt_index_free(&st->index);
    if (st->mapped)
        vesta_fmt_unmap((void *)st->base, st->size);
    free(st->path);
    free(st);
}

const char *vesta_safetensors_path(const vesta_safetensors *st)
{
    return st ? st->path : NULL;
}

size_t vesta_safetensors_tensor_count(const vesta_safetensors *st)
{
    return st ? st->n_tensors : 0;
}

const vesta_safetensors_tensor *vesta_safetensors_tensor_at(const vesta_safetensors *st, size_t i)
{
    if (st == NULL || i >= st->n_tensors)
        return NULL;
    return &st->tensors[i];
}

const vesta_safetensors_tensor *vesta_safetensors_find(const vesta_safetensors *st, const char *name)
{
    if (st == NULL || name == NULL)
        return NULL;
    uint64_t i;
    if (!vesta_fmt_index_find(&st->index, name, strlen(name), &i))
        return NULL;
    return &st->tensors[i];
}
