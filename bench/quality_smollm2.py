"""One-shot pruning quality on the real default model: SmolLM2-135M-Instruct (Q4_1 GGUF),
calibrated on ../shared/data/calibration/austen.txt, WikiText-2 test perplexity of the dense
model and of magnitude, Wanda and SparseGPT at 50%, 2:4 and 4:8.

  .venv/bin/python bench/quality_smollm2.py [--nsamples 16] [--seqlen 512] [--windows 24] [--np 2]

Settings are scaled to two cores (the papers use 128 x 2048 C4 tokens and the whole test set):
calibration `--nsamples` x `--seqlen` tokens, perplexity on the first `--windows` windows of
`--seqlen` tokens of WikiText-2. Writes build/bench/quality-smollm2.json and prints a table.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SDS_SHARED", os.path.join(ROOT, "..", "shared"))
WIKI = os.path.join(SHARED, "data", "wikitext-2-raw", "wiki.test.raw")
AUSTEN = os.path.join(SHARED, "data", "calibration", "austen.txt")
BIN = os.path.join(ROOT, "build", "sds-mpi")


def mpirun(np_, args):
    cmd = ["mpirun", "--allow-run-as-root", "-np", str(np_), BIN] + args
    print("+ sds-mpi " + " ".join(args), flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed:\n" + p.stderr[-3000:])
    return p.stdout, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--np", type=int, default=2)
    a = ap.parse_args()
    gguf = subprocess.run([os.path.join(ROOT, "jobs", "fetch_smollm2.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    outdir = os.path.join(ROOT, "build", "bench", "quality")
    os.makedirs(outdir, exist_ok=True)
    ev = ["--text", WIKI, "--seqlen", str(a.seqlen), "--max-windows", str(a.windows)]
    out, secs = mpirun(a.np, ["eval", "--model", gguf] + ev)
    res = {"settings": vars(a), "dense": float(out.strip().splitlines()[-1].split()[1]), "runs": []}
    for sparsity in ("0.5", "2:4", "4:8"):
        for method in ("magnitude", "wanda", "sparsegpt"):
            h5 = os.path.join(outdir, "%s-%s.h5" % (method, sparsity.replace(":", "of")))
            _, t_prune = mpirun(a.np, ["prune", "--model", gguf, "--calib", AUSTEN, "--method", method,
                                       "--sparsity", sparsity, "--nsamples", str(a.nsamples),
                                       "--seqlen", str(a.seqlen), "--out", h5, "--json", h5 + ".json"])
            out, _ = mpirun(a.np, ["eval", "--model", gguf, "--weights", h5] + ev)
            ppl = float(out.strip().splitlines()[-1].split()[1])
            js = json.load(open(h5 + ".json"))
            err = sum(s["rel_err"] for s in js["sublayers"]) / len(js["sublayers"])
            res["runs"].append({"method": method, "sparsity": sparsity, "perplexity": ppl,
                                "prune_seconds": t_prune, "mean_rel_err": err})
            json.dump(res, open(os.path.join(ROOT, "build", "bench", "quality-smollm2.json"), "w"), indent=2)
            print("   %s %s: perplexity %.3f, mean rel. error %.4g, prune %.0fs" %
                  (method, sparsity, ppl, err, t_prune), flush=True)
    print("\nSmolLM2-135M-Instruct, calibration %d x %d tokens of austen.txt, WikiText-2 first %d x %d"
          " tokens, %d ranks" % (a.nsamples, a.seqlen, a.windows, a.seqlen, a.np))
    print("| method | 50% | 2:4 | 4:8 |\n|---|---|---|---|")
    print("| dense | %.2f | | |" % res["dense"])
    for method in ("magnitude", "wanda", "sparsegpt"):
        row = [r for r in res["runs"] if r["method"] == method]
        print("| %s | %s |" % (method, " | ".join("%.2f" % r["perplexity"] for r in row)))
    print("\n| method | prune seconds 50% | 2:4 | 4:8 | mean rel. error 50% | 2:4 | 4:8 |\n|---|---|---|---|---|---|---|")
    for method in ("magnitude", "wanda", "sparsegpt"):
        row = [r for r in res["runs"] if r["method"] == method]
        print("| %s | %s | %s |" % (method, " | ".join("%.0f" % r["prune_seconds"] for r in row),
                                     " | ".join("%.4f" % r["mean_rel_err"] for r in row)))


if __name__ == "__main__":
    main()
