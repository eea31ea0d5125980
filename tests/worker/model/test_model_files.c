/* vesta_model on the committed tiny models (tests/models, made by scripts/make_test_models.py):
 * - configuration equals what transformers reads (models-golden.json: AutoConfig for the HF
 *   directories, transformers' GGUF loader for the .gguf files);
 * - every tensor has the Hugging Face name and shape from the torch state dict;
 * - tensor values: safetensors (written by transformers) and F32 GGUF (written by gguf-py,
 *   Q/K permuted the llama.cpp way) of the same weights read back bit-identical; the sharded
 *   directory equals the single-file one; F16/BF16 GGUFs within half-precision rounding;
 *   quantized GGUFs within each block's quantization bound of the HF weights and, for the
 *   layer-0 attention and embedding tensors, equal to gguf-py's dequantize (the .ref files);
 * - row ranges, column ranges and F16/BF16 destinations agree with the full F32 read.
 * Usage: test_model_files MODELS_DIR */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../common/format/test_check.h"
#include "vesta/model.h"

static const char *g_dir;

static vesta_model_file *open_model(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    vesta_error err = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &err);
    if (mf == NULL) {
        fprintf(stderr, "%s: open failed: %s\n", name, err.msg);
        exit(1);
    }
    return mf;
}

static float *read_all(const vesta_model_file *mf, const char *name, size_t *n)
{
    const vesta_tensor_info *t = vesta_model_file_find(mf, name);
    REQUIRE(t != NULL);
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++)
        count *= (size_t)t->shape[d];
    float *buf = malloc(count * sizeof(float) + 1);
    int64_t rows = t->ndim <= 1 ? t->shape[0] : (int64_t)(count / (size_t)t->shape[t->ndim - 1]);
    vesta_error err = {0};
    vesta_status st = vesta_model_file_read_rows(mf, name, VESTA_DTYPE_F32, 0, rows, buf, &err);
    if (st != VESTA_OK) {
        fprintf(stderr, "read %s: %s\n", name, err.msg);
        exit(1);
    }
    *n = count;
    return buf;
}

static void check_config(const vesta_model_file *mf, json_t *g, const char *model)
{
    const vesta_model_config *c = vesta_model_file_config(mf);
#define CI(field, key) CHECKF(c->field == json_integer_value(json_object_get(g, key)), "%s %s=%d", model, key, (int)c->field)
    CHECKF(strcmp(c->arch, json_string_value(json_object_get(g, "arch"))) == 0, "%s arch %s", model, c->arch);
    CI(vocab_size, "vocab_size");
    CI(hidden_size, "hidden_size");
    CI(intermediate_size, "intermediate_size");
    CI(num_layers, "num_layers");
    CI(num_heads, "num_heads");
    CI(num_kv_heads, "num_kv_heads");
    CI(head_dim, "head_dim");
    CI(max_position_embeddings, "max_position_embeddings");
    CI(bos_token_id, "bos_token_id");
    CHECKF(c->tie_word_embeddings == json_is_true(json_object_get(g, "tie_word_embeddings")), "%s tie", model);
    CHECKF(c->rms_norm_eps == (float)json_number_value(json_object_get(g, "rms_norm_eps")), "%s eps", model);
    CHECKF(c->rope_theta == (float)json_number_value(json_object_get(g, "rope_theta")), "%s theta", model);
    const char *rt = json_string_value(json_object_get(g, "rope_type"));
    vesta_rope_scaling want = strcmp(rt, "llama3") == 0   ? VESTA_ROPE_SCALING_LLAMA3
                              : strcmp(rt, "linear") == 0 ? VESTA_ROPE_SCALING_LINEAR
                                                          : VESTA_ROPE_SCALING_NONE;
    CHECKF(c->rope_scaling == want, "%s rope type", model);
    if (want == VESTA_ROPE_SCALING_LLAMA3) {
        CHECK(c->rope_factor == (float)json_number_value(json_object_get(g, "rope_factor")));
        CHECK(c->rope_low_freq_factor == (float)json_number_value(json_object_get(g, "rope_low_freq_factor")));
        CHECK(c->rope_high_freq_factor == (float)json_number_value(json_object_get(g, "rope_high_freq_factor")));
        CI(rope_original_max_position, "rope_original_max_position");
    }
    json_t *eos = json_object_get(g, "eos_token_ids");
    CHECKF(c->num_eos_token_ids == (int)json_array_size(eos), "%s eos count %d", model, c->num_eos_token_ids);
    for (size_t i = 0; i < json_array_size(eos) && i < VESTA_MAX_EOS_IDS; i++)
        CHECKF(c->eos_token_ids[i] == json_integer_value(json_array_get(eos, i)), "%s eos[%zu]", model, i);
    bool bias = strcmp(c->arch, "qwen2") == 0 || strstr(model, "-bias") != NULL;
    CHECKF(c->attention_bias == bias, "%s attention_bias", model);
#undef CI
}

static void check_shapes(const vesta_model_file *mf, json_t *tensors, const char *model)
{
    const char *name;
    json_t *shape;
    json_object_foreach(tensors, name, shape)
    {
        const vesta_tensor_info *t = vesta_model_file_find(mf, name);
        CHECKF(t != NULL, "%s: %s missing", model, name);
        if (t == NULL)
            continue;
        CHECKF(t->ndim == (int)json_array_size(shape), "%s: %s ndim", model, name);
        for (int d = 0; d < t->ndim; d++)
            CHECKF(t->shape[d] == json_integer_value(json_array_get(shape, d)), "%s: %s dim %d", model, name, d);
    }
    vesta_error err = {0};
    CHECKF(vesta_model_file_validate(mf, &err) == VESTA_OK, "%s: validate: %s", model, err.msg);
}

/* Partial reads and other destination dtypes agree with the full F32 read. */
static void check_partial(const vesta_model_file *mf, const char *name, const float *full)
{
    const vesta_tensor_info *t = vesta_model_file_find(mf, name);
    int64_t rows = t->ndim == 1 ? t->shape[0] : t->shape[0], cols = t->ndim == 1 ? 1 : t->shape[1];
    vesta_error err = {0};
    int64_t r0 = rows / 3, r1 = rows - rows / 5;
    float *buf = malloc((size_t)(rows * cols) * sizeof(float));
    REQUIRE(vesta_model_file_read_rows(mf, name, VESTA_DTYPE_F32, r0, r1, buf, &err) == VESTA_OK);
    CHECKF(memcmp(buf, full + r0 * cols, (size_t)((r1 - r0) * cols) * sizeof(float)) == 0, "%s rows", name);
    if (t->ndim == 2) {
        int64_t c0 = 5, c1 = cols - 7; /* not block aligned on purpose */
        REQUIRE(vesta_model_file_read_cols(mf, name, VESTA_DTYPE_F32, c0, c1, buf, &err) == VESTA_OK);
        int bad = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = c0; c < c1; c++)
                bad += buf[r * (c1 - c0) + (c - c0)] != full[r * cols + c];
        CHECKF(bad == 0, "%s cols: %d mismatches", name, bad);
    }
    uint16_t *h = malloc((size_t)(rows * cols) * 2);
    for (int k = 0; k < 2; k++) {
        vesta_dtype dt = k ? VESTA_DTYPE_BF16 : VESTA_DTYPE_F16;
        REQUIRE(vesta_model_file_read_rows(mf, name, dt, 0, rows, h, &err) == VESTA_OK);
        int bad = 0;
        for (int64_t i = 0; i < rows * cols; i++) {
            float v;
            if (k) {
                uint32_t b = (uint32_t)h[i] << 16;
                memcpy(&v, &b, 4);
            } else {
                /* f16 decode: independent of the library's, for normal values only */
                uint32_t e = (h[i] >> 10) & 31, m = h[i] & 1023;
                v = (e ? ldexpf(1.0f + m / 1024.0f, (int)e - 15) : ldexpf(m / 1024.0f, -14)) * (h[i] & 0x8000 ? -1 : 1);
            }
            float tol = fabsf(full[i]) * (k ? 1.0f / 256 : 1.0f / 2048) + 1e-7f;
            bad += fabsf(v - full[i]) > tol;
        }
        CHECKF(bad == 0, "%s to %s: %d values off", name, k ? "BF16" : "F16", bad);
    }
    free(h);
    free(buf);
}

static double block_bound(const char *qtype, const float *x)
{
    float mx = -INFINITY, mn = INFINITY, amax = 0;
    for (int i = 0; i < 32; i++) {
        mx = fmaxf(mx, x[i]);
        mn = fminf(mn, x[i]);
        amax = fmaxf(amax, fabsf(x[i]));
    }
    /* half a quantization step, plus slack for the f16 scale's rounding */
    if (strcmp(qtype, "Q8_0") == 0)
        return amax / 127.0 * 0.5 + amax * 2e-3;
    if (strcmp(qtype, "Q4_0") == 0) /* scale = -max/8: +max maps to 16, clipped to 15 */
        return amax / 8.0 + amax * 1e-2;
    return (mx - mn) / 15.0 * 0.5 + (fabsf(mx) + fabsf(mn)) * 1e-2;
}

/* quantized values vs the HF weights, per 32-element block of each row */
static void check_quantized(const char *qtype, const char *name, const float *q, const float *ref,
                            const vesta_tensor_info *t, const char *model)
{
    if (t->ndim != 2) {
        CHECKF(memcmp(q, ref, (size_t)t->shape[0] * 4) == 0, "%s: 1-D %s must stay F32", model, name);
        return;
    }
    int64_t n = t->shape[0] * t->shape[1];
    int bad = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        double bound = block_bound(qtype, ref + b * 32);
        for (int i = 0; i < 32; i++)
            bad += fabs((double)q[b * 32 + i] - ref[b * 32 + i]) > bound;
    }
    CHECKF(bad == 0, "%s: %s: %d values beyond the %s bound", model, name, bad, qtype);
}

/* exact gguf-py dequantized references (VREF file) */
static void check_ref_file(const vesta_model_file *mf, const char *path)
{
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    char magic[4];
    uint32_t count;
    REQUIRE(fread(magic, 1, 4, f) == 4 && memcmp(magic, "VREF", 4) == 0 && fread(&count, 4, 1, f) == 1);
    REQUIRE(count >= 3);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t nl, nd;
        char name[256];
        int64_t shape[4];
        REQUIRE(fread(&nl, 4, 1, f) == 1 && nl < sizeof(name) && fread(name, 1, nl, f) == nl);
        name[nl] = '\0';
        REQUIRE(fread(&nd, 4, 1, f) == 1 && nd <= 4 && fread(shape, 8, nd, f) == nd);
        size_t n = 1;
        for (uint32_t d = 0; d < nd; d++)
            n *= (size_t)shape[d];
        float *ref = malloc(n * 4), *got;
        REQUIRE(fread(ref, 4, n, f) == n);
        size_t gn;
        got = read_all(mf, name, &gn);
        CHECKF(gn == n, "%s: %s size", path, name);
        int bad = 0;
        for (size_t i = 0; i < n && i < gn; i++)
            bad += fabsf(got[i] - ref[i]) > 1e-6f * fabsf(ref[i]) + 1e-30f;
        CHECKF(bad == 0, "%s: %s: %d values differ from gguf-py dequantize", path, name, bad);
        free(ref);
        free(got);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    g_dir = argv[1];
    char path[1024];
    snprintf(path, sizeof(path), "%s/models-golden.json", g_dir);
    json_error_t jerr;
    json_t *golden = json_load_file(path, 0, &jerr);
    if (golden == NULL) {
        fprintf(stderr, "%s: %s\n", path, jerr.text);
        return 1;
    }
    const char *model;
    json_t *g;
    int n_models = 0;
    json_object_foreach(golden, model, g)
    {
        json_t *tensors = json_object_get(g, "tensors");
        if (tensors == NULL)
            continue; /* smollm2: checked by test_model_smollm2 */
        n_models++;
        vesta_model_file *mf = open_model(model);
        check_config(mf, json_object_get(g, "config"), model);
        check_shapes(mf, tensors, model);
        const char *base = json_string_value(json_object_get(g, "base"));
        const char *qtype = json_string_value(json_object_get(g, "ggml_type"));
        /* the reference: the HF directory of the same weights (or, for an HF directory, the
         * F32 GGUF that gguf-py wrote from the same state dict) */
        char refname[256];
        if (base != NULL)
            snprintf(refname, sizeof(refname), "%s", base);
        else if (strcmp(model, "tiny-llama-sharded") == 0)
            snprintf(refname, sizeof(refname), "tiny-llama");
        else
            snprintf(refname, sizeof(refname), "%s-f32.gguf", model);
        vesta_model_file *ref = open_model(refname);
        const char *name;
        json_t *shape;
        json_object_foreach(tensors, name, shape)
        {
            const vesta_tensor_info *t = vesta_model_file_find(mf, name);
            if (t == NULL)
                continue;
            size_t n, rn;
            float *got = read_all(mf, name, &n), *want = read_all(ref, name, &rn);
            REQUIRE(n == rn);
            if (qtype == NULL || strcmp(qtype, "F32") == 0) {
                CHECKF(memcmp(got, want, n * 4) == 0, "%s vs %s: %s differs", model, refname, name);
            } else if (strcmp(qtype, "F16") == 0 || strcmp(qtype, "BF16") == 0) {
                float rel = strcmp(qtype, "F16") == 0 ? 1.0f / 2048 : 1.0f / 256;
                int bad = 0;
                for (size_t i = 0; i < n; i++)
                    bad += fabsf(got[i] - want[i]) > fabsf(want[i]) * rel + 1e-7f;
                CHECKF(bad == 0, "%s: %s: %d values beyond %s rounding", model, name, bad, qtype);
            } else {
                check_quantized(qtype, name, got, want, t, model);
            }
            if (strstr(name, "q_proj.weight") || strstr(name, "k_proj") || strstr(name, "embed") ||
                strstr(name, "norm.weight"))
                check_partial(mf, name, got);
            free(got);
            free(want);
        }
        if (qtype != NULL && strncmp(qtype, "Q", 1) == 0) {
            char rp[1024];
            snprintf(rp, sizeof(rp), "%s/%.*s.ref", g_dir, (int)strlen(model) - 5, model);
            check_ref_file(mf, rp);
        }
        vesta_model_file_close(ref);
        vesta_model_file_close(mf);
    }
    CHECK(n_models >= 12);

    /* llama GGUF with q/k/v biases: the permuted 1-D q/k biases read back as the originals */
    const char *bias_model = "tiny-llama-bias-q8_0.gguf";
    vesta_model_file *mf = open_model(bias_model);
    check_config(mf, json_object_get(json_object_get(golden, bias_model), "config"), bias_model);
    vesta_error err = {0};
    CHECKF(vesta_model_file_validate(mf, &err) == VESTA_OK, "%s: %s", bias_model, err.msg);
    snprintf(path, sizeof(path), "%s/tiny-llama-bias-q8_0.ref", g_dir);
    check_ref_file(mf, path);
    size_t n;
    float *b = read_all(mf, "model.layers.0.self_attn.q_proj.bias", &n);
    check_partial(mf, "model.layers.0.self_attn.q_proj.bias", b);
    free(b);
    vesta_model_file_close(mf);
    json_decref(golden);
    return test_finish("test_model_files");
}
