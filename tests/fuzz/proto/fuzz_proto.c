/* libFuzzer entry point for vesta_msg_decode. Invariants beyond "no crash, no leak": a frame
 * that decodes re-encodes, and the re-encoded frame decodes to a message that encodes to the
 * same bytes (encode and decode agree on every field and bound). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vesta_msg m, m2;
    vesta_error err;
    if (vesta_msg_decode((const char *)data, size, &m, &err) != VESTA_OK) {
        if (m.type != VESTA_MSG_NONE || err.msg[0] == '\0')
            abort();
        return 0;
    }
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    if (vesta_msg_encode(&m, &a, &err) != VESTA_OK)
        abort();
    if (vesta_msg_decode(a.data, a.size, &m2, &err) != VESTA_OK)
        abort();
    if (vesta_msg_encode(&m2, &b, &err) != VESTA_OK)
        abort();
    if (a.size != b.size || memcmp(a.data, b.data, a.size) != 0)
        abort();
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    vesta_msg_clear(&m);
    vesta_msg_clear(&m2);
    return 0;
}
