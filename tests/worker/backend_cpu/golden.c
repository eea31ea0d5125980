#include "golden.h"

#include "backend_cpu.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "FAIL: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

json_t *golden_json(const char *path)
{
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        fprintf(stderr, "FAIL: %s:%d: %s\n", path, je.line, je.text);
        exit(1);
    }
    return doc;
}

float *golden_logits(const char *json_path, json_t *doc, size_t *n_floats)
{
    const char *name = json_string_value(json_object_get(doc, "logits_file"));
    if (!name)
        die("%s: no logits_file", json_path);
    char path[4096];
    const char *slash = strrchr(json_path, '/');
    int dir = slash ? (int)(slash - json_path + 1) : 0;
    snprintf(path, sizeof path, "%.*s%s", dir, json_path, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *p = malloc((size_t)sz + 4);
    if (!p || fread(p, 1, (size_t)sz, f) != (size_t)sz)
        die("cannot read %s", path);
    fclose(f);
    *n_floats = (size_t)sz / 4;
    return p;
}

int32_t *golden_ids(json_t *obj, const char *key, int *n)
{
    json_t *a = json_object_get(obj, key);
    if (!json_is_array(a))
        die("golden: no array %s", key);
    *n = (int)json_array_size(a);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return ids;
}

static uint64_t fnv_file(uint64_t h, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001B3ull;
    fclose(f);
    return h;
}

static int is_safetensors(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 12 && !strcmp(d->d_name + n - 12, ".safetensors");
}

/* FNV-1a 64 of the weight files, as make_golden.py computes it. */
static uint64_t weights_hash(const char *path)
{
    uint64_t h = 0xCBF29CE484222325ull;
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return fnv_file(h, path);
    struct dirent **names;
    int n = scandir(path, &names, is_safetensors, alphasort);
    for (int i = 0; i < n; i++) {
        char f[4096 + 264];
        snprintf(f, sizeof f, "%s/%s", path, names[i]->d_name);
        h = fnv_file(h, f);
        free(names[i]);
    }
    if (n >= 0) free(names);
    return h;
}

vesta_model_file *golden_model(const char *root, const char *json_path, json_t **doc, float **logits, size_t *n_floats)
{
    *doc = golden_json(json_path);
    *logits = golden_logits(json_path, *doc, n_floats);
    char path[4096], hash[17];
    snprintf(path, sizeof path, "%s/%s", root, json_string_value(json_object_get(*doc, "model")));
    snprintf(hash, sizeof hash, "%016" PRIx64, weights_hash(path));
    const char *want = json_string_value(json_object_get(*doc, "weights_fnv1a64"));
    if (!want || strcmp(want, hash)) {
        fprintf(stderr,
                "FAIL: %s changed since its golden file was made (weights hash %s, golden %s): rerun "
                "the generator %s names\n",
                path, hash, want ? want : "none", json_path);
        exit(1);
    }
    vesta_error e = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &e);
    if (!mf) die("%s", e.msg);
    return mf;
}

vesta_backend *golden_backend(int argc, char **argv, int block_size, json_t **doc, float **logits, size_t *n_floats,
                              vesta_model_file **mf)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROOT GOLDEN.json\n", argv[0]);
        exit(2);
    }
    *mf = golden_model(argv[1], argv[2], doc, logits, n_floats);
    vesta_backend_options o;
    vesta_backend_options_init(&o);
    o.max_num_batched_tokens = GOLDEN_STEP_TOKENS;
    o.max_model_len = 256;
    o.block_size = block_size;
    o.num_threads = 0;
    vesta_error e = {0};
    vesta_backend *be = vesta_backend_cpu_create(*mf, &o, &e);
    if (!be) die("create: %s", e.msg);
    return be;
}
