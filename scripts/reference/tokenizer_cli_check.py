#!/usr/bin/env python3
"""Checks the JSON-lines contract of `vesta tokenize` / `vesta detokenize` (through tok_tool,
which calls the same entry points): one output line per input line, {"error": ...} for a
malformed line while the following lines are still processed, and ids/text equal to Hugging
Face `tokenizers` for the valid lines.

  tokenizer_cli_check.py --tool TOK_TOOL --ref DIR
"""
import argparse
import json
import subprocess
import sys

from tokenizers import Tokenizer


def run(tool, args, raw_lines):
    p = subprocess.run([tool] + args, input=("\n".join(raw_lines) + "\n").encode("utf-8", "surrogatepass"),
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"{args[0]} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return [json.loads(l) for l in p.stdout.decode().split("\n") if l]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--ref", required=True)
    a = ap.parse_args()
    hf = Tokenizer.from_file(a.ref + "/tokenizer.json")
    fails = []
    tok_in = [
        ('{"text": "Hello world"}', "ok", "Hello world"),
        ("not json", "error", None),
        ('{"text": 5}', "error", None),
        ('{"ids": [1, 2]}', "error", None),
        ('["text"]', "error", None),
        ('{"text": "\\ud800 lone surrogate"}', "error", None),
        ("", "error", None),
        ('{"text": "after the errors: <|im_end|> \\u00e9"}', "ok", "after the errors: <|im_end|> \u00e9"),
        ('{"text": ""}', "ok", ""),
    ]
    out = run(a.tool, ["tokenize", "--tokenizer", a.ref, "--add-special-tokens"], [l for l, _, _ in tok_in])
    if len(out) != len(tok_in):
        sys.exit(f"tokenize: {len(out)} output lines for {len(tok_in)} input lines")
    for (line, kind, text), o in zip(tok_in, out):
        if kind == "error":
            if set(o) != {"error"} or not o["error"]:
                fails.append(f"tokenize {line!r}: expected an error, got {o}")
        elif o != {"ids": hf.encode(text, add_special_tokens=True).ids}:
            fails.append(f"tokenize {line!r}: {o} != {hf.encode(text, add_special_tokens=True).ids}")
    ids = hf.encode("Hello <|im_end|> world", add_special_tokens=False).ids
    det_in = [
        (json.dumps({"ids": ids}), "ok", ids),
        ('{"ids": [-1]}', "error", None),
        ('{"ids": [99999999]}', "error", None),
        ('{"ids": ["a"]}', "error", None),
        ('{"text": "x"}', "error", None),
        ("{", "error", None),
        ('{"ids": []}', "ok", []),
        (json.dumps({"ids": ids[::-1]}), "ok", ids[::-1]),
    ]
    for skip in (False, True):
        args = ["detokenize", "--tokenizer", a.ref] + (["--skip-special-tokens"] if skip else [])
        out = run(a.tool, args, [l for l, _, _ in det_in])
        if len(out) != len(det_in):
            sys.exit(f"detokenize: {len(out)} output lines for {len(det_in)} input lines")
        for (line, kind, i), o in zip(det_in, out):
            if kind == "error":
                if set(o) != {"error"}:
                    fails.append(f"detokenize {line!r}: expected an error, got {o}")
            elif o != {"text": hf.decode(i, skip_special_tokens=skip)}:
                fails.append(f"detokenize(skip={skip}) {line!r}: {o}")
    for args in (["tokenize"], ["tokenize", "--tokenizer"], ["detokenize", "--bogus"]):
        p = subprocess.run([a.tool] + args, capture_output=True, input=b"", timeout=60)
        if p.returncode != 2:
            fails.append(f"{args}: exit status {p.returncode}, expected 2 (usage)")
    p = subprocess.run([a.tool, "tokenize", "--tokenizer", "/nonexistent/tokenizer.json"], capture_output=True,
                       input=b"", timeout=60)
    if p.returncode != 1 or b"/nonexistent" not in p.stderr:
        fails.append(f"missing tokenizer: exit {p.returncode}, stderr {p.stderr!r}")
    if fails:
        print("\n".join(fails))
        sys.exit(1)
    print("cli ok")


if __name__ == "__main__":
    main()
