/* YAML loading with libyaml's document API: the tree keeps each node's line and column, so every
 * error can name where the offending key is. */
#include <errno.h>
#include <string.h>
#include <yaml.h>

#include "vesta/config.h"

typedef struct loader {
    vesta_config *c;
    const char *name;
    yaml_document_t *doc;
    vesta_error *err;
} loader;

static vesta_status at(loader *l, const yaml_node_t *n, const char *fmt, const char *a,
                       const char *b)
{
    return vesta_error_set(l->err, VESTA_ERR_INVALID_ARG, "%s:%zu:%zu: %s%s%s", l->name,
                           n->start_mark.line + 1, n->start_mark.column + 1, fmt, a ? a : "",
                           b ? b : "");
}

static const char *scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static vesta_status set_value(loader *l, const vesta_option *o, int idx, const char *sec,
                              const char *key, const yaml_node_t *v)
{
    char where[1200];
    snprintf(where, sizeof where, "%s:%zu:%zu", l->name, v->start_mark.line + 1,
             v->start_mark.column + 1);
    if (o->type == VESTA_OPT_LIST) {
        vesta_config_list *list = (vesta_config_list *)((char *)l->c + o->offset);
        list->count = 0;
        if (v->type == YAML_SCALAR_NODE)
            return vesta_config_set(l->c, o, scalar(v), where, l->err);
        if (v->type != YAML_SEQUENCE_NODE)
            return vesta_error_set(l->err, VESTA_ERR_INVALID_ARG,
                                   "%s: %s.%s: expected a list or a single value", where, sec, key);
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            yaml_node_t *item = yaml_document_get_node(l->doc, *it);
            if (!item || item->type != YAML_SCALAR_NODE)
                return vesta_error_set(l->err, VESTA_ERR_INVALID_ARG,
                                       "%s: %s.%s: list items must be plain values", where, sec, key);
            snprintf(where, sizeof where, "%s:%zu:%zu", l->name, item->start_mark.line + 1,
                     item->start_mark.column + 1);
            vesta_status st = vesta_config_set(l->c, o, scalar(item), where, l->err);
            if (st)
                return st;
        }
        l->c->set_by_yaml[idx] = 1;
        return VESTA_OK;
    }
    if (v->type != YAML_SCALAR_NODE)
        return vesta_error_set(l->err, VESTA_ERR_INVALID_ARG, "%s: %s.%s: expected a single value",
                               where, sec, key);
    vesta_status st = vesta_config_set(l->c, o, scalar(v), where, l->err);
    if (!st)
        l->c->set_by_yaml[idx] = 1;
    return st;
}

static vesta_status load_section(loader *l, const char *sec, const yaml_node_t *map)
{
    int n;
    const vesta_option *opts = vesta_config_options(&n);
    unsigned char seen[64] = {0};
    if (map->type == YAML_SCALAR_NODE && map->data.scalar.length == 0)
        return VESTA_OK; /* "engine:" with nothing under it */
    if (map->type != YAML_MAPPING_NODE)
        return at(l, map, "section '", sec, "' must be a mapping of keys");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        const char *key = k ? scalar(k) : NULL;
        if (!key || !v)
            return at(l, k ? k : map, "keys in section '", sec, "' must be plain strings");
        int idx = -1;
        for (int i = 0; i < n; i++)
            if (opts[i].section && strcmp(opts[i].section, sec) == 0 && strcmp(opts[i].key, key) == 0)
                idx = i;
        char full[256];
        snprintf(full, sizeof full, "%s.%.200s", sec, key);
        if (idx < 0)
            return at(l, k, "unknown key '", full, "'");
        if (seen[idx]++)
            return at(l, k, "duplicate key '", full, "'");
        vesta_status st = set_value(l, &opts[idx], idx, sec, key, v);
        if (st)
            return st;
    }
    return VESTA_OK;
}

static vesta_status load_root(loader *l)
{
    static const char *const sections[] = {"router", "model", "engine", "lora", "workers"};
    enum { N_SECTIONS = sizeof(sections) / sizeof(*sections) };
    unsigned char seen[N_SECTIONS] = {0};
    yaml_node_t *root = yaml_document_get_root_node(l->doc);
    if (!root)
        return VESTA_OK; /* empty file */
    if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)
        return VESTA_OK;
    if (root->type != YAML_MAPPING_NODE)
        return at(l, root,
                  "the top level must be a mapping of sections (router, model, engine, "
                  "lora, workers)",
                  NULL, NULL);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        const char *key = k ? scalar(k) : NULL;
        if (!key || !v)
            return at(l, k ? k : root, "section names must be plain strings", NULL, NULL);
        int s = -1;
        for (int i = 0; i < N_SECTIONS; i++)
            if (strcmp(sections[i], key) == 0)
                s = i;
        if (s < 0) return at(l, k, "unknown section '", key, "' (expected router, model, engine, lora or workers)");
        if (seen[s]++)
            return at(l, k, "duplicate section '", key, "'");
        vesta_status st = load_section(l, sections[s], v);
        if (st)
            return st;
    }
    return VESTA_OK;
}

static vesta_status load_parser(vesta_config *c, yaml_parser_t *parser, const char *name,
                                vesta_error *err)
{
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        vesta_status st = vesta_error_set(
            err, VESTA_ERR_INVALID_ARG, "%s:%zu:%zu: YAML syntax error: %s%s%s", name,
            parser->problem_mark.line + 1, parser->problem_mark.column + 1,
            parser->problem ? parser->problem : "unknown", parser->context ? " " : "",
            parser->context ? parser->context : "");
        return st;
    }
    loader l = {c, name, &doc, err};
    vesta_status st = load_root(&l);
    yaml_document_delete(&doc);
    return st;
}

vesta_status vesta_config_load_yaml_text(vesta_config *c, const char *text, size_t len,
                                         const char *name, vesta_error *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: cannot create a YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    vesta_status st = load_parser(c, &parser, name, err);
    yaml_parser_delete(&parser);
    return st;
}

vesta_status vesta_config_load_yaml(vesta_config *c, const char *path, vesta_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return vesta_error_set(err, VESTA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "%s: cannot create a YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    vesta_status st = load_parser(c, &parser, path, err);
    yaml_parser_delete(&parser);
    fclose(f);
    if (!st && strlen(path) < sizeof c->config_path)
        strcpy(c->config_path, path);
    return st;
}
