/* vesta generate --model PATH --input FILE --output FILE [engine knobs] [sampling flags]
 *
 * Input: one JSON object per line, {"prompt_token_ids": [...]} or {"prompt": "text"} (needs the
 * model's tokenizer), optionally with per-line sampling overrides under their vLLM names
 * ({"max_tokens": 32, "temperature": 0.7, "seed": 1, ...}) and the LoRA adapter to run it under
 * ({"lora_name": "sql"}: one of --lora-modules; absent = the base model).
 * Output, in input order, one line per input line:
 *   {"index": i, "num_prompt_tokens": P, "num_cached_tokens": C,
 *    "outputs": [{"index": j, "token_ids": [...], "text": "...", "finish_reason": "stop",
 *                 "stop_reason": id|null, "num_tokens": k, "logprobs": [...]}]}
 * or {"index": i, "error": "..."} for a line that could not be run. */
#include "generate.h"
#include "cli_num.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vesta/engine.h"
#ifdef VESTA_HAVE_TOKENIZER
#include "vesta/tokenizer.h"
#endif

typedef struct seq_result {
    int32_t *ids;
    int num, cap;
    json_t *logprobs; /* array, or NULL */
    vesta_finish_reason finish;
    int32_t stop_token;
} seq_result;

typedef struct line_result {
    char *error;      /* set: the line failed */
    int n;            /* sequences */
    int num_finished;
    int num_prompt, num_cached;
    bool want_logprobs;
    seq_result *seqs;
} line_result;

typedef struct gen_ctx {
    const char *input, *output;
    vesta_engine_config cfg;
    vesta_sampling_params sp;
    vesta_engine *engine;
    void *tokenizer;      /* vesta_tokenizer * when built with the tokenizer */
    line_result *lines;
    int num_lines;
    int next_to_write;
    FILE *out;
    bool progress;
    vesta_lora_spec loras[VESTA_LORA_MAX_ADAPTERS]; /* --lora-modules */
} gen_ctx;

/* ---- the tokenizer hook: text prompts in, text out ---- */

static void tokenizer_open(gen_ctx *g)
{
#ifdef VESTA_HAVE_TOKENIZER
    vesta_error err = {0};
    g->tokenizer = vesta_tokenizer_load(g->cfg.model, &err);
    if (g->tokenizer == NULL)
        fprintf(stderr, "vesta generate: no tokenizer (%s): text prompts will be refused and "
                        "outputs carry token ids only\n", err.msg);
#else
    g->tokenizer = NULL;
#endif
}

static void tokenizer_close(gen_ctx *g)
{
#ifdef VESTA_HAVE_TOKENIZER
    vesta_tokenizer_release(g->tokenizer);
#endif
    g->tokenizer = NULL;
}

/* Encodes text like vLLM's LLM.generate (add_special_tokens=True). */
static int32_t *tokenize(gen_ctx *g, const char *text, size_t len, int *n, char **error)
{
#ifdef VESTA_HAVE_TOKENIZER
    if (g->tokenizer != NULL) {
        vesta_error err = {0};
        int32_t *ids = NULL;
        size_t count = 0;
        if (vesta_tokenizer_encode(g->tokenizer, text, len, true, true, &ids, &count, &err) != VESTA_OK) {
            *error = strdup(err.msg);
            return NULL;
        }
        *n = (int)count;
        return ids;
    }
#endif
    (void)text;
    (void)len;
    *error = strdup("\"prompt\": text prompts need the model's tokenizer, which is not "
                    "available; give \"prompt_token_ids\"");
    return NULL;
}

static json_t *detokenize(gen_ctx *g, const int32_t *ids, int n)
{
#ifdef VESTA_HAVE_TOKENIZER
    if (g->tokenizer != NULL) {
        char *text = NULL;
        size_t len = 0;
        if (vesta_tokenizer_decode(g->tokenizer, ids, (size_t)n, true, &text, &len, NULL) == VESTA_OK) {
            json_t *s = json_stringn(text, len);
            free(text);
            return s;
        }
    }
#endif
    (void)g;
    (void)ids;
    (void)n;
    return NULL;
}

/* ---- command line ---- */

enum {
    OPT_MODEL = 256,
    OPT_INPUT,
    OPT_OUTPUT,
    OPT_BACKEND,
    OPT_BLOCK_SIZE,
    OPT_MAX_NUM_SEQS,
    OPT_MAX_BATCHED,
    OPT_MAX_MODEL_LEN,
    OPT_PREFIX_ON,
    OPT_PREFIX_OFF,
    OPT_GPU_UTIL,
    OPT_NUM_BLOCKS,
    OPT_EAGER,
    OPT_NO_CUSTOM_AR,
    OPT_LOAD_FORMAT,
    OPT_SEED,
    OPT_KV_SPACE,
    OPT_THREADS,
    OPT_TEMPERATURE,
    OPT_TOP_P,
    OPT_TOP_K,
    OPT_MIN_P,
    OPT_MAX_TOKENS,
    OPT_MIN_TOKENS,
    OPT_IGNORE_EOS,
    OPT_PRESENCE,
    OPT_FREQUENCY,
    OPT_REPETITION,
    OPT_N,
    OPT_LOGPROBS,
    OPT_STOP_IDS,
    OPT_SAMPLING_SEED,
    OPT_NO_PROGRESS,
    OPT_HELP,
    OPT_TP,
    OPT_BATCH_INVARIANT,
    OPT_TRUST,
    OPT_ENABLE_LORA,
    OPT_LORA_MODULES,
    OPT_MAX_LORAS,
    OPT_MAX_LORA_RANK,
};

static const struct option options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"input", required_argument, NULL, OPT_INPUT},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"block-size", required_argument, NULL, OPT_BLOCK_SIZE},
    {"max-num-seqs", required_argument, NULL, OPT_MAX_NUM_SEQS},
    {"max-num-batched-tokens", required_argument, NULL, OPT_MAX_BATCHED},
    {"max-model-len", required_argument, NULL, OPT_MAX_MODEL_LEN},
    {"enable-prefix-caching", no_argument, NULL, OPT_PREFIX_ON},
    {"no-enable-prefix-caching", no_argument, NULL, OPT_PREFIX_OFF},
    {"gpu-memory-utilization", required_argument, NULL, OPT_GPU_UTIL},
    {"num-gpu-blocks-override", required_argument, NULL, OPT_NUM_BLOCKS},
    {"enforce-eager", no_argument, NULL, OPT_EAGER},
    {"disable-custom-all-reduce", no_argument, NULL, OPT_NO_CUSTOM_AR},
    {"load-format", required_argument, NULL, OPT_LOAD_FORMAT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"cpu-kvcache-space", required_argument, NULL, OPT_KV_SPACE},
    {"num-threads", required_argument, NULL, OPT_THREADS},
    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
    {"top-p", required_argument, NULL, OPT_TOP_P},
    {"top-k", required_argument, NULL, OPT_TOP_K},
    {"min-p", required_argument, NULL, OPT_MIN_P},
    {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
    {"min-tokens", required_argument, NULL, OPT_MIN_TOKENS},
    {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
    {"presence-penalty", required_argument, NULL, OPT_PRESENCE},
    {"frequency-penalty", required_argument, NULL, OPT_FREQUENCY},
    {"repetition-penalty", required_argument, NULL, OPT_REPETITION},
    {"n", required_argument, NULL, OPT_N},
    {"logprobs", required_argument, NULL, OPT_LOGPROBS},
    {"stop-token-ids", required_argument, NULL, OPT_STOP_IDS},
    {"sampling-seed", required_argument, NULL, OPT_SAMPLING_SEED},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"help", no_argument, NULL, OPT_HELP},
    {"tensor-parallel-size", required_argument, NULL, OPT_TP},
    {"batch-invariant", no_argument, NULL, OPT_BATCH_INVARIANT},
    {"trust-remote-code", no_argument, NULL, OPT_TRUST},
    {"enable-lora", no_argument, NULL, OPT_ENABLE_LORA},
    {"lora-modules", required_argument, NULL, OPT_LORA_MODULES},
    {"max-loras", required_argument, NULL, OPT_MAX_LORAS},
    {"max-lora-rank", required_argument, NULL, OPT_MAX_LORA_RANK},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: vesta generate --model PATH --input FILE --output FILE [options]\n"
               "\n"
               "Offline batch generation. FILE lines: {\"prompt_token_ids\": [...]} or {\"prompt\": \"text\"},\n"
               "with optional per-line sampling overrides ({\"max_tokens\": 32, \"temperature\": 0, ...}).\n"
               "\n"
               "engine (vLLM names and defaults):\n"
               "  --backend cpu|cuda              compute backend (cpu)\n"
               "  --block-size N                  tokens per KV block (16)\n"
               "  --max-num-seqs N                sequences per step (vLLM's offline default: 1024 on CUDA GPUs\n"
               "                                  of >= 70 GiB other than A100, else 256)\n"
               "  --max-num-batched-tokens N      tokens per step; longer prompts are chunked (16384 on those\n"
               "                                  GPUs, else 8192)\n"
               "  --max-model-len N               context length (the model's max_position_embeddings)\n"
               "  --[no-]enable-prefix-caching    automatic prefix caching (on)\n"
               "  --gpu-memory-utilization F      fraction of GPU memory to use (0.9)\n"
               "  --num-gpu-blocks-override N     fixed number of KV blocks\n"
               "  --cpu-kvcache-space GIB         CPU backend KV cache size (4)\n"
               "  --num-threads N                 CPU threads (all cores)\n"
               "  --tensor-parallel-size N        ranks of one sharded replica (1): N processes; cuda: GPUs 0..N-1\n"
               "  --enforce-eager                 no CUDA graphs\n"
               "  --disable-custom-all-reduce     cuda, N > 1: NCCL for every all-reduce\n"
               "  --batch-invariant               a sequence's results do not depend on its batch (greedy tokens\n"
               "                                  bit-identical); slower; not with --tensor-parallel-size > 1\n"
               "  --load-format auto|dummy        dummy: random weights of the model's shapes (auto)\n"
               "  --seed N                        seeds the per-request seeds of unseeded requests (0)\n"
               "  --trust-remote-code             accepted as vLLM accepts it (Vesta never runs a model's code)\n"
               "  --enable-lora                   serve LoRA adapters beside the base model\n"
               "  --lora-modules NAME=PATH ...    PEFT adapter directories; a line picks one with \"lora_name\"\n"
               "  --max-loras N                   distinct adapters in one step (1)\n"
               "  --max-lora-rank N               largest adapter rank accepted (16)\n"
               "sampling (defaults for every line):\n"
               "  --temperature F (1.0)  --top-p F (1.0)  --top-k N (-1)  --min-p F (0)\n"
               "  --max-tokens N (16)  --min-tokens N (0)  --ignore-eos  --n N (1)\n"
               "  --presence-penalty F (0)  --frequency-penalty F (0)  --repetition-penalty F (1)\n"
               "  --logprobs N (none)  --stop-token-ids ID,ID,...  --sampling-seed N (none)\n"
               "  --no-progress                   no progress bar even on a terminal\n");
}

static bool parse_stop_ids(const char *s, vesta_sampling_params *sp)
{
    sp->num_stop_token_ids = 0;
    char *copy = strdup(s), *save = NULL;
    bool ok = copy != NULL;
    for (char *tok = ok ? strtok_r(copy, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
        long long v;
        if (sp->num_stop_token_ids == VESTA_MAX_STOP_TOKEN_IDS || !vesta_cli_parse_int(tok, 0, INT32_MAX, &v)) {
            ok = false;
            break;
        }
        sp->stop_token_ids[sp->num_stop_token_ids++] = (int32_t)v;
    }
    free(copy);
    return ok;
}

/* Returns 0 on success, 2 on a usage error (message printed). */
static int parse_args(gen_ctx *g, int argc, char **argv)
{
    vesta_engine_config_init(&g->cfg);
    vesta_sampling_params_init(&g->sp);
    g->progress = isatty(2);
    optind = 1;
    opterr = 0;
    int c;
    /* "+": options in order, no permutation, so --lora-modules can take several values */
    while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
        long long iv = 0;
        double dv = 0;
        const char *a = optarg;
        bool ok = true;
        switch (c) {
        case OPT_MODEL: g->cfg.model = a; break;
        case OPT_INPUT: g->input = a; break;
        case OPT_OUTPUT: g->output = a; break;
        case OPT_BACKEND: g->cfg.backend = a; break;
        case OPT_BLOCK_SIZE: ok = vesta_cli_parse_int(a, 1, 1024, &iv); g->cfg.block_size = (int)iv; break;
        case OPT_MAX_NUM_SEQS: ok = vesta_cli_parse_int(a, 1, 1 << 20, &iv); g->cfg.max_num_seqs = (int)iv; break;
        case OPT_MAX_BATCHED: ok = vesta_cli_parse_int(a, 1, 1 << 24, &iv); g->cfg.max_num_batched_tokens = (int)iv; break;
        case OPT_MAX_MODEL_LEN: ok = vesta_cli_parse_int(a, 1, 1 << 24, &iv); g->cfg.max_model_len = (int)iv; break;
        case OPT_PREFIX_ON: g->cfg.enable_prefix_caching = true; break;
        case OPT_PREFIX_OFF: g->cfg.enable_prefix_caching = false; break;
        case OPT_GPU_UTIL:
            ok = vesta_cli_parse_double(a, &dv) && dv > 0 && dv <= 1;
            g->cfg.backend_opts.gpu_memory_utilization = dv;
            break;
        case OPT_NUM_BLOCKS: ok = vesta_cli_parse_int(a, 1, 1 << 28, &iv); g->cfg.num_gpu_blocks_override = (int)iv; break;
        case OPT_EAGER: g->cfg.backend_opts.enforce_eager = true; break;
        case OPT_NO_CUSTOM_AR: g->cfg.backend_opts.disable_custom_all_reduce = true; break;
        case OPT_BATCH_INVARIANT: g->cfg.backend_opts.batch_invariant = true; break;
        case OPT_LOAD_FORMAT:
            ok = strcmp(a, "auto") == 0 || strcmp(a, "dummy") == 0;
            g->cfg.backend_opts.load_dummy = strcmp(a, "dummy") == 0;
            break;
        case OPT_SEED:
            ok = vesta_cli_parse_int(a, 0, INT64_MAX, &iv);
            g->cfg.seed = (uint64_t)iv;
            g->cfg.backend_opts.dummy_seed = (uint64_t)iv;
            break;
        case OPT_KV_SPACE:
            ok = vesta_cli_parse_double(a, &dv) && dv > 0 && dv < 1 << 20;
            g->cfg.backend_opts.cpu_kv_cache_bytes = (size_t)(dv * 1024 * 1024 * 1024);
            break;
        case OPT_THREADS: ok = vesta_cli_parse_int(a, 0, 4096, &iv); g->cfg.backend_opts.num_threads = (int)iv; break;
        case OPT_TP: ok = vesta_cli_parse_int(a, 1, 64, &iv); g->cfg.backend_opts.tp_size = (int)iv; break;
        case OPT_TEMPERATURE: ok = vesta_cli_parse_double(a, &dv); g->sp.temperature = (float)dv; break;
        case OPT_TOP_P: ok = vesta_cli_parse_double(a, &dv); g->sp.top_p = (float)dv; break;
        case OPT_TOP_K: ok = vesta_cli_parse_int(a, -1, INT32_MAX, &iv); g->sp.top_k = (int)iv; break;
        case OPT_MIN_P: ok = vesta_cli_parse_double(a, &dv); g->sp.min_p = (float)dv; break;
        case OPT_MAX_TOKENS: ok = vesta_cli_parse_int(a, 1, INT32_MAX, &iv); g->sp.max_tokens = (int)iv; break;
        case OPT_MIN_TOKENS: ok = vesta_cli_parse_int(a, 0, INT32_MAX, &iv); g->sp.min_tokens = (int)iv; break;
        case OPT_IGNORE_EOS: g->sp.ignore_eos = true; break;
        case OPT_PRESENCE: ok = vesta_cli_parse_double(a, &dv); g->sp.presence_penalty = (float)dv; break;
        case OPT_FREQUENCY: ok = vesta_cli_parse_double(a, &dv); g->sp.frequency_penalty = (float)dv; break;
        case OPT_REPETITION: ok = vesta_cli_parse_double(a, &dv); g->sp.repetition_penalty = (float)dv; break;
        case OPT_N: ok = vesta_cli_parse_int(a, 1, 1 << 16, &iv); g->sp.n = (int)iv; break;
        case OPT_LOGPROBS: ok = vesta_cli_parse_int(a, 0, VESTA_MAX_LOGPROBS, &iv); g->sp.logprobs = (int)iv; break;
        case OPT_STOP_IDS: ok = parse_stop_ids(a, &g->sp); break;
        case OPT_SAMPLING_SEED: ok = vesta_cli_parse_int(a, 0, INT64_MAX, &iv); g->sp.seed = iv; break;
        case OPT_NO_PROGRESS: g->progress = false; break;
        case OPT_TRUST: break; /* vLLM's flag: nothing here runs a model's code */
        case OPT_ENABLE_LORA:
            g->cfg.enable_lora = true;
            break;
        case OPT_LORA_MODULES:
            if (!vesta_cli_take_lora_modules("vesta generate", &g->cfg, g->loras, a, argc, argv)) return 2;
            break;
        case OPT_MAX_LORAS:
            ok = vesta_cli_parse_int(a, 1, VESTA_LORA_MAX_ADAPTERS, &iv);
            g->cfg.max_loras = (int)iv;
            break;
        case OPT_MAX_LORA_RANK:
            ok = vesta_cli_parse_int(a, 1, VESTA_LORA_MAX_RANK, &iv);
            g->cfg.max_lora_rank = (int)iv;
            break;
        case OPT_HELP: usage(stdout); return -1;
        default:
            fprintf(stderr, "vesta generate: unknown or incomplete option '%s'\n", argv[optind - 1]);
            fprintf(stderr, "run 'vesta generate --help' for the options\n");
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "vesta generate: invalid value '%s' for --%s\n", a, vesta_cli_option_name(options, c));
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vesta generate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!g->cfg.model || !g->input || !g->output) {
        fprintf(stderr, "vesta generate: --model, --input and --output are required\n");
        return 2;
    }
    vesta_error err = {0};
    if (vesta_sampling_params_validate(&g->sp, INT32_MAX, &err) != VESTA_OK) {
        fprintf(stderr, "vesta generate: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* ---- input lines ---- */

static bool get_float(json_t *o, const char *k, float *v, char **error)
{
    json_t *x = json_object_get(o, k);
    if (x == NULL || json_is_null(x))
        return true;
    if (!json_is_number(x)) {
        if (asprintf(error, "\"%s\" must be a number", k) < 0)
            *error = NULL;
        return false;
    }
    *v = (float)json_number_value(x);
    return true;
}

static bool get_int(json_t *o, const char *k, long long lo, long long hi, long long *v, char **error)
{
    json_t *x = json_object_get(o, k);
    if (x == NULL || json_is_null(x))
        return true;
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi) {
        if (asprintf(error, "\"%s\" must be an integer in [%lld, %lld]", k, lo, hi) < 0)
            *error = NULL;
        return false;
    }
    *v = json_integer_value(x);
    return true;
}

/* Per-line overrides of the command-line sampling parameters (vLLM names). */
static bool line_params(json_t *o, vesta_sampling_params *sp, char **error)
{
    long long v;
    bool ok = get_float(o, "temperature", &sp->temperature, error) &&
              get_float(o, "top_p", &sp->top_p, error) && get_float(o, "min_p", &sp->min_p, error) &&
              get_float(o, "presence_penalty", &sp->presence_penalty, error) &&
              get_float(o, "frequency_penalty", &sp->frequency_penalty, error) &&
              get_float(o, "repetition_penalty", &sp->repetition_penalty, error);
#define INT_FIELD(name, lo, hi, dst)                                                   \
    if (ok && (v = (dst), get_int(o, name, lo, hi, &v, error)))                        \
        (dst) = v;                                                                     \
    else                                                                               \
        ok = false;
    INT_FIELD("top_k", -1, INT32_MAX, sp->top_k)
    INT_FIELD("max_tokens", 1, INT32_MAX, sp->max_tokens)
    INT_FIELD("min_tokens", 0, INT32_MAX, sp->min_tokens)
    INT_FIELD("n", 1, 1 << 16, sp->n)
    INT_FIELD("logprobs", 0, VESTA_MAX_LOGPROBS, sp->logprobs)
    INT_FIELD("seed", 0, INT64_MAX, sp->seed)
#undef INT_FIELD
    if (!ok)
        return false;
    json_t *ie = json_object_get(o, "ignore_eos");
    if (ie != NULL && !json_is_null(ie)) {
        if (!json_is_boolean(ie)) {
            *error = strdup("\"ignore_eos\" must be a boolean");
            return false;
        }
        sp->ignore_eos = json_is_true(ie);
    }
    json_t *st = json_object_get(o, "stop_token_ids");
    if (st != NULL && !json_is_null(st)) {
        if (!json_is_array(st) || json_array_size(st) > VESTA_MAX_STOP_TOKEN_IDS) {
            if (asprintf(error, "\"stop_token_ids\" must be an array of at most %d ids",
                         VESTA_MAX_STOP_TOKEN_IDS) < 0)
                *error = NULL;
            return false;
        }
        sp->num_stop_token_ids = 0;
        for (size_t i = 0; i < json_array_size(st); i++) {
            json_t *x = json_array_get(st, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
                *error = strdup("\"stop_token_ids\" must hold non-negative integers");
                return false;
            }
            sp->stop_token_ids[sp->num_stop_token_ids++] = (int32_t)json_integer_value(x);
        }
    }
    return true;
}

static int32_t *line_prompt(gen_ctx *g, json_t *o, int *n, char **error)
{
    json_t *ids = json_object_get(o, "prompt_token_ids"), *text = json_object_get(o, "prompt");
    if (ids != NULL) {
        if (!json_is_array(ids) || json_array_size(ids) > (size_t)INT32_MAX / 4) {
            *error = strdup("\"prompt_token_ids\" must be an array of token ids");
            return NULL;
        }
        *n = (int)json_array_size(ids);
        int32_t *p = malloc(((size_t)*n + 1) * sizeof(int32_t));
        for (int i = 0; p && i < *n; i++) {
            json_t *x = json_array_get(ids, (size_t)i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
                if (asprintf(error, "\"prompt_token_ids\"[%d] is not a token id", i) < 0)
                    *error = NULL;
                free(p);
                return NULL;
            }
            p[i] = (int32_t)json_integer_value(x);
        }
        return p;
    }
    if (text != NULL) {
        if (!json_is_string(text)) {
            *error = strdup("\"prompt\" must be a string");
            return NULL;
        }
        return tokenize(g, json_string_value(text), json_string_length(text), n, error);
    }
    *error = strdup("the line has neither \"prompt_token_ids\" nor \"prompt\"");
    return NULL;
}

/* Parses line i and queues it; on any problem the line gets its error instead. */
static void submit_line(gen_ctx *g, int i, const char *text, size_t len)
{
    line_result *L = &g->lines[i];
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    char *error = NULL;
    int32_t *prompt = NULL;
    int n = 0;
    vesta_sampling_params sp = g->sp;
    if (o == NULL || !json_is_object(o)) {
        if (asprintf(&error, "line %d is not a JSON object: %s", i + 1, o ? "not an object" : jerr.text) < 0)
            error = NULL;
    } else if (line_params(o, &sp, &error)) {
        prompt = line_prompt(g, o, &n, &error);
    }
    json_t *lj = o ? json_object_get(o, "lora_name") : NULL;
    const int lora_id = lj && !json_is_null(lj) ? vesta_engine_lora_id(g->engine, json_string_value(lj)) : 0;
    if (prompt != NULL && (lora_id < 0 || (lj && !json_is_null(lj) && !json_is_string(lj)))) {
        if (asprintf(&error, "\"lora_name\" names no adapter of --lora-modules") < 0) error = NULL;
        free(prompt);
        prompt = NULL;
    }
    if (prompt != NULL) {
        char id[32];
        snprintf(id, sizeof(id), "%d", i);
        vesta_error err = {0};
        if (vesta_engine_add_request_lora(g->engine, id, prompt, n, &sp, lora_id, &err) != VESTA_OK) {
            error = strdup(err.msg);
        } else {
            L->n = sp.n;
            L->num_prompt = n;
            L->want_logprobs = sp.logprobs >= 0;
            L->seqs = calloc((size_t)sp.n, sizeof(seq_result));
            if (L->seqs == NULL)
                error = strdup("out of memory");
        }
    }
    if (error == NULL && prompt == NULL)
        error = strdup("invalid line");
    L->error = error;
    free(prompt);
    json_decref(o);
}

/* ---- outputs ---- */

static bool line_done(const line_result *L)
{
    return L->error != NULL || (L->n > 0 && L->num_finished == L->n);
}

static json_t *logprob_entry(const vesta_sample_result *r)
{
    json_t *top = json_array();
    for (int i = 0; i < r->num_top; i++)
        json_array_append_new(top, json_pack("[i,f]", r->top_ids[i], (double)r->top_logprobs[i]));
    return json_pack("{s:i,s:f,s:o}", "token", r->token, "logprob", (double)r->logprob, "top", top);
}

static void record(gen_ctx *g, const vesta_seq_output *o)
{
    int i = atoi(o->request_id);
    if (i < 0 || i >= g->num_lines)
        return;
    line_result *L = &g->lines[i];
    if (L->seqs == NULL || o->seq_index < 0 || o->seq_index >= L->n)
        return;
    seq_result *s = &L->seqs[o->seq_index];
    for (int k = 0; k < o->num_new; k++) {
        if (s->num == s->cap) {
            int cap = s->cap ? s->cap * 2 : 32;
            int32_t *ids = realloc(s->ids, (size_t)cap * sizeof(int32_t));
            if (ids == NULL)
                continue;
            s->ids = ids;
            s->cap = cap;
        }
        s->ids[s->num++] = o->new_token_ids[k];
        if (o->new_logprobs) {
            if (s->logprobs == NULL)
                s->logprobs = json_array();
            json_array_append_new(s->logprobs, logprob_entry(&o->new_logprobs[k]));
        }
    }
    L->num_cached = o->num_cached_tokens;
    if (o->finish != VESTA_FINISH_NONE && s->finish == VESTA_FINISH_NONE) {
        s->finish = o->finish;
        s->stop_token = o->stop_token;
        L->num_finished++;
    }
}

static bool write_line(gen_ctx *g, int i)
{
    line_result *L = &g->lines[i];
    json_t *j;
    if (L->error) {
        j = json_pack("{s:i,s:s}", "index", i, "error", L->error);
    } else {
        json_t *outs = json_array();
        for (int k = 0; k < L->n; k++) {
            seq_result *s = &L->seqs[k];
            json_t *ids = json_array();
            for (int t = 0; t < s->num; t++)
                json_array_append_new(ids, json_integer(s->ids[t]));
            json_t *o = json_pack("{s:i,s:o,s:s,s:i}", "index", k, "token_ids", ids,
                                  "finish_reason", vesta_finish_reason_str(s->finish), "num_tokens", s->num);
            json_t *text = detokenize(g, s->ids, s->num);
            if (text)
                json_object_set_new(o, "text", text);
            json_object_set_new(o, "stop_reason", s->finish == VESTA_FINISH_STOP && s->stop_token >= 0
                                                      ? json_integer(s->stop_token) : json_null());
            if (L->want_logprobs)
                json_object_set_new(o, "logprobs", s->logprobs ? s->logprobs : json_array());
            s->logprobs = NULL;
            json_array_append_new(outs, o);
        }
        j = json_pack("{s:i,s:i,s:i,s:o}", "index", i, "num_prompt_tokens", L->num_prompt,
                      "num_cached_tokens", L->num_cached, "outputs", outs);
    }
    bool ok = j != NULL && json_dumpf(j, g->out, JSON_COMPACT | JSON_ENSURE_ASCII) == 0 &&
              fputc('\n', g->out) != EOF;
    json_decref(j);
    for (int k = 0; k < L->n && L->seqs; k++) {
        free(L->seqs[k].ids);
        json_decref(L->seqs[k].logprobs);
    }
    free(L->seqs);
    free(L->error);
    L->seqs = NULL;
    L->error = NULL;
    return ok;
}

/* Writes every finished line that all earlier lines allow, in input order. */
static bool flush_done(gen_ctx *g)
{
    while (g->next_to_write < g->num_lines && line_done(&g->lines[g->next_to_write])) {
        if (!write_line(g, g->next_to_write))
            return false;
        g->next_to_write++;
    }
    return true;
}

static void show_progress(gen_ctx *g, double t0, uint64_t tokens, bool last)
{
    if (!g->progress)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double dt = ts.tv_sec + ts.tv_nsec * 1e-9 - t0;
    int done = g->next_to_write, width = 30;
    int fill = g->num_lines ? (int)((long long)done * width / g->num_lines) : width;
    fprintf(stderr, "\r[%.*s%*s] %d/%d lines, %.1f tok/s", fill,
            "##############################", width - fill, "", done, g->num_lines,
            dt > 0 ? (double)tokens / dt : 0.0);
    if (last)
        fputc('\n', stderr);
}

/* ---- the command ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad || buf == NULL) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int run(gen_ctx *g)
{
    size_t len = 0;
    char *input = read_file(g->input, &len);
    if (input == NULL) {
        fprintf(stderr, "vesta generate: cannot read %s: %s\n", g->input, strerror(errno));
        return 1;
    }
    /* Lines: blank lines are skipped (they carry no request). */
    int cap = 1024;
    char **starts = malloc((size_t)cap * sizeof(char *));
    size_t *lens = malloc((size_t)cap * sizeof(size_t));
    for (char *p = input; starts && lens && p < input + len;) {
        char *nl = memchr(p, '\n', (size_t)(input + len - p));
        char *end = nl ? nl : input + len;
        char *q = p;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < end) {
            if (g->num_lines == cap) {
                cap *= 2;
                starts = realloc(starts, (size_t)cap * sizeof(char *));
                lens = realloc(lens, (size_t)cap * sizeof(size_t));
                if (!starts || !lens)
                    break;
            }
            starts[g->num_lines] = p;
            lens[g->num_lines++] = (size_t)(end - p);
        }
        p = end + 1;
    }
    g->lines = calloc((size_t)g->num_lines + 1, sizeof(line_result));
    g->out = fopen(g->output, "wb");
    int rc = 0;
    if (!starts || !lens || !g->lines) {
        fprintf(stderr, "vesta generate: out of memory\n");
        rc = 1;
    } else if (g->out == NULL) {
        fprintf(stderr, "vesta generate: cannot write %s: %s\n", g->output, strerror(errno));
        rc = 1;
    }
    for (int i = 0; rc == 0 && i < g->num_lines; i++)
        submit_line(g, i, starts[i], lens[i]);
    free(starts);
    free(lens);
    free(input);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t0 = ts.tv_sec + ts.tv_nsec * 1e-9;
    uint64_t tokens = 0;
    while (rc == 0 && vesta_engine_has_unfinished(g->engine)) {
        vesta_step_output out;
        vesta_error err = {0};
        if (vesta_engine_step(g->engine, &out, &err) != VESTA_OK)
            fprintf(stderr, "\nvesta generate: %s (the requests of that step failed)\n", err.msg);
        for (int k = 0; k < out.count; k++) {
            record(g, &out.items[k]);
            tokens += (uint64_t)out.items[k].num_new;
        }
        if (!flush_done(g)) {
            fprintf(stderr, "vesta generate: writing %s failed: %s\n", g->output, strerror(errno));
            rc = 1;
        }
        show_progress(g, t0, tokens, false);
    }
    if (rc == 0 && !flush_done(g))
        rc = 1;
    show_progress(g, t0, tokens, true);
    if (g->out && fclose(g->out) != 0 && rc == 0) {
        fprintf(stderr, "vesta generate: writing %s failed: %s\n", g->output, strerror(errno));
        rc = 1;
    }
    for (int i = 0; g->lines && i < g->num_lines; i++) {
        free(g->lines[i].error);
        for (int k = 0; k < g->lines[i].n && g->lines[i].seqs; k++) {
            free(g->lines[i].seqs[k].ids);
            json_decref(g->lines[i].seqs[k].logprobs);
        }
        free(g->lines[i].seqs);
    }
    free(g->lines);
    return rc;
}

int vesta_cmd_generate(int argc, char **argv)
{
    gen_ctx g;
    memset(&g, 0, sizeof(g));
    int rc = parse_args(&g, argc, argv);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    vesta_error err = {0};
    g.engine = vesta_engine_create(&g.cfg, &err);
    if (g.engine == NULL) {
        fprintf(stderr, "vesta generate: %s\n", err.msg);
        return 1;
    }
    tokenizer_open(&g);
    rc = run(&g);
    vesta_engine_stats st;
    vesta_engine_get_stats(g.engine, &st);
    fprintf(stderr, "vesta generate: %llu prompt + %llu generated tokens in %llu steps; prefix cache "
                    "%llu/%llu tokens hit; %llu preemptions\n",
            (unsigned long long)st.prompt_tokens_total, (unsigned long long)st.generation_tokens_total,
            (unsigned long long)st.steps, (unsigned long long)st.prefix_cache_hits,
            (unsigned long long)st.prefix_cache_queries, (unsigned long long)st.num_preemptions);
    tokenizer_close(&g);
    vesta_engine_destroy(g.engine);
    return rc;
}
