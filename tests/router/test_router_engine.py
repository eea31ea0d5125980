"""The cluster with the real CPU engine: `vesta serve --workers 2` and the official openai client.

usage: test_router_engine.py BIN_DIR MODEL

Checks: chat and text completions (greedy) equal `vesta generate` on the same prompt token ids
(the offline engine, no router); streamed pieces concatenate to the non-streamed text; usage
equals /tokenize counts; n > 1; stop strings; logprobs; shared-prefix requests land on one worker
whose prefix-cache hit counter rises. LoRA (--enable-lora --lora-modules, the adapter of
tests/golden/lora/smollm2-lora.json): /v1/models lists the adapter under the base model, a
request naming it equals `vesta generate` with its lora_name (itself checked against PEFT by
tests/worker/cli/check_lora.py) and differs from the base model's, an unknown model is a 404."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import free_port, check, checks_passed  # noqa: E402

BIN, MODEL = sys.argv[1], sys.argv[2]
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ADAPTER = os.path.join(ROOT, "tests", "golden", "models", "lora-smollm2-qv")
LORA_FLAGS = ["--enable-lora", "--lora-modules", f"qv={ADAPTER}"]



def generate_offline(prompts_ids, max_tokens, lora=None):
    """`vesta generate` on token-id prompts, greedy (under adapter `lora`); returns the texts."""
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for ids in prompts_ids:
                line = {"prompt_token_ids": ids, "max_tokens": max_tokens, "temperature": 0}
                if lora:
                    line["lora_name"] = lora
                f.write(json.dumps(line) + "\n")
        subprocess.run([os.path.join(BIN, "vesta"), "generate", "--model", MODEL, "--input", inp,
                        "--output", out] + (LORA_FLAGS if lora else []), check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
        with open(out) as f:
            rows = [json.loads(line) for line in f]
    return [r["outputs"][0]["text"] for r in sorted(rows, key=lambda r: r["index"])]


def main():
    port, zport = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="vesta-serve-", suffix=".log", delete=False)
    serve = subprocess.Popen([os.path.join(BIN, "vesta"), "serve", "--model", MODEL, "--workers", "2",
                              "--port", str(port), "--zmq-bind", f"tcp://127.0.0.1:{zport}",
                              # one thread per worker; default heartbeat timeout (the worker heartbeats
                              # from its I/O thread through long CPU steps)
                              "--num-threads", "1", *LORA_FLAGS],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        h = httpx.Client(base_url=url, timeout=120)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if h.get("/health").json()["workers"]["live"] == 2:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError("vesta serve did not come up")
        run(h, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120))
    except BaseException:
        log.flush()
        with open(log.name, "rb") as f:
            print(f.read()[-6000:].decode(errors="replace"))
        raise
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
    print(f"router engine: {checks_passed()} checks passed")


def run(h, oc):
    prompts = ["The capital of France is", "def fibonacci(n):"]
    msgs = [{"role": "user", "content": "Name three colors."}]
    ids = [h.post("/tokenize", json={"prompt": p}).json()["tokens"] for p in prompts]
    chat_ids = h.post("/tokenize", json={"messages": msgs}).json()["tokens"]
    ref = generate_offline(ids + [chat_ids], 24)

    for p, pid, want in zip(prompts, ids, ref):
        r = oc.completions.create(model=MODEL, prompt=p, max_tokens=24, temperature=0)
        check(r.choices[0].text == want, f"completion {p!r}: {r.choices[0].text!r} != {want!r}")
        check(r.usage.prompt_tokens == len(pid), "usage == /tokenize")
        streamed = "".join(c.choices[0].text for c in oc.completions.create(
            model=MODEL, prompt=p, max_tokens=24, temperature=0, stream=True) if c.choices)
        check(streamed == want, f"streamed completion {streamed!r}")
    chat = oc.chat.completions.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0)
    check(chat.choices[0].message.content == ref[2],
          f"chat {chat.choices[0].message.content!r} != {ref[2]!r}")
    check(chat.usage.prompt_tokens == len(chat_ids), "chat usage == /tokenize(messages)")
    pieces = "".join(c.choices[0].delta.content or "" for c in oc.chat.completions.create(
        model=MODEL, messages=msgs, max_tokens=24, temperature=0, stream=True) if c.choices)
    check(pieces == chat.choices[0].message.content, "streamed chat")

    # n > 1 with sampling; stop strings; logprobs
    n3 = oc.completions.create(model=MODEL, prompt=prompts[0], max_tokens=8, n=3, seed=1,
                               temperature=1.0)
    check(sorted(c.index for c in n3.choices) == [0, 1, 2], "n=3")
    full = ref[0]
    stop = full.strip().split(" ")[1] if len(full.strip().split(" ")) > 2 else full[2:4]
    s = oc.completions.create(model=MODEL, prompt=prompts[0], max_tokens=24, temperature=0,
                              stop=[stop])
    check(s.choices[0].text == full[:full.index(stop)] and s.choices[0].finish_reason == "stop",
          f"stop {stop!r}: {s.choices[0].text!r}")
    lp = oc.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0,
                                    logprobs=True, top_logprobs=3)
    for t in lp.choices[0].logprobs.content:
        tops = [x.logprob for x in t.top_logprobs]
        check(tops == sorted(tops, reverse=True) and t.logprob <= 0, "top_logprobs ordered")
        check(abs(t.logprob - tops[0]) < 1e-4, "greedy token is the top-1")

    # LoRA: the adapter by name, as vLLM serves --lora-modules
    models = {m["id"]: m for m in h.get("/v1/models").json()["data"]}
    check(models.get("qv", {}).get("parent") == MODEL and models["qv"]["root"] == ADAPTER,
          f"/v1/models lists the adapter under the base model: {models.get('qv')}")
    lora_ref = generate_offline(ids + [chat_ids], 24, lora="qv")
    for p, want, base in zip(prompts, lora_ref, ref):
        r = oc.completions.create(model="qv", prompt=p, max_tokens=24, temperature=0)
        check(r.choices[0].text == want and r.model == "qv", f"adapter completion {p!r}: {r.choices[0].text!r}")
        check(want != base, f"the adapter changes {p!r}")
    pieces = "".join(c.choices[0].delta.content or "" for c in oc.chat.completions.create(
        model="qv", messages=msgs, max_tokens=24, temperature=0, stream=True) if c.choices)
    check(pieces == lora_ref[2], f"adapter streamed chat {pieces!r} != {lora_ref[2]!r}")
    try:
        oc.completions.create(model="no-such-adapter", prompt=prompts[0], max_tokens=2)
        check(False, "an unknown model is refused")
    except openai.NotFoundError as e:
        check(e.status_code == 404, "an unknown model is a 404")

    # prefix affinity: a long shared system prompt lands on one worker and hits its cache
    system = "You are a helpful assistant. " * 40
    before = {w["id"]: (w["routed"], w["prefix_cache_hits"])
              for w in h.get("/admin/workers").json()["workers"]}
    for i in range(4):
        oc.chat.completions.create(model=MODEL, max_tokens=2, temperature=0,
                                   messages=[{"role": "system", "content": system},
                                             {"role": "user", "content": f"Question {i}?"}])
    time.sleep(1.5)  # a heartbeat carries the counters
    after = {w["id"]: (w["routed"], w["prefix_cache_hits"])
             for w in h.get("/admin/workers").json()["workers"]}
    used = [k for k in after if after[k][0] > before[k][0]]
    check(len(used) == 1, f"shared-prefix requests spread over {used}")
    check(after[used[0]][1] > before[used[0]][1], "the worker's prefix-cache hits rose")


if __name__ == "__main__":
    main()
