/* libFuzzer entry: arbitrary bytes as a chat template, compiled and rendered over a fixed
 * conversation with tight sandbox limits. Any outcome but a crash, a leak or a sanitizer report
 * is fine; errors must come back as statuses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/chat_template.h"

static json_t *context(void)
{
    static const char *ctx =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"sys {{ x }}\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"part\"}]},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\","
        " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1.5, true, null]}}}]},"
        " {\"role\": \"tool\", \"content\": \"<|im_end|> \\u00e9\\ud83d\\ude00\"}],"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
        " \"add_generation_prompt\": true, \"enable_thinking\": false}";
    return json_loads(ctx, 0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vesta_error err = {0};
    vesta_chat_template *t = vesta_chat_template_compile((const char *)data, size, &err);
    if (!t)
        return 0;
    json_t *in = context();
    json_t *trusted = json_pack("{s:s, s:s}", "bos_token", "<s>", "eos_token", "</s>");
    vesta_chat_render_opts o = {
        .limits = {.max_steps = 200000, .max_depth = 64, .max_output = 1 << 20, .max_memory = 64 << 20},
        .now = 0,
    };
    vesta_chat_rendered *r = NULL;
    if (vesta_chat_template_render(t, in, trusted, &o, &r, &err) == VESTA_OK) {
        /* Invariants of a result: NUL-terminated, segments sorted, disjoint, in bounds. */
        if (r->text[r->len] != 0)
            abort();
        size_t prev = 0;
        for (size_t i = 0; i < r->n_segments; i++) {
            if (r->segments[i].begin < prev || r->segments[i].end <= r->segments[i].begin ||
                r->segments[i].end > r->len)
                abort();
            prev = r->segments[i].end;
        }
    }
    vesta_chat_rendered_release(r);
    json_decref(trusted);
    json_decref(in);
    vesta_chat_template_release(t);
    return 0;
}
