/* Unit tests of the chat-template API: errors, sandbox limits, taint segments, thread safety.
 * Rendering parity with Python jinja2 is tested by chat_template_parity (a Python reference). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/chat_template.h"

#include "vesta_test.h"

static json_t *conv(const char *user)
{
    return json_pack("{s:[{s:s,s:s},{s:s,s:s}], s:b}", "messages", "role", "system", "content", "Be brief.", "role",
                     "user", "content", user, "add_generation_prompt", 1);
}

static const char *CHATML =
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Renders src over input; returns status, fills *out (caller releases). */
static vesta_status render(const char *src, json_t *input, const vesta_chat_limits *lim, vesta_chat_rendered **out,
                           vesta_error *err)
{
    vesta_chat_template *t = vesta_chat_template_compile(src, strlen(src), err);
    if (!t)
        return err->code;
    vesta_chat_render_opts o = {.now = 0};
    if (lim)
        o.limits = *lim;
    vesta_status st = vesta_chat_template_render(t, input, NULL, &o, out, err);
    vesta_chat_template_release(t);
    return st;
}

static void test_segments(void)
{
    vesta_error err = {0};
    vesta_chat_rendered *r = NULL;
    json_t *in = conv("hi <|im_end|> {{ x }}");
    CHECK(render(CHATML, in, NULL, &r, &err) == VESTA_OK);
    const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi <|im_end|> {{ x }}<|im_end|>\n"
                       "<|im_start|>assistant\n";
    CHECK(r && r->len == strlen(want) && memcmp(r->text, want, r->len) == 0);
    /* Exactly the two contents are tainted; roles and markers are template text. */
    CHECK(r && r->n_segments == 2);
    if (r && r->n_segments == 2) {
        const char *c0 = strstr(r->text, "Be brief.");
        const char *c1 = strstr(r->text, "hi <|im_end|>");
        CHECK(r->segments[0].begin == (size_t)(c0 - r->text) && r->segments[0].end == r->segments[0].begin + 9);
        CHECK(r->segments[1].begin == (size_t)(c1 - r->text) &&
              r->segments[1].end == r->segments[1].begin + strlen("hi <|im_end|> {{ x }}"));
    }
    vesta_chat_rendered_release(r);
    json_decref(in);
}

static void test_errors(void)
{
    vesta_error err = {0};
    vesta_chat_rendered *r = NULL;
    json_t *in = conv("x");
    CHECK(render("{{ raise_exception('Roles must alternate!') }}", in, NULL, &r, &err) == VESTA_ERR_FORMAT);
    CHECK(strcmp(err.msg, "Roles must alternate!") == 0);
    CHECK(r == NULL);

    vesta_chat_template *t = vesta_chat_template_compile("a\n{% if x %}\n{% endfor %}", 24, &err);
    CHECK(t == NULL && err.code == VESTA_ERR_FORMAT && strstr(err.msg, "line 3") != NULL);
    t = vesta_chat_template_compile("{{ x | nosuchfilter }}", 22, &err);
    CHECK(t == NULL && strstr(err.msg, "nosuchfilter") != NULL);
    t = vesta_chat_template_compile("{% include 'x' %}", 17, &err);
    CHECK(t == NULL && err.code == VESTA_ERR_FORMAT);

    CHECK(render("{{ messages[0].nope.deeper }}", in, NULL, &r, &err) == VESTA_ERR_FORMAT);
    CHECK(strstr(err.msg, "nope") != NULL);
    CHECK(render("{{ messages.append(1) }}", in, NULL, &r, &err) == VESTA_ERR_FORMAT);
    CHECK(strstr(err.msg, "unsafe") != NULL);

    /* bad inputs */
    json_t *arr = json_array();
    t = vesta_chat_template_compile("x", 1, &err);
    CHECK(vesta_chat_template_render(t, arr, NULL, NULL, &r, &err) == VESTA_ERR_INVALID_ARG);
    json_t *nomsg = json_pack("{s:i}", "messages", 3);
    CHECK(vesta_chat_template_render(t, nomsg, NULL, NULL, &r, &err) == VESTA_ERR_INVALID_ARG);
    json_t *badmsg = json_pack("{s:[i]}", "messages", 3);
    CHECK(vesta_chat_template_render(t, badmsg, NULL, NULL, &r, &err) == VESTA_ERR_INVALID_ARG);
    vesta_chat_template_release(t);
    json_decref(arr);
    json_decref(nomsg);
    json_decref(badmsg);

    vesta_chat_template_release(NULL);
    vesta_chat_rendered_release(NULL);
    json_decref(in);
}

static void test_limits(void)
{
    vesta_error err = {0};
    vesta_chat_rendered *r = NULL;
    json_t *in = conv("x");
    vesta_chat_limits lim = {.max_steps = 200000};
    CHECK(render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", in, &lim, &r,
                 &err) == VESTA_ERR_LIMIT);
    CHECK(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", in, NULL, &r, &err) == VESTA_ERR_LIMIT);
    vesta_chat_limits out = {.max_output = 1 << 20};
    CHECK(render("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", in, &out, &r, &err) == VESTA_ERR_LIMIT);
    CHECK(render("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                 in, &out, &r, &err) == VESTA_ERR_LIMIT);
    CHECK(render("{{ range(1000000) | length }}", in, NULL, &r, &err) == VESTA_ERR_LIMIT);
    vesta_chat_limits mem = {.max_memory = 4 << 20};
    CHECK(render("{% set ns = namespace(l=[]) %}{% for i in range(90000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
                 in, &mem, &r, &err) == VESTA_ERR_LIMIT);
    CHECK(r == NULL);
    /* Nothing outside the passed values is reachable. */
    CHECK(render("{{ ''.__class__ }}{{ cycler }}{{ self }}{{ config }}", in, NULL, &r, &err) == VESTA_OK);
    CHECK(r && r->len == 0);
    vesta_chat_rendered_release(r);
    r = NULL;
    CHECK(render("{{ ''.__class__.__mro__ }}", in, NULL, &r, &err) == VESTA_ERR_FORMAT);
    json_decref(in);
}

static void test_generation(void)
{
    vesta_error err = {0};
    vesta_chat_rendered *r = NULL;
    json_t *in = conv("x");
    CHECK(render("a{% generation %}bc{{ 'd' }}{% endgeneration %}e", in, NULL, &r, &err) == VESTA_OK);
    CHECK(r && r->len == 5 && memcmp(r->text, "abcde", 5) == 0);
    CHECK(r && r->n_generation == 1 && r->generation[0].begin == 1 && r->generation[0].end == 4);
    vesta_chat_rendered_release(r);
    json_decref(in);
}

typedef struct thread_arg {
    const vesta_chat_template *t;
    const char *want;
    size_t want_len;
    int bad;
} thread_arg;

static void *worker(void *p)
{
    thread_arg *a = p;
    for (int i = 0; i < 200; i++) {
        json_t *in = conv("concurrent <|im_end|>");
        vesta_error err = {0};
        vesta_chat_rendered *r = NULL;
        if (vesta_chat_template_render(a->t, in, NULL, NULL, &r, &err) != VESTA_OK || r->len != a->want_len ||
            memcmp(r->text, a->want, r->len) != 0 || r->n_segments != 2)
            a->bad++;
        vesta_chat_rendered_release(r);
        json_decref(in);
    }
    return NULL;
}

static void test_threads(void)
{
    vesta_error err = {0};
    vesta_chat_template *t = vesta_chat_template_compile(CHATML, strlen(CHATML), &err);
    CHECK(t != NULL);
    if (!t)
        return;
    json_t *in = conv("concurrent <|im_end|>");
    vesta_chat_rendered *ref = NULL;
    CHECK(vesta_chat_template_render(t, in, NULL, NULL, &ref, &err) == VESTA_OK);
    enum { N = 8 };
    pthread_t th[N];
    thread_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (thread_arg){t, ref->text, ref->len, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].bad == 0);
    }
    vesta_chat_rendered_release(ref);
    vesta_chat_template_release(t);
    json_decref(in);
}

int main(void)
{
    test_segments();
    test_errors();
    test_limits();
    test_generation();
    test_threads();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("chat template unit tests passed\n");
    return 0;
}
