/* Command-line flags from the option table. --config is loaded before the other flags are
 * applied, so flags override the file wherever they appear. */
#include <string.h>

#include "vesta/config.h"

static int option_index(const vesta_option *o)
{
    int n;
    return (int)(o - vesta_config_options(&n));
}

/* The option named by arg ("--x", "--x=v", "--no-x"); *value points after '=' or is NULL. */
static const vesta_option *lookup(const char *arg, char *name, size_t cap, const char **value,
                                  int *negated)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    *value = eq ? eq + 1 : NULL;
    *negated = 0;
    if (len >= cap)
        return NULL;
    memcpy(name, arg, len);
    name[len] = '\0';
    const vesta_option *o = vesta_config_find_flag(name);
    if (!o && strncmp(name, "--no-", 5) == 0) {
        char pos[128];
        snprintf(pos, sizeof pos, "--%s", name + 5);
        o = vesta_config_find_flag(pos);
        if (o && o->type == VESTA_OPT_BOOL && !*value)
            *negated = 1;
        else
            o = NULL;
    }
    return o;
}

vesta_status vesta_config_parse_args(vesta_config *c, int argc, char **argv, unsigned scopes,
                                     char **rest, int *rest_count, vesta_error *err)
{
    vesta_status st;
    if (rest_count)
        *rest_count = 0;
    /* --config first. */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--config needs a value");
            path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
        if (path && (st = vesta_config_load_yaml(c, path, err)))
            return st;
    }
    unsigned char list_reset[64] = {0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char name[128];
        const char *value;
        int negated;
        const vesta_option *o = strncmp(arg, "--", 2) == 0 ? lookup(arg, name, sizeof name, &value,
                                                                    &negated)
                                                           : NULL;
        if (!o || !(o->scopes & scopes)) {
            if (!rest)
                return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "unknown argument '%.200s'", arg);
            rest[(*rest_count)++] = argv[i];
            continue;
        }
        int idx = option_index(o);
        if (strcmp(o->flag, "--config") == 0) {
            if (!value)
                i++;
            continue;
        }
        if (o->type == VESTA_OPT_BOOL && !value) {
            st = vesta_config_set(c, o, negated ? "false" : "true", o->flag, err);
        } else if (o->type == VESTA_OPT_LIST) {
            vesta_config_list *l = (vesta_config_list *)((char *)c + o->offset);
            if (!list_reset[idx]++)
                l->count = 0; /* flags replace the YAML list */
            if (value) {
                st = vesta_config_set(c, o, value, o->flag, err);
            } else {
                int taken = 0;
                st = VESTA_OK;
                while (!st && i + 1 < argc && (o->multi || !taken) &&
                       strncmp(argv[i + 1], "--", 2) != 0) {
                    st = vesta_config_set(c, o, argv[++i], o->flag, err);
                    taken++;
                }
                if (!st && !taken)
                    st = vesta_error_set(err, VESTA_ERR_INVALID_ARG, "%s needs a value", o->flag);
            }
        } else {
            if (!value) {
                if (i + 1 >= argc)
                    return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "%s needs a value", o->flag);
                value = argv[++i];
            }
            st = vesta_config_set(c, o, value, o->flag, err);
        }
        if (st)
            return st;
        c->set_by_flag[idx] = 1;
    }
    return VESTA_OK;
}
