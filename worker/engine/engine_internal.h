/* The engine's private structures, shared by engine.c (requests, steps, outputs) and
 * scheduler.c (which sequences run this step, with how many tokens). */
#ifndef VESTA_ENGINE_INTERNAL_H
#define VESTA_ENGINE_INTERNAL_H

#include "block_manager.h"
#include "vesta/engine.h"
#include "vesta/prefix_hash.h"

typedef enum seq_state {
    SEQ_UNBORN = 0, /* sequence i > 0 of an n > 1 request before its prompt is prefilled */
    SEQ_WAITING,
    SEQ_RUNNING,
    SEQ_FINISHED,
} seq_state;

typedef struct request request;

typedef struct seq {
    request *req;
    int index;                /* 0 .. n-1 */
    seq_state state;
    int32_t *tokens;          /* [max_model_len]: prompt then output */
    int num_tokens;
    int num_computed;         /* tokens whose KV is in the cache */
    int32_t *block_table;     /* [max_blocks_per_seq] */
    int num_blocks;
    uint64_t *keys;           /* [max_blocks_per_seq] prefix keys of the full blocks of tokens */
    int num_keys;
    int num_registered;       /* blocks [0, num_registered) are offered to the prefix cache */
    uint64_t seed;
    vesta_finish_reason finish;
    int32_t stop_token;
    int num_cached_tokens;    /* prompt tokens found in the prefix cache at first schedule */
    bool scheduled_before;
    vesta_sample_result last_logprobs;
    struct seq *wprev, *wnext; /* waiting queue */
    /* This step (scheduler -> engine). */
    int step_new;             /* tokens scheduled */
    bool step_fork;           /* completes the prompt of an unforked n > 1 request */
} seq;

struct request {
    char *id;
    vesta_sampling_params sp;
    int32_t lora_id; /* 0 = base model, else the adapter (block keys include it) */
    int num_prompt;
    seq *seqs;                /* [n] */
    bool forked;              /* n == 1, or the children exist */
    int32_t *fork_blocks;     /* [n-1] blocks reserved for the children's copy of the partial block */
    int num_fork_blocks;
    int num_finished;
    int num_reported;         /* sequences reported finished */
    request *hnext;           /* id hash chain */
    request *gnext;           /* graveyard (freed at the next engine call) */
};

typedef struct sched_config {
    int max_num_seqs, max_num_batched_tokens, block_size, max_blocks_per_seq;
    int max_loras;      /* distinct adapters in one step */
    bool group_by_lora; /* adapters loaded: the step's sequences ordered by adapter */
} sched_config;

typedef struct scheduler {
    sched_config cfg;
    vesta_block_manager *bm;
    bool caching;
    vesta_block_hash_extra extra;
    uint64_t root;
    seq **running;            /* [max_num_seqs], admission order (the last is the newest) */
    int num_running;
    int running_slots;        /* sequence slots held: an unforked n > 1 request holds n */
    seq *whead, *wtail;       /* waiting queue, FCFS; preempted sequences go back to the front */
    int num_waiting;
    seq **scheduled;          /* [max_num_seqs] this step, in batch order */
    seq **sort_tmp;           /* [max_num_seqs] */
    int num_scheduled;
    int32_t *hit_blocks;      /* [max_blocks_per_seq] lookup scratch */
    int32_t step_loras[VESTA_LORA_MAX_ADAPTERS]; /* distinct adapter ids scheduled this step */
    int num_step_loras;
    uint64_t prefix_queries, prefix_hits, preemptions;
} scheduler;

vesta_status vesta_scheduler_init(scheduler *s, const sched_config *cfg, vesta_block_manager *bm,
                                  bool caching, uint64_t salt, vesta_error *err);
void vesta_scheduler_release(scheduler *s);

/* Slots a waiting sequence needs to run. */
int vesta_scheduler_slots_of(const seq *q);
void vesta_scheduler_enqueue(scheduler *s, seq *q, bool front);
void vesta_scheduler_unlink_waiting(scheduler *s, seq *q);
void vesta_scheduler_remove_running(scheduler *s, seq *q);
/* Frees every block q (and an unforked request's reserved fork blocks) holds. */
void vesta_scheduler_free_blocks(scheduler *s, seq *q);
/* Fills s->scheduled with this step's sequences and their step_new / step_fork. */
void vesta_scheduler_schedule(scheduler *s);
/* After the forward pass: extends keys and registers the newly full computed blocks of q. */
void vesta_scheduler_register_blocks(scheduler *s, seq *q);
/* Keys of q's full blocks, computed up to min(num_tokens / block_size, max). */
void vesta_scheduler_update_keys(scheduler *s, seq *q);

#endif
