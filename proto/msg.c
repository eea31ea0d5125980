#include <stdlib.h>
#include <string.h>

#include "vesta/proto.h"

void vesta_msg_init(vesta_msg *m, vesta_msg_type type)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    switch (type) {
    case VESTA_MSG_REGISTER:
        m->u.reg.tp_size = 1;
        break;
    case VESTA_MSG_GENERATE:
        vesta_sampling_params_init(&m->u.generate.sp);
        break;
    case VESTA_MSG_TOKENS:
        m->u.tokens.stop_token = -1;
        break;
    default:
        break;
    }
}

void vesta_msg_clear(vesta_msg *m)
{
    if (!m)
        return;
    switch (m->type) {
    case VESTA_MSG_GENERATE:
        free(m->u.generate.prompt_ids);
        break;
    case VESTA_MSG_TOKENS:
        free(m->u.tokens.new_token_ids);
        free(m->u.tokens.logprobs);
        break;
    case VESTA_MSG_KV_EVENTS:
        free(m->u.kv_events.stored);
        free(m->u.kv_events.evicted);
        break;
    default:
        break;
    }
    memset(m, 0, sizeof *m);
}
