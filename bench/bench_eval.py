"""Eval throughput: sds-mpi against transformers on the same machine, side by side in one run.

  .venv/bin/python bench/bench_eval.py --model opt125m|smollm2 [--repeats 3] [--windows 2]
                                       [--seqlen 2048]

opt125m: an OPT-125M-shaped checkpoint (random weights, Hugging Face layout) made once under
build/bench/. smollm2: the real SmolLM2-135M GGUF (jobs/fetch_smollm2.sh); transformers runs
LlamaForCausalLM holding the same dequantised weights (tests/smollm2_ref.py).
Alternates runs of
  - sds-mpi eval at 1 rank (BLAS on both cores) and at 2 ranks (one core each),
  - transformers, fp32, torch on both cores, the same windows, in the default environment
    (Debian's OpenBLAS falls back to its Prescott kernels on this CPU), and again with
    OPENBLAS_CORETYPE=SkylakeX, the kernels sds-mpi selects, so neither side has better BLAS,
and reports the median tokens/s of the window loop (model loading excluded on both sides)
and the median wall time of whole runs. The medians and ratios are what the README quotes.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("SDS_SHARED", os.path.join(ROOT, "..", "shared"))
os.environ.setdefault("SDS_BUILD", os.path.join(ROOT, "build"))
import hf_fixtures as fx  # noqa: E402

BIN = os.path.join(ROOT, "build", "sds-mpi")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]


def make_opt125m(path):
    import torch
    from transformers import OPTConfig, OPTForCausalLM
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(0)
    # OPT-125M's shape: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 50272, 2048 positions
    cfg = OPTConfig(vocab_size=50272, hidden_size=768, num_attention_heads=12, ffn_dim=3072,
                    num_hidden_layers=12, max_position_embeddings=2048)
    model = OPTForCausalLM(cfg).eval()
    model.save_pretrained(path + ".tmp", safe_serialization=True)
    fx.opt_tokenizer().save_pretrained(path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def run_sds(model, text, np_, seqlen, windows):
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)  # sds-mpi divides the cores among its ranks itself
    cmd = MPIRUN + ["-np", str(np_), BIN, "eval", "--model", model, "--text", text,
                    "--seqlen", str(seqlen), "--max-windows", str(windows)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.time() - t0
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("evaluated ")][0]
    tps = float(line.split("(")[1].split()[0])
    ppl = float(p.stdout.strip().splitlines()[-1].split()[1])
    return tps, wall, ppl


HF_SCRIPT = r"""
import sys, time, torch
sys.path.insert(0, sys.argv[1])
import hf_fixtures as fx
t_start = time.time()
torch.set_num_threads(2)
text = open(sys.argv[3], encoding="utf-8").read()
if sys.argv[2].endswith(".gguf"):
    import smollm2_ref
    model, ids = smollm2_ref.load_hf(sys.argv[2]), smollm2_ref.encode(text, sys.argv[2])
else:
    model, ids = fx.load_opt_fp32(sys.argv[2]), fx.opt_encode(text)
seqlen, windows = int(sys.argv[4]), int(sys.argv[5])
t0 = time.time()
ppl = fx.hf_perplexity(model, ids, seqlen, windows)
dt = time.time() - t0
print(windows * seqlen / dt, time.time() - t_start, ppl)
"""


def run_hf(model, text, seqlen, windows, coretype=None):
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", HF_SCRIPT, os.path.join(ROOT, "tests"), model, text,
                        str(seqlen), str(windows)], capture_output=True, text=True, check=True,
                       env=env)
    wall = time.time() - t0
    tps, _, ppl = (float(x) for x in p.stdout.split())
    return tps, wall, ppl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["opt125m", "smollm2"], default="opt125m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--text", default=fx.WIKI)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.model == "opt125m":
        model = make_opt125m(os.path.join(ROOT, "build", "bench", "opt-125m-shaped"))
    else:
        model = subprocess.run([os.path.join(ROOT, "jobs", "fetch_smollm2.sh")], check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
        os.environ["SDS_SMOLLM2_GGUF"] = model
    runs = {"sds-mpi np=1": [], "sds-mpi np=2": [], "transformers": [],
            "transformers SkylakeX": []}
    ppls = {}
    for r in range(a.repeats):
        for name in runs:
            if name.startswith("transformers"):
                tps, wall, ppl = run_hf(model, a.text, a.seqlen, a.windows,
                                        "SkylakeX" if "SkylakeX" in name else None)
            else:
                tps, wall, ppl = run_sds(model, a.text, int(name[-1]), a.seqlen, a.windows)
            runs[name].append((tps, wall))
            ppls[name] = ppl
            print("repeat %d %-14s %8.1f tok/s  wall %6.1fs  ppl %.6g" % (r, name, tps, wall, ppl),
                  flush=True)
    med = {k: (statistics.median(t for t, _ in v), statistics.median(w for _, w in v))
           for k, v in runs.items()}
    hf_tps, hf_wall = med["transformers"]
    print("\n%s, %d windows x %d tokens, %d repeats (medians)" %
          (a.model, a.windows, a.seqlen, a.repeats))
    print("| run | tokens/s (window loop) | ratio vs transformers | wall s (whole run) |")
    print("|---|---|---|---|")
    for k, (tps, wall) in med.items():
        print("| %s | %.0f | %.2fx | %.1f |" % (k, tps, tps / hf_tps, wall))
    best_hf = max(med["transformers"][0], med["transformers SkylakeX"][0])
    print("sds-mpi np=2 against the faster transformers run: %.2fx" %
          (med["sds-mpi np=2"][0] / best_hf))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"medians": med, "runs": runs, "perplexity": ppls}, f, indent=2)


if __name__ == "__main__":
    main()
