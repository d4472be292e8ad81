"""Prune time of an OPT-125M-shaped model at several rank counts: speedup, efficiency, and where
the time goes (compute against communication), from the JSON summary each run writes.

  .venv/bin/python bench/bench_scaling.py [--np 1,2] [--stages 1] [--nsamples 8] [--seqlen 512]
                                          [--repeats 3] [--method sparsegpt] [--sparsity 2:4]

The model has OPT-125M's shapes (hidden 768, FFN 3072, 12 layers, 12 heads, vocab 50272) and
random weights (transformers' OPTConfig defaults, seed 0), written once to
build/bench/opt125m-random. Calibration: the Austen text. Every rank runs one BLAS thread
(OPENBLAS_NUM_THREADS=1), so P ranks use P cores: run it on a machine with at least max(--np)
idle cores. Per rank count the median wall time over the repeats, speedup and efficiency
against the smallest rank count, and the time split the run reports (the largest rank's):
compute = statistics (forward + Grams) + pruning + forward of the pruned layer; communication =
all-reduce of the statistics + stage hand-off; sync = agreements, weight broadcasts and output
writes (it includes waiting for the slowest rank).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SDS_SHARED", os.path.join(ROOT, "..", "shared"))
AUSTEN = os.path.join(SHARED, "data", "calibration", "austen.txt")
BIN = os.path.join(ROOT, "build", "sds-mpi")
MODEL = os.path.join(ROOT, "build", "bench", "opt125m-random")


def make_model():
    if os.path.exists(os.path.join(MODEL, "model.safetensors")):
        return MODEL
    import torch
    from transformers import OPTConfig, OPTForCausalLM
    torch.manual_seed(0)
    m = OPTForCausalLM(OPTConfig())  # the defaults are OPT-125M's shapes
    os.makedirs(MODEL, exist_ok=True)
    m.save_pretrained(MODEL, safe_serialization=True)
    tok = os.path.join(SHARED, "data", "opt-tokenizer")
    for f in os.listdir(tok):
        with open(os.path.join(tok, f), "rb") as a, open(os.path.join(MODEL, f), "wb") as b:
            b.write(a.read())
    return MODEL


def run(np_, stages, a, out):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(np_),
           "-x", "OPENBLAS_NUM_THREADS=1", BIN, "prune", "--model", MODEL, "--calib", AUSTEN,
           "--method", a.method, "--sparsity", a.sparsity, "--nsamples", str(a.nsamples),
           "--seqlen", str(a.seqlen), "--out", out, "--json", out + ".json", "--stages", str(stages)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    js = json.load(open(out + ".json"))
    os.remove(out)
    return js


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--np", default="1,2")
    ap.add_argument("--stages", default="1")
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="sparsegpt")
    ap.add_argument("--sparsity", default="2:4")
    a = ap.parse_args()
    make_model()
    configs = [(int(p), int(s)) for s in a.stages.split(",") for p in a.np.split(",") if int(s) <= int(p)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):  # interleaved, so that a slow spell hits every config alike
            for np_, S in configs:
                js = run(np_, S, a, os.path.join(tmp, "o.h5"))
                t = js["timing_max_s"]
                rows.append((np_, S, js["seconds"], t))
                print("repeat %d: %d ranks, %d stages: %.2f s" % (r, np_, S, js["seconds"]), flush=True)
    base = None
    print("\nOPT-125M shapes, %s %s, %d x %d tokens, %d repeats (medians)\n" %
          (a.method, a.sparsity, a.nsamples, a.seqlen, a.repeats))
    print("| ranks | stages | wall s | speedup | efficiency | compute s | all-reduce s | hand-off s | sync s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for np_, S in configs:
        sel = [x for x in rows if x[0] == np_ and x[1] == S]
        med = lambda f: statistics.median(f(x) for x in sel)  # noqa: E731
        wall = med(lambda x: x[2])
        if base is None:
            base = (np_, wall)
        sp = base[1] / wall
        eff = sp / (np_ / base[0])
        print("| %d | %d | %.2f | %.2f | %.0f%% | %.2f | %.2f | %.2f | %.2f |" %
              (np_, S, wall, sp, 100 * eff, med(lambda x: x[3]["compute"]),
               med(lambda x: x[3]["reduce"]), med(lambda x: x[3]["handoff"]),
               med(lambda x: x[3]["sync"])))


if __name__ == "__main__":
    main()
