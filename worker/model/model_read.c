/* Reading tensors: dequantize / convert storage rows into F32, F16 or BF16 destinations,
 * undoing llama.cpp's rotary row permutation so callers always see the Hugging Face tensor.
 * Loads go through memcpy because safetensors and GGUF data need not be aligned. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* round to nearest even; overflow to inf; NaN stays NaN */
static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        float a;
        memcpy(&a, &ax, 4);
        /* a * 2^24 rounded to an integer gives the subnormal mantissa (RNE via rintf) */
        return (uint16_t)(sign | (uint32_t)rintf(a * 16777216.0f));
    }
    uint32_t r = ax + 0xc8000fffu + ((ax >> 13) & 1); /* rebias exponent, round half even */
    return (uint16_t)(sign | (r >> 13));
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static uint16_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Dequantizes elements [c0, c1) of one storage row into out[0 .. c1-c0). */
static void decode_span(vesta_dtype t, const uint8_t *row, int64_t c0, int64_t c1, float *out)
{
    switch (t) {
    case VESTA_DTYPE_F32:
        memcpy(out, row + c0 * 4, (size_t)(c1 - c0) * 4);
        return;
    case VESTA_DTYPE_F16:
        for (int64_t i = c0; i < c1; i++)
            out[i - c0] = f16_to_f32(ld16(row + i * 2));
        return;
    case VESTA_DTYPE_BF16:
        for (int64_t i = c0; i < c1; i++)
            out[i - c0] = bf16_to_f32(ld16(row + i * 2));
        return;
    default:
        break;
    }
    /* block formats: 32 elements per block */
    float blk[32];
    for (int64_t b = c0 / 32; b * 32 < c1; b++) {
        if (t == VESTA_DTYPE_Q8_0) {
            const uint8_t *p = row + b * 34;
            float d = f16_to_f32(ld16(p));
            for (int j = 0; j < 32; j++)
                blk[j] = d * (float)(int8_t)p[2 + j];
        } else if (t == VESTA_DTYPE_Q4_0) {
            const uint8_t *p = row + b * 18;
            float d = f16_to_f32(ld16(p));
            for (int j = 0; j < 16; j++) {
                blk[j] = d * (float)((p[2 + j] & 0x0f) - 8);
                blk[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        } else { /* Q4_1 */
            const uint8_t *p = row + b * 20;
            float d = f16_to_f32(ld16(p)), m = f16_to_f32(ld16(p + 2));
            for (int j = 0; j < 16; j++) {
                blk[j] = d * (float)(p[4 + j] & 0x0f) + m;
                blk[j + 16] = d * (float)(p[4 + j] >> 4) + m;
            }
        }
        int64_t lo = b * 32 > c0 ? b * 32 : c0, hi = b * 32 + 32 < c1 ? b * 32 + 32 : c1;
        memcpy(out + (lo - c0), blk + (lo - b * 32), (size_t)(hi - lo) * sizeof(float));
    }
}

void vesta_model_decode_f32(vesta_dtype t, const void *row, int64_t n, float *out) { decode_span(t, row, 0, n, out); }

static void encode(vesta_dtype dst, const float *src, int64_t n, void *out)
{
    if (dst == VESTA_DTYPE_F32) {
        memcpy(out, src, (size_t)n * sizeof(float));
    } else if (dst == VESTA_DTYPE_F16) {
        uint16_t *o = out;
        for (int64_t i = 0; i < n; i++)
            o[i] = f32_to_f16(src[i]);
    } else {
        uint16_t *o = out;
        for (int64_t i = 0; i < n; i++)
            o[i] = f32_to_bf16(src[i]);
    }
}

void vesta_dtype_from_f32(vesta_dtype dst, const float *src, int64_t n, void *out) { encode(dst, src, n, out); }

static size_t dtype_size(vesta_dtype t)
{
    return t == VESTA_DTYPE_F32 ? 4 : 2;
}

/* llama.cpp stores head h's row j*2+s where Hugging Face has row s*(D/2)+j (D rows per head). */
static int64_t unpermute(const mf_tensor *t, int64_t hf_row)
{
    if (t->permute_heads == 0)
        return hf_row;
    int64_t D = t->info.shape[0] / t->permute_heads, half = D / 2;
    int64_t h = hf_row / D, o = hf_row % D;
    return h * D + (o % half) * 2 + o / half;
}

static vesta_status lookup(const vesta_model_file *mf, const char *name, vesta_dtype dst_dtype,
                           const mf_tensor **out, vesta_error *err)
{
    if (mf == NULL || name == NULL)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model file or tensor name is NULL");
    uint64_t i;
    if (!vesta_fmt_index_find(&mf->index, name, strlen(name), &i))
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "%s: tensor '%s' not found", mf->path, name);
    const mf_tensor *t = &mf->tensors[i];
    if (dst_dtype != VESTA_DTYPE_F32 && dst_dtype != VESTA_DTYPE_F16 && dst_dtype != VESTA_DTYPE_BF16)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "%s: tensor '%s': destination dtype %s (need F32, F16 or BF16)",
                               t->file, name, vesta_dtype_name(dst_dtype));
    if (t->info.dtype == VESTA_DTYPE_I32 || t->info.dtype == VESTA_DTYPE_I64)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "%s: tensor '%s': integer dtype %s cannot be read as floats", t->file,
                               name, vesta_dtype_name(t->info.dtype));
    uint64_t rb = vesta_model_row_bytes(t->info.dtype, t->row_len), total;
    if ((rb == 0 && t->row_len != 0) || __builtin_mul_overflow(rb, (uint64_t)t->n_rows, &total) ||
        total > t->info.nbytes)
        return vesta_error_set(err, VESTA_ERR_FORMAT,
                               "%s: tensor '%s': %lld x %lld %s elements do not fit its %zu bytes",
                               t->file, name, (long long)t->n_rows, (long long)t->row_len,
                               vesta_dtype_name(t->info.dtype), t->info.nbytes);
    *out = t;
    return VESTA_OK;
}

vesta_status vesta_model_file_read_rows(const vesta_model_file *mf, const char *name,
                                        vesta_dtype dst_dtype, int64_t row_begin, int64_t row_end,
                                        void *dst, vesta_error *err)
{
    const mf_tensor *t;
    vesta_status st = lookup(mf, name, dst_dtype, &t, err);
    if (st != VESTA_OK)
        return st;
    bool one_d = t->info.ndim <= 1;
    int64_t rows = one_d ? t->row_len : t->n_rows;
    if (row_begin < 0 || row_end < row_begin || row_end > rows || (dst == NULL && row_end > row_begin))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)", t->file,
                               name, (long long)row_begin, (long long)row_end, (long long)rows);
    const uint8_t *base = t->info.data;
    size_t es = dtype_size(dst_dtype);
    if (one_d) {
        /* one storage row; a permuted bias is gathered element by element */
        int64_t n = row_end - row_begin;
        float *tmp = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (tmp == NULL)
            return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: tensor '%s': out of memory", t->file, name);
        if (t->permute_heads == 0) {
            decode_span(t->info.dtype, base, row_begin, row_end, tmp);
        } else {
            for (int64_t r = row_begin; r < row_end; r++) {
                int64_t s = unpermute(t, r);
                decode_span(t->info.dtype, base, s, s + 1, tmp + (r - row_begin));
            }
        }
        encode(dst_dtype, tmp, n, dst);
        free(tmp);
        return VESTA_OK;
    }
    uint64_t rb = vesta_model_row_bytes(t->info.dtype, t->row_len);
    float *tmp = malloc((size_t)(t->row_len ? t->row_len : 1) * sizeof(float));
    if (tmp == NULL)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: tensor '%s': out of memory", t->file, name);
    uint8_t *out = dst;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *row = base + (uint64_t)unpermute(t, r) * rb;
        decode_span(t->info.dtype, row, 0, t->row_len, tmp);
        encode(dst_dtype, tmp, t->row_len, out + (size_t)(r - row_begin) * (size_t)t->row_len * es);
    }
    free(tmp);
    return VESTA_OK;
}

vesta_status vesta_model_file_read_cols(const vesta_model_file *mf, const char *name,
                                        vesta_dtype dst_dtype, int64_t col_begin, int64_t col_end,
                                        void *dst, vesta_error *err)
{
    const mf_tensor *t;
    vesta_status st = lookup(mf, name, dst_dtype, &t, err);
    if (st != VESTA_OK)
        return st;
    if (t->info.ndim != 2)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "%s: tensor '%s': column reads need a 2-D tensor (it has %d dims)",
                               t->file, name, t->info.ndim);
    if (col_begin < 0 || col_end < col_begin || col_end > t->row_len ||
        (dst == NULL && col_end > col_begin && t->n_rows > 0))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "%s: tensor '%s': columns [%lld, %lld) out of range (%lld columns)",
                               t->file, name, (long long)col_begin, (long long)col_end,
                               (long long)t->row_len);
    int64_t n = col_end - col_begin;
    uint64_t rb = vesta_model_row_bytes(t->info.dtype, t->row_len);
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (tmp == NULL)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: tensor '%s': out of memory", t->file, name);
    const uint8_t *base = t->info.data;
    uint8_t *out = dst;
    size_t es = dtype_size(dst_dtype);
    for (int64_t r = 0; r < t->n_rows; r++) {
        const uint8_t *row = base + (uint64_t)unpermute(t, r) * rb;
        decode_span(t->info.dtype, row, col_begin, col_end, tmp);
        encode(dst_dtype, tmp, n, out + (size_t)r * (size_t)n * es);
    }
    free(tmp);
    return VESTA_OK;
}
