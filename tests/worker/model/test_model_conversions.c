/* Exact dtype conversions of vesta_model_file_read_rows against numpy and torch
 * (tests/models/conversions, made by scripts/make_test_models.py): F16 -> F32 for every
 * subnormal/special half and a quarter of the rest; F32 -> F16 (numpy astype) and F32 -> BF16
 * (torch .to(bfloat16)) on ties, near-ties, subnormals, overflow, inf and NaN; BF16 -> F32.
 * Usage: test_model_conversions MODELS_DIR */
#include <string.h>

#include "../../common/format/test_check.h"
#include "vesta/model.h"

static int64_t len_of(const vesta_model_file *mf, const char *name)
{
    const vesta_tensor_info *t = vesta_model_file_find(mf, name);
    REQUIRE(t != NULL && t->ndim == 1);
    return t->shape[0];
}

/* bitwise comparison, reporting the first few differences */
static void compare(const char *what, const void *got, const void *want, int64_t n, size_t es,
                    const void *input)
{
    bool bf16 = strstr(what, "->bf16") != NULL;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp((const char *)got + i * es, (const char *)want + i * es, es) == 0)
            continue;
        uint16_t g16 = 0, w16 = 0;
        memcpy(&g16, (const char *)got + i * es, 2);
        memcpy(&w16, (const char *)want + i * es, 2);
        if (es == 2 && bf16 && (g16 & 0x7f80) == 0x7f80 && (g16 & 0x7f) && (w16 & 0x7f80) == 0x7f80 &&
            (w16 & 0x7f))
            continue; /* any NaN for NaN (torch may produce 0xffff) */
        if (bad++ < 5) {
            uint32_t g = 0, w = 0, in = 0;
            memcpy(&g, (const char *)got + i * es, es);
            memcpy(&w, (const char *)want + i * es, es);
            memcpy(&in, (const char *)input + i * 4, 4);
            fprintf(stderr, "%s[%lld]: got %#x want %#x (input bits %#x)\n", what, (long long)i, g, w, in);
        }
    }
    CHECKF(bad == 0, "%s: %d of %lld differ", what, bad, (long long)n);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    char path[1024];
    snprintf(path, sizeof(path), "%s/conversions", argv[1]);
    vesta_error err = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &err);
    if (mf == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t n16 = len_of(mf, "f16_in"), n32 = len_of(mf, "f32_in");
    REQUIRE(len_of(mf, "f16_as_f32") == n16 && len_of(mf, "f32_as_f16") == n32 && len_of(mf, "f32_as_bf16") == n32);
    float *f = malloc((size_t)(n16 > n32 ? n16 : n32) * 4);
    uint16_t *h = malloc((size_t)n32 * 2);
    const void *in16 = vesta_model_file_find(mf, "f16_in")->data;
    const void *in32 = vesta_model_file_find(mf, "f32_in")->data;

    REQUIRE(vesta_model_file_read_rows(mf, "f16_in", VESTA_DTYPE_F32, 0, n16, f, &err) == VESTA_OK);
    compare("f16->f32", f, vesta_model_file_find(mf, "f16_as_f32")->data, n16, 4, in16);
    REQUIRE(vesta_model_file_read_rows(mf, "f32_in", VESTA_DTYPE_F16, 0, n32, h, &err) == VESTA_OK);
    compare("f32->f16", h, vesta_model_file_find(mf, "f32_as_f16")->data, n32, 2, in32);
    REQUIRE(vesta_model_file_read_rows(mf, "f32_in", VESTA_DTYPE_BF16, 0, n32, h, &err) == VESTA_OK);
    compare("f32->bf16", h, vesta_model_file_find(mf, "f32_as_bf16")->data, n32, 2, in32);
    /* bf16 -> f32 is exact widening: compare with the bf16 reference's own bits << 16 */
    REQUIRE(vesta_model_file_read_rows(mf, "f32_as_bf16", VESTA_DTYPE_F32, 0, n32, f, &err) == VESTA_OK);
    uint32_t *wide = malloc((size_t)n32 * 4);
    const uint8_t *bf = vesta_model_file_find(mf, "f32_as_bf16")->data;
    for (int64_t i = 0; i < n32; i++)
        wide[i] = (uint32_t)(bf[2 * i] | (bf[2 * i + 1] << 8)) << 16;
    compare("bf16->f32", f, wide, n32, 4, in32);
    /* f16 -> f16 through the float path is the identity */
    REQUIRE(vesta_model_file_read_rows(mf, "f16_in", VESTA_DTYPE_F16, 0, n16, f, &err) == VESTA_OK);
    compare("f16->f16", f, in16, n16, 2, in16);

    vesta_error verr = {0};
    CHECK(vesta_model_file_validate(mf, &verr) != VESTA_OK); /* not a model: tensors missing */
    free(wide);
    free(h);
    free(f);
    vesta_model_file_close(mf);
    return test_finish("test_model_conversions");
}
