/* The option table: every YAML key and command-line flag, with bounds, defaults and help.
 * Flags follow vLLM's names where vLLM has the knob. */
#include <stddef.h>

#include "vesta/config.h"

#define OFF(m) offsetof(vesta_config, m), sizeof(((vesta_config *)0)->m)
#define R VESTA_OPT_ROUTER
#define W VESTA_OPT_WORKER
#define S VESTA_OPT_SERVE
#define I32 2147483647.0

static const vesta_option options[] = {
    /* router */
    {"router", "host", "--host", VESTA_OPT_STRING, OFF(host), 0, 0, "127.0.0.1", NULL, R | S,
     "HTTP listen address (vLLM listens on all interfaces; Vesta on loopback unless set)", false},
    {"router", "port", "--port", VESTA_OPT_INT, OFF(port), 1, 65535, "8000", NULL, R | S, "HTTP port", false},
    {"router", "api_keys", "--api-key", VESTA_OPT_LIST, OFF(api_keys), 0, 8, "", NULL, R | S,
     "accepted bearer tokens; none = no authentication", false},
    {"router", "max_body_bytes", "--max-body-bytes", VESTA_OPT_INT64, OFF(max_body_bytes), 1024, 1073741824.0,
     "16777216", NULL, R | S, "largest request body (larger: HTTP 413)", false},
    {"router", "max_queued_requests", "--max-queued-requests", VESTA_OPT_INT, OFF(max_queued_requests), 1, 1000000,
     "1024", NULL, R | S, "requests admitted but not finished, cluster-wide (more: HTTP 503 + Retry-After)", false},
    {"router", "routing_policy", "--routing-policy", VESTA_OPT_ENUM, OFF(routing_policy), 0, 0, "prefix-affinity",
     "prefix-affinity|least-load|round-robin", R | S, "how requests pick a worker", false},
    {"router", "load_margin", "--routing-load-margin", VESTA_OPT_INT, OFF(load_margin), 0, 1000000, "8", NULL, R | S,
     "prefix-affinity gives up a cache hit when that worker has this many more requests (running + "
     "waiting) than the least-loaded one",
     false},
    {"router", "zmq_bind", "--zmq-bind", VESTA_OPT_STRING, OFF(zmq_bind), 0, 0, "tcp://127.0.0.1:5557", NULL, R | S,
     "ZeroMQ ROUTER endpoint the workers connect to", false},
    {"router", "heartbeat_timeout_ms", "--heartbeat-timeout-ms", VESTA_OPT_INT, OFF(heartbeat_timeout_ms), 100, 600000,
     "3000", NULL, R | S, "a worker silent this long is marked dead and its requests fail", false},
    {"router", "engine_stall_timeout_ms", "--engine-stall-timeout-ms", VESTA_OPT_INT, OFF(engine_stall_timeout_ms),
     1000, I32, "600000", NULL, R | S,
     "a worker whose heartbeats say its engine has been on one step this long is marked dead "
     "and its requests fail (heartbeats come from an I/O thread, so a slow step alone is no "
     "heartbeat timeout)",
     false},
    {"router", "prefix_index_max_blocks", "--prefix-index-max-blocks", VESTA_OPT_INT, OFF(prefix_index_max_blocks), 1,
     100000000, "1000000", NULL, R | S, "hard cap on block hashes in the router's prefix index", false},
    /* model */
    {"model", "path", "--model", VESTA_OPT_STRING, OFF(model), 0, 0, "", NULL, R | W | S,
     "model directory (HF layout) or .gguf file (required)", false},
    {"model", "served_model_name", "--served-model-name", VESTA_OPT_LIST, OFF(served_model_name), 0, 8, "", NULL,
     R | W | S, "names clients use in \"model\"; default: the model path", true},
    {"model", "max_model_len", "--max-model-len", VESTA_OPT_INT, OFF(max_model_len), 0, 16777216, "0", NULL, R | W | S,
     "context length; 0 = the model's (sim backend: 4096)", false},
    {"model", "dtype", "--dtype", VESTA_OPT_ENUM, OFF(dtype), 0, 0, "auto", "auto|float32|float16|bfloat16", W | S,
     "compute dtype; this build computes in the backend's own dtype and accepts only auto", false},
    {"model", "trust_remote_code", "--trust-remote-code", VESTA_OPT_BOOL, OFF(trust_remote_code), 0, 0, "false", NULL,
     R | W | S,
     "accepted as vLLM accepts it; Vesta reads weights, tokenizers and chat templates as data and never "
     "runs a model's code, so it changes nothing",
     false},
    /* engine */
    {"engine", "gpu_memory_utilization", "--gpu-memory-utilization", VESTA_OPT_DOUBLE, OFF(gpu_memory_utilization),
     0.01, 1.0, "0.9", NULL, W | S, "fraction of GPU memory a worker may use (weights + activations + KV cache)",
     false},
    {"engine", "max_num_seqs", "--max-num-seqs", VESTA_OPT_INT, OFF(max_num_seqs), 0, 65536, "0", NULL, W | S,
     "most sequences in one step; 0 = vLLM's default for the device (1024 on CUDA GPUs of >= 70 GiB "
     "other than A100, else 256)",
     false},
    {"engine", "max_num_batched_tokens", "--max-num-batched-tokens", VESTA_OPT_INT, OFF(max_num_batched_tokens), 0,
     16777216, "0", NULL, W | S,
     "most tokens in one step (longer prompts are prefilled in chunks); 0 = vLLM's server default "
     "for the device (8192 on CUDA GPUs of >= 70 GiB other than A100, 2048 on other GPUs; 8192 on "
     "the CPU)",
     false},
    {"engine", "block_size", "--block-size", VESTA_OPT_INT, OFF(block_size), 1, 1024, "16", NULL, W | S,
     "tokens per KV-cache block (also the prefix-routing granularity)", false},
    {"engine", "enable_prefix_caching", "--enable-prefix-caching", VESTA_OPT_BOOL, OFF(enable_prefix_caching), 0, 0,
     "true", NULL, W | S, "reuse KV blocks of shared prompt prefixes (--no-enable-prefix-caching turns it off)", false},
    {"engine", "num_gpu_blocks_override", "--num-gpu-blocks-override", VESTA_OPT_INT, OFF(num_gpu_blocks_override), 0,
     1073741824, "0", NULL, W | S, "fixed number of KV blocks; 0 = plan from memory (sim backend: 4096)", false},
    {"engine", "prefix_cache_salt", "--prefix-cache-salt", VESTA_OPT_INT64, OFF(prefix_cache_salt), 0,
     9007199254740991.0, "0", NULL, W | S, "salt mixed into every prefix-cache block hash", false},
    {"engine", "cpu_kv_cache_space", "--cpu-kv-cache-space", VESTA_OPT_INT, OFF(cpu_kv_cache_space), 0, 65536, "0",
     NULL, W | S, "CPU backend KV cache, GiB (vLLM's VLLM_CPU_KVCACHE_SPACE); 0 = 4", false},
    {"engine", "num_threads", "--num-threads", VESTA_OPT_INT, OFF(num_threads), 0, 4096, "0", NULL, W | S,
     "CPU threads per worker; 0 = all cores", false},
    {"engine", "enforce_eager", "--enforce-eager", VESTA_OPT_BOOL, OFF(enforce_eager), 0, 0, "false", NULL, W | S,
     "no CUDA graphs", false},
    {"engine", "disable_custom_all_reduce", "--disable-custom-all-reduce", VESTA_OPT_BOOL,
     OFF(disable_custom_all_reduce), 0, 0, "false", NULL, W | S,
     "GPU tensor parallelism: NCCL for every all-reduce, not the peer-to-peer one for small ones", false},
    {"engine", "batch_invariant", "--batch-invariant", VESTA_OPT_BOOL, OFF(batch_invariant), 0, 0, "false", NULL, W | S,
     "a sequence's results do not depend on its batch (greedy tokens bit-identical); slower", false},
    {"engine", "tensor_parallel_size", "--tensor-parallel-size", VESTA_OPT_INT, OFF(tensor_parallel_size), 1, 64, "1",
     NULL, W | S, "ranks of one sharded replica; each worker starts N-1 rank processes (cpu backend)", false},
    {"engine", "load_format", "--load-format", VESTA_OPT_ENUM, OFF(load_format), 0, 0, "auto", "auto|dummy", W | S,
     "dummy: random weights from config.json alone, no weight files (benchmarks; cuda backend)", false},
    /* lora */
    {"lora", "enable_lora", "--enable-lora", VESTA_OPT_BOOL, OFF(enable_lora), 0, 0, "false", NULL, R | W | S,
     "serve LoRA adapters beside the base model (cpu and cuda backends, no tensor parallelism)", false},
    {"lora", "lora_modules", "--lora-modules", VESTA_OPT_LIST, OFF(lora_modules), 0, 32, "", NULL, R | W | S,
     "adapters as name=path (a PEFT directory) or {\"name\": ..., \"path\": ...}; clients pick one "
     "with \"model\": name",
     true},
    {"lora", "max_loras", "--max-loras", VESTA_OPT_INT, OFF(max_loras), 1, 32, "1", NULL, W | S,
     "most distinct adapters in one step (requests of others wait for a later step)", false},
    {"lora", "max_lora_rank", "--max-lora-rank", VESTA_OPT_INT, OFF(max_lora_rank), 1, 512, "16", NULL, W | S,
     "largest adapter rank r accepted at start-up", false},
    /* workers */
    {"workers", "count", "--workers", VESTA_OPT_INT, OFF(workers), 1, 1024, "1", NULL, S,
     "worker processes `vesta serve` starts (one per GPU rank; CPU: one per replica)", false},
    {"workers", "backend", "--backend", VESTA_OPT_ENUM, OFF(backend), 0, 0, "cpu", "cpu|cuda|sim", W | S,
     "compute backend; sim generates pseudo-random tokens at a set rate without a model", false},
    {"workers", "heartbeat_ms", "--heartbeat-ms", VESTA_OPT_INT, OFF(heartbeat_ms), 10, 60000, "500", NULL, W | S,
     "worker heartbeat interval", false},
    {"workers", "sim_tokens_per_second", "--sim-tokens-per-second", VESTA_OPT_DOUBLE, OFF(sim_tokens_per_second), 0.001,
     1e9, "50", NULL, W | S, "sim backend: decode steps per second (each running sequence gets one token per step)",
     false},
    {"workers", "sim_prefill_tokens_per_second", "--sim-prefill-tokens-per-second", VESTA_OPT_DOUBLE,
     OFF(sim_prefill_tokens_per_second), 0.001, 1e12, "5000", NULL, W | S,
     "sim backend: prefill speed for prompt tokens not in the prefix cache", false},
    {"workers", "sim_vocab_size", "--sim-vocab-size", VESTA_OPT_INT, OFF(sim_vocab_size), 2, I32, "32000", NULL, W | S,
     "sim backend: vocabulary size (token ids drawn below it)", false},
    {"workers", "sim_step_delay_ms", "--sim-step-delay-ms", VESTA_OPT_INT, OFF(sim_step_delay_ms), 0, 3600000, "0",
     NULL, W | S, "sim backend: every step also blocks this long (stands in for a slow engine step)", false},
    /* flags only */
    {NULL, NULL, "--router", VESTA_OPT_STRING, OFF(router), 0, 0, "tcp://127.0.0.1:5557", NULL, W,
     "worker: the router's ZeroMQ endpoint", false},
    {NULL, NULL, "--worker-id", VESTA_OPT_STRING, OFF(worker_id), 0, 0, "", NULL, W,
     "worker: id (ZeroMQ identity); default <hostname>-<pid>", false},
    {NULL, NULL, "--device", VESTA_OPT_INT, OFF(device), 0, 1024, "0", NULL, W, "worker: CUDA device ordinal", false},
    {NULL, NULL, "--config", VESTA_OPT_STRING, OFF(config_path), 0, 0, "", NULL, R | W | S,
     "YAML cluster config; flags override it", false},
};

const vesta_option *vesta_config_options(int *count)
{
    *count = (int)(sizeof options / sizeof *options);
    return options;
}

/* set_by_yaml / set_by_flag are indexed by option. */
_Static_assert(sizeof options / sizeof *options <= sizeof(((vesta_config *)0)->set_by_flag),
               "vesta_config.set_by_flag is too small for the option table");
