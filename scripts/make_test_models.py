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


TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def make_hf(name, arch, dtype, seed, **extra):
    """A random tiny transformers model saved as a Hugging Face directory (safetensors)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg_cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
               "mistral": transformers.MistralConfig}[arch]
    model_cls = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
                 "mistral": transformers.MistralForCausalLM}[arch]
    kw = dict(TINY)
    kw.update(extra)
    cfg = cfg_cls(**kw)
    model = model_cls(cfg)
    with torch.no_grad():
        # Random init is N(0, 0.02) with unit norms; widen the spread so that quantization
        # errors and mix-ups are visible, and randomize norms and biases too.
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    model = model.to(getattr(torch, dtype))
    d = os.path.join(OUT, name)
    model.save_pretrained(d, safe_serialization=True, max_shard_size=extra_shard(name))
    return model, d


def extra_shard(name):
    return "200KB" if name.endswith("sharded") else "50MB"


def state_dict_f32(model):
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def permute_llama(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf LlamaModel.permute: interleaved rotary halves."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path, arch, cfg, sd, qtype, permute, name=None):
    """GGUF with gguf-py's GGUFWriter, named with gguf-py's HF->GGUF tensor name map."""
    import gguf

    arch_enum = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]
    tmap = gguf.get_tensor_name_map(arch_enum, cfg.num_hidden_layers)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name or os.path.basename(path))
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_file_type(int(qtype))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<%02x>" % i for i in range(cfg.vocab_size)])
    w.add_token_types([1] * cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0])
    names = {}
    for hf, t in sd.items():
        base, suffix = hf.rsplit(".", 1)
        g = tmap.get_name(base) + "." + suffix
        names[hf] = g
        if permute and base.endswith("q_proj"):
            t = permute_llama(t, cfg.num_attention_heads, cfg.num_attention_heads)
        elif permute and base.endswith("k_proj"):
            t = permute_llama(t, cfg.num_attention_heads, cfg.num_key_value_heads)
        if t.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(g, t.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(g, t.astype(np.float16))
        else:
            q = gguf.quants.quantize(t.astype(np.float32), qtype)
            w.add_tensor(g, q, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return names


def gguf_dequantized(path, permute, cfg):
    """Every tensor of a GGUF file dequantized by gguf-py, Q/K permutation undone the way
    transformers' GGUF loader does it: {gguf_name: float32 array in HF order}."""
    import gguf

    r = gguf.GGUFReader(path)
    out = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        a = a.reshape([int(x) for x in reversed(t.shape)])
        if permute and (".attn_q." in t.name or ".attn_k." in t.name):
            nh = cfg.num_attention_heads
            if ".attn_k." in t.name:
                nh = cfg.num_key_value_heads
            dim = a.shape[0] // nh // 2
            a = a.reshape(nh, dim, 2, *a.shape[1:]).swapaxes(2, 1).reshape(a.shape)
        out[t.name] = a
    return out


def write_ref(path, tensors):
    """Reference tensors for the C tests: "VREF" u32 count, then per tensor: u32 name length,
    name, u32 ndim, ndim x i64 shape, float32 data (little-endian)."""
    with open(path, "wb") as f:
        f.write(b"VREF" + struct.pack("<I", len(tensors)))
        for name, a in tensors.items():
            a = np.ascontiguousarray(a, dtype="<f4")
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<I", a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.tobytes())


def hf_config_golden(cfg):
    """The config fields Vesta parses, as transformers understands them."""
    rp = getattr(cfg, "rope_parameters", None) or {}
    rs = getattr(cfg, "rope_scaling", None) or {}
    rope = dict(rp)
    rope.update(rs if isinstance(rs, dict) else {})
    eos = cfg.eos_token_id
    return {
        "arch": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_layers": cfg.num_hidden_layers,
        "num_heads": cfg.num_attention_heads,
        "num_kv_heads": cfg.num_key_value_heads,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)),
        "rope_type": rope.get("rope_type", rope.get("type", "default")),
        "rope_factor": rope.get("factor"),
        "rope_low_freq_factor": rope.get("low_freq_factor"),
        "rope_high_freq_factor": rope.get("high_freq_factor"),
        "rope_original_max_position": rope.get("original_max_position_embeddings"),
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "bos_token_id": cfg.bos_token_id,
        "eos_token_ids": eos if isinstance(eos, list) else [eos],
    }


def classic_config(d):
    """Rewrites config.json the way most hub models spell it (transformers < 5): top-level
    rope_theta and a rope_scaling object instead of rope_parameters."""
    path = os.path.join(d, "config.json")
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters", {}) or {}
    c["rope_theta"] = rp.pop("rope_theta", 10000.0)
    c["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    with open(path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def make_tiny_models(golden):
    import gguf
    import transformers

    Q = gguf.GGMLQuantizationType
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    specs = [
        ("tiny-llama", "llama", "float32", 1,
         dict(rope_scaling=llama3, rope_theta=50000.0, tie_word_embeddings=False, eos_token_id=[2, 3])),
        ("tiny-llama-sharded", "llama", "float32", 1,
         dict(rope_scaling=llama3, rope_theta=50000.0, tie_word_embeddings=False, eos_token_id=[2, 3])),
        ("tiny-qwen2", "qwen2", "bfloat16", 2,
         dict(tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6)),
        ("tiny-mistral", "mistral", "float16", 3,
         dict(tie_word_embeddings=False, sliding_window=None, rope_theta=10000.0)),
    ]
    models = {}
    for name, arch, dtype, seed, extra in specs:
        model, d = make_hf(name, arch, dtype, seed, **extra)
        if name == "tiny-llama":
            # A generation config whose eos list extends the model config's.
            gc = transformers.GenerationConfig(bos_token_id=1, eos_token_id=[2, 3, 4])
            gc.save_pretrained(d)
        if name in ("tiny-llama-sharded", "tiny-mistral"):
            classic_config(d)
        models[name] = model
        sd = state_dict_f32(model)
        cfgj = transformers.AutoConfig.from_pretrained(d)
        g = hf_config_golden(cfgj)
        if name == "tiny-llama":
            g["eos_token_ids"] = [2, 3, 4]
        golden[name] = {"config": g,
                        "tensors": {k: list(v.shape) for k, v in sd.items()},
                        "dtype": {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[dtype]}
        print("wrote", d)

    # GGUF variants of tiny-llama (llama arch: Q/K permuted) and tiny-qwen2 (not permuted).
    variants = [("tiny-llama", "llama", True, t) for t in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1)]
    variants += [("tiny-qwen2", "qwen2", False, t) for t in (Q.F32, Q.Q8_0)]
    # llama.cpp converts Mistral to the llama architecture; transformers maps it back to
    # mistral when general.name is "mistral".
    variants += [("tiny-mistral", "llama", True, Q.F32)]
    for base, arch, permute, qt in variants:
        model = models[base]
        cfg = model.config
        sd = state_dict_f32(model)
        fname = "%s-%s.gguf" % (base, qt.name.lower())
        path = os.path.join(OUT, fname)
        names = write_gguf(path, arch, cfg, sd, qt, permute,
                           name="mistral" if base == "tiny-mistral" else None)
        deq = gguf_dequantized(path, permute, cfg)
        # transformers' own reading of the GGUF config (it drops llama3 rope scaling).
        tcfg = transformers.AutoConfig.from_pretrained(OUT, gguf_file=fname)
        g = hf_config_golden(tcfg)
        g["eos_token_ids"] = [cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0]]
        golden[fname] = {"config": g, "base": base, "ggml_type": qt.name,
                         "tensors": {k: list(v.shape) for k, v in sd.items()},
                         "gguf_names": names}
        if qt not in (Q.F32, Q.F16, Q.BF16):
            # Exact dequantized references for the permuted and embedding tensors.
            keep = {hf: deq[g_] for hf, g_ in names.items()
                    if hf.startswith("model.layers.0.self_attn.") or hf == "model.embed_tokens.weight"}
            write_ref(os.path.join(OUT, fname[:-5] + ".ref"), keep)
        print("wrote", path, os.path.getsize(path))

    # A llama GGUF with q/k/v biases (llama.cpp permutes the q/k biases too): only reachable
    # through GGUF, since Vesta rejects HF llama attention_bias (it also adds an o_proj bias).
    model = models["tiny-llama"]
    cfg = model.config
    sd = state_dict_f32(model)
    rng = np.random.default_rng(11)
    for l in range(cfg.num_hidden_layers):
        for proj, rows in (("q_proj", 64), ("k_proj", 32), ("v_proj", 32)):
            sd["model.layers.%d.self_attn.%s.bias" % (l, proj)] = rng.standard_normal(rows).astype(np.float32)
    fname = "tiny-llama-bias-q8_0.gguf"
    names = write_gguf(os.path.join(OUT, fname), "llama", cfg, sd, Q.Q8_0, True)
    keep = {k: v for k, v in sd.items() if k.endswith(".bias")}  # the original, unpermuted biases
    deq = gguf_dequantized(os.path.join(OUT, fname), True, cfg)
    keep["model.layers.1.self_attn.k_proj.weight"] = deq[names["model.layers.1.self_attn.k_proj.weight"]]
    write_ref(os.path.join(OUT, fname[:-5] + ".ref"), keep)
    golden[fname] = {"config": hf_config_golden(transformers.AutoConfig.from_pretrained(OUT, gguf_file=fname)),
                     "base": "tiny-llama", "gguf_names": names}


def write_fuzz_seeds():
    """Small seed inputs for tests/fuzz/gguf and tests/fuzz/safetensors (a few KB each)."""
    import gguf
    import torch
    from safetensors.torch import save_file

    Q = gguf.GGMLQuantizationType
    gdir = os.path.join(ROOT, "tests", "fuzz", "gguf", "corpus")
    sdir = os.path.join(ROOT, "tests", "fuzz", "safetensors", "corpus")
    os.makedirs(gdir, exist_ok=True)
    os.makedirs(sdir, exist_ok=True)
    rng = np.random.default_rng(7)
    torch.manual_seed(7)

    def model(path, arch, types, bias=False, alignment=None):
        w = gguf.GGUFWriter(path, arch)
        if alignment:
            w.add_custom_alignment(alignment)
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(32)
        w.add_feed_forward_length(32)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_token_list(["a", "b", "c", "<s>", "</s>", "\u00e9", "", "zz"])
        w.add_token_types([1] * 8)
        w.add_bos_token_id(3)
        w.add_eos_token_id(4)
        shapes = {"token_embd.weight": (8, 32), "output_norm.weight": (32,),
                  "blk.0.attn_norm.weight": (32,), "blk.0.ffn_norm.weight": (32,),
                  "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (16, 32),
                  "blk.0.attn_v.weight": (16, 32), "blk.0.attn_output.weight": (32, 32),
                  "blk.0.ffn_gate.weight": (32, 32), "blk.0.ffn_up.weight": (32, 32),
                  "blk.0.ffn_down.weight": (32, 32)}
        if bias:
            shapes.update({"blk.0.attn_q.bias": (32,), "blk.0.attn_k.bias": (16,), "blk.0.attn_v.bias": (16,)})
        for i, (n, shp) in enumerate(shapes.items()):
            a = rng.standard_normal(shp).astype(np.float32)
            t = types[i % len(types)] if len(shp) == 2 else Q.F32
            if t == Q.F32:
                w.add_tensor(n, a)
            elif t == Q.F16:
                w.add_tensor(n, a.astype(np.float16))
            else:
                w.add_tensor(n, gguf.quants.quantize(a, t), raw_dtype=t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    model(os.path.join(gdir, "seed-llama-mixed.gguf"), "llama", [Q.Q4_0, Q.Q8_0, Q.Q4_1, Q.F16, Q.BF16, Q.F32])
    model(os.path.join(gdir, "seed-qwen2-bias.gguf"), "qwen2", [Q.F32], bias=True)
    model(os.path.join(gdir, "seed-llama-align64.gguf"), "llama", [Q.Q8_0], alignment=64)

    # metadata only: every value type, arrays of strings, numbers and arrays
    w = gguf.GGUFWriter(os.path.join(gdir, "seed-metadata.gguf"), "llama")
    V = gguf.GGUFValueType
    w.add_key_value("k.u8", 200, V.UINT8)
    w.add_key_value("k.i8", -3, V.INT8)
    w.add_key_value("k.u16", 60000, V.UINT16)
    w.add_key_value("k.i16", -300, V.INT16)
    w.add_key_value("k.u32", 4000000000, V.UINT32)
    w.add_key_value("k.i32", -70000, V.INT32)
    w.add_key_value("k.f32", 0.25, V.FLOAT32)
    w.add_key_value("k.bool", True, V.BOOL)
    w.add_key_value("k.str", "hello", V.STRING)
    w.add_key_value("k.u64", 2 ** 63 + 5, V.UINT64)
    w.add_key_value("k.i64", -(2 ** 40), V.INT64)
    w.add_key_value("k.f64", 1e300, V.FLOAT64)
    w.add_key_value("tokenizer.ggml.tokens", ["x%d" % i for i in range(40)], V.ARRAY)
    w.add_key_value("tokenizer.ggml.token_type", [1, 2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("k.nested", [[1, 2], [3]], V.ARRAY)
    w.add_key_value("k.floats", [0.5, 1.5], V.ARRAY, sub_type=V.FLOAT32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()

    save_file({"a": torch.randn(4, 8), "b": torch.randn(3).half(), "c": torch.randn(2, 2).bfloat16(),
               "s": torch.tensor(5, dtype=torch.int64), "e": torch.zeros(0, 3),
               "i": torch.arange(6, dtype=torch.int32).reshape(2, 3)},
              os.path.join(sdir, "seed-dtypes.safetensors"), metadata={"format": "pt"})
    save_file({"model.embed_tokens.weight": torch.randn(8, 16),
               "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16).bfloat16(),
               "model.norm.weight": torch.ones(16)},
              os.path.join(sdir, "seed-model.safetensors"))
    print("wrote fuzz seeds")


def write_conversions():
    """tests/models/conversions: inputs and numpy/torch-converted references for the F16/BF16
    conversions of vesta_model_file_read_rows (round to nearest even, subnormals, inf, NaN)."""
    import torch
    from safetensors.torch import save_file

    d = os.path.join(OUT, "conversions")
    os.makedirs(d, exist_ok=True)
    bits = np.arange(65536, dtype=np.uint32)
    exp = (bits >> 10) & 31
    keep = (bits % 4 == 0) | (exp == 0) | (exp == 31) | (exp == 1)
    h = bits[keep].astype(np.uint16)
    nan = (((h >> 10) & 31) == 31) & ((h & 1023) != 0)
    h = h[~nan | (h == 0x7E00)]  # one canonical NaN only
    f16 = h.view(np.float16)
    rng = np.random.default_rng(5)
    vals = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, np.inf, -np.inf, np.nan,
            2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -26, 1e-8, 1e-45, 3.4e38]
    # exact ties between adjacent halves / bfloat16s, and neighbours of ties
    for _ in range(2000):
        a = np.float16(rng.standard_normal() * 10)
        b = np.nextafter(a, np.float16(np.inf))
        mid = (np.float32(a) + np.float32(b)) / np.float32(2)
        vals += [mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))]
    f32 = np.concatenate([np.array(vals, dtype=np.float32),
                          (rng.standard_normal(4000) * np.exp(rng.uniform(-30, 30, 4000))).astype(np.float32),
                          np.frombuffer(rng.bytes(4 * 2000), dtype=np.uint32).view(np.float32)])
    f32 = f32[~np.isnan(f32) | (f32.view(np.uint32) == np.float32(np.nan).view(np.uint32))]
    with np.errstate(over="ignore"):
        as_f16 = f32.astype(np.float16)
    t = torch.from_numpy
    save_file({"f16_in": t(f16.copy()), "f16_as_f32": t(f16.astype(np.float32)),
               "f32_in": t(f32.copy()), "f32_as_f16": t(as_f16.copy()),
               "f32_as_bf16": t(f32.copy()).to(torch.bfloat16)},
              os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
                   "num_hidden_layers": 1, "num_attention_heads": 1}, f)
    print("wrote", d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(args.smollm2):
        sys.exit("missing %s: run scripts/fetch-model.sh" % args.smollm2)
    gguf_golden(args.smollm2, os.path.join(OUT, "smollm2-gguf-golden.json"))
    write_fuzz_seeds()
    write_conversions()
    golden = {}
    make_tiny_models(golden)
    import transformers
    tcfg = transformers.AutoConfig.from_pretrained(os.path.dirname(args.smollm2),
                                                   gguf_file=os.path.basename(args.smollm2))
    golden["smollm2"] = {"config": hf_config_golden(tcfg)}
    # Sampled rows of the real model, dequantized by gguf-py with the Q/K permutation undone
    # (names carry the row range: "hf_name#begin#end").
    cfg = tcfg
    deq = gguf_dequantized(args.smollm2, True, cfg)
    picks = [("token_embd.weight", "model.embed_tokens.weight", [(0, 2), (49150, 49152)]),
             ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", [(0, 3), (30, 34), (574, 576)]),
             ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", [(60, 68)]),
             ("blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight", [(100, 102)]),
             ("blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight", [(0, 576)])]
    ref = {}
    for g_, hf, ranges in picks:
        for b, e in ranges:
            ref["%s#%d#%d" % (hf, b, e)] = deq[g_][b:e]
    write_ref(os.path.join(OUT, "smollm2-rows.ref"), ref)
    with open(os.path.join(OUT, "models-golden.json"), "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
