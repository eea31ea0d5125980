/* `vesta bench serve`: the online serving benchmark (vLLM's `vllm bench serve`) against a running
 * OpenAI-compatible server (vesta-router / `vesta serve`): random token-id prompts sent to
 * /v1/completions with streaming at a set request rate (Poisson, or gamma with --burstiness) and
 * an optional concurrency cap; reports TTFT, TPOT, ITL and end-to-end latency percentiles. */
#ifndef VESTA_CLI_BENCH_SERVE_H
#define VESTA_CLI_BENCH_SERVE_H

/* argv[0] is "serve". Prints vLLM's result table to stdout and, with --save-result, writes one
 * JSON object. A request that fails (refused connection, HTTP error, error event, broken stream)
 * is counted as failed with its error recorded; it never stops the run. Returns 0 when at least
 * one request succeeded, 1 when none did or the result cannot be written (or the server cannot
 * be asked for the model/vocabulary), 2 on a usage error. */
int vesta_cmd_bench_serve(int argc, char **argv);

#endif
