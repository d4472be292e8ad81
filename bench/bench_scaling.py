"""Prune time of an OPT-125M-shaped model at several rank counts: speedup, efficiency, and where
the time goes (compute against communication), from the JSON summary each run writes.

  .venv/bin/python bench/bench_scaling.py [--np 1,2] [--stages 1] [--nsamples 8] [--seqlen 512]
        [--repeats 3] [--method sparsegpt] [--sparsity 2:4]
        [--runs "NP:STAGES[:METHOD[:OPTIONS]];..."] [--budget SECONDS] [--gen transformers|numpy]
        [--json FILE]

The model has OPT-125M's shapes (hidden 768, FFN 3072, 12 layers, 12 heads, vocab 50272) and
random weights, written once to build/bench/opt125m-random: by default with transformers'
OPTConfig defaults (seed 0); `--gen numpy` writes the same names, shapes and initialisation
(normal, std 0.02; biases 0; LayerNorm 1 and 0) with numpy and safetensors alone, for a machine
whose transformers differs. Calibration: the Austen text ($SDS_SHARED, default ../shared). Every
rank runs one BLAS thread (OPENBLAS_NUM_THREADS=1), so P ranks use P cores: run it on a machine
with at least max(NP) idle cores.

The runs are --np x --stages with --method, or the list --runs: NP:STAGES, optionally :METHOD and
:OPTIONS (comma-separated extra prune options), e.g. "1:1;16:1;16:2:sds:--sds-order,parallel".
The runs are interleaved, --repeats times; with --budget, after the first round a run is left
out when the elapsed time plus 1.2 times its first round's would pass the budget.

Per run the median wall time (the run's own `seconds`), speedup and efficiency against the same
method and options at the smallest rank and stage count present, and the time split the run
reports (the largest rank's): compute = statistics (forward + Grams) + pruning + forward of the
pruned layer; all-reduce = all-reduce of the statistics; hand-off = stage hand-off; sync =
agreements, weight broadcasts and output writes (it includes waiting for the slowest rank); other
stages = waiting for the other stages. Where h5py is there,
each output's weights and masks are hashed, and the script says whether every run of a method and
options gave bitwise-equal weights, whatever its ranks and stages.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SDS_SHARED", os.path.join(ROOT, "..", "shared"))
AUSTEN = os.path.join(SHARED, "data", "calibration", "austen.txt")
BIN = os.path.join(ROOT, "build", "sds-mpi")
MODEL = os.environ.get("SDS_BENCH_MODEL", os.path.join(ROOT, "build", "bench", "opt125m-random"))
HIDDEN, FFN, LAYERS, HEADS, VOCAB, POS = 768, 3072, 12, 12, 50272, 2048

OPT_CONFIG = {
    "_remove_final_layer_norm": False, "activation_function": "relu",
    "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
    "do_layer_norm_before": True, "dropout": 0.1, "enable_bias": True, "eos_token_id": 2,
    "ffn_dim": FFN, "hidden_size": HIDDEN, "init_std": 0.02, "layer_norm_elementwise_affine": True,
    "layerdrop": 0.0, "max_position_embeddings": POS, "model_type": "opt",
    "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 1,
    "torch_dtype": "float32", "use_cache": True, "vocab_size": VOCAB, "word_embed_proj_dim": HIDDEN,
}


def gen_numpy():
    import numpy as np
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    t = {}

    def normal(name, shape):
        t[name] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    d = "model.decoder."
    normal(d + "embed_tokens.weight", (VOCAB, HIDDEN))
    normal(d + "embed_positions.weight", (POS + 2, HIDDEN))
    t[d + "final_layer_norm.weight"] = np.ones(HIDDEN, np.float32)
    t[d + "final_layer_norm.bias"] = np.zeros(HIDDEN, np.float32)
    for i in range(LAYERS):
        p = d + "layers.%d." % i
        attn = [("self_attn." + n, HIDDEN, HIDDEN)
                for n in ("q_proj", "k_proj", "v_proj", "out_proj")]
        for lin, o, n in attn + [("fc1", FFN, HIDDEN), ("fc2", HIDDEN, FFN)]:
            normal(p + lin + ".weight", (o, n))
            t[p + lin + ".bias"] = np.zeros(o, np.float32)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            t[p + ln + ".weight"] = np.ones(HIDDEN, np.float32)
            t[p + ln + ".bias"] = np.zeros(HIDDEN, np.float32)
    save_file(t, os.path.join(MODEL, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(MODEL, "config.json"), "w") as f:
        json.dump(OPT_CONFIG, f, indent=2)


def gen_transformers():
    import torch
    from transformers import OPTConfig, OPTForCausalLM
    torch.manual_seed(0)
    m = OPTForCausalLM(OPTConfig())  # the defaults are OPT-125M's shapes
    m.save_pretrained(MODEL, safe_serialization=True)


def make_model(gen):
    if os.path.exists(os.path.join(MODEL, "model.safetensors")):
        return MODEL
    os.makedirs(MODEL, exist_ok=True)
    if gen == "numpy":
        gen_numpy()
    else:
        gen_transformers()
    tok = os.path.join(SHARED, "data", "opt-tokenizer")
    for f in os.listdir(tok):
        with open(os.path.join(tok, f), "rb") as a, open(os.path.join(MODEL, f), "wb") as b:
            b.write(a.read())
    return MODEL


def run(cfg, a, out):
    np_, stages, method, opts = cfg
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(np_),
           "-x", "OPENBLAS_NUM_THREADS=1", BIN, "prune", "--model", MODEL, "--calib", AUSTEN,
           "--method", method, "--sparsity", a.sparsity, "--nsamples", str(a.nsamples),
           "--seqlen", str(a.seqlen), "--out", out, "--json", out + ".json",
           "--stages", str(stages)]
    cmd += [o for o in opts.split(",") if o]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    js = json.load(open(out + ".json"))
    js["weights_sha256"] = digest(out)
    os.remove(out)
    return js


def digest(path):
    """SHA-256 over every weight and mask in the output, in name order (None without h5py): equal
    digests mean bitwise-equal pruned models."""
    try:
        import h5py
    except ImportError:
        return None
    import hashlib
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for g in ("weights", "masks"):
            for n in sorted(f[g]):
                h.update(n.encode())
                h.update(f[g][n][()].tobytes())
    return h.hexdigest()


def parse_runs(a, ap):
    if not a.runs:
        return [(int(p), int(s), a.method, "") for s in a.stages.split(",")
                for p in a.np.split(",") if int(s) <= int(p)]
    cfgs = []
    for r in a.runs.split(";"):
        f = r.split(":", 3)
        try:
            np_, stages = int(f[0]), int(f[1])
        except (ValueError, IndexError):
            ap.error("--runs: %r is not NP:STAGES[:METHOD[:OPTIONS]]" % r)
        cfgs.append((np_, stages, f[2] if len(f) > 2 else a.method, f[3] if len(f) > 3 else ""))
    return cfgs


def key(row):
    return (row["np"], row["stages"], row["method"], row["options"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--np", default="1,2")
    ap.add_argument("--stages", default="1")
    ap.add_argument("--runs", default="")
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0)
    ap.add_argument("--method", default="sparsegpt")
    ap.add_argument("--sparsity", default="2:4")
    ap.add_argument("--gen", choices=("transformers", "numpy"), default="transformers")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    configs = parse_runs(a, ap)
    make_model(a.gen)
    rows = []

    def save(**more):
        if a.json:
            with open(a.json, "w") as f:
                json.dump(dict({"settings": vars(a), "rows": rows}, **more), f, indent=1)

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):  # interleaved, so that a slow spell hits every config alike
            for cfg in configs:
                first = [x["seconds"] for x in rows if x["repeat"] == 0 and key(x) == cfg]
                if r > 0 and a.budget and time.time() - t0 + 1.2 * first[0] > a.budget:
                    print("budget: skipping %s in round %d" % (cfg, r), flush=True)
                    continue
                js = run(cfg, a, os.path.join(tmp, "o.h5"))
                rows.append({"np": cfg[0], "stages": cfg[1], "method": cfg[2], "options": cfg[3],
                             "repeat": r, "seconds": js["seconds"],
                             "timing_max_s": js["timing_max_s"],
                             "weights_sha256": js["weights_sha256"]})
                print("repeat %d: %d ranks, %d stages, %s %s: %.2f s" %
                      (r, cfg[0], cfg[1], cfg[2], cfg[3], js["seconds"]), flush=True)
                save()  # so far, in case the job is stopped
    nrep = max(x["repeat"] for x in rows) + 1
    print("\nOPT-125M shapes, %s, %d x %d tokens, up to %d rounds (medians; runs column)\n" %
          (a.sparsity, a.nsamples, a.seqlen, nrep))
    print("| method | ranks | stages | runs | wall s | speedup | efficiency | compute s |"
          " all-reduce s | hand-off s | sync s | other stages s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = []
    for cfg in configs:
        sel = [x for x in rows if key(x) == cfg]
        med = lambda f: statistics.median(f(x) for x in sel)  # noqa: E731
        wall = med(lambda x: x["seconds"])
        bnp, bst = min(c[:2] for c in configs if c[2:] == cfg[2:])
        bsel = [x for x in rows if key(x) == (bnp, bst) + cfg[2:]]
        bwall = statistics.median(x["seconds"] for x in bsel)
        sp = bwall / wall
        eff = sp / (cfg[0] / bnp)
        t = {k: med(lambda x: x["timing_max_s"][k])
             for k in ("compute", "reduce", "handoff", "sync", "idle")}
        name = cfg[2] + (" " + cfg[3].replace(",", " ") if cfg[3] else "")
        print("| %s | %d | %d | %d | %.2f | %.2f | %.0f%% | %.2f | %.2f | %.2f | %.2f | %.2f |" %
              (name, cfg[0], cfg[1], len(sel), wall, sp, 100 * eff, t["compute"], t["reduce"],
               t["handoff"], t["sync"], t["idle"]))
        table.append({"np": cfg[0], "stages": cfg[1], "method": cfg[2], "options": cfg[3],
                      "wall_s": wall, "speedup": sp, "efficiency": eff, "split_s": t,
                      "runs": len(sel)})
    for m in sorted({(x["method"], x["options"]) for x in rows}):
        ds = {x["weights_sha256"] for x in rows if (x["method"], x["options"]) == m}
        if None not in ds:
            print("%s %s: %s across all its runs" %
                  (m[0], m[1].replace(",", " "), "bitwise-equal pruned weights" if len(ds) == 1 else
                   "%d DIFFERENT weight digests" % len(ds)))
    save(table=table)


if __name__ == "__main__":
    main()
