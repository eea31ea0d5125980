/* LoRA adapters (PEFT format), for multi-LoRA serving: one base model, many adapters, requests of
 * different adapters in one batch (vLLM's --enable-lora / --lora-modules).
 *
 * An adapter is a directory as PEFT's save_pretrained writes it: adapter_config.json
 * (peft_type "LORA", r, lora_alpha, target_modules, use_rslora) and adapter_model.safetensors
 * (base_model.model.model.layers.N.{self_attn,mlp}.<module>.lora_{A,B}.weight, F32/F16/BF16).
 * A targeted linear layer computes y = W x + scaling * B (A x), scaling = lora_alpha / r
 * (lora_alpha / sqrt(r) with use_rslora). The seven projections of a Llama-family layer can be
 * targeted; anything else (embeddings, lm_head, DoRA, biases, modules_to_save, per-module ranks)
 * is refused at load with a message naming the file and the key or tensor. */
#ifndef VESTA_LORA_H
#define VESTA_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"
#include "vesta/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The projections an adapter may target, in the order of a layer's forward pass. */
typedef enum vesta_lora_target {
    VESTA_LORA_Q = 0,
    VESTA_LORA_K,
    VESTA_LORA_V,
    VESTA_LORA_O,
    VESTA_LORA_GATE,
    VESTA_LORA_UP,
    VESTA_LORA_DOWN,
    VESTA_LORA_NUM_TARGETS
} vesta_lora_target;

/* "q_proj", "k_proj", ... (the PEFT / Hugging Face module names). */
const char *vesta_lora_target_name(vesta_lora_target t);

/* in_features / out_features of a target's weight for config c (the whole model). */
void vesta_lora_target_dims(const vesta_model_config *c, vesta_lora_target t, int *in, int *out);

#define VESTA_LORA_NAME_MAX 128
#define VESTA_LORA_MAX_ADAPTERS 32
#define VESTA_LORA_MAX_RANK 512

/* One --lora-modules entry. */
typedef struct vesta_lora_spec {
    char name[VESTA_LORA_NAME_MAX];
    char path[1024];
} vesta_lora_spec;

/* Parses one --lora-modules value as vLLM takes it: "name=path" or a JSON object
 * {"name": ..., "path": ...} ("base_model_name" is accepted and ignored). Fails naming the
 * value: empty name or path, a name over VESTA_LORA_NAME_MAX - 1 bytes or with characters
 * other than [A-Za-z0-9._:/-], a path too long. */
vesta_status vesta_lora_spec_parse(const char *text, vesta_lora_spec *out, vesta_error *err);

/* A loaded adapter, float32 on the host. a[l][t] is A [rank][in], b[l][t] is B [out][rank] with
 * the scaling already multiplied in; both NULL where the adapter leaves the projection alone. */
typedef struct vesta_lora_adapter {
    char name[VESTA_LORA_NAME_MAX];
    char path[1024];
    int rank;
    float scaling; /* lora_alpha / r, or / sqrt(r) with use_rslora */
    int num_layers;
    unsigned targets;                    /* bit t set: some layer has target t */
    float *(*a)[VESTA_LORA_NUM_TARGETS]; /* [num_layers] */
    float *(*b)[VESTA_LORA_NUM_TARGETS];
    float *arena; /* every matrix lives here */
    size_t arena_floats;
} vesta_lora_adapter;

/* Reads spec->path against the base model's configuration c. Fails (NULL + err naming the file
 * and key or tensor) when the directory or a file is missing, malformed or hostile, when r is
 * outside 1 .. max_rank, when a targeted module is not one of the seven projections, when a
 * tensor is missing, unexpected, of another dtype than F32/F16/BF16 or of the wrong shape. */
vesta_lora_adapter *vesta_lora_adapter_load(const vesta_lora_spec *spec, const vesta_model_config *c, int max_rank,
                                            vesta_error *err);
/* The same from memory: the text of adapter_config.json and the bytes of adapter_model.safetensors
 * (which must outlive the call only); name is the adapter's. For fuzzing and tests. */
vesta_lora_adapter *vesta_lora_adapter_load_memory(const char *name, const void *cfg, size_t cfg_len,
                                                   const void *weights, size_t weights_len, const vesta_model_config *c,
                                                   int max_rank, vesta_error *err);
void vesta_lora_adapter_release(vesta_lora_adapter *ad); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
