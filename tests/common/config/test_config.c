/* vesta_config: YAML + flags from one table; errors name key and line. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/config.h"

#include "vesta_test.h"

static vesta_status load(vesta_config *c, const char *text, vesta_error *err)
{
    vesta_config_init(c);
    return vesta_config_load_yaml_text(c, text, strlen(text), "t.yaml", err);
}

/* Loading `text` fails and the message contains every one of the given pieces. */
static void expect_error(const char *text, const char *a, const char *b)
{
    vesta_config c;
    vesta_error err = {0};
    vesta_status st = load(&c, text, &err);
    CHECK(st != VESTA_OK);
    if (st == VESTA_OK || (a && !strstr(err.msg, a)) || (b && !strstr(err.msg, b))) {
        fprintf(stderr, "  for YAML:\n%s\n  got: %s\n  wanted: %s / %s\n", text, err.msg, a,
                b ? b : "");
        failures++;
    }
}

static void test_defaults(void)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    vesta_config c;
    vesta_error err;
    CHECK(n <= 64); /* set_by_* arrays */
    vesta_config_init(&c);
    for (int i = 0; i < n; i++) {
        /* Every default is a legal value of its own option. */
        if (opts[i].def[0] && opts[i].type != VESTA_OPT_LIST) {
            vesta_status st = vesta_config_set(&c, &opts[i], opts[i].def, "default", &err);
            CHECK(st == VESTA_OK);
            if (st)
                fprintf(stderr, "  %s\n", err.msg);
        }
        for (int j = 0; j < i; j++)
            CHECK(strcmp(opts[i].flag, opts[j].flag) != 0);
    }
    CHECK(c.port == 8000 && c.block_size == 16 && c.enable_prefix_caching);
    CHECK(c.gpu_memory_utilization == 0.9 && c.max_num_seqs == 0); /* 0: the engine picks vLLM's default */
    CHECK(strcmp(c.routing_policy, "prefix-affinity") == 0);
    CHECK(strcmp(c.zmq_bind, "tcp://127.0.0.1:5557") == 0);
    CHECK(c.workers == 1 && strcmp(c.backend, "cpu") == 0);
    CHECK(!c.batch_invariant);
    const vesta_option *bi = vesta_config_find_flag("--batch-invariant");
    CHECK(bi && bi->type == VESTA_OPT_BOOL && (bi->scopes & VESTA_OPT_WORKER) && (bi->scopes & VESTA_OPT_SERVE));
}

static void test_valid_yaml(void)
{
    vesta_config c;
    vesta_error err;
    const char *y = "# comment\n"
                    "router:\n"
                    "  host: 0.0.0.0\n"
                    "  port: 9000\n"
                    "  api_keys: [k1, \"k2\"]\n"
                    "  routing_policy: least-load\n"
                    "model:\n"
                    "  path: /m/x.gguf\n"
                    "  served_model_name: smol\n"
                    "engine:\n"
                    "  gpu_memory_utilization: 0.5\n"
                    "  enable_prefix_caching: false\n"
                    "  block_size: 32\n"
                    "  batch_invariant: true\n"
                    "workers:\n"
                    "  count: 3\n"
                    "  backend: sim\n";
    CHECK(load(&c, y, &err) == VESTA_OK);
    CHECK(strcmp(c.host, "0.0.0.0") == 0 && c.port == 9000);
    CHECK(c.api_keys.count == 2 && strcmp(c.api_keys.items[1], "k2") == 0);
    CHECK(strcmp(c.routing_policy, "least-load") == 0);
    CHECK(strcmp(c.model, "/m/x.gguf") == 0);
    CHECK(c.served_model_name.count == 1 && strcmp(c.served_model_name.items[0], "smol") == 0);
    CHECK(c.gpu_memory_utilization == 0.5 && !c.enable_prefix_caching && c.block_size == 32);
    CHECK(c.batch_invariant && !c.enforce_eager);
    CHECK(c.workers == 3 && strcmp(c.backend, "sim") == 0);
    CHECK(c.max_num_seqs == 0); /* untouched default */

    /* Flags override YAML whatever their order relative to --config. */
    FILE *f = fopen("test_config_tmp.yaml", "w");
    fputs(y, f);
    fclose(f);
    char *argv[] = {"prog", "--port", "9100", "--no-enable-prefix-caching", "--enable-prefix-caching",
                    "--served-model-name", "a", "b", "--config", "test_config_tmp.yaml",
                    "--block-size=64", "--api-key", "z", "extra", "--unknown-flag"};
    int argc = sizeof argv / sizeof *argv;
    char *rest[16];
    int nrest;
    vesta_config_init(&c);
    vesta_status st = vesta_config_parse_args(&c, argc, argv, VESTA_OPT_SERVE, rest, &nrest, &err);
    CHECK(st == VESTA_OK);
    CHECK(c.port == 9100 && c.block_size == 64 && c.enable_prefix_caching);
    CHECK(c.served_model_name.count == 2 && strcmp(c.served_model_name.items[1], "b") == 0);
    CHECK(c.api_keys.count == 1 && strcmp(c.api_keys.items[0], "z") == 0);
    CHECK(c.workers == 3); /* from the file */
    CHECK(nrest == 2 && strcmp(rest[0], "extra") == 0 && strcmp(rest[1], "--unknown-flag") == 0);
    const vesta_option *po = vesta_config_find_flag("--port");
    int n;
    CHECK(po && c.set_by_flag[po - vesta_config_options(&n)] && c.set_by_yaml[po - vesta_config_options(&n)]);
    char buf[64];
    vesta_config_format(&c, po, buf, sizeof buf);
    CHECK(strcmp(buf, "9100") == 0);
    remove("test_config_tmp.yaml");

    /* Without `rest`, unknown arguments are errors; scopes limit flags. */
    char *argv2[] = {"prog", "--bogus"};
    vesta_config_init(&c);
    CHECK(vesta_config_parse_args(&c, 2, argv2, VESTA_OPT_WORKER, NULL, NULL, &err) != VESTA_OK);
    CHECK(strstr(err.msg, "--bogus") != NULL);
    char *argv3[] = {"prog", "--workers", "2"}; /* serve-only */
    CHECK(vesta_config_parse_args(&c, 3, argv3, VESTA_OPT_WORKER, NULL, NULL, &err) != VESTA_OK);
    char *argv4[] = {"prog", "--port", "0"};
    CHECK(vesta_config_parse_args(&c, 3, argv4, VESTA_OPT_ROUTER, NULL, NULL, &err) != VESTA_OK);
    CHECK(strstr(err.msg, "--port") != NULL);
    char *argv5[] = {"prog", "--port"};
    CHECK(vesta_config_parse_args(&c, 2, argv5, VESTA_OPT_ROUTER, NULL, NULL, &err) != VESTA_OK);
    CHECK(strstr(err.msg, "needs a value") != NULL);
    char *argv6[] = {"prog", "--config", "/nonexistent/x.yaml"};
    CHECK(vesta_config_parse_args(&c, 3, argv6, VESTA_OPT_ROUTER, NULL, NULL, &err) == VESTA_ERR_IO);

    /* vLLM's serve command as users type it (--trust-remote-code included); the flag also reaches
     * the router and the workers */
    char *argv7[] = {"prog", "--model", "m", "--served-model-name", "llama3", "--port", "8000", "--trust-remote-code"};
    vesta_config_init(&c);
    CHECK(!c.trust_remote_code);
    CHECK(vesta_config_parse_args(&c, 8, argv7, VESTA_OPT_SERVE, NULL, NULL, &err) == VESTA_OK);
    CHECK(c.trust_remote_code && c.port == 8000 && strcmp(c.model, "m") == 0);
    char *argv8[] = {"prog", "--model", "m", "--trust-remote-code"};
    const unsigned scopes[] = {VESTA_OPT_ROUTER, VESTA_OPT_WORKER};
    for (int i = 0; i < 2; i++) {
        vesta_config_init(&c);
        CHECK(vesta_config_parse_args(&c, 4, argv8, scopes[i], NULL, NULL, &err) == VESTA_OK && c.trust_remote_code);
    }
}

static void test_invalid_yaml(void)
{
    expect_error("engine:\n  block_size: 16\n  bogus: 1\n", "t.yaml:3:3", "engine.bogus");
    expect_error("router:\n  port: 70000\n", "t.yaml:2:9", "router.port");
    expect_error("router:\n  port: abc\n", "2:9", "expected an integer");
    expect_error("engine:\n  gpu_memory_utilization: 1.5\n", "2:27", "engine.gpu_memory_utilization");
    expect_error("engine:\n  gpu_memory_utilization: .nan\n", "2:27", "gpu_memory_utilization");
    expect_error("engine:\n  enable_prefix_caching: maybe\n", "2:26", "expected true or false");
    expect_error("router:\n  routing_policy: random\n", "2:19", "prefix-affinity|least-load");
    expect_error("routr:\n  port: 1\n", "1:1", "unknown section 'routr'");
    expect_error("router:\n  port: 1\n  port: 2\n", "3:3", "duplicate key 'router.port'");
    expect_error("router:\n  port: [1, 2]\n", "2:9", "router.port");
    expect_error("router: 5\n", "1:9", "router");
    expect_error("- a\n- b\n", "1:1", "top level");
    expect_error("router:\n  port: 1\n bad indent: [\n", "t.yaml:", "YAML syntax error");
    expect_error("model:\n  served_model_name: [a, [b]]\n", "2:23", "model.served_model_name");
    expect_error("model:\n  served_model_name: [a,b,c,d,e,f,g,h,i]\n", "2:", "too many");
    expect_error("workers:\n  count: 0\n", "2:10", "workers.count");
    expect_error("engine:\n  max_num_seqs: 99999999999999999999\n", "2:17", "engine.max_num_seqs");
    /* Empty file and empty sections are fine. */
    vesta_config c;
    vesta_error err;
    CHECK(load(&c, "", &err) == VESTA_OK);
    CHECK(load(&c, "engine:\n", &err) == VESTA_OK);
}

/* Every example config in configs/ loads. */
static void test_examples(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d)
        return;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        vesta_config c;
        vesta_error err;
        vesta_config_init(&c);
        vesta_status st = vesta_config_load_yaml(&c, path, &err);
        CHECK(st == VESTA_OK);
        if (st)
            fprintf(stderr, "  %s\n", err.msg);
        CHECK(c.model[0] != '\0');
        count++;
    }
    closedir(d);
    CHECK(count >= 2);
}

/* docs/configuration.md is what the table generates. */
static int check_doc(const char *path)
{
    char *want = NULL, *have = NULL;
    size_t wn = 0, hn = 0;
    FILE *m = open_memstream(&want, &wn);
    vesta_config_write_markdown(m);
    fclose(m);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        free(want);
        return 1;
    }
    have = malloc(wn + 2);
    hn = fread(have, 1, wn + 1, f);
    fclose(f);
    int same = hn == wn && memcmp(have, want, wn) == 0;
    if (!same)
        fprintf(stderr, "%s is stale: regenerate with `test_config --write-doc %s`\n", path, path);
    free(want);
    free(have);
    return same ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-doc") == 0) {
        FILE *f = fopen(argv[2], "w");
        if (!f)
            return 1;
        vesta_config_write_markdown(f);
        return fclose(f) ? 1 : 0;
    }
    if (argc == 3 && strcmp(argv[1], "--check-doc") == 0)
        return check_doc(argv[2]);
    test_defaults();
    test_valid_yaml();
    test_invalid_yaml();
    if (argc == 2)
        test_examples(argv[1]);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("config: all passed\n");
    return 0;
}
