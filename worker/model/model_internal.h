/* Private to vesta_model: the opened model file and its tensor table. */
#ifndef VESTA_MODEL_INTERNAL_H
#define VESTA_MODEL_INTERNAL_H

#include "format_util.h"
#include "vesta/gguf.h"
#include "vesta/model.h"
#include "vesta/safetensors.h"

typedef struct mf_tensor {
    vesta_tensor_info info; /* info.name is owned (malloc) */
    const char *file;       /* path of the file holding it, for error messages */
    int64_t row_len;        /* elements per storage row (GGUF ne[0] / safetensors last dim) */
    int64_t n_rows;         /* storage rows: product of the other dimensions */
    int permute_heads;      /* > 0: llama.cpp rotary row permutation over this many heads */
} mf_tensor;

struct vesta_model_file {
    char *path;
    vesta_model_config config;
    vesta_gguf *gguf;
    vesta_safetensors **shards;
    size_t n_shards;
    mf_tensor *tensors;
    size_t n_tensors;
    vesta_fmt_index index;
};

/* config.json (+ generation_config.json) of a Hugging Face directory. */
vesta_status vesta_model_config_from_hf(const char *dir, vesta_model_config *c, vesta_error *err);
/* GGUF metadata; tensors are consulted for vocab size and tied embeddings. */
vesta_status vesta_model_config_from_gguf(const vesta_gguf *g, vesta_model_config *c,
                                          vesta_error *err);
/* Range and consistency checks shared by both sources; `src` names the file in errors. */
vesta_status vesta_model_config_check(const vesta_model_config *c, const char *src, vesta_error *err);

/* Bytes per storage row of `n` elements of dtype t (block types: n must be a whole number of
 * blocks); 0 if not a whole number of blocks. */
uint64_t vesta_model_row_bytes(vesta_dtype t, int64_t n);

/* Converts n elements of one storage row of dtype t (F32, F16, BF16 or a whole number of blocks
 * of a block type) to float32. */
void vesta_model_decode_f32(vesta_dtype t, const void *row, int64_t n, float *out);

#endif
