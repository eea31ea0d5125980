/* libFuzzer entry point for the safetensors reader: whatever the bytes, open either fails with
 * an error or yields tensors whose data lies inside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    vesta_error err;
    err.msg[0] = '\0';
    vesta_safetensors *st = vesta_safetensors_open_memory(copy, size, "fuzz.safetensors", &err);
    if (st != NULL) {
        for (size_t i = 0; i < vesta_safetensors_tensor_count(st); i++) {
            const vesta_safetensors_tensor *t = vesta_safetensors_tensor_at(st, i);
            if (t->nbytes > 0) {
                (void)((volatile const uint8_t *)t->data)[0];
                (void)((volatile const uint8_t *)t->data)[t->nbytes - 1];
            }
            if (vesta_safetensors_find(st, t->name) != t)
                abort(); /* the index must agree with the table */
        }
        vesta_safetensors_close(st);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(copy);
    return 0;
}
