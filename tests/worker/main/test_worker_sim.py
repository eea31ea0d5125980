"""vesta-worker --backend sim against a test router written here with pyzmq + msgpack (an
independent msgpack implementation) and the xxhash package (an independent XXH3 for the prefix
block keys). Covers register/re-register, heartbeats, generate (n, seed, stop ids, max_tokens,
logprobs), abort, KV events, bad parameters, malformed frames, drain (SIGTERM) and shutdown;
heartbeats (with busy_ms) through steps longer than a heartbeat timeout.

usage: test_worker_sim.py PATH/TO/vesta-worker
"""
import os
import signal
import subprocess
import sys
import time

import msgpack

from testrouter import Router, block_keys

WORKER = sys.argv[1]
VOCAB = 1000
BLOCK = 4


def start_worker(router, wid, *extra):
    args = [WORKER, "--backend", "sim", "--router", router.endpoint, "--worker-id", wid,
            "--heartbeat-ms", "100", "--sim-vocab-size", str(VOCAB), "--block-size", str(BLOCK),
            "--max-model-len", "256", "--sim-tokens-per-second", "1000",
            "--sim-prefill-tokens-per-second", "100000", "--served-model-name", "simmodel"] + list(extra)
    return subprocess.Popen(args, stderr=subprocess.PIPE, text=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    r = Router()
    p = start_worker(r, "w-test")
    try:
        # Registration, repeated until acknowledged.
        ident, reg = r.recv(want="register")
        check(ident == b"w-test" and reg["worker_id"] == "w-test", reg)
        check(reg["served_names"] == ["simmodel"] and reg["backend"] == "sim", reg)
        check(reg["vocab_size"] == VOCAB and reg["block_size"] == BLOCK, reg)
        check(reg["max_model_len"] == 256 and reg["num_kv_blocks"] == 4096, reg)
        check(reg["tp_rank"] == 0 and reg["tp_size"] == 1 and reg["enable_prefix_caching"], reg)
        _, reg2 = r.recv(want="register", timeout=2)
        check(reg2["instance"] == reg["instance"], "same process, same instance")
        r.send(ident, {"type": "registered", "router_instance": 1, "heartbeat_ms": 0})
        _, hb = r.recv(want="heartbeat", timeout=2)
        check(hb["num_running"] == 0 and hb["draining"] is False, hb)

        # n=2, seeded: deterministic, max_tokens respected, counts right.
        prompt = list(range(1, 17))
        r.generate(ident, "a", prompt, n=2, seed=7, max_tokens=5, temperature=0.8)
        a = r.collect("a", n=2)
        for s in (0, 1):
            ids, fin, last = a[s]
            check(len(ids) == 5 and fin == "length", a)
            check(all(0 <= t < VOCAB for t in ids), ids)
            check(last["num_prompt_tokens"] == 16 and last["num_output_tokens"] == 5, last)
            check(last["num_cached_tokens"] == 0 and last["stop_token"] == -1, last)
        check(a[0][0] != a[1][0], "the two sequences differ")
        # KV events carry exactly the prompt's block keys (independent XXH3).
        deadline = time.time() + 2
        while r.kv_stored != set(block_keys(prompt, BLOCK)) and time.time() < deadline:
            try:
                r.recv(want="kv_events", timeout=0.2)
            except AssertionError:
                pass
        check(r.kv_stored == set(block_keys(prompt, BLOCK)),
              ("kv keys", sorted(r.kv_stored), sorted(block_keys(prompt, BLOCK))))

        # Same seed again: same tokens; the prompt is now a prefix-cache hit (last block recomputed).
        r.generate(ident, "b", prompt, n=2, seed=7, max_tokens=5)
        b = r.collect("b", n=2)
        check(b[0][0] == a[0][0] and b[1][0] == a[1][0], "seeded requests repeat")
        check(b[0][2]["num_cached_tokens"] == 12, b[0][2])

        # stop_token_ids end a sequence at the first such token (included, as in vLLM).
        r.generate(ident, "c", prompt, seed=11, max_tokens=40)
        c = r.collect("c")[0][0]
        k = next(i for i in range(3, 40) if c[i] not in c[:i])
        r.generate(ident, "d", prompt, seed=11, max_tokens=40, stop_token_ids=[c[k]])
        ids, fin, last = r.collect("d")[0]
        check(ids == c[:k + 1] and fin == "stop" and last["stop_token"] == c[k], (ids, c, k))

        # logprobs: one entry per token with the requested top-N.
        r.generate(ident, "lp", prompt, max_tokens=3, logprobs=2)
        ids, fin, last = r.collect("lp")[0]
        check(len(last["logprobs"][0][1]) == 2, last["logprobs"])

        # Bad parameters and an over-long prompt come back as ERROR for that request.
        r.generate(ident, "bad", prompt, temperature=-1.0)
        e = r.collect("bad")
        check("error" in e and "temperature" in e["error"]["message"], e)
        r.generate(ident, "long", list(range(250)), max_tokens=10)
        e = r.collect("long")
        check("error" in e and "maximum context length" in e["error"]["message"], e)
        r.generate(ident, "vocab", [VOCAB + 5], max_tokens=1)
        check("error" in r.collect("vocab"), "token outside the vocabulary")

        # Abort mid-stream.
        r.generate(ident, "ab", prompt, max_tokens=200)
        _, m = r.recv(want="tokens")
        r.send(ident, {"type": "abort", "request_id": "ab"})
        ids, fin, last = r.collect("ab")[0]
        check(fin == "abort" and len(ids) < 200, (fin, len(ids)))
        r.send(ident, {"type": "abort", "request_id": "never-existed"})

        # Malformed frames are logged and dropped; the worker keeps serving.
        for junk in [b"", b"\xc1", b"\x81\xa1v\x01", msgpack.packb([1, 2, 3]),
                     msgpack.packb({"v": 1, "type": "explode"}),
                     msgpack.packb({"v": 2, "type": "abort", "request_id": "x"}),
                     msgpack.packb({"v": 1, "type": "generate", "request_id": "x", "prompt_ids": "no"}),
                     b"\xdd\xff\xff\xff\xff", os.urandom(3000)]:
            r.send(ident, junk, raw=True)
        r.sock.send_multipart([ident, b"part1", b"part2"])
        r.generate(ident, "after", prompt, max_tokens=2)
        check(len(r.collect("after")[0][0]) == 2, "serves after junk")
        check(p.poll() is None, "worker alive")

        # Heartbeat counters (independent of our requests' bookkeeping: at least what we sent).
        r.drop_backlog("heartbeat")
        _, hb = r.recv(want="heartbeat", timeout=2)
        check(hb["prompt_tokens_total"] >= 16 * 7 and hb["generation_tokens_total"] >= 20, hb)
        check(hb["prefix_cache_hits"] >= 24 and hb["kv_events_seq"] == r.kv_seq, (hb, r.kv_seq))

        # Router restart: REREGISTER -> REGISTER again.
        r.send(ident, {"type": "reregister"})
        _, reg3 = r.recv(want="register", timeout=2)
        check(reg3["worker_id"] == "w-test", reg3)
        r.send(ident, {"type": "registered", "router_instance": 2})

        # A real router restart: a new socket on the same endpoint gets a heartbeat from an
        # unknown worker, answers reregister, and the worker registers again.
        r.sock.close(linger=0)
        time.sleep(0.2)
        r.sock = r.ctx.socket(__import__("zmq").ROUTER)
        r.sock.bind(r.endpoint)
        r.backlog = []
        ident, m = r.recv(match=lambda m: m["type"] in ("heartbeat", "register"), timeout=5)
        if m["type"] == "heartbeat":
            r.send(ident, {"type": "reregister"})
            ident, m = r.recv(want="register", timeout=5)
        check(m["worker_id"] == "w-test", m)
        r.send(ident, {"type": "registered", "router_instance": 4})
        r.generate(ident, "after-restart", prompt, max_tokens=2)
        check(len(r.collect("after-restart")[0][0]) == 2, "serves the new router")

        # SIGTERM: finish in-flight, refuse new work, goodbye, exit 0.
        r.generate(ident, "last", prompt, max_tokens=100)
        _, first = r.recv(match=lambda m: m["type"] == "tokens" and m["request_id"] == "last")
        p.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        r.generate(ident, "refused", prompt, max_tokens=2)
        ids, fin, last = r.collect("last")[0]
        check(fin == "length" and len(first["token_ids"]) + len(ids) == 100, (fin, len(ids)))
        e = r.collect("refused")
        check("error" in e and "draining" in e["error"]["message"], e)
        _, bye = r.recv(want="goodbye", timeout=5)
        check(p.wait(timeout=5) == 0, "exit 0 after drain")
        err = p.stderr.read()
        check("dropped a bad frame" in err and "dropped a multipart message" in err, err)

        # SHUTDOWN: in-flight requests end with "abort", then exit 0.
        # A small cache: LRU eviction shows up as evicted keys (mirror = the live set).
        p = start_worker(r, "w-two", "--num-gpu-blocks-override", "8")
        ident, reg = r.recv(want="register")
        check(reg["num_kv_blocks"] == 8, reg)
        r.kv_stored.clear()
        r.send(ident, {"type": "registered", "router_instance": 3})
        prompts = [[100 + 16 * j + i for i in range(16)] for j in range(3)]
        for j, pr in enumerate(prompts):
            r.generate(ident, "lru%d" % j, pr, max_tokens=1)
            r.collect("lru%d" % j)
        want = set(block_keys(prompts[1], BLOCK)) | set(block_keys(prompts[2], BLOCK))
        deadline = time.time() + 2
        while r.kv_stored != want and time.time() < deadline:
            try:
                r.recv(want="kv_events", timeout=0.2)
            except AssertionError:
                pass
        check(r.kv_stored == want, ("lru mirror", len(r.kv_stored)))

        r.generate(ident, "s1", prompt, max_tokens=200)
        r.recv(want="tokens")
        r.send(ident, {"type": "shutdown"})
        ids, fin, _ = r.collect("s1")[0]
        check(fin == "abort", fin)
        _, bye = r.recv(want="goodbye", timeout=5)
        check(bye["reason"] == "shutdown", bye)
        check(p.wait(timeout=5) == 0, "exit 0 after shutdown")
        print("worker sim: all passed")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def slow_steps():
    """Steps that block 1.5 s (--sim-step-delay-ms): heartbeats still come every ~100 ms (the
    I/O thread sends them), and their busy_ms shows how long the engine has been on the step."""
    r = Router()
    p = start_worker(r, "w-slow", "--sim-step-delay-ms", "1500")
    try:
        ident, _ = r.recv(want="register")
        r.send(ident, {"type": "registered", "router_instance": 1, "heartbeat_ms": 0})
        _, hb = r.recv(want="heartbeat", timeout=2)
        check(hb.get("busy_ms", 0) == 0, ("idle worker not busy", hb))
        r.generate(ident, "slow", list(range(1, 9)), max_tokens=2)
        t0 = time.time()
        arrivals, busy = [], []
        while time.time() - t0 < 3.5:
            _, hb = r.recv(want="heartbeat", timeout=2)
            arrivals.append(time.time())
            busy.append(hb["busy_ms"])
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        check(max(gaps) < 1.0, ("heartbeats kept coming during 1.5 s steps", gaps))
        check(1000 <= max(busy) <= 3500 + 500, ("busy_ms grows during a step", busy))
        ids, fin, _ = r.collect("slow", timeout=15)[0]
        check(len(ids) == 2 and fin == "length", (ids, fin))
        # idle again: busy_ms back to 0
        r.drop_backlog("heartbeat")
        deadline = time.time() + 5
        while True:
            _, hb = r.recv(want="heartbeat", timeout=2)
            if hb["busy_ms"] == 0 and hb["num_running"] == 0:
                break
            check(time.time() < deadline, ("busy_ms back to 0 when idle", hb))
        p.send_signal(signal.SIGTERM)
        _, bye = r.recv(want="goodbye", timeout=5)
        check(bye["reason"] == "drained", bye)
        check(p.wait(timeout=5) == 0, "exit 0 after drain")
        print("worker sim slow steps: all passed")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
    slow_steps()
