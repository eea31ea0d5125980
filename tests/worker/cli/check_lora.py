#!/usr/bin/env python3
"""Multi-LoRA through `vesta generate` on the real default model (VESTA_MODEL) against PEFT
(tests/golden/lora/smollm2-lora.json, made by scripts/reference/make_golden.py lora):
  - lines under the adapter and lines of the base model in one run (the same steps): greedy
    tokens identical to PEFT's with and without the adapter;
  - the prefix cache keeps adapters apart: one line at a time, the base model's blocks are not
    hits for the adapter (and the other way round), while a repeat under the same one hits;
  - two adapters (the same directory under two names) with --max-loras 1: every line finishes
    with PEFT's tokens, though the two never share a step;
  - a line naming no adapter gets an error line in place, the others run;
  - start-up errors: --lora-modules without --enable-lora, a missing adapter directory, a rank
    over --max-lora-rank.
Usage: check_lora.py VESTA_BINARY MODEL ROOT"""
import json
import os
import subprocess
import sys
import tempfile

VESTA, MODEL, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
GOLDEN = json.load(open(os.path.join(ROOT, "tests", "golden", "lora", "smollm2-lora.json")))
ADAPTER = os.path.join(ROOT, GOLDEN["adapter"])
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += not ok


def run(lines, *flags, expect_ok=True):
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        cmd = [VESTA, "generate", "--model", MODEL, "--input", inp, "--output", out, "--no-progress", *flags]
        p = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, timeout=600)
        if not expect_ok:
            return p
        if p.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
        with open(out) as f:
            return [json.loads(x) for x in f]


def line(prompt, lora=None):
    x = {"prompt_token_ids": prompt["prompt_ids"], "max_tokens": 32, "temperature": 0, "ignore_eos": True}
    if lora:
        x["lora_name"] = lora
    return x


def tokens(row):
    return row["outputs"][0]["token_ids"]


def main():
    ps = GOLDEN["prompts"]
    lora = ["--enable-lora", "--lora-modules", f"qv={ADAPTER}"]

    rows = run([line(p, "qv" if i % 2 == 0 else None) for p in ps for i in range(2)], *lora)
    for k, p in enumerate(ps):
        check(tokens(rows[2 * k]) == p["greedy_ids"], f"{p['name']}: adapter tokens equal PEFT's (mixed steps)")
        check(tokens(rows[2 * k + 1]) == p["base_greedy_ids"], f"{p['name']}: base tokens equal HF's (mixed steps)")

    p = max(ps, key=lambda q: len(q["prompt_ids"]))
    rows = run([line(p), line(p, "qv"), line(p), line(p, "qv")], *lora, "--max-num-seqs", "1")
    cached = [r["num_cached_tokens"] for r in rows]
    check(cached[1] == 0, f"the adapter does not hit the base model's blocks (cached {cached})")
    check(cached[2] > 0 and cached[3] > 0, f"repeats hit their own blocks (cached {cached})")
    check([tokens(r) for r in rows] == [p["base_greedy_ids"], p["greedy_ids"]] * 2,
          "tokens unchanged by the cache hits")

    two = ["--enable-lora", "--lora-modules", f"a={ADAPTER}", f"b={ADAPTER}", "--max-loras", "1"]
    rows = run([line(q, name) for q in ps for name in ("a", "b", None)], *two)
    want = [w for q in ps for w in (q["greedy_ids"], q["greedy_ids"], q["base_greedy_ids"])]
    check([tokens(r) for r in rows] == want, "--max-loras 1 with two adapters: every line equals PEFT")

    rows = run([line(ps[0], "nope"), line(ps[0], "qv")], *lora)
    check("error" in rows[0] and "lora_name" in rows[0]["error"], f"unknown adapter: {rows[0].get('error')}")
    check(tokens(rows[1]) == ps[0]["greedy_ids"], "the line after it still runs")

    bad = [(["--lora-modules", f"qv={ADAPTER}"], "--enable-lora"),
           (["--enable-lora", "--lora-modules", "qv=/nonexistent/adapter"], "/nonexistent/adapter"),
           (lora + ["--max-lora-rank", "2"], "'r'")]
    for flags, needle in bad:
        pr = run([line(ps[0])], *flags, expect_ok=False)
        check(pr.returncode != 0 and needle in pr.stderr, f"{' '.join(flags[-2:])}: fails naming {needle}")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
