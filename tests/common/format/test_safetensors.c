/* safetensors reader: a hand-built file (accessors, __metadata__, offset order), the committed
 * tiny-qwen2 model (names/shapes against the golden torch state dict, every truncation point
 * fails cleanly), and malformed or hostile headers that must fail with an error naming the file
 * and, where there is one, the tensor.  Usage: test_safetensors MODELS_DIR */
#include <jansson.h>
#include <string.h>

#include "test_check.h"
#include "vesta/safetensors.h"

/* [u64 header length][header][data] in an exact-size heap buffer (ASan sees overreads). */
static uint8_t *build(const char *header, size_t data_len, size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *p = malloc(*len);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(p + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        p[8 + hl + i] = (uint8_t)i;
    return p;
}

static void expect_fail(const char *header, size_t data_len, const char *needle, int line)
{
    size_t len;
    uint8_t *p = build(header, data_len, &len);
    vesta_error err = {0};
    vesta_safetensors *st = vesta_safetensors_open_memory(p, len, "hostile.safetensors", &err);
    if (st != NULL) {
        fprintf(stderr, "line %d: hostile header opened: %s\n", line, header);
        g_failures++;
        vesta_safetensors_close(st);
    } else if (!strstr(err.msg, "hostile.safetensors") || (needle && !strstr(err.msg, needle))) {
        fprintf(stderr, "line %d: message '%s' (want '%s')\n", line, err.msg, needle);
        g_failures++;
    }
    free(p);
}
#define EXPECT_FAIL(h, n, needle) expect_fail(h, n, needle, __LINE__)

static void test_valid(void)
{
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]},"
                    "\"z\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[36,36]}}";
    size_t len;
    uint8_t *p = build(h, 36, &len);
    vesta_error err = {0};
    vesta_safetensors *st = vesta_safetensors_open_memory(p, len, "ok.safetensors", &err);
    if (st == NULL) {
        fprintf(stderr, "valid failed: %s\n", err.msg);
        exit(1);
    }
    CHECK(vesta_safetensors_tensor_count(st) == 4);
    CHECK(strcmp(vesta_safetensors_tensor_at(st, 0)->name, "a") == 0); /* offset order */
    CHECK(strcmp(vesta_safetensors_tensor_at(st, 1)->name, "b") == 0);
    CHECK(vesta_safetensors_tensor_at(st, 4) == NULL);
    const vesta_safetensors_tensor *b = vesta_safetensors_find(st, "b");
    REQUIRE(b != NULL);
    CHECK(strcmp(b->dtype, "BF16") == 0 && b->itemsize == 2 && b->ndim == 2 && b->shape[1] == 3);
    CHECK(b->nbytes == 12 && (const uint8_t *)b->data == p + len - 36 + 16);
    const vesta_safetensors_tensor *s = vesta_safetensors_find(st, "s");
    CHECK(s && s->ndim == 0 && s->nbytes == 8);
    CHECK(vesta_safetensors_find(st, "__metadata__") == NULL);
    CHECK(vesta_safetensors_find(st, "nope") == NULL);
    vesta_safetensors_close(st);
    vesta_safetensors_close(NULL);
    free(p);
}

static void test_hostile(void)
{
    EXPECT_FAIL("[]", 0, "JSON object");
    EXPECT_FAIL("{\"a\":", 0, "JSON");
    EXPECT_FAIL("{\"a\":1}", 0, "'a'");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'a'");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}",
                4, "overflows");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4,
                "overflows");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                "dimensions");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "beyond");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "needs 8");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "'a'");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8, "overlap");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8, "duplicate");
    /* header length field beyond the file, and an absurd one */
    uint8_t small[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    vesta_error err = {0};
    CHECK(vesta_safetensors_open_memory(small, 10, "hostile.safetensors", &err) == NULL &&
          strstr(err.msg, "header length"));
    small[0] = 9;
    memset(small + 1, 0, 7);
    CHECK(vesta_safetensors_open_memory(small, 10, "hostile.safetensors", &err) == NULL);
    CHECK(vesta_safetensors_open_memory(small, 7, "hostile.safetensors", &err) == NULL &&
          strstr(err.msg, "truncated"));
    CHECK(vesta_safetensors_open("/nonexistent.safetensors", &err) == NULL &&
          strstr(err.msg, "/nonexistent.safetensors") && err.code == VESTA_ERR_IO);
}

static void test_real(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/models-golden.json", dir);
    json_error_t jerr;
    json_t *golden = json_load_file(path, 0, &jerr);
    REQUIRE(golden != NULL);
    json_t *tensors = json_object_get(json_object_get(golden, "tiny-qwen2"), "tensors");
    REQUIRE(tensors != NULL);
    snprintf(path, sizeof(path), "%s/tiny-qwen2/model.safetensors", dir);
    vesta_error err = {0};
    vesta_safetensors *st = vesta_safetensors_open(path, &err);
    if (st == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    /* the file stores lm_head too? (tied: transformers does not save it) */
    CHECK(vesta_safetensors_tensor_count(st) == json_object_size(tensors));
    const char *name;
    json_t *shape;
    json_object_foreach(tensors, name, shape)
    {
        const vesta_safetensors_tensor *t = vesta_safetensors_find(st, name);
        CHECKF(t != NULL, "%s", name);
        if (t == NULL)
            continue;
        CHECKF(t->ndim == (int)json_array_size(shape) && strcmp(t->dtype, "BF16") == 0, "%s", name);
        for (int d = 0; d < t->ndim; d++)
            CHECKF(t->shape[d] == json_integer_value(json_array_get(shape, d)), "%s", name);
    }
    /* truncations: every byte through the header, then strided through the data */
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *all = malloc(size);
    REQUIRE(fread(all, 1, size, f) == size);
    fclose(f);
    size_t hdr = 8 + (size_t)all[0] + ((size_t)all[1] << 8) + ((size_t)all[2] << 16);
    for (size_t cut = 0; cut < size; cut += cut < hdr + 16 ? 1 : 509) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, all, cut);
        vesta_safetensors *t = vesta_safetensors_open_memory(copy, cut, "cut.safetensors", &err);
        CHECKF(t == NULL, "truncated at %zu of %zu opened", cut, size);
        vesta_safetensors_close(t);
        free(copy);
    }
    free(all);
    vesta_safetensors_close(st);
    json_decref(golden);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    test_valid();
    test_hostile();
    test_real(argv[1]);
    return test_finish("test_safetensors");
}
