/* Word cache: pre-token word → BPE ids. A tokenizer is shared by many threads, so the cache is
 * split into shards, each behind its own mutex; a full shard is simply emptied (words repeat
 * heavily in real text, so a cold shard refills quickly). */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tok_internal.h"

#define SHARD_SLOTS 4096            /* power of two */
#define SHARD_ARENA (512u * 1024u)  /* bytes of keys + ids per shard */

bool tok_cache_init(tok_cache *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        tok_cache_shard *s = &c->shards[i];
        if (pthread_mutex_init(&s->mu, NULL)) return false;
        s->cap = SHARD_SLOTS;
        s->hashes = calloc(SHARD_SLOTS, sizeof *s->hashes);
        s->off = malloc(SHARD_SLOTS * sizeof *s->off);
        s->klen = malloc(SHARD_SLOTS * sizeof *s->klen);
        s->nids = malloc(SHARD_SLOTS * sizeof *s->nids);
        if (!s->hashes || !s->off || !s->klen || !s->nids) return false;
        if (!tok_buf_reserve(&s->arena, SHARD_ARENA)) return false;
    }
    c->ready = true;
    return true;
}

void tok_cache_free(tok_cache *c) {
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        tok_cache_shard *s = &c->shards[i];
        if (s->hashes) pthread_mutex_destroy(&s->mu);
        free(s->hashes);
        free(s->off);
        free(s->klen);
        free(s->nids);
        tok_buf_free(&s->arena);
    }
    memset(c, 0, sizeof *c);
}

static uint64_t word_hash(const char *w, size_t n) {
    uint64_t h = XXH3_64bits(w, n);
    return h ? h : 1;
}

bool tok_cache_get(tok_cache *c, const char *w, size_t n, tok_ids *out) {
    if (!c->ready || n > TOK_CACHE_MAX_WORD) return false;
    uint64_t h = word_hash(w, n);
    tok_cache_shard *s = &c->shards[h >> 60];
    bool found = false;
    pthread_mutex_lock(&s->mu);
    size_t j = (h >> 8) & (s->cap - 1);
    while (s->hashes[j]) {
        if (s->hashes[j] == h && s->klen[j] == n && !memcmp(s->arena.p + s->off[j], w, n)) {
            const char *ids = s->arena.p + s->off[j] + n;
            size_t k = s->nids[j];
            found = true;
            for (size_t i = 0; i < k; i++) {
                int32_t id;
                memcpy(&id, ids + i * sizeof id, sizeof id);
                if (!tok_ids_push(out, id)) {
                    found = false; /* OOM: the caller recomputes (and fails there) */
                    break;
                }
            }
            break;
        }
        j = (j + 1) & (s->cap - 1);
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

void tok_cache_put(tok_cache *c, const char *w, size_t n, const int32_t *ids, size_t nids) {
    if (!c->ready || n > TOK_CACHE_MAX_WORD || nids > UINT16_MAX) return;
    uint64_t h = word_hash(w, n);
    tok_cache_shard *s = &c->shards[h >> 60];
    size_t need = n + nids * sizeof(int32_t);
    pthread_mutex_lock(&s->mu);
    if (s->arena.n + need > SHARD_ARENA || (s->count + 1) * 2 > s->cap) {
        memset(s->hashes, 0, s->cap * sizeof *s->hashes);
        s->count = 0;
        s->arena.n = 0;
    }
    size_t j = (h >> 8) & (s->cap - 1);
    while (s->hashes[j]) {
        if (s->hashes[j] == h && s->klen[j] == n && !memcmp(s->arena.p + s->off[j], w, n)) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        j = (j + 1) & (s->cap - 1);
    }
    size_t off = s->arena.n;
    if (n) memcpy(s->arena.p + off, w, n);
    if (nids) memcpy(s->arena.p + off + n, ids, nids * sizeof(int32_t));
    s->arena.n += need;
    s->hashes[j] = h;
    s->off[j] = (uint32_t)off;
    s->klen[j] = (uint16_t)n;
    s->nids[j] = (uint16_t)nids;
    s->count++;
    pthread_mutex_unlock(&s->mu);
}
