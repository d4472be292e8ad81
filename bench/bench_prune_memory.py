"""Peak memory of a whole prune next to the sum of what it must hold.

  .venv/bin/python bench/bench_prune_memory.py [--np 1,2] [--nsamples 16] [--seqlen 512]
                                               [--methods sparsegpt,sds]

Runs `sds-mpi prune` on the real default model (SmolLM2-135M-Instruct GGUF, austen.txt) and reads
the peak resident set size each run reports (getrusage, the largest rank) from its JSON summary.
What a rank must hold in the current (sequential, issue 4) flow, from the model's shapes:
  - the model's fp32 weights (every rank holds the whole model until stages exist, issue 5);
  - its share of the calibration activations, ceil(nsamples / P) x seqlen x hidden x 4 bytes
    (twice for SDS with the dense target, which carries the dense path too);
  - the statistics of one layer while its sequences are added: per input group a cols^2 fp32
    Gram and the exact sums of its upper triangle (16 bytes an entry, src/xsum.h); for SDS's
    dense target also the cross Gram K (fp32 and 16-byte sums, cols^2 each) of the groups on
    the K route, and the term S (rows x cols, the same) of the sublayers on the output route
    (sds_sds_output_route: a group's rows fewer than its cols, here down_proj), and one
    sequence's copies of the group inputs and sublayer outputs; plus one cols^2 SparseGPT
    factor (all summed, though the sums are freed before the factor exists: an upper bound);
  - one sequence of forward scratch (q, k, v, attention, FFN, scores), a few x seqlen x F x 4;
  - the calibration ids (nsamples x seqlen x 4) and the model's vocabulary/tokenizer.
The report is peak / that sum; the difference is the process baseline (MPI, OpenBLAS buffers,
libraries), measured here by a run with 1 calibration sample (`--nsamples 1`).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SDS_SHARED", os.path.join(ROOT, "..", "shared"))
AUSTEN = os.path.join(SHARED, "data", "calibration", "austen.txt")
BIN = os.path.join(ROOT, "build", "sds-mpi")
MiB = 1024.0 * 1024.0


def shapes(gguf_path):
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)
    f = {k: v for k, v in r.fields.items()}

    def val(key):
        fld = f[key]
        return fld.parts[fld.data[0]][0]
    arch = "llama"
    n_params = sum(int(t.n_elements) for t in r.tensors)
    return {"params": n_params, "hidden": int(val(arch + ".embedding_length")),
            "ffn": int(val(arch + ".feed_forward_length")), "layers": int(val(arch + ".block_count")),
            "heads": int(val(arch + ".attention.head_count"))}


def must_hold(s, np_, nsamples, seqlen, method):
    C, F, T = s["hidden"], s["ffn"], seqlen
    n_local = -(-nsamples // np_)
    two = method == "sds"
    # Llama's input groups (q/k/v, o, gate/up: C wide, as SmolLM2's heads x head_dim is C; down:
    # F wide) and their sublayers' rows
    groups = [(C, 3 * C), (C, C), (C, 2 * F), (F, C)]
    stats = sum(4 * c * c + 16 * c * (c + 1) // 2 for c, _ in groups) + 4 * F * F
    if two:
        for c, rows in groups:
            out_route = rows < c
            stats += 20 * (rows * c if out_route else c * c)  # K or S: fp32 and exact sums
            stats += T * c * 4 * (1 if out_route else 2) + T * rows * 4  # inputs, outputs
    parts = {
        "weights": s["params"] * 4,
        "activations": n_local * T * C * 4 * (2 if two else 1),
        "statistics": stats,
        "scratch": (6 * T * C + 3 * T * F + T * T) * 4,
        "calibration ids": nsamples * T * 4,
    }
    if two:  # SDS per-sublayer buffers (largest sublayer F x C): W copies, masks, scratch
        parts["sds sublayer"] = 7 * F * C * 4
    return parts


def run(np_, gguf, nsamples, seqlen, method, out):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np_), BIN, "prune", "--model",
           gguf, "--calib", AUSTEN, "--method", method, "--sparsity", "2:4", "--nsamples", str(nsamples),
           "--seqlen", str(seqlen), "--out", out, "--json", out + ".json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    return json.load(open(out + ".json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--np", default="1,2")
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--methods", default="sparsegpt,sds")
    a = ap.parse_args()
    gguf = subprocess.run([os.path.join(ROOT, "jobs", "fetch_smollm2.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    s = shapes(gguf)
    outdir = os.path.join(ROOT, "build", "bench", "memory")
    os.makedirs(outdir, exist_ok=True)
    rows = []
    for np_ in [int(x) for x in a.np.split(",")]:
        base = run(np_, gguf, 1 if np_ == 1 else np_, 16, "magnitude", os.path.join(outdir, "base.h5"))
        baseline = base["peak_rss_mib_max"] - s["params"] * 4 / MiB
        for method in a.methods.split(","):
            js = run(np_, gguf, a.nsamples, a.seqlen, method, os.path.join(outdir, "%s-%d.h5" % (method, np_)))
            parts = must_hold(s, np_, a.nsamples, a.seqlen, method)
            need = sum(parts.values()) / MiB
            peak = js["peak_rss_mib_max"]
            rows.append((np_, method, peak, need, baseline, parts))
            print("np %d %-9s peak %.1f MiB | must hold %.1f MiB (%s) | baseline %.1f MiB | "
                  "peak / (must hold + baseline) = %.3f" %
                  (np_, method, peak, need, ", ".join("%s %.1f" % (k, v / MiB) for k, v in parts.items()),
                   baseline, peak / (need + baseline)), flush=True)
    print("\n| ranks | method | peak RSS (MiB, largest rank) | must hold (MiB) | baseline (MiB) | "
          "peak / (must hold + baseline) |\n|---|---|---|---|---|---|")
    for np_, method, peak, need, baseline, _ in rows:
        print("| %d | %s | %.1f | %.1f | %.1f | %.3f |" % (np_, method, peak, need, baseline,
                                                          peak / (need + baseline)))


if __name__ == "__main__":
    main()
