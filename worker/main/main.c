/* vesta-worker: one engine (one GPU rank, or one CPU replica, or a simulator) serving a router
 * over ZeroMQ. Flags: vesta-worker --help. Protocol: proto/README.md. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "vesta/config.h"
#include "worker.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vesta-worker --router tcp://127.0.0.1:5557 --model PATH [options]\n"
               "SIGTERM/SIGINT: stop taking requests, finish the running ones, exit 0.\n\n");
    vesta_config_print_help(f, VESTA_OPT_WORKER);
}

int main(int argc, char **argv)
{
    vesta_config cfg;
    vesta_error err;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    vesta_config_init(&cfg);
    if (vesta_config_parse_args(&cfg, argc, argv, VESTA_OPT_WORKER, NULL, NULL, &err)) {
        fprintf(stderr, "vesta-worker: %s\n", err.msg);
        return 2;
    }
    bool sim = strcmp(cfg.backend, "sim") == 0;
    if (!sim && !cfg.model[0]) {
        fprintf(stderr, "vesta-worker: --model is required (except with --backend sim)\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR and the loop sees it */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    runner *r = sim ? sim_runner_create(&cfg, &err) : engine_runner_create(&cfg, &err);
    if (!r) {
        fprintf(stderr, "vesta-worker: %s\n", err.msg);
        return 1;
    }
    return vesta_worker_run(&cfg, r, &stop_requested);
}
