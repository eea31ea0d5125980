#!/usr/bin/env python3
"""Golden outputs for the CPU backend, produced by Hugging Face transformers (the reference).

  make_golden.py smollm2   default model (GGUF, read by transformers' GGUF support):
                           greedy continuations + full-vocab logits -> tests/golden/smollm2_greedy.json
                           and tests/golden/smollm2_logits.f32
  make_golden.py lora      PEFT LoRA adapters for tests/models/tiny-llama (written here on first run
                           into tests/golden/models/lora-*: random weights, fixed seeds, F32 / BF16 /
                           F16 files, list and regex target_modules, rsLoRA): full-vocab logits of
                           every prompt position + greedy continuations under each adapter and the
                           base model -> tests/golden/lora/tiny-llama-lora.json + .f32
  make_golden.py tiny      the tiny random models of tests/models/ (HF directories or GGUF files)
                           and of tests/golden/models/ (written here on first run: linear rope,
                           sliding window):
                           full-vocab logits of every prompt position + greedy continuations
                           -> tests/golden/tiny/<model>.json + <model>.f32

Needs torch, transformers, gguf, peft (this machine's python3; CI does not run this script, it uses the
committed outputs). Everything runs in float32 on the CPU.

Greedy decoding ignores EOS (generation_config.eos_token_id = None): the test drives Vesta with
ignore_eos, so both sides always produce exactly the requested number of tokens. Whether EOS was
generated is recorded per prompt.

Logits files are raw little-endian float32 arrays; the JSON gives each vector's element offset.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "golden")
SMOL_DIR = os.path.join(ROOT, "models")
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NEW_TOKENS = 64
# Decode steps whose full-vocab logits are stored (0 = the prompt's last position).
SMOL_LOGIT_STEPS = [0, 63]

LONG_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, "
    "a goldsmith from Mainz, combined movable metal type, oil-based ink and a wooden screw press "
    "into a system that could reproduce pages far faster than any scribe. Within fifty years, "
    "presses had spread to more than two hundred cities across Europe, and millions of books had "
    "been printed. Scholars could now compare identical copies of a text, errors could be corrected "
    "in later editions, and ideas travelled with unprecedented speed. The Reformation, the "
    "scientific revolution and the rise of newspapers all depended on this new technology."
)

SMOL_PROMPTS = [
    ("chat_capital", [{"role": "user", "content": "What is the capital of France?"}]),
    ("chat_haiku", [{"role": "user", "content": "Write a haiku about the sea."}]),
    ("chat_multiturn", [
        {"role": "system", "content": "You are a concise assistant who answers in one sentence."},
        {"role": "user", "content": "Name a prime number bigger than 10."},
        {"role": "assistant", "content": "11 is a prime number bigger than 10."},
        {"role": "user", "content": "And one bigger than 100?"},
    ]),
    ("chat_long_summary", [{"role": "user", "content": "Summarize this text in two sentences:\n\n" + LONG_TEXT}]),
    ("plain_fox", "The quick brown fox"),
    ("plain_code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("plain_story", "Once upon a time, in a small village by the mountains, there lived"),
    ("plain_long", LONG_TEXT + " In the centuries that followed,"),
    ("plain_hello", "Hello"),
    ("plain_list", "Here is a list of fruits: apple, banana,"),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path, gguf_file=None, tokenizer=False):
    """Fails when transformers would fill any weight randomly (a file that is not a complete model
    of its architecture, e.g. tests/models/conversions or a llama GGUF with q/k/v but no o bias)."""
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(path, **kw) if tokenizer else None
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True, **kw)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise ValueError(f"not a complete model for transformers: {bad}")
    model.eval()
    return tok, model


def greedy(model, ids, n_new):
    """HF generate, greedy, EOS ignored. Returns (new ids, per-step raw logits [n_new, V])."""
    gc = model.generation_config
    gc.eos_token_id = None
    gc.pad_token_id = 0
    gc.do_sample = False
    gc.temperature = None
    gc.top_p = None
    gc.top_k = None
    inp = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(inp, attention_mask=torch.ones_like(inp), generation_config=gc,
                             max_new_tokens=n_new, min_new_tokens=n_new,
                             return_dict_in_generate=True, output_logits=True)
    new = out.sequences[0, len(ids):].tolist()
    logits = torch.stack([l[0] for l in out.logits]).float().numpy()
    assert len(new) == n_new and logits.shape[0] == n_new
    assert all(int(np.argmax(logits[i])) == new[i] for i in range(n_new)), "generate is not argmax"
    return new, logits


def weights_fnv1a64(path, gguf_file):
    """FNV-1a 64 over the weight files' bytes (GGUF file, or the directory's *.safetensors in name
    order): the test checks it so that golden logits of rewritten test models fail as stale, not as
    wrong."""
    files = [os.path.join(path, gguf_file)] if gguf_file else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
    h = 0xCBF29CE484222325
    for f in files:
        data = np.frombuffer(open(f, "rb").read(), dtype=np.uint8)
        for b in data.tolist():
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def margins(logits):
    """Top-1 minus top-2 logit per step: tells a reader of a test failure whether it was a near tie."""
    part = np.sort(logits, axis=1)[:, -2:]
    return [float(x) for x in (part[:, 1] - part[:, 0])]


def make_smollm2():
    path = os.path.join(SMOL_DIR, SMOL_FILE)
    if not os.path.exists(path):
        sys.exit(f"{path} missing: run scripts/fetch-model.sh")
    tok, model = load(SMOL_DIR, SMOL_FILE, tokenizer=True)
    eos = tok.eos_token_id
    blob = []
    offset = 0
    prompts = []
    for name, p in SMOL_PROMPTS:
        if isinstance(p, list):
            text = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        else:
            text = p
        ids = tok(text, add_special_tokens=True).input_ids
        new, logits = greedy(model, ids, NEW_TOKENS)
        entry = {
            "name": name,
            "chat": isinstance(p, list),
            "text": text,
            "prompt_ids": ids,
            "greedy_ids": new,
            "eos_generated": eos in new,
            "margins": margins(logits),
            "logits": [],
        }
        for step in SMOL_LOGIT_STEPS:
            blob.append(logits[step].astype("<f4"))
            entry["logits"].append({"step": step, "offset": offset})
            offset += logits.shape[1]
        prompts.append(entry)
        print(f"{name}: {len(ids)} prompt tokens, eos in output: {entry['eos_generated']}, "
              f"min margin {min(entry['margins']):.4f}", flush=True)
    os.makedirs(GOLDEN, exist_ok=True)
    np.concatenate(blob).tofile(os.path.join(GOLDEN, "smollm2_logits.f32"))
    doc = {
        "generator": "scripts/reference/make_golden.py smollm2",
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, CPU",
        "model": SMOL_FILE,
        "model_sha256": sha256(path),
        "vocab_size": int(model.config.vocab_size),
        "eos_token_id": eos,
        "new_tokens": NEW_TOKENS,
        "ignore_eos": True,
        "logits_file": "smollm2_logits.f32",
        "prompts": prompts,
    }
    with open(os.path.join(GOLDEN, "smollm2_greedy.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# Tiny models for features the shared test models (tests/models/, scripts/make_test_models.py) do
# not exercise; written once (random weights, fixed seed) and committed next to their golden files.
EXTRA_DIR = os.path.join(GOLDEN, "models")


def extra_models():
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, initializer_range=0.1)
    return {
        # linear rope scaling, no GQA, tied embeddings
        "llama-linear-rope": lambda: LlamaForCausalLM(LlamaConfig(
            num_key_value_heads=4, tie_word_embeddings=True,
            rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}, **common)),
        # sliding-window attention (window 12 < the longer prompts), 4:1 GQA
        "mistral-sliding-window": lambda: MistralForCausalLM(MistralConfig(
            num_key_value_heads=1, head_dim=16, sliding_window=12, **common)),
    }


def make_extra_models():
    for name, build in extra_models().items():
        d = os.path.join(EXTRA_DIR, name)
        if os.path.exists(os.path.join(d, "config.json")):
            continue
        torch.manual_seed(sum(map(ord, name)))
        model = build().to(torch.float32)
        model.save_pretrained(d, safe_serialization=True)
        print(f"{name}: written to {os.path.relpath(d, ROOT)}", flush=True)


# Files in tests/models/ that transformers cannot be the reference for (tests/models/README.md):
# conversions/ is not a model; a llama GGUF with q/k/v biases has no o_proj bias, which an HF llama
# with attention_bias would need, so transformers does not compute what the file describes.
NOT_HF_REFERENCE = {"conversions", "tiny-llama-bias-q8_0"}


def tiny_models():
    out = []
    for d in (os.path.join(ROOT, "tests", "models"), EXTRA_DIR):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if name in NOT_HF_REFERENCE or name[:-5] in NOT_HF_REFERENCE:
                continue
            if os.path.isdir(p) and os.path.exists(os.path.join(p, "config.json")):
                out.append((name, p, None))
            elif name.endswith(".gguf"):
                out.append((name[:-5], d, name))
    return out


def make_tiny():
    make_extra_models()
    rng = np.random.default_rng(1234)
    tdir = os.path.join(GOLDEN, "tiny")
    os.makedirs(tdir, exist_ok=True)
    for name, path, gguf_file in tiny_models():
        try:
            _, model = load(path, gguf_file)
        except Exception as e:  # a format transformers cannot read (e.g. a GGUF arch it lacks)
            print(f"{name}: skipped, transformers cannot load it: {e}", flush=True)
            continue
        vocab = int(model.config.vocab_size)
        prompts = []
        blob = []
        offset = 0
        for i, n in enumerate([1, 5, 23, 70, 140]):  # 140: > CPU_ATTN_KEYS keys in a prefill tile
            ids = [int(x) for x in rng.integers(0, vocab, size=n)]
            with torch.no_grad():
                full = model(torch.tensor([ids])).logits[0].float().numpy()
            new, logits = greedy(model, ids, 16)
            blob.append(full.astype("<f4").ravel())
            prompts.append({"prompt_ids": ids, "greedy_ids": new, "margins": margins(logits),
                            "logits_offset": offset, "logits_rows": len(ids)})
            offset += full.size
        np.concatenate(blob).tofile(os.path.join(tdir, name + ".f32"))
        cfg = model.config
        doc = {
            "generator": "scripts/reference/make_golden.py tiny",
            "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, CPU",
            "model": os.path.relpath(os.path.join(path, gguf_file) if gguf_file else path, ROOT),
            "model_type": cfg.model_type,
            "weights_fnv1a64": weights_fnv1a64(path, gguf_file),
            "vocab_size": vocab,
            "logits_file": name + ".f32",
            "prompts": prompts,
        }
        with open(os.path.join(tdir, name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"{name}: {cfg.model_type}, vocab {vocab}, ok", flush=True)


# Adapters for tests/models/tiny-llama: (directory, LoraConfig arguments, dtype of the saved file).
LORA_BASE = os.path.join("tests", "models", "tiny-llama")
LORA_ADAPTERS = [
    ("lora-all", dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"]), torch.float32),
    ("lora-qv-rslora", dict(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj"]), torch.bfloat16),
    ("lora-mlp-regex", dict(r=16, lora_alpha=32, target_modules=r".*\.mlp\.(gate|up|down)_proj"), torch.float16),
]


def make_lora_adapters():
    from peft import LoraConfig, get_peft_model
    for name, kw, dtype in LORA_ADAPTERS:
        d = os.path.join(EXTRA_DIR, name)
        if os.path.exists(os.path.join(d, "adapter_config.json")):
            continue
        torch.manual_seed(sum(map(ord, name)))
        _, base = load(os.path.join(ROOT, LORA_BASE))
        # init_lora_weights=False: A and B both random (PEFT's default B = 0 would be a no-op adapter)
        pm = get_peft_model(base, LoraConfig(init_lora_weights=False, lora_dropout=0.0, bias="none",
                                             task_type="CAUSAL_LM", **kw))
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.mul_(0.25)  # an adapter that moves the logits, not one that swamps the base model
        pm.to(dtype).save_pretrained(d, safe_serialization=True)
        os.remove(os.path.join(d, "README.md"))  # PEFT's model-card template
        print(f"{name}: written to {os.path.relpath(d, ROOT)}", flush=True)


SMOL_LORA = "lora-smollm2-qv"  # q_proj and v_proj of the default model, r 4, BF16
SMOL_LORA_PROMPTS = ["chat_capital", "chat_haiku", "plain_fox"]


def make_smollm2_lora():
    """An adapter for the default model (GGUF) and its greedy continuations under PEFT, for the
    `vesta generate` and `vesta serve` checks (tests/worker/cli/check_lora.py,
    tests/router/test_router_engine.py)."""
    from peft import LoraConfig, PeftModel, get_peft_model
    d = os.path.join(EXTRA_DIR, SMOL_LORA)
    if not os.path.exists(os.path.join(d, "adapter_config.json")):
        torch.manual_seed(sum(map(ord, SMOL_LORA)))
        _, base = load(SMOL_DIR, SMOL_FILE)
        pm = get_peft_model(base, LoraConfig(init_lora_weights=False, r=4, lora_alpha=8, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.mul_(0.5)
        pm.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
        os.remove(os.path.join(d, "README.md"))
        print(f"{SMOL_LORA}: written to {os.path.relpath(d, ROOT)}", flush=True)
    tok, base = load(SMOL_DIR, SMOL_FILE, tokenizer=True)
    _, b2 = load(SMOL_DIR, SMOL_FILE)
    model = PeftModel.from_pretrained(b2, d).eval()
    prompts = []
    for name, p in SMOL_PROMPTS:
        if name not in SMOL_LORA_PROMPTS:
            continue
        text = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
        ids = tok(text, add_special_tokens=True).input_ids
        new, logits = greedy(model, ids, 32)
        base_new, _ = greedy(base, ids, 32)
        assert new != base_new, f"{name}: the adapter does not change the greedy tokens"
        prompts.append({"name": name, "text": text, "prompt_ids": ids, "greedy_ids": new,
                        "base_greedy_ids": base_new, "margins": margins(logits)})
        print(f"{SMOL_LORA} {name}: min margin {min(prompts[-1]['margins']):.4f}", flush=True)
    import peft
    doc = {
        "generator": "scripts/reference/make_golden.py lora",
        "reference": f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}, "
                     "float32, CPU",
        "model": SMOL_FILE,
        "model_sha256": sha256(os.path.join(SMOL_DIR, SMOL_FILE)),
        "adapter": os.path.relpath(d, ROOT),
        "ignore_eos": True,
        "prompts": prompts,
    }
    with open(os.path.join(GOLDEN, "lora", "smollm2-lora.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def make_lora():
    from peft import PeftModel
    make_lora_adapters()
    rng = np.random.default_rng(4321)
    base_path = os.path.join(ROOT, LORA_BASE)
    _, base = load(base_path)
    vocab = int(base.config.vocab_size)
    prompt_ids = [[int(x) for x in rng.integers(0, vocab, size=n)] for n in (1, 5, 23, 70)]
    runs = [(None, base)]
    for name, _, _ in LORA_ADAPTERS:
        _, b = load(base_path)
        runs.append((name, PeftModel.from_pretrained(b, os.path.join(EXTRA_DIR, name)).eval()))
    blob, offset, entries = [], 0, []
    base_full = []
    for name, model in runs:
        prompts = []
        for i, ids in enumerate(prompt_ids):
            with torch.no_grad():
                full = model(torch.tensor([ids])).logits[0].float().numpy()
            if name is None:
                base_full.append(full)
            else:  # the adapter must matter, or the test could not fail
                moved = np.linalg.norm(full - base_full[i]) / np.linalg.norm(base_full[i])
                assert moved > 0.05, f"{name}: adapter moves the logits by only {moved:.3g}"
            new, logits = greedy(model, ids, 16)
            blob.append(full.astype("<f4").ravel())
            prompts.append({"prompt_ids": ids, "greedy_ids": new, "margins": margins(logits),
                            "logits_offset": offset, "logits_rows": len(ids)})
            offset += full.size
        entries.append({"adapter": name, "path": os.path.relpath(os.path.join(EXTRA_DIR, name), ROOT) if name else None,
                        "prompts": prompts})
        print(f"{name or 'base'}: ok", flush=True)
    ldir = os.path.join(GOLDEN, "lora")
    os.makedirs(ldir, exist_ok=True)
    np.concatenate(blob).tofile(os.path.join(ldir, "tiny-llama-lora.f32"))
    import peft
    doc = {
        "generator": "scripts/reference/make_golden.py lora",
        "reference": f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}, "
                     "float32, CPU",
        "model": LORA_BASE,
        "weights_fnv1a64": weights_fnv1a64(base_path, None),
        "vocab_size": vocab,
        "logits_file": "tiny-llama-lora.f32",
        "runs": entries,
    }
    with open(os.path.join(ldir, "tiny-llama-lora.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["smollm2", "tiny", "lora", "all"])
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    if a.what in ("smollm2", "all"):
        make_smollm2()
    if a.what in ("tiny", "all"):
        make_tiny()
    if a.what in ("lora", "all"):
        make_lora()
        make_smollm2_lora()


if __name__ == "__main__":
    main()
