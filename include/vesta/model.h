/* Model files: a Hugging Face directory (config.json + *.safetensors [+ index]) or one GGUF file.
 * Opening mmaps the weights; tensors are exposed under their Hugging Face names and shapes
 * (row-major, weight matrices [out_features, in_features]) whatever the file format, and read
 * (dequantized, converted, optionally a row range for tensor parallelism) into caller buffers. */
#ifndef VESTA_MODEL_H
#define VESTA_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vesta_dtype {
    VESTA_DTYPE_F32 = 0,
    VESTA_DTYPE_F16,
    VESTA_DTYPE_BF16,
    VESTA_DTYPE_Q8_0, /* GGUF block quantizations: dequantized at load */
    VESTA_DTYPE_Q4_0,
    VESTA_DTYPE_Q4_1,
    VESTA_DTYPE_I32,
    VESTA_DTYPE_I64,
    VESTA_DTYPE_COUNT
} vesta_dtype;

const char *vesta_dtype_name(vesta_dtype t);

/* Rounds n float32 values into dst dtype F32, F16 or BF16 (round to nearest even) at out. */
void vesta_dtype_from_f32(vesta_dtype dst, const float *src, int64_t n, void *out);

typedef enum vesta_rope_scaling {
    VESTA_ROPE_SCALING_NONE = 0,
    VESTA_ROPE_SCALING_LINEAR,
    VESTA_ROPE_SCALING_LLAMA3,
} vesta_rope_scaling;

#define VESTA_MAX_EOS_IDS 8

/* The architecture-level configuration (Llama family as Hugging Face defines it). */
typedef struct vesta_model_config {
    char arch[32];            /* "llama", "mistral", "qwen2" (HF model_type) */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;             /* hidden_size / num_heads unless the config says otherwise */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    vesta_rope_scaling rope_scaling;
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int rope_original_max_position;
    bool tie_word_embeddings;
    bool attention_bias;      /* q/k/v projections carry a bias (Qwen2) */
    int bos_token_id;         /* -1 if none */
    int eos_token_ids[VESTA_MAX_EOS_IDS];
    int num_eos_token_ids;
    int sliding_window;       /* 0 = none */
} vesta_model_config;

/* One tensor as the file stores it; shape in Hugging Face order (outermost first). */
typedef struct vesta_tensor_info {
    const char *name;         /* Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    vesta_dtype dtype;        /* storage dtype in the file */
    int ndim;
    int64_t shape[4];
    const void *data;         /* into the mmapped file */
    size_t nbytes;            /* checked against the file's length at open */
} vesta_tensor_info;

typedef struct vesta_model_file vesta_model_file;

/* Opens path (a directory or a .gguf file), mmaps it and parses the configuration.
 * Returns NULL and fills err (naming the file and key/tensor) on any problem. */
vesta_model_file *vesta_model_file_open(const char *path, vesta_error *err);
void vesta_model_file_close(vesta_model_file *mf); /* NULL is a no-op */

const vesta_model_config *vesta_model_file_config(const vesta_model_file *mf);
const char *vesta_model_file_path(const vesta_model_file *mf);

/* Tensor lookup by Hugging Face name; NULL if absent. */
const vesta_tensor_info *vesta_model_file_find(const vesta_model_file *mf, const char *name);

/* Checks that every tensor the architecture needs is present with the shape the configuration
 * implies. Fails naming the file and tensor. */
vesta_status vesta_model_file_validate(const vesta_model_file *mf, vesta_error *err);

/* Reads rows [row_begin, row_end) of tensor `name` (a 1-D tensor has one element per row),
 * converted to dst_dtype (F32, F16 or BF16), into dst (contiguous rows of the full row length).
 * GGUF-specific layouts (Q/K rotary permutation) are undone so that the result is exactly the
 * Hugging Face tensor. */
vesta_status vesta_model_file_read_rows(const vesta_model_file *mf, const char *name,
                                        vesta_dtype dst_dtype, int64_t row_begin, int64_t row_end,
                                        void *dst, vesta_error *err);

/* Same, for a column range [col_begin, col_end) of a 2-D tensor (all rows). */
vesta_status vesta_model_file_read_cols(const vesta_model_file *mf, const char *name,
                                        vesta_dtype dst_dtype, int64_t col_begin, int64_t col_end,
                                        void *dst, vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
