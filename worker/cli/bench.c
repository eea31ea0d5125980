/* `vesta bench`: benchmarks of the offline engine.
 *   throughput  N requests of random prompts (input-len tokens) -> output-len tokens each, all
 *               queued at once (vLLM's benchmark_throughput): requests/s, total and output tok/s
 *   latency     one request at a time (batch 1): time to first token and decode tokens/s, median
 *               over --iters runs after --warmup runs (vLLM's benchmark_latency)
 *   prefix      two requests sharing a --prefix-len token document, one after the other: the
 *               second one's time to first token against the first's (automatic prefix caching)
 * Every mode also reports the engine start-up time (process start to ready). Timings are wall
 * clock around engine steps: the engine synchronizes the device at the end of every step. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli_num.h"
#ifdef VESTA_HAVE_BENCH_SERVE
#include "bench_serve.h"
#endif
#include "sampler.h"
#include "vesta/engine.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Process start time, so start-up includes the dynamic loader and CUDA initialization. */
static double process_start_s(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    unsigned long long start = 0;
    if (f) {
        /* field 22: starttime in clock ticks since boot */
        char buf[1024];
        if (fgets(buf, sizeof buf, f)) {
            char *p = strrchr(buf, ')');
            int field = 2;
            for (char *t = p ? strtok(p + 1, " ") : NULL; t; t = strtok(NULL, " "))
                if (++field == 22) {
                    start = strtoull(t, NULL, 10);
                    break;
                }
        }
        fclose(f);
    }
    struct timespec up;
    clock_gettime(CLOCK_BOOTTIME, &up);
    double boot_now = up.tv_sec + up.tv_nsec * 1e-9;
    double age = start ? boot_now - (double)start / (double)sysconf(_SC_CLK_TCK) : 0.0;
    return now_s() - (age > 0 ? age : 0.0);
}

typedef struct bench_args {
    const char *mode;
    vesta_engine_config cfg;
    int num_prompts, input_len, output_len, iters, warmup, prefix_len;
    double temperature;
    uint64_t seed;
    const char *json_out;
    vesta_lora_spec loras[VESTA_LORA_MAX_ADAPTERS];
} bench_args;

enum {
    O_MODEL = 1000,
    O_BACKEND,
    O_BLOCK,
    O_SEQS,
    O_BATCHED,
    O_MODEL_LEN,
    O_PC_ON,
    O_PC_OFF,
    O_UTIL,
    O_NBLOCKS,
    O_EAGER,
    O_NO_CUSTOM_AR,
    O_LOADFMT,
    O_SEED,
    O_NUMP,
    O_IN,
    O_OUT,
    O_ITERS,
    O_WARMUP,
    O_PREFIX,
    O_TEMP,
    O_JSON,
    O_HELP,
    O_TP,
    O_INVARIANT,
    O_TRUST,
    O_ENABLE_LORA,
    O_LORA_MODULES,
    O_MAX_LORAS,
    O_MAX_LORA_RANK
};
static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                     {"backend", required_argument, 0, O_BACKEND},
                                     {"block-size", required_argument, 0, O_BLOCK},
                                     {"max-num-seqs", required_argument, 0, O_SEQS},
                                     {"max-num-batched-tokens", required_argument, 0, O_BATCHED},
                                     {"max-model-len", required_argument, 0, O_MODEL_LEN},
                                     {"enable-prefix-caching", no_argument, 0, O_PC_ON},
                                     {"no-enable-prefix-caching", no_argument, 0, O_PC_OFF},
                                     {"gpu-memory-utilization", required_argument, 0, O_UTIL},
                                     {"num-gpu-blocks-override", required_argument, 0, O_NBLOCKS},
                                     {"enforce-eager", no_argument, 0, O_EAGER},
                                     {"disable-custom-all-reduce", no_argument, 0, O_NO_CUSTOM_AR},
                                     {"load-format", required_argument, 0, O_LOADFMT},
                                     {"seed", required_argument, 0, O_SEED},
                                     {"num-prompts", required_argument, 0, O_NUMP},
                                     {"input-len", required_argument, 0, O_IN},
                                     {"output-len", required_argument, 0, O_OUT},
                                     {"num-iters", required_argument, 0, O_ITERS},
                                     {"num-iters-warmup", required_argument, 0, O_WARMUP},
                                     {"prefix-len", required_argument, 0, O_PREFIX},
                                     {"temperature", required_argument, 0, O_TEMP},
                                     {"output-json", required_argument, 0, O_JSON},
                                     {"tensor-parallel-size", required_argument, 0, O_TP},
                                     {"batch-invariant", no_argument, 0, O_INVARIANT},
                                     {"trust-remote-code", no_argument, 0, O_TRUST},
                                     {"help", no_argument, 0, O_HELP},
                                     {"enable-lora", no_argument, 0, O_ENABLE_LORA},
                                     {"lora-modules", required_argument, 0, O_LORA_MODULES},
                                     {"max-loras", required_argument, 0, O_MAX_LORAS},
                                     {"max-lora-rank", required_argument, 0, O_MAX_LORA_RANK},
                                     {0, 0, 0, 0}};

static void usage(FILE *f)
{
    fprintf(f, "usage: vesta bench throughput|latency|prefix --model PATH [options]\n"
               "       vesta bench serve [options]   (HTTP against a running server: vesta bench serve --help)\n"
               "  --num-prompts N (1000)  --input-len N (512)  --output-len N (128)   throughput\n"
               "  --num-iters N (10)  --num-iters-warmup N (2)                        latency, prefix\n"
               "  --prefix-len N (4096)                                               prefix\n"
               "  --temperature F (1.0; 0 = greedy)  --seed N (0)  --output-json FILE\n"
               "engine: --backend cpu|cuda (cuda)  --load-format auto|dummy  --max-num-seqs N  --max-model-len N\n"
               "  --max-num-batched-tokens N  --block-size N  --gpu-memory-utilization F  --enforce-eager\n"
               "  --[no-]enable-prefix-caching  --num-gpu-blocks-override N  --tensor-parallel-size N\n"
               "  --disable-custom-all-reduce  (N > 1: NCCL for every all-reduce)\n"
               "  --batch-invariant   a sequence's results do not depend on its batch (greedy tokens\n"
               "                      bit-identical); slower\n"
               "  --trust-remote-code accepted as vLLM accepts it (Vesta never runs a model's code)\n"
               "  --enable-lora --lora-modules NAME=PATH ... [--max-loras N] [--max-lora-rank N]\n"
               "                      requests take the adapters in turn (request i: adapter i mod count);\n"
               "                      latency and prefix: the first adapter\n");
}

static int parse(bench_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    vesta_engine_config_init(&a->cfg);
    a->cfg.backend = "cuda";
    a->num_prompts = 1000;
    a->input_len = 512;
    a->output_len = 128;
    a->iters = 10;
    a->warmup = 2;
    a->prefix_len = 4096;
    a->temperature = 1.0;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    a->mode = argv[1];
    if (strcmp(a->mode, "--help") == 0) {
        usage(stdout);
        return -1;
    }
    if (strcmp(a->mode, "throughput") && strcmp(a->mode, "latency") && strcmp(a->mode, "prefix")) {
        fprintf(stderr, "vesta bench: unknown mode '%s'\n", a->mode);
        usage(stderr);
        return 2;
    }
    optind = 2;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) { /* "+": --lora-modules takes several values */
        const char *s = optarg;
        long long v = 0;
        double d = 0;
        bool intok = vesta_cli_parse_int(s, 0, 1LL << 30, &v);
        bool ok = true;
        switch (c) {
        case O_MODEL: a->cfg.model = s; break;
        case O_BACKEND: a->cfg.backend = s; break;
        case O_BLOCK: ok = intok && v >= 1; a->cfg.block_size = (int)v; break;
        case O_SEQS: ok = intok && v >= 1; a->cfg.max_num_seqs = (int)v; break;
        case O_BATCHED: ok = intok && v >= 1; a->cfg.max_num_batched_tokens = (int)v; break;
        case O_MODEL_LEN: ok = intok && v >= 1; a->cfg.max_model_len = (int)v; break;
        case O_PC_ON: a->cfg.enable_prefix_caching = true; break;
        case O_PC_OFF: a->cfg.enable_prefix_caching = false; break;
        case O_UTIL:
            ok = vesta_cli_parse_double(s, &d) && d > 0 && d <= 1;
            a->cfg.backend_opts.gpu_memory_utilization = d;
            break;
        case O_NBLOCKS: ok = intok && v >= 1; a->cfg.num_gpu_blocks_override = (int)v; break;
        case O_EAGER: a->cfg.backend_opts.enforce_eager = true; break;
        case O_NO_CUSTOM_AR: a->cfg.backend_opts.disable_custom_all_reduce = true; break;
        case O_INVARIANT: a->cfg.backend_opts.batch_invariant = true; break;
        case O_TRUST: break; /* vLLM's flag: nothing here runs a model's code */
        case O_ENABLE_LORA:
            a->cfg.enable_lora = true;
            break;
        case O_LORA_MODULES:
            if (!vesta_cli_take_lora_modules("vesta bench", &a->cfg, a->loras, s, argc, argv)) return 2;
            break;
        case O_MAX_LORAS:
            ok = intok && v >= 1 && v <= VESTA_LORA_MAX_ADAPTERS;
            a->cfg.max_loras = (int)v;
            break;
        case O_MAX_LORA_RANK:
            ok = intok && v >= 1 && v <= VESTA_LORA_MAX_RANK;
            a->cfg.max_lora_rank = (int)v;
            break;
        case O_TP: ok = intok && v >= 1 && v <= 64; a->cfg.backend_opts.tp_size = (int)v; break;
        case O_LOADFMT:
            ok = strcmp(s, "auto") == 0 || strcmp(s, "dummy") == 0;
            a->cfg.backend_opts.load_dummy = strcmp(s, "dummy") == 0;
            break;
        case O_SEED: ok = intok; a->seed = (uint64_t)v; a->cfg.seed = (uint64_t)v; a->cfg.backend_opts.dummy_seed = (uint64_t)v; break;
        case O_NUMP: ok = intok && v >= 1; a->num_prompts = (int)v; break;
        case O_IN: ok = intok && v >= 1; a->input_len = (int)v; break;
        case O_OUT: ok = intok && v >= 1; a->output_len = (int)v; break;
        case O_ITERS: ok = intok && v >= 1; a->iters = (int)v; break;
        case O_WARMUP: ok = intok; a->warmup = (int)v; break;
        case O_PREFIX: ok = intok && v >= 1; a->prefix_len = (int)v; break;
        case O_TEMP:
            ok = vesta_cli_parse_double(s, &d) && d >= 0;
            a->temperature = d;
            break;
        case O_JSON: a->json_out = s; break;
        case O_HELP: usage(stdout); return -1;
        default:
            fprintf(stderr, "vesta bench: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "vesta bench: invalid value '%s' for --%s\n", s, vesta_cli_option_name(opts, c));
            return 2;
        }
    }
    if (!a->cfg.model) {
        fprintf(stderr, "vesta bench: --model is required\n");
        return 2;
    }
    return 0;
}

/* Random prompt ids in [0, vocab) (vLLM's random dataset draws them uniformly too). */
static void random_ids(uint64_t *state, int vocab, int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) {
        *state += 0x9E3779B97F4A7C15ULL;
        ids[i] = (int32_t)(vesta_rng_mix(*state) % (uint64_t)vocab);
    }
}

static void params(const bench_args *a, int max_tokens, vesta_sampling_params *sp)
{
    vesta_sampling_params_init(sp);
    sp->temperature = (float)a->temperature;
    sp->max_tokens = max_tokens;
    sp->ignore_eos = true;
}

/* Runs the engine until idle; *first_token_s gets the time the first token of request 0
 * appeared (relative to t0) when not NULL. Returns output tokens produced, or -1. */
static long long drain(vesta_engine *e, double t0, double *first_token_s)
{
    long long toks = 0;
    while (vesta_engine_has_unfinished(e)) {
        vesta_step_output out;
        vesta_error err = {0};
        if (vesta_engine_step(e, &out, &err) != VESTA_OK) {
            fprintf(stderr, "vesta bench: step failed: %s\n", err.msg);
            return -1;
        }
        for (int k = 0; k < out.count; k++) {
            if (out.items[k].finish == VESTA_FINISH_ERROR) return -1;
            toks += out.items[k].num_new;
            if (first_token_s && *first_token_s < 0 && out.items[k].num_new > 0) *first_token_s = now_s() - t0;
        }
    }
    return toks;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int run_throughput(const bench_args *a, vesta_engine *e, int vocab, json_t *j)
{
    uint64_t st = a->seed * 7919 + 1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)a->input_len);
    if (!ids) return 1;
    vesta_sampling_params sp;
    params(a, a->output_len, &sp);
    for (int i = 0; i < a->num_prompts; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "%d", i);
        random_ids(&st, vocab, ids, a->input_len);
        vesta_error err = {0};
        const int lora = vesta_engine_num_loras(e) ? 1 + i % vesta_engine_num_loras(e) : 0;
        if (vesta_engine_add_request_lora(e, rid, ids, a->input_len, &sp, lora, &err) != VESTA_OK) {
            fprintf(stderr, "vesta bench: request %d: %s\n", i, err.msg);
            free(ids);
            return 1;
        }
    }
    free(ids);
    double t0 = now_s();
    long long out = drain(e, t0, NULL);
    double dt = now_s() - t0;
    if (out < 0) return 1;
    vesta_engine_stats s;
    vesta_engine_get_stats(e, &s);
    long long total = out + (long long)a->num_prompts * a->input_len;
    printf("Throughput: %.2f requests/s, %.2f total tokens/s, %.2f output tokens/s (%d requests, %d in, %d out, "
           "%.2f s, %llu steps, %llu preemptions)\n", a->num_prompts / dt, total / dt, out / dt, a->num_prompts,
           a->input_len, a->output_len, dt, (unsigned long long)s.steps, (unsigned long long)s.num_preemptions);
    json_object_set_new(j, "elapsed_s", json_real(dt));
    json_object_set_new(j, "requests_per_s", json_real(a->num_prompts / dt));
    json_object_set_new(j, "total_tokens_per_s", json_real(total / dt));
    json_object_set_new(j, "output_tokens_per_s", json_real(out / dt));
    json_object_set_new(j, "output_tokens", json_integer(out));
    json_object_set_new(j, "steps", json_integer((json_int_t)s.steps));
    json_object_set_new(j, "preemptions", json_integer((json_int_t)s.num_preemptions));
    /* where the wall time went: host-only phases against the backend's execute */
    printf("Step phases: schedule %.3f s, execute %.3f s, update %.3f s (%.3f ms / %.3f ms / %.3f ms per step)\n",
           s.time_schedule_s, s.time_execute_s, s.time_update_s, 1e3 * s.time_schedule_s / (double)(s.steps ? s.steps : 1),
           1e3 * s.time_execute_s / (double)(s.steps ? s.steps : 1), 1e3 * s.time_update_s / (double)(s.steps ? s.steps : 1));
    json_object_set_new(j, "time_schedule_s", json_real(s.time_schedule_s));
    json_object_set_new(j, "time_execute_s", json_real(s.time_execute_s));
    json_object_set_new(j, "time_update_s", json_real(s.time_update_s));
    return 0;
}

/* One request: returns 0 and fills ttft / total, or 1. */
static int one_request(vesta_engine *e, const char *rid, const int32_t *ids, int n, const vesta_sampling_params *sp,
                       double *ttft, double *total, long long *out)
{
    vesta_error err = {0};
    if (vesta_engine_add_request_lora(e, rid, ids, n, sp, vesta_engine_num_loras(e) > 0, &err) != VESTA_OK) {
        fprintf(stderr, "vesta bench: %s\n", err.msg);
        return 1;
    }
    double t0 = now_s();
    *ttft = -1;
    *out = drain(e, t0, ttft);
    *total = now_s() - t0;
    return *out < 0;
}

static int run_latency(const bench_args *a, vesta_engine *e, int vocab, json_t *j)
{
    uint64_t st = a->seed * 7919 + 1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)a->input_len);
    int n = a->iters;
    double *ttft = calloc((size_t)n, sizeof(double)), *tpot = calloc((size_t)n, sizeof(double)),
           *lat = calloc((size_t)n, sizeof(double));
    int rc = 1;
    if (!ids || !ttft || !tpot || !lat) goto out;
    vesta_sampling_params sp;
    params(a, a->output_len, &sp);
    for (int i = 0; i < a->warmup + n; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "lat-%d", i);
        random_ids(&st, vocab, ids, a->input_len); /* fresh prompt: no prefix-cache hits */
        double t1, tot;
        long long o;
        if (one_request(e, rid, ids, a->input_len, &sp, &t1, &tot, &o)) goto out;
        if (i >= a->warmup) {
            int k = i - a->warmup;
            ttft[k] = t1;
            lat[k] = tot;
            tpot[k] = o > 1 ? (tot - t1) / (double)(o - 1) : 0;
        }
    }
    double m_ttft = median(ttft, n), m_tpot = median(tpot, n), m_lat = median(lat, n);
    printf("Latency (batch 1, %d in, %d out, median of %d): total %.2f ms, time to first token %.2f ms, time per "
           "output token %.3f ms = %.1f tokens/s decode\n", a->input_len, a->output_len, n, m_lat * 1e3,
           m_ttft * 1e3, m_tpot * 1e3, m_tpot > 0 ? 1.0 / m_tpot : 0.0);
    json_object_set_new(j, "latency_ms", json_real(m_lat * 1e3));
    json_object_set_new(j, "ttft_ms", json_real(m_ttft * 1e3));
    json_object_set_new(j, "tpot_ms", json_real(m_tpot * 1e3));
    json_object_set_new(j, "decode_tokens_per_s", json_real(m_tpot > 0 ? 1.0 / m_tpot : 0.0));
    rc = 0;
out:
    free(ids);
    free(ttft);
    free(tpot);
    free(lat);
    return rc;
}

static int run_prefix(const bench_args *a, vesta_engine *e, int vocab, json_t *j)
{
    uint64_t st = a->seed * 7919 + 1;
    int q = 32, n = a->prefix_len + q;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    double *first = calloc((size_t)a->iters, sizeof(double)), *second = calloc((size_t)a->iters, sizeof(double));
    int rc = 1;
    if (!ids || !first || !second) goto out;
    vesta_sampling_params sp;
    params(a, 1, &sp);
    for (int i = 0; i < a->warmup + a->iters; i++) {
        random_ids(&st, vocab, ids, n); /* a new document each iteration */
        double t1, t2, tot;
        long long o;
        char rid[32];
        snprintf(rid, sizeof rid, "doc-%d-a", i);
        if (one_request(e, rid, ids, n, &sp, &t1, &tot, &o)) goto out;
        random_ids(&st, vocab, ids + a->prefix_len, q); /* same document, another question */
        snprintf(rid, sizeof rid, "doc-%d-b", i);
        if (one_request(e, rid, ids, n, &sp, &t2, &tot, &o)) goto out;
        if (i >= a->warmup) {
            first[i - a->warmup] = t1;
            second[i - a->warmup] = t2;
        }
    }
    double m1 = median(first, a->iters), m2 = median(second, a->iters);
    vesta_engine_stats s;
    vesta_engine_get_stats(e, &s);
    printf("Prefix caching (%d-token shared document + %d-token question, median of %d): first TTFT %.2f ms, "
           "second TTFT %.2f ms = %.1f%% of the first; prefix cache hit rate %.1f%%\n", a->prefix_len, q, a->iters,
           m1 * 1e3, m2 * 1e3, 100.0 * m2 / m1,
           s.prefix_cache_queries ? 100.0 * (double)s.prefix_cache_hits / (double)s.prefix_cache_queries : 0.0);
    json_object_set_new(j, "first_ttft_ms", json_real(m1 * 1e3));
    json_object_set_new(j, "second_ttft_ms", json_real(m2 * 1e3));
    json_object_set_new(j, "second_over_first", json_real(m2 / m1));
    rc = 0;
out:
    free(ids);
    free(first);
    free(second);
    return rc;
}

int vesta_cmd_bench(int argc, char **argv)
{
    double t_start = process_start_s();
#ifdef VESTA_HAVE_BENCH_SERVE
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return vesta_cmd_bench_serve(argc - 1, argv + 1);
#endif
    bench_args a;
    int rc = parse(&a, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (strcmp(a.mode, "latency") == 0 || strcmp(a.mode, "prefix") == 0) {
        /* batch 1, sized to the request */
        int need = (strcmp(a.mode, "prefix") == 0 ? a.prefix_len + 32 + 1 : a.input_len + a.output_len);
        if (a.cfg.max_model_len == 0) a.cfg.max_model_len = need;
    } else if (a.cfg.max_model_len == 0) {
        a.cfg.max_model_len = a.input_len + a.output_len;
    }
    vesta_error err = {0};
    vesta_engine *e = vesta_engine_create(&a.cfg, &err);
    if (!e) {
        fprintf(stderr, "vesta bench: %s\n", err.msg);
        return 1;
    }
    double ready = now_s() - t_start;
    vesta_engine_stats s0;
    vesta_engine_get_stats(e, &s0);
    int vocab = vesta_engine_model_config(e)->vocab_size;
    printf("Start-up: %.2f s from process start to ready (backend %s, %d KV blocks of %d tokens)\n", ready,
           a.cfg.backend, s0.num_blocks_total, a.cfg.block_size);
    json_t *j = json_pack("{s:s,s:s,s:f,s:i,s:i,s:i,s:i,s:f}", "mode", a.mode, "backend", a.cfg.backend,
                          "startup_s", ready, "num_blocks", s0.num_blocks_total, "input_len", a.input_len,
                          "output_len", a.output_len, "num_prompts", a.num_prompts, "temperature", a.temperature);
    if (strcmp(a.mode, "throughput") == 0) rc = run_throughput(&a, e, vocab, j);
    else if (strcmp(a.mode, "latency") == 0) rc = run_latency(&a, e, vocab, j);
    else rc = run_prefix(&a, e, vocab, j);
    if (rc == 0 && a.json_out) {
        if (json_dump_file(j, a.json_out, JSON_COMPACT) != 0) {
            fprintf(stderr, "vesta bench: cannot write %s\n", a.json_out);
            rc = 1;
        }
    }
    json_decref(j);
    vesta_engine_destroy(e);
    return rc;
}
