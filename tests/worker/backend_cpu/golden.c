#include "golden.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
