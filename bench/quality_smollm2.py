"""Pruning quality on the real default model: SmolLM2-135M-Instruct (Q4_1 GGUF), calibrated on
../shared/data/calibration/austen.txt, WikiText-2 test perplexity of the dense model and of each
method at 50%, 2:4 and 4:8, with the prune times.

  .venv/bin/python bench/quality_smollm2.py [--nsamples 16] [--seqlen 512] [--windows 24] [--np 2]
        [--methods magnitude,wanda,sparsegpt,sds/sparsegpt,sds/wanda] [--sparsities 0.5,2:4,4:8]
        [--calib FILE] [--eval FILE] [--seed N] [--tag NAME] [-- EXTRA SDS OPTIONS]

Settings are scaled to two cores (the papers use 128 x 2048 C4 tokens and the whole test set):
calibration `--nsamples` x `--seqlen` tokens, perplexity on the first `--windows` windows of
`--seqlen` tokens of the eval text (`--windows 0`: all). `sds/BASE` is `--method sds --base BASE`
with its defaults; options after `--` go to every SDS prune (e.g. `-- --sds-target pruned`);
`--seed` is the calibration windows' seed of every prune (default 0).
Writes build/bench/quality-TAG.json and prints markdown tables.
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
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np_), BIN] + args
    print("+ sds-mpi " + " ".join(args), flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed:\n" + p.stderr[-3000:])
    return p.stdout, time.time() - t0


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--methods", default="magnitude,wanda,sparsegpt,sds/sparsegpt,sds/wanda")
    ap.add_argument("--sparsities", default="0.5,2:4,4:8")
    ap.add_argument("--calib", default=AUSTEN)
    ap.add_argument("--eval", default=WIKI)
    ap.add_argument("--tag", default="smollm2")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    methods = a.methods.split(",")
    sparsities = a.sparsities.split(",")
    gguf = subprocess.run([os.path.join(ROOT, "jobs", "fetch_smollm2.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    outdir = os.path.join(ROOT, "build", "bench", "quality-" + a.tag)
    os.makedirs(outdir, exist_ok=True)
    ev = ["--text", a.eval, "--seqlen", str(a.seqlen)]
    if a.windows:
        ev += ["--max-windows", str(a.windows)]
    out, _ = mpirun(a.np, ["eval", "--model", gguf] + ev)
    res = {"settings": vars(a), "extra": extra, "dense": float(out.strip().splitlines()[-1].split()[1]),
           "runs": []}
    print("   dense: perplexity %.3f" % res["dense"], flush=True)
    for sparsity in sparsities:
        for method in methods:
            margs = ["--method", method]
            if method.startswith("sds/"):
                margs = ["--method", "sds", "--base", method.split("/")[1]]
            h5 = os.path.join(outdir, "%s-%s.h5" % (method.replace("/", "-"), sparsity.replace(":", "of")))
            _, t_prune = mpirun(a.np, ["prune", "--model", gguf, "--calib", a.calib] + margs +
                                ["--sparsity", sparsity, "--nsamples", str(a.nsamples),
                                 "--seqlen", str(a.seqlen), "--seed", str(a.seed), "--out", h5,
                                 "--json", h5 + ".json"] +
                                (extra if method.startswith("sds") else []))
            out, _ = mpirun(a.np, ["eval", "--model", gguf, "--weights", h5] + ev)
            ppl = float(out.strip().splitlines()[-1].split()[1])
            js = json.load(open(h5 + ".json"))
            subs = js["sublayers"]
            err = sum(s["rel_err"] for s in subs) / len(subs)
            kept = sum(1 for s in subs if s.get("kept_sds", 0) > 0.5)
            res["runs"].append({"method": method, "sparsity": sparsity, "perplexity": ppl,
                                "prune_seconds": js["seconds"], "wall_seconds": t_prune,
                                "mean_rel_err": err, "sds_kept": kept, "sublayers": len(subs),
                                "peak_rss_mib_max": js.get("peak_rss_mib_max")})
            json.dump(res, open(os.path.join(ROOT, "build", "bench", "quality-%s.json" % a.tag), "w"),
                      indent=2)
            print("   %s %s: perplexity %.3f, mean rel. error %.4g, prune %.0fs%s" %
                  (method, sparsity, ppl, err, js["seconds"],
                   ", SDS kept in %d of %d sublayers" % (kept, len(subs)) if method.startswith("sds") else ""),
                  flush=True)
    print("\nSmolLM2-135M-Instruct, calibration %d x %d tokens of %s, eval %s first %s x %d tokens, "
          "%d ranks, seed %d%s" % (a.nsamples, a.seqlen, os.path.basename(a.calib),
                                   os.path.basename(a.eval), a.windows or "all", a.seqlen, a.np, a.seed,
                                   (", extra: " + " ".join(extra)) if extra else ""))
    print("| method | " + " | ".join(sparsities) + " |\n|---|" + "---|" * len(sparsities))
    print("| dense | %.2f |" % res["dense"] + " |" * (len(sparsities) - 1))
    for method in methods:
        row = {r["sparsity"]: r for r in res["runs"] if r["method"] == method}
        print("| %s | %s |" % (method, " | ".join("%.2f" % row[s]["perplexity"] for s in sparsities if s in row)))
    print("\n| method | " + " | ".join("prune s %s" % s for s in sparsities) + " | " +
          " | ".join("mean rel. err %s" % s for s in sparsities) + " |\n|---|" + "---|" * (2 * len(sparsities)))
    for method in methods:
        row = {r["sparsity"]: r for r in res["runs"] if r["method"] == method}
        print("| %s | %s | %s |" % (method, " | ".join("%.0f" % row[s]["prune_seconds"] for s in sparsities if s in row),
                                     " | ".join("%.4f" % row[s]["mean_rel_err"] for s in sparsities if s in row)))


if __name__ == "__main__":
    main()
