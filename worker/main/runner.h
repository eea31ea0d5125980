/* What the worker loop drives: the real engine (engine_runner.c) or the simulator (sim.c), behind
 * one interface shaped like include/vesta/engine.h. Owned and called by the worker's engine thread
 * only (worker.h); the limits below are read-only after creation (the I/O thread reads them). */
#ifndef VESTA_WORKER_RUNNER_H
#define VESTA_WORKER_RUNNER_H

#include <stdint.h>

#include "vesta/config.h"
#include "vesta/engine.h"
#include "vesta/proto.h"

typedef struct runner runner;

typedef struct runner_ops {
    /* lora_id: 0 = the base model, else an id lora_find returned. */
    vesta_status (*add)(runner *r, const char *id, const int32_t *ids, int n, const vesta_sampling_params *sp,
                        int lora_id, vesta_error *err);
    /* The id of adapter `name` (1 .. in --lora-modules order), -1 when it has none by that name. */
    int (*lora_find)(const runner *r, const char *name);
    vesta_status (*abort)(runner *r, const char *id); /* VESTA_ERR_NOT_FOUND if unknown */
    vesta_status (*step)(runner *r, vesta_step_output *out, vesta_error *err);
    bool (*has_unfinished)(const runner *r);
    /* Microseconds until a step is worth running (the simulator paces itself; the engine: 0). */
    int64_t (*ready_in_us)(const runner *r);
    void (*stats)(const runner *r, vesta_engine_stats *st);
    int (*drain_kv)(runner *r, vesta_kv_event *out, int max, uint64_t *num_dropped);
    void (*destroy)(runner *r);
} runner_ops;

struct runner {
    const runner_ops *ops;
    /* What REGISTER announces. */
    int max_model_len;
    int block_size;
    int max_num_seqs;
    int vocab_size;
    int num_eos;
    int32_t eos_ids[VESTA_PROTO_MAX_EOS];
};

/* Both return NULL and fill err on failure. */
runner *engine_runner_create(const vesta_config *cfg, vesta_error *err);
runner *sim_runner_create(const vesta_config *cfg, vesta_error *err);

static inline void runner_destroy(runner *r)
{
    if (r)
        r->ops->destroy(r);
}

int64_t worker_now_us(void); /* CLOCK_MONOTONIC */

#endif
