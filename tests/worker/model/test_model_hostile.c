/* vesta_model on broken inputs: each case must fail (at open or at validate) with an error that
 * names the file and the key or tensor, and never crash (run under ASan/UBSan). Cases are built
 * in a temporary directory from the committed tiny models.  Usage: test_model_hostile MODELS_DIR */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/format/test_check.h"
#include "vesta/model.h"

static const char *g_models;
static char g_tmp[256];

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*len);
    REQUIRE(fread(p, 1, *len, f) == *len);
    fclose(f);
    return p;
}

static void spit(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(p, 1, len, f) == len);
    fclose(f);
}

static void spit_str(const char *dir, const char *file, const char *s)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    spit(path, s, strlen(s));
}

/* a fresh case directory with the tiny-llama weights linked in */
static char *case_dir(const char *name, bool weights)
{
    static char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", g_tmp, name);
    REQUIRE(mkdir(dir, 0700) == 0);
    if (weights) {
        char src[PATH_MAX], dst[PATH_MAX + 32];
        REQUIRE(realpath(g_models, src) != NULL);
        strcat(src, "/tiny-llama/model.safetensors");
        snprintf(dst, sizeof(dst), "%s/model.safetensors", dir);
        REQUIRE(symlink(src, dst) == 0);
    }
    return dir;
}

static const char *TINY_CONFIG =
    "{\"model_type\":\"llama\",\"vocab_size\":256,\"hidden_size\":%d,\"intermediate_size\":128,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
    "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0%s}";

/* open must fail with a message containing each needle */
static void expect_open_fail(const char *path, const char *n1, const char *n2, int line)
{
    vesta_error err = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &err);
    if (mf != NULL) {
        fprintf(stderr, "line %d: %s opened\n", line, path);
        g_failures++;
        vesta_model_file_close(mf);
        return;
    }
    if ((n1 && !strstr(err.msg, n1)) || (n2 && !strstr(err.msg, n2))) {
        fprintf(stderr, "line %d: message '%s' lacks '%s'/'%s'\n", line, err.msg, n1, n2 ? n2 : "");
        g_failures++;
    }
}
#define OPEN_FAIL(p, a, b) expect_open_fail(p, a, b, __LINE__)

/* open succeeds, validate fails naming the needles */
static void expect_validate_fail(const char *path, const char *n1, const char *n2, int line)
{
    vesta_error err = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &err);
    if (mf == NULL) {
        fprintf(stderr, "line %d: %s did not open: %s\n", line, path, err.msg);
        g_failures++;
        return;
    }
    if (vesta_model_file_validate(mf, &err) == VESTA_OK) {
        fprintf(stderr, "line %d: %s validated\n", line, path);
        g_failures++;
    } else if ((n1 && !strstr(err.msg, n1)) || (n2 && !strstr(err.msg, n2))) {
        fprintf(stderr, "line %d: message '%s' lacks '%s'/'%s'\n", line, err.msg, n1, n2 ? n2 : "");
        g_failures++;
    }
    vesta_model_file_close(mf);
}
#define VALIDATE_FAIL(p, a, b) expect_validate_fail(p, a, b, __LINE__)

static void test_hf_dirs(void)
{
    char cfg[1024];
    char *d = case_dir("config-only", false);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, 64, "");
    spit_str(d, "config.json", cfg);
    VALIDATE_FAIL(d, "missing tensor 'model.embed_tokens.weight'", d);

    d = case_dir("gpt2", false);
    spit_str(d, "config.json", "{\"model_type\":\"gpt2\",\"vocab_size\":10}");
    OPEN_FAIL(d, "config.json", "model_type 'gpt2' unsupported");

    d = case_dir("yarn", false);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, 64, ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}");
    spit_str(d, "config.json", cfg);
    OPEN_FAIL(d, "config.json", "'yarn' unsupported");

    d = case_dir("missing-field", false);
    spit_str(d, "config.json", "{\"model_type\":\"llama\",\"vocab_size\":256}");
    OPEN_FAIL(d, "config.json", "missing 'hidden_size'");

    d = case_dir("bad-json", false);
    spit_str(d, "config.json", "{\"model_type\":");
    OPEN_FAIL(d, "config.json", NULL);

    d = case_dir("negative", false);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, -64, "");
    spit_str(d, "config.json", cfg);
    OPEN_FAIL(d, "config.json", "'hidden_size'");

    d = case_dir("eos-type", false);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, 64, ",\"eos_token_id\":\"x\"");
    spit_str(d, "config.json", cfg);
    OPEN_FAIL(d, "config.json", "eos_token_id");

    d = case_dir("gen-config", false);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, 64, ",\"eos_token_id\":2");
    spit_str(d, "config.json", cfg);
    spit_str(d, "generation_config.json", "{\"eos_token_id\":[2, 300]}");
    OPEN_FAIL(d, "eos token id 300", NULL);

    d = case_dir("wrong-hidden", true);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, 96, "");
    spit_str(d, "config.json", cfg);
    VALIDATE_FAIL(d, "model.safetensors: tensor 'model.embed_tokens.weight' has shape [256, 64]", "[256, 96]");

    d = case_dir("heads", true); /* q_proj rows no longer match num_heads x head_dim */
    spit_str(d, "config.json",
             "{\"model_type\":\"llama\",\"vocab_size\":256,\"hidden_size\":64,\"intermediate_size\":128,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"num_key_value_heads\":2,\"head_dim\":16}");
    VALIDATE_FAIL(d, "'model.layers.0.self_attn.q_proj.weight'", "[128, 64]");

    d = case_dir("more-layers", true);
    spit_str(d, "config.json",
             "{\"model_type\":\"llama\",\"vocab_size\":256,\"hidden_size\":64,\"intermediate_size\":128,"
             "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2}");
    VALIDATE_FAIL(d, "missing tensor 'model.layers.2.", NULL);

    /* sharded: a shard that is missing, one outside the directory, a tensor in the wrong shard */
    d = case_dir("shard-missing", false);
    snprintf(cfg, sizeof(cfg), TINY_CONFIG, 64, "");
    spit_str(d, "config.json", cfg);
    spit_str(d, "model.safetensors.index.json", "{\"weight_map\":{\"lm_head.weight\":\"nope.safetensors\"}}");
    OPEN_FAIL(d, "nope.safetensors", NULL);
    d = case_dir("shard-escape", false);
    spit_str(d, "config.json", cfg);
    spit_str(d, "model.safetensors.index.json", "{\"weight_map\":{\"x\":\"../tiny-llama/model.safetensors\"}}");
    OPEN_FAIL(d, "model.safetensors.index.json", "plain file name");
    d = case_dir("shard-wrong", true);
    spit_str(d, "config.json", cfg);
    spit_str(d, "model.safetensors.index.json", "{\"weight_map\":{\"not.there\":\"model.safetensors\"}}");
    OPEN_FAIL(d, "'not.there' is not in shard", NULL);
    d = case_dir("shard-nomap", false);
    spit_str(d, "config.json", cfg);
    spit_str(d, "model.safetensors.index.json", "{\"metadata\":{}}");
    OPEN_FAIL(d, "weight_map", NULL);

    OPEN_FAIL("/nonexistent/model", "/nonexistent/model", NULL);
    vesta_error err = {0};
    CHECK(vesta_model_file_open(NULL, &err) == NULL);
}

/* index of `needle` in buf, or abort */
static size_t find(const uint8_t *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0)
            return i;
    fprintf(stderr, "needle '%s' not found\n", needle);
    exit(1);
}

static void test_gguf(void)
{
    char src[PATH_MAX], path[PATH_MAX];
    snprintf(src, sizeof(src), "%s/tiny-llama-q4_0.gguf", g_models);
    size_t len;
    uint8_t *orig = slurp(src, &len);
    uint8_t *buf = malloc(len);

    /* truncations: must never crash; must fail whenever a tensor's data is cut */
    snprintf(path, sizeof(path), "%s/cut.gguf", g_tmp);
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 37 : 997) {
        spit(path, orig, cut);
        vesta_error err = {0};
        vesta_model_file *mf = vesta_model_file_open(path, &err);
        if (cut + 64 <= len)
            CHECKF(mf == NULL && strstr(err.msg, path), "cut at %zu of %zu: %s", cut, len, err.msg);
        vesta_model_file_close(mf);
    }

    /* an unsupported tensor type (IQ4_NL: same block size, so the file stays consistent) */
    memcpy(buf, orig, len);
    size_t at = find(buf, len, "blk.0.attn_q.weight") + strlen("blk.0.attn_q.weight");
    buf[at + 4 + 16] = 20; /* after n_dims (4) and two dims (16): the ggml type */
    snprintf(path, sizeof(path), "%s/q4k.gguf", g_tmp);
    spit(path, buf, len);
    OPEN_FAIL(path, "'blk.0.attn_q.weight'", "ggml type 20");

    /* unsupported architecture */
    memcpy(buf, orig, len);
    at = find(buf, len, "general.architecture") + strlen("general.architecture") + 4 + 8;
    memcpy(buf + at, "gpt2x", 5);
    snprintf(path, sizeof(path), "%s/arch.gguf", g_tmp);
    spit(path, buf, len);
    OPEN_FAIL(path, "arch.gguf", "'gpt2x' unsupported");

    /* a missing required key */
    memcpy(buf, orig, len);
    at = find(buf, len, "llama.block_count");
    buf[at + 12] = 'X';
    snprintf(path, sizeof(path), "%s/key.gguf", g_tmp);
    spit(path, buf, len);
    OPEN_FAIL(path, "key.gguf", "missing key 'llama.block_count'");

    /* a configuration that disagrees with the tensors */
    memcpy(buf, orig, len);
    at = find(buf, len, "llama.embedding_length") + strlen("llama.embedding_length") + 4;
    buf[at] = 96;
    snprintf(path, sizeof(path), "%s/shape.gguf", g_tmp);
    spit(path, buf, len);
    VALIDATE_FAIL(path, "'model.embed_tokens.weight' has shape [256, 64]", "shape.gguf");

    /* head counts that do not divide the permuted Q rows */
    memcpy(buf, orig, len);
    at = find(buf, len, "llama.attention.head_count_kv") + strlen("llama.attention.head_count_kv") + 4;
    buf[at] = 3;
    snprintf(path, sizeof(path), "%s/heads.gguf", g_tmp);
    spit(path, buf, len);
    OPEN_FAIL(path, "heads.gguf", NULL);

    /* reads of a good file with bad arguments */
    vesta_error err = {0};
    vesta_model_file *mf = vesta_model_file_open(src, &err);
    REQUIRE(mf != NULL);
    float tmp[64];
    CHECK(vesta_model_file_read_rows(mf, "nope", VESTA_DTYPE_F32, 0, 1, tmp, &err) == VESTA_ERR_NOT_FOUND &&
          strstr(err.msg, "'nope'"));
    CHECK(vesta_model_file_read_rows(mf, "model.norm.weight", VESTA_DTYPE_F32, 0, 65, tmp, &err) ==
          VESTA_ERR_INVALID_ARG);
    CHECK(vesta_model_file_read_rows(mf, "model.norm.weight", VESTA_DTYPE_F32, -1, 2, tmp, &err) ==
          VESTA_ERR_INVALID_ARG);
    CHECK(vesta_model_file_read_rows(mf, "model.norm.weight", VESTA_DTYPE_Q8_0, 0, 1, tmp, &err) ==
          VESTA_ERR_INVALID_ARG);
    CHECK(vesta_model_file_read_cols(mf, "model.norm.weight", VESTA_DTYPE_F32, 0, 1, tmp, &err) ==
          VESTA_ERR_INVALID_ARG);
    CHECK(vesta_model_file_read_cols(mf, "lm_head.weight", VESTA_DTYPE_F32, 60, 65, tmp, &err) ==
          VESTA_ERR_INVALID_ARG);
    CHECK(vesta_model_file_read_rows(mf, "model.norm.weight", VESTA_DTYPE_F32, 3, 3, tmp, &err) == VESTA_OK);
    vesta_model_file_close(mf);
    vesta_model_file_close(NULL);
    free(buf);
    free(orig);
}

static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    g_models = argv[1];
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/vesta-model-hostile-XXXXXX");
    REQUIRE(mkdtemp(g_tmp) != NULL);
    test_hf_dirs();
    test_gguf();
    rm_rf(g_tmp);
    return test_finish("test_model_hostile");
}
