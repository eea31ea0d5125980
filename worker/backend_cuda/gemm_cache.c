/* The GEMM tuning cache file (gemm_cache.h has the format). */
#include "gemm_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'V', 'S', 'T', 'G', 'E', 'M', 'M', '\0'};
#define VERSION 1u
#define HEADER (8 + 4 + 4 + 8 + VESTA_GEMM_CACHE_DEVICE)
#define ENTRY (12 + 4 + 8 * VESTA_GEMM_CACHE_ALGO_WORDS)
#define DIM_MAX (1 << 24)

static uint64_t rd(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void wr(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++, v >>= 8) p[i] = (uint8_t)v;
}

void vesta_gemm_cache_init(vesta_gemm_cache *c, const char *device, uint64_t lib_version)
{
    memset(c->device, 0, sizeof c->device);
    snprintf(c->device, sizeof c->device, "%s", device ? device : "");
    c->lib_version = lib_version;
    c->count = 0;
}

static vesta_status parse_entry(vesta_gemm_cache_entry *e, const uint8_t *p, int i, vesta_error *err)
{
    e->n = (int32_t)rd(p, 4);
    e->in = (int32_t)rd(p + 4, 4);
    e->out = (int32_t)rd(p + 8, 4);
    if (e->n < 1 || e->n > DIM_MAX || e->in < 1 || e->in > DIM_MAX || e->out < 1 || e->out > DIM_MAX)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "entry %d: shape %d x %d x %d out of range (1..%d)", i, e->n,
                               e->in, e->out, DIM_MAX);
    if (p[12] > 1 || p[13] > 1 || p[14] || p[15])
        return vesta_error_set(err, VESTA_ERR_FORMAT, "entry %d: flags f32 %u / use_lt %u / padding not 0 or 1", i,
                               p[12], p[13]);
    e->f32 = p[12];
    e->use_lt = p[13];
    for (int w = 0; w < VESTA_GEMM_CACHE_ALGO_WORDS; w++) e->algo[w] = rd(p + 16 + 8 * w, 8);
    return VESTA_OK;
}

vesta_status vesta_gemm_cache_parse(vesta_gemm_cache *c, const uint8_t *buf, size_t len, bool *other, vesta_error *err)
{
    char device[VESTA_GEMM_CACHE_DEVICE];
    const uint64_t want_version = c->lib_version;
    memcpy(device, c->device, sizeof device);
    *other = false;
    c->count = 0;
    if (len < HEADER) return vesta_error_set(err, VESTA_ERR_FORMAT, "header: %zu bytes, %d needed", len, HEADER);
    if (memcmp(buf, MAGIC, sizeof MAGIC))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "magic: not a Vesta GEMM cache");
    uint32_t version = (uint32_t)rd(buf + 8, 4), count = (uint32_t)rd(buf + 12, 4);
    if (version != VERSION)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "version: %u (this build reads %u)", version, VERSION);
    if (count > VESTA_GEMM_CACHE_MAX)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "count: %u entries (at most %d)", count, VESTA_GEMM_CACHE_MAX);
    if (len != HEADER + (size_t)count * ENTRY)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "count: %u entries need %zu bytes, the file has %zu", count,
                               HEADER + (size_t)count * ENTRY, len);
    const uint8_t *dev = buf + 24;
    const uint8_t *nul = memchr(dev, '\0', VESTA_GEMM_CACHE_DEVICE);
    if (!nul) return vesta_error_set(err, VESTA_ERR_FORMAT, "device: not NUL-terminated");
    for (const uint8_t *q = nul; q < dev + VESTA_GEMM_CACHE_DEVICE; q++)
        if (*q) return vesta_error_set(err, VESTA_ERR_FORMAT, "device: bytes after the name are not zero");
    if (rd(buf + 16, 8) != want_version || strcmp((const char *)dev, device)) {
        *other = true; /* another GPU or cuBLAS: its choices do not apply here */
        return VESTA_OK;
    }
    for (uint32_t i = 0; i < count; i++) {
        vesta_gemm_cache_entry e;
        vesta_status st = parse_entry(&e, buf + HEADER + (size_t)i * ENTRY, (int)i, err);
        if (st != VESTA_OK) {
            c->count = 0;
            return st;
        }
        if (vesta_gemm_cache_find(c, e.n, e.in, e.out, e.f32)) {
            c->count = 0;
            return vesta_error_set(err, VESTA_ERR_FORMAT, "entry %u: shape %d x %d x %d%s listed twice", i, e.n, e.in,
                                   e.out, e.f32 ? " (fp32)" : "");
        }
        c->entries[c->count++] = e;
    }
    return VESTA_OK;
}

vesta_status vesta_gemm_cache_load(vesta_gemm_cache *c, const char *path, const char *device, uint64_t lib_version,
                                   vesta_error *err)
{
    vesta_gemm_cache_init(c, device, lib_version);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return VESTA_OK;
        return vesta_error_set(err, VESTA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    size_t cap = HEADER + (size_t)VESTA_GEMM_CACHE_MAX * ENTRY + 1, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", path);
    }
    len = fread(buf, 1, cap, f); /* a file longer than any valid one fails the length check */
    bool bad_read = ferror(f);
    fclose(f);
    bool other = false;
    vesta_status st =
        bad_read ? vesta_error_set(err, VESTA_ERR_IO, "read failed") : vesta_gemm_cache_parse(c, buf, len, &other, err);
    free(buf);
    if (st != VESTA_OK) vesta_error_prefix(err, "%s", path);
    return st;
}

static vesta_status make_parent(const char *path, vesta_error *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return VESTA_OK;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) { /* mkdir -p */
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) && errno != EEXIST)
            return vesta_error_set(err, VESTA_ERR_IO, "%s: %s", dir, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0755) && errno != EEXIST) return vesta_error_set(err, VESTA_ERR_IO, "%s: %s", dir, strerror(errno));
    return VESTA_OK;
}

size_t vesta_gemm_cache_encoded_size(const vesta_gemm_cache *c)
{
    return HEADER + (size_t)(c->count > 0 ? c->count : 0) * ENTRY;
}

void vesta_gemm_cache_encode(const vesta_gemm_cache *c, uint8_t *buf)
{
    memset(buf, 0, vesta_gemm_cache_encoded_size(c));
    memcpy(buf, MAGIC, sizeof MAGIC);
    wr(buf + 8, VERSION, 4);
    wr(buf + 12, (uint64_t)c->count, 4);
    wr(buf + 16, c->lib_version, 8);
    memcpy(buf + 24, c->device, VESTA_GEMM_CACHE_DEVICE - 1); /* the last byte stays 0 */
    for (int i = 0; i < c->count; i++) {
        const vesta_gemm_cache_entry *e = &c->entries[i];
        uint8_t *p = buf + HEADER + (size_t)i * ENTRY;
        wr(p, (uint32_t)e->n, 4);
        wr(p + 4, (uint32_t)e->in, 4);
        wr(p + 8, (uint32_t)e->out, 4);
        p[12] = e->f32;
        p[13] = e->use_lt;
        for (int w = 0; w < VESTA_GEMM_CACHE_ALGO_WORDS; w++) wr(p + 16 + 8 * w, e->algo[w], 8);
    }
}

vesta_status vesta_gemm_cache_save(const vesta_gemm_cache *c, const char *path, vesta_error *err)
{
    if (c->count < 0 || c->count > VESTA_GEMM_CACHE_MAX)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "gemm cache: count %d", c->count);
    if (make_parent(path, err) != VESTA_OK) return VESTA_ERR_IO;
    size_t len = vesta_gemm_cache_encoded_size(c);
    uint8_t *buf = malloc(len);
    if (!buf) return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: out of memory", path);
    vesta_gemm_cache_encode(c, buf);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    vesta_status st = VESTA_OK;
    if (!f) {
        st = vesta_error_set(err, VESTA_ERR_IO, "%s: %s", tmp, strerror(errno));
    } else {
        bool ok = fwrite(buf, 1, len, f) == len;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path)) {
            st = vesta_error_set(err, VESTA_ERR_IO, "%s: %s", ok ? path : tmp, strerror(errno));
            unlink(tmp);
        }
    }
    free(buf);
    return st;
}

const vesta_gemm_cache_entry *vesta_gemm_cache_find(const vesta_gemm_cache *c, int n, int in, int out, bool f32)
{
    for (int i = 0; i < c->count; i++) {
        const vesta_gemm_cache_entry *e = &c->entries[i];
        if (e->n == n && e->in == in && e->out == out && e->f32 == f32) return e;
    }
    return NULL;
}

bool vesta_gemm_cache_put(vesta_gemm_cache *c, const vesta_gemm_cache_entry *e)
{
    for (int i = 0; i < c->count; i++) {
        vesta_gemm_cache_entry *x = &c->entries[i];
        if (x->n == e->n && x->in == e->in && x->out == e->out && x->f32 == e->f32) {
            *x = *e;
            return true;
        }
    }
    if (c->count >= VESTA_GEMM_CACHE_MAX) return false;
    c->entries[c->count++] = *e;
    return true;
}

bool vesta_gemm_cache_default_path(char *out, size_t cap)
{
    const char *v = getenv("VESTA_GEMM_CACHE");
    if (v) {
        if (!*v || !strcmp(v, "0")) return false;
        return (size_t)snprintf(out, cap, "%s", v) < cap;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg)
        n = snprintf(out, cap, "%s/vesta/gemm-tuning.bin", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.cache/vesta/gemm-tuning.bin", home);
    else
        return false;
    return n > 0 && (size_t)n < cap;
}
