/* Option values of the `vesta` subcommands (generate, bench, bench serve). */
#ifndef VESTA_CLI_NUM_H
#define VESTA_CLI_NUM_H

#include <stdbool.h>

/* A whole base-10 string in [lo, hi] into *out; false (and *out untouched) otherwise. */
bool vesta_cli_parse_int(const char *s, long long lo, long long hi, long long *out);
/* A whole finite floating-point string into *out; false (and *out untouched) otherwise. */
bool vesta_cli_parse_double(const char *s, double *out);

struct option;
/* The long name of the getopt_long entry whose val is `val` ("?" when none), for messages: the
 * tables need not follow their enums' order. */
const char *vesta_cli_option_name(const struct option *opts, int val);

struct vesta_engine_config;
struct vesta_lora_spec;
/* --lora-modules A=X [B=Y ...] under getopt_long with "+" (no permutation): `first` is optarg, the
 * values up to the next option follow at argv[optind]. Appends them to specs (room for
 * VESTA_LORA_MAX_ADAPTERS) and points cfg at them. false after printing the problem. */
bool vesta_cli_take_lora_modules(const char *cmd, struct vesta_engine_config *cfg, struct vesta_lora_spec *specs,
                                 const char *first, int argc, char **argv);

#endif
