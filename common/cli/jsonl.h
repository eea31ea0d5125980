/* JSON-lines plumbing shared by the `vesta` text subcommands (tokenize, detokenize,
 * chat-template): one JSON object in per stdin line, one compact JSON object out per line. */
#ifndef VESTA_CLI_JSONL_H
#define VESTA_CLI_JSONL_H

#include <stddef.h>

#include <jansson.h>

/* Prints o compactly on one stdout line and flushes; takes the reference. A NULL o (an
 * allocation failed while building it) prints an out-of-memory error line instead. */
void vesta_cli_emit(json_t *o);

/* Prints {"error": msg}. */
void vesta_cli_emit_error(const char *msg);

/* Parses one line as a JSON object. On malformed JSON or a non-object, prints an error line
 * (what_expected names what the line should hold) and returns NULL. */
json_t *vesta_cli_parse_object(const char *line, size_t len, const char *what_expected);

/* Calls fn(ctx, line, len) for every stdin line (empty ones too), its line ending stripped. */
void vesta_cli_each_line(void (*fn)(void *ctx, const char *line, size_t len), void *ctx);

#endif
