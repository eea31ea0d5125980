#!/usr/bin/env python3
"""The "small real model" of the GPU end-to-end check, and its Hugging Face reference.

The device calls carry at most 64 MiB, so the 98 MB SmolLM2-135M-Instruct GGUF cannot travel. This
keeps its first N transformer layers (real weights, the real Q8_0 embedding / tied output and final
norm) in a new GGUF (tokenizer arrays dropped: the check feeds token ids), and writes the reference
made by Hugging Face transformers from that file (float32, CPU): 32 greedy tokens for 8 prompts,
the top-5 log-probabilities at every step, and the top-20 at the first step (last prompt position).

    python3 bench/gpu/make_small_real.py models/SmolLM2-135M-Instruct.Q4_1.gguf .gpu/smollm2-4l.gguf \
        bench/gpu/golden/smollm2_4l_hf.json [layers=4]
"""
import hashlib
import json
import os
import sys

import gguf
import numpy as np


def truncate(src, dst, layers):
    r = gguf.GGUFReader(src)
    arch = "llama"
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name.startswith("tokenizer.ggml.") and name not in (
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            continue
        if name == "general.architecture" or name.startswith("tokenizer.chat_template"):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            continue
        val = f.contents()
        if name == "llama.block_count":
            val = layers
        w.add_key_value(name, val, vt)
    for t in r.tensors:
        if t.name.startswith("blk."):
            if int(t.name.split(".")[1]) >= layers:
                continue
        shape = [int(x) for x in reversed(t.shape)] if False else None
        w.add_tensor(t.name, np.asarray(t.data), raw_shape=np.asarray(t.data).shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(path, out_json):
    import torch
    from transformers import AutoModelForCausalLM

    d, f = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()
    V = model.config.vocab_size
    rng = np.random.default_rng(1234)
    lens = [5, 17, 64, 100, 250, 300, 33, 129]
    prompts = [rng.integers(0, V, n).tolist() for n in lens]
    refs = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p])
            out = model(ids, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1].float()
            toks, tops = [], []
            first20 = None
            for step in range(32):
                lp = torch.log_softmax(logits, -1)
                v, i = torch.topk(lp, 20)
                if step == 0:
                    first20 = [[int(a), float(b)] for a, b in zip(i, v)]
                tops.append([[int(a), float(b)] for a, b in zip(i[:5], v[:5])])
                t = int(torch.argmax(logits))
                toks.append(t)
                out = model(torch.tensor([[t]]), past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1].float()
            refs.append({"prompt_token_ids": p, "tokens": toks, "top5": tops, "first_top20": first20})
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    import transformers
    json.dump({"generator": "bench/gpu/make_small_real.py", "model_sha256": sha,
               "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, CPU",
               "prompts": refs}, open(out_json, "w"))


def bf16_noise(path, ref_json):
    """How far HF itself moves in bf16: the first-step top-20 log-probabilities of HF in bf16
    against HF in float32 (the golden). Stored as the tolerance scale for bf16 backends."""
    import torch
    from transformers import AutoModelForCausalLM
    d, f = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.bfloat16)
    g = json.load(open(ref_json))
    worst = 0.0
    with torch.no_grad():
        for p in g["prompts"]:
            lp = torch.log_softmax(model(torch.tensor([p["prompt_token_ids"]])).logits[0, -1].float(), -1)
            for t, v in p["first_top20"]:
                worst = max(worst, abs(float(lp[t]) - v))
    g["bf16_noise"] = worst
    json.dump(g, open(ref_json, "w"))
    print("HF bf16 vs float32, first-step top-20 logprobs: max |diff|", worst)


if __name__ == "__main__":
    if sys.argv[1] == "--noise":
        bf16_noise(sys.argv[2], sys.argv[3])
        sys.exit(0)
    src, dst, out = sys.argv[1:4]
    layers = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    truncate(src, dst, layers)
    print(dst, os.path.getsize(dst))
    reference(dst, out)
    bf16_noise(dst, out)
