/* The ranks of one replica must run the same model: each rank opens the model path itself, so a
 * rank started by hand (or on a host whose copy differs) could load other weights and the replica
 * would compute nonsense without any error. Before loading, every rank publishes a short
 * description and a hash of its model -- the configuration, and the bytes of the final norm and of
 * the start of the embedding (cheap: a different checkpoint of the same architecture differs
 * there) -- and every rank compares all of them with rank 0's. */
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "tp.h"

typedef struct model_print {
    uint64_t hash;
    char desc[240]; /* NUL-terminated */
} model_print;

static void hash_tensor(XXH3_state_t *h, const vesta_model_file *mf, const char *name, size_t max_bytes)
{
    const vesta_tensor_info *t = vesta_model_file_find(mf, name);
    if (!t) {
        XXH3_64bits_update(h, "-", 1);
        return;
    }
    XXH3_64bits_update(h, &t->dtype, sizeof t->dtype);
    XXH3_64bits_update(h, t->shape, sizeof t->shape);
    XXH3_64bits_update(h, t->data, t->nbytes < max_bytes ? t->nbytes : max_bytes);
}

static void model_print_make(const vesta_model_file *mf, model_print *p)
{
    const vesta_model_config *c = vesta_model_file_config(mf);
    memset(p, 0, sizeof *p);
    /* every field that changes the computation; the struct itself may hold padding */
    int ints[] = {c->vocab_size, c->hidden_size, c->intermediate_size, c->num_layers, c->num_heads,
                  c->num_kv_heads, c->head_dim, (int)c->rope_scaling, c->rope_original_max_position,
                  c->tie_word_embeddings, c->attention_bias, c->sliding_window};
    float floats[] = {c->rms_norm_eps, c->rope_theta, c->rope_factor, c->rope_low_freq_factor,
                      c->rope_high_freq_factor};
    XXH3_state_t *h = XXH3_createState();
    if (h == NULL) { /* out of memory: the description still compares */
        p->hash = 0;
    } else {
        XXH3_64bits_reset(h);
        XXH3_64bits_update(h, c->arch, strnlen(c->arch, sizeof c->arch));
        XXH3_64bits_update(h, ints, sizeof ints);
        XXH3_64bits_update(h, floats, sizeof floats);
        hash_tensor(h, mf, "model.norm.weight", (size_t)1 << 20);
        hash_tensor(h, mf, "model.embed_tokens.weight", (size_t)64 << 10);
        p->hash = XXH3_64bits_digest(h);
        XXH3_freeState(h);
    }
    const char *path = vesta_model_file_path(mf);
    snprintf(p->desc, sizeof p->desc, "%.120s: %s, %d layers, hidden %d, %d/%d heads, vocab %d", path ? path : "?",
             c->arch, c->num_layers, c->hidden_size, c->num_heads, c->num_kv_heads, c->vocab_size);
}

vesta_status vesta_tp_check_same_model(vesta_tp_comm *c, const vesta_model_file *mf, vesta_error *err)
{
    model_print mine, first, p;
    model_print_make(mf, &mine);
    vesta_status st = VESTA_OK;
    int bad = -1;
    model_print bad_print;
    /* rank r's print travels in the r-th broadcast: every rank sees every print (no early exit:
     * all ranks must make the same collective calls) */
    for (int r = 0; r < c->size && st == VESTA_OK; r++) {
        p = mine;
        st = vesta_tp_comm_broadcast(c, &p, sizeof p, r, c->timeout_ms, err);
        p.desc[sizeof p.desc - 1] = '\0';
        if (st != VESTA_OK)
            break;
        if (r == 0)
            first = p;
        else if (bad < 0 && (p.hash != first.hash || (p.hash == 0 && strcmp(p.desc, first.desc) != 0))) {
            bad = r;
            bad_print = p;
        }
    }
    if (st != VESTA_OK)
        return st;
    if (bad >= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "tp: rank %d's model (%s; hash %016llx) is not rank 0's (%s; hash %016llx): every "
                               "rank of a replica must load the same model files",
                               bad, bad_print.desc, (unsigned long long)bad_print.hash, first.desc,
                               (unsigned long long)first.hash);
    return VESTA_OK;
}
