/* The PEFT adapter reader (worker/model/lora.c) and --lora-modules parsing on hand-made inputs:
 * a minimal adapter loads with PEFT's scaling (lora_alpha / r, rsLoRA's / sqrt(r)) folded into B,
 * and every malformed, hostile or unsupported file fails with a message naming the file and the
 * key or tensor. Adapters are written into a temporary directory (argv[1]). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vesta/lora.h"
#include "vesta_test.h"

static const char *g_dir;

static vesta_model_config tiny_llama(void)
{
    vesta_model_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = 64, c.intermediate_size = 128, c.num_layers = 2, c.num_heads = 4, c.num_kv_heads = 2;
    c.head_dim = 16, c.vocab_size = 256;
    return c;
}

/* One F32 tensor of the safetensors file being built. */
typedef struct tensor {
    const char *name, *dtype;
    int rows, cols;
    float value;
} tensor;

static void write_safetensors(const char *path, const tensor *ts, int n)
{
    char header[8192];
    size_t off = 0, len = 0;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)ts[i].rows * ts[i].cols * 4;
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],"
                                "\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "", ts[i].name, ts[i].dtype, ts[i].rows, ts[i].cols, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    FILE *f = fopen(path, "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(header, 1, len, f);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < ts[i].rows * ts[i].cols; k++) fwrite(&ts[i].value, 4, 1, f);
    fclose(f);
}

/* Writes adapter `name` (config text, tensors) and loads it; NULL and err on failure. */
static vesta_lora_adapter *make(const char *name, const char *cfg, const tensor *ts, int n, int max_rank,
                                vesta_error *err)
{
    vesta_lora_spec spec = {0};
    snprintf(spec.name, sizeof spec.name, "%s", name);
    snprintf(spec.path, sizeof spec.path, "%s/%s", g_dir, name);
    mkdir(spec.path, 0755);
    char p[1200];
    snprintf(p, sizeof p, "%s/adapter_config.json", spec.path);
    if (cfg) {
        FILE *f = fopen(p, "w");
        fputs(cfg, f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", spec.path);
    if (ts) write_safetensors(p, ts, n);
    const vesta_model_config c = tiny_llama();
    memset(err, 0, sizeof *err);
    return vesta_lora_adapter_load(&spec, &c, max_rank, err);
}

#define Q0A "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
#define Q0B "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
#define Q1A "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"
#define Q1B "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
#define CFG(extra) "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]" extra "}"

static const tensor good[] = {
    {Q0A, "F32", 4, 64, 0.5f}, {Q0B, "F32", 64, 4, 1.0f}, {Q1A, "F32", 4, 64, 0.5f}, {Q1B, "F32", 64, 4, 1.0f}};

/* The load fails and the message holds both needles. */
static void bad(const char *name, const char *cfg, const tensor *ts, int n, const char *n1, const char *n2)
{
    vesta_error err;
    vesta_lora_adapter *ad = make(name, cfg, ts, n, 16, &err);
    CHECK(ad == NULL);
    CHECK(strstr(err.msg, n1) != NULL && (!n2 || strstr(err.msg, n2) != NULL));
    if (ad || !strstr(err.msg, n1) || (n2 && !strstr(err.msg, n2)))
        fprintf(stderr, "  %s: '%s' (wanted '%s' and '%s')\n", name, err.msg, n1, n2 ? n2 : "");
    vesta_lora_adapter_release(ad);
}

static void test_good(void)
{
    vesta_error err;
    vesta_lora_adapter *ad = make("good", CFG(""), good, 4, 16, &err);
    CHECK(ad != NULL);
    if (!ad) {
        fprintf(stderr, "  good: %s\n", err.msg);
        return;
    }
    CHECK(ad->rank == 4 && fabsf(ad->scaling - 2.0f) < 1e-6f && ad->targets == 1u << VESTA_LORA_Q);
    CHECK(ad->a[1][VESTA_LORA_Q][0] == 0.5f && ad->b[1][VESTA_LORA_Q][255] == 2.0f); /* B x scaling */
    CHECK(ad->a[0][VESTA_LORA_K] == NULL && ad->b[1][VESTA_LORA_DOWN] == NULL);
    vesta_lora_adapter_release(ad);
    ad = make("rslora", CFG(", \"use_rslora\": true"), good, 4, 16, &err);
    CHECK(ad && fabsf(ad->scaling - 4.0f) < 1e-6f); /* 8 / sqrt(4) */
    vesta_lora_adapter_release(ad);
    /* the regex form, and PEFT's default lora_alpha (8) */
    ad = make("regex",
              "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"model\\\\.layers\\\\.[01]\\\\..*q_proj\"}",
              good, 4, 16, &err);
    CHECK(ad && fabsf(ad->scaling - 2.0f) < 1e-6f);
    if (!ad) fprintf(stderr, "  regex: %s\n", err.msg);
    vesta_lora_adapter_release(ad);
    vesta_lora_adapter_release(NULL);
}

static void test_bad(void)
{
    bad("missing", NULL, NULL, 0, "adapter_config.json", "missing");
    bad("notjson", "{\"r\": 4,", good, 4, "adapter_config.json", NULL);
    bad("ia3", "{\"peft_type\": \"IA3\", \"r\": 4, \"target_modules\": [\"q_proj\"]}", good, 4, "peft_type", NULL);
    bad("rank0", "{\"peft_type\": \"LORA\", \"r\": 0, \"target_modules\": [\"q_proj\"]}", good, 4, "'r'", NULL);
    bad("rankbig", "{\"peft_type\": \"LORA\", \"r\": 32, \"target_modules\": [\"q_proj\"]}", good, 4, "'r'", "16");
    bad("dora", CFG(", \"use_dora\": true"), good, 4, "use_dora", NULL);
    bad("bias", CFG(", \"bias\": \"all\""), good, 4, "'bias'", NULL);
    bad("save", CFG(", \"modules_to_save\": [\"lm_head\"]"), good, 4, "modules_to_save", NULL);
    bad("lmhead", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"lm_head\"]}", good, 4, "lm_head",
        "not supported");
    bad("nomatch", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"c_attn\"]}", good, 4, "c_attn",
        "matches no module");
    bad("badregex", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"(\"}", good, 4, "regular expression",
        NULL);
    bad("alpha", CFG(", \"lora_alpha\": \"x\""), good, 4, "lora_alpha", NULL);
    bad("noweights", CFG(""), NULL, 0, "adapter_model.safetensors", "missing");
    const tensor shape[] = {
        {Q0A, "F32", 4, 63, 0.f}, {Q0B, "F32", 64, 4, 0.f}, {Q1A, "F32", 4, 64, 0.f}, {Q1B, "F32", 64, 4, 0.f}};
    bad("shape", CFG(""), shape, 4, Q0A, "shape");
    bad("missingB", CFG(""), good, 3, "missing tensor", Q1B);
    const tensor extra[] = {{Q0A, "F32", 4, 64, 0.f},
                            {Q0B, "F32", 64, 4, 0.f},
                            {Q1A, "F32", 4, 64, 0.f},
                            {Q1B, "F32", 64, 4, 0.f},
                            {"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", "F32", 4, 64, 0.f}};
    bad("untargeted", CFG(""), extra, 5, "k_proj.lora_A", "not in target_modules");
    const tensor layer[] = {{Q0A, "F32", 4, 64, 0.f},
                            {Q0B, "F32", 64, 4, 0.f},
                            {Q1A, "F32", 4, 64, 0.f},
                            {Q1B, "F32", 64, 4, 0.f},
                            {"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "F32", 4, 64, 0.f}};
    bad("layer", CFG(""), layer, 5, "layers.7", "not a LoRA weight");
    const tensor dtype[] = {
        {Q0A, "I32", 4, 64, 0.f}, {Q0B, "F32", 64, 4, 0.f}, {Q1A, "F32", 4, 64, 0.f}, {Q1B, "F32", 64, 4, 0.f}};
    bad("dtype", CFG(""), dtype, 4, Q0A, "I32");
    /* a pickle where safetensors should be */
    char p[1200];
    snprintf(p, sizeof p, "%s/pickle", g_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/pickle/adapter_model.bin", g_dir);
    FILE *f = fopen(p, "w");
    fputs("not read", f);
    fclose(f);
    bad("pickle", CFG(""), NULL, 0, "adapter_model.bin", "safetensors");
}

static void test_specs(void)
{
    vesta_lora_spec s;
    vesta_error err = {0};
    CHECK(vesta_lora_spec_parse("sql=/adapters/sql", &s, &err) == VESTA_OK && !strcmp(s.name, "sql") &&
          !strcmp(s.path, "/adapters/sql"));
    CHECK(vesta_lora_spec_parse("{\"name\": \"chat\", \"path\": \"/a/b=c\", \"base_model_name\": \"m\"}", &s, &err) ==
              VESTA_OK &&
          !strcmp(s.name, "chat") && !strcmp(s.path, "/a/b=c"));
    CHECK(vesta_lora_spec_parse("sql", &s, &err) == VESTA_ERR_INVALID_ARG && strstr(err.msg, "name=path"));
    CHECK(vesta_lora_spec_parse("=/x", &s, &err) == VESTA_ERR_INVALID_ARG && strstr(err.msg, "empty"));
    CHECK(vesta_lora_spec_parse("a b=/x", &s, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_lora_spec_parse("{\"name\": 1, \"path\": \"/x\"}", &s, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_lora_spec_parse("{\"name\": \"a\"", &s, &err) == VESTA_ERR_INVALID_ARG);
    /* a NUL inside a JSON name or path would cut it short: jansson refuses "\u0000" (no JSON_ALLOW_NUL) */
    CHECK(vesta_lora_spec_parse("{\"name\": \"a\\u0000b\", \"path\": \"/x\"}", &s, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_lora_spec_parse("{\"name\": \"a\", \"path\": \"/x\\u0000y\"}", &s, &err) == VESTA_ERR_INVALID_ARG);
    char longname[300];
    memset(longname, 'a', 200);
    strcpy(longname + 200, "=/x");
    CHECK(vesta_lora_spec_parse(longname, &s, &err) == VESTA_ERR_INVALID_ARG && strstr(err.msg, "longer"));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TMPDIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    mkdir(g_dir, 0755);
    test_good();
    test_bad();
    test_specs();
    if (failures)
        fprintf(stderr, "%d checks failed\n", failures);
    else
        printf("lora load tests passed\n");
    return failures ? 1 : 0;
}
