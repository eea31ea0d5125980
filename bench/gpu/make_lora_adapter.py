#!/usr/bin/env python3
"""A random LoRA adapter in PEFT's layout for a Llama-family config.json, for benchmarks (its
values do not matter to the timings): adapter_config.json and adapter_model.safetensors (F16,
written here with numpy, no PEFT needed on the GPU machine), every projection of every layer.

    python3 bench/gpu/make_lora_adapter.py CONFIG.json OUT_DIR [rank=16] [seed=0] [b_scale=0.01]
"""
import json
import os
import struct
import sys

import numpy as np

TARGETS = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]


def dims(c):
    h, i = c["hidden_size"], c["intermediate_size"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h), "gate_proj": (h, i),
            "up_proj": (h, i), "down_proj": (i, h)}


def main():
    cfg_path, out = sys.argv[1], sys.argv[2]
    rank = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    b_scale = float(sys.argv[5]) if len(sys.argv) > 5 else 0.01
    c = json.load(open(cfg_path))
    d = dims(c)
    tensors = []
    for layer in range(c["num_hidden_layers"]):
        for parent, mod in TARGETS:
            fin, fout = d[mod]
            key = f"base_model.model.model.layers.{layer}.{parent}.{mod}"
            tensors.append((key + ".lora_A.weight", rng.standard_normal((rank, fin), np.float32) / np.sqrt(fin)))
            tensors.append((key + ".lora_B.weight", rng.standard_normal((fout, rank), np.float32) * b_scale))
    header, off = {}, 0
    for name, a in tensors:
        n = a.size * 2
        header[name] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for _, a in tensors:
            f.write(a.astype("<f2").tobytes())
    json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": [m for _, m in TARGETS],
               "bias": "none", "task_type": "CAUSAL_LM"}, open(os.path.join(out, "adapter_config.json"), "w"))
    print(f"{out}: rank {rank}, {off / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
