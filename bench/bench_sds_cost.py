"""SDS's cost next to the SparseGPT run it starts from (issue 6: at most twice it), side by side.

  .venv/bin/python bench/bench_sds_cost.py [--repeats 3] [--np 2] [--nsamples 16] [--seqlen 512]
        [--sparsity 2:4] [--variants sparsegpt,sds] [-- EXTRA SDS OPTIONS]

On the real default model (SmolLM2-135M-Instruct, calibrated on ../shared/data/calibration/
austen.txt), `prune` alone (no evaluation). The runs are interleaved (SparseGPT, SDS, SparseGPT,
SDS, ...) so that a noisy machine slows both alike; per variant the median wall time of the
prune (its own `seconds`), the median of each part of the time split it reports (the largest
rank's: statistics = forward passes and Grams, prune = the pruning itself, forward = the pruned
layer's outputs, reduce = all-reducing the statistics, sync = agreements, broadcasts and writes,
including waiting for the slowest rank), and the ratio of the medians. A variant is a method
(`sparsegpt`, `sds`) or `sds:OPTIONS` with comma-separated options; variants are separated
by commas, or by semicolons once one has options, e.g.
`--variants "sparsegpt;sds;sds:--sds-adjust-solver,gd,--sds-adjust-iters,20"` (the last is the
former default). The first variant is the reference of the ratios.
Writes build/bench/sds-cost.json.
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
PARTS = ("statistics", "prune", "forward", "reduce", "sync")


def variant_args(v):
    method, _, opts = v.partition(":")
    return ["--method", method] + ([o for o in opts.split(",") if o] if opts else [])


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--sparsity", default="2:4")
    ap.add_argument("--variants", default="sparsegpt,sds")
    a = ap.parse_args(argv)
    variants = a.variants.split(",") if ":" not in a.variants else a.variants.split(";")
    gguf = subprocess.run([os.path.join(ROOT, "jobs", "fetch_smollm2.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    runs = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.repeats):
            for v in variants:
                out = os.path.join(tmp, "out.h5")
                args = ["prune", "--model", gguf, "--calib", AUSTEN, "--sparsity", a.sparsity,
                        "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen), "--out", out,
                        "--json", out + ".json"] + variant_args(v)
                if v.startswith("sds"):
                    args += extra
                cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(a.np), BIN] + args
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
                js = json.load(open(out + ".json"))
                os.remove(out)
                subs = js["sublayers"]
                r = {"seconds": js["seconds"], "mean_rel_err": sum(s["rel_err"] for s in subs) / len(subs)}
                r.update({k: js["timing_max_s"][k] for k in PARTS})
                runs[v].append(r)
                print("repeat %d %-40s %6.1f s (%s), mean rel. error %.5f" %
                      (rep + 1, v, r["seconds"], ", ".join("%s %.1f" % (k, r[k]) for k in PARTS),
                       r["mean_rel_err"]), flush=True)
    med = {v: {k: statistics.median(r[k] for r in runs[v]) for k in ("seconds",) + PARTS}
           for v in variants}
    base = med[variants[0]]["seconds"]
    print("\nSmolLM2-135M-Instruct, %s, %d x %d Austen tokens, %d ranks, medians of %d%s" %
          (a.sparsity, a.nsamples, a.seqlen, a.np, a.repeats, (", SDS options: " + " ".join(extra)) if extra else ""))
    print("| variant | prune s | x %s | " % variants[0] + " | ".join(PARTS) + " |\n|---|---|---|" + "---|" * len(PARTS))
    for v in variants:
        m = med[v]
        print("| %s | %.1f | %.2f | %s |" % (v, m["seconds"], m["seconds"] / base,
                                             " | ".join("%.1f" % m[k] for k in PARTS)))
    os.makedirs(os.path.join(ROOT, "build", "bench"), exist_ok=True)
    json.dump({"settings": vars(a), "extra": extra, "runs": runs, "medians": med},
              open(os.path.join(ROOT, "build", "bench", "sds-cost.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
