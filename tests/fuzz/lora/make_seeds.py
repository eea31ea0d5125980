#!/usr/bin/env python3
"""Seeds for the LoRA adapter fuzzer: each tiny-llama adapter of tests/golden/models packed as
fuzz_lora.c reads it (u32 little-endian length of adapter_config.json, the JSON, the safetensors
bytes), plus variants that take the reader's error paths (regex and list targets, DoRA, a rank
over the bound, an unsupported module, a truncated weights file).

    python3 tests/fuzz/lora/make_seeds.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")


def pack(cfg, weights):
    c = json.dumps(cfg).encode()
    return struct.pack("<I", len(c)) + c + weights


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    seeds = {}
    for name in ("lora-all", "lora-qv-rslora", "lora-mlp-regex"):
        d = os.path.join(ROOT, "tests", "golden", "models", name)
        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        w = open(os.path.join(d, "adapter_model.safetensors"), "rb").read()
        seeds[name] = pack(cfg, w)
        seeds[name + "-truncated"] = pack(cfg, w[: len(w) // 2])
        seeds[name + "-dora"] = pack(dict(cfg, use_dora=True), w)
        seeds[name + "-rank"] = pack(dict(cfg, r=4096), w)
        seeds[name + "-lm-head"] = pack(dict(cfg, target_modules=["lm_head"]), w)
    for k, v in seeds.items():
        open(os.path.join(out, k), "wb").write(v)
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
