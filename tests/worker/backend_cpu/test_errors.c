/* The CPU backend's contract on tiny-llama: every malformed batch or call is an error (never a
 * crash or an out-of-bounds access, which the ASan build would catch), the backend stays usable
 * afterwards, copy_blocks moves a sequence's KV exactly, and dummy weights run.
 *   test_errors MODEL_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define BS 8
#define NT 10 /* prompt tokens of the test batch */

typedef struct test_batch {
    int32_t tok[NT + 1], pos[NT + 1], slot[NT + 1], qs[2], ctx[1], bt[4], sidx[1], lora[1];
    vesta_sampling_params sp;
    vesta_sample_row row;
    vesta_batch b;
} test_batch;

/* A valid prefill of NT tokens (or, with decode, one token at position NT) over blocks bt. */
static void make_batch(test_batch *t, const int32_t bt[3], bool decode)
{
    memset(t, 0, sizeof *t);
    memcpy(t->bt, bt, 3 * sizeof(int32_t));
    t->bt[3] = -1;
    int first = decode ? NT : 0, n = decode ? 1 : NT;
    for (int i = 0; i < n; i++) {
        int p = first + i;
        t->tok[i] = (int32_t)((p * 37 + 11) % 256);
        t->pos[i] = p;
        t->slot[i] = bt[p / BS] * BS + p % BS;
    }
    t->qs[1] = n;
    t->ctx[0] = first + n;
    t->sidx[0] = n - 1;
    vesta_sampling_params_init(&t->sp);
    t->sp.temperature = 0.0f;
    t->row.params = &t->sp;
    t->b = (vesta_batch){.num_tokens = n, .token_ids = t->tok, .positions = t->pos, .slot_mapping = t->slot,
                         .num_seqs = 1, .query_start = t->qs, .context_lens = t->ctx, .block_tables = t->bt,
                         .max_blocks_per_seq = 4, .max_context_len = t->ctx[0], .num_samples = 1,
                         .sample_token_index = t->sidx, .sample_rows = &t->row};
}

static vesta_status run(vesta_backend *be, const vesta_batch *b, float *logits, vesta_error *e)
{
    vesta_sample_result r;
    memset(e, 0, sizeof *e);
    return be->ops->execute(be, b, &r, logits, e);
}

static vesta_backend *create(vesta_model_file *mf, vesta_backend_options *o, vesta_error *e)
{
    memset(e, 0, sizeof *e);
    return vesta_backend_cpu_create(mf, o, e);
}

static void check_bad_batches(vesta_backend *be, float *logits)
{
    static const int32_t blocks[3] = {5, 17, 2};
    test_batch t;
    vesta_error e;
    /* each case: one field broken; the error must name it */
#define BAD(what, mutate)                                                                          \
    do {                                                                                           \
        make_batch(&t, blocks, false);                                                             \
        mutate;                                                                                    \
        vesta_status st = run(be, &t.b, logits, &e);                                               \
        CHECK(st != VESTA_OK && strstr(e.msg, what), "bad %s: status %d, message '%s'", what, st, e.msg); \
    } while (0)
    BAD("token_ids", t.tok[3] = 256);
    BAD("token_ids", t.tok[0] = -1);
    BAD("positions", t.pos[9] = 10);
    BAD("positions", t.pos[2] = -1);
    BAD("slot_mapping", t.slot[4] = 0);
    BAD("block_tables", t.bt[1] = 32);
    BAD("block_tables", t.bt[0] = -3);
    BAD("num_tokens", t.b.num_tokens = 100000);
    BAD("query_start", t.qs[1] = 9);
    BAD("num_seqs", t.b.num_seqs = 0);
    BAD("context_lens", t.ctx[0] = 0);
    BAD("context_lens", t.ctx[0] = 4 * BS + 1);
    BAD("max_blocks_per_seq", t.b.max_blocks_per_seq = 0);
    BAD("sample_token_index", t.sidx[0] = NT);
    BAD("num_samples", t.b.num_samples = -1);
    BAD("params", t.row.params = NULL);
    BAD("lora_slots", (t.lora[0] = 0, t.b.lora_slots = t.lora));
    BAD("NULL", t.b.positions = NULL);
#undef BAD
    make_batch(&t, blocks, false);
    CHECK(run(be, &t.b, logits, &e) == VESTA_OK, "valid batch after errors: %s", e.msg);
}

/* A sequence's KV copied to other blocks gives bit-identical logits there. */
static void check_copy_blocks(vesta_backend *be, int vocab)
{
    static const int32_t a[3] = {5, 17, 2}, b[3] = {20, 3, 9};
    float *la = calloc((size_t)vocab, sizeof(float)), *lb = calloc((size_t)vocab, sizeof(float));
    test_batch t;
    vesta_error e;
    make_batch(&t, a, false);
    CHECK(run(be, &t.b, la, &e) == VESTA_OK, "prefill: %s", e.msg);
    int32_t src[2] = {5, 17}, dst[2] = {20, 3};
    CHECK(be->ops->copy_blocks(be, src, dst, 2, &e) == VESTA_OK, "copy_blocks: %s", e.msg);
    int32_t bad[1] = {32};
    CHECK(be->ops->copy_blocks(be, src, bad, 1, &e) != VESTA_OK, "copy_blocks to block 32 accepted");
    CHECK(be->ops->copy_blocks(be, NULL, NULL, 0, &e) == VESTA_OK, "copy_blocks of nothing: %s", e.msg);
    make_batch(&t, a, true);
    CHECK(run(be, &t.b, la, &e) == VESTA_OK, "decode on original blocks: %s", e.msg);
    make_batch(&t, b, true);
    CHECK(run(be, &t.b, lb, &e) == VESTA_OK, "decode on copied blocks: %s", e.msg);
    CHECK(memcmp(la, lb, (size_t)vocab * sizeof(float)) == 0, "logits differ after copy_blocks");
    free(la);
    free(lb);
}

/* Several rows may sample one token (n > 1 children of a prompt): the same logits per row. 40 rows
 * are more than the LM head does at once (32 = max_num_batched_tokens here), so it runs in chunks;
 * once with logits_out and once without. */
#define NREP 40
static void check_repeated_samples(vesta_backend *be, int vocab)
{
    static const int32_t blocks[3] = {6, 1, 30};
    test_batch t;
    make_batch(&t, blocks, false);
    int32_t idx[NREP];
    vesta_sample_row rows[NREP];
    vesta_sample_result res[NREP], res2[NREP];
    for (int i = 0; i < NREP; i++) {
        idx[i] = NT - 1;
        rows[i] = t.row;
    }
    float *lg = calloc(NREP * (size_t)vocab, sizeof(float));
    t.b.num_samples = NREP;
    t.b.sample_token_index = idx;
    t.b.sample_rows = rows;
    vesta_error e = {0};
    CHECK(be->ops->execute(be, &t.b, res, lg, &e) == VESTA_OK, "%d samples of one token: %s", NREP, e.msg);
    /* Not bit-exact: BLAS kernels may sum a matrix's remainder rows in another order. */
    double worst = 0;
    for (int r = 1; r < NREP; r++)
        for (int v = 0; v < vocab; v++) {
            double d = fabs((double)lg[(size_t)r * vocab + v] - lg[v]);
            worst = d > worst ? d : worst;
        }
    CHECK(worst < 1e-4, "rows sampling the same token: logits differ by %g", worst);
    CHECK(be->ops->execute(be, &t.b, res2, NULL, &e) == VESTA_OK, "without logits_out: %s", e.msg);
    for (int r = 0; r < NREP; r++)
        CHECK(res[r].token == res[0].token && res2[r].token == res[0].token, "row %d: greedy tokens %d/%d vs %d",
              r, res[r].token, res2[r].token, res[0].token);
    free(lg);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    vesta_error e = {0};
    vesta_model_file *mf = vesta_model_file_open(argv[1], &e);
    if (!mf) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    const vesta_model_config *c = vesta_model_file_config(mf);
    vesta_backend_options o;
    vesta_backend_options_init(&o);
    o.max_num_batched_tokens = 32;
    o.max_model_len = 64;
    o.num_threads = 2;

    o.tp_size = 2;
    CHECK(!create(mf, &o, &e) && e.code == VESTA_ERR_UNSUPPORTED, "tp_size 2 accepted: %s", e.msg);
    o.tp_size = 1;
    o.max_num_batched_tokens = 0;
    CHECK(!create(mf, &o, &e) && e.code == VESTA_ERR_INVALID_ARG, "0 batched tokens accepted: %s", e.msg);
    o.max_num_batched_tokens = 32;
    CHECK(!vesta_backend_cpu_create(NULL, &o, &e), "NULL model accepted");

    vesta_backend *be = create(mf, &o, &e);
    if (!be) {
        fprintf(stderr, "FAIL: create: %s\n", e.msg);
        return 1;
    }
    size_t want = (size_t)c->num_layers * 2 * (size_t)c->num_kv_heads * BS * (size_t)c->head_dim * sizeof(float);
    CHECK(be->ops->kv_block_bytes(be, BS) == want, "kv_block_bytes %zu, want %zu", be->ops->kv_block_bytes(be, BS),
          want);
    CHECK(be->ops->kv_budget_bytes(be) == ((size_t)4 << 30), "default KV budget is not 4 GiB");
    float *logits = calloc((size_t)c->vocab_size, sizeof(float));
    test_batch t;
    static const int32_t blocks[3] = {5, 17, 2};
    make_batch(&t, blocks, false);
    CHECK(run(be, &t.b, logits, &e) != VESTA_OK, "execute before kv_alloc accepted");
    CHECK(be->ops->kv_alloc(be, 0, BS, &e) != VESTA_OK, "0 blocks accepted");
    CHECK(be->ops->kv_alloc(be, 32, BS, &e) == VESTA_OK, "kv_alloc: %s", e.msg);
    CHECK(be->ops->kv_alloc(be, 32, BS, &e) != VESTA_OK, "second kv_alloc accepted");
    check_bad_batches(be, logits);
    check_copy_blocks(be, c->vocab_size);
    check_repeated_samples(be, c->vocab_size);
    vesta_backend_destroy(be);
    vesta_backend_destroy(NULL);

    /* Dummy weights (--load-format dummy): runs, finite logits. */
    o.load_dummy = true;
    o.dummy_seed = 7;
    o.cpu_kv_cache_bytes = 1 << 20;
    be = create(mf, &o, &e);
    CHECK(be != NULL, "dummy create: %s", e.msg);
    if (be) {
        CHECK(be->ops->kv_budget_bytes(be) == (1u << 20), "configured KV budget ignored");
        CHECK(be->ops->kv_alloc(be, 32, BS, &e) == VESTA_OK, "kv_alloc: %s", e.msg);
        make_batch(&t, blocks, false);
        CHECK(run(be, &t.b, logits, &e) == VESTA_OK, "dummy execute: %s", e.msg);
        int finite = 0;
        for (int v = 0; v < c->vocab_size; v++)
            finite += isfinite(logits[v]) != 0;
        CHECK(finite == c->vocab_size, "dummy logits not finite");
        vesta_backend_destroy(be);
    }
    free(logits);
    vesta_model_file_close(mf);
    return failures ? 1 : 0;
}
