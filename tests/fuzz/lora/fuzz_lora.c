/* libFuzzer entry point for the LoRA adapter reader (worker/model/lora.c): the input is
 * adapter_config.json and adapter_model.safetensors, the first four bytes (little-endian) giving
 * the JSON's length. Whatever the bytes, the load either fails with a message or yields an adapter
 * whose every matrix is finite-sized and readable, for the model shape of tests/models/tiny-llama. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/lora.h"

static vesta_model_config tiny_llama(void)
{
    vesta_model_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = 64, c.intermediate_size = 128, c.num_layers = 2, c.num_heads = 4, c.num_kv_heads = 2;
    c.head_dim = 16, c.vocab_size = 256;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint32_t n = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    if (n > size - 4) n = (uint32_t)(size - 4);
    /* copies: the reader must not rely on bytes past either buffer */
    char *cfg = malloc(n ? n : 1);
    size_t wn = size - 4 - n;
    uint8_t *w = malloc(wn ? wn : 1);
    if (!cfg || !w) {
        free(cfg);
        free(w);
        return 0;
    }
    memcpy(cfg, data + 4, n);
    memcpy(w, data + 4 + n, wn);
    const vesta_model_config c = tiny_llama();
    vesta_error err;
    err.msg[0] = '\0';
    vesta_lora_adapter *ad = vesta_lora_adapter_load_memory("fuzz", cfg, n, w, wn, &c, 64, &err);
    if (ad != NULL) {
        volatile float sink = 0;
        for (int l = 0; l < ad->num_layers; l++)
            for (int t = 0; t < VESTA_LORA_NUM_TARGETS; t++) {
                int in, out;
                vesta_lora_target_dims(&c, (vesta_lora_target)t, &in, &out);
                if (ad->a[l][t]) /* the last element of each matrix is inside the arena */
                    sink += ad->a[l][t][(size_t)ad->rank * in - 1] + ad->b[l][t][(size_t)out * ad->rank - 1];
            }
        (void)sink;
        vesta_lora_adapter_release(ad);
    } else if (err.msg[0] == '\0') {
        abort(); /* a failure must say why */
    }
    free(cfg);
    free(w);
    return 0;
}
