/* The GEMM tuning cache file (worker/backend_cuda/gemm_cache.c): a saved cache loads back equal
 * (through a directory it creates); a missing file is an empty cache; another GPU's or cuBLAS's
 * file is well-formed but not used; every malformed field is refused with an error naming it,
 * the file, and leaving the cache empty; put replaces by shape and stops at the cap; the default
 * path follows VESTA_GEMM_CACHE, XDG_CACHE_HOME and HOME. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../vesta_test.h"
#include "gemm_cache.h"

#define DEV "NVIDIA H100 80GB HBM3, 132 SMs, sm_90"

static vesta_gemm_cache *fresh(const char *dev, uint64_t ver)
{
    vesta_gemm_cache *c = malloc(sizeof *c);
    vesta_gemm_cache_init(c, dev, ver);
    return c;
}

static vesta_gemm_cache_entry entry(int n, int in, int out, bool f32, bool lt, uint64_t seed)
{
    vesta_gemm_cache_entry e = {.n = n, .in = in, .out = out, .f32 = f32, .use_lt = lt};
    for (int w = 0; lt && w < VESTA_GEMM_CACHE_ALGO_WORDS; w++) e.algo[w] = seed * 0x9e3779b97f4a7c15ULL + w;
    return e;
}

static bool same_entry(const vesta_gemm_cache_entry *a, const vesta_gemm_cache_entry *b)
{
    return a->n == b->n && a->in == b->in && a->out == b->out && a->f32 == b->f32 && a->use_lt == b->use_lt &&
           !memcmp(a->algo, b->algo, sizeof a->algo);
}

static void test_roundtrip(const char *dir)
{
    vesta_gemm_cache *c = fresh(DEV, 130100), *d = fresh("", 0);
    vesta_gemm_cache_entry es[3] = {entry(512, 4096, 6144, false, true, 1), entry(512, 4096, 128256, true, false, 2),
                                    entry(32, 14336, 4096, false, true, 3)};
    for (int i = 0; i < 3; i++) CHECK(vesta_gemm_cache_put(c, &es[i]));
    char path[1024];
    snprintf(path, sizeof path, "%s/new/dir/gemm.bin", dir); /* directories made on the way */
    vesta_error e = {0};
    CHECK(vesta_gemm_cache_save(c, path, &e) == VESTA_OK);
    CHECK(vesta_gemm_cache_load(d, path, DEV, 130100, &e) == VESTA_OK);
    CHECK(d->count == 3);
    for (int i = 0; i < 3 && d->count == 3; i++) {
        const vesta_gemm_cache_entry *x = vesta_gemm_cache_find(d, es[i].n, es[i].in, es[i].out, es[i].f32);
        CHECK(x && same_entry(x, &es[i]));
    }
    CHECK(!vesta_gemm_cache_find(d, 512, 4096, 6144, true)); /* fp32 output is another shape */
    /* another GPU, another cuBLAS: well-formed, not used */
    CHECK(vesta_gemm_cache_load(d, path, "NVIDIA A100-SXM4-80GB, 108 SMs, sm_80", 130100, &e) == VESTA_OK);
    CHECK(d->count == 0);
    CHECK(vesta_gemm_cache_load(d, path, DEV, 130200, &e) == VESTA_OK);
    CHECK(d->count == 0);
    /* missing: empty, no error */
    snprintf(path, sizeof path, "%s/absent.bin", dir);
    CHECK(vesta_gemm_cache_load(d, path, DEV, 130100, &e) == VESTA_OK);
    CHECK(d->count == 0);
    free(c);
    free(d);
}

/* A valid 2-entry file's bytes, mutated by f, must be refused naming `field`. */
static void refused(const char *what, void (*f)(uint8_t *buf, size_t *len), const char *field)
{
    vesta_gemm_cache *c = fresh(DEV, 7);
    vesta_gemm_cache_entry a = entry(64, 4096, 4096, false, true, 5), b = entry(128, 4096, 4096, false, false, 6);
    vesta_gemm_cache_put(c, &a);
    vesta_gemm_cache_put(c, &b);
    size_t len = vesta_gemm_cache_encoded_size(c);
    uint8_t *buf = calloc(1, len + 64);
    vesta_gemm_cache_encode(c, buf);
    vesta_gemm_cache *d = fresh(DEV, 7);
    bool other = true;
    vesta_error e = {0};
    CHECK(vesta_gemm_cache_parse(d, buf, len, &other, &e) == VESTA_OK && d->count == 2 && !other);
    f(buf, &len);
    vesta_status st = vesta_gemm_cache_parse(d, buf, len, &other, &e);
    if (st != VESTA_ERR_FORMAT || d->count != 0 || !strstr(e.msg, field)) {
        fprintf(stderr, "%s: status %d, count %d, message \"%s\" (wanted \"%s\")\n", what, st, d->count, e.msg, field);
        failures++;
    }
    free(buf);
    free(c);
    free(d);
}

static void m_magic(uint8_t *b, size_t *n) { (void)n, b[0] = 'X'; }
static void m_version(uint8_t *b, size_t *n) { (void)n, b[8] = 2; }
static void m_count_big(uint8_t *b, size_t *n) { (void)n, b[12] = 0xff, b[13] = 0xff; }
static void m_count_len(uint8_t *b, size_t *n) { (void)b, *n -= 1; }
static void m_header_short(uint8_t *b, size_t *n) { (void)b, *n = 20; }
static void m_trailing(uint8_t *b, size_t *n) { (void)b, *n += 5; }
static void m_device_nul(uint8_t *b, size_t *n) { (void)n, memset(b + 24, 'A', VESTA_GEMM_CACHE_DEVICE); }
static void m_device_pad(uint8_t *b, size_t *n) { (void)n, b[24 + VESTA_GEMM_CACHE_DEVICE - 2] = 'z'; }
static void m_shape_zero(uint8_t *b, size_t *n) { (void)n, memset(b + 152, 0, 4); }
static void m_shape_neg(uint8_t *b, size_t *n) { (void)n, b[152 + 80 + 7] = 0x80; }
static void m_flag(uint8_t *b, size_t *n) { (void)n, b[152 + 12] = 2; }
static void m_pad(uint8_t *b, size_t *n) { (void)n, b[152 + 14] = 1; }
static void m_duplicate(uint8_t *b, size_t *n) { (void)n, memcpy(b + 152 + 80, b + 152, 12); }

static void test_malformed(void)
{
    static const struct {
        const char *what;
        void (*mutate)(uint8_t *buf, size_t *len);
        const char *field; /* what the error message must name */
    } cases[] = {
        {"magic", m_magic, "magic"},
        {"version", m_version, "version"},
        {"count over the cap", m_count_big, "count"},
        {"truncated", m_count_len, "count"},
        {"short header", m_header_short, "header"},
        {"trailing bytes", m_trailing, "count"},
        {"device", m_device_nul, "device"},
        {"device padding", m_device_pad, "device: bytes after"},
        {"zero n", m_shape_zero, "entry 0"},
        {"negative in", m_shape_neg, "entry 1"},
        {"flag", m_flag, "entry 0: flags"},
        {"padding", m_pad, "entry 0: flags"},
        {"duplicate", m_duplicate, "listed twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) refused(cases[i].what, cases[i].mutate, cases[i].field);
}

static void test_load_names_file(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/garbage.bin", dir);
    FILE *f = fopen(path, "wb");
    fputs("not a cache", f);
    fclose(f);
    vesta_gemm_cache *d = fresh(DEV, 1);
    vesta_error e = {0};
    CHECK(vesta_gemm_cache_load(d, path, DEV, 1, &e) == VESTA_ERR_FORMAT);
    CHECK(strstr(e.msg, path) != NULL);
    CHECK(d->count == 0);
    free(d);
}

static void test_put(void)
{
    vesta_gemm_cache *c = fresh(DEV, 1);
    vesta_gemm_cache_entry a = entry(8, 64, 64, false, true, 1), b = entry(8, 64, 64, false, false, 0);
    CHECK(vesta_gemm_cache_put(c, &a) && vesta_gemm_cache_put(c, &b) && c->count == 1);
    CHECK(!vesta_gemm_cache_find(c, 8, 64, 64, false)->use_lt); /* replaced */
    for (int i = 1; i < VESTA_GEMM_CACHE_MAX; i++) {
        vesta_gemm_cache_entry x = entry(8 + i, 64, 64, false, false, 0);
        vesta_gemm_cache_put(c, &x);
    }
    vesta_gemm_cache_entry over = entry(1, 1, 1, false, false, 0);
    CHECK(c->count == VESTA_GEMM_CACHE_MAX && !vesta_gemm_cache_put(c, &over));
    free(c);
}

static void test_default_path(void)
{
    char p[512];
    setenv("VESTA_GEMM_CACHE", "0", 1);
    CHECK(!vesta_gemm_cache_default_path(p, sizeof p));
    setenv("VESTA_GEMM_CACHE", "", 1);
    CHECK(!vesta_gemm_cache_default_path(p, sizeof p));
    setenv("VESTA_GEMM_CACHE", "/x/y.bin", 1);
    CHECK(vesta_gemm_cache_default_path(p, sizeof p) && !strcmp(p, "/x/y.bin"));
    unsetenv("VESTA_GEMM_CACHE");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    CHECK(vesta_gemm_cache_default_path(p, sizeof p) && !strcmp(p, "/xdg/vesta/gemm-tuning.bin"));
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK(vesta_gemm_cache_default_path(p, sizeof p) && !strcmp(p, "/home/u/.cache/vesta/gemm-tuning.bin"));
    CHECK(!vesta_gemm_cache_default_path(p, 8)); /* does not fit */
    unsetenv("HOME");
    CHECK(!vesta_gemm_cache_default_path(p, sizeof p));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_gemm_cache TMPDIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    test_roundtrip(argv[1]);
    test_malformed();
    test_load_names_file(argv[1]);
    test_put();
    test_default_path();
    printf("gemm_cache: %s (%d failures)\n", failures ? "FAILED" : "ok", failures);
    return failures != 0;
}
