"""sds-mpi eval against transformers with the same protocol, at 1, 2 and 4 ranks.

Checks: the perplexity equals the reference's to 1e-4 relative (both fp32 forward passes; the
NLL sums are in double on both sides, so the observed difference is ~1e-7); the printed value
is identical at 1, 2 and 4 ranks (1e-7 with automatic BLAS threading); --json holds the same,
and its token count equals that of transformers' tokenizer for the checkpoint (so the BOS
decision matches: OPT's </s>; for Llama, each way AutoTokenizer decides, see hf_fixtures.py).
The other Llama fixtures run at 1 rank only, on 2 short windows: enough to check their BOS id
(the first window starts with it) without slowing the suite.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import hf_fixtures as fx  # noqa: E402
import sds_run  # noqa: E402

REL = 1e-4


def main():
    text = open(fx.WIKI, encoding="utf-8").read()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        tf = os.path.join(tmp, "text.txt")
        with open(tf, "w", encoding="utf-8") as f:
            f.write(text[:30000])
        opt_ids = fx.opt_encode(text[:30000])
        all_runs = [(1, None), (2, None), (4, None), (1, {"OPENBLAS_NUM_THREADS": ""})]
        cases = [("opt-preln", 128, 0, all_runs), ("opt-postln-proj", 256, 0, all_runs),
                 ("opt-fp16-sharded", 200, 9, all_runs), ("llama3-rope", 128, 16, all_runs)]
        cases += [(n, 64, 2, [(1, None)]) for n in fx.LLAMA_CHECKPOINTS if n != "llama3-rope"]
        for name, seqlen, maxw, runs in cases:
            t0 = time.time()
            path = fx.make(name)
            ids = fx.hf_encode(path, text[:30000]) if name in fx.LLAMA_CONFIGS else opt_ids
            ref = fx.hf_perplexity(fx.load_fp32(name), ids, seqlen, maxw)
            args = ["eval", "--model", path, "--text", tf, "--seqlen", str(seqlen)]
            if maxw:
                args += ["--max-windows", str(maxw)]
            seen = {}
            for np_, env in runs:
                jf = os.path.join(tmp, "%s-%d.json" % (name, np_))
                rc, out, err, codes = sds_run.run(np_, args + ["--json", jf], env=env)
                if rc != 0 or any(c != 0 for c in codes):
                    print("NOT OK %s np=%d: exit %s %s\n%s" % (name, np_, rc, codes, err))
                    failed += 1
                    continue
                line = sds_run.last_line(out)
                assert line.startswith("perplexity "), line
                val = line.split()[1]
                seen["np=%d%s" % (np_, " auto-threads" if env else "")] = val
                js = json.load(open(jf))
                if abs(js["perplexity"] - float(val)) > 1e-9 * float(val):
                    print("NOT OK %s: json %r vs stdout %s" % (name, js["perplexity"], val))
                    failed += 1
                if js["tokens"] != len(ids):
                    print("NOT OK %s: %d tokens, transformers has %d (first ids %s)"
                          % (name, js["tokens"], len(ids), ids[:3]))
                    failed += 1
            # Fixed BLAS threads per rank (the suite's OPENBLAS_NUM_THREADS=1): bit-identical at
            # any rank count. Automatic threading (2 threads at 1 rank) changes OpenBLAS's
            # blocking, so there only agreement to 1e-7 relative is promised.
            auto = seen.pop("np=1 auto-threads", None)
            vals = set(seen.values())
            ok_same = len(vals) == 1
            if auto is not None and vals:
                ok_same = ok_same and abs(float(auto) - float(next(iter(vals)))) <= 1e-7 * float(auto)
                seen["np=1 auto-threads"] = auto
            v = float(next(iter(vals))) if vals else float("nan")
            rel = abs(v - ref) / ref
            ok_ref = rel <= REL
            failed += (not ok_same) + (not ok_ref)
            print("%s %s seqlen %d: sds-mpi %s, transformers %.10g, rel %.2e (tol %.0e); "
                  "identical over %s: %s (%.1fs)" % ("OK" if ok_same and ok_ref else "NOT OK", name,
                                                     seqlen, seen, ref, rel, REL, list(seen),
                                                     ok_same, time.time() - t0))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
