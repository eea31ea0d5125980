#include "mock_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

struct mock_backend {
    vesta_backend base;
    mock_options o;
    int num_blocks, block_size;
    int32_t *kv_tok, *kv_pos, *kv_lora;
    int num_loras;
    int32_t *ctx;
    float *logits;
    vesta_sampler_scratch *scratch;
    int steps, max_step_tokens;
    mock_batch_hook hook;
    void *ud;
};

void mock_logits(const int32_t *ctx, int n, int lora_slot, int vocab, float *out)
{
    uint64_t h = 0x5eed ^ ((uint64_t)(lora_slot + 1) * 0xA24BAED4963EE407ULL);
    for (int p = 0; p < n; p++)
        h = vesta_rng_mix(h ^ ((uint64_t)(uint32_t)ctx[p] * 0x9E3779B97F4A7C15ULL + (uint64_t)p));
    for (int v = 0; v < vocab; v++)
        out[v] = (float)(vesta_rng_mix(h + (uint64_t)v) % 1000) / 100.0f - 5.0f;
}

static size_t kv_block_bytes(vesta_backend *be, int block_size) { return (size_t)block_size * 64; }

static size_t kv_budget_bytes(vesta_backend *be) { return ((mock_backend *)be)->o.kv_budget_bytes; }

static vesta_status kv_alloc(vesta_backend *be, int num_blocks, int block_size, vesta_error *err)
{
    mock_backend *m = (mock_backend *)be;
    size_t n = (size_t)num_blocks * (size_t)block_size;
    m->num_blocks = num_blocks;
    m->block_size = block_size;
    m->kv_tok = malloc(n * sizeof(int32_t));
    m->kv_pos = malloc(n * sizeof(int32_t));
    m->kv_lora = malloc(n * sizeof(int32_t));
    m->ctx = malloc((size_t)m->o.max_position_embeddings * sizeof(int32_t));
    if (!m->kv_tok || !m->kv_pos || !m->kv_lora || !m->ctx) return vesta_error_set(err, VESTA_ERR_NOMEM, "mock: kv");
    memset(m->kv_pos, 0xff, n * sizeof(int32_t));
    return VESTA_OK;
}

#define BAD(...) vesta_error_set(err, VESTA_ERR_INTERNAL, "mock: " __VA_ARGS__)

static int lora_of(const vesta_batch *b, int seq) { return b->lora_slots ? b->lora_slots[seq] : -1; }

static vesta_status check_loras(const mock_backend *m, const vesta_batch *b, vesta_error *err)
{
    int distinct[64], n = 0;
    for (int i = 0; i < b->num_seqs; i++) {
        int s = lora_of(b, i), seen = 0;
        if (s < -1 || s >= m->num_loras) return BAD("sequence %d: adapter slot %d of %d", i, s, m->num_loras);
        for (int k = 0; k < n; k++) seen |= distinct[k] == s;
        if (s >= 0 && !seen && n < 64) distinct[n++] = s;
    }
    if (n > (m->o.max_loras > 0 ? m->o.max_loras : 0))
        return BAD("%d adapters in one step, max_loras %d", n, m->o.max_loras);
    return VESTA_OK;
}

static vesta_status check_and_write(mock_backend *m, const vesta_batch *b, vesta_error *err)
{
    int bs = m->block_size;
    if (b->num_tokens < 1 || b->num_tokens > m->o.max_num_batched_tokens)
        return BAD("step of %d tokens, budget %d", b->num_tokens, m->o.max_num_batched_tokens);
    if (b->num_seqs < 1 || b->num_seqs > m->o.max_num_seqs)
        return BAD("step of %d sequences, cap %d", b->num_seqs, m->o.max_num_seqs);
    if (b->num_samples > m->o.max_num_seqs)
        return BAD("%d samples", b->num_samples);
    if (b->query_start[0] != 0 || b->query_start[b->num_seqs] != b->num_tokens)
        return BAD("query_start does not cover the tokens");
    int max_ctx = 0;
    for (int i = 0; i < b->num_seqs; i++) {
        int s0 = b->query_start[i], s1 = b->query_start[i + 1], ctx = b->context_lens[i];
        if (s1 <= s0 || ctx < s1 - s0)
            return BAD("sequence %d: query [%d, %d), context %d", i, s0, s1, ctx);
        max_ctx = ctx > max_ctx ? ctx : max_ctx;
        const int32_t *bt = b->block_tables + (size_t)i * b->max_blocks_per_seq;
        for (int t = s0; t < s1; t++) {
            int pos = b->positions[t];
            if (pos != ctx - (s1 - t))
                return BAD("sequence %d: token %d at position %d, expected %d", i, t, pos,
                           ctx - (s1 - t));
            if (pos / bs >= b->max_blocks_per_seq)
                return BAD("position %d beyond the block table", pos);
            int blk = bt[pos / bs];
            if (blk < 0 || blk >= m->num_blocks)
                return BAD("block %d out of range", blk);
            if (b->slot_mapping[t] != blk * bs + pos % bs)
                return BAD("slot %d of token %d does not match its block table", b->slot_mapping[t], t);
        }
    }
    if (b->max_context_len != max_ctx)
        return BAD("max_context_len %d != %d", b->max_context_len, max_ctx);
    vesta_status st = check_loras(m, b, err);
    if (st != VESTA_OK) return st;
    /* Like a real layer: every new token's KV is written before anything is read. */
    for (int i = 0; i < b->num_seqs; i++)
        for (int t = b->query_start[i]; t < b->query_start[i + 1]; t++) {
            m->kv_tok[b->slot_mapping[t]] = b->token_ids[t];
            m->kv_pos[b->slot_mapping[t]] = b->positions[t];
            m->kv_lora[b->slot_mapping[t]] = lora_of(b, i);
        }
    return VESTA_OK;
}

static vesta_status execute(vesta_backend *be, const vesta_batch *b, vesta_sample_result *results,
                            float *logits_out, vesta_error *err)
{
    mock_backend *m = (mock_backend *)be;
    m->steps++;
    if (m->hook)
        m->hook(b, m->ud);
    if (m->o.fail_at_step == m->steps)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "mock: failing step %d on purpose", m->steps);
    vesta_status st = check_and_write(m, b, err);
    if (st != VESTA_OK)
        return st;
    if (b->num_tokens > m->max_step_tokens)
        m->max_step_tokens = b->num_tokens;
    int bs = m->block_size, V = m->base.config.vocab_size;
    for (int r = 0; r < b->num_samples; r++) {
        int t = b->sample_token_index[r], i = 0;
        while (i < b->num_seqs && b->query_start[i + 1] <= t)
            i++;
        if (i == b->num_seqs || t != b->query_start[i + 1] - 1)
            return BAD("sample row %d at token %d is not the last token of a sequence", r, t);
        const int32_t *bt = b->block_tables + (size_t)i * b->max_blocks_per_seq;
        for (int p = 0; p < b->context_lens[i]; p++) {
            int slot = bt[p / bs] * bs + p % bs;
            if (m->kv_pos[slot] != p)
                return BAD("sequence %d reads position %d from slot %d holding position %d", i, p,
                           slot, m->kv_pos[slot]);
            if (m->kv_lora[slot] != lora_of(b, i))
                return BAD("sequence %d (adapter slot %d) reads KV written under slot %d", i, lora_of(b, i),
                           m->kv_lora[slot]);
            m->ctx[p] = m->kv_tok[slot];
        }
        mock_logits(m->ctx, b->context_lens[i], lora_of(b, i), V, m->logits);
        st = vesta_sampler_sample(m->logits, V, &b->sample_rows[r], &results[r], m->scratch, err);
        if (st != VESTA_OK)
            return st;
        if (logits_out)
            memcpy(logits_out + (size_t)r * V, m->logits, (size_t)V * sizeof(float));
    }
    return VESTA_OK;
}

static vesta_status copy_blocks(vesta_backend *be, const int32_t *src, const int32_t *dst, int n,
                                vesta_error *err)
{
    mock_backend *m = (mock_backend *)be;
    int bs = m->block_size;
    for (int i = 0; i < n; i++) {
        if (src[i] < 0 || src[i] >= m->num_blocks || dst[i] < 0 || dst[i] >= m->num_blocks)
            return BAD("copy_blocks %d -> %d out of range", src[i], dst[i]);
        memcpy(m->kv_tok + (size_t)dst[i] * bs, m->kv_tok + (size_t)src[i] * bs, (size_t)bs * 4);
        memcpy(m->kv_pos + (size_t)dst[i] * bs, m->kv_pos + (size_t)src[i] * bs, (size_t)bs * 4);
        memcpy(m->kv_lora + (size_t)dst[i] * bs, m->kv_lora + (size_t)src[i] * bs, (size_t)bs * 4);
    }
    return VESTA_OK;
}

static void destroy(vesta_backend *be)
{
    mock_backend *m = (mock_backend *)be;
    free(m->kv_tok);
    free(m->kv_pos);
    free(m->kv_lora);
    free(m->ctx);
    free(m->logits);
    vesta_sampler_scratch_release(m->scratch);
    free(m);
}

static vesta_status lora_add(vesta_backend *be, int slot, const vesta_lora_adapter *ad, vesta_error *err)
{
    mock_backend *m = (mock_backend *)be;
    if (m->o.max_loras <= 0 || slot != m->num_loras || ad == NULL)
        return BAD("lora_add slot %d (have %d)", slot, m->num_loras);
    m->num_loras++;
    return VESTA_OK;
}

static const vesta_backend_ops mock_ops = {.name = "mock",
                                           .kv_block_bytes = kv_block_bytes,
                                           .kv_budget_bytes = kv_budget_bytes,
                                           .kv_alloc = kv_alloc,
                                           .execute = execute,
                                           .copy_blocks = copy_blocks,
                                           .lora_add = lora_add,
                                           .destroy = destroy};

mock_backend *mock_backend_create(const mock_options *o)
{
    mock_backend *m = calloc(1, sizeof(*m));
    m->base.ops = &mock_ops;
    m->o = *o;
    vesta_model_config *c = &m->base.config;
    snprintf(c->arch, sizeof(c->arch), "mock");
    c->vocab_size = o->vocab_size;
    c->max_position_embeddings = o->max_position_embeddings;
    c->eos_token_ids[0] = o->eos_id;
    c->num_eos_token_ids = 1;
    c->bos_token_id = -1;
    if (o->max_loras > 0) { /* tests/models/tiny-llama/config.json */
        c->hidden_size = 64;
        c->intermediate_size = 128;
        c->num_layers = 2;
        c->num_heads = 4;
        c->num_kv_heads = 2;
        c->head_dim = 16;
    }
    m->logits = malloc((size_t)o->vocab_size * sizeof(float));
    m->scratch = vesta_sampler_scratch_create(o->vocab_size, NULL);
    return m;
}

vesta_backend *mock_backend_base(mock_backend *m) { return &m->base; }

void mock_backend_set_hook(mock_backend *m, mock_batch_hook hook, void *ud)
{
    m->hook = hook;
    m->ud = ud;
}

int mock_backend_steps(const mock_backend *m) { return m->steps; }
int mock_backend_max_step_tokens(const mock_backend *m) { return m->max_step_tokens; }
