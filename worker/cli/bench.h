/* `vesta bench throughput|latency|prefix`: offline engine benchmarks (vLLM's benchmark_throughput
 * and benchmark_latency), random prompt token ids, EOS ignored. `vesta bench serve` (bench_serve.h)
 * is dispatched from here. */
#ifndef VESTA_CLI_BENCH_H
#define VESTA_CLI_BENCH_H

/* argv[0] is "bench". Prints a human summary to stdout and, with --output-json FILE, one JSON
 * object. Returns 0 on success, 1 when the engine fails, 2 on a usage error. */
int vesta_cmd_bench(int argc, char **argv);

#endif
