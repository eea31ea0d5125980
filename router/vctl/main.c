/* vctl: admin CLI for a running Vesta cluster (router health, workers, drain, metrics, models).
 * Exit status: 0 ok, 1 the router is unreachable or answered with an error, 2 usage. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <getopt.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "http.h"
#include "prom.h"
#include "table.h"

enum { VCTL_OK = 0, VCTL_FAIL = 1, VCTL_USAGE = 2 };

typedef struct vctl_opts {
    vctl_client c;
    int json;
    const char *grep;
} vctl_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: vctl [--url URL] [--api-key KEY] [--json] [--timeout S] COMMAND [ARGS]\n"
               "\n"
               "commands:\n"
               "  status               router health and one line per worker\n"
               "  workers              the worker registry (GET /admin/workers) as a table\n"
               "  drain WORKER_ID      stop routing to a worker; it finishes its requests and leaves\n"
               "  metrics [--grep RE]  a summary of GET /metrics (histograms as count/mean);\n"
               "                       RE (PCRE2) filters on `name{labels}`\n"
               "  models               the served models and LoRA adapters (GET /v1/models)\n"
               "  adapters             the LoRA adapters (--lora-modules): name, path, base model\n"
               "\n"
               "options:\n"
               "  --url URL      the router (default $VESTA_URL, else http://127.0.0.1:8000)\n"
               "  --api-key KEY  bearer token for /v1 and /admin (default $VESTA_API_KEY)\n"
               "  --json         print the router's JSON (metrics: the parsed samples) instead of tables\n"
               "  --timeout S    seconds per request (default 10)\n"
               "\n"
               "exit status: 0 ok, 1 router unreachable or error answer, 2 usage\n");
}

/* ---- fetching ---- */

/* One-line reason from an OpenAI-style error body, else the body's start. */
static void print_http_error(const char *what, const vctl_response *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    json_t *msg = json_object_get(json_object_get(j, "error"), "message");
    if (json_is_string(msg))
        fprintf(stderr, "vctl: %s: HTTP %ld: %s\n", what, r->status, json_string_value(msg));
    else
        fprintf(stderr, "vctl: %s: HTTP %ld: %.200s\n", what, r->status, r->body);
    json_decref(j);
}

/* Requests method+path; accepts 2xx (and `also_ok` when non-zero). Returns 0 with *r owned by
 * the caller, or VCTL_FAIL after printing why. */
static int fetch(const vctl_opts *o, const char *method, const char *path, long also_ok,
                 vctl_response *r)
{
    char err[512], what[300];
    if (vctl_http_request(&o->c, method, path, r, err, sizeof err) != 0) {
        fprintf(stderr, "vctl: %s\n", err);
        return VCTL_FAIL;
    }
    if ((r->status < 200 || r->status > 299) && r->status != also_ok) {
        snprintf(what, sizeof what, "%s %s", method, path);
        print_http_error(what, r);
        vctl_response_release(r);
        return VCTL_FAIL;
    }
    return 0;
}

static int fetch_json(const vctl_opts *o, const char *method, const char *path, long also_ok,
                      json_t **out, long *status)
{
    vctl_response r;
    int rc = fetch(o, method, path, also_ok, &r);
    if (rc != 0)
        return rc;
    json_error_t je;
    *out = json_loads(r.body, 0, &je);
    if (status != NULL)
        *status = r.status;
    vctl_response_release(&r);
    if (!json_is_object(*out)) {
        fprintf(stderr, "vctl: %s %s: the answer is not a JSON object (%s)\n", method, path,
                *out ? "other JSON" : je.text);
        json_decref(*out);
        *out = NULL;
        return VCTL_FAIL;
    }
    return 0;
}

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

/* ---- cell formatting: a missing or mistyped field prints "-" ---- */

typedef struct cell {
    char s[256]; /* ids (VESTA_PROTO_MAX_ID) and model paths fit whole */
} cell;

static const char *fmt_str(const json_t *o, const char *key, cell *c)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return "-";
    snprintf(c->s, sizeof c->s, "%s", json_string_value(v));
    return c->s;
}

static const char *fmt_int(const json_t *o, const char *key, cell *c)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return "-";
    snprintf(c->s, sizeof c->s, "%lld", (long long)json_integer_value(v));
    return c->s;
}

static const char *fmt_percent(const json_t *o, const char *key, cell *c)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return "-";
    snprintf(c->s, sizeof c->s, "%.1f%%", 100.0 * json_number_value(v));
    return c->s;
}

/* Prefix-cache hit rate over the worker's lifetime (both counters count tokens). */
static const char *fmt_hit_rate(const json_t *o, cell *c)
{
    const json_t *h = json_object_get(o, "prefix_cache_hits");
    const json_t *q = json_object_get(o, "prefix_cache_queries");
    if (!json_is_integer(h) || !json_is_integer(q) || json_integer_value(q) <= 0)
        return "-";
    snprintf(c->s, sizeof c->s, "%.1f%%",
             100.0 * (double)json_integer_value(h) / (double)json_integer_value(q));
    return c->s;
}

static const char *fmt_age(const json_t *o, cell *c)
{
    const json_t *v = json_object_get(o, "last_seen_ms_ago");
    if (!json_is_integer(v))
        return "-";
    snprintf(c->s, sizeof c->s, "%.1fs", (double)json_integer_value(v) / 1000.0);
    return c->s;
}

static int print_table(vctl_table *t)
{
    if (t == NULL) {
        fprintf(stderr, "vctl: out of memory\n");
        return VCTL_FAIL;
    }
    vctl_table_print(t, stdout);
    vctl_table_release(t);
    return VCTL_OK;
}

/* ---- commands ---- */

static int workers_array(const json_t *admin, json_t **arr)
{
    *arr = json_object_get(admin, "workers");
    if (!json_is_array(*arr)) {
        fprintf(stderr, "vctl: GET /admin/workers: no \"workers\" array in the answer\n");
        return VCTL_FAIL;
    }
    return 0;
}

static int status_print(const json_t *health, const json_t *version, const json_t *admin,
                        const char *url)
{
    json_t *w = json_object_get(health, "workers"), *arr;
    if (workers_array(admin, &arr) != 0)
        return VCTL_FAIL;
    cell a, b, c, d;
    printf("router   %s  status %s  version %s  policy %s\n", url, fmt_str(health, "status", &a),
           fmt_str(version, "version", &b), fmt_str(admin, "policy", &c));
    printf("workers  live %s  draining %s  dead %s  left %s\n\n", fmt_int(w, "live", &a),
           fmt_int(w, "draining", &b), fmt_int(w, "dead", &c), fmt_int(w, "left", &d));
    static const char *const hdr[] = {"ID", "STATE", "BACKEND", "RUNNING", "WAITING",
                                      "KV-USAGE", "PREFIX-HIT", "LAST-SEEN"};
    vctl_table *t = vctl_table_create(8, hdr);
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        cell s[8];
        const char *row[8] = {fmt_str(x, "id", &s[0]), fmt_str(x, "state", &s[1]),
                              fmt_str(x, "backend", &s[2]), fmt_int(x, "num_running", &s[3]),
                              fmt_int(x, "num_waiting", &s[4]), fmt_percent(x, "kv_usage", &s[5]),
                              fmt_hit_rate(x, &s[6]), fmt_age(x, &s[7])};
        if (t != NULL && vctl_table_add(t, row) != 0) {
            vctl_table_release(t);
            t = NULL;
        }
    }
    return print_table(t);
}

static int cmd_status(const vctl_opts *o, char **args)
{
    json_t *health = NULL, *version = NULL, *admin = NULL;
    long hstatus = 0;
    /* 503 carries the same body with status "unavailable": show it, then fail */
    int rc = fetch_json(o, "GET", "/health", 503, &health, &hstatus);
    if (rc == 0)
        rc = fetch_json(o, "GET", "/version", 0, &version, NULL);
    if (rc == 0)
        rc = fetch_json(o, "GET", "/admin/workers", 0, &admin, NULL);
    if (rc == 0 && o->json) {
        json_t *all = json_pack("{s:s, s:O, s:O, s:O}", "url", o->c.base_url, "health", health,
                                "version", version, "admin_workers", admin);
        print_json(all);
        json_decref(all);
    } else if (rc == 0) {
        rc = status_print(health, version, admin, o->c.base_url);
    }
    if (rc == 0 && hstatus == 503) {
        fprintf(stderr, "vctl: the router reports no live worker (GET /health: 503)\n");
        rc = VCTL_FAIL;
    }
    json_decref(health);
    json_decref(version);
    json_decref(admin);
    return rc;
}

static int workers_print(const json_t *admin)
{
    json_t *arr;
    if (workers_array(admin, &arr) != 0)
        return VCTL_FAIL;
    enum { N = 17 };
    static const char *const hdr[N] = {"ID", "STATE", "BACKEND", "MODEL", "MAX-LEN", "BLOCK",
                                       "KV-BLOCKS", "INFLIGHT-REQ", "INFLIGHT-SEQ", "RUNNING",
                                       "WAITING", "KV-USAGE", "PREFIX-HIT", "ROUTED", "KV-SYNC",
                                       "LAST-SEEN", "DEATHS"};
    vctl_table *t = vctl_table_create(N, hdr);
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        cell s[N];
        const json_t *sync = json_object_get(x, "kv_events_synced");
        const char *row[N] = {
            fmt_str(x, "id", &s[0]), fmt_str(x, "state", &s[1]), fmt_str(x, "backend", &s[2]),
            fmt_str(x, "model", &s[3]), fmt_int(x, "max_model_len", &s[4]),
            fmt_int(x, "block_size", &s[5]), fmt_int(x, "num_kv_blocks", &s[6]),
            fmt_int(x, "inflight_requests", &s[7]), fmt_int(x, "inflight_sequences", &s[8]),
            fmt_int(x, "num_running", &s[9]), fmt_int(x, "num_waiting", &s[10]),
            fmt_percent(x, "kv_usage", &s[11]), fmt_hit_rate(x, &s[12]),
            fmt_int(x, "routed", &s[13]),
            json_is_boolean(sync) ? (json_is_true(sync) ? "yes" : "no") : "-",
            fmt_age(x, &s[15]), fmt_int(x, "deaths", &s[16])};
        if (t != NULL && vctl_table_add(t, row) != 0) {
            vctl_table_release(t);
            t = NULL;
        }
    }
    return print_table(t);
}

static int cmd_workers(const vctl_opts *o, char **args)
{
    json_t *admin = NULL;
    int rc = fetch_json(o, "GET", "/admin/workers", 0, &admin, NULL);
    if (rc == 0 && o->json)
        print_json(admin);
    else if (rc == 0)
        rc = workers_print(admin);
    json_decref(admin);
    return rc;
}

/* The router reads the id from h2o's normalized path, which is percent-decoded, so any id can be
 * sent escaped -- except "." and "..", which path normalization removes as segments. */
static int cmd_drain(const vctl_opts *o, char **args)
{
    if (args[0][0] == '\0' || strlen(args[0]) > 200 || strcmp(args[0], ".") == 0 || strcmp(args[0], "..") == 0) {
        fprintf(stderr, "vctl: drain: `%s` is not a worker id that fits in a URL path\n", args[0]);
        return VCTL_USAGE;
    }
    char *esc = curl_easy_escape(NULL, args[0], 0);
    if (esc == NULL) {
        fprintf(stderr, "vctl: drain: out of memory\n");
        return VCTL_USAGE;
    }
    char path[1024];
    snprintf(path, sizeof path, "/admin/workers/%s/drain", esc);
    curl_free(esc);
    json_t *ans = NULL;
    int rc = fetch_json(o, "POST", path, 0, &ans, NULL);
    if (rc == 0 && o->json) {
        print_json(ans);
    } else if (rc == 0) {
        cell a;
        printf("worker %s: %s (it takes no new requests, finishes its running ones and leaves)\n",
               args[0], fmt_str(ans, "state", &a));
    }
    json_decref(ans);
    return rc;
}

/* The served models and adapters (GET /v1/models); adapters_only: the cards with a parent. */
static int list_models(const vctl_opts *o, bool adapters_only)
{
    json_t *ans = NULL;
    int rc = fetch_json(o, "GET", "/v1/models", 0, &ans, NULL);
    json_t *data = json_object_get(ans, "data");
    if (rc == 0 && !json_is_array(data)) {
        fprintf(stderr, "vctl: GET /v1/models: no \"data\" array in the answer\n");
        rc = VCTL_FAIL;
    } else if (rc == 0 && o->json && !adapters_only) {
        print_json(ans);
    } else if (rc == 0 && o->json) {
        json_t *out = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(data, i, m) if (json_is_string(json_object_get(m, "parent"))) json_array_append(out, m);
        print_json(out);
        json_decref(out);
    } else if (rc == 0) {
        static const char *const hdr[] = {"ID", "ROOT", "PARENT", "MAX-MODEL-LEN", "OWNED-BY"};
        vctl_table *t = vctl_table_create(5, hdr);
        size_t i;
        json_t *m;
        json_array_foreach(data, i, m) {
            /* ids and roots can be long paths: print them whole, not through cells */
            const json_t *id = json_object_get(m, "id"), *root = json_object_get(m, "root");
            const json_t *parent = json_object_get(m, "parent");
            if (adapters_only && !json_is_string(parent)) continue;
            cell s[2];
            const char *row[] = {json_is_string(id) ? json_string_value(id) : "-",
                                 json_is_string(root) ? json_string_value(root) : "-",
                                 json_is_string(parent) ? json_string_value(parent) : "-",
                                 fmt_int(m, "max_model_len", &s[0]), fmt_str(m, "owned_by", &s[1])};
            if (t != NULL && vctl_table_add(t, row) != 0) {
                vctl_table_release(t);
                t = NULL;
            }
        }
        rc = print_table(t);
    }
    json_decref(ans);
    return rc;
}

static int cmd_models(const vctl_opts *o, char **args)
{
    (void)args;
    return list_models(o, false);
}

static int cmd_adapters(const vctl_opts *o, char **args)
{
    (void)args;
    return list_models(o, true);
}

/* ---- metrics ---- */

typedef struct metric_row {
    const char *family, *type;
    char labels[512];
    double value, count, sum;
    int has_count, has_sum;
} metric_row;

static metric_row *row_for(metric_row *rows, int *n, const vctl_prom_sample *s, const char *labels)
{
    for (int i = *n - 1; i >= 0; i--)
        if (strcmp(rows[i].family, s->family) == 0 && strcmp(rows[i].labels, labels) == 0)
            return &rows[i];
    metric_row *r = &rows[(*n)++];
    memset(r, 0, sizeof *r);
    r->family = s->family;
    r->type = s->type;
    snprintf(r->labels, sizeof r->labels, "%s", labels);
    return r;
}

/* Histogram buckets fold into one row per label set (count, sum, mean); other samples are
 * one row each. */
static int metrics_fold(const vctl_prom *p, metric_row *rows)
{
    int n = 0;
    for (int i = 0; i < p->n; i++) {
        const vctl_prom_sample *s = &p->s[i];
        int hist = strcmp(s->type, "histogram") == 0 || strcmp(s->type, "summary") == 0;
        char labels[512];
        vctl_prom_labels_text(s, hist ? (strcmp(s->type, "summary") == 0 ? "quantile" : "le") : NULL,
                              labels, sizeof labels);
        if (!hist) {
            metric_row *r = &rows[n++];
            memset(r, 0, sizeof *r);
            r->family = s->name;
            r->type = s->type;
            snprintf(r->labels, sizeof r->labels, "%s", labels);
            r->value = s->value;
            continue;
        }
        size_t fl = strlen(s->family);
        const char *suffix = s->name + fl;
        metric_row *r = row_for(rows, &n, s, labels);
        if (strcmp(suffix, "_count") == 0) {
            r->count = s->value;
            r->has_count = 1;
        } else if (strcmp(suffix, "_sum") == 0) {
            r->sum = s->value;
            r->has_sum = 1;
        }
    }
    return n;
}

static int matches(pcre2_code *re, pcre2_match_data *md, const char *name, const char *labels)
{
    if (re == NULL)
        return 1;
    char subject[1024];
    snprintf(subject, sizeof subject, "%s%s", name, labels);
    return pcre2_match(re, (PCRE2_SPTR)subject, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0;
}

static void metrics_print_json(const vctl_prom *p, pcre2_code *re, pcre2_match_data *md)
{
    json_t *arr = json_array();
    for (int i = 0; i < p->n; i++) {
        const vctl_prom_sample *s = &p->s[i];
        char labels[512];
        vctl_prom_labels_text(s, NULL, labels, sizeof labels);
        if (!matches(re, md, s->name, labels))
            continue;
        json_t *l = json_object();
        for (int k = 0; k < s->nlabels; k++)
            json_object_set_new(l, s->labels[k].key, json_string(s->labels[k].value));
        json_t *v = json_real(s->value); /* NULL for ±Inf and NaN: keep the text then */
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o}", "name", s->name, "type",
                                             s->type, "labels", l,
                                             "value", v ? v : json_string(s->value_text)));
    }
    print_json(arr);
    json_decref(arr);
}

static int metrics_print_table(const vctl_prom *p, pcre2_code *re, pcre2_match_data *md)
{
    metric_row *rows = calloc((size_t)p->n + 1, sizeof *rows);
    if (rows == NULL) {
        fprintf(stderr, "vctl: out of memory\n");
        return VCTL_FAIL;
    }
    int n = metrics_fold(p, rows);
    static const char *const hdr[] = {"METRIC", "TYPE", "LABELS", "VALUE"};
    vctl_table *t = vctl_table_create(4, hdr);
    for (int i = 0; i < n && t != NULL; i++) {
        const metric_row *r = &rows[i];
        if (!matches(re, md, r->family, r->labels))
            continue;
        char v[128];
        if (strcmp(r->type, "histogram") == 0 || strcmp(r->type, "summary") == 0) {
            if (r->has_count && r->count > 0 && r->has_sum)
                snprintf(v, sizeof v, "count=%.0f sum=%.6g mean=%.6g", r->count, r->sum,
                         r->sum / r->count);
            else
                snprintf(v, sizeof v, "count=%.0f", r->count);
        } else {
            snprintf(v, sizeof v, "%.15g", r->value);
        }
        const char *row[] = {r->family, r->type, r->labels[0] ? r->labels : "-", v};
        if (vctl_table_add(t, row) != 0) {
            vctl_table_release(t);
            t = NULL;
        }
    }
    free(rows);
    return print_table(t);
}

static int cmd_metrics(const vctl_opts *o, char **args)
{
    pcre2_code *re = NULL;
    pcre2_match_data *md = NULL;
    if (o->grep != NULL) {
        int ec;
        PCRE2_SIZE off;
        re = pcre2_compile((PCRE2_SPTR)o->grep, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
        if (re == NULL) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            fprintf(stderr, "vctl: --grep: bad pattern at offset %zu: %s\n", (size_t)off, msg);
            return VCTL_USAGE;
        }
        md = pcre2_match_data_create_from_pattern(re, NULL);
    }
    vctl_response r = {0};
    vctl_prom p;
    char err[128];
    int rc = fetch(o, "GET", "/metrics", 0, &r);
    if (rc == 0 && vctl_prom_parse(r.body, &p, err, sizeof err) != 0) {
        fprintf(stderr, "vctl: GET /metrics: %s\n", err);
        rc = VCTL_FAIL;
    } else if (rc == 0) {
        if (o->json)
            metrics_print_json(&p, re, md);
        else
            rc = metrics_print_table(&p, re, md);
        vctl_prom_release(&p);
    }
    vctl_response_release(&r); /* empty when fetch failed */
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}

/* ---- main ---- */

typedef struct command {
    const char *name;
    int nargs;
    int (*run)(const vctl_opts *o, char **args);
} command;

static const command COMMANDS[] = {
    {"status", 0, cmd_status},   {"workers", 0, cmd_workers}, {"drain", 1, cmd_drain},
    {"metrics", 0, cmd_metrics}, {"models", 0, cmd_models},   {"adapters", 0, cmd_adapters},
};

static int parse_opts(int argc, char **argv, int permute, vctl_opts *o)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},     {"api-key", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},          {"grep", required_argument, NULL, 'g'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    char *end;
    opterr = 0;
    while ((c = getopt_long(argc, argv, permute ? ":h" : "+:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': o->c.base_url = optarg; break;
        case 'k': o->c.api_key = optarg; break;
        case 'j': o->json = 1; break;
        case 'g': o->grep = optarg; break;
        case 't':
            o->c.timeout_s = strtol(optarg, &end, 10);
            if (*end != '\0' || o->c.timeout_s < 1 || o->c.timeout_s > 3600) {
                fprintf(stderr, "vctl: --timeout: expected seconds in [1, 3600], got '%s'\n", optarg);
                return VCTL_USAGE;
            }
            break;
        case 'h': usage(stdout); return -1;
        case ':':
            fprintf(stderr, "vctl: %s needs a value\n", argv[optind - 1]);
            return VCTL_USAGE;
        default:
            fprintf(stderr, "vctl: unknown option '%s'\n", argv[optind - 1]);
            return VCTL_USAGE;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    vctl_opts o = {.c = {.base_url = getenv("VESTA_URL"), .api_key = getenv("VESTA_API_KEY"),
                         .timeout_s = 10}};
    if (o.c.base_url == NULL || o.c.base_url[0] == '\0')
        o.c.base_url = "http://127.0.0.1:8000";
    /* options may come before and after the command: the first pass stops at the command,
     * the second permutes so that they may follow its arguments too */
    int rc = parse_opts(argc, argv, 0, &o);
    if (rc != 0)
        return rc < 0 ? VCTL_OK : rc;
    if (optind >= argc) {
        fprintf(stderr, "vctl: no command given\n");
        usage(stderr);
        return VCTL_USAGE;
    }
    const char *name = argv[optind];
    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            cmd = &COMMANDS[i];
    if (cmd == NULL) {
        fprintf(stderr, "vctl: unknown command '%s' (run vctl --help)\n", name);
        return VCTL_USAGE;
    }
    char **rest = argv + optind; /* rest[0] is the command name: getopt skips argv[0] */
    int nrest = argc - optind;
    optind = 0; /* GNU getopt: 0 resets its internal state */
    rc = parse_opts(nrest, rest, 1, &o);
    if (rc != 0)
        return rc < 0 ? VCTL_OK : rc;
    if (nrest - optind != cmd->nargs) {
        fprintf(stderr, "vctl: %s takes %d argument%s\n", cmd->name, cmd->nargs,
                cmd->nargs == 1 ? " (the worker id)" : "s");
        return VCTL_USAGE;
    }
    if (o.grep != NULL && cmd->run != cmd_metrics) {
        fprintf(stderr, "vctl: --grep applies to `metrics` only\n");
        return VCTL_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "vctl: libcurl failed to initialise\n");
        return VCTL_FAIL;
    }
    rc = cmd->run(&o, rest + optind);
    curl_global_cleanup();
    return rc;
}
