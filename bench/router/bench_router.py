"""Router benchmarks against `vesta-worker --backend sim` (numbers go to docs/benchmarks.md).

usage: bench_router.py BIN_DIR MODEL [overhead|affinity|scale|all]

overhead  Requests with max_tokens=1 against sim workers that decode "instantly" (1e6 steps/s,
          prefill 1e9 tokens/s): the client-side latency is the router's added latency plus two
          ZMQ hops and one sim step (an upper bound on what the router adds). p50/p99 at
          concurrency 1, then requests/s at concurrency 16.
affinity  Groups of requests sharing a long system prompt (8 groups x 8 requests, ~1000 shared
          tokens) against 4 sim workers whose prefill costs time for tokens not in their prefix
          cache (5000 tokens/s) and decode at 100 steps/s; streaming, concurrency 8. TTFT
          (client-side, first chunk) and throughput for prefix-affinity vs round-robin.

scale     100 sim workers at once: registration time, requests/s and latency with max_tokens=1
          (distinct 4-block prompts: every decision scans all workers' prefixes, then falls back
          to least-load).

Client, router and workers share the machine: on 2 cores the client's own CPU use is in the
numbers."""
import os
import statistics
import sys
import threading
import time

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "router"))
from cluster import Cluster  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_parallel(n_threads, jobs, fn):
    """Runs fn(job) over jobs with n_threads threads; returns (results, wall seconds)."""
    results = [None] * len(jobs)
    lock = threading.Lock()
    nxt = [0]

    def worker():
        with httpx.Client(timeout=60) as h:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(jobs):
                    return
                results[i] = fn(h, jobs[i])

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, time.perf_counter() - t0


def bench_overhead(bin_dir, model):
    fast = ["--sim-prefill-tokens-per-second", "1e9"]
    with Cluster(bin_dir, model, workers=2, sim_rate=1e6, worker_args=fast) as c:
        url = c.url + "/v1/completions"

        def one(h, i):
            t = time.perf_counter()
            r = h.post(url, json={"prompt": f"ping {i}", "max_tokens": 1})
            assert r.status_code == 200, r.text
            return time.perf_counter() - t

        run_parallel(1, list(range(50)), one)  # warm-up
        lat, _ = run_parallel(1, list(range(500)), one)
        _, wall = run_parallel(16, list(range(2000)), one)
        print(f"overhead: latency p50 {pct(lat, 50) * 1e3:.2f} ms, p99 {pct(lat, 99) * 1e3:.2f} ms "
              f"(concurrency 1, 500 requests, max_tokens=1)")
        print(f"overhead: {2000 / wall:.0f} requests/s (concurrency 16, 2000 requests)")


def bench_affinity(bin_dir, model):
    groups, per_group = 8, 8
    prefix = {g: " ".join(f"policy{g} clause{k} applies." for k in range(250)) for g in range(groups)}
    jobs = [(g, i) for i in range(per_group) for g in range(groups)]
    for policy in ("prefix-affinity", "round-robin"):
        slow = ["--sim-prefill-tokens-per-second", "5000"]
        with Cluster(bin_dir, model, workers=4, sim_rate=100, worker_args=slow,
                     router_args=["--routing-policy", policy]) as c:
            url = c.url + "/v1/chat/completions"

            def one(h, job):
                g, i = job
                body = {"messages": [{"role": "system", "content": prefix[g]},
                                     {"role": "user", "content": f"question {i}"}],
                        "max_tokens": 16, "stream": True}
                t = time.perf_counter()
                ttft = None
                with h.stream("POST", url, json=body) as r:
                    for line in r.iter_lines():
                        if ttft is None and line.startswith("data: {"):
                            ttft = time.perf_counter() - t
                return ttft, time.perf_counter() - t

            res, wall = run_parallel(8, jobs, one)
            ttft = [r[0] for r in res]
            hits = sum(w["prefix_cache_hits"] for w in c.admin_workers().values())
            queries = sum(w["prefix_cache_queries"] for w in c.admin_workers().values())
            print(f"affinity[{policy}]: TTFT mean {statistics.mean(ttft) * 1e3:.0f} ms, "
                  f"p50 {pct(ttft, 50) * 1e3:.0f} ms, p99 {pct(ttft, 99) * 1e3:.0f} ms; "
                  f"{len(jobs) / wall:.1f} requests/s; "
                  f"prefix-cache hit rate {hits / max(1, queries):.2f}")


def bench_scale(bin_dir, model, n_workers=100):
    """Many sim workers: registration time and requests/s (routing cost grows with workers)."""
    fast = ["--sim-prefill-tokens-per-second", "1e9", "--heartbeat-ms", "500"]
    t0 = time.perf_counter()
    with Cluster(bin_dir, model, workers=n_workers, sim_rate=1e6, worker_args=fast) as c:
        up = time.perf_counter() - t0
        url = c.url + "/v1/completions"
        shared = " ".join(f"w{k}" for k in range(64))

        def one(h, i):
            t = time.perf_counter()
            r = h.post(url, json={"prompt": f"{i} {shared}", "max_tokens": 1})
            assert r.status_code == 200, r.text
            return time.perf_counter() - t

        run_parallel(4, list(range(100)), one)
        lat, wall = run_parallel(16, list(range(2000)), one)
        used = sum(1 for w in c.admin_workers().values() if w["routed"] > 0)
        print(f"scale: {n_workers} sim workers registered in {up:.1f} s; {2000 / wall:.0f} "
              f"requests/s (concurrency 16), p50 {pct(lat, 50) * 1e3:.2f} ms, "
              f"p99 {pct(lat, 99) * 1e3:.2f} ms; {used} workers used")


def main():
    bin_dir, model = sys.argv[1], sys.argv[2]
    what = sys.argv[3] if len(sys.argv) > 3 else "all"
    if what in ("overhead", "all"):
        bench_overhead(bin_dir, model)
    if what in ("affinity", "all"):
        bench_affinity(bin_dir, model)
    if what in ("scale", "all"):
        bench_scale(bin_dir, model)


if __name__ == "__main__":
    main()
