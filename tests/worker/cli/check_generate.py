#!/usr/bin/env python3
"""End-to-end checks of `vesta generate` on the real default model (VESTA_MODEL):
  - greedy outputs identical with prefix caching on and off, with small chunks (prompts
    prefilled over several steps) and with a KV cache so small that requests are preempted;
  - the prefix cache is actually hit (num_cached_tokens) when prompts share a prefix;
  - n > 1 with a seed reproduces whatever else is in the batch;
  - with --batch-invariant, tokens and logprobs are bit-identical whatever the batch: alone
    (--max-num-seqs 1), in small chunks, and after preemption (recomputation);
  - bad lines give error lines in place and the other lines still run;
  - --batch-invariant with --tensor-parallel-size 2 is refused with an error naming both.
Usage: check_generate.py VESTA_BINARY"""
import json
import os
import subprocess
import sys
import tempfile

SHARED = ("You are a helpful assistant. Answer briefly and precisely. The user asks about "
          "geography, history and science; keep each answer to one sentence. Question: ")
QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "Why is the sky blue?",
             "What is the largest ocean?", "How many legs does a spider have?",
             "What is photosynthesis?", "When did the Second World War end?",
             "What is the boiling point of water?"]


def run(vesta, model, lines, *flags):
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for line in lines:
                f.write(line if isinstance(line, str) else json.dumps(line))
                f.write("\n")
        cmd = [vesta, "generate", "--model", model, "--input", inp, "--output", out,
               "--no-progress", *flags]
        p = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
        with open(out) as f:
            return [json.loads(x) for x in f], p.stderr


def tokens_logprobs(results):
    """Each output's tokens and logprobs, the floats exactly as written (17 significant digits)."""
    return [[(o["token_ids"], o.get("logprobs")) for o in r["outputs"]] for r in results]


def check_batch_invariant(vesta, model, prompts, greedy, failures):
    """--batch-invariant: the same bits in every batch shape (with the default flags, greedy
    tokens agree but the logprobs' last bits depend on the batch)."""
    flags = [*greedy, "--logprobs", "1", "--batch-invariant"]
    base, _ = run(vesta, model, prompts, *flags)
    if not all(o.get("logprobs") for r in base for o in r["outputs"]):
        failures.append(f"batch-invariant: no logprobs in {base}")
        return
    variants = {
        "12 KV blocks (preemption)": (prompts, ["--num-gpu-blocks-override", "12"]),
        "chunks of 16 tokens, 3 sequences": (prompts, ["--max-num-batched-tokens", "16", "--max-num-seqs", "3"]),
        # One sequence at a time (the n = 3 line needs 3): every decode step is one row.
        "one sequence at a time": (prompts[:2], ["--max-num-seqs", "1"]),
    }
    for name, (lines, extra) in variants.items():
        res, log = run(vesta, model, lines, *flags, *extra)
        want = tokens_logprobs(base[:len(lines)])
        got = tokens_logprobs(res)
        if got != want:
            diff = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
            failures.append(f"batch-invariant, {name}: tokens or logprobs differ on lines {diff}")
        if "KV blocks" in name and " 0 preemptions" in log:
            failures.append(f"batch-invariant, {name}: expected preemptions, log says: {log.strip()}")


def tokens(results):
    return [[o["token_ids"] for o in r["outputs"]] for r in results]


def main():
    vesta = sys.argv[1]
    model = os.environ.get("VESTA_MODEL")
    if not model or not os.path.exists(model):
        sys.exit("FAIL: VESTA_MODEL must name the default model file (scripts/fetch-model.sh)")
    failures = []
    # A seeded n = 3 line rides along in every run: its samples must not depend on the batch.
    sampled = {"prompt": SHARED + QUESTIONS[0], "n": 3, "seed": 11, "temperature": 0.9,
               "top_p": 0.95, "max_tokens": 16}
    prompts = [{"prompt": SHARED + q} for q in QUESTIONS] + [sampled]
    greedy = ["--temperature", "0", "--max-tokens", "16", "--ignore-eos", "--max-model-len", "160"]
    base, _ = run(vesta, model, prompts, *greedy)
    if [r["index"] for r in base] != list(range(len(prompts))):
        failures.append("outputs are not in input order")
    if not all(len(o["token_ids"]) > 0 and "text" in o for r in base for o in r["outputs"]):
        failures.append("empty outputs or no text")
    if len({tuple(t) for t in tokens(base)[-1]}) < 2:
        failures.append("n=3 samples are all identical")
    variants = {
        # Prompts are admitted over several steps here, so later ones hit the cached prefix.
        "chunks of 16 tokens, 3 sequences": ["--max-num-batched-tokens", "16", "--max-num-seqs", "3"],
        "no prefix caching, chunks of 40": ["--no-enable-prefix-caching", "--max-num-batched-tokens", "40"],
        "12 KV blocks (preemption)": ["--num-gpu-blocks-override", "12"],
        "12 KV blocks, no prefix caching": ["--num-gpu-blocks-override", "12",
                                            "--no-enable-prefix-caching"],
    }
    for name, flags in variants.items():
        res, log = run(vesta, model, prompts, *greedy, *flags)
        if tokens(res) != tokens(base):
            diff = [i for i, (a, b) in enumerate(zip(tokens(res), tokens(base))) if a != b]
            failures.append(f"{name}: outputs differ from the default run on lines {diff}")
        if "KV blocks" in name and " 0 preemptions" in log:
            failures.append(f"{name}: expected preemptions, log says: {log.strip()}")
        if name.startswith("chunks") and sum(r["num_cached_tokens"] for r in res) < 16 * 4:
            failures.append(f"{name}: prompts sharing a prefix got few prefix-cache hits")
    # Tensor parallelism cannot be batch-invariant: refused at engine start, naming both options.
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "in.jsonl")
        with open(inp, "w") as f:
            f.write(json.dumps(prompts[0]) + "\n")
        p = subprocess.run([vesta, "generate", "--model", model, "--input", inp, "--output",
                            os.path.join(d, "out.jsonl"), "--no-progress", "--batch-invariant",
                            "--tensor-parallel-size", "2"], stderr=subprocess.PIPE, text=True)
        if p.returncode == 0 or p.returncode < 0 or "--batch-invariant" not in p.stderr \
                or "--tensor-parallel-size" not in p.stderr:
            failures.append(f"--batch-invariant --tensor-parallel-size 2: exit {p.returncode}, {p.stderr!r}")
    # Four prompts and the n = 3 line: enough for 12 KV blocks to preempt, quick on 2 cores.
    check_batch_invariant(vesta, model, prompts[:4] + [sampled], greedy, failures)
    # Bad lines in the middle: an error line each, the rest runs; the n = 3 line alone.
    lines = [prompts[0], "{not json", {"prompt_token_ids": [10 ** 8]}, {"prompt_token_ids": []},
             {"prompt": SHARED, "max_tokens": 0}, prompts[1], sampled]
    res, _ = run(vesta, model, lines, *greedy)
    if len(res) != len(lines) or [("error" in r) for r in res] != [False, True, True, True, True,
                                                                     False, False]:
        failures.append(f"bad lines: {res}")
    elif tokens([res[0], res[5], res[6]]) != tokens([base[0], base[1], base[-1]]):
        failures.append("lines around bad lines (or the n = 3 line alone) differ from the default run")
    for f in failures:
        print("FAIL:", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
