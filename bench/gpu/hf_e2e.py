#!/usr/bin/env python3
"""Hugging Face side of the GPU end-to-end check and benchmark peers (run on the GPU machine by
scripts/gpu-run.sh; torch + transformers are installed there, nothing can be downloaded).

  hf_e2e.py make DIR      Llama-3-8B-shaped LlamaForCausalLM with random bf16 weights (seed 0, HF's
                          own init), saved by save_pretrained (safetensors + config.json) into DIR;
                          DIR/prompts.jsonl (8 prompts of random ids, three sharing a 256-token
                          prefix) and DIR/hf_ref.json: HF's 32 greedy tokens per prompt (its own
                          loop over the KV cache, bf16 on the GPU), the top-5 log-probabilities at
                          every step and the top-20 at the first.
  hf_e2e.py config DIR    only DIR/config.json of that model (transformers' LlamaConfig), for the
                          benchmarks with --load-format dummy (no 16 GB of weights to write first)
  hf_e2e.py config70b DIR the same for the Llama-3-70B shape (hidden 8192, 80 layers, 64 heads, 8 KV
                          heads, FFN 28672), for --load-format dummy at --tensor-parallel-size 4
  hf_e2e.py small DIR     a small LlamaForCausalLM (hidden 1024, 4 layers, 16 heads of 64, 4 KV heads,
                          vocabulary 32,000) with random bf16 weights (HF init, seed 0) saved into DIR:
                          the model the multi-LoRA check runs on both backends (CPU against GPU)
  hf_e2e.py peer DIR      HF generate() at batch 128, 128 prompt -> 128 output tokens (greedy, EOS
                          ignored): the static-batching peer of benchmark B1, same card, same call.
"""
import json
import os
import sys
import time

import torch

LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                 rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=128000, eos_token_id=128001,
                 tie_word_embeddings=False,
                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})

SMALL = dict(LLAMA3_8B, vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
             num_attention_heads=16, num_key_value_heads=4, bos_token_id=1, eos_token_id=2)

LLAMA3_70B = dict(LLAMA3_8B, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64)


def log(*a):
    print("[hf]", *a, flush=True)


def build():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(**LLAMA3_8B)
    t = time.time()
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = LlamaForCausalLM(cfg)
        torch.set_default_dtype(torch.float32)
    model.eval()
    torch.cuda.synchronize()
    log(f"built in {time.time() - t:.1f} s, {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params")
    return model


def make(d):
    model = build()
    os.makedirs(d, exist_ok=True)
    t = time.time()
    model.save_pretrained(d, safe_serialization=True)
    os.sync()
    log(f"saved to {d} in {time.time() - t:.1f} s: {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 1e9:.2f} GB")
    g = torch.Generator().manual_seed(1)
    V = LLAMA3_8B["vocab_size"]
    lens = [5, 17, 64, 100, 300, 33, 600, 1000]
    prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in lens]
    for k in (5, 6, 7):  # share prompt 4's first 256 tokens (prefix caching)
        prompts[k] = prompts[4][:256] + prompts[k]
    refs = []
    t = time.time()
    with torch.no_grad():
        for p in prompts:
            out = model(torch.tensor([p], device="cuda"), use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1].float()
            toks, tops, first20 = [], [], None
            for step in range(32):
                lp = torch.log_softmax(logits, -1)
                v, i = torch.topk(lp, 20)
                v, i = v.tolist(), i.tolist()
                if step == 0:
                    first20 = [[a, b] for a, b in zip(i, v)]
                tops.append([[a, b] for a, b in zip(i[:5], v[:5])])
                tk = int(torch.argmax(logits))
                toks.append(tk)
                out = model(torch.tensor([[tk]], device="cuda"), past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1].float()
            refs.append({"prompt_token_ids": p, "tokens": toks, "top5": tops, "first_top20": first20})
    log(f"reference: {len(prompts)} prompts x 32 greedy tokens in {time.time() - t:.1f} s")
    # How far HF itself moves in bf16: the same weights in float32, first-step top-20 logprobs.
    model = model.float()
    noise = 0.0
    with torch.no_grad():
        for p, r in zip(prompts, refs):
            lp = torch.log_softmax(model(torch.tensor([p], device="cuda")).logits[0, -1].float(), -1)
            for tk, v in r["first_top20"]:
                noise = max(noise, abs(float(lp[tk]) - v))
    log(f"HF bf16 vs float32 (same weights), first-step top-20 logprobs: max |diff| {noise:.4f}")
    import transformers
    json.dump({"generator": "bench/gpu/hf_e2e.py make", "reference":
               f"transformers {transformers.__version__}, torch {torch.__version__}, bf16, "
               f"{torch.cuda.get_device_name()}", "bf16_noise": noise, "prompts": refs},
              open(os.path.join(d, "hf_ref.json"), "w"))
    with open(os.path.join(d, "prompts.jsonl"), "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_token_ids": p}) + "\n")


def config(d, shape=LLAMA3_8B):
    from transformers import LlamaConfig
    os.makedirs(d, exist_ok=True)
    cfg = LlamaConfig(**shape)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.dtype = "bfloat16"
    cfg.to_json_file(os.path.join(d, "config.json"))
    log(f"config written to {d}")


def peer(d):
    from transformers import AutoConfig, AutoModelForCausalLM
    if os.path.exists(os.path.join(d, "model.safetensors.index.json")) or os.path.exists(
            os.path.join(d, "model.safetensors")):
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda")
    else:  # config only (VESTA_BENCH_DUMMY): random weights, as Vesta's --load-format dummy
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d), dtype=torch.bfloat16)
        model.eval()
        log("HF model with random weights from config.json (EOS ignored: timings do not depend on the values)")
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    g = torch.Generator().manual_seed(2)
    for bs in (128,):
        ids = torch.randint(0, 128256, (bs, 128), generator=g).cuda()
        model.generate(ids[:8], max_new_tokens=8, do_sample=False, min_new_tokens=8)  # warm-up
        torch.cuda.synchronize()
        t = time.time()
        out = model.generate(ids, max_new_tokens=128, min_new_tokens=128, do_sample=False)
        torch.cuda.synchronize()
        dt = time.time() - t
        n = (out.shape[1] - 128) * bs
        log(f"HF generate batch {bs}: {n} output tokens in {dt:.2f} s = {n / dt:.1f} output tok/s")


def small(d):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMALL)).to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    log(f"small random model saved to {d}")


if __name__ == "__main__":
    {"make": make, "small": small, "config": config, "config70b": lambda d: config(d, LLAMA3_70B), "peer": peer}[sys.argv[1]](sys.argv[2])
