/* Entry points of the `vesta` subcommands implemented in common/cli. Each takes the arguments
 * after the subcommand name (argv[0] is the subcommand itself), reads JSON lines on stdin and
 * writes one JSON line per input line on stdout. Returns the process exit status: 0 when every
 * line was processed (malformed lines give {"error": ...} lines, not a failure), 1 when the
 * tokenizer cannot be loaded, 2 on a usage error. */
#ifndef VESTA_CLI_H
#define VESTA_CLI_H

#ifdef __cplusplus
extern "C" {
#endif

/* vesta tokenize --tokenizer PATH [--add-special-tokens] [--no-parse-special]
 *   {"text": "..."} -> {"ids": [...]} */
int vesta_cmd_tokenize(int argc, char **argv);

/* vesta detokenize --tokenizer PATH [--skip-special-tokens]
 *   {"ids": [...]} -> {"text": "..."} */
int vesta_cmd_detokenize(int argc, char **argv);

/* vesta chat-template --tokenizer PATH (implemented with the Jinja interpreter, chat_template.c)
 *   {"messages": [...], "add_generation_prompt": true, "tools": [...]} -> {"text": "..."} */
int vesta_cmd_chat_template(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
