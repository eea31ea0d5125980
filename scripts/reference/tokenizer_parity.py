#!/usr/bin/env python3
"""Parity of Vesta's tokenizer with Hugging Face `tokenizers` (the reference), run by ctest.

  tokenizer_parity.py --tool TOK_TOOL --ref DIR [--load PATH] --corpus FILE.jsonl

DIR holds the reference tokenizer.json. Vesta loads --load (default DIR: the same files; a .gguf
path to check Vesta's GGUF reader against the reference converted from it). Checked, per corpus
line: encode with add_special_tokens False and True; encode with special-token parsing off
(HF encode_special_tokens=True); decode with skip_special_tokens False and True; decode of random
id sequences; the streaming detokenizer (pieces concatenate to HF decode, every piece valid UTF-8,
stop strings cut exactly where str.find puts them, prefix context); encode_spans consistency.
Exit status 1 on any mismatch, listing the first ones.
"""
import argparse
import json
import random
import subprocess
import sys

from tokenizers import Tokenizer


def run_tool(tool, args, lines):
    inp = "".join(json.dumps(l, ensure_ascii=True) + "\n" for l in lines)
    p = subprocess.run([tool] + args, input=inp.encode(), capture_output=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"tool {' '.join(args)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    out = [json.loads(l) for l in p.stdout.decode().split("\n") if l]  # not splitlines: U+2028
    if len(out) != len(lines):
        sys.exit(f"tool {' '.join(args)}: {len(out)} output lines for {len(lines)} inputs")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--load")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--random", type=int, default=300)
    a = ap.parse_args()
    load = a.load or a.ref
    hf = Tokenizer.from_file(a.ref + "/tokenizer.json")
    texts = [json.loads(l)["text"] for l in open(a.corpus, encoding="utf-8")]
    fails = []

    def check(what, got, want):
        if got != want:
            fails.append(f"{what}:\n    vesta: {got!r}\n    hf:    {want!r}")

    # encode
    for add in (False, True):
        args = ["tokenize", "--tokenizer", load] + (["--add-special-tokens"] if add else [])
        out = run_tool(a.tool, args, [{"text": t} for t in texts])
        for t, o in zip(texts, out):
            check(f"encode(add_special_tokens={add}) {t!r}", o.get("ids", o), hf.encode(t, add_special_tokens=add).ids)
    out = run_tool(a.tool, ["tokenize", "--tokenizer", load, "--no-parse-special"], [{"text": t} for t in texts])
    hf.encode_special_tokens = True
    for t, o in zip(texts, out):
        check(f"encode(parse_special=False) {t!r}", o.get("ids", o), hf.encode(t, add_special_tokens=False).ids)
    hf.encode_special_tokens = False

    # decode: corpus ids and random id sequences
    rng = random.Random(1234)
    ids_list = [hf.encode(t, add_special_tokens=True).ids for t in texts]
    vocab_ids = sorted(hf.get_vocab(with_added_tokens=True).values())
    rand = [[rng.choice(vocab_ids) for _ in range(rng.randint(1, 12))] for _ in range(a.random)]
    # byte-fallback / byte-level pieces make partial characters likely: add runs of byte tokens
    byte_ids = [hf.token_to_id(f"<0x{b:02X}>") for b in range(256)]
    if all(i is not None for i in byte_ids):
        rand += [[byte_ids[b] for b in rng.choice(["é".encode(), "日本".encode(), "😀".encode(), b"\xe6\x97", b"\xff\x41", b"\xf0\x9f\x98"])]
                 + [rng.choice(vocab_ids)] for _ in range(50)]
    all_ids = ids_list + rand
    for skip in (False, True):
        args = ["detokenize", "--tokenizer", load] + (["--skip-special-tokens"] if skip else [])
        out = run_tool(a.tool, args, [{"ids": i} for i in all_ids])
        for i, o in zip(all_ids, out):
            check(f"decode(skip_special_tokens={skip}) {i}", o.get("text", o), hf.decode(i, skip_special_tokens=skip))

    # streaming detokenizer
    for skip in (False, True):
        args = ["stream", "--tokenizer", load] + (["--skip-special-tokens"] if skip else [])
        out = run_tool(a.tool, args, [{"ids": i} for i in all_ids])
        for i, o in zip(all_ids, out):
            check(f"stream bad_utf8 {i}", o["bad_utf8"], False)
            check(f"stream(skip={skip}) concat {i}", "".join(o["pieces"]) + o.get("finish", ""),
                  hf.decode(i, skip_special_tokens=skip))
    # prefix context: pieces add exactly what decode(all) has beyond decode(prefix)
    cases = [(i, len(i) // 2) for i in ids_list if len(i) >= 4]
    out = run_tool(a.tool, ["stream", "--tokenizer", load], [{"ids": i, "prefix": n} for i, n in cases])
    for (i, n), o in zip(cases, out):
        full, pre = hf.decode(i, skip_special_tokens=False), hf.decode(i[:n], skip_special_tokens=False)
        if full.startswith(pre):
            check(f"stream prefix={n} {i}", "".join(o["pieces"]) + o.get("finish", ""), full[len(pre):])
    # stop strings (a substring from the middle of each decoded line)
    cases = []
    for inc in (False, True):
        for i in ids_list:
            text = hf.decode(i, skip_special_tokens=False)
            if len(text) >= 6:
                mid = len(text) // 2
                if "\0" not in text[mid:mid + 3]:  # stop strings are C strings
                    cases.append((i, text, text[mid:mid + 3], inc))
    out = run_tool(a.tool, ["stream", "--tokenizer", load],
                   [{"ids": i, "stop": [s], "include_stop": inc} for i, _, s, inc in cases])
    for (i, text, stop, inc), o in zip(cases, out):
        k = text.find(stop)
        want = text[:k + (len(stop) if inc else 0)]
        check(f"stop {stop!r} include={inc} {text!r}", ("".join(o["pieces"]), o["stopped"]), (want, True))

    # encode_spans: everything plain == parse_special off; nothing plain == default encode
    enc = [t.encode("utf-8") for t in texts]
    out_all = run_tool(a.tool, ["spans", "--tokenizer", load], [{"text": t, "plain": [[0, len(e)]]} for t, e in zip(texts, enc)])
    out_none = run_tool(a.tool, ["spans", "--tokenizer", load], [{"text": t, "plain": []} for t in texts])
    hf.encode_special_tokens = True
    for t, o in zip(texts, out_all):
        check(f"spans(all plain) {t!r}", o.get("ids", o), hf.encode(t, add_special_tokens=False).ids)
    hf.encode_special_tokens = False
    for t, o in zip(texts, out_none):
        check(f"spans(none plain) {t!r}", o.get("ids", o), hf.encode(t, add_special_tokens=False).ids)

    if fails:
        print(f"{len(fails)} mismatches ({load}); first ones:")
        for f in fails[:15]:
            print(" ", f)
        sys.exit(1)
    print(f"parity ok: {load} ({len(texts)} corpus lines, {len(rand)} random id sequences)")


if __name__ == "__main__":
    main()
