/* --lora-modules values (vesta_lora_spec_parse, include/vesta/lora.h): parsed where the
 * configuration is read, by the router (names) and the workers (names and paths). */
#include <ctype.h>
#include <jansson.h>
#include <string.h>

#include "vesta/config.h"
#include "vesta/lora.h"

static bool name_char_ok(unsigned char ch) { return isalnum(ch) || strchr("._:/-", ch) != NULL; }

static vesta_status spec_fill(const char *text, const char *name, size_t nlen, const char *path, size_t plen,
                              vesta_lora_spec *out, vesta_error *err)
{
    if (nlen == 0 || plen == 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules '%.200s': empty name or path", text);
    if (nlen >= sizeof(out->name))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules '%.200s': name longer than %zu bytes", text,
                               sizeof(out->name) - 1);
    if (plen >= sizeof(out->path) || memchr(path, '\0', plen))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules '%.200s': bad or too long path", text);
    for (size_t i = 0; i < nlen; i++)
        if (!name_char_ok((unsigned char)name[i]))
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "--lora-modules '%.200s': name may hold only A-Z a-z 0-9 . _ : / -", text);
    memcpy(out->name, name, nlen);
    memcpy(out->path, path, plen);
    return VESTA_OK;
}

vesta_status vesta_lora_spec_parse(const char *text, vesta_lora_spec *out, vesta_error *err)
{
    memset(out, 0, sizeof(*out));
    if (text[0] != '{') {
        const char *eq = strchr(text, '=');
        if (eq == NULL)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "--lora-modules '%.200s': expected name=path or a JSON object", text);
        return spec_fill(text, text, (size_t)(eq - text), eq + 1, strlen(eq + 1), out, err);
    }
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    vesta_status st;
    json_t *n = json_object_get(root, "name"), *p = json_object_get(root, "path");
    if (root == NULL || !json_is_object(root))
        st = vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules '%.200s': not a JSON object (%s)", text,
                             root ? "not an object" : je.text);
    else if (!json_is_string(n) || !json_is_string(p))
        st = vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                             "--lora-modules '%.200s': the object needs string 'name' and 'path'", text);
    else
        st = spec_fill(text, json_string_value(n), json_string_length(n), json_string_value(p), json_string_length(p),
                       out, err);
    json_decref(root);
    return st;
}

int vesta_config_lora_specs(const vesta_config *cfg, vesta_lora_spec *out, vesta_error *err)
{
    const vesta_config_list *l = &cfg->lora_modules;
    if (l->count > 0 && !cfg->enable_lora) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules needs --enable-lora");
        return -1;
    }
    for (int i = 0; i < l->count && i < VESTA_LORA_MAX_ADAPTERS; i++) {
        if (vesta_lora_spec_parse(l->items[i], &out[i], err) != VESTA_OK) return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(out[j].name, out[i].name) == 0) {
                vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules: the name '%s' is given twice",
                                out[i].name);
                return -1;
            }
    }
    return l->count < VESTA_LORA_MAX_ADAPTERS ? l->count : VESTA_LORA_MAX_ADAPTERS;
}
