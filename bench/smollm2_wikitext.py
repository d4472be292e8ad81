"""Dense WikiText-2 perplexity of the real default model, SmolLM2-135M-Instruct (Q4_1 GGUF), on
the whole test split, by sds-mpi and by transformers on the same dequantised weights.

  .venv/bin/python bench/smollm2_wikitext.py [--seqlens 2048 512] [--np 2] [--reference 2048]
                                             [--ref-windows K]

sds-mpi runs on the whole test split for every seqlen in --seqlens; the comparison with
transformers (tests/smollm2_ref.py, ~3x slower here) runs for the seqlens named by --reference,
on the first K windows (--ref-windows, 0 = all), with sds-mpi on the same windows. Run it with
OPENBLAS_CORETYPE=SkylakeX (on this machine) so that PyTorch gets the fast kernels too.
Writes build/bench/smollm2-wikitext.json and prints a table.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("SDS_SHARED", os.path.join(ROOT, "..", "shared"))
import hf_fixtures as fx  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqlens", type=int, nargs="*", default=[2048, 512])
    ap.add_argument("--reference", type=int, nargs="*", default=[2048])
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--ref-windows", type=int, default=0)
    a = ap.parse_args()
    gguf = subprocess.run([os.path.join(ROOT, "jobs", "fetch_smollm2.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    os.environ["SDS_SMOLLM2_GGUF"] = gguf
    out = os.path.join(ROOT, "build", "bench", "smollm2-wikitext.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    res = json.load(open(out)) if os.path.exists(out) else {}
    for T in a.seqlens:
        js = os.path.join(ROOT, "build", "bench", "smollm2-wikitext-%d.json" % T)
        cmd = ["mpirun", "--allow-run-as-root", "-np", str(a.np), os.path.join(ROOT, "build", "sds-mpi"),
               "eval", "--model", gguf, "--text", fx.WIKI, "--seqlen", str(T), "--json", js]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        r = json.load(open(js))
        res.setdefault(str(T), {})["sds-mpi"] = {k: r[k] for k in ("perplexity", "windows", "tokens", "seconds", "ranks")}
        json.dump(res, open(out, "w"), indent=2)
    for T in a.reference:
        import torch
        import smollm2_ref
        js = os.path.join(ROOT, "build", "bench", "smollm2-wikitext-%d-ref.json" % T)
        cmd = ["mpirun", "--allow-run-as-root", "-np", str(a.np), os.path.join(ROOT, "build", "sds-mpi"),
               "eval", "--model", gguf, "--text", fx.WIKI, "--seqlen", str(T), "--json", js]
        if a.ref_windows:
            cmd += ["--max-windows", str(a.ref_windows)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        r = json.load(open(js))
        torch.set_num_threads(2)
        t0 = time.time()
        text = open(fx.WIKI, encoding="utf-8").read()
        ppl = fx.hf_perplexity(smollm2_ref.load_hf(gguf), smollm2_ref.encode(text, gguf), T, a.ref_windows)
        res.setdefault("reference-%d" % T, {})["sds-mpi"] = {k: r[k] for k in ("perplexity", "windows", "tokens", "seconds", "ranks")}
        res["reference-%d" % T]["transformers"] = {"perplexity": ppl, "seconds": time.time() - t0}
        json.dump(res, open(out, "w"), indent=2)
    print("| seqlen | windows | sds-mpi perplexity | transformers | rel. diff |")
    print("|---|---|---|---|---|")
    for T, r in res.items():
        s = r.get("sds-mpi", {})
        h = r.get("transformers", {})
        rel = abs(s["perplexity"] - h["perplexity"]) / h["perplexity"] if s and h else None
        print("| %s | %s | %s | %s | %s |" % (T, s.get("windows", ""), "%.4f" % s["perplexity"] if s else "",
                                             "%.4f" % h["perplexity"] if h else "",
                                             "%.1e" % rel if rel is not None else ""))


if __name__ == "__main__":
    main()
