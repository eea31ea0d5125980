/* The tensor-parallel split (worker/tp/shard.c) shared by the CPU and CUDA backends, checked by
 * its properties over many head / KV-head / rank combinations (real model shapes among them):
 *   - query heads, intermediate columns and vocabulary rows are partitioned exactly (every one
 *     on exactly one rank, contiguous ranges in rank order), the vocabulary slices all of
 *     ceil(V / N) rows with only the tail padded;
 *   - every query head of a rank finds its GQA KV head (h / group, Hugging Face's repeat_kv) among
 *     the rank's KV heads, KV heads are split when there are at least N of them and each is
 *     replicated on N / KVH ranks otherwise, and the local GQA ratio is whole;
 *   - the local configuration carries the slice's sizes and the full vocabulary;
 *   - splits that cannot work are refused, naming the dimension. */
#include <string.h>

#include "shard.h"
#include "../../vesta_test.h"

static vesta_model_config cfg(int H, int KVH, int I, int V)
{
    vesta_model_config c;
    memset(&c, 0, sizeof c);
    c.num_heads = H;
    c.num_kv_heads = KVH;
    c.intermediate_size = I;
    c.vocab_size = V;
    c.hidden_size = 64;
    c.head_dim = 16;
    c.num_layers = 2;
    return c;
}

static void check_plan(int H, int KVH, int I, int V, int n)
{
    vesta_model_config full = cfg(H, KVH, I, V);
    int head_owner[512], inter_seen = 0, vocab_seen = 0, kv_copies[512];
    memset(head_owner, 0, sizeof head_owner);
    memset(kv_copies, 0, sizeof kv_copies);
    const int group = H / KVH;
    for (int r = 0; r < n; r++) {
        vesta_tp_shard sh;
        vesta_model_config lc;
        vesta_error e = {0};
        CHECK(vesta_tp_shard_plan(&full, r, n, &sh, &lc, &e) == VESTA_OK);
        CHECK(sh.rank == r && sh.size == n);
        CHECK(lc.num_heads * n == H);
        CHECK(lc.intermediate_size * n == I);
        CHECK(lc.vocab_size == V && lc.hidden_size == full.hidden_size && lc.head_dim == full.head_dim);
        CHECK(lc.num_kv_heads == (KVH >= n ? KVH / n : 1));
        CHECK(lc.num_heads % lc.num_kv_heads == 0);
        /* heads: contiguous, in rank order */
        CHECK(sh.head0 == r * lc.num_heads);
        for (int h = sh.head0; h < sh.head0 + lc.num_heads; h++) {
            head_owner[h]++;
            int kv = h / group; /* the KV head HF's repeat_kv gives query head h */
            CHECK(kv >= sh.kv_head0 && kv < sh.kv_head0 + lc.num_kv_heads);
            /* the local attention maps local head j to local KV head j / (local group) */
            int j = h - sh.head0, lg = lc.num_heads / lc.num_kv_heads;
            CHECK(sh.kv_head0 + j / lg == kv);
        }
        CHECK(sh.kv_head0 >= 0 && sh.kv_head0 + lc.num_kv_heads <= KVH);
        for (int k = sh.kv_head0; k < sh.kv_head0 + lc.num_kv_heads; k++)
            kv_copies[k]++;
        CHECK(sh.inter0 == inter_seen);
        inter_seen += lc.intermediate_size;
        CHECK(sh.vocab_rows == (V + n - 1) / n);
        CHECK(sh.vocab0 == r * sh.vocab_rows);
        CHECK(sh.vocab_valid >= 0 && sh.vocab_valid <= sh.vocab_rows);
        CHECK(sh.vocab_valid == 0 || sh.vocab0 == vocab_seen);
        if (sh.vocab_valid < sh.vocab_rows) /* only the tail is padded */
            CHECK(sh.vocab0 + sh.vocab_valid == V || sh.vocab_valid == 0);
        vocab_seen += sh.vocab_valid;
    }
    for (int h = 0; h < H; h++)
        CHECK(head_owner[h] == 1);
    for (int k = 0; k < KVH; k++)
        CHECK(kv_copies[k] == (KVH >= n ? 1 : n / KVH));
    CHECK(inter_seen == I);
    CHECK(vocab_seen == V);
}

static void check_refused(int H, int KVH, int I, int n, const char *word)
{
    vesta_model_config full = cfg(H, KVH, I, 1000);
    vesta_tp_shard sh;
    vesta_model_config lc;
    vesta_error e = {0};
    CHECK(vesta_tp_shard_check(&full, n, &e) == VESTA_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, word) != NULL);
    vesta_error e2 = {0};
    CHECK(vesta_tp_shard_plan(&full, 0, n, &sh, &lc, &e2) == VESTA_ERR_INVALID_ARG);
}

int main(void)
{
    /* SmolLM2-135M (9/3), Llama-3-8B (32/8), Llama-3-70B (64/8), Qwen2-0.5B (14/2), tiny (4/2), MHA */
    const int shapes[][4] = {{9, 3, 1536, 49152}, {32, 8, 14336, 128256}, {64, 8, 28672, 128256},
                             {14, 2, 4864, 151936}, {4, 2, 128, 256}, {16, 16, 256, 1001}, {8, 1, 64, 7}};
    int planned = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int n = 1; n <= 64; n++) {
            vesta_model_config c = cfg(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3]);
            vesta_error e = {0};
            if (vesta_tp_shard_check(&c, n, &e) == VESTA_OK) {
                check_plan(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], n);
                planned++;
            }
        }
    CHECK(planned >= 20);
    /* the splits that must work: */
    vesta_model_config l8 = cfg(32, 8, 14336, 128256), sm = cfg(9, 3, 1536, 49152);
    vesta_error e = {0};
    for (int n = 1; n <= 8; n *= 2)
        CHECK(vesta_tp_shard_check(&l8, n, &e) == VESTA_OK);
    CHECK(vesta_tp_shard_check(&l8, 16, &e) == VESTA_OK); /* 2 query heads per rank, KV replicated */
    CHECK(vesta_tp_shard_check(&sm, 3, &e) == VESTA_OK);
    check_refused(9, 3, 1536, 2, "attention heads");
    check_refused(32, 8, 14336, 3, "attention heads");
    check_refused(12, 6, 1536, 4, "KV heads");   /* 6 KV heads over 4 ranks */
    check_refused(32, 8, 1000, 16, "intermediate");
    check_refused(32, 8, 14336, 0, "outside");
    check_refused(128, 8, 14336, 128, "outside");
    vesta_tp_shard sh;
    vesta_model_config lc;
    CHECK(vesta_tp_shard_plan(&l8, 4, 4, &sh, &lc, &e) == VESTA_ERR_INVALID_ARG); /* rank outside */
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("tp shard plan: %d splits checked\n", planned);
    return failures != 0;
}
