#!/usr/bin/env python3
"""Writes hash_golden.json: prefix-cache block keys computed from the formula documented in
include/vesta/prefix_hash.h with the Python xxhash package (an implementation of XXH3 that
Vesta does not use), for test_prefix_hash. Run: python3 gen_hash_golden.py > hash_golden.json"""
import json
import random
import struct

import xxhash


def root(salt):
    return xxhash.xxh3_64_intdigest(b"vesta-kv-v1", seed=salt)


def block_key(parent, tokens, salt, lora_id):
    buf = struct.pack("<Qi", parent, lora_id) + struct.pack("<%di" % len(tokens), *tokens)
    return xxhash.xxh3_64_intdigest(buf, seed=salt)


def chain(tokens, block_size, salt, lora_id):
    h, keys = root(salt), []
    for off in range(0, len(tokens) - block_size + 1, block_size):
        h = block_key(h, tokens[off:off + block_size], salt, lora_id)
        keys.append(h)
    return keys


def main():
    rng = random.Random(2026)
    cases = []
    for block_size, n, salt, lora in ((16, 50, 0, 0), (16, 64, 12345, 0), (1, 5, 0, 0),
                                      (4, 17, 2**63 + 11, 3), (300, 650, 7, 0), (16, 15, 0, 0)):
        tokens = [rng.randrange(0, 151936) for _ in range(n)]
        cases.append({"block_size": block_size, "salt": str(salt), "lora_id": lora,
                      "tokens": tokens, "root": str(root(salt)),
                      "keys": [str(k) for k in chain(tokens, block_size, salt, lora)]})
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
