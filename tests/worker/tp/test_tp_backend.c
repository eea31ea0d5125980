/* A CPU tensor-parallel replica of real processes against the single-process CPU backend.
 *
 *   test_tp_backend equal  MODEL TP PROMPTS NEW   TP=TP vs TP=1: every prompt position's logits
 *        and every decode step's logits within relative L2 1e-4, greedy tokens identical (the
 *        prompts run together, prefilled whole or in chunks, joining at different steps)
 *   test_tp_backend refuse MODEL TP               the configuration is refused with a message
 *   test_tp_backend refuse-configs                the split rules on synthetic configurations
 *   test_tp_backend kill   MODEL TP               rejected steps leave the replica working; then a
 *        follower killed mid-run: the leader's next step fails (not hangs) and the other
 *        followers exit with an error
 *   test_tp_backend follower SHM RANK TP MODEL    (internal) one follower rank
 *
 * Followers are this program re-executed (fork + exec, as vesta starts its ranks), with
 * NCCL_NVLS_ENABLE=0 in their environment. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "driver.h"
#include "tp.h"

#define BLOCK 16
#define MAX_TOKENS 64
#define MAX_LEN 512
#define TIMEOUT_MS 60000
#define MAX_PROMPTS 8

static void options(vesta_backend_options *o, int rank, int tp)
{
    vesta_backend_options_init(o);
    o->max_num_batched_tokens = MAX_TOKENS;
    o->max_model_len = MAX_LEN;
    o->block_size = BLOCK;
    o->num_threads = 2;
    o->tp_rank = rank;
    o->tp_size = tp;
}

/* "VESTA_MODEL" names the default model through that environment variable. */
static vesta_model_file *open_model(const char *path)
{
    if (!strcmp(path, "VESTA_MODEL") && !(path = getenv("VESTA_MODEL"))) {
        fprintf(stderr, "FAIL: VESTA_MODEL is not set (scripts/fetch-model.sh fetches the model)\n");
        exit(1);
    }
    vesta_error e = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &e);
    if (!mf) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        exit(1);
    }
    return mf;
}

static void spawn_followers(const char *shm, int tp, const char *model, pid_t *pids)
{
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    char tps[16], rs[16];
    snprintf(tps, sizeof tps, "%d", tp);
    for (int r = 1; r < tp; r++) {
        snprintf(rs, sizeof rs, "%d", r);
        pids[r] = fork();
        if (pids[r] == 0) {
            execl("/proc/self/exe", "test_tp_backend", "follower", shm, rs, tps, model, (char *)NULL);
            _exit(127);
        }
    }
}

static int wait_followers(const pid_t *pids, int tp, const char *what)
{
    int bad = 0;
    for (int r = 1; r < tp; r++) {
        int status;
        waitpid(pids[r], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "FAIL: %s: follower %d ended with status 0x%x\n", what, r, status);
            bad++;
        }
    }
    return bad;
}

static vesta_backend *leader(vesta_model_file *mf, int tp, const char *shm)
{
    vesta_backend_options o;
    options(&o, 0, tp);
    vesta_error e = {0};
    vesta_backend *be = vesta_tp_cpu_leader_open(mf, &o, shm, TIMEOUT_MS, &e);
    if (!be) {
        fprintf(stderr, "FAIL: leader: %s\n", e.msg);
        exit(1);
    }
    return be;
}

/* Deterministic pseudo-random prompts (token ids below the vocabulary size). */
static void make_seqs(drv_seq *s, int n, int n_new, int vocab, int *keep)
{
    static const int lens[MAX_PROMPTS] = {5, 23, 40, 9, 17, 3, 31, 12};
    static const int chunks[MAX_PROMPTS] = {0, 7, 16, 1, 0, 0, 9, 5};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < n_new; k++)
        keep[k] = k;
    for (int i = 0; i < n; i++) {
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)lens[i]);
        for (int j = 0; j < lens[i]; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[j] = (int32_t)((x >> 33) % (uint64_t)vocab);
        }
        s[i] = (drv_seq){.prompt = ids, .n_prompt = lens[i], .n_new = n_new, .chunk = chunks[i], .start_step = i,
                         .prompt_logits = true, .keep_steps = keep, .n_keep = n_new};
    }
}

static int run_equal(const char *model, int tp, int n, int n_new)
{
    vesta_model_file *mf = open_model(model);
    const int vocab = vesta_model_file_config(mf)->vocab_size;
    int keep[64];
    if (n > MAX_PROMPTS || n_new > 64)
        return 2;
    drv_seq ref[MAX_PROMPTS], got[MAX_PROMPTS];
    make_seqs(ref, n, n_new, vocab, keep);
    make_seqs(got, n, n_new, vocab, keep);

    vesta_backend_options o;
    options(&o, 0, 1);
    vesta_error e = {0};
    vesta_backend *one = vesta_backend_cpu_create(mf, &o, &e);
    if (!one) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    drv d;
    drv_init(&d, one, 256, BLOCK, MAX_TOKENS);
    drv_run(&d, ref, n, 11);
    drv_free(&d);
    vesta_backend_destroy(one);

    char shm[96];
    vesta_tp_comm_shm_name(shm, sizeof shm);
    pid_t pids[VESTA_TP_MAX_RANKS];
    spawn_followers(shm, tp, model, pids);
    vesta_backend *be = leader(mf, tp, shm);
    if (be->config.num_heads != vesta_model_file_config(mf)->num_heads || be->config.vocab_size != vocab) {
        fprintf(stderr, "FAIL: the tp backend must report the full model configuration\n");
        return 1;
    }
    drv_init(&d, be, 256, BLOCK, MAX_TOKENS);
    drv_run(&d, got, n, 11); /* same seed: same block tables */
    drv_free(&d);
    vesta_backend_destroy(be); /* tells the followers to shut down */
    int failures = wait_followers(pids, tp, "shutdown");

    for (int i = 0; i < n; i++) {
        double worst = 0;
        for (int r = 0; r < ref[i].n_prompt; r++) {
            double rel = drv_rel_l2(got[i].prompt_rows + (size_t)r * vocab, ref[i].prompt_rows + (size_t)r * vocab,
                                    vocab);
            worst = rel > worst ? rel : worst;
        }
        for (int k = 0; k < n_new; k++) {
            double rel = drv_rel_l2(got[i].kept + (size_t)k * vocab, ref[i].kept + (size_t)k * vocab, vocab);
            worst = rel > worst ? rel : worst;
        }
        int same = memcmp(got[i].out, ref[i].out, sizeof(int32_t) * (size_t)n_new) == 0;
        printf("prompt %d (%d tokens, chunk %d): worst logits rel L2 %.3g, greedy tokens %s\n", i, ref[i].n_prompt,
               ref[i].chunk, worst, same ? "identical" : "DIFFER");
        if (!(worst < 1e-4) || !same || got[i].argmax_mismatch) {
            fprintf(stderr, "FAIL: prompt %d: TP=%d differs from TP=1\n", i, tp);
            failures++;
        }
        /* Also not trivially equal: the sequences did produce tokens. */
        if (got[i].n_out != n_new) {
            fprintf(stderr, "FAIL: prompt %d: %d tokens generated\n", i, got[i].n_out);
            failures++;
        }
    }
    for (int i = 0; i < n; i++) {
        free((void *)ref[i].prompt);
        free((void *)got[i].prompt);
        drv_seq_free(&ref[i]);
        drv_seq_free(&got[i]);
    }
    vesta_model_file_close(mf);
    printf("%s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}

static int run_refuse(const char *model, int tp)
{
    vesta_model_file *mf = open_model(model);
    vesta_backend_options o;
    options(&o, 0, tp);
    char shm[96];
    vesta_tp_comm_shm_name(shm, sizeof shm);
    vesta_error e = {0};
    vesta_backend *be = vesta_tp_cpu_leader_open(mf, &o, shm, 2000, &e);
    int ok = !be && strstr(e.msg, "tensor-parallel size") != NULL;
    printf("TP=%d: %s\n", tp, be ? "accepted" : e.msg);
    /* Nor does the plain backend accept a tp_size without a communicator. */
    vesta_error e2 = {0};
    vesta_backend *plain = vesta_backend_cpu_create(mf, &o, &e2);
    ok = ok && !plain && strstr(e2.msg, "communicator");
    vesta_backend_destroy(be);
    vesta_backend_destroy(plain);
    vesta_model_file_close(mf);
    printf("%s\n", ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

/* Configurations no model file here has: KV heads that neither divide nor are divided by the
 * ranks, an intermediate size that does not split. */
static int run_refuse_configs(void)
{
    static const struct {
        int heads, kv, inter, tp;
        const char *want;
    } cases[] = {
        {12, 4, 128, 6, "KV heads"},
        {4, 2, 130, 4, "intermediate size"},
        {9, 3, 1536, 2, "attention heads"},
        {4, 2, 128, 0, "outside"},
        {12, 4, 128, 3, "KV heads"}, /* rank 0 heads 0-3 would need KV heads 0 and 1 */
        {12, 4, 128, 4, NULL},        /* accepted: 3 query heads, 1 KV head per rank */
        {8, 2, 128, 8, NULL},  /* accepted: KV heads replicated 4 times */
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        vesta_model_config c = {.num_heads = cases[i].heads, .num_kv_heads = cases[i].kv,
                                .intermediate_size = cases[i].inter};
        vesta_error e = {0};
        vesta_status st = vesta_backend_cpu_check_tp(&c, cases[i].tp, &e);
        int ok = cases[i].want ? st != VESTA_OK && strstr(e.msg, cases[i].want) : st == VESTA_OK;
        printf("heads %d, KV heads %d, intermediate %d, TP=%d: %s\n", cases[i].heads, cases[i].kv, cases[i].inter,
               cases[i].tp, st == VESTA_OK ? "accepted" : e.msg);
        failures += !ok;
    }
    printf("%s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}

/* The rank command line: a GPU rank (an NCCL id) is told to run the cuda backend, a CPU rank the
 * cpu one. The "executable" is a shell script that writes its arguments to a file. */
static int run_spawn_args(void)
{
    char dir[] = "/tmp/vesta-tp-spawn-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char exe[128], out[128];
    snprintf(exe, sizeof exe, "%s/rank.sh", dir);
    snprintf(out, sizeof out, "%s/args", dir);
    FILE *f = fopen(exe, "w");
    if (!f)
        return 1;
    fprintf(f, "#!/bin/sh\necho \"$*\" >> %s\n", out);
    fclose(f);
    chmod(exe, 0700);
    vesta_backend_options o;
    options(&o, 0, 2);
    const char *ids[2] = {NULL, "00112233"};
    int failures = 0;
    for (int i = 0; i < 2; i++) {
        vesta_error e = {0};
        int pid = 0;
        o.disable_custom_all_reduce = i == 1; /* the GPU rank is told, as the leader was */
        if (vesta_tp_spawn_rank(exe, "m", &o, 1, "/shm", ids[i], 1000, &pid, &e) != VESTA_OK) {
            fprintf(stderr, "FAIL: spawn: %s\n", e.msg);
            return 1;
        }
        int status;
        waitpid(pid, &status, 0);
    }
    char line[2][2048] = {{0}};
    f = fopen(out, "r");
    for (int i = 0; f && i < 2; i++)
        if (!fgets(line[i], sizeof line[i], f))
            line[i][0] = '\0';
    if (f)
        fclose(f);
    failures += !strstr(line[0], "--backend cpu") || strstr(line[0], "--nccl-id") != NULL;
    failures += !strstr(line[1], "--backend cuda --nccl-id 00112233");
    failures += !strstr(line[0], "--disable-custom-all-reduce 0") || !strstr(line[1], "--disable-custom-all-reduce 1");
    printf("cpu rank: %s\ngpu rank: %s\n%s\n", line[0], line[1], failures ? "FAIL" : "ok");
    unlink(exe);
    unlink(out);
    rmdir(dir);
    return failures ? 1 : 0;
}

/* Followers given another model file than the leader's: every rank refuses before loading. */
static int run_mismatch(const char *model, const char *other, int tp)
{
    vesta_model_file *mf = open_model(model);
    char shm[96];
    vesta_tp_comm_shm_name(shm, sizeof shm);
    pid_t pids[16] = {0};
    spawn_followers(shm, tp, other, pids);
    vesta_backend_options o;
    options(&o, 0, tp);
    vesta_error e = {0};
    vesta_backend *be = vesta_tp_cpu_leader_open(mf, &o, shm, TIMEOUT_MS, &e);
    int ok = !be && strstr(e.msg, "rank 1's model") && strstr(e.msg, "is not rank 0's") && strstr(e.msg, other);
    printf("leader: %s\n", be ? "accepted" : e.msg);
    int followers_ok = 0;
    for (int r = 1; r < tp; r++) {
        int status;
        waitpid(pids[r], &status, 0);
        followers_ok += WIFEXITED(status) && WEXITSTATUS(status) != 0; /* each refused too */
    }
    ok = ok && followers_ok == tp - 1;
    vesta_backend_destroy(be);
    vesta_model_file_close(mf);
    printf("%s\n", ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

static int run_kill(const char *model, int tp)
{
    vesta_model_file *mf = open_model(model);
    const int vocab = vesta_model_file_config(mf)->vocab_size;
    char shm[96];
    vesta_tp_comm_shm_name(shm, sizeof shm);
    pid_t pids[VESTA_TP_MAX_RANKS];
    spawn_followers(shm, tp, model, pids);
    vesta_backend *be = leader(mf, tp, shm);
    vesta_error e = {0};
    if (be->ops->kv_alloc(be, 8, BLOCK, &e) != VESTA_OK) {
        fprintf(stderr, "FAIL: kv_alloc: %s\n", e.msg);
        return 1;
    }
    int32_t tok[1] = {vocab - 1}, pos[1] = {0}, slot[1] = {2 * BLOCK}, qs[2] = {0, 1}, ctx[1] = {1}, bt[1] = {2},
            si[1] = {0};
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0.0f;
    vesta_sample_row row = {.params = &sp};
    vesta_batch b = {.num_tokens = 1, .token_ids = tok, .positions = pos, .slot_mapping = slot, .num_seqs = 1,
                     .query_start = qs, .context_lens = ctx, .block_tables = bt, .max_blocks_per_seq = 1,
                     .max_context_len = 1, .num_samples = 1, .sample_token_index = si, .sample_rows = &row};
    vesta_sample_result res;
    if (be->ops->execute(be, &b, &res, NULL, &e) != VESTA_OK) {
        fprintf(stderr, "FAIL: first step: %s\n", e.msg);
        return 1;
    }
    /* Rejected steps leave the replica in step: one only rank 0 can check (sampling parameters),
     * one every rank rejects (a token id outside the vocabulary). */
    vesta_sample_row bad_row = {.params = NULL};
    vesta_batch bad = b;
    bad.sample_rows = &bad_row;
    vesta_error eb = {0};
    int rejected = be->ops->execute(be, &bad, &res, NULL, &eb) != VESTA_OK;
    printf("bad sampling row: %s\n", eb.msg);
    int32_t bad_tok[1] = {vocab};
    bad = b;
    bad.token_ids = bad_tok;
    rejected += be->ops->execute(be, &bad, &res, NULL, &eb) != VESTA_OK;
    printf("bad token id: %s\n", eb.msg);
    if (rejected != 2 || be->ops->execute(be, &b, &res, NULL, &e) != VESTA_OK) {
        fprintf(stderr, "FAIL: bad steps not rejected, or the replica did not survive them: %s\n", e.msg);
        return 1;
    }
    kill(pids[1], SIGKILL);
    int status;
    waitpid(pids[1], &status, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vesta_status st = be->ops->execute(be, &b, &res, NULL, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("after killing rank 1: %s in %.2f s: %s\n", st == VESTA_OK ? "ok" : "error", dt, e.msg);
    vesta_error e2 = {0};
    vesta_status again = be->ops->execute(be, &b, &res, NULL, &e2);
    printf("next step: %s\n", e2.msg);
    vesta_backend_destroy(be);
    int failures = st == VESTA_OK || again == VESTA_OK || dt > 10.0;
    for (int r = 2; r < tp; r++) { /* the surviving followers must notice and exit with an error */
        waitpid(pids[r], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 3) {
            fprintf(stderr, "FAIL: follower %d ended with status 0x%x, want exit 3\n", r, status);
            failures++;
        }
    }
    vesta_model_file_close(mf);
    printf("%s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}

static int run_follower(const char *shm, int rank, int tp, const char *model)
{
    vesta_model_file *mf = open_model(model);
    vesta_backend_options o;
    options(&o, rank, tp);
    vesta_error e = {0};
    vesta_status st = vesta_tp_cpu_follower_main(mf, &o, shm, TIMEOUT_MS, &e);
    vesta_model_file_close(mf);
    if (st != VESTA_OK) {
        fprintf(stderr, "follower %d: %s\n", rank, e.msg);
        return 3;
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 6 && !strcmp(argv[1], "equal"))
        return run_equal(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 4 && !strcmp(argv[1], "refuse"))
        return run_refuse(argv[2], atoi(argv[3]));
    if (argc == 2 && !strcmp(argv[1], "refuse-configs"))
        return run_refuse_configs();
    if (argc == 2 && !strcmp(argv[1], "spawn-args"))
        return run_spawn_args();
    if (argc == 5 && !strcmp(argv[1], "mismatch"))
        return run_mismatch(argv[2], argv[3], atoi(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "kill"))
        return run_kill(argv[2], atoi(argv[3]));
    if (argc == 6 && !strcmp(argv[1], "follower"))
        return run_follower(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
    fprintf(stderr, "usage: %s equal MODEL TP PROMPTS NEW | refuse MODEL TP | kill MODEL TP\n", argv[0]);
    return 2;
}
