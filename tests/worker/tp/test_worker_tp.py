"""vesta-worker --tensor-parallel-size 3 (rank 0 + two vesta-tp-rank processes) with the default
model, driven by the test router: registers tp_size 3; greedy tokens equal Hugging Face
transformers' (tests/golden/smollm2_greedy.json) up to the first near-tie; then a rank is killed:
the next request fails with an error (no hang), the worker drains, says goodbye and exits, and
the surviving rank exits too.

usage: test_worker_tp.py PATH/TO/vesta-worker GOLDEN.json   (env VESTA_MODEL)
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "main"))
from testrouter import Router  # noqa: E402

WORKER, GOLDEN = sys.argv[1], sys.argv[2]
MODEL = os.environ.get("VESTA_MODEL")
if not MODEL or not os.path.exists(MODEL):
    sys.exit("VESTA_MODEL must name the default model (scripts/fetch-model.sh)")
NEAR_TIE = 0.02
TP = 3


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and "vesta-tp-rank" in stat[:stat.rindex(")")]:
                out.append(int(d))
    return out


def alive(pid):
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def main():
    golden = json.load(open(GOLDEN))
    r = Router()
    p = subprocess.Popen([WORKER, "--backend", "cpu", "--model", MODEL, "--router", r.endpoint,
                          "--worker-id", "tp-0", "--heartbeat-ms", "200", "--max-model-len", "1024",
                          "--cpu-kv-cache-space", "1", "--num-threads", "1",
                          "--tensor-parallel-size", str(TP)],
                         stderr=subprocess.PIPE, text=True)
    try:
        ident, reg = r.recv(want="register", timeout=120)
        assert reg["tp_size"] == TP and reg["tp_rank"] == 0, reg
        assert reg["vocab_size"] == golden["vocab_size"], reg
        r.send(ident, {"type": "registered", "router_instance": 1})
        ranks = children(p.pid)
        assert len(ranks) == TP - 1, ranks

        for g in golden["prompts"][:2]:
            n = golden["new_tokens"]
            r.generate(ident, g["name"], g["prompt_ids"], temperature=0.0, max_tokens=n,
                       ignore_eos=golden["ignore_eos"])
            ids, fin, last = r.collect(g["name"], timeout=300)[0]
            assert fin == "length" and len(ids) == n, (fin, len(ids))
            cut = next((i for i, m in enumerate(g["margins"]) if m < NEAR_TIE), n)
            assert ids[:cut] == g["greedy_ids"][:cut], (g["name"], ids[:cut], g["greedy_ids"][:cut])
            print("%s: %d greedy tokens match transformers" % (g["name"], cut))

        os.kill(ranks[0], signal.SIGKILL)
        t0 = time.time()
        g = golden["prompts"][0]
        r.generate(ident, "after-kill", g["prompt_ids"], temperature=0.0, max_tokens=8)
        res = r.collect("after-kill", timeout=60)
        failed = "error" in res or res[0][1] == "error"
        assert failed, res
        r.recv(want="goodbye", timeout=60)
        assert p.wait(timeout=60) is not None
        deadline = time.time() + 30
        while alive(ranks[1]) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(ranks[1]), "the surviving rank did not exit"
        print("killed rank: request failed, worker left in %.1f s, other rank gone" % (time.time() - t0))
        print("worker tp: all passed")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sys.stderr.write(p.stderr.read()[-3000:])


if __name__ == "__main__":
    main()
