/* The compute backend interface. The engine (scheduler, block manager) is backend-agnostic: each
 * step it hands the backend one flattened batch -- token ids, positions, the KV slot each new
 * token is written to, per-sequence block tables -- and gets back one sampled token (and
 * logprobs) per sampling row. The CPU backend is the reference; the CUDA backend plugs in beside it.
 *
 * Thread ownership: a backend is used by exactly one thread (the engine thread). */
#ifndef VESTA_BACKEND_H
#define VESTA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"
#include "vesta/lora.h"
#include "vesta/model.h"
#include "vesta/sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything needed to sample one next token for one sequence. Sampling is a pure function of
 * (logits, these fields): with a seed, the draw for output position k uses a counter-based RNG
 * keyed by (rng_seed, rng_offset = k), so it does not depend on what else is in the batch. */
typedef struct vesta_sample_row {
    const vesta_sampling_params *params;
    uint64_t rng_seed;
    uint64_t rng_offset;        /* number of tokens this sequence has generated so far */
    const int32_t *prompt_ids;  /* repetition penalty looks at prompt and output */
    int num_prompt;
    const int32_t *output_ids;  /* presence / frequency penalties look at the output */
    int num_output;
    bool suppress_stop;         /* min_tokens not reached: EOS and stop_token_ids are masked */
    const int32_t *eos_ids;     /* the model's EOS ids (masked when suppress_stop) */
    int num_eos;
} vesta_sample_row;

typedef struct vesta_sample_result {
    int32_t token;
    float logprob;              /* log-softmax of the RAW model logits (vLLM V1 default:
                                   before temperature, penalties, bias and top-k/p) */
    int num_top;
    int32_t top_ids[VESTA_MAX_LOGPROBS];
    float top_logprobs[VESTA_MAX_LOGPROBS];
} vesta_sample_result;

/* One engine step, flattened. Sequence i owns tokens [query_start[i], query_start[i+1]). */
typedef struct vesta_batch {
    int num_tokens;
    const int32_t *token_ids;      /* [num_tokens] */
    const int32_t *positions;      /* [num_tokens] absolute position in its sequence */
    const int32_t *slot_mapping;   /* [num_tokens] block_id * block_size + offset to write K/V */
    int num_seqs;
    const int32_t *query_start;    /* [num_seqs + 1] */
    const int32_t *context_lens;   /* [num_seqs] KV length after this step (cached + new) */
    const int32_t *block_tables;   /* [num_seqs * max_blocks_per_seq], row-major */
    int max_blocks_per_seq;
    int max_context_len;           /* max of context_lens */
    const int32_t *lora_slots;     /* [num_seqs] adapter slot per sequence, -1 = base; may be NULL */
    /* Sampling: rows whose token at sample_token_index gets a next token. */
    int num_samples;
    const int32_t *sample_token_index; /* [num_samples] index into the token arrays */
    const vesta_sample_row *sample_rows; /* [num_samples] */
} vesta_batch;

typedef struct vesta_backend vesta_backend;

typedef struct vesta_backend_ops {
    const char *name;
    /* Bytes one KV block takes on this backend (all layers, K and V, this rank's heads). */
    size_t (*kv_block_bytes)(vesta_backend *be, int block_size);
    /* Bytes available for the KV cache after weights and the largest step's activations
     * (GPU: gpu_memory_utilization * total - used - profile; CPU: the configured budget). */
    size_t (*kv_budget_bytes)(vesta_backend *be);
    /* Allocates the KV cache once, at start-up. */
    vesta_status (*kv_alloc)(vesta_backend *be, int num_blocks, int block_size, vesta_error *err);
    /* Runs the forward pass and samples. results: [num_samples]. logits_out, when not NULL,
     * receives the raw float32 logits of the sampled rows, [num_samples * vocab_size]. */
    vesta_status (*execute)(vesta_backend *be, const vesta_batch *batch,
                            vesta_sample_result *results, float *logits_out, vesta_error *err);
    /* Copies whole KV blocks src[i] -> dst[i] (copy-on-write of a shared partial block). */
    vesta_status (*copy_blocks)(vesta_backend *be, const int32_t *src, const int32_t *dst, int n,
                                vesta_error *err);
    /* Makes adapter ad available as slot (0, 1, ... in order), at start-up, before any execute.
     * ad stays valid, unchanged, until destroy. NULL: the backend has no LoRA support. */
    vesta_status (*lora_add)(vesta_backend *be, int slot, const vesta_lora_adapter *ad, vesta_error *err);
    void (*destroy)(vesta_backend *be); /* NULL-safe via vesta_backend_destroy */
} vesta_backend_ops;

/* Every backend struct starts with this header. */
struct vesta_backend {
    const vesta_backend_ops *ops;
    vesta_model_config config;
};

/* What a backend is created with. */
typedef struct vesta_backend_options {
    int max_num_batched_tokens;   /* largest step: sizes activation buffers */
    int max_num_seqs;
    int max_model_len;
    int block_size;
    double gpu_memory_utilization; /* fraction of device memory Vesta may use (0.90) */
    size_t cpu_kv_cache_bytes;     /* CPU backend KV budget; 0 = default (4 GiB, vLLM's VLLM_CPU_KVCACHE_SPACE) */
    int num_threads;               /* CPU threads; 0 = all cores */
    int tp_rank, tp_size;          /* tensor parallelism: this rank's shard (0, 1 = none) */
    int device;                    /* CUDA device ordinal */
    bool enforce_eager;            /* no CUDA graphs */
    bool disable_custom_all_reduce; /* tensor parallelism on GPUs: NCCL for every all-reduce (vLLM's
                                       name), not the peer-to-peer one for small ones */
    bool batch_invariant;          /* a row's result does not depend on the batch around it: same
                                      tokens whatever the batch, chunking or preemption (slower) */
    bool load_dummy;               /* --load-format dummy: random weights, no file */
    uint64_t dummy_seed;
} vesta_backend_options;

void vesta_backend_options_init(vesta_backend_options *o);

/* The checks every copy_blocks implementation starts with: n >= 0 and, when n > 0, both lists
 * given. VESTA_ERR_INVALID_ARG otherwise. (Block ids are checked by each backend against its
 * own cache.) */
vesta_status vesta_backend_check_copy_args(const int32_t *src, const int32_t *dst, int n, vesta_error *err);

/* Creates the named backend ("cpu", "cuda") for an opened model file. */
vesta_backend *vesta_backend_create(const char *name, const vesta_model_file *mf,
                                    const vesta_backend_options *opts, vesta_error *err);
void vesta_backend_destroy(vesta_backend *be); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
