#!/usr/bin/env python3
"""Writes the seed corpora of the tokenizer fuzzers (tests/fuzz/tokenizer_*/corpus/):
small valid tokenizers and hostile variants (duplicate tokens, mismatched array lengths, merges
naming unknown tokens, bad byte pieces, wrong types), plus encode inputs. Needs `gguf`."""
import json
import os

import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "tests/fuzz")


def bytelevel_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def write_gguf(name, tokens, types, merges, pre="smollm", extra=None, model="gpt2", scores=None):
    path = os.path.join(FUZZ, "tokenizer_gguf/corpus", name + ".gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    if tokens is not None:
        w.add_token_list(tokens)
    if types is not None:
        w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    if scores is not None:
        w.add_token_scores(scores)
    w.add_bos_token_id(len(tokens) - 2 if tokens else 0)
    w.add_eos_token_id(len(tokens) - 1 if tokens else 0)
    w.add_add_bos_token(True)
    w.add_chat_template("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
    for k, v in (extra or {}).items():
        w.add_string(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    chars = bytelevel_chars()
    merged = ["Ġt", "he", "Ġthe", "ll", "llo"]
    merges = ["Ġ t", "h e", "Ġt he", "l l", "ll o"]
    tokens = chars + merged + ["<|im_start|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]
    for qwen in ("smollm", "qwen2", "llama-bpe", "default"):
        write_gguf("valid_" + qwen, tokens, types, merges, pre=qwen)
    write_gguf("hostile_duplicate_token", tokens + ["he"], types + [1], merges)
    write_gguf("hostile_types_length", tokens, types[:-3], merges)
    write_gguf("hostile_merge_unknown", tokens, types, merges + ["zz qq"])
    write_gguf("hostile_merge_no_space", tokens, types, merges + ["hello"])
    write_gguf("hostile_unknown_pre", tokens, types, merges, pre="not-a-pre")
    write_gguf("hostile_model_bert", tokens, types, merges, model="bert")
    spm = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "t", "h", "e", "▁t", "he", "▁the"]
    spm_types = [2, 3, 3] + [6] * 256 + [1] * 7
    spm_scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0]
    write_gguf("valid_spm", spm, spm_types, None, pre=None, model="llama", scores=spm_scores)
    write_gguf("hostile_spm_no_scores", spm, spm_types, None, pre=None, model="llama")
    write_gguf("hostile_spm_scores_length", spm, spm_types, None, pre=None, model="llama", scores=spm_scores[:-2])
    write_gguf("hostile_bad_byte_piece", tokens[:-1] + ["<0xZZ>"], types[:-1] + [6], merges)
    write_gguf("hostile_no_merges", tokens, types, None)

    jdir = os.path.join(FUZZ, "tokenizer_json/corpus")
    vocab = {c: i for i, c in enumerate(chars)}
    for t in merged:
        vocab[t] = len(vocab)
    base = {"model": {"type": "BPE", "vocab": vocab, "merges": merges},
            "added_tokens": [{"id": len(vocab), "content": "<s>", "special": True, "normalized": False},
                             {"id": len(vocab) + 1, "content": "</s>", "special": True, "lstrip": True, "rstrip": True}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True},
            "decoder": {"type": "ByteLevel"},
            "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
                               "special_tokens": {"<s>": {"id": "<s>", "ids": [len(vocab)], "tokens": ["<s>"]}}}}
    cfg = {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": [{"name": "default", "template": "x"}]}
    with open(os.path.join(jdir, "bytelevel.json"), "wb") as f:
        f.write(json.dumps(base).encode() + b"\0" + json.dumps(cfg).encode())
    spm = {"model": {"type": "BPE", "vocab": {"<unk>": 0, "▁": 1, "a": 2, "b": 3, "▁a": 4, "<0x41>": 5},
                     "merges": [["▁", "a"]], "byte_fallback": True, "fuse_unk": True, "unk_token": "<unk>"},
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Prepend", "prepend": "▁"},
                                                               {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Digits", "individual_digits": False},
               {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": True},
               {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}]},
           "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                        {"type": "ByteFallback"}, {"type": "Fuse"},
                                                        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
                                                        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}]}}
    with open(os.path.join(jdir, "spm.json"), "w") as f:
        json.dump(spm, f, ensure_ascii=False)
    hostile = dict(spm)
    hostile["model"] = dict(spm["model"], merges=[["▁", "zz"]])
    with open(os.path.join(jdir, "hostile_merge.json"), "w") as f:
        json.dump(hostile, f, ensure_ascii=False)
    with open(os.path.join(jdir, "truncated.json"), "w") as f:
        f.write(json.dumps(spm, ensure_ascii=False)[:200])

    edir = os.path.join(FUZZ, "tokenizer_encode/corpus")
    texts = ["Hello world, the THE don't 12345", "  spaced   out \t\r\n end ", "日本語 😀👨‍👩‍👧 é e\u0301",
             "<s>x</s> [W] hello [W]x", "\xff\xfe invalid", "the"]
    for i, t in enumerate(texts):
        for flags in (0x00, 0x0F, 0xF1, 0x36):
            data = bytes([flags]) + (t.encode("utf-8", "surrogateescape") if "\xff" not in t else b"\xff\xfe\x80abc")
            with open(os.path.join(edir, f"seed_{i}_{flags:02x}"), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
