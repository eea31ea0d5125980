/* GGUF reader on synthetic files: accessor semantics on a well-formed file, then malformed and
 * hostile variants (truncations at every byte, corrupt counts, lengths, types, shapes, offsets)
 * that must each fail with an error naming the file, never crash (run under ASan/UBSan). */
#include <string.h>

#include "gguf_builder.h"
#include "test_check.h"
#include "vesta/gguf.h"

/* Opens from an exact-size heap copy so that ASan sees any read past the end. */
static vesta_gguf *open_copy(const uint8_t *p, size_t n, vesta_error *err, uint8_t **copy)
{
    *copy = malloc(n ? n : 1);
    memcpy(*copy, p, n);
    return vesta_gguf_open_memory(*copy, n, "synthetic.gguf", err);
}

static int opens(const gb_buf *b, vesta_error *err)
{
    uint8_t *copy;
    vesta_gguf *g = open_copy(b->p, b->n, err, &copy);
    int ok = g != NULL;
    vesta_gguf_close(g);
    free(copy);
    return ok;
}

/* expect failure with a message naming the file and containing `needle` */
static void expect_fail(const gb_buf *b, const char *needle, int line)
{
    vesta_error err = {0};
    if (opens(b, &err)) {
        fprintf(stderr, "line %d: hostile file opened\n", line);
        g_failures++;
        return;
    }
    if (strstr(err.msg, "synthetic.gguf") == NULL || (needle && strstr(err.msg, needle) == NULL)) {
        fprintf(stderr, "line %d: unexpected message '%s' (want '%s')\n", line, err.msg, needle);
        g_failures++;
    }
}
#define EXPECT_FAIL(b, needle) expect_fail(b, needle, __LINE__)

/* A valid file: 8 KVs of varied types (incl. nested arrays) and two tensors. */
static void build_valid(gb_buf *b, uint32_t alignment)
{
    gb_header(b, 3, 2, 9);
    gb_kv_str(b, "general.architecture", "llama");
    gb_kv_u32(b, "general.alignment", alignment);
    gb_str(b, "k.i8");
    gb_u32(b, 1);
    gb_u8(b, 0xff); /* -1 */
    gb_str(b, "k.u64");
    gb_u32(b, 10);
    gb_u64(b, UINT64_MAX);
    gb_str(b, "k.f32");
    gb_u32(b, 6);
    float f = 1.5f;
    gb_put(b, &f, 4);
    gb_str(b, "k.bool");
    gb_u32(b, 7);
    gb_u8(b, 1);
    gb_str(b, "k.strs"); /* array of 3 strings */
    gb_u32(b, 9);
    gb_u32(b, 8);
    gb_u64(b, 3);
    gb_str(b, "a");
    gb_str(b, "");
    gb_str(b, "ccc");
    gb_str(b, "k.i32s"); /* array of int32 */
    gb_u32(b, 9);
    gb_u32(b, 5);
    gb_u64(b, 2);
    gb_u32(b, (uint32_t)-7);
    gb_u32(b, 42);
    gb_str(b, "k.nested"); /* array of 2 arrays of uint8 */
    gb_u32(b, 9);
    gb_u32(b, 9);
    gb_u64(b, 2);
    gb_u32(b, 0);
    gb_u64(b, 1);
    gb_u8(b, 5);
    gb_u32(b, 0);
    gb_u64(b, 0);
    uint64_t ne1[2] = {4, 2}, ne2[1] = {32};
    gb_tensor(b, "w", 2, ne1, 0, 0);                   /* F32 4x2 = 32 bytes */
    gb_tensor(b, "q", 1, ne2, 2, alignment > 32 ? alignment : 32); /* Q4_0 one block = 18 bytes */
    gb_pad(b, alignment);
    for (int i = 0; i < 8; i++) {
        float v = (float)i;
        gb_put(b, &v, 4);
    }
    gb_pad(b, alignment);
    for (int i = 0; i < 18; i++)
        gb_u8(b, (uint8_t)i);
}

static void test_valid(void)
{
    gb_buf b = {0};
    build_valid(&b, 64);
    vesta_error err = {0};
    uint8_t *copy;
    vesta_gguf *g = open_copy(b.p, b.n, &err, &copy);
    if (g == NULL) {
        fprintf(stderr, "valid file failed: %s\n", err.msg);
        exit(1);
    }
    vesta_gguf_str s;
    CHECK(vesta_gguf_get_str(g, "general.architecture", &s) && s.len == 5 && !memcmp(s.ptr, "llama", 5));
    int64_t i64;
    uint64_t u64;
    double d;
    bool bl;
    CHECK(vesta_gguf_get_i64(g, "k.i8", &i64) && i64 == -1);
    CHECK(!vesta_gguf_get_u64(g, "k.i8", &u64));
    CHECK(vesta_gguf_get_u64(g, "k.u64", &u64) && u64 == UINT64_MAX);
    CHECK(!vesta_gguf_get_i64(g, "k.u64", &i64));
    CHECK(vesta_gguf_get_f64(g, "k.f32", &d) && d == 1.5);
    CHECK(!vesta_gguf_get_i64(g, "k.f32", &i64));
    CHECK(vesta_gguf_get_bool(g, "k.bool", &bl) && bl);
    CHECK(!vesta_gguf_get_str(g, "k.bool", &s));
    vesta_gguf_type et;
    uint64_t n;
    CHECK(vesta_gguf_get_array(g, "k.strs", &et, &n) && et == VESTA_GGUF_STRING && n == 3);
    CHECK(vesta_gguf_array_str(g, "k.strs", 2, &s) && s.len == 3 && !memcmp(s.ptr, "ccc", 3));
    CHECK(vesta_gguf_array_str(g, "k.strs", 1, &s) && s.len == 0);
    CHECK(!vesta_gguf_array_str(g, "k.strs", 3, &s));
    CHECK(!vesta_gguf_array_i64(g, "k.strs", 0, &i64));
    CHECK(vesta_gguf_array_i64(g, "k.i32s", 0, &i64) && i64 == -7);
    CHECK(vesta_gguf_array_f64(g, "k.i32s", 1, &d) && d == 42.0);
    CHECK(!vesta_gguf_array_str(g, "k.i32s", 0, &s));
    CHECK(vesta_gguf_get_array(g, "k.nested", &et, &n) && et == VESTA_GGUF_ARRAY && n == 2);
    CHECK(!vesta_gguf_array_i64(g, "k.nested", 0, &i64));
    CHECK(!vesta_gguf_get_array(g, "k.bool", &et, &n));
    CHECK(vesta_gguf_tensor_count(g) == 2);
    const vesta_gguf_tensor *w = vesta_gguf_find_tensor(g, "w"), *q = vesta_gguf_find_tensor(g, "q");
    REQUIRE(w && q);
    CHECK(w->nbytes == 32 && w->n_dims == 2 && w->ne[0] == 4 && w->ne[1] == 2 && w->ne[2] == 1);
    CHECK(q->nbytes == 18 && q->ggml_type == 2);
    float v;
    memcpy(&v, (const uint8_t *)w->data + 12, 4);
    CHECK(v == 3.0f);
    CHECK(((const uint8_t *)q->data)[17] == 17);
    CHECK((size_t)((const uint8_t *)w->data - copy) % 64 == 0);
    vesta_gguf_close(g);
    free(copy);

    /* Truncation at every byte must fail cleanly (the tensor data end is the last byte). */
    for (size_t cut = 0; cut < b.n; cut++) {
        gb_buf t = {b.p, cut, cut};
        vesta_error e = {0};
        if (opens(&t, &e)) {
            fprintf(stderr, "truncated at %zu of %zu opened\n", cut, b.n);
            g_failures++;
        }
    }
    /* Every single-byte corruption must not crash (it may or may not be detected). */
    for (size_t pos = 0; pos < b.n; pos++) {
        for (int delta = 1; delta < 256; delta += 127) {
            b.p[pos] ^= (uint8_t)delta;
            vesta_error e = {0};
            (void)opens(&b, &e);
            b.p[pos] ^= (uint8_t)delta;
        }
    }
    free(b.p);
}

static void test_hostile(void)
{
    gb_buf b = {0};
    vesta_error err;

    gb_put(&b, "GGUX", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 0);
    gb_u64(&b, 0);
    EXPECT_FAIL(&b, "magic");

    b.n = 0;
    gb_header(&b, 2, 0, 0);
    EXPECT_FAIL(&b, "version 2");

    b.n = 0;
    gb_header(&b, 3, 0, 0);
    err.code = VESTA_OK;
    CHECK(opens(&b, &err)); /* empty but valid */

    b.n = 0;
    gb_header(&b, 3, 0, UINT64_MAX);
    EXPECT_FAIL(&b, "metadata count");

    b.n = 0;
    gb_header(&b, 3, (uint64_t)1 << 60, 0);
    EXPECT_FAIL(&b, "tensor count");

    b.n = 0; /* key length beyond the file */
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 1000);
    gb_put(&b, "abcdefghijklmnop", 16);
    EXPECT_FAIL(&b, "key");

    b.n = 0; /* string value length huge */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "s");
    gb_u32(&b, 8);
    gb_u64(&b, UINT64_MAX - 3);
    EXPECT_FAIL(&b, "key 's'");

    b.n = 0; /* unknown value type */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "t");
    gb_u32(&b, 13);
    gb_u32(&b, 0);
    EXPECT_FAIL(&b, "unknown value type 13");

    b.n = 0; /* array count * elem size overflows */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, 9);
    gb_u32(&b, 10);
    gb_u64(&b, (UINT64_MAX / 8) + 2);
    gb_u64(&b, 0);
    EXPECT_FAIL(&b, "key 'a'");

    b.n = 0; /* array of strings with a huge count */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, 9);
    gb_u32(&b, 8);
    gb_u64(&b, UINT64_MAX);
    gb_str(&b, "x");
    EXPECT_FAIL(&b, "key 'a'");

    b.n = 0; /* arrays nested 20 deep */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "deep");
    gb_u32(&b, 9);
    for (int i = 0; i < 20; i++) {
        gb_u32(&b, 9);
        gb_u64(&b, 1);
    }
    gb_u32(&b, 0);
    gb_u64(&b, 0);
    EXPECT_FAIL(&b, "nested");

    b.n = 0; /* duplicate key */
    gb_header(&b, 3, 0, 2);
    gb_kv_u32(&b, "x", 1);
    gb_kv_u32(&b, "x", 2);
    EXPECT_FAIL(&b, "duplicate metadata key 'x'");

    uint64_t ne[5] = {4, 2, 1, 1, 1};
    struct {
        uint32_t align_type, align;
        uint32_t n_dims;
        uint64_t ne0, ne1;
        uint32_t type;
        uint64_t offset;
        const char *needle;
    } cases[] = {
        {4, 0, 2, 4, 2, 0, 0, "alignment"},
        {4, 48, 2, 4, 2, 0, 0, "alignment"},
        {5, 32, 2, 4, 2, 0, 0, "alignment"},                 /* int32 instead of uint32 */
        {4, 32, 5, 4, 2, 0, 0, "n_dims 5"},
        {4, 32, 0, 4, 2, 0, 0, "n_dims 0"},
        {4, 32, 2, (uint64_t)1 << 40, (uint64_t)1 << 40, 0, 0, "'w'"}, /* bytes overflow */
        {4, 32, 2, UINT64_MAX, 1, 0, 0, "'w'"},
        {4, 32, 2, 4, 2, 100, 0, "unknown ggml type 100"},
        {4, 32, 2, 4, 2, 4, 0, "unknown ggml type 4"},         /* removed Q4_2 */
        {4, 32, 2, 4, 2, 2, 0, "block size"},                 /* Q4_0 needs 32 per row */
        {4, 32, 2, 4, 2, 0, 16, "not aligned"},
        {4, 32, 2, 4, 2, 0, 64, "outside the file"},
        {4, 32, 2, 4, 2, 0, (uint64_t)1 << 63, "outside the file"},
        {4, 32, 2, 64, 64, 0, 0, "outside the file"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        b.n = 0;
        gb_header(&b, 3, 1, 1);
        gb_str(&b, "general.alignment");
        gb_u32(&b, cases[c].align_type);
        gb_u32(&b, cases[c].align);
        ne[0] = cases[c].ne0;
        ne[1] = cases[c].ne1;
        gb_tensor(&b, "w", cases[c].n_dims, ne, cases[c].type, cases[c].offset);
        gb_pad(&b, 32);
        for (int i = 0; i < 32; i++)
            gb_u8(&b, 0);
        EXPECT_FAIL(&b, cases[c].needle);
    }

    b.n = 0; /* duplicate tensor */
    ne[0] = 4;
    ne[1] = 2;
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "w", 2, ne, 0, 0);
    gb_tensor(&b, "w", 2, ne, 0, 0);
    gb_pad(&b, 32);
    for (int i = 0; i < 32; i++)
        gb_u8(&b, 0);
    EXPECT_FAIL(&b, "duplicate tensor name 'w'");

    free(b.p);

    vesta_error e = {0};
    CHECK(vesta_gguf_open("/nonexistent/x.gguf", &e) == NULL && strstr(e.msg, "/nonexistent/x.gguf"));
    CHECK(vesta_gguf_open("/tmp", &e) == NULL && strstr(e.msg, "/tmp"));
    CHECK(vesta_gguf_open_memory(NULL, 0, "synthetic.gguf", &e) == NULL);
}

int main(void)
{
    test_valid();
    test_hostile();
    return test_finish("test_gguf_hostile");
}
