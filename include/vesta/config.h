/* Cluster configuration: one YAML file (libyaml) and command-line flags with vLLM's names, both
 * driven by one declarative option table (vesta_config_options), which also generates
 * docs/configuration.md. Precedence: defaults < YAML < flags.
 *
 *   vesta_config c; vesta_config_init(&c);
 *   if (vesta_config_load_yaml(&c, path, &err)) ...          // "path:12:3: engine.block_size: ..."
 *   if (vesta_config_parse_args(&c, argc, argv, VESTA_OPT_WORKER, NULL, &err)) ...
 *
 * YAML layout: top-level sections router, model, engine, workers, each a mapping of the keys in
 * the table. Unknown sections or keys, duplicates and bad values are errors naming the key and
 * its line. Lists (api_keys, served_model_name) take a sequence or a single scalar. */
#ifndef VESTA_CONFIG_H
#define VESTA_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vesta/error.h"
#include "vesta/lora.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VESTA_CONFIG_STR_MAX 1024
#define VESTA_CONFIG_LIST_MAX 32 /* a list option's own cap is its `max` (0: this) */

typedef struct vesta_config_list {
    int count;
    char items[VESTA_CONFIG_LIST_MAX][VESTA_CONFIG_STR_MAX];
} vesta_config_list;

typedef struct vesta_config {
    /* router */
    char host[VESTA_CONFIG_STR_MAX];
    int port;
    vesta_config_list api_keys;
    int64_t max_body_bytes;
    int max_queued_requests;
    char routing_policy[32];        /* prefix-affinity | least-load | round-robin */
    int load_margin;                /* requests (running + waiting) */
    char zmq_bind[VESTA_CONFIG_STR_MAX];
    int heartbeat_timeout_ms;
    int prefix_index_max_blocks;
    int engine_stall_timeout_ms;    /* a worker busy this long on one step is marked dead */
    /* model */
    char model[VESTA_CONFIG_STR_MAX];
    vesta_config_list served_model_name;
    int max_model_len;
    char dtype[16];                 /* auto | float32 | float16 | bfloat16 */
    bool trust_remote_code;         /* vLLM's flag; nothing here runs a model's code */
    /* engine */
    double gpu_memory_utilization;
    int max_num_seqs;
    int max_num_batched_tokens;
    int block_size;
    bool enable_prefix_caching;
    int num_gpu_blocks_override;
    int64_t prefix_cache_salt;
    int cpu_kv_cache_space;         /* GiB, 0 = backend default */
    int num_threads;                /* CPU threads per worker, 0 = all */
    bool enforce_eager;
    bool disable_custom_all_reduce; /* GPU tensor parallelism: NCCL for every all-reduce */
    bool batch_invariant;           /* results independent of the batch; not with tensor parallelism */
    int tensor_parallel_size;       /* ranks of one sharded replica (CPU: N processes), 1 = none */
    /* lora */
    bool enable_lora;
    vesta_config_list lora_modules; /* "name=path" or {"name": ..., "path": ...} (vesta_lora_spec_parse) */
    int max_loras;                  /* distinct adapters in one step */
    int max_lora_rank;
    char load_format[16];           /* auto | dummy (random weights from config.json alone) */
    /* workers */
    int workers;
    char backend[16];               /* cpu | cuda | sim */
    int heartbeat_ms;
    double sim_tokens_per_second;
    double sim_prefill_tokens_per_second;
    int sim_vocab_size;
    int sim_step_delay_ms;          /* sim backend: extra time every step takes (tests) */
    /* one process (flags only) */
    char router[VESTA_CONFIG_STR_MAX]; /* worker: the router endpoint to connect to */
    char worker_id[128];
    int device;
    char config_path[VESTA_CONFIG_STR_MAX];
    /* which options were set, by index into vesta_config_options (for forwarding to children) */
    unsigned char set_by_yaml[72];
    unsigned char set_by_flag[72];
} vesta_config;

typedef enum vesta_option_type {
    VESTA_OPT_INT,
    VESTA_OPT_INT64,
    VESTA_OPT_DOUBLE,
    VESTA_OPT_BOOL,     /* --flag / --no-flag, or --flag true|false */
    VESTA_OPT_STRING,
    VESTA_OPT_ENUM,     /* a string out of `choices` ("a|b|c") */
    VESTA_OPT_LIST,     /* repeatable flag; several values may follow it */
} vesta_option_type;

/* Who takes an option on its command line. */
enum {
    VESTA_OPT_ROUTER = 1,
    VESTA_OPT_WORKER = 2,
    VESTA_OPT_SERVE = 4,
};

typedef struct vesta_option {
    const char *section;   /* YAML section, NULL = flag only */
    const char *key;       /* YAML key */
    const char *flag;      /* command-line flag (vLLM's name where vLLM has one) */
    vesta_option_type type;
    size_t offset;         /* in vesta_config */
    size_t size;           /* bytes of a string field */
    double min, max;       /* numeric bounds, inclusive */
    const char *def;       /* default, as text */
    const char *choices;   /* ENUM */
    unsigned scopes;
    const char *help;
    bool multi;            /* LIST: one flag takes every following non-flag value (vLLM nargs="+") */
} vesta_option;

const vesta_option *vesta_config_options(int *count);

/* Fills every default from the table. */
void vesta_config_init(vesta_config *c);

/* Sets one option from text, checking type and bounds. `where` prefixes the message
 * ("file:3:5" or "--port"). */
vesta_status vesta_config_set(vesta_config *c, const vesta_option *opt, const char *value,
                              const char *where, vesta_error *err);

/* Reads a YAML file (or text; name is used in messages) over c. On error c may be partly
 * updated; the message names file, line, column and section.key. */
vesta_status vesta_config_load_yaml(vesta_config *c, const char *path, vesta_error *err);
vesta_status vesta_config_load_yaml_text(vesta_config *c, const char *text, size_t len,
                                         const char *name, vesta_error *err);

/* Parses argv[1..] for the options of `scopes` (--flag value, --flag=value, --no-flag). When
 * --config FILE appears it is loaded first, so flags win regardless of order. Arguments that are
 * not options of `scopes` are errors unless `rest` is given: then they are collected there
 * (rest must hold argc entries; *rest_count receives the count). */
vesta_status vesta_config_parse_args(vesta_config *c, int argc, char **argv, unsigned scopes,
                                     char **rest, int *rest_count, vesta_error *err);

/* The option behind a flag ("--block-size"), or NULL. */
const vesta_option *vesta_config_find_flag(const char *flag);

/* Formats an option's current value as text (lists joined by ","). */
void vesta_config_format(const vesta_config *c, const vesta_option *opt, char *buf, size_t cap);

/* Usage text for the options of `scopes`. */
void vesta_config_print_help(FILE *f, unsigned scopes);

/* c's --lora-modules as specs (out holds VESTA_LORA_MAX_ADAPTERS): the count, or -1 with err (a
 * malformed entry, a name given twice, adapters without --enable-lora). */
int vesta_config_lora_specs(const vesta_config *c, vesta_lora_spec *out, vesta_error *err);

/* docs/configuration.md, generated from the table. */
void vesta_config_write_markdown(FILE *f);

#ifdef __cplusplus
}
#endif
#endif
