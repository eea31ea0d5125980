/* Public API: compile once, render many times concurrently (each render owns an arena). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "render.h"

enum {
    TEMPLATE_MAX_SOURCE = 4 << 20,
    TEMPLATE_COMPILE_MEMORY = 256 << 20,
};

struct vesta_chat_template {
    jarena arena;
    jnode *root;
};

vesta_chat_template *vesta_chat_template_compile(const char *source, size_t len, vesta_error *err)
{
    if (!source && len) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat template: NULL source");
        return NULL;
    }
    if (len > TEMPLATE_MAX_SOURCE) {
        vesta_error_set(err, VESTA_ERR_LIMIT, "chat template: source of %zu bytes exceeds the limit of %d", len,
                        TEMPLATE_MAX_SOURCE);
        return NULL;
    }
    vesta_chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "chat template: out of memory");
        return NULL;
    }
    jarena_init(&t->arena, TEMPLATE_COMPILE_MEMORY);
    jfail f = {.err = err, .arena = &t->arena};
    if (setjmp(f.jmp)) {
        vesta_error_prefix(err, "chat template");
        jarena_free(&t->arena);
        free(t);
        return NULL;
    }
    t->root = jparse(&f, source ? source : "", len);
    return t;
}

void vesta_chat_template_release(vesta_chat_template *tpl)
{
    if (!tpl)
        return;
    jarena_free(&tpl->arena);
    free(tpl);
}

/* JSON → values. Strings from the request are tainted; dict keys too. */
static jv from_json(jrender *r, const json_t *j, bool taint, int depth)
{
    if (depth > 512)
        jfail_raise(r->f, VESTA_ERR_INVALID_ARG, "input JSON nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int(json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_str(jstr_new(r->f, json_string_value(j), json_string_length(j), taint));
    case JSON_ARRAY: {
        jlist *l = jlist_new(r->f, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            jlist_push(r->f, l, from_json(r, json_array_get(j, i), taint, depth + 1));
        return jv_list(l);
    }
    case JSON_OBJECT: {
        jdict *d = jdict_new(r->f, json_object_size(j));
        const char *k;
        json_t *v;
        /* jansson keeps insertion order (JSON_PRESERVE_ORDER is the default since 2.x). */
        json_object_foreach((json_t *)j, k, v)
            jdict_set(r->f, d, jv_str(jstr_new(r->f, k, strlen(k), taint)), from_json(r, v, taint, depth + 1));
        return jv_dict(d);
    }
    }
    return jv_none();
}

static bool present(const jdict *d, const char *k)
{
    jv *v = jdict_get_cstr(d, k);
    return v && v->t != JT_NONE;
}

/* What apply_chat_template does to each message before rendering (transformers
 * _normalize_chat_messages and _alias_reasoning_fields). */
static jv normalize_message(jrender *r, jv m, size_t idx)
{
    if (m.t != JT_DICT)
        jfail_raise(r->f, VESTA_ERR_INVALID_ARG, "messages[%zu]: expected an object", idx);
    jdict *src = m.u.d, *d = jdict_new(r->f, src->n + 2);
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    jv reasoning = jv_undef(NULL);
    for (size_t i = 0; i < 3 && reasoning.t == JT_UNDEF; i++)
        if (present(src, reasoning_keys[i]))
            reasoning = *jdict_get_cstr(src, reasoning_keys[i]);
    if (reasoning.t != JT_UNDEF)
        jdict_set(r->f, d, jv_str(jstr_lit(r->f, "thinking")), reasoning);
    for (size_t i = 0; i < src->n; i++) {
        jv key = src->e[i].key, val = src->e[i].val;
        if (val.t == JT_NONE)
            continue;
        /* Roles are a closed set checked by the API layer, and templates splice them into their
         * markers ('<|' + role + '|>'), so they are template text, not user text. */
        if (val.t == JT_STR && key.t == JT_STR && !strcmp(key.u.s->s, "role"))
            val = jv_str(jstr_new(r->f, val.u.s->s, val.u.s->len, false));
        jdict_set(r->f, d, key, val);
    }
    if (reasoning.t != JT_UNDEF)
        jdict_set(r->f, d, jv_str(jstr_lit(r->f, "reasoning_content")), reasoning);
    return jv_dict(d);
}

static void set_var(jrender *r, jscope *s, const char *k, jv v) { jscope_set(r, s, k, v); }

static const vesta_chat_limits default_limits = {
    .max_steps = 10000000,
    .max_depth = 256,
    .max_output = 64u << 20,
    .max_memory = 512u << 20,
};

vesta_status vesta_chat_template_render(const vesta_chat_template *tpl, const json_t *input, const json_t *trusted,
                                        const vesta_chat_render_opts *opts, vesta_chat_rendered **out,
                                        vesta_error *err)
{
    if (out)
        *out = NULL;
    if (!tpl || !out)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat template: NULL argument");
    if (!input || !json_is_object(input))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat template: input must be a JSON object");
    if (trusted && !json_is_object(trusted))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat template: trusted variables must be a JSON object");
    const json_t *msgs = json_object_get(input, "messages");
    if (!json_is_array(msgs))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat template: \"messages\" must be an array");

    vesta_chat_limits lim = default_limits;
    if (opts) {
        if (opts->limits.max_steps) lim.max_steps = opts->limits.max_steps;
        if (opts->limits.max_depth) lim.max_depth = opts->limits.max_depth;
        if (opts->limits.max_output) lim.max_output = opts->limits.max_output;
        if (opts->limits.max_memory) lim.max_memory = opts->limits.max_memory;
    }
    jarena arena;
    jarena_init(&arena, lim.max_memory);
    jfail f = {.err = err, .arena = &arena};
    jrender r = {.f = &f, .lim = &lim, .now = opts ? opts->now : -1};
    if (setjmp(f.jmp)) {
        jarena_free(&arena);
        return err ? err->code : VESTA_ERR_FORMAT;
    }
    jscope *root = jscope_new(&r, NULL);
    const char *k;
    json_t *v;
    if (trusted)
        json_object_foreach((json_t *)trusted, k, v)
            set_var(&r, root, k, from_json(&r, v, false, 0));
    set_var(&r, root, "tools", jv_none());
    set_var(&r, root, "documents", jv_none());
    set_var(&r, root, "add_generation_prompt", jv_bool(false));
    json_object_foreach((json_t *)input, k, v) {
        if (!strcmp(k, "messages"))
            continue;
        if (!strcmp(k, "add_generation_prompt"))
            set_var(&r, root, k, from_json(&r, v, false, 0));
        else
            set_var(&r, root, k, from_json(&r, v, true, 0));
    }
    jv ml = from_json(&r, msgs, true, 0);
    for (size_t i = 0; i < ml.u.l->n; i++)
        ml.u.l->items[i] = normalize_message(&r, ml.u.l->items[i], i);
    set_var(&r, root, "messages", ml);

    jbuf top;
    jbuf_init(&top, &f, lim.max_output);
    r.out = r.top = &top;
    jrender_run(&r, root, tpl->root);

    size_t seg_bytes = top.nspans * sizeof(vesta_chat_segment);
    size_t gen_bytes = r.ngen * sizeof(vesta_chat_segment);
    vesta_chat_rendered *res = malloc(sizeof *res + seg_bytes + gen_bytes + top.len + 1);
    if (!res) {
        jarena_free(&arena);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "chat template: out of memory");
    }
    vesta_chat_segment *segs = (vesta_chat_segment *)(res + 1);
    vesta_chat_segment *gens = segs + top.nspans;
    char *text = (char *)(gens + r.ngen);
    for (size_t i = 0; i < top.nspans; i++) {
        segs[i].begin = top.spans[i].b;
        segs[i].end = top.spans[i].e;
    }
    for (size_t i = 0; i < r.ngen; i++) {
        gens[i].begin = r.gen[i].b;
        gens[i].end = r.gen[i].e;
    }
    if (top.len)
        memcpy(text, top.s, top.len);
    text[top.len] = 0;
    res->text = text;
    res->len = top.len;
    res->segments = top.nspans ? segs : NULL;
    res->n_segments = top.nspans;
    res->generation = r.ngen ? gens : NULL;
    res->n_generation = r.ngen;
    jarena_free(&arena);
    *out = res;
    return VESTA_OK;
}

void vesta_chat_rendered_release(vesta_chat_rendered *r) { free(r); }
