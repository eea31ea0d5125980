/* libFuzzer driver for the router's HTTP request parsing and validation: the first byte picks
 * the endpoint (completions, chat, tokenize, detokenize), the rest is the body. Also runs the
 * UTF-8 repair used for response text and builds a response from what parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    vr_api_error err;
    vr_api_limits lim;
    vr_api_limits_init(&lim);
    lim.vocab_size = 50000;
    switch (data[0] % 4) {
    case 0:
    case 1: {
        vr_api_kind kind = data[0] % 4 == 0 ? VR_API_COMPLETION : VR_API_CHAT;
        vr_api_request r;
        if (vr_api_request_parse(kind, body, len, &lim, &r, &err) == VESTA_OK) {
            json_t *o = vr_resp_envelope(kind, r.stream, "id", 0, r.model ? r.model : "m");
            const char *text = r.n_prompts && r.prompts[0].text ? r.prompts[0].text : "";
            json_array_append_new(json_object_get(o, "choices"),
                                  vr_resp_choice(kind, r.stream, 0, text, strlen(text), true, NULL,
                                                 "stop", NULL));
            char *s = json_dumps(o, JSON_COMPACT);
            free(s);
            json_decref(o);
            (void)vr_api_default_max_tokens(&r, 10, 4096);
            vr_api_request_clear(&r);
        } else {
            size_t n;
            free(vr_api_error_body(&err, &n));
        }
        break;
    }
    case 2: {
        vr_api_tokenize t;
        if (vr_api_tokenize_parse(body, len, &t, &err) == VESTA_OK)
            vr_api_tokenize_clear(&t);
        break;
    }
    default: {
        vr_api_detokenize d;
        if (vr_api_detokenize_parse(body, len, lim.vocab_size, &d, &err) == VESTA_OK)
            vr_api_detokenize_clear(&d);
        break;
    }
    }
    json_decref(vr_json_text(body, len));
    return 0;
}
