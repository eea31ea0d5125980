/* The GGUF reader against gguf-py's GGUFReader: every metadata key (type, value, array samples,
 * a hash over every string of every string array) and every tensor (type, shape, size, data
 * offset, first bytes) of a real file must match the golden JSON that
 * scripts/make_test_models.py wrote from it.
 * Usage: test_gguf_golden GOLDEN.json [FILE.gguf]   (file defaults to $VESTA_MODEL) */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "test_check.h"
#include "vesta/gguf.h"

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void to_hex(const void *p, size_t n, char *out)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

static int str_eq_hex(vesta_gguf_str s, const char *hex)
{
    if (strlen(hex) != 2 * s.len)
        return 0;
    char *buf = malloc(2 * s.len + 1);
    to_hex(s.ptr, s.len, buf);
    int eq = strcmp(buf, hex) == 0;
    free(buf);
    return eq;
}

static void check_scalar(const vesta_gguf *g, const char *key, int type, json_t *v)
{
    if (type == VESTA_GGUF_BOOL) {
        bool b;
        CHECKF(vesta_gguf_get_bool(g, key, &b) && b == json_is_true(v), "%s", key);
        return;
    }
    if (type == VESTA_GGUF_FLOAT32 || type == VESTA_GGUF_FLOAT64) {
        double d;
        CHECKF(vesta_gguf_get_f64(g, key, &d) && d == json_number_value(v), "%s", key);
        return;
    }
    int64_t i;
    CHECKF(vesta_gguf_get_i64(g, key, &i) && i == json_integer_value(v), "%s", key);
    double d;
    CHECKF(vesta_gguf_get_f64(g, key, &d) && d == (double)json_integer_value(v), "%s", key);
    uint64_t u;
    CHECKF(vesta_gguf_get_u64(g, key, &u) == (i >= 0), "%s", key);
    bool b;
    CHECKF(!vesta_gguf_get_bool(g, key, &b), "%s: an integer is not a bool", key);
}

static void check_array(const vesta_gguf *g, const char *key, json_t *ent)
{
    vesta_gguf_type et;
    uint64_t count;
    REQUIRE(vesta_gguf_get_array(g, key, &et, &count));
    CHECKF(et == json_integer_value(json_object_get(ent, "elem_type")), "%s", key);
    CHECKF(count == (uint64_t)json_integer_value(json_object_get(ent, "count")), "%s", key);
    json_t *samples = json_object_get(ent, "samples");
    const char *idx;
    json_t *v;
    json_object_foreach(samples, idx, v)
    {
        uint64_t i = strtoull(idx, NULL, 10);
        if (et == VESTA_GGUF_STRING) {
            vesta_gguf_str s;
            CHECKF(vesta_gguf_array_str(g, key, i, &s) && str_eq_hex(s, json_string_value(v)),
                   "%s[%" PRIu64 "]", key, i);
        } else if (json_is_integer(v)) {
            int64_t x;
            CHECKF(vesta_gguf_array_i64(g, key, i, &x) && x == json_integer_value(v),
                   "%s[%" PRIu64 "]", key, i);
        } else {
            double x;
            CHECKF(vesta_gguf_array_f64(g, key, i, &x) && x == json_number_value(v),
                   "%s[%" PRIu64 "]", key, i);
        }
    }
    vesta_gguf_str s;
    int64_t x;
    CHECKF(!vesta_gguf_array_str(g, key, count, &s) && !vesta_gguf_array_i64(g, key, count, &x),
           "%s: index past the end must fail", key);
    json_t *hash = json_object_get(ent, "fnv1a64");
    if (hash != NULL) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (uint64_t i = 0; i < count; i++) {
            REQUIRE(vesta_gguf_array_str(g, key, i, &s));
            uint8_t len[8];
            for (int k = 0; k < 8; k++)
                len[k] = (uint8_t)(s.len >> (8 * k));
            h = fnv1a(h, len, 8);
            h = fnv1a(h, s.ptr, s.len);
        }
        char hex[17];
        snprintf(hex, sizeof(hex), "%016" PRIx64, h);
        CHECKF(strcmp(hex, json_string_value(hash)) == 0, "%s: string hash %s", key, hex);
    }
}

int main(int argc, char **argv)
{
    REQUIRE(argc >= 2);
    const char *path = argc >= 3 ? argv[2] : getenv("VESTA_MODEL");
    if (path == NULL) {
        fprintf(stderr, "VESTA_MODEL is not set (run scripts/fetch-model.sh)\n");
        return 1;
    }
    json_error_t jerr;
    json_t *golden = json_load_file(argv[1], 0, &jerr);
    if (golden == NULL) {
        fprintf(stderr, "%s: %s\n", argv[1], jerr.text);
        return 1;
    }
    vesta_error err = {0};
    vesta_gguf *g = vesta_gguf_open(path, &err);
    if (g == NULL) {
        fprintf(stderr, "open failed: %s\n", err.msg);
        return 1;
    }
    CHECK(strcmp(vesta_gguf_path(g), path) == 0);

    const char *key;
    json_t *ent;
    json_t *kvs = json_object_get(golden, "kv");
    json_object_foreach(kvs, key, ent)
    {
        CHECKF(vesta_gguf_has_key(g, key), "%s", key);
        int type = (int)json_integer_value(json_object_get(ent, "type"));
        if (type == VESTA_GGUF_ARRAY) {
            check_array(g, key, ent);
        } else if (type == VESTA_GGUF_STRING) {
            vesta_gguf_str s;
            CHECKF(vesta_gguf_get_str(g, key, &s) &&
                       str_eq_hex(s, json_string_value(json_object_get(ent, "value_hex"))),
                   "%s", key);
            int64_t i;
            CHECKF(!vesta_gguf_get_i64(g, key, &i), "%s: a string is not an integer", key);
        } else {
            check_scalar(g, key, type, json_object_get(ent, "value"));
        }
    }
    CHECK(!vesta_gguf_has_key(g, "no.such.key"));

    json_t *tensors = json_object_get(golden, "tensors");
    CHECK(vesta_gguf_tensor_count(g) == json_array_size(tensors));
    const vesta_gguf_tensor *t0 = vesta_gguf_tensor_at(g, 0);
    REQUIRE(t0 != NULL);
    int64_t off0 = json_integer_value(json_object_get(json_array_get(tensors, 0), "data_offset"));
    size_t i;
    json_t *jt;
    json_array_foreach(tensors, i, jt)
    {
        const char *name = json_string_value(json_object_get(jt, "name"));
        const vesta_gguf_tensor *t = vesta_gguf_tensor_at(g, i);
        REQUIRE(t != NULL);
        CHECKF(vesta_gguf_find_tensor(g, name) == t, "%s", name);
        CHECKF(t->name.len == strlen(name) && memcmp(t->name.ptr, name, t->name.len) == 0, "%s", name);
        CHECKF(t->ggml_type == json_integer_value(json_object_get(jt, "ggml_type")), "%s", name);
        json_t *ne = json_object_get(jt, "ne");
        CHECKF(t->n_dims == json_array_size(ne), "%s", name);
        for (size_t d = 0; d < 4; d++) {
            uint64_t want = d < json_array_size(ne) ? (uint64_t)json_integer_value(json_array_get(ne, d)) : 1;
            CHECKF(t->ne[d] == want, "%s ne[%zu]", name, d);
        }
        CHECKF(t->nbytes == (uint64_t)json_integer_value(json_object_get(jt, "nbytes")), "%s", name);
        int64_t off = json_integer_value(json_object_get(jt, "data_offset"));
        CHECKF((const char *)t->data - (const char *)t0->data == off - off0, "%s data offset", name);
        const char *head = json_string_value(json_object_get(jt, "head_hex"));
        vesta_gguf_str hs = {t->data, strlen(head) / 2};
        CHECKF(str_eq_hex(hs, head), "%s first bytes", name);
    }
    CHECK(vesta_gguf_find_tensor(g, "no.such.tensor") == NULL);
    CHECK(vesta_gguf_tensor_at(g, vesta_gguf_tensor_count(g)) == NULL);

    vesta_gguf_close(g);
    vesta_gguf_close(NULL);
    json_decref(golden);
    return test_finish("test_gguf_golden");
}
