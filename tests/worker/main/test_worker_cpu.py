"""vesta-worker --backend cpu with the default model, driven by the test router: greedy tokens
equal Hugging Face transformers' (tests/golden/smollm2_greedy.json, made by
scripts/reference/make_golden.py) up to the first near-tie; the engine's KV events carry the
prompt's block keys (recomputed with the xxhash package); a repeated prompt is a prefix-cache hit;
abort works; SIGTERM drains and exits 0.

usage: test_worker_cpu.py PATH/TO/vesta-worker GOLDEN.json   (env VESTA_MODEL)
"""
import json
import os
import signal
import subprocess
import sys
import time

from testrouter import Router, block_keys

WORKER, GOLDEN = sys.argv[1], sys.argv[2]
MODEL = os.environ.get("VESTA_MODEL")
if not MODEL or not os.path.exists(MODEL):
    sys.exit("VESTA_MODEL must name the default model (scripts/fetch-model.sh)")
BLOCK = 16
NEAR_TIE = 0.02  # logit margin under which float differences may legitimately flip argmax


def main():
    golden = json.load(open(GOLDEN))
    r = Router()
    p = subprocess.Popen([WORKER, "--backend", "cpu", "--model", MODEL, "--router", r.endpoint,
                          "--worker-id", "cpu-0", "--heartbeat-ms", "200", "--max-model-len", "1024",
                          "--cpu-kv-cache-space", "1", "--num-threads", "2", "--block-size", str(BLOCK)],
                         stderr=subprocess.PIPE, text=True)
    try:
        ident, reg = r.recv(want="register", timeout=120)
        assert reg["vocab_size"] == golden["vocab_size"], reg
        assert golden["eos_token_id"] in reg["eos_ids"], reg
        assert reg["max_model_len"] == 1024 and reg["block_size"] == BLOCK and reg["num_kv_blocks"] > 0
        r.send(ident, {"type": "registered", "router_instance": 1})

        for g in golden["prompts"][:2]:
            n = golden["new_tokens"]
            r.generate(ident, g["name"], g["prompt_ids"], temperature=0.0, max_tokens=n,
                       ignore_eos=golden["ignore_eos"], logprobs=1)
            ids, fin, last = r.collect(g["name"], timeout=300)[0]
            assert fin == "length" and len(ids) == n, (fin, len(ids))
            cut = next((i for i, m in enumerate(g["margins"]) if m < NEAR_TIE), n)
            assert ids[:cut] == g["greedy_ids"][:cut], (g["name"], ids[:cut], g["greedy_ids"][:cut])
            assert last["num_prompt_tokens"] == len(g["prompt_ids"]), last

        # Engine KV events hold exactly the full prompt blocks' keys (independent XXH3) -- and
        # possibly blocks of generated tokens, which are also full blocks of the sequence.
        g = golden["prompts"][0]
        deadline = time.time() + 5
        want = set(block_keys(g["prompt_ids"], BLOCK))
        while not want <= r.kv_stored and time.time() < deadline:
            try:
                r.recv(want="kv_events", timeout=0.5)
            except AssertionError:
                pass
        assert want <= r.kv_stored, (sorted(want), sorted(r.kv_stored))

        # The same prompt again: its full blocks come from the prefix cache.
        r.generate(ident, "again", g["prompt_ids"], temperature=0.0, max_tokens=2)
        ids, fin, last = r.collect("again", timeout=120)[0]
        full = len(g["prompt_ids"]) // BLOCK * BLOCK
        assert last["num_cached_tokens"] >= min(full, len(g["prompt_ids"]) - 1) - BLOCK + 1, last
        assert last["num_cached_tokens"] > 0, last

        # Abort mid-generation.
        r.generate(ident, "ab", g["prompt_ids"], max_tokens=500, ignore_eos=True)
        r.recv(match=lambda m: m["type"] == "tokens" and m["request_id"] == "ab", timeout=120)
        r.send(ident, {"type": "abort", "request_id": "ab"})
        ids, fin, _ = r.collect("ab", timeout=120)[0]
        assert fin == "abort" and len(ids) < 499, (fin, len(ids))

        p.send_signal(signal.SIGTERM)
        r.recv(want="goodbye", timeout=60)
        assert p.wait(timeout=60) == 0
        print("worker cpu: all passed")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sys.stderr.write(p.stderr.read()[-3000:])


if __name__ == "__main__":
    main()
