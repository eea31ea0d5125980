#!/usr/bin/env python3
"""Checks worker/sampler against an independent numpy implementation of vLLM V1's sampler
(vllm/v1/sample/sampler.py, ops/penalties.py, ops/topk_topp_sampler.py, logits processors):
final distributions (masks and probabilities), greedy choice, raw logprobs, and the sampling
frequencies of many (seed, offset) draws (chi-square). Usage: check_sampler.py SAMPLER_PROBE"""
import json
import subprocess
import sys
import tempfile

import numpy as np

EPS = 1e-5  # vLLM _SAMPLING_EPS


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x[np.isfinite(x)]) if np.isfinite(x).any() else 0.0
    e = np.where(np.isfinite(x), np.exp(x - m), 0.0)
    return e / e.sum()


def reference(c):
    l = np.array(c["logits"], dtype=np.float32)
    V = l.size
    for tok, b in c.get("bias", []):
        l[tok] += np.float32(b)
    if c.get("suppress_stop"):
        for t in c.get("eos", []) + c.get("stop_ids", []):
            l[t] = -np.inf
    prompt, output = c.get("prompt", []), c.get("output", [])
    rep = np.float32(c.get("rep", 1.0))
    if rep != 1.0:
        mask = np.zeros(V, bool)
        mask[prompt] = True
        mask[output] = True
        l = np.where(mask, np.where(l > 0, l / rep, l * rep), l).astype(np.float32)
    counts = np.bincount(np.array(output, dtype=np.int64), minlength=V)[:V]
    l = l - np.float32(c.get("freq", 0.0)) * counts - np.float32(c.get("pres", 0.0)) * (counts > 0)
    l = l.astype(np.float32)
    t = c.get("temperature", 1.0)
    if t < EPS:
        p = np.zeros(V)
        p[int(np.argmax(l))] = 1.0
        return p
    l = (l / np.float32(t)).astype(np.float64)
    min_p = c.get("min_p", 0.0)
    if min_p > 0:
        p = softmax(l)
        l[p < min_p * p.max()] = -np.inf
    ids = np.arange(V)
    order = np.lexsort((-ids, l))  # ascending logit; ties: larger id first (kept last)
    ls = l[order]
    k = c.get("top_k", 0)
    if 0 < k < V:
        ls = np.where(ls < ls[V - k], -np.inf, ls)
    top_p = c.get("top_p", 1.0)
    if top_p < 1.0:
        cs = np.cumsum(softmax(ls))
        m = cs <= 1 - np.float64(np.float32(top_p))
        m[-1] = False
        ls = np.where(m, -np.inf, ls)
    out = np.empty(V)
    out[order] = ls
    return softmax(out)


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def make_cases(rng):
    cases = []
    big = 4000
    for scale in (1.0, 3.0, 8.0):
        base = (rng.standard_normal(big) * scale).tolist()
        for params in (
            {},
            {"temperature": 0.7},
            {"top_k": 50},
            {"top_p": 0.9},
            {"top_p": 0.5, "temperature": 1.3},
            {"min_p": 0.05},
            {"top_k": 200, "top_p": 0.8, "min_p": 0.01, "temperature": 0.8},
            {"temperature": 0.0},
            {"rep": 1.3, "pres": 0.5, "freq": 0.3, "prompt": [1, 2, 3, 5, 8, 13],
             "output": [2, 2, 7, 7, 7, 100, 3999]},
            {"rep": 0.8, "temperature": 0.0, "prompt": list(range(0, 400, 3)),
             "output": list(range(1, 200, 7))},
            {"bias": [[10, 5.0], [11, -3.0], [12, 100.0]], "top_p": 0.95},
            {"suppress_stop": True, "eos": [int(np.argmax(base))], "stop_ids": [5, 6],
             "temperature": 0.0},
            {"logprobs": 5, "temperature": 0.0},
            {"logprobs": 20, "top_k": 10},
        ):
            c = {"logits": base, "draws": 1, "seed": 7}
            c.update(params)
            cases.append(c)
    # Small vocabularies for the frequency test: many draws over (seed, offsets 0..n-1).
    for params in ({}, {"top_k": 5}, {"top_p": 0.7}, {"min_p": 0.1, "temperature": 0.5},
                   {"pres": 1.0, "freq": 0.5, "output": [0, 0, 1]}):
        c = {"logits": (rng.standard_normal(24) * 1.5).tolist(), "draws": 20000,
             "seed": 1234}
        c.update(params)
        cases.append(c)
    # Ties: top-k keeps every token tied with the k-th largest; greedy takes the lowest id.
    cases.append({"logits": [1.0, 3.0, 2.0, 2.0, 2.0, 0.5], "top_k": 2, "draws": 1})
    cases.append({"logits": [1.0, 3.0, 0.0, 3.0, 2.0], "temperature": 0.0, "draws": 1})
    return cases


def main():
    probe = sys.argv[1]
    rng = np.random.default_rng(20261125)
    cases = make_cases(rng)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"cases": cases}, f)
        f.flush()
        res = json.loads(subprocess.run([probe, f.name], check=True,
                                        stdout=subprocess.PIPE).stdout)["cases"]
    failures = 0
    for i, (c, r) in enumerate(zip(cases, res)):
        want = reference(c)
        got = np.array(r["probs"])
        desc = {k: v for k, v in c.items() if k not in ("logits",)}
        problems = []
        if not np.array_equal(want > 0, got > 0):
            problems.append(f"mask differs: want {np.count_nonzero(want)} kept, got "
                            f"{np.count_nonzero(got)}")
        elif np.max(np.abs(want - got)) > 1e-5:
            problems.append(f"probabilities differ by {np.max(np.abs(want - got)):.3g}")
        if not r["deterministic"]:
            problems.append("same (seed, offset) gave different tokens")
        if want[r["last_token"]] == 0:
            problems.append(f"drew token {r['last_token']} which has probability 0")
        if c.get("logprobs", -1) >= 0:
            lp = log_softmax(np.array(c["logits"], dtype=np.float32))
            n = c["logprobs"]
            ref_ids = np.lexsort((np.arange(lp.size), -lp))[:n]
            if r["top_ids"] != ref_ids.tolist():
                problems.append(f"top logprob ids {r['top_ids']} != {ref_ids.tolist()}")
            elif np.max(np.abs(np.array(r["top_logprobs"]) - lp[ref_ids])) > 1e-4:
                problems.append("top logprobs differ")
            if abs(r["logprob"] - lp[r["last_token"]]) > 1e-4:
                problems.append("chosen-token logprob differs")
        if c["draws"] > 1000:
            n = c["draws"]
            hist = np.array(r["hist"])
            exp = want * n
            keep = exp >= 5
            chi2 = float((((hist - exp) ** 2)[keep] / exp[keep]).sum())
            df = max(int(keep.sum()) - 1, 1)
            # p ~ 1e-6 bound: df + 5 sqrt(2 df) + 10. The draws are deterministic (fixed
            # seeds), so this either always passes or always fails.
            if chi2 > df + 5 * np.sqrt(2 * df) + 10 or hist[~keep].sum() > max(20, exp[~keep].sum() * 3 + 20):
                problems.append(f"draw frequencies off: chi2 {chi2:.1f} for df {df}")
        if problems:
            failures += 1
            print(f"case {i} {desc}: " + "; ".join(problems))
    print(f"{len(cases) - failures}/{len(cases)} sampler cases agree with the numpy reference")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
