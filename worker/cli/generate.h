/* `vesta generate`: offline batch inference (vLLM's LLM.generate) from a JSONL file. */
#ifndef VESTA_CLI_GENERATE_H
#define VESTA_CLI_GENERATE_H

/* argv[0] is "generate". Returns the exit status: 0 when every line was processed (bad lines
 * give {"index": i, "error": ...} lines), 1 when the engine cannot start or a file cannot be
 * read or written, 2 on a usage error. */
int vesta_cmd_generate(int argc, char **argv);

#endif
