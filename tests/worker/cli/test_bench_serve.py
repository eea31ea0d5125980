"""`vesta bench serve` (vLLM's `vllm bench serve`) end to end.

usage: test_bench_serve.py BIN_DIR MODEL GROUP
  sim      vesta-router + 2 `vesta-worker --backend sim`: a paced run and a concurrency-capped run;
           the result JSON against the router's own Prometheus counters and histograms (prompt and
           generation tokens, successful requests, server-side TTFT and end-to-end latency, which
           the client's figures must contain) and against the sim backend's decode rate
  failures a dead endpoint (every request fails with a clear message, no crash) and a scripted
           misbehaving HTTP server (truncated stream, bad JSON, error event, HTTP 500, no usage,
           CRLF + comments): each request's outcome and error text
  cpu      vesta-router + one CPU worker on the default model (label slow)"""
import http.server
import json
import math
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "router"))
from cluster import Cluster, free_port, check, checks_passed  # noqa: E402

BIN, MODEL, GROUP = sys.argv[1], sys.argv[2], sys.argv[3]
VESTA = os.path.join(BIN, "vesta")



def bench(args, expect_rc=0, timeout=300):
    """Runs `vesta bench serve ARGS --result-filename F`; returns (result dict or None, stdout, stderr)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "result.json")
        p = subprocess.run([VESTA, "bench", "serve", *args, "--result-filename", path],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != expect_rc:
            print(p.stdout, p.stderr)
            raise AssertionError(f"vesta bench serve exited {p.returncode}, expected {expect_rc}")
        res = json.load(open(path)) if os.path.exists(path) else None
    return res, p.stdout, p.stderr


def metric_total(c, name):
    """The model-level (no worker label) value of a Prometheus series, summed over other labels."""
    return sum(v for (n, labels), v in c.metrics().items()
               if n == name and not any(k == "worker" for k, _ in labels))


def check_consistent(res, n, in_len, out_len):
    check(res["completed"] == n and res["failed"] == 0, f"completed {res['completed']} of {n}")
    check(res["total_input_tokens"] == n * in_len, "total input tokens")
    check(res["total_output_tokens"] == n * out_len, f"output tokens {res['total_output_tokens']} != {n * out_len}")
    check(res["output_lens"] == [out_len] * n, "every request got exactly --random-output-len tokens")
    check(res["usage_from_server"] is True, "output token counts come from the server's usage")
    for i in range(n):
        check(0 < res["ttfts"][i] <= res["e2els"][i], f"request {i}: 0 < TTFT <= E2EL")
        itl = res["itls"][i]
        check(1 <= len(itl) <= out_len - 1, f"request {i}: {len(itl)} inter-chunk gaps for {out_len} tokens")
        check(abs(res["ttfts"][i] + sum(itl) - res["e2els"][i]) < 0.25,
              f"request {i}: TTFT + gaps ends near E2EL")
    pcts = [k[:-len("_ttft_ms")] for k in res if k.startswith("p") and k.endswith("_ttft_ms")]
    check(len(pcts) >= 1, "percentiles in the result")
    for p in ["mean", "median", *pcts]:
        check(res[f"{p}_ttft_ms"] <= res[f"{p}_e2el_ms"] + 1e-9, f"{p} TTFT <= {p} E2EL")
        check(res[f"{p}_tpot_ms"] > 0 and res[f"{p}_itl_ms"] > 0, f"{p} TPOT and ITL > 0")
    # TPOT of each request, recomputed from its own timings (vLLM's definition)
    tpots = sorted((e - t) / (out_len - 1) for t, e in zip(res["ttfts"], res["e2els"]))
    check(math.isclose(res["mean_tpot_ms"], 1e3 * sum(tpots) / n, rel_tol=1e-9), "mean TPOT")
    check(res["duration"] >= max(res["e2els"]), "the run lasts at least as long as its longest request")
    ratio = res["total_output_tokens"] / res["duration"]
    check(math.isclose(res["output_throughput"], ratio, rel_tol=1e-9), "output throughput = tokens / duration")


def against_router(c, res, before):
    """The client's counts equal the router's; the client's latencies contain the server's."""
    after = {k: metric_total(c, k) for k in before}
    d = {k: after[k] - before[k] for k in before}
    check(d["vesta:prompt_tokens_total"] == res["total_input_tokens"], f"router prompt tokens {d}")
    check(d["vesta:generation_tokens_total"] == res["total_output_tokens"], f"router generation tokens {d}")
    check(d["vesta:request_success_total"] == res["completed"], f"router successful requests {d}")
    n = d["vesta:time_to_first_token_seconds_count"]
    check(n == res["completed"], "one server TTFT per request")
    server_ttft = d["vesta:time_to_first_token_seconds_sum"] / n
    server_e2e = d["vesta:e2e_request_latency_seconds_sum"] / d["vesta:e2e_request_latency_seconds_count"]
    check(res["mean_ttft_ms"] / 1e3 >= server_ttft - 1e-3,
          f"client TTFT {res['mean_ttft_ms']:.2f} ms >= router's {1e3 * server_ttft:.2f} ms")
    check(res["mean_e2el_ms"] / 1e3 >= server_e2e - 1e-3,
          f"client E2EL {res['mean_e2el_ms']:.2f} ms >= router's {1e3 * server_e2e:.2f} ms")


COUNTERS = ["vesta:prompt_tokens_total", "vesta:generation_tokens_total", "vesta:request_success_total",
            "vesta:time_to_first_token_seconds_sum", "vesta:time_to_first_token_seconds_count",
            "vesta:e2e_request_latency_seconds_sum", "vesta:e2e_request_latency_seconds_count"]


def group_sim():
    rate = 200.0  # sim decode steps per second: each running sequence gets one token per step
    with Cluster(BIN, MODEL, workers=2, sim_rate=rate) as c:
        n, in_len, out_len, rps = 20, 64, 16, 20.0
        before = {k: metric_total(c, k) for k in COUNTERS}
        res, out, _ = bench(["--base-url", c.url, "--num-prompts", str(n), "--request-rate", str(rps),
                             "--random-input-len", str(in_len), "--random-output-len", str(out_len),
                             "--ignore-eos", "--seed", "1"])
        check_consistent(res, n, in_len, out_len)
        against_router(c, res, before)
        check(res["model_id"] == MODEL and res["vocab_size"] == 49152,
              "model and vocabulary from /v1/models and the tokenizer at its root")
        check(res["request_rate"] == rps and res["max_concurrency"] is None, "configuration recorded")
        # Poisson arrivals at 20/s: 19 gaps of mean 50 ms (loose: a quarter of the expectation)
        check(res["duration"] >= 0.25 * (n - 1) / rps, f"paced: duration {res['duration']:.2f} s")
        # a request needs out_len - 1 decode steps after its first token
        check(min(res["e2els"]) >= 0.5 * (out_len - 1) / rate, "E2EL covers the sim's decode steps")
        for line in ("Serving Benchmark Result", "Successful requests:                     20",
                     "Request rate configured (RPS):           20.00", "Mean TTFT (ms):", "P99 TPOT (ms):",
                     "Median ITL (ms):", "P99 E2EL (ms):"):
            check(line in out, f"printout has {line!r}")

        # all at once, at most 3 in flight
        before = {k: metric_total(c, k) for k in COUNTERS}
        n, in_len, out_len = 12, 40, 8
        res, out, _ = bench(["--base-url", c.url, "--num-prompts", str(n), "--max-concurrency", "3",
                             "--random-input-len", str(in_len), "--random-output-len", str(out_len),
                             "--ignore-eos", "--percentile-metrics", "ttft,e2el",
                             "--metric-percentiles", "50,90"])
        check_consistent(res, n, in_len, out_len)
        against_router(c, res, before)
        check(res["max_concurrent_requests"] == 3, f"peak concurrency {res['max_concurrent_requests']} == 3")
        check("Maximum request concurrency:             3" in out, "printout names the cap")
        check("P90 TTFT (ms):" in out and "P50 E2EL (ms):" in out and "TPOT (ms)" not in out,
              "--percentile-metrics and --metric-percentiles select the printout")
        check(res["p50_ttft_ms"] == res["median_ttft_ms"] and res["p90_e2el_ms"] >= res["p50_e2el_ms"],
              "percentiles")
        # 4 waves of 3 requests, each wave needing out_len - 1 decode steps
        check(res["duration"] >= 0.5 * 4 * (out_len - 1) / rate, "the cap serializes the waves")


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers the k-th POST with behaviour k (mod the list)."""
    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def chunk(self, text):
        return "data: " + json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": text}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Scripted.lock:
            k = Scripted.count
            Scripted.count += 1
        assert body["stream"] and body["stream_options"] == {"include_usage": True}
        assert len(body["prompt"]) == 5 and body["max_tokens"] == 3 and body["ignore_eos"] is True
        usage = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
        streams = [
            [self.chunk("a"), self.chunk("b"), self.chunk("c"), usage, "data: [DONE]"],   # 0 ok
            [self.chunk("a"), self.chunk("b")],                                         # 1 truncated
            [self.chunk("a"), "data: {not json", "data: [DONE]"],                       # 2 bad JSON
            [self.chunk("a"), 'data: {"error": {"message": "engine fell over"}}', "data: [DONE]"],  # 3
            None,                                                                       # 4 HTTP 500
            [self.chunk("a"), self.chunk("b"), "data: [DONE]"],                         # 5 no usage
            [": keep-alive", "event: x", self.chunk("a"), self.chunk("\x00b"), self.chunk("c"), usage,
             "data: [DONE]"],                                                           # 6 CRLF, NUL
        ]
        s = streams[k % len(streams)]
        if s is None:
            payload = b"upstream exploded\n"
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        sep = "\r\n" if k % len(streams) == 6 else "\n"
        payload = "".join(line + sep + sep for line in s).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def group_failures():
    port = free_port()  # nothing listens there
    res, out, err = bench(["--port", str(port), "--model", "m", "--vocab-size", "100", "--num-prompts", "5",
                           "--random-input-len", "8", "--random-output-len", "4", "--request-rate", "50"],
                          expect_rc=1)
    check(res["completed"] == 0 and res["failed"] == 5, "a dead endpoint: every request failed")
    check("5 of 5 requests failed" in err and "onnect" in err, f"a clear message: {err!r}")
    check(all("onnect" in e for e in res["errors"]), "each request's error recorded")
    check("Failed requests:                         5" in out, "the table still prints")
    _, _, err = bench(["--port", str(port), "--num-prompts", "2"], expect_rc=1)
    check("cannot ask the server for its model" in err, f"no server to ask for the model: {err!r}")
    _, _, err = bench(["--port", str(port), "--request-rate", "-1"], expect_rc=2)
    check("invalid value '-1' for --request-rate" in err, "bad option value")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        n = 14
        res, out, err = bench(["--port", str(srv.server_address[1]), "--model", "m", "--vocab-size", "7",
                               "--num-prompts", str(n), "--random-input-len", "5", "--random-output-len", "3",
                               "--ignore-eos", "--max-concurrency", "1"])
    finally:
        srv.shutdown()
    expect = {1: "without \"data: [DONE]\"", 2: "bad JSON in the stream", 3: "error event: engine fell over",
              4: "HTTP 500: upstream exploded"}
    for i in range(n):
        kind = i % 7
        e = res["errors"][i]
        if kind in expect:
            check(expect[kind] in e, f"request {i}: error {e!r} should say {expect[kind]!r}")
        else:
            check(e == "", f"request {i} succeeded: {e!r}")
    check(res["completed"] == 6 and res["failed"] == 8, f"{res['completed']} completed, {res['failed']} failed")
    # usage where sent (3 tokens), chunk counts where not (2 chunks)
    check(res["total_output_tokens"] == 2 * (3 + 2 + 3), f"output tokens {res['total_output_tokens']}")
    check(res["usage_from_server"] is False and "counted as stream chunks" in out, "missing usage is said")
    check([res["generated_texts"][i] for i in (0, 5, 6)] == ["abc", "ab", "a\x00bc"], "texts (U+0000 kept)")
    check("8 of 14 requests failed" in err, "failures summarized")


def group_cpu():
    with Cluster(BIN, MODEL, workers=1, backend="cpu", worker_args=["--num-threads", "2"]) as c:
        n, in_len, out_len = 6, 32, 8
        before = {k: metric_total(c, k) for k in COUNTERS}
        res, out, _ = bench(["--base-url", c.url, "--num-prompts", str(n), "--request-rate", "4",
                             "--random-input-len", str(in_len), "--random-output-len", str(out_len),
                             "--ignore-eos"], timeout=600)
        print(out)
        check_consistent(res, n, in_len, out_len)
        against_router(c, res, before)


{"sim": group_sim, "failures": group_failures, "cpu": group_cpu}[GROUP]()
print(f"test_bench_serve {GROUP}: {checks_passed()} checks passed")
