/* `vesta bench serve`: vLLM's `vllm bench serve` (random dataset, openai completions backend)
 * against a running server, in one thread over libcurl's multi interface.
 *
 * Requests: --num-prompts prompts of --random-input-len token ids drawn uniformly from the model's
 * vocabulary (special tokens excluded when the tokenizer is known) with a fixed --seed, each asking
 * for --random-output-len tokens, streamed (SSE) with stream_options.include_usage so the output
 * token counts are the server's. Arrivals: all at once (--request-rate inf) or with gamma
 * intervals of mean 1/rate and shape --burstiness (1 = Poisson), as vLLM; --max-concurrency caps
 * the requests in flight (a request that arrives at the cap waits for a slot, and its timings start
 * when it is sent, as vLLM's semaphore does).
 *
 * Metrics as vLLM computes them: TTFT = first content chunk - send; ITL = gaps between successive
 * content chunks; TPOT = (E2EL - TTFT) / (output tokens - 1) per request with more than one output
 * token; E2EL = last byte - send. Duration = first send to last completion. Throughputs over
 * successful requests. Percentiles interpolate linearly (numpy's default). */
#include "bench_serve.h"
#include "cli_num.h"
#include "sse_stream.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef VESTA_HAVE_TOKENIZER
#include "vesta/tokenizer.h"
#endif

#define ERR_HEAD_MAX 1024 /* bytes of a response body kept for error messages */

enum { METRIC_TTFT, METRIC_TPOT, METRIC_ITL, METRIC_E2EL, METRIC_COUNT };
static const char *const metric_key[METRIC_COUNT] = {"ttft", "tpot", "itl", "e2el"};
static const char *const metric_name[METRIC_COUNT] = {"TTFT", "TPOT", "ITL", "E2EL"};
static const char *const metric_header[METRIC_COUNT] = {"Time to First Token",
                                                        "Time per Output Token (excl. 1st token)",
                                                        "Inter-token Latency", "End-to-end Latency"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- growable buffers ---- */

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static bool dvec_push(dvec *d, double x)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        double *v = realloc(d->v, cap * sizeof *v);
        if (!v)
            return false;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return true;
}

/* ---- options ---- */

typedef struct serve_args {
    const char *base_url, *host, *endpoint, *model, *tokenizer, *result_dir, *result_filename;
    int port, num_prompts, input_len, output_len, max_concurrency;
    double request_rate, burstiness, temperature, timeout_s;
    bool ignore_eos, save_result, want[METRIC_COUNT];
    uint64_t seed;
    long long vocab_size;
    double percentiles[16];
    int n_percentiles;
} serve_args;

enum {
    O_BASE_URL = 1000, O_HOST, O_PORT, O_ENDPOINT, O_MODEL, O_TOKENIZER, O_VOCAB, O_NUMP, O_RATE, O_BURST,
    O_MAXC, O_IN, O_OUT, O_IGNORE_EOS, O_SEED, O_TEMP, O_TIMEOUT, O_SAVE, O_RDIR, O_RFILE, O_PMETRICS,
    O_MPERC, O_DATASET, O_BACKEND, O_HELP, O_TRUST
};
static const struct option opts[] = {
    {"base-url", required_argument, 0, O_BASE_URL}, {"host", required_argument, 0, O_HOST},
    {"port", required_argument, 0, O_PORT}, {"endpoint", required_argument, 0, O_ENDPOINT},
    {"model", required_argument, 0, O_MODEL}, {"tokenizer", required_argument, 0, O_TOKENIZER},
    {"vocab-size", required_argument, 0, O_VOCAB}, {"num-prompts", required_argument, 0, O_NUMP},
    {"request-rate", required_argument, 0, O_RATE}, {"burstiness", required_argument, 0, O_BURST},
    {"max-concurrency", required_argument, 0, O_MAXC}, {"random-input-len", required_argument, 0, O_IN},
    {"random-output-len", required_argument, 0, O_OUT}, {"ignore-eos", no_argument, 0, O_IGNORE_EOS},
    {"seed", required_argument, 0, O_SEED}, {"temperature", required_argument, 0, O_TEMP},
    {"request-timeout", required_argument, 0, O_TIMEOUT}, {"save-result", no_argument, 0, O_SAVE},
    {"result-dir", required_argument, 0, O_RDIR}, {"result-filename", required_argument, 0, O_RFILE},
    {"percentile-metrics", required_argument, 0, O_PMETRICS},
    {"metric-percentiles", required_argument, 0, O_MPERC}, {"dataset-name", required_argument, 0, O_DATASET},
    {"backend", required_argument, 0, O_BACKEND}, {"trust-remote-code", no_argument, 0, O_TRUST},
    {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};

static void usage(FILE *f)
{
    fprintf(f,
"usage: vesta bench serve [options]   (vLLM's `vllm bench serve`, random dataset, completions)\n"
"server:   --base-url URL | --host H (127.0.0.1) --port P (8000)   --endpoint (/v1/completions)\n"
"          --model NAME (default: the first of GET /v1/models)   --request-timeout S (none)\n"
"          OPENAI_API_KEY in the environment is sent as a bearer token\n"
"prompts:  --num-prompts N (1000)  --random-input-len N (1024)  --random-output-len N (128)\n"
"          --ignore-eos  --temperature F (0 = greedy)  --seed N (0)\n"
"          --vocab-size N | --tokenizer PATH (default: the tokenizer at the model's \"root\"\n"
"          path from /v1/models; token ids are drawn below the vocabulary size)\n"
"load:     --request-rate R|inf (inf)  --burstiness G (1.0 = Poisson)  --max-concurrency N\n"
"report:   --percentile-metrics ttft,tpot,itl,e2el (all)  --metric-percentiles 99 (list)\n"
"          --save-result  --result-dir DIR (.)  --result-filename NAME (implies --save-result)\n"
"accepted for vLLM command lines: --dataset-name random, --backend openai|vllm, --trust-remote-code\n");
}

static bool parse_metrics(serve_args *a, const char *s)
{
    memset(a->want, 0, sizeof a->want);
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        int k;
        for (k = 0; k < METRIC_COUNT; k++)
            if (strlen(metric_key[k]) == len && strncmp(p, metric_key[k], len) == 0)
                break;
        if (k == METRIC_COUNT)
            return false;
        a->want[k] = true;
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

static bool parse_percentiles(serve_args *a, const char *s)
{
    a->n_percentiles = 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        char tmp[64];
        double v;
        if (len == 0 || len >= sizeof tmp || a->n_percentiles == (int)(sizeof a->percentiles / sizeof *a->percentiles))
            return false;
        memcpy(tmp, p, len);
        tmp[len] = '\0';
        if (!vesta_cli_parse_double(tmp, &v) || v <= 0 || v > 100)
            return false;
        a->percentiles[a->n_percentiles++] = v;
        p += len;
        if (*p == ',')
            p++;
    }
    return a->n_percentiles > 0;
}

/* Returns 0, 2 (usage error) or -1 (--help printed). */
static int parse(serve_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->host = "127.0.0.1";
    a->port = 8000;
    a->endpoint = "/v1/completions";
    a->num_prompts = 1000;
    a->input_len = 1024;
    a->output_len = 128;
    a->request_rate = INFINITY;
    a->burstiness = 1.0;
    a->result_dir = ".";
    for (int k = 0; k < METRIC_COUNT; k++)
        a->want[k] = true;
    a->percentiles[0] = 99;
    a->n_percentiles = 1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *s = optarg;
        long long v = 0;
        double d = 0;
        bool ok = true;
        switch (c) {
        case O_BASE_URL: a->base_url = s; break;
        case O_HOST: a->host = s; break;
        case O_PORT: ok = vesta_cli_parse_int(s, 1, 65535, &v); a->port = (int)v; break;
        case O_ENDPOINT: ok = s[0] == '/'; a->endpoint = s; break;
        case O_MODEL: a->model = s; break;
        case O_TOKENIZER: a->tokenizer = s; break;
        case O_VOCAB: ok = vesta_cli_parse_int(s, 1, INT32_MAX, &v); a->vocab_size = v; break;
        case O_NUMP: ok = vesta_cli_parse_int(s, 1, 1 << 24, &v); a->num_prompts = (int)v; break;
        case O_RATE:
            if (strcmp(s, "inf") == 0) a->request_rate = INFINITY;
            else ok = vesta_cli_parse_double(s, &a->request_rate) && a->request_rate > 0;
            break;
        case O_BURST: ok = vesta_cli_parse_double(s, &a->burstiness) && a->burstiness > 0; break;
        case O_MAXC: ok = vesta_cli_parse_int(s, 1, 1 << 24, &v); a->max_concurrency = (int)v; break;
        case O_IN: ok = vesta_cli_parse_int(s, 1, 1 << 24, &v); a->input_len = (int)v; break;
        case O_OUT: ok = vesta_cli_parse_int(s, 1, 1 << 24, &v); a->output_len = (int)v; break;
        case O_IGNORE_EOS: a->ignore_eos = true; break;
        case O_SEED: ok = vesta_cli_parse_int(s, 0, INT64_MAX, &v); a->seed = (uint64_t)v; break;
        case O_TEMP: ok = vesta_cli_parse_double(s, &a->temperature) && a->temperature >= 0; break;
        case O_TIMEOUT: ok = vesta_cli_parse_double(s, &d) && d > 0; a->timeout_s = d; break;
        case O_SAVE: a->save_result = true; break;
        case O_RDIR: a->result_dir = s; break;
        case O_RFILE: a->result_filename = s; a->save_result = true; break;
        case O_PMETRICS: ok = parse_metrics(a, s); break;
        case O_MPERC: ok = parse_percentiles(a, s); break;
        case O_DATASET: ok = strcmp(s, "random") == 0; break; /* the one dataset this tool has */
        case O_BACKEND: ok = strcmp(s, "openai") == 0 || strcmp(s, "vllm") == 0; break;
        case O_TRUST: break; /* vLLM's flag (for its tokenizer): nothing here runs a model's code */
        case O_HELP: usage(stdout); return -1;
        default:
            fprintf(stderr, "vesta bench serve: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "vesta bench serve: invalid value '%s' for --%s\n", s, vesta_cli_option_name(opts, c));
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vesta bench serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* ---- random numbers (SplitMix64; gamma by Marsaglia-Tsang) ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) /* in (0, 1) */
{
    return ((double)(rng_next(s) >> 11) + 0.5) * 0x1.0p-53;
}

static double rng_normal(uint64_t *s)
{
    return sqrt(-2.0 * log(rng_uniform(s))) * cos(2.0 * M_PI * rng_uniform(s));
}

static double rng_gamma(uint64_t *s, double shape)
{
    if (shape < 1.0) /* Gamma(a) = Gamma(a + 1) * U^(1/a) */
        return rng_gamma(s, shape + 1.0) * pow(rng_uniform(s), 1.0 / shape);
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(s), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        if (log(rng_uniform(s)) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

/* Send times relative to the start: the first at 0, then gaps of Gamma(shape = burstiness,
 * scale = 1 / (rate * burstiness)) (mean 1/rate), as vLLM's get_request. */
static void arrival_times(const serve_args *a, double *t)
{
    uint64_t s = a->seed * 0x2545F4914F6CDD1DULL + 17;
    double at = 0;
    for (int i = 0; i < a->num_prompts; i++) {
        t[i] = at;
        if (isfinite(a->request_rate))
            at += rng_gamma(&s, a->burstiness) / (a->request_rate * a->burstiness);
    }
}

/* ---- one request ---- */

typedef struct request {
    int index;
    CURL *h;
    struct curl_slist *headers;
    char *body;
    double t_send, t_last, t_end, ttft; /* ttft < 0: no content chunk yet */
    dvec itl;
    long long usage_tokens; /* -1: the server sent no usage */
    long long chunks;
    vesta_sse_stream sse; /* a line longer than VESTA_SSE_LINE_MAX fails the request */
    double t_feed;        /* arrival time of the bytes being fed, for the chunk timings */
    vesta_text_buf text;
    char head[ERR_HEAD_MAX + 1]; /* the first bytes of the body, for error messages */
    size_t head_len;
    bool saw_done, sent, finished, ok;
    char *error; /* NULL while none */
    char curl_err[CURL_ERROR_SIZE];
} request;

static void request_fail(request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void request_fail(request *r, const char *fmt, ...)
{
    if (r->error)
        return; /* the first error is the cause */
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&r->error, fmt, ap) < 0)
        r->error = NULL;
    va_end(ap);
    if (!r->error)
        r->error = strdup("failed (and out of memory describing why)");
}

/* One `data:` payload of the stream (a vesta_sse_data_fn). Returns false to abort the transfer. */
static bool handle_data(void *ud, const char *s, size_t n)
{
    request *r = ud;
    double t = r->t_feed;
    vesta_sse_chunk c;
    bool go = true;
    switch (vesta_sse_chunk_parse(&c, s, n)) {
    case VESTA_SSE_CHUNK_DONE:
        r->saw_done = true;
        break;
    case VESTA_SSE_CHUNK_BAD_JSON:
        request_fail(r, "bad JSON in the stream at byte %d: %s", c.json_error.position, c.json_error.text);
        go = false;
        break;
    case VESTA_SSE_CHUNK_ERROR_EVENT:
        request_fail(r, "error event: %s", c.error ? c.error : "(no message)");
        go = false;
        break;
    case VESTA_SSE_CHUNK_DATA:
        if (c.has_choice) {
            if (r->ttft < 0)
                r->ttft = t - r->t_send;
            else if (!dvec_push(&r->itl, t - r->t_last))
                go = false;
            if (go) {
                r->t_last = t;
                r->chunks++;
                if (c.text && !vesta_text_buf_append(&r->text, c.text, c.text_len))
                    go = false;
            }
            if (!go)
                request_fail(r, "out of memory");
        }
        if (go && c.usage_tokens >= 0)
            r->usage_tokens = c.usage_tokens;
        break;
    }
    vesta_sse_chunk_dispose(&c);
    return go;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    request *r = ud;
    size_t n = size * nmemb;
    r->t_feed = now_s();
    if (r->head_len < ERR_HEAD_MAX) {
        size_t k = n < ERR_HEAD_MAX - r->head_len ? n : ERR_HEAD_MAX - r->head_len;
        memcpy(r->head + r->head_len, p, k);
        r->head_len += k;
        r->head[r->head_len] = '\0';
    }
    long status = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return n; /* an error body: reported from head at the end */
    switch (vesta_sse_stream_feed(&r->sse, p, n, handle_data, r)) {
    case VESTA_SSE_STATUS_OK:
        return n;
    case VESTA_SSE_STATUS_STOPPED:
        break; /* handle_data said why */
    case VESTA_SSE_STATUS_LINE_TOO_LONG:
        request_fail(r, "an SSE line longer than %zu bytes", r->sse.line_max);
        break;
    case VESTA_SSE_STATUS_NO_MEMORY:
        request_fail(r, "out of memory");
        break;
    }
    return 0;
}

static char *request_body(const serve_args *a, const char *model, const int32_t *ids)
{
    json_t *prompt = json_array();
    for (int i = 0; prompt && i < a->input_len; i++)
        if (json_array_append_new(prompt, json_integer(ids[i]))) {
            json_decref(prompt);
            return NULL;
        }
    json_t *o = json_pack("{s:s, s:o, s:i, s:f, s:b, s:{s:b}}", "model", model, "prompt", prompt, "max_tokens",
                          a->output_len, "temperature", a->temperature, "stream", 1, "stream_options",
                          "include_usage", 1);
    if (!o)
        return NULL;
    if (a->ignore_eos)
        json_object_set_new(o, "ignore_eos", json_true());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Sets up the transfer; false when libcurl cannot (the request then fails at once). */
static bool request_start(request *r, CURLM *m, const char *url, const char *api_key, double timeout_s)
{
    r->h = curl_easy_init();
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (r->headers)
        r->headers = curl_slist_append(r->headers, "Accept: text/event-stream");
    if (r->headers && api_key) {
        char *auth = NULL;
        if (asprintf(&auth, "Authorization: Bearer %s", api_key) >= 0) {
            struct curl_slist *h2 = curl_slist_append(r->headers, auth);
            free(auth);
            if (!h2) {
                curl_slist_free_all(r->headers);
                r->headers = NULL;
            } else {
                r->headers = h2;
            }
        }
    }
    if (!r->h || !r->headers) {
        request_fail(r, "cannot set up the HTTP request (out of memory)");
        return false;
    }
    CURL *h = r->h;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_PRIVATE, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (timeout_s > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    r->t_send = now_s();
    r->ttft = -1;
    r->usage_tokens = -1;
    r->sent = true;
    if (curl_multi_add_handle(m, h) != CURLM_OK) {
        request_fail(r, "libcurl refused the transfer");
        return false;
    }
    return true;
}

/* The message of an OpenAI error body, or the body itself (printable part). */
static void describe_http_error(request *r, long status)
{
    json_t *o = json_loadb(r->head, r->head_len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    if (msg) {
        request_fail(r, "HTTP %ld: %s", status, msg);
    } else {
        for (size_t i = 0; i < r->head_len; i++)
            if ((unsigned char)r->head[i] < 0x20)
                r->head[i] = ' ';
        request_fail(r, "HTTP %ld: %.200s", status, r->head_len ? r->head : "(empty body)");
    }
    json_decref(o);
}

static void request_finish(request *r, CURLcode res)
{
    r->t_end = now_s();
    r->finished = true;
    long status = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
    if (r->error)
        ; /* found while streaming */
    else if (res != CURLE_OK)
        request_fail(r, "%s", r->curl_err[0] ? r->curl_err : curl_easy_strerror(res));
    else if (status != 200)
        describe_http_error(r, status);
    else if (!r->saw_done)
        request_fail(r, "the stream ended without \"data: [DONE]\"");
    else if (r->ttft < 0)
        request_fail(r, "the stream carried no completion chunk");
    r->ok = !r->error;
}

static void request_release(request *r, CURLM *m)
{
    if (r->h) {
        curl_multi_remove_handle(m, r->h);
        curl_easy_cleanup(r->h);
        r->h = NULL;
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    free(r->body);
    r->body = NULL;
    vesta_sse_stream_dispose(&r->sse);
}

/* ---- the server: model name and vocabulary ---- */

static size_t to_bytes(char *p, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    return vesta_text_buf_append(ud, p, n) ? n : 0;
}

/* GET base/v1/models. Returns the parsed answer or NULL with a message printed. */
static json_t *get_models(const char *base, const char *api_key)
{
    char *url = NULL, *auth = NULL;
    vesta_text_buf body = {0};
    json_t *o = NULL;
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    if (!h || asprintf(&url, "%s/v1/models", base) < 0)
        goto out;
    if (api_key && asprintf(&auth, "Authorization: Bearer %s", api_key) >= 0)
        hdr = curl_slist_append(NULL, auth);
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (hdr)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        fprintf(stderr, "vesta bench serve: GET %s: %s%s%s\n", url, curl_easy_strerror(rc), err[0] ? ": " : "", err);
        goto out;
    }
    json_error_t je;
    o = body.p ? json_loadb(body.p, body.n, 0, &je) : NULL;
    if (status != 200 || !json_is_array(json_object_get(o, "data"))) {
        fprintf(stderr, "vesta bench serve: GET %s: HTTP %ld, no \"data\" list in the answer\n", url, status);
        json_decref(o);
        o = NULL;
    }
out:
    curl_slist_free_all(hdr);
    if (h)
        curl_easy_cleanup(h);
    free(url);
    free(auth);
    vesta_text_buf_dispose(&body);
    return o;
}

typedef struct vocab {
    long long size;
    const unsigned char *excluded; /* 1 = a special token (not drawn); NULL = none known */
    unsigned char *owned;
} vocab;

/* Model name (when not given) and vocabulary, from the options or the server. 0 or 1. */
static int resolve_model(const serve_args *a, const char *base, const char *api_key, char **model, vocab *v)
{
    *model = a->model ? strdup(a->model) : NULL;
    v->size = a->vocab_size;
    const char *tok_path = a->tokenizer;
    json_t *models = NULL;
    if (!a->model || (!a->vocab_size && !a->tokenizer)) {
        models = get_models(base, api_key);
        if (!models) {
            fprintf(stderr, "vesta bench serve: cannot ask the server for its model%s; is it running at %s?\n",
                    a->model ? "'s tokenizer (or pass --vocab-size N / --tokenizer PATH)" : " (or pass --model)",
                    base);
            return 1;
        }
        json_t *data = json_object_get(models, "data"), *m = NULL;
        for (size_t i = 0; i < json_array_size(data); i++) {
            const char *id = json_string_value(json_object_get(json_array_get(data, i), "id"));
            if (id && (!a->model || strcmp(id, a->model) == 0)) {
                m = json_array_get(data, i);
                break;
            }
        }
        if (!m) {
            fprintf(stderr, "vesta bench serve: the server does not list %s%s%s\n", a->model ? "model '" : "any model",
                    a->model ? a->model : "", a->model ? "'" : "");
            json_decref(models);
            return 1;
        }
        if (!*model)
            *model = strdup(json_string_value(json_object_get(m, "id")));
        if (!v->size && !tok_path)
            tok_path = json_string_value(json_object_get(m, "root"));
    }
    int rc = 0;
    if (!*model) {
        rc = 1;
    } else if (!v->size) {
#ifdef VESTA_HAVE_TOKENIZER
        vesta_error err = {0};
        vesta_tokenizer *t = tok_path ? vesta_tokenizer_load(tok_path, &err) : NULL;
        if (!t) {
            fprintf(stderr, "vesta bench serve: cannot load the tokenizer%s%s (%s); pass --vocab-size N or "
                    "--tokenizer PATH\n", tok_path ? " at " : "", tok_path ? tok_path : "",
                    tok_path ? err.msg : "the server names no model path");
            rc = 1;
        } else {
            v->size = (long long)vesta_tokenizer_vocab_size(t);
            v->owned = calloc((size_t)v->size, 1);
            long long n_special = 0;
            for (long long i = 0; v->owned && i < v->size; i++)
                n_special += v->owned[i] = vesta_tokenizer_is_special(t, (int32_t)i) ||
                                           !vesta_tokenizer_id_to_token(t, (int32_t)i, &(size_t){0});
            if (v->owned && n_special < v->size)
                v->excluded = v->owned;
            vesta_tokenizer_release(t);
        }
#else
        fprintf(stderr, "vesta bench serve: built without the tokenizer: pass --vocab-size N\n");
        rc = 1;
#endif
    }
    json_decref(models);
    return rc;
}

static void random_prompt(uint64_t *s, const vocab *v, int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t id;
        do
            id = (int32_t)(rng_next(s) % (uint64_t)v->size);
        while (v->excluded && v->excluded[id]);
        ids[i] = id;
    }
}

/* ---- statistics ---- */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* numpy's percentile (linear interpolation) of a sorted vector; 0 when empty (vLLM: `x or 0`). */
static double percentile(const dvec *d, double p)
{
    if (!d->n)
        return 0;
    double pos = p / 100.0 * (double)(d->n - 1);
    size_t lo = (size_t)floor(pos), hi = lo + 1 < d->n ? lo + 1 : lo;
    return d->v[lo] + (d->v[hi] - d->v[lo]) * (pos - (double)lo);
}

typedef struct stats {
    double mean, median, std, pct[16];
} stats;

static stats summarize(dvec *d, const serve_args *a)
{
    stats s = {0};
    if (d->n)
        qsort(d->v, d->n, sizeof *d->v, cmp_double);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < d->n; i++)
        sum += d->v[i];
    s.mean = d->n ? sum / (double)d->n : 0;
    for (size_t i = 0; i < d->n; i++)
        sq += (d->v[i] - s.mean) * (d->v[i] - s.mean);
    s.std = d->n ? sqrt(sq / (double)d->n) : 0;
    s.median = percentile(d, 50);
    for (int k = 0; k < a->n_percentiles; k++)
        s.pct[k] = percentile(d, a->percentiles[k]);
    return s;
}

static void pct_word(double p, char *buf, size_t cap)
{
    if (p == floor(p))
        snprintf(buf, cap, "%d", (int)p);
    else
        snprintf(buf, cap, "%g", p);
}

static void print_rule(const char *title, char c)
{
    size_t n = strlen(title), left = n < 50 ? (50 - n) / 2 : 0, right = n < 50 ? 50 - n - left : 0;
    for (size_t i = 0; i < left; i++)
        putchar(c);
    fputs(title, stdout);
    for (size_t i = 0; i < right; i++)
        putchar(c);
    putchar('\n');
}

static void row_i(const char *label, long long v) { printf("%-40s %-10lld\n", label, v); }
static void row_f(const char *label, double v) { printf("%-40s %-10.2f\n", label, v); }

/* ---- the run ---- */

typedef struct run {
    serve_args a;
    char *base, *url, *model;
    const char *api_key;
    vocab voc;
    request *reqs;
    double *arrival;
    double duration;
    int max_active;
} run;

/* Sends every request on schedule and waits for all of them. */
static int drive(run *R)
{
    const serve_args *a = &R->a;
    CURLM *m = curl_multi_init();
    if (!m) {
        fprintf(stderr, "vesta bench serve: cannot initialize libcurl\n");
        return 1;
    }
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    int next = 0, active = 0, done = 0, n = a->num_prompts;
    double t0 = now_s();
    while (done < n) {
        double now = now_s();
        while (next < n && R->arrival[next] <= now - t0 && (!a->max_concurrency || active < a->max_concurrency)) {
            request *r = &R->reqs[next++];
            if (request_start(r, m, R->url, R->api_key, a->timeout_s)) {
                active++;
                if (active > R->max_active)
                    R->max_active = active;
            } else {
                r->t_end = now_s();
                r->finished = true;
                request_release(r, m);
                done++;
            }
        }
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            request *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            CURLcode res = msg->data.result; /* msg is invalid once the handle is removed */
            request_finish(r, res);
            request_release(r, m);
            active--;
            done++;
        }
        if (done == n)
            break;
        int wait_ms = 1000;
        if (next < n && (!a->max_concurrency || active < a->max_concurrency)) {
            double dt = (t0 + R->arrival[next] - now_s()) * 1000.0;
            wait_ms = dt <= 0 ? 0 : dt < 1000 ? (int)ceil(dt) : 1000;
        }
        if (active > 0) {
            curl_multi_poll(m, NULL, 0, wait_ms, NULL);
        } else if (wait_ms > 0) {
            struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    R->duration = now_s() - t0;
    curl_multi_cleanup(m);
    return 0;
}

/* Builds the prompts' request bodies. 0 or 1. */
static int make_requests(run *R)
{
    const serve_args *a = &R->a;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)a->input_len);
    R->reqs = calloc((size_t)a->num_prompts, sizeof *R->reqs);
    R->arrival = calloc((size_t)a->num_prompts, sizeof *R->arrival);
    if (!ids || !R->reqs || !R->arrival) {
        free(ids);
        fprintf(stderr, "vesta bench serve: out of memory for %d prompts\n", a->num_prompts);
        return 1;
    }
    uint64_t s = a->seed * 7919 + 1;
    for (int i = 0; i < a->num_prompts; i++) {
        R->reqs[i].index = i;
        vesta_sse_stream_init(&R->reqs[i].sse, VESTA_SSE_LINE_MAX);
        random_prompt(&s, &R->voc, ids, a->input_len);
        if (!(R->reqs[i].body = request_body(a, R->model, ids))) {
            free(ids);
            fprintf(stderr, "vesta bench serve: out of memory building request %d\n", i);
            return 1;
        }
    }
    free(ids);
    arrival_times(a, R->arrival);
    return 0;
}

static void put_stats(json_t *j, const serve_args *a, int k, const stats *s)
{
    char key[96], w[32];
    snprintf(key, sizeof key, "mean_%s_ms", metric_key[k]);
    json_object_set_new(j, key, json_real(s->mean * 1e3));
    snprintf(key, sizeof key, "median_%s_ms", metric_key[k]);
    json_object_set_new(j, key, json_real(s->median * 1e3));
    snprintf(key, sizeof key, "std_%s_ms", metric_key[k]);
    json_object_set_new(j, key, json_real(s->std * 1e3));
    for (int p = 0; p < a->n_percentiles; p++) {
        pct_word(a->percentiles[p], w, sizeof w);
        snprintf(key, sizeof key, "p%s_%s_ms", w, metric_key[k]);
        json_object_set_new(j, key, json_real(s->pct[p] * 1e3));
    }
}

/* Errors grouped by message, most frequent first, on stderr. */
static void report_errors(const run *R, int failed)
{
    if (!failed)
        return;
    fprintf(stderr, "vesta bench serve: %d of %d requests failed; errors:\n", failed, R->a.num_prompts);
    int n = R->a.num_prompts, shown = 0;
    bool *seen = calloc((size_t)n, 1);
    for (int i = 0; i < n && shown < 5; i++) {
        const request *r = &R->reqs[i];
        if (r->ok || (seen && seen[i]))
            continue;
        const char *e = r->error ? r->error : "unknown";
        int count = 0;
        for (int k = i; k < n; k++) {
            const char *ek = R->reqs[k].ok ? NULL : R->reqs[k].error ? R->reqs[k].error : "unknown";
            if (ek && strcmp(ek, e) == 0) {
                count++;
                if (seen)
                    seen[k] = true;
            }
        }
        fprintf(stderr, "  %d x %s (first: request %d)\n", count, e, i);
        shown++;
    }
    free(seen);
}

static char *result_path(const run *R)
{
    const serve_args *a = &R->a;
    char *p = NULL;
    if (a->result_filename) {
        if (a->result_filename[0] == '/' || asprintf(&p, "%s/%s", a->result_dir, a->result_filename) < 0)
            p = strdup(a->result_filename);
        return p;
    }
    char rate[32], conc[48] = "", when[32];
    if (isfinite(a->request_rate))
        snprintf(rate, sizeof rate, "%g", a->request_rate);
    else
        snprintf(rate, sizeof rate, "inf");
    if (a->max_concurrency)
        snprintf(conc, sizeof conc, "-concurrency%d", a->max_concurrency);
    time_t t = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y%m%d-%H%M%S", localtime_r(&t, &tm));
    const char *base = strrchr(R->model, '/');
    base = base && base[1] ? base + 1 : R->model;
    if (asprintf(&p, "%s/vesta-%sqps%s-%s-%s.json", a->result_dir, rate, conc, base, when) < 0)
        p = NULL;
    return p;
}

/* Prints vLLM's table; fills j with the result. Returns the number of successful requests. */
static int report(const run *R, json_t *j)
{
    const serve_args *a = &R->a;
    int n = a->num_prompts, completed = 0, failed = 0;
    long long total_in = 0, total_out = 0;
    bool usage_missing = false;
    dvec d[METRIC_COUNT] = {{0}};
    json_t *in_lens = json_array(), *out_lens = json_array(), *ttfts = json_array(), *itls = json_array(),
           *e2els = json_array(), *texts = json_array(), *errors = json_array();
    for (int i = 0; i < n; i++) {
        const request *r = &R->reqs[i];
        long long out = 0;
        double e2el = r->t_end - r->t_send;
        if (r->ok) {
            out = r->usage_tokens >= 0 ? r->usage_tokens : r->chunks;
            usage_missing |= r->usage_tokens < 0;
            completed++;
            total_in += a->input_len;
            total_out += out;
            dvec_push(&d[METRIC_TTFT], r->ttft);
            if (out > 1)
                dvec_push(&d[METRIC_TPOT], (e2el - r->ttft) / (double)(out - 1));
            for (size_t k = 0; k < r->itl.n; k++)
                dvec_push(&d[METRIC_ITL], r->itl.v[k]);
            dvec_push(&d[METRIC_E2EL], e2el);
        } else {
            failed++;
        }
        json_array_append_new(in_lens, json_integer(r->ok ? a->input_len : 0));
        json_array_append_new(out_lens, json_integer(out));
        json_array_append_new(ttfts, json_real(r->ok ? r->ttft : 0));
        json_t *il = json_array();
        for (size_t k = 0; r->ok && k < r->itl.n; k++)
            json_array_append_new(il, json_real(r->itl.v[k]));
        json_array_append_new(itls, il);
        json_array_append_new(e2els, json_real(r->ok ? e2el : 0));
        json_array_append_new(texts, json_stringn(r->text.p ? r->text.p : "", r->text.n));
        json_array_append_new(errors, json_string(r->ok ? "" : r->error ? r->error : "unknown"));
    }
    double dur = R->duration > 0 ? R->duration : 1e-9;
    stats s[METRIC_COUNT];
    for (int k = 0; k < METRIC_COUNT; k++)
        s[k] = summarize(&d[k], a);

    print_rule(" Serving Benchmark Result ", '=');
    row_i("Successful requests:", completed);
    row_i("Failed requests:", failed);
    if (a->max_concurrency)
        row_i("Maximum request concurrency:", a->max_concurrency);
    if (isfinite(a->request_rate))
        row_f("Request rate configured (RPS):", a->request_rate);
    row_f("Benchmark duration (s):", R->duration);
    row_i("Total input tokens:", total_in);
    row_i("Total generated tokens:", total_out);
    row_f("Request throughput (req/s):", completed / dur);
    row_f("Output token throughput (tok/s):", (double)total_out / dur);
    row_i("Peak concurrent requests:", R->max_active);
    row_f("Total Token throughput (tok/s):", (double)(total_in + total_out) / dur);
    for (int k = 0; k < METRIC_COUNT; k++) {
        if (!a->want[k])
            continue;
        char title[96], label[64], w[32];
        snprintf(title, sizeof title, "%s", metric_header[k]);
        print_rule(title, '-');
        snprintf(label, sizeof label, "Mean %s (ms):", metric_name[k]);
        row_f(label, s[k].mean * 1e3);
        snprintf(label, sizeof label, "Median %s (ms):", metric_name[k]);
        row_f(label, s[k].median * 1e3);
        for (int p = 0; p < a->n_percentiles; p++) {
            pct_word(a->percentiles[p], w, sizeof w);
            snprintf(label, sizeof label, "P%s %s (ms):", w, metric_name[k]);
            row_f(label, s[k].pct[p] * 1e3);
        }
    }
    print_rule("", '=');
    if (usage_missing)
        printf("note: the server sent no usage for some requests: their output tokens are counted as "
               "stream chunks\n");
    fflush(stdout);

    char date[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%Y%m%d-%H%M%S", localtime_r(&t, &tm));
    json_object_set_new(j, "date", json_string(date));
    json_object_set_new(j, "backend", json_string("openai"));
    json_object_set_new(j, "endpoint", json_string(R->url));
    json_object_set_new(j, "model_id", json_string(R->model));
    json_object_set_new(j, "vocab_size", json_integer(R->voc.size));
    json_object_set_new(j, "num_prompts", json_integer(n));
    json_object_set_new(j, "random_input_len", json_integer(a->input_len));
    json_object_set_new(j, "random_output_len", json_integer(a->output_len));
    json_object_set_new(j, "ignore_eos", json_boolean(a->ignore_eos));
    json_object_set_new(j, "seed", json_integer((json_int_t)a->seed));
    json_object_set_new(j, "request_rate", isfinite(a->request_rate) ? json_real(a->request_rate) : json_string("inf"));
    json_object_set_new(j, "burstiness", json_real(a->burstiness));
    json_object_set_new(j, "max_concurrency", a->max_concurrency ? json_integer(a->max_concurrency) : json_null());
    json_object_set_new(j, "duration", json_real(R->duration));
    json_object_set_new(j, "completed", json_integer(completed));
    json_object_set_new(j, "failed", json_integer(failed));
    json_object_set_new(j, "total_input_tokens", json_integer(total_in));
    json_object_set_new(j, "total_output_tokens", json_integer(total_out));
    json_object_set_new(j, "request_throughput", json_real(completed / dur));
    json_object_set_new(j, "output_throughput", json_real((double)total_out / dur));
    json_object_set_new(j, "total_token_throughput", json_real((double)(total_in + total_out) / dur));
    json_object_set_new(j, "max_concurrent_requests", json_integer(R->max_active));
    json_object_set_new(j, "usage_from_server", json_boolean(!usage_missing));
    for (int k = 0; k < METRIC_COUNT; k++)
        put_stats(j, a, k, &s[k]);
    json_object_set_new(j, "input_lens", in_lens);
    json_object_set_new(j, "output_lens", out_lens);
    json_object_set_new(j, "ttfts", ttfts);
    json_object_set_new(j, "itls", itls);
    json_object_set_new(j, "e2els", e2els);
    json_object_set_new(j, "generated_texts", texts);
    json_object_set_new(j, "errors", errors);
    for (int k = 0; k < METRIC_COUNT; k++)
        free(d[k].v);
    report_errors(R, failed);
    return completed;
}

/* Many concurrent streams need as many sockets: lift the soft descriptor limit to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void run_release(run *R)
{
    if (R->reqs)
        for (int i = 0; i < R->a.num_prompts; i++) {
            request *r = &R->reqs[i];
            free(r->body);
            vesta_sse_stream_dispose(&r->sse);
            vesta_text_buf_dispose(&r->text);
            free(r->itl.v);
            free(r->error);
            curl_slist_free_all(r->headers);
            if (r->h)
                curl_easy_cleanup(r->h);
        }
    free(R->reqs);
    free(R->arrival);
    free(R->base);
    free(R->url);
    free(R->model);
    free(R->voc.owned);
}

int vesta_cmd_bench_serve(int argc, char **argv)
{
    run R = {0};
    int rc = parse(&R.a, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    const serve_args *a = &R.a;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "vesta bench serve: cannot initialize libcurl\n");
        return 1;
    }
    raise_fd_limit();
    R.api_key = getenv("OPENAI_API_KEY");
    if (a->base_url) {
        size_t len = strlen(a->base_url);
        while (len && a->base_url[len - 1] == '/')
            len--;
        R.base = strndup(a->base_url, len);
    } else if (asprintf(&R.base, "http://%s:%d", a->host, a->port) < 0) {
        R.base = NULL;
    }
    rc = 1;
    json_t *j = json_object();
    if (!R.base || asprintf(&R.url, "%s%s", R.base, a->endpoint) < 0) {
        R.url = NULL;
        goto out;
    }
    if (resolve_model(a, R.base, R.api_key, &R.model, &R.voc) || make_requests(&R))
        goto out;
    char rate[32] = "inf", conc[48] = "";
    if (isfinite(a->request_rate))
        snprintf(rate, sizeof rate, "%g/s", a->request_rate);
    if (a->max_concurrency)
        snprintf(conc, sizeof conc, ", at most %d in flight", a->max_concurrency);
    printf("vesta bench serve: %s, model %s: %d prompts of %d random token ids (vocabulary %lld) -> %d tokens%s; "
           "request rate %s (burstiness %g)%s\n", R.url, R.model, a->num_prompts, a->input_len, R.voc.size,
           a->output_len, a->ignore_eos ? " (EOS ignored)" : "", rate, a->burstiness, conc);
    fflush(stdout);
    if (drive(&R))
        goto out;
    int completed = report(&R, j);
    rc = completed > 0 ? 0 : 1;
    if (!completed)
        fprintf(stderr, "vesta bench serve: no request succeeded\n");
    if (a->save_result) {
        char *path = result_path(&R);
        if (!path || json_dump_file(j, path, JSON_COMPACT) != 0) {
            fprintf(stderr, "vesta bench serve: cannot write the result to %s\n", path ? path : "(out of memory)");
            rc = 1;
        } else {
            printf("result saved to %s\n", path);
        }
        free(path);
    }
out:
    json_decref(j);
    run_release(&R);
    curl_global_cleanup();
    return rc;
}
