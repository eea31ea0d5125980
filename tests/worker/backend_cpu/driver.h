/* A minimal stand-in for the engine, for driving a backend directly in tests: sequences join at a
 * chosen step, prefill in chunks of a chosen size, then decode greedily (through the reference
 * sampler, EOS ignored). Blocks come from a shuffled pool, so block tables are never contiguous.
 * Aborts the test (exit 1) on any backend error, printing it. */
#ifndef VESTA_TEST_DRIVER_H
#define VESTA_TEST_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "vesta/backend.h"

typedef struct drv_seq {
    /* set by the test */
    const int32_t *prompt;
    int n_prompt;
    int n_new;             /* tokens to generate */
    int chunk;             /* prefill chunk size; 0 = whole prompt in one step */
    int start_step;        /* the step at which the sequence joins */
    int lora;              /* 0 = base model, k = the backend's adapter slot k - 1 */
    bool prompt_logits;    /* also keep the logits of every prompt position */
    const int *keep_steps; /* decode steps whose logits are kept (0 = the prompt's last position) */
    int n_keep;
    /* results */
    int32_t *out;          /* [n_new] generated tokens */
    float *kept;           /* [n_keep][vocab] */
    float *prompt_rows;    /* [n_prompt][vocab] when prompt_logits */
    int argmax_mismatch;   /* sampled token != argmax of the logits (ties aside) */
    /* driver state */
    int n_cached, n_out, n_blocks;
    int32_t *blocks;
} drv_seq;

typedef struct drv {
    vesta_backend *be;
    int vocab;
    int block_size;
    int num_blocks;
    int32_t *free_blocks; /* shuffled pool */
    int n_free;
    int max_step_tokens;
} drv;

/* Creates the KV cache of num_blocks blocks (block_size tokens) on be. */
void drv_init(drv *d, vesta_backend *be, int num_blocks, int block_size, int max_step_tokens);
void drv_free(drv *d);
/* Runs all sequences to completion with every block free, the pool shuffled by seed. Returns the
 * number of steps. */
int drv_run(drv *d, drv_seq *seqs, int n, uint64_t seed);
void drv_seq_free(drv_seq *s);

/* ||a - b|| / ||b|| */
double drv_rel_l2(const float *a, const float *b, int n);

#endif
