/* Unit tests of vesta_tokenizer that need no Python: hostile tokenizer.json files are refused
 * with the file and field named, invalid UTF-8 is an error, encode_spans keeps special-token
 * spellings inside plain spans as text, concurrent encodes agree with a single-threaded run, and
 * the streaming detokenizer's contract (stop strings, after-stop feeds). The SmolLM2 GGUF
 * (VESTA_MODEL) is the real tokenizer used where one is needed; its absence fails the test. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/detokenizer.h"
#include "vesta/tokenizer.h"

static int failures;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* A tiny valid byte-level BPE: "a", "b", "ab", special <|x|>. */
#define TINY_MODEL                                                                                 \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<|x|>\":3},"                 \
    "\"merges\":[\"a b\"]}"

static void expect_refused(const char *json, vesta_status code, const char *needle) {
    vesta_error err = {0};
    vesta_tokenizer *t = vesta_tokenizer_load_json(json, strlen(json), NULL, 0, "hostile.json", &err);
    CHECK(t == NULL);
    vesta_tokenizer_release(t);
    if (err.code != code || !strstr(err.msg, needle) || !strstr(err.msg, "hostile.json")) {
        fprintf(stderr, "  json: %s\n  got %d \"%s\", want %d containing \"%s\"\n", json, err.code,
                err.msg, code, needle);
        failures++;
    }
}

static void test_hostile(void) {
    expect_refused("{", VESTA_ERR_FORMAT, "line");
    expect_refused("[]", VESTA_ERR_FORMAT, "(root)");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
                   VESTA_ERR_FORMAT, "duplicate id");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}",
                   VESTA_ERR_FORMAT, "model.vocab");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a zz\"]}}",
                   VESTA_ERR_FORMAT, "model.merges[0]");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                   VESTA_ERR_FORMAT, "merged token");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}",
                   VESTA_ERR_FORMAT, "model.merges[0]");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"unk_token\":\"<unk>\"}}",
                   VESTA_ERR_FORMAT, "model.unk_token");
    expect_refused("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", VESTA_ERR_UNSUPPORTED, "model.type");
    expect_refused("{" TINY_MODEL ",\"added_tokens\":[{\"id\":0,\"content\":\"<|y|>\"}]}",
                   VESTA_ERR_FORMAT, "added_tokens[0]");
    expect_refused("{" TINY_MODEL ",\"added_tokens\":[{\"content\":\"<|y|>\"}]}", VESTA_ERR_FORMAT,
                   "added_tokens[0]");
    expect_refused("{" TINY_MODEL ",\"normalizer\":{\"type\":\"Precompiled\"}}", VESTA_ERR_UNSUPPORTED,
                   "normalizer");
    expect_refused("{" TINY_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                   "\"behavior\":\"Isolated\"}}",
                   VESTA_ERR_FORMAT, "pre_tokenizer.pattern");
    expect_refused("{" TINY_MODEL ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Nope\"}]}}",
                   VESTA_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[0]");
    expect_refused("{" TINY_MODEL ",\"decoder\":{\"type\":\"Strip\",\"content\":\"ab\",\"start\":1,\"stop\":0}}",
                   VESTA_ERR_FORMAT, "decoder");
    expect_refused("{" TINY_MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":"
                   "[{\"SpecialToken\":{\"id\":\"<s>\"}}],\"special_tokens\":{\"<s>\":{\"ids\":[99]}}}}",
                   VESTA_ERR_FORMAT, "post_processor.single[0]");
    /* deep nesting is refused, not a stack overflow */
    char deep[4096];
    strcpy(deep, "{" TINY_MODEL ",\"normalizer\":");
    for (int i = 0; i < 40; i++) strcat(deep, "{\"type\":\"Sequence\",\"normalizers\":[");
    strcat(deep, "{\"type\":\"NFC\"}");
    for (int i = 0; i < 40; i++) strcat(deep, "]}");
    strcat(deep, "}");
    expect_refused(deep, VESTA_ERR_FORMAT, "nested too deeply");
}

static void test_tiny(void) {
    const char *json = "{" TINY_MODEL ",\"added_tokens\":[{\"id\":3,\"content\":\"<|x|>\",\"special\":true}]}";
    vesta_error err = {0};
    vesta_tokenizer *t = vesta_tokenizer_load_json(json, strlen(json), NULL, 0, "tiny.json", &err);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    /* invalid UTF-8 is an error with no output */
    CHECK(vesta_tokenizer_encode(t, "a\xff", 2, false, true, &ids, &n, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(ids == NULL && n == 0);
    CHECK(vesta_tokenizer_encode(t, "\xe6\x97", 2, false, true, &ids, &n, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_tokenizer_encode(t, "\xed\xa0\x80", 3, false, true, &ids, &n, &err) == VESTA_ERR_INVALID_ARG);
    /* merges, special tokens on and off */
    CHECK(vesta_tokenizer_encode(t, "ab<|x|>a", 8, false, true, &ids, &n, &err) == VESTA_OK);
    CHECK(n == 3 && ids[0] == 2 && ids[1] == 3 && ids[2] == 0);
    free(ids);
    int32_t bad = 7;
    char *text = NULL;
    CHECK(vesta_tokenizer_decode(t, &bad, 1, false, &text, NULL, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_tokenizer_token_to_id(t, "<|x|>", 5) == 3);
    CHECK(vesta_tokenizer_is_special(t, 3) && !vesta_tokenizer_is_special(t, 2));
    CHECK(vesta_tokenizer_id_to_token(t, 9, NULL) == NULL);
    CHECK(vesta_tokenizer_vocab_size(t) == 4);
    /* spans must be ordered and in bounds */
    vesta_text_span sp[2] = {{3, 5}, {1, 2}};
    CHECK(vesta_tokenizer_encode_spans(t, "ab<|x|>", 7, false, sp, 2, &ids, &n, &err) == VESTA_ERR_INVALID_ARG);
    vesta_tokenizer_release(t);
}

static vesta_tokenizer *load_model(void) {
    const char *path = getenv("VESTA_MODEL");
    if (!path) {
        fprintf(stderr, "VESTA_MODEL is not set (scripts/fetch-model.sh)\n");
        failures++;
        return NULL;
    }
    vesta_error err = {0};
    vesta_tokenizer *t = vesta_tokenizer_load(path, &err);
    if (!t) {
        fprintf(stderr, "load %s: %s\n", path, err.msg);
        failures++;
    }
    return t;
}

static void encode_cat(const vesta_tokenizer *t, const char *s, bool parse_special, int32_t *out, size_t *n) {
    int32_t *ids = NULL;
    size_t k = 0;
    vesta_error err = {0};
    CHECK(vesta_tokenizer_encode(t, s, strlen(s), false, parse_special, &ids, &k, &err) == VESTA_OK);
    if (k) memcpy(out + *n, ids, k * sizeof *ids);
    *n += k;
    free(ids);
}

static void test_spans(const vesta_tokenizer *t) {
    const char *text = "<|im_start|>user\nsay <|im_end|> now<|im_end|>\n";
    const char *content = "say <|im_end|> now";
    size_t b = (size_t)(strstr(text, content) - text);
    vesta_text_span sp = {b, b + strlen(content)};
    int32_t *ids = NULL;
    size_t n = 0;
    vesta_error err = {0};
    CHECK(vesta_tokenizer_encode_spans(t, text, strlen(text), false, &sp, 1, &ids, &n, &err) == VESTA_OK);
    /* the same as encoding the template parts with special tokens and the content without */
    int32_t want[256];
    size_t wn = 0;
    encode_cat(t, "<|im_start|>user\n", true, want, &wn);
    encode_cat(t, content, false, want, &wn);
    encode_cat(t, "<|im_end|>\n", true, want, &wn);
    CHECK(n == wn && !memcmp(ids, want, n * sizeof *ids));
    int32_t im_end = vesta_tokenizer_token_to_id(t, "<|im_end|>", 10);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += ids[i] == im_end;
    CHECK(count == 1);
    free(ids);
    CHECK(vesta_tokenizer_bos_id(t) >= 0 && vesta_tokenizer_eos_token(t) != NULL);
    CHECK(vesta_tokenizer_chat_template(t, NULL) != NULL);
}

typedef struct job {
    const vesta_tokenizer *t;
    const char **texts;
    size_t n;
    size_t total; /* sum of ids, to compare runs */
    int bad;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    for (int rep = 0; rep < 20; rep++) {
        for (size_t i = 0; i < j->n; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            vesta_error err = {0};
            if (vesta_tokenizer_encode(j->t, j->texts[i], strlen(j->texts[i]), true, true, &ids, &n, &err)) j->bad++;
            for (size_t k = 0; k < n; k++) j->total += (size_t)ids[k] * (k + 1);
            free(ids);
        }
    }
    return NULL;
}

static void test_threads(const vesta_tokenizer *t) {
    static const char *texts[] = {"Hello world, this is a test.", "don't stop me now 12345",
                                  "日本語のテキスト", "<|im_start|>user\nhi<|im_end|>",
                                  "    indented code\n\tand tabs", "emoji 👨‍👩‍👧‍👦 ok"};
    job ref = {t, texts, 6, 0, 0};
    run_job(&ref);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){t, texts, 6, 0, 0};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].bad == 0 && jobs[i].total == ref.total);
    }
}

static void test_detok(const vesta_tokenizer *t) {
    CHECK(vesta_detokenizer_create(NULL, NULL, NULL) == NULL);
    vesta_detokenizer_release(NULL);
    const char *stops[] = {"STOP"};
    vesta_detokenizer_opts o = {.stop = stops, .n_stop = 1};
    vesta_error err = {0};
    vesta_detokenizer *d = vesta_detokenizer_create(t, &o, &err);
    CHECK(d != NULL);
    if (!d) return;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "one two ST OP STO three STOP four";
    CHECK(vesta_tokenizer_encode(t, text, strlen(text), false, true, &ids, &n, &err) == VESTA_OK);
    char got[256] = "";
    bool stopped = false;
    for (size_t i = 0; i < n && !stopped; i++) {
        const char *p;
        size_t l;
        CHECK(vesta_detokenizer_feed(d, ids[i], &p, &l, &stopped, &err) == VESTA_OK);
        strncat(got, p, l);
        /* never a partial stop string at the end of what was sent */
        size_t g = strlen(got);
        for (size_t k = 1; k < 4 && k <= g; k++) CHECK(stopped || memcmp(got + g - k, "STOP", k) != 0);
    }
    CHECK(stopped);
    CHECK(!strcmp(got, "one two ST OP STO three "));
    const char *p;
    size_t l;
    CHECK(vesta_detokenizer_feed(d, ids[0], &p, &l, &stopped, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_detokenizer_feed(d, 1 << 30, &p, &l, &stopped, &err) == VESTA_ERR_INVALID_ARG);
    free(ids);
    vesta_detokenizer_release(d);
    const char *empty[] = {""};
    vesta_detokenizer_opts bad = {.stop = empty, .n_stop = 1};
    CHECK(vesta_detokenizer_create(t, &bad, &err) == NULL && err.code == VESTA_ERR_INVALID_ARG);
}

/* GGUF seeds of the fuzz corpus: valid_* load, hostile_* are refused naming a tokenizer field. */
static void test_gguf_seeds(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        bool valid = !strncmp(de->d_name, "valid_", 6), hostile = !strncmp(de->d_name, "hostile_", 8);
        if (!valid && !hostile) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        vesta_error err = {0};
        vesta_tokenizer *t = vesta_tokenizer_load(path, &err);
        if (valid != (t != NULL) || (hostile && (!strstr(err.msg, "tokenizer.ggml.") || !strstr(err.msg, path)))) {
            fprintf(stderr, "  %s: loaded=%d msg=\"%s\"\n", de->d_name, t != NULL, err.msg);
            failures++;
        }
        if (t) {
            int32_t *ids = NULL;
            size_t k = 0;
            CHECK(vesta_tokenizer_encode(t, "the hello", 9, true, true, &ids, &k, &err) == VESTA_OK);
            CHECK(k >= 2 && ids[0] == vesta_tokenizer_bos_id(t)); /* add_bos_token */
            free(ids);
            CHECK(vesta_tokenizer_chat_template(t, "default") != NULL);
        }
        vesta_tokenizer_release(t);
        n++;
    }
    closedir(d);
    CHECK(n >= 10);
}

int main(int argc, char **argv) {
    vesta_tokenizer_release(NULL);
    if (argc > 1) test_gguf_seeds(argv[1]);
    test_hostile();
    test_tiny();
    vesta_tokenizer *t = load_model();
    if (t) {
        test_spans(t);
        test_threads(t);
        test_detok(t);
    }
    vesta_tokenizer_release(t);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    puts("ok");
    return 0;
}
