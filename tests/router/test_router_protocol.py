"""The router's side of the worker protocol, driven by a scripted fake worker (pyzmq DEALER +
msgpack, written from proto/README.md, independent of the C codec).

usage: test_router_protocol.py BIN_DIR MODEL

Checks: registration, GENERATE contents (prompt ids == /tokenize, sampling fields), token
streaming through TOKENS, stop strings -> ABORT, client disconnect -> ABORT, malformed and
hostile frames are dropped while the router keeps serving, worker errors map to HTTP errors,
REREGISTER for unknown workers, heartbeat timeout fails the request."""
import json
import os
import sys
import threading
import time

import httpx
import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, check, checks_passed  # noqa: E402

BIN, MODEL = sys.argv[1], sys.argv[2]



class FakeWorker:
    def __init__(self, endpoint, wid="fake0", vocab=49152, max_len=512, block=16):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, wid.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.wid, self.vocab, self.max_len, self.block = wid, vocab, max_len, block

    def send(self, type_, **fields):
        self.sock.send(msgpack.packb({"v": 1, "type": type_, **fields}))

    def send_raw(self, data):
        self.sock.send(data)

    def recv(self, timeout=5.0, want=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.sock.poll(int(max(1, (deadline - time.time()) * 1000))):
                m = msgpack.unpackb(self.sock.recv(), raw=False)
                if want is None or m["type"] == want:
                    return m
        raise TimeoutError(f"no {want or 'message'} from the router")

    def register(self, instance=1):
        self.send("register", worker_id=self.wid, model=MODEL, served_names=[MODEL],
                  backend="sim", max_model_len=self.max_len, block_size=self.block,
                  num_kv_blocks=100, max_num_seqs=8, vocab_size=self.vocab, eos_ids=[2],
                  enable_prefix_caching=True, prefix_cache_salt=0, tp_rank=0, tp_size=1,
                  instance=instance)
        return self.recv(want="registered")

    def heartbeat(self):
        self.send("heartbeat", num_running=0, num_waiting=0, num_blocks_total=100,
                  num_blocks_free=100, kv_usage=0.0, prefix_cache_queries=0, prefix_cache_hits=0,
                  num_preemptions=0, prompt_tokens_total=0, generation_tokens_total=0, steps=0,
                  kv_events_seq=0, draining=False)

    def tokens(self, rid, ids, finish=None, seq=0, n_prompt=1, n_out=0, logprobs=None):
        self.send("tokens", request_id=rid, seq_index=seq, token_ids=ids, logprobs=logprobs,
                  finish=finish, stop_token=-1, num_prompt_tokens=n_prompt,
                  num_output_tokens=n_out, num_cached_tokens=0)

    def close(self):
        self.sock.close()


def in_thread(fn, *args):
    out = {}

    def run():
        try:
            out["r"] = fn(*args)
        except Exception as ex:  # noqa: BLE001
            out["e"] = ex
    t = threading.Thread(target=run)
    t.start()
    return t, out


def main():
    c = Cluster(BIN, MODEL, workers=0, router_args=["--heartbeat-timeout-ms", "2500"])
    try:
        c.start_router()
        run(c)
    except BaseException:
        c.stop()
        c.dump_logs()
        raise
    c.stop()
    check(c.router_rc == 0, f"router exit status {c.router_rc}")
    print(f"router protocol: {checks_passed()} checks passed")


def run(c):
    ep = f"tcp://127.0.0.1:{c.zmq_port}"
    r = c.http.get("/health")
    check(r.status_code == 503 and r.json()["status"] == "unavailable", "no worker: 503")
    r = c.post("/v1/completions", {"prompt": "hi", "max_tokens": 2})
    check(r.status_code == 503 and r.headers.get("retry-after") == "1", "no worker: 503 + Retry-After")

    w = FakeWorker(ep)
    # hostile frames before registering: dropped, then REREGISTER for a heartbeat
    for junk in (b"", b"\xc1", b"\x80", msgpack.packb([1, 2]), msgpack.packb({"v": 2, "type": "heartbeat"}),
                 msgpack.packb({"v": 1, "type": "nope"}), b"\xdf\xff\xff\xff\xff",
                 msgpack.packb({"v": 1, "type": "tokens", "request_id": "x" * 500})):
        w.send_raw(junk)
    w.heartbeat()
    check(w.recv(want="reregister")["type"] == "reregister", "unknown worker -> reregister")
    # a REGISTER naming another worker is dropped
    w.send("register", worker_id="someone-else", model=MODEL, served_names=[MODEL], backend="sim",
           max_model_len=512, block_size=16, num_kv_blocks=1, max_num_seqs=1, vocab_size=49152,
           eos_ids=[], enable_prefix_caching=True, prefix_cache_salt=0, tp_rank=0, tp_size=1,
           instance=9)
    reg = w.register()
    check(reg["router_instance"] > 0, "registered")
    check(c.http.get("/health").json()["status"] == "ok", "health ok")

    # GENERATE carries the tokenized prompt and the sampling fields
    prompt = "The quick brown fox"
    ids = c.post("/tokenize", {"prompt": prompt}).json()["tokens"]
    t, out = in_thread(lambda: c.post("/v1/completions", {
        "prompt": prompt, "max_tokens": 5, "temperature": 0.5, "top_k": 7, "seed": 3,
        "stop_token_ids": [9], "logprobs": 1, "logit_bias": {"11": 2.5}}))
    g = w.recv(want="generate")
    sp = g["sampling"]
    check(g["prompt_ids"] == ids, "prompt ids == /tokenize")
    check(sp["max_tokens"] == 5 and abs(sp["temperature"] - 0.5) < 1e-6 and sp["top_k"] == 7
          and sp["seed"] == 3 and sp["stop_token_ids"] == [9] and sp["logprobs"] == 1
          and sp["logit_bias"][0][0] == 11, f"sampling {sp}")
    rid = g["request_id"]
    hello = c.post("/tokenize", {"prompt": " hello world", "add_special_tokens": False}).json()["tokens"]
    lps = [[-0.5, [[tok, -0.5]]] for tok in hello]
    w.tokens(rid, hello, logprobs=lps, n_prompt=len(ids))
    w.tokens("no-such-request", [1, 2, 3])                 # ignored
    w.tokens(rid, [5], seq=7)                                # seq out of range: ignored
    w.tokens(rid, [], finish="length", n_prompt=len(ids), n_out=len(hello))
    t.join(10)
    resp = out["r"].json()
    check(resp["choices"][0]["text"] == " hello world", f"text {resp}")
    check(resp["usage"]["completion_tokens"] == len(hello), "usage")
    check(resp["choices"][0]["logprobs"]["token_logprobs"] == [-0.5] * len(hello), "logprobs")

    # a stop string: the router sends ABORT at once and answers "stop"
    t, out = in_thread(lambda: c.post("/v1/completions", {"prompt": prompt, "max_tokens": 50,
                                                          "stop": ["world"]}))
    rid = w.recv(want="generate")["request_id"]
    w.tokens(rid, hello)
    ab = w.recv(want="abort")
    check(ab["request_id"] == rid, "abort on stop string")
    t.join(10)
    ch = out["r"].json()["choices"][0]
    check(ch["text"] == " hello " and ch["finish_reason"] == "stop" and ch["stop_reason"] == "world",
          f"stop {ch}")
    w.tokens(rid, [], finish="abort")  # the worker's late answer is ignored

    # a worker error for a request -> HTTP error; invalid token -> 502
    t, out = in_thread(lambda: c.post("/v1/completions", {"prompt": prompt, "max_tokens": 5}))
    rid = w.recv(want="generate")["request_id"]
    w.send("error", request_id=rid, code=-7, message="backend exploded")
    t.join(10)
    check(out["r"].status_code == 500 and "backend exploded" in out["r"].json()["error"]["message"],
          "worker error -> 500")
    t, out = in_thread(lambda: c.post("/v1/completions", {"prompt": prompt, "max_tokens": 5}))
    rid = w.recv(want="generate")["request_id"]
    w.tokens(rid, [10 ** 6])
    t.join(10)
    check(out["r"].status_code == 502, f"bad token -> 502: {out['r'].text}")
    check(w.recv(want="abort")["request_id"] == rid, "bad token -> abort")

    # client disconnect while waiting -> ABORT
    w.heartbeat()
    try:
        httpx.post(c.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 50}, timeout=0.3)
    except httpx.TimeoutException:
        pass
    rid = w.recv(want="generate")["request_id"]
    check(w.recv(want="abort", timeout=3)["request_id"] == rid, "disconnect -> abort")

    # streaming: chunks follow TOKENS messages; a silent worker fails the stream with an error
    w.heartbeat()
    got = []

    def stream():
        with c.http.stream("POST", "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
                "stream": True}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    got.append(line[6:])
    t, out = in_thread(stream)
    rid = w.recv(want="generate")["request_id"]
    w.tokens(rid, hello[:1])
    time.sleep(0.2)
    check(len(got) == 1 and json.loads(got[0])["choices"][0]["delta"]["role"] == "assistant",
          f"first chunk {got}")
    # stop heartbeating: after the timeout the stream ends with an error event
    t.join(10)
    check(got[-1] == "[DONE]" and "stopped responding" in json.loads(got[-2])["error"]["message"],
          f"stream end {got[-2:]}")
    h = c.http.get("/health")
    check(h.status_code == 503 and h.json()["workers"]["dead"] == 1, f"dead worker {h.text}")
    # the dead worker's heartbeat gets REREGISTER; registering again (new instance) revives it
    w.heartbeat()
    check(w.recv(want="reregister")["type"] == "reregister", "dead -> reregister")
    w.register(instance=2)
    check(c.http.get("/health").json()["status"] == "ok", "revived")
    # a worker that refuses a request for being full or draining (code -8): the router sends it
    # to another worker, and the refusing one is skipped until it heartbeats "not draining"
    w3 = FakeWorker(ep, wid="fake2")
    w3.register()
    w.heartbeat()
    lock, seen = threading.Lock(), []

    def serve(fw):
        deadline = time.time() + 4
        while time.time() < deadline:
            try:
                g = fw.recv(want="generate", timeout=0.2)
            except TimeoutError:
                continue
            with lock:
                seen.append((fw.wid, g["request_id"]))
                first = len(seen) == 1
            if first:
                fw.send("error", request_id=g["request_id"], code=-8, message="draining")
            else:
                fw.tokens(g["request_id"], hello, finish="length", n_out=len(hello))
            return
    t, out = in_thread(lambda: c.post("/v1/completions", {"prompt": "refuse me", "max_tokens": 5}))
    ta, _ = in_thread(serve, w)
    tb, _ = in_thread(serve, w3)
    t.join(10)
    ta.join(6)
    tb.join(6)
    check(out["r"].status_code == 200 and out["r"].json()["choices"][0]["text"] == " hello world",
          f"re-dispatched: {out['r'].text}")
    check(len(seen) == 2 and seen[0][0] != seen[1][0] and seen[0][1] == seen[1][1],
          f"refused by one, served by the other: {seen}")
    w3.send("goodbye", reason="test done")
    w3.close()
    w.heartbeat()
    # drain through the admin API: DRAIN goes out; after GOODBYE the worker has "left", which
    # is not a fault: health stays ok while another worker is live
    w2 = FakeWorker(ep, wid="fake1")
    w2.register()
    r = c.http.post("/admin/workers/fake1/drain")
    check(r.status_code == 200 and r.json()["state"] == "draining", f"drain {r.text}")
    check(w2.recv(want="drain")["type"] == "drain", "DRAIN sent")
    w2.send("goodbye", reason="drained")
    w.heartbeat()
    Cluster.wait(lambda: c.http.get("/health").json()["workers"].get("left") == 2, 3, "left")
    h = c.http.get("/health").json()
    check(h["status"] == "ok" and h["workers"]["dead"] == 0, f"health after drain {h}")
    check(c.http.post("/admin/workers/fake1/drain").status_code == 404, "drain a gone worker")
    check(c.http.post("/admin/workers/nobody/drain").status_code == 404, "drain unknown")
    w2.close()
    m = c.metrics()
    check(m[("vesta:router_bad_messages_total", frozenset())] >= 8, "bad messages counted")
    w.close()


if __name__ == "__main__":
    main()
