#!/usr/bin/env python3
"""Writes the small committed test models and golden reference files under tests/models/.

Reference implementations: Hugging Face transformers (random tiny models, safetensors),
the `gguf` Python package (GGUFWriter, gguf.quants, GGUFReader). Needs torch, transformers,
gguf and numpy (this development machine's python3; CI does not run it, it uses the outputs).

Usage: scripts/make_test_models.py [--smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "models")


def fnv1a64(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


FNV_INIT = 0xCBF29CE484222325


def gguf_golden(path, out_json):
    """Everything gguf-py's GGUFReader sees in a GGUF file, for the C reader's unit test."""
    import gguf

    r = gguf.GGUFReader(path)
    kvs = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        t = f.types[0]
        ent = {"type": int(t)}
        if t == gguf.GGUFValueType.ARRAY:
            et = f.types[1] if len(f.types) > 1 else None
            ent["elem_type"] = int(et) if et is not None else None
            ent["count"] = len(f.data)
            n = len(f.data)
            idx = sorted(set([0, n - 1] + list(range(0, n, max(1, n // 40))))) if n else []
            if et == gguf.GGUFValueType.STRING:
                h = FNV_INIT
                for i in range(n):
                    b = bytes(f.parts[f.data[i]])
                    h = fnv1a64(h, struct.pack("<Q", len(b)) + b)
                ent["fnv1a64"] = "%016x" % h
                ent["samples"] = {str(i): bytes(f.parts[f.data[i]]).hex() for i in idx}
            elif et is not None and et != gguf.GGUFValueType.ARRAY:
                ent["samples"] = {str(i): f.parts[f.data[i]].tolist()[0] for i in idx}
        elif t == gguf.GGUFValueType.STRING:
            ent["value_hex"] = bytes(f.parts[f.data[0]]).hex()
        else:
            v = f.parts[f.data[0]].tolist()[0]
            ent["value"] = bool(v) if t == gguf.GGUFValueType.BOOL else v
        kvs[name] = ent
    tensors = []
    with open(path, "rb") as fh:
        for t in r.tensors:
            fh.seek(t.data_offset)
            head = fh.read(min(32, int(t.n_bytes)))
            tensors.append({
                "name": t.name,
                "ggml_type": int(t.tensor_type),
                "ne": [int(x) for x in t.shape],
                "data_offset": int(t.data_offset),
                "nbytes": int(t.n_bytes),
                "head_hex": head.hex(),
            })
    golden = {"file": os.path.basename(path), "kv": kvs, "tensors": tensors}
    with open(out_json, "w") as fh:
        json.dump(golden, fh, indent=1, sort_keys=True)
    print("wrote", out_json)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(args.smollm2):
        sys.exit("missing %s: run scripts/fetch-model.sh" % args.smollm2)
    gguf_golden(args.smollm2, os.path.join(OUT, "smollm2-gguf-golden.json"))


if __name__ == "__main__":
    main()
