#include "api/prompt.h"

#include <stdlib.h>
#include <string.h>

vesta_status vr_prompt_encode_text(const vesta_tokenizer *tok, const char *text, size_t len,
                                   bool add_special, int32_t **ids, size_t *n, vr_api_error *err)
{
    vesta_error e = {0};
    *ids = NULL;
    *n = 0;
    if (vesta_tokenizer_encode(tok, text, len, add_special, true, ids, n, &e) != VESTA_OK)
        return vr_api_error_bad(err, "prompt", "cannot tokenize the prompt: %s", e.msg);
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return vr_api_error_bad(err, "prompt", "The prompt is empty (it encodes to no tokens)");
    }
    return VESTA_OK;
}

vesta_status vr_prompt_encode_chat(const vesta_chat_template *tpl, const json_t *trusted,
                                   const vesta_tokenizer *tok, const vr_chat_input *in,
                                   int32_t **ids, size_t *n, vr_api_error *err)
{
    *ids = NULL;
    *n = 0;
    if (tpl == NULL)
        return vr_api_error_bad(err, "messages",
                                "The model has no chat template; use /v1/completions");
    if (in->continue_final_message)
        return vr_api_error_bad(err, "continue_final_message",
                                "continue_final_message is not supported");
    json_t *input = json_object();
    if (in->kwargs != NULL)
        json_object_update(input, in->kwargs);
    json_object_set(input, "messages", in->messages);
    if (in->tools != NULL)
        json_object_set(input, "tools", in->tools);
    json_object_set_new(input, "add_generation_prompt",
                        json_boolean(in->add_generation_prompt && !in->continue_final_message));
    vesta_chat_render_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.now = -1;
    vesta_chat_rendered *r = NULL;
    vesta_error e = {0};
    vesta_status st = vesta_chat_template_render(tpl, input, trusted, &opts, &r, &e);
    json_decref(input);
    if (st != VESTA_OK) {
        if (st == VESTA_ERR_NOMEM || st == VESTA_ERR_INTERNAL)
            return vr_api_error_set(err, 500, "internal_error", NULL, NULL,
                                    "chat template failed: %s", e.msg);
        return vr_api_error_bad(err, "messages", "chat template error: %s", e.msg);
    }
    size_t nn = 0;
    st = vesta_chat_encode(tok, r, VESTA_CHAT_SPECIAL_TEMPLATE_ONLY, ids, &nn, &e);
    vesta_chat_rendered_release(r);
    if (st != VESTA_OK)
        return vr_api_error_bad(err, "messages", "cannot tokenize the conversation: %s", e.msg);
    if (in->add_special_tokens && vesta_tokenizer_bos_id(tok) >= 0 &&
        (nn == 0 || (*ids)[0] != vesta_tokenizer_bos_id(tok))) {
        int32_t *with = malloc((nn + 1) * sizeof *with);
        if (with == NULL) {
            free(*ids);
            *ids = NULL;
            return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
        }
        with[0] = vesta_tokenizer_bos_id(tok);
        memcpy(with + 1, *ids, nn * sizeof *with);
        free(*ids);
        *ids = with;
        nn++;
    }
    if (nn == 0) {
        free(*ids);
        *ids = NULL;
        return vr_api_error_bad(err, "messages", "The conversation renders to no tokens");
    }
    *n = nn;
    return VESTA_OK;
}
