/* `vesta chat-template`: JSON lines {"messages": [...], "add_generation_prompt": true,
 * "tools": [...], ...} on stdin → {"text": "..."} (or {"error": "..."}) on stdout, rendered with
 * the model's own chat template exactly as Hugging Face's apply_chat_template renders it. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/chat_template.h"
#include "vesta/tokenizer.h"
#include "jsonl.h"
#include "vesta_cli.h"

typedef struct ct_opts {
    const char *tokenizer;
    const char *template_name;
    const char *template_file;
    bool ids, segments, special_everywhere, print_template;
    int64_t now;
} ct_opts;

static void ct_usage(void)
{
    fprintf(stderr,
            "usage: vesta chat-template --tokenizer PATH [--template-name NAME] [--template FILE]\n"
            "                           [--ids] [--segments] [--special-everywhere] [--now UNIX_SECONDS]\n"
            "                           [--print-template]\n"
            "  reads {\"messages\": [...], \"add_generation_prompt\": true, \"tools\": [...], ...} lines on stdin\n"
            "  (other keys, and the keys of \"chat_template_kwargs\", become template variables) and writes\n"
            "  {\"text\": \"...\"} lines, or {\"error\": \"...\"} when the template raises or the line is malformed.\n"
            "  --ids: also tokenize (\"ids\"); special tokens are recognised only in the template's own text,\n"
            "         unless --special-everywhere (plain Hugging Face behaviour).\n"
            "  --segments: also list the byte ranges of the text that came from the request.\n"
            "  --template FILE: use this template instead of the tokenizer's.\n");
}

static int parse_args(int argc, char **argv, ct_opts *o)
{
    memset(o, 0, sizeof *o);
    o->now = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokenizer") && i + 1 < argc) o->tokenizer = argv[++i];
        else if (!strcmp(a, "--template-name") && i + 1 < argc) o->template_name = argv[++i];
        else if (!strcmp(a, "--template") && i + 1 < argc) o->template_file = argv[++i];
        else if (!strcmp(a, "--now") && i + 1 < argc) o->now = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(a, "--ids")) o->ids = true;
        else if (!strcmp(a, "--segments")) o->segments = true;
        else if (!strcmp(a, "--special-everywhere")) o->special_everywhere = true;
        else if (!strcmp(a, "--print-template")) o->print_template = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ct_usage();
            return 2;
        } else {
            fprintf(stderr, "vesta chat-template: unknown argument '%s'\n", a);
            ct_usage();
            return 2;
        }
    }
    if (!o->tokenizer && !o->template_file) {
        ct_usage();
        return 2;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The tokenizer's special-token strings, as HF passes tokenizer.special_tokens_map. */
static json_t *trusted_vars(const vesta_tokenizer *tok)
{
    json_t *t = json_object();
    if (!tok)
        return t;
    const char *v;
    if ((v = vesta_tokenizer_bos_token(tok))) json_object_set_new(t, "bos_token", json_string(v));
    if ((v = vesta_tokenizer_eos_token(tok))) json_object_set_new(t, "eos_token", json_string(v));
    if ((v = vesta_tokenizer_unk_token(tok))) json_object_set_new(t, "unk_token", json_string(v));
    if ((v = vesta_tokenizer_pad_token(tok))) json_object_set_new(t, "pad_token", json_string(v));
    return t;
}

typedef struct ct_line_ctx {
    const ct_opts *o;
    const vesta_chat_template *tpl;
    const vesta_tokenizer *tok;
    const json_t *trusted;
} ct_line_ctx;

static void process_line(void *ctx, const char *line, size_t len)
{
    const ct_line_ctx *c = ctx;
    const ct_opts *o = c->o;
    const vesta_chat_template *tpl = c->tpl;
    const vesta_tokenizer *tok = c->tok;
    const json_t *trusted = c->trusted;
    json_t *in = vesta_cli_parse_object(line, len, "a JSON object with \"messages\"");
    if (!in)
        return;
    /* chat_template_kwargs (vLLM/OpenAI extension) become top-level template variables; keys
     * given at the top level of the line (messages, tools, ...) win. */
    json_t *kw = json_object_get(in, "chat_template_kwargs");
    if (kw && !json_is_object(kw)) {
        vesta_cli_emit_error("\"chat_template_kwargs\" must be an object");
        json_decref(in);
        return;
    }
    json_t *vars = json_deep_copy(in);
    json_object_del(vars, "chat_template_kwargs");
    if (kw)
        json_object_update_missing(vars, kw);
    vesta_error err = {0};
    vesta_chat_render_opts ro = {.now = o->now};
    vesta_chat_rendered *r = NULL;
    if (vesta_chat_template_render(tpl, vars, trusted, &ro, &r, &err) != VESTA_OK) {
        vesta_cli_emit_error(err.msg);
        json_decref(vars);
        json_decref(in);
        return;
    }
    json_t *out = json_pack("{s:s%}", "text", r->text, r->len);
    if (out && o->segments) {
        json_t *segs = json_array();
        for (size_t i = 0; i < r->n_segments; i++)
            json_array_append_new(segs, json_pack("[I,I]", (json_int_t)r->segments[i].begin,
                                                  (json_int_t)r->segments[i].end));
        json_object_set_new(out, "segments", segs);
    }
    if (out && o->ids) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (vesta_chat_encode(tok, r, o->special_everywhere ? VESTA_CHAT_SPECIAL_EVERYWHERE
                                                            : VESTA_CHAT_SPECIAL_TEMPLATE_ONLY,
                              &ids, &n, &err) != VESTA_OK) {
            json_decref(out);
            out = json_pack("{s:s}", "error", err.msg);
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_integer(ids[i]));
            json_object_set_new(out, "ids", arr);
            free(ids);
        }
    }
    vesta_cli_emit(out);
    vesta_chat_rendered_release(r);
    json_decref(vars);
    json_decref(in);
}

int vesta_cmd_chat_template(int argc, char **argv)
{
    ct_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    vesta_error err = {0};
    vesta_tokenizer *tok = NULL;
    if (o.tokenizer) {
        tok = vesta_tokenizer_load(o.tokenizer, &err);
        if (!tok) {
            fprintf(stderr, "vesta chat-template: %s\n", err.msg);
            return 1;
        }
    }
    if (o.ids && !tok) {
        fprintf(stderr, "vesta chat-template: --ids needs --tokenizer\n");
        return 2;
    }
    char *file_src = NULL;
    size_t src_len = 0;
    const char *src;
    if (o.template_file) {
        file_src = read_file(o.template_file, &src_len);
        if (!file_src) {
            fprintf(stderr, "vesta chat-template: cannot read %s\n", o.template_file);
            vesta_tokenizer_release(tok);
            return 1;
        }
        src = file_src;
    } else {
        src = vesta_tokenizer_chat_template(tok, o.template_name);
        if (!src) {
            fprintf(stderr, "vesta chat-template: %s has no chat template%s%s\n", o.tokenizer,
                    o.template_name ? " named " : "", o.template_name ? o.template_name : "");
            vesta_tokenizer_release(tok);
            return 1;
        }
        src_len = strlen(src);
    }
    if (o.print_template) {
        fwrite(src, 1, src_len, stdout);
        free(file_src);
        vesta_tokenizer_release(tok);
        return 0;
    }
    vesta_chat_template *tpl = vesta_chat_template_compile(src, src_len, &err);
    if (!tpl) {
        fprintf(stderr, "vesta chat-template: %s\n", err.msg);
        free(file_src);
        vesta_tokenizer_release(tok);
        return 1;
    }
    json_t *trusted = trusted_vars(tok);
    ct_line_ctx c = {&o, tpl, tok, trusted};
    vesta_cli_each_line(process_line, &c);
    json_decref(trusted);
    vesta_chat_template_release(tpl);
    free(file_src);
    vesta_tokenizer_release(tok);
    return 0;
}
