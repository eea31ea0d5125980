/* vesta serve --model PATH [--workers N] [--host H] [--port P] [--config FILE] [flags]
 *
 * Starts vesta-router and N vesta-worker processes (sibling executables of the running one),
 * passing each the merged configuration (defaults < YAML < flags) as explicit flags. Supervises
 * them from one loop: a child that dies unexpectedly is restarted after a backoff that doubles per
 * quick crash (0.5 s .. 30 s; reset once a child has lived a minute). SIGTERM/SIGINT: the router
 * gets SIGTERM first (it stops accepting and lets in-flight requests finish, the workers still
 * serving them), then the workers get SIGTERM (they drain and exit); whatever is still running
 * after a grace period is killed. Exit 0 after a clean shutdown. A second signal kills at once. */
#include "serve.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vesta/config.h"

#define MAX_ARGS 256
#define ROUTER_GRACE_MS 40000 /* the router itself gives in-flight requests 30 s */
#define WORKER_GRACE_MS 20000

typedef struct child {
    const char *kind; /* "router" or "worker" */
    int index;
    pid_t pid;        /* 0 = not running */
    char *argv[MAX_ARGS];
    int argc;
    int64_t started_ms, restart_at_ms;
    int quick_crashes;
} child;

static volatile sig_atomic_t signals_seen;

static void on_signal(int sig)
{
    (void)sig;
    signals_seen++;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int push(child *c, const char *s)
{
    if (c->argc + 1 >= MAX_ARGS || !(c->argv[c->argc] = strdup(s)))
        return -1;
    c->argv[++c->argc] = NULL;
    return 0;
}

/* Appends every option of `scope` with its merged value (lists: the flag with each value). */
static int push_options(child *c, const vesta_config *cfg, unsigned scope)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    for (int i = 0; i < n; i++) {
        const vesta_option *o = &opts[i];
        if (!(o->scopes & scope) || !o->section)
            continue; /* flag-only options are per process */
        if (o->type == VESTA_OPT_LIST) {
            const vesta_config_list *l = (const vesta_config_list *)((const char *)cfg + o->offset);
            for (int k = 0; k < l->count; k++)
                if (push(c, o->flag) || push(c, l->items[k]))
                    return -1;
            continue;
        }
        char val[VESTA_CONFIG_STR_MAX + 16];
        vesta_config_format(cfg, o, val, sizeof val);
        if (o->type == VESTA_OPT_STRING && !val[0])
            continue;
        if (o->type == VESTA_OPT_BOOL) {
            char neg[128];
            snprintf(neg, sizeof neg, "--no-%s", o->flag + 2);
            if (push(c, strcmp(val, "true") == 0 ? o->flag : neg))
                return -1;
        } else if (push(c, o->flag) || push(c, val)) {
            return -1;
        }
    }
    return 0;
}

/* The endpoint a worker connects to for the router's bind address (a wildcard host is not
 * connectable: use loopback). */
static void connect_endpoint(const char *bind, char *out, size_t cap)
{
    const char *p = strstr(bind, "://");
    if (p && (strncmp(p + 3, "*:", 2) == 0 || strncmp(p + 3, "0.0.0.0:", 8) == 0))
        snprintf(out, cap, "%.*s://127.0.0.1%s", (int)(p - bind), bind, strchr(p + 3, ':'));
    else
        snprintf(out, cap, "%s", bind);
}

static int sibling(const char *name, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    int len = snprintf(out, cap, "%s/%s", self, name);
    if (len < 0 || (size_t)len >= cap)
        return -1; /* a truncated path would name another file */
    return access(out, X_OK);
}

static void spawn(child *c)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "vesta serve: fork %s %d: %s\n", c->kind, c->index, strerror(errno));
        c->restart_at_ms = now_ms() + 1000;
        return;
    }
    if (pid == 0) {
        /* Children die with us even if we are SIGKILLed. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_IGN); /* a terminal ^C reaches the whole group: we decide the order */
        execv(c->argv[0], c->argv);
        fprintf(stderr, "vesta serve: exec %s: %s\n", c->argv[0], strerror(errno));
        _exit(127);
    }
    c->pid = pid;
    c->started_ms = now_ms();
    fprintf(stderr, "vesta serve: started %s %d (pid %d)\n", c->kind, c->index, (int)pid);
}

static child *find_pid(child *kids, int n, pid_t pid)
{
    for (int i = 0; i < n; i++)
        if (kids[i].pid == pid)
            return &kids[i];
    return NULL;
}

/* Reaps exited children; when `restart`, schedules them again with backoff. */
static void reap(child *kids, int n, bool restart)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        child *c = find_pid(kids, n, pid);
        if (!c)
            continue;
        c->pid = 0;
        if (!restart)
            continue;
        int64_t now = now_ms();
        c->quick_crashes = now - c->started_ms > 60000 ? 0 : c->quick_crashes + 1;
        int64_t delay = 500;
        for (int k = 1; k < c->quick_crashes && delay < 30000; k++)
            delay *= 2;
        if (delay > 30000)
            delay = 30000;
        c->restart_at_ms = now + delay;
        if (WIFSIGNALED(status))
            fprintf(stderr, "vesta serve: %s %d (pid %d) killed by signal %d; restart in %lld ms\n",
                    c->kind, c->index, (int)pid, WTERMSIG(status), (long long)delay);
        else
            fprintf(stderr, "vesta serve: %s %d (pid %d) exited with %d; restart in %lld ms\n",
                    c->kind, c->index, (int)pid, WEXITSTATUS(status), (long long)delay);
    }
}

static int running(const child *kids, int from, int to)
{
    int r = 0;
    for (int i = from; i < to; i++)
        r += kids[i].pid != 0;
    return r;
}

/* Sends sig to kids[from, to) and waits up to grace_ms for them to exit; kills leftovers. */
static void stop_range(child *kids, int n, int from, int to, int sig, int64_t grace_ms)
{
    for (int i = from; i < to; i++)
        if (kids[i].pid)
            kill(kids[i].pid, sig);
    int64_t deadline = now_ms() + grace_ms;
    while (running(kids, from, to) && now_ms() < deadline && signals_seen < 2) {
        reap(kids, n, false);
        usleep(20000);
    }
    for (int i = from; i < to; i++)
        if (kids[i].pid) {
            fprintf(stderr, "vesta serve: killing %s %d\n", kids[i].kind, kids[i].index);
            kill(kids[i].pid, SIGKILL);
            waitpid(kids[i].pid, NULL, 0);
            kids[i].pid = 0;
        }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vesta serve --model PATH [--workers N] [--host H] [--port P] [--config FILE]"
               " [options]\n       vesta serve PATH [options]\n"
               "Starts vesta-router and N vesta-worker processes and supervises them.\n"
               "SIGTERM/SIGINT: finish in-flight requests, stop everything, exit 0.\n\n");
    vesta_config_print_help(f, VESTA_OPT_SERVE);
}

static void free_kids(child *kids, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < kids[i].argc; k++)
            free(kids[i].argv[k]);
    free(kids);
}

/* Builds the command lines: kids[0] the router, kids[1..] the workers. */
static int build_children(child *kids, const vesta_config *cfg, const char *router_bin,
                          const char *worker_bin)
{
    char endpoint[VESTA_CONFIG_STR_MAX + 32], num[32];
    connect_endpoint(cfg->zmq_bind, endpoint, sizeof endpoint);
    kids[0].kind = "router";
    if (push(&kids[0], router_bin) || push_options(&kids[0], cfg, VESTA_OPT_ROUTER))
        return -1;
    for (int i = 1; i <= cfg->workers; i++) {
        child *c = &kids[i];
        c->kind = "worker";
        c->index = i - 1;
        snprintf(num, sizeof num, "worker-%d", i - 1);
        if (push(c, worker_bin) || push_options(c, cfg, VESTA_OPT_WORKER) || push(c, "--router") ||
            push(c, endpoint) || push(c, "--worker-id") || push(c, num))
            return -1;
        if (strcmp(cfg->backend, "cuda") == 0) { /* worker i: GPUs [i * N, (i + 1) * N) under TP */
            int tp = cfg->tensor_parallel_size > 1 ? cfg->tensor_parallel_size : 1;
            snprintf(num, sizeof num, "%d", (i - 1) * tp);
            if (push(c, "--device") || push(c, num))
                return -1;
        }
    }
    return 0;
}

int vesta_cmd_serve(int argc, char **argv)
{
    vesta_config cfg;
    vesta_error err;
    char *rest[MAX_ARGS];
    int nrest = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if (argc > MAX_ARGS) {
        fprintf(stderr, "vesta serve: too many arguments\n");
        return 2;
    }
    vesta_config_init(&cfg);
    if (vesta_config_parse_args(&cfg, argc, argv, VESTA_OPT_SERVE, rest, &nrest, &err)) {
        fprintf(stderr, "vesta serve: %s\n", err.msg);
        return 2;
    }
    /* `vesta serve PATH`, as `vllm serve PATH`. */
    for (int i = 0; i < nrest; i++) {
        if (rest[i][0] == '-' || cfg.model[0]) {
            fprintf(stderr, "vesta serve: unknown argument '%s' (vesta serve --help)\n", rest[i]);
            return 2;
        }
        snprintf(cfg.model, sizeof cfg.model, "%s", rest[i]);
    }
    if (!cfg.model[0]) {
        fprintf(stderr, "vesta serve: --model is required\n");
        return 2;
    }
    char router_bin[PATH_MAX], worker_bin[PATH_MAX];
    if (sibling("vesta-router", router_bin, sizeof router_bin) ||
        sibling("vesta-worker", worker_bin, sizeof worker_bin)) {
        fprintf(stderr, "vesta serve: vesta-router and vesta-worker must sit next to this "
                        "executable (looked for %s, %s)\n", router_bin, worker_bin);
        return 1;
    }
    int n = 1 + cfg.workers;
    child *kids = calloc((size_t)n, sizeof *kids);
    if (!kids || build_children(kids, &cfg, router_bin, worker_bin)) {
        fprintf(stderr, "vesta serve: out of memory or too many arguments\n");
        if (kids)
            free_kids(kids, n);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "vesta serve: http://%s:%d, %d %s worker(s), model %s\n", cfg.host, cfg.port,
            cfg.workers, cfg.backend, cfg.model);
    for (int i = 0; i < n; i++)
        spawn(&kids[i]);
    while (!signals_seen) {
        reap(kids, n, true);
        int64_t now = now_ms();
        for (int i = 0; i < n && !signals_seen; i++)
            if (!kids[i].pid && now >= kids[i].restart_at_ms)
                spawn(&kids[i]);
        usleep(50000);
    }
    fprintf(stderr, "vesta serve: shutting down (in-flight requests finish first)\n");
    reap(kids, n, false);
    stop_range(kids, n, 0, 1, SIGTERM, ROUTER_GRACE_MS);
    stop_range(kids, n, 1, n, SIGTERM, WORKER_GRACE_MS);
    free_kids(kids, n);
    fprintf(stderr, "vesta serve: stopped\n");
    return 0;
}
