/* Multi-LoRA on the CPU backend: after a targeted projection, every sequence of the step that
 * runs under an adapter adds B (A x) (scaling folded into B at load) to its rows, in float32 as
 * PEFT does. Sequences of different adapters share the step; the base model's rows are left as
 * they are. */
#include <stdlib.h>

#include "cpu_internal.h"

vesta_status cpu_lora_add(vesta_backend *base, int slot, const vesta_lora_adapter *ad, vesta_error *err)
{
    cpu_backend *be = (cpu_backend *)base;
    if (be->comm != NULL)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "LoRA adapters with tensor parallelism are not supported (adapter '%s')", ad->name);
    if (slot != be->num_loras || slot >= VESTA_LORA_MAX_ADAPTERS)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "lora_add: slot %d, expected %d (at most %d)", slot,
                               be->num_loras, VESTA_LORA_MAX_ADAPTERS);
    if (ad->num_layers != be->base.config.num_layers)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "adapter '%s': %d layers, the model has %d", ad->name,
                               ad->num_layers, be->base.config.num_layers);
    if (ad->rank > be->lora_rank_cap) { /* start-up only: execute never allocates */
        float *tmp = realloc(be->lora_tmp, (size_t)be->a.max_tokens * (size_t)ad->rank * sizeof(float));
        if (tmp == NULL) return vesta_error_set(err, VESTA_ERR_NOMEM, "adapter '%s': out of memory", ad->name);
        be->lora_tmp = tmp;
        be->lora_rank_cap = ad->rank;
    }
    be->loras[be->num_loras++] = ad;
    return VESTA_OK;
}

void cpu_lora_apply(cpu_backend *be, const vesta_batch *b, int layer, vesta_lora_target t, const float *x, float *y,
                    int ldy)
{
    if (b->lora_slots == NULL || be->num_loras == 0) return;
    int in, out;
    vesta_lora_target_dims(&be->base.config, t, &in, &out);
    for (int s = 0; s < b->num_seqs; s++) {
        const int slot = b->lora_slots[s], t0 = b->query_start[s], n = b->query_start[s + 1] - t0;
        if (slot < 0 || n == 0 || be->loras[slot]->a[layer][t] == NULL) continue;
        const vesta_lora_adapter *ad = be->loras[slot];
        const int r = ad->rank;
        cpu_product(&be->a, x + (size_t)t0 * (size_t)in, n, in, ad->a[layer][t], r, be->lora_tmp, r, 0.0f);
        cpu_product(&be->a, be->lora_tmp, n, r, ad->b[layer][t], out, y + (size_t)t0 * (size_t)ldy, ldy, 1.0f);
    }
}
