/* Option values of the vesta subcommands (cli_num.h): numbers, option names, --lora-modules. */
#include "cli_num.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "vesta/engine.h"

bool vesta_cli_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool vesta_cli_parse_double(const char *s, double *out)
{
    if (!s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

const char *vesta_cli_option_name(const struct option *opts, int val)
{
    for (; opts->name; opts++)
        if (opts->val == val) return opts->name;
    return "?";
}

bool vesta_cli_take_lora_modules(const char *cmd, vesta_engine_config *cfg, vesta_lora_spec *specs, const char *first,
                                 int argc, char **argv)
{
    for (const char *v = first;; v = argv[optind++]) {
        vesta_error err = {0};
        if (cfg->num_lora_modules == VESTA_LORA_MAX_ADAPTERS ||
            vesta_lora_spec_parse(v, &specs[cfg->num_lora_modules], &err) != VESTA_OK) {
            fprintf(stderr, "%s: %s\n", cmd, err.msg[0] ? err.msg : "too many --lora-modules");
            return false;
        }
        cfg->num_lora_modules++;
        if (optind >= argc || argv[optind][0] == '-') break;
    }
    cfg->lora_modules = specs;
    return true;
}
