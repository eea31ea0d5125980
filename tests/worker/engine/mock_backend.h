/* A deterministic backend for engine tests. Its "KV cache" stores, per slot, the token id and
 * position written there; the logits of a sampled row are a hash of the context it reads back
 * through the block table. So a wrong slot mapping, block table, stale/shared block or prefix
 * cache hit gives different tokens (and a stale position is reported as an error outright).
 * It checks every batch against the engine's limits. Sampling goes through the real sampler. */
#ifndef VESTA_TEST_MOCK_BACKEND_H
#define VESTA_TEST_MOCK_BACKEND_H

#include "vesta/backend.h"

typedef struct mock_backend mock_backend;
typedef void (*mock_batch_hook)(const vesta_batch *b, void *ud);

typedef struct mock_options {
    int vocab_size;
    int eos_id;
    int max_position_embeddings;
    size_t kv_budget_bytes;   /* the budget reported; one block = block_size * 64 bytes */
    int max_num_batched_tokens, max_num_seqs; /* limits every batch is checked against */
    int fail_at_step;         /* execute fails at this step (1-based); 0 = never */
    int max_loras;            /* > 0: LoRA on (the dimensions of tests/models/tiny-llama, so its
                                 adapters load); a batch with more distinct adapters is an error */
} mock_options;

mock_backend *mock_backend_create(const mock_options *o);
vesta_backend *mock_backend_base(mock_backend *m);
void mock_backend_set_hook(mock_backend *m, mock_batch_hook hook, void *ud);
int mock_backend_steps(const mock_backend *m);
int mock_backend_max_step_tokens(const mock_backend *m);

/* The logits for a context under an adapter slot (-1 = the base model): what the mock computes for
 * a sampled row. Its KV cache also remembers the slot each entry was written under, and reading it
 * under another is an error. */
void mock_logits(const int32_t *ctx, int n, int lora_slot, int vocab, float *out);

#endif
