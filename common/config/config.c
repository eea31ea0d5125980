#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/config.h"

#define FIELD(c, o, type) ((type *)((char *)(c) + (o)->offset))
#define CFIELD(c, o, type) ((const type *)((const char *)(c) + (o)->offset))

static vesta_status bad(vesta_error *err, const vesta_option *o, const char *where,
                        const char *what, const char *value)
{
    char name[96];
    if (o->section)
        snprintf(name, sizeof name, "%s.%s", o->section, o->key);
    else
        snprintf(name, sizeof name, "%s", o->flag);
    return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "%s%s%s: %s, got '%.200s'", where ? where : "",
                           where ? ": " : "", name, what, value);
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on", "1"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcmp(v, yes[i]) == 0) { *out = true; return 0; }
        if (strcmp(v, no[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        p += len + (bar ? 1 : 0);
    }
    return 0;
}

vesta_status vesta_config_set(vesta_config *c, const vesta_option *o, const char *v,
                              const char *where, vesta_error *err)
{
    char msg[160];
    char *end;
    switch (o->type) {
    case VESTA_OPT_INT:
    case VESTA_OPT_INT64: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        snprintf(msg, sizeof msg, "expected an integer in [%.0f, %.0f]", o->min, o->max);
        if (errno || end == v || *end || isspace((unsigned char)*v) || (double)x < o->min ||
            (double)x > o->max)
            return bad(err, o, where, msg, v);
        if (o->type == VESTA_OPT_INT)
            *FIELD(c, o, int) = (int)x;
        else
            *FIELD(c, o, int64_t) = x;
        return VESTA_OK;
    }
    case VESTA_OPT_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        snprintf(msg, sizeof msg, "expected a number in [%g, %g]", o->min, o->max);
        if (errno || end == v || *end || isspace((unsigned char)*v) || !isfinite(x) || x < o->min ||
            x > o->max)
            return bad(err, o, where, msg, v);
        *FIELD(c, o, double) = x;
        return VESTA_OK;
    }
    case VESTA_OPT_BOOL:
        if (parse_bool(v, FIELD(c, o, bool)))
            return bad(err, o, where, "expected true or false", v);
        return VESTA_OK;
    case VESTA_OPT_ENUM:
        if (!choice_ok(o->choices, v)) {
            snprintf(msg, sizeof msg, "expected one of %s", o->choices);
            return bad(err, o, where, msg, v);
        }
        /* fall through */
    case VESTA_OPT_STRING:
        if (strlen(v) >= o->size)
            return bad(err, o, where, "too long", v);
        memcpy(FIELD(c, o, char), v, strlen(v) + 1);
        return VESTA_OK;
    case VESTA_OPT_LIST: {
        vesta_config_list *l = FIELD(c, o, vesta_config_list);
        const int cap = o->max > 0 ? (int)o->max : VESTA_CONFIG_LIST_MAX;
        if (l->count >= cap) {
            char msg[48];
            snprintf(msg, sizeof msg, "too many values (at most %d)", cap);
            return bad(err, o, where, msg, v);
        }
        if (strlen(v) >= VESTA_CONFIG_STR_MAX || v[0] == '\0')
            return bad(err, o, where, "empty or too long", v);
        memcpy(l->items[l->count++], v, strlen(v) + 1);
        return VESTA_OK;
    }
    }
    return vesta_error_set(err, VESTA_ERR_INTERNAL, "option type %d", (int)o->type);
}

void vesta_config_init(vesta_config *c)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    memset(c, 0, sizeof *c);
    for (int i = 0; i < n; i++) {
        if (opts[i].type == VESTA_OPT_LIST || (opts[i].def[0] == '\0' &&
                                               opts[i].type == VESTA_OPT_STRING))
            continue; /* empty */
        vesta_status st = vesta_config_set(c, &opts[i], opts[i].def, "default", NULL);
        (void)st; /* the table's defaults are checked by the config tests */
    }
}

void vesta_config_format(const vesta_config *c, const vesta_option *o, char *buf, size_t cap)
{
    switch (o->type) {
    case VESTA_OPT_INT: snprintf(buf, cap, "%d", *CFIELD(c, o, int)); break;
    case VESTA_OPT_INT64: snprintf(buf, cap, "%lld", (long long)*CFIELD(c, o, int64_t)); break;
    case VESTA_OPT_DOUBLE: { /* shortest text that reads back to the same double */
        double v = *CFIELD(c, o, double);
        snprintf(buf, cap, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, cap, "%.17g", v);
        break;
    }
    case VESTA_OPT_BOOL: snprintf(buf, cap, "%s", *CFIELD(c, o, bool) ? "true" : "false"); break;
    case VESTA_OPT_STRING:
    case VESTA_OPT_ENUM: snprintf(buf, cap, "%s", CFIELD(c, o, char)); break;
    case VESTA_OPT_LIST: {
        const vesta_config_list *l = CFIELD(c, o, vesta_config_list);
        size_t used = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->count && used < cap; i++)
            used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? "," : "", l->items[i]);
        break;
    }
    }
}

const vesta_option *vesta_config_find_flag(const char *flag)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].flag, flag) == 0)
            return &opts[i];
    return NULL;
}

static const char *type_name(const vesta_option *o)
{
    switch (o->type) {
    case VESTA_OPT_INT: case VESTA_OPT_INT64: return "int";
    case VESTA_OPT_DOUBLE: return "float";
    case VESTA_OPT_BOOL: return "bool";
    case VESTA_OPT_STRING: return "string";
    case VESTA_OPT_ENUM: return "choice";
    case VESTA_OPT_LIST: return "list";
    }
    return "?";
}

static void format_range(const vesta_option *o, char *buf, size_t cap)
{
    if (o->type == VESTA_OPT_ENUM)
        snprintf(buf, cap, "%s", o->choices);
    else if (o->type == VESTA_OPT_INT || o->type == VESTA_OPT_INT64)
        snprintf(buf, cap, "%.0f .. %.0f", o->min, o->max);
    else if (o->type == VESTA_OPT_DOUBLE)
        snprintf(buf, cap, "%g .. %g", o->min, o->max);
    else if (o->type == VESTA_OPT_LIST)
        snprintf(buf, cap, "up to %d", o->max > 0 ? (int)o->max : VESTA_CONFIG_LIST_MAX);
    else
        buf[0] = '\0';
}

void vesta_config_print_help(FILE *f, unsigned scopes)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    for (int i = 0; i < n; i++) {
        const vesta_option *o = &opts[i];
        if (!(o->scopes & scopes))
            continue;
        char range[128];
        format_range(o, range, sizeof range);
        if (o->type == VESTA_OPT_BOOL)
            fprintf(f, "  %s / --no-%s\n", o->flag, o->flag + 2);
        else
            fprintf(f, "  %s %s%s%s%s\n", o->flag, type_name(o), range[0] ? " (" : "", range,
                    range[0] ? ")" : "");
        fprintf(f, "      %s [default: %s]\n", o->help, o->def[0] ? o->def : "none");
    }
}

void vesta_config_write_markdown(FILE *f)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    fputs("# Configuration\n\n"
          "<!-- Generated from common/config/options.c by `test_config --write-doc`; the ctest\n"
          "     config_doc_in_sync fails when this file and the table differ. -->\n\n"
          "One YAML file describes the cluster (`vesta serve --config FILE`, also read by\n"
          "`vesta-router` and `vesta-worker`); command-line flags with vLLM's names override it\n"
          "(precedence: defaults < YAML < flags). Unknown sections or keys, duplicate keys and bad\n"
          "values are errors that name the file, line, column and key, e.g.\n"
          "`cluster.yaml:7:3: engine.block_size: expected an integer in [1, 1024], got 'big'`.\n"
          "Lists take a YAML sequence or a single value; on the command line the flag repeats\n"
          "(or takes several values). Booleans: `--flag`, `--no-flag` or `--flag true|false`.\n"
          "Examples: `configs/*.yaml`.\n\n"
          "Scopes: R = `vesta-router`, W = `vesta-worker`, S = `vesta serve`.\n",
          f);
    const char *section = "";
    for (int i = 0; i < n; i++) {
        const vesta_option *o = &opts[i];
        const char *sec = o->section ? o->section : "(flags only)";
        if (strcmp(sec, section) != 0) {
            section = sec;
            fprintf(f, "\n## %s\n\n| YAML key | flag | type | range | default | scopes | meaning |\n"
                       "|---|---|---|---|---|---|---|\n", sec);
        }
        char range[128], cell[256];
        format_range(o, range, sizeof range);
        size_t k = 0; /* '|' would split the markdown cell */
        for (const char *p = range; *p && k + 2 < sizeof cell; p++) {
            if (*p == '|')
                cell[k++] = '\\';
            cell[k++] = *p;
        }
        cell[k] = '\0';
        fprintf(f, "| %s | `%s` | %s | %s | %s | %s%s%s | %s |\n", o->key ? o->key : "-", o->flag,
                type_name(o), cell, o->def[0] ? o->def : "-",
                (o->scopes & VESTA_OPT_ROUTER) ? "R" : "", (o->scopes & VESTA_OPT_WORKER) ? "W" : "",
                (o->scopes & VESTA_OPT_SERVE) ? "S" : "", o->help);
    }
}
