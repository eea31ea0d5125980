#!/usr/bin/env bash
# Installs Vesta's system dependencies from Debian packages and the Python test tooling into
# .venv. Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev git unzip python3 python3-venv python3-pip
      libjansson-dev libpcre2-dev libutf8proc-dev libxxhash-dev libopenblas-dev
      libzmq3-dev libmsgpack-dev libyaml-dev libh2o-evloop-dev libcurl4-openssl-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# Test tooling and reference implementations (never needed to build or serve).
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall whenever scripts/requirements-test.txt changes (its hash is kept in the venv).
req_sha=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$req_sha" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r scripts/requirements-test.txt
  echo "$req_sha" > .venv/.requirements.sha256
fi
