"""The same answer at any scale (issue 5): sds-mpi prune and eval at 1, 2, 3 and 4 ranks with 1, 2
and 3 pipeline stages, on generated OPT and Llama checkpoints.

Against the 1-rank run of the same command:
- masks identical, weights identical (bit for bit: the statistics are exact sums, src/xsum.h,
  and each sublayer is pruned by one rank from the same inputs; the stated tolerance is 0);
- per-sublayer statistics identical; dense and pruned perplexity equal (to 1e-12 relative; the
  window NLLs are summed in window order, so in practice the same bits);
- `eval --stages S --weights` equal to the 1-rank `eval`; `--export-hf` with stages writes the
  same model.safetensors as without.
Determinism: the same staged command twice gives identical weights, masks and statistics.
Errors: --stages above the rank or layer count (exit 2; staged checkpoints are
tests/test_resume.py's); a tensor
missing from the layers only the last stage loads (exit 3, on every rank, one message naming the
tensor and the failing rank); failures injected on one rank of four: a Cholesky factorisation
failing after the last damping retry (exit 4, naming the sublayer and rank) and a failing write
of the output (exit 5); no output left behind.
"""
import glob
import json
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import hf_fixtures as fx  # noqa: E402
import sds_run  # noqa: E402

failed = 0


def report(ok, what):
    global failed
    print("%s %s" % ("OK" if ok else "NOT OK", what), flush=True)
    if not ok:
        failed += 1


def read(path):
    with h5py.File(path, "r") as f:
        w = {n: f["weights"][n][()] for n in f["weights"]}
        m = {n: f["masks"][n][()] for n in f["masks"]}
        at = {n: {k: v for k, v in f["weights"][n].attrs.items() if k != "seconds"}
              for n in f["weights"]}
    return w, m, at


def ppl(stdout, which):
    for ln in stdout.splitlines():
        if ln.startswith(which + " perplexity"):
            return float(ln.split()[2])
    return None


def prune(np_, model, out, method, sparsity, text, stages, extra=()):
    args = ["prune", "--model", model, "--calib", fx.WIKI, "--method", method, "--sparsity",
            sparsity, "--nsamples", "7", "--seqlen", "64", "--out", out, "--eval", text,
            "--eval-max-windows", "5", "--json", out + ".json"] + list(extra)
    if stages:
        args += ["--stages", str(stages)]
    return sds_run.run(np_, args)


def compare(tag, ref, got):
    (w0, m0, a0), (w1, m1, a1) = ref, got
    report(sorted(m0) == sorted(m1), "%s: the same sublayers" % tag)
    bad_m = [n for n in m0 if n in m1 and not np.array_equal(m0[n], m1[n])]
    report(not bad_m, "%s: masks identical to 1 rank%s" % (tag, "" if not bad_m else " except " + ", ".join(bad_m[:3])))
    diff = max(float(np.max(np.abs(w0[n] - w1[n]))) for n in w0 if n in w1)
    report(diff == 0.0, "%s: weights equal to 1 rank's (max |diff| %.3g, tolerance 0)" % (tag, diff))
    bad_a = [n for n in a0 if n in a1 and a0[n] != a1[n]]
    report(not bad_a, "%s: statistics identical%s" % (tag, "" if not bad_a else " except " + bad_a[0]))


def subl(path):
    """The JSON summary's per-sublayer records, by name."""
    return {r["name"]: r for r in json.load(open(path))["sublayers"]}


def parallel_order(tmp, text):
    """--sds-order parallel (issue 6): each stage runs SDS on its layers after passing the
    first-pruned outputs on. Its invariance over ranks and stages is in main's cases."""
    model = fx.make_llama("llama-gqa")
    runs = {}
    for tag, method, extra in [("wanda", "wanda", []),
                               ("seq", "sds", ["--base", "wanda", "--sds-target", "pruned"]),
                               ("par", "sds", ["--base", "wanda", "--sds-target", "pruned",
                                               "--sds-order", "parallel"])]:
        out = os.path.join(tmp, "order-%s.h5" % tag)
        rc, so, se, codes = prune(1, model, out, method, "2:4", text, 0, extra)
        report(codes == [0], "order %s: exit %s" % (tag, codes))
        if codes != [0]:
            print(se[-2000:])
            return
        runs[tag] = (read(out), subl(out + ".json"))
    # every layer's first pruning sees the base method's own inputs (the first-pruned model's)
    # in the parallel order, and the SDS-adjusted model's in the sequential one (with the
    # pruned target, SDS's first error is the base method's: relative to W_d X_s)
    wanda, seq, par = runs["wanda"][1], runs["seq"][1], runs["par"][1]
    later = [n for n in wanda if wanda[n]["layer"] > 0]

    def dev(run, names):
        return max(abs(run[n]["rel_err_first"] - wanda[n]["rel_err"]) / wanda[n]["rel_err"] for n in names)

    report(dev(par, wanda) < 1e-5 and dev(seq, later) > 1e-3,
           "parallel order: each first pruning's error is Wanda's own (max rel. dev %.2g; sequential "
           "order from layer 1 on: %.2g)" % (dev(par, wanda), dev(seq, later)))
    w_seq, w_par = runs["seq"][0][0], runs["par"][0][0]
    first = [n for n in w_seq if ".layers.0." in n]
    report(all(np.array_equal(w_seq[n], w_par[n]) for n in first)
           and any(not np.array_equal(w_seq[n], w_par[n]) for n in w_seq if n not in first),
           "parallel order: layer 0 identical to the sequential order's, later layers not")
    report(sum(par[n]["kept_sds"] for n in par) > 0 and all(r["sparsity"] == 0.5 for r in par.values()),
           "parallel order: SDS kept in %d of %d sublayers, every sublayer at 50%%" %
           (sum(par[n]["kept_sds"] for n in par), len(par)))
    # failures: agreed on every rank, whichever stage fails and whether or not the other stage
    # is running SDS at the time; a signal stops the run with nothing written (no checkpoints)
    model = fx.make_opt("opt-preln")
    base = ["prune", "--model", model, "--calib", fx.WIKI, "--method", "sds", "--sparsity", "2:4",
            "--nsamples", "7", "--seqlen", "64", "--stages", "2", "--sds-order", "parallel"]
    for env, code, needle in [({"SDS_TEST_FAIL": "cholesky:0"}, 4, "model.decoder.layers.0."),
                              ({"SDS_TEST_FAIL": "cholesky:3"}, 4, "model.decoder.layers.1."),
                              ({"SDS_TEST_STOP_AFTER_LAYER": "1"}, 5, "keeps no checkpoints")]:
        out = os.path.join(tmp, "par-fail.h5")
        rc, so, se, codes = sds_run.run(4, base + ["--out", out], env=env)
        msgs = [ln for ln in se.splitlines() if "sds-mpi: error" in ln]
        left = [f for f in os.listdir(tmp) if f.startswith("par-fail.h5")]
        r = env.get("SDS_TEST_FAIL", ":2").split(":")[1]  # (a stop: the second stage's first rank)
        report(codes == [code] * 4 and len(msgs) == 1 and needle in msgs[0] and not left
               and "(rank %s of 4)" % r in msgs[0],
               "parallel order, %s, 4 ranks, 2 stages: exit %s, one message %s, nothing left %s" %
               (env, codes, msgs[:1], left))
    for extra, needle in [(["--checkpoint-every-layer"], "keeps no checkpoints"),
                          (["--sds-order", "sideways"], "--sds-order")]:
        out = os.path.join(tmp, "par-bad.h5")
        rc, so, se, codes = sds_run.run(2, base + ["--out", out] + extra)
        msgs = [ln for ln in se.splitlines() if "sds-mpi: error" in ln]
        report(codes == [2, 2] and len(msgs) == 1 and needle in msgs[0] and not os.path.exists(out),
               "%s: exit %s, one message %s" % (" ".join(extra), codes, msgs[:1]))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "eval.txt")
        with open(text, "w", encoding="utf-8") as fh:
            fh.write(open(fx.WIKI, encoding="utf-8").read()[:12000])
        # (SparseGPT's Hessians: the fixtures' widths take the local route by default; the OPT
        # case puts every one on the stage's grid)
        cases = [("opt-preln", "sparsegpt", "2:4", ["--local-hessian-max", "0"]),
                 ("llama-gqa", "sparsegpt", "0.5", []),
                 ("opt-postln-proj", "wanda", "2:4", []), ("llama-tied-bias", "magnitude", "4:8", []),
                 ("opt-preln", "sds", "2:4", ["--base", "sparsegpt"]),
                 ("llama-gqa", "sds", "2:4", ["--base", "wanda", "--sds-mix", "auto"]),
                 ("opt-preln", "sds", "2:4", ["--base", "sparsegpt", "--sds-order", "parallel"])]
        for name, method, sparsity, extra in cases:
            model = fx.make_opt(name) if name.startswith("opt") else fx.make_llama(name)
            L = json.load(open(os.path.join(model, "config.json")))["num_hidden_layers"]
            base = "%s %s %s" % (name, method, sparsity)
            ref_out = os.path.join(tmp, "ref.h5")
            rc, so, se, codes = prune(1, model, ref_out, method, sparsity, text, 0, extra)
            report(codes == [0], "%s: 1 rank exits 0" % base)
            if codes != [0]:
                print(se[-2000:])
                continue
            ref = read(ref_out)
            ref_ppl = (ppl(so, "dense"), ppl(so, "pruned"))
            runs = [(2, 1), (2, 2), (4, 1), (4, 2), (3, 2)]
            if L >= 3:
                runs.append((4, 3))
            # (under the sanitizers: a 2x2 grid, two stages of two, uneven stages; sds_run.pick)
            runs = sds_run.pick(runs, [(4, 1), (4, 2), (3, 2)])
            for np_, S in runs:
                tag = "%s, %d ranks, %d stage%s" % (base, np_, S, "s" if S > 1 else "")
                out = os.path.join(tmp, "np%d-s%d.h5" % (np_, S))
                rc, so2, se2, codes = prune(np_, model, out, method, sparsity, text, S, extra)
                report(codes == [0] * np_, "%s: exit codes %s" % (tag, codes))
                if codes != [0] * np_:
                    print(se2[-2000:])
                    continue
                if S > 1:
                    report("stage %d: ranks" % (S - 1) in so2, "%s: the stages are reported" % tag)
                compare(tag, ref, read(out))
                got = (ppl(so2, "dense"), ppl(so2, "pruned"))
                rel = max(abs(a - b) / b for a, b in zip(got, ref_ppl))
                report(rel <= 1e-12, "%s: dense and pruned perplexity %s == %s (rel %.2g)" % (tag, got, ref_ppl, rel))
            if name == "opt-preln" and method == "sparsegpt":
                # determinism, eval and export through the pipeline
                out2 = os.path.join(tmp, "again.h5")
                rc, so3, se3, codes = prune(4, model, out2, method, sparsity, text, 2, extra)
                a, b = read(os.path.join(tmp, "np4-s2.h5")), read(out2)
                same = all(np.array_equal(a[0][n], b[0][n]) and np.array_equal(a[1][n], b[1][n]) for n in a[0])
                report(codes == [0] * 4 and same and a[2] == b[2],
                       "%s: the same staged command twice gives the same weights, masks, statistics" % base)
                ev = []
                for np_, S in ((1, 0), (2, 2), (4, 2), (4, 3)):
                    args = ["eval", "--model", model, "--weights", ref_out, "--text", text, "--seqlen", "64",
                            "--max-windows", "5"] + (["--stages", str(S)] if S else [])
                    rc, so4, se4, codes = sds_run.run(np_, args)
                    last = sds_run.last_line(so4)
                    ev.append(last)
                    report(codes == [0] * np_, "%s: eval at %d ranks, %d stages exits 0" % (base, np_, max(S, 1)))
                report(len(set(ev)) == 1 and ev[0].startswith("perplexity"),
                       "%s: eval --weights at 1 rank and through 2 and 3 stages: %s" % (base, ev))
                exp = {}
                for S in (1, 2):
                    d = os.path.join(tmp, "hf-s%d" % S)
                    o = os.path.join(tmp, "exp-s%d.h5" % S)
                    rc, so5, se5, codes = prune(2, model, o, method, sparsity, text, S, ["--export-hf", d])
                    files = sorted(glob.glob(os.path.join(d, "*.safetensors")))
                    exp[S] = b"".join(open(p, "rb").read() for p in files) if codes == [0, 0] else None
                    report(codes == [0, 0] and files, "%s: --export-hf with %d stage(s) exits 0" % (base, S))
                report(exp[1] is not None and exp[1] == exp[2],
                       "%s: --export-hf writes the same safetensors with 2 stages as with 1" % base)

        # SparseGPT on each stage's BLACS grid (--local-hessian-max 0): a rank holds about 1/G
        # of the Hessians (the exact sums of the 256 x 256 blocks on or above the diagonal that
        # it computes, 16 bytes per entry while the statistics run; then H's fp32 piece, factored
        # in place), plus buffers that do not scale (a sequence's inputs, one tile, the sweep's
        # panel). prune reports the largest rank's bytes of each (mpi/dist_gram.h states the
        # bound).
        model = fx.make_opt("plan-opt")
        cfg = json.load(open(os.path.join(model, "config.json")))
        C, F = cfg["hidden_size"], cfg["ffn_dim"]
        NB = 256  # mpi/prune.c's GRID_NB

        def upper_blocks(n):
            b = (n + NB - 1) // NB
            return b * (b + 1) // 2

        # the four input groups' exact sums, whole: one block of sums per upper block
        sums = 16 * NB * NB * (3 * upper_blocks(C) + upper_blocks(F))
        piece, ref = {}, None
        for np_ in (1, 2, 4):
            out = os.path.join(tmp, "grid%d.h5" % np_)
            args = ["prune", "--model", model, "--calib", fx.WIKI, "--method", "sparsegpt",
                    "--sparsity", "0.5", "--nsamples", "4", "--seqlen", "32", "--out", out,
                    "--json", out + ".json", "--local-hessian-max", "0"]
            rc, so, se, codes = sds_run.run(np_, args)
            report(codes == [0] * np_, "plan-opt sparsegpt at %d ranks: exit codes %s" % (np_, codes))
            if codes != [0] * np_:
                print(se[-2000:])
                continue
            # (four grids share the stage's communicator: BLACS must not warn at their release)
            report("BLACS" not in se, "plan-opt sparsegpt at %d ranks: no BLACS warning" % np_)
            piece[np_] = json.load(open(out + ".json"))["grid_piece_bytes_max"]
            if np_ == 1:
                ref = read(out)
            else:
                compare("plan-opt sparsegpt 0.5, %d ranks" % np_, ref, read(out))
        if 1 in piece:
            report(sums <= piece[1] <= 1.05 * sums,
                   "1 rank holds the whole Hessians' sums: %d bytes (16 x 256^2 x upper blocks = %d)"
                   % (piece[1], sums))
        for G in (2, 4):
            if G in piece and 1 in piece:
                # a share, and at most one block per input group more (the blocks' granularity)
                allow = 1.1 * piece[1] / G + 4 * 16 * NB * NB
                report(piece[G] <= allow,
                       "%d ranks: the largest rank holds %d bytes of the distributed Hessians, "
                       "%.3f of 1 rank's (bound 1.1 / %d and one block per group: %d)"
                       % (G, piece[G], piece[G] / piece[1], G, allow))
        # The local route (the default at widths up to 2048): each rank sums its own sequences'
        # Grams, the exact sums are all-reduced and each rank keeps its piece. Against the grid's
        # result: the per-sequence products are the same calls' up to OpenBLAS's ssyrk against
        # its per-block sgemm (mpi/dist_gram.h: the same bits with the SkylakeX and Cooperlake
        # kernels; the Haswell and Zen kernels round the two differently, and with 128 tokens
        # for 512- and 2048-wide Hessians near-tie mask choices then go either way: 99.42% of
        # the masks agreed on an AMD EPYC, and one sublayer's error moved by 0.985%). So the
        # masks within the 1% of the rank-count check of test_prune.py, and what H's last bits
        # may change: the first layer's errors (the same inputs in both runs) within 1% (the
        # golden tests' criterion; 0.39% the most seen), and the mean error within 1%.
        if ref is not None:
            out = os.path.join(tmp, "local2.h5")
            args = ["prune", "--model", model, "--calib", fx.WIKI, "--method", "sparsegpt",
                    "--sparsity", "0.5", "--nsamples", "4", "--seqlen", "32", "--out", out,
                    "--json", out + ".json"]
            rc, so, se, codes = sds_run.run(2, args)
            report(codes == [0, 0], "plan-opt sparsegpt, local route at 2 ranks: exit codes %s" % codes)
            if codes == [0, 0]:
                got = read(out)
                agree = np.mean([np.mean(ref[1][n] == got[1][n]) for n in ref[1]])
                same = all(np.array_equal(ref[0][n], got[0][n]) for n in ref[0])
                report(agree >= 0.99, "local route vs the grid's 1-rank run: masks agree on "
                       "%.4f%% of entries (weights identical: %s)" % (100 * agree, same))
                e_grid, e_local = subl(os.path.join(tmp, "grid1.h5.json")), subl(out + ".json")
                first = max(abs(e_local[n]["rel_err"] - e_grid[n]["rel_err"]) / e_grid[n]["rel_err"]
                            for n in e_grid if ".layers.0." in n)
                mean = [np.mean([e[n]["rel_err"] for n in e_grid]) for e in (e_local, e_grid)]
                report(set(e_grid) == set(e_local) and first <= 0.01 and
                       abs(mean[0] - mean[1]) <= 0.01 * mean[1],
                       "local route vs the grid's 1-rank run: the first layer's errors within %.2g%%, "
                       "the mean error %.5g against the grid's %.5g" % (100 * first, mean[0], mean[1]))
                whole = sum(16 * n * (n + 1) // 2 + 4 * n * n for n in (C, C, C, F))
                held = json.load(open(out + ".json"))["grid_piece_bytes_max"]
                report(held >= whole, "local route: each rank holds the whole Hessians' sums "
                       "(%d bytes >= %d)" % (held, whole))

        # errors, agreed on every rank
        model = fx.make_opt("opt-preln")
        for np_, args, code, needle in [
                (2, ["--stages", "3"], 2, "--stages 3"),
                (4, ["--stages", "4"], 2, "--stages 4")]:
            out = os.path.join(tmp, "bad.h5")
            rc, so, se, codes = prune(np_, model, out, "sparsegpt", "2:4", text, 0, args)
            msgs = [ln for ln in se.splitlines() if "sds-mpi: error" in ln]
            report(codes == [code] * np_ and len(msgs) == 1 and needle in msgs[0] and not os.path.exists(out),
                   "%s at %d ranks: exit %s, one message %s" % (" ".join(args), np_, codes, msgs[:1]))
        # a tensor of the last layer missing: only the last stage reads it
        broken = os.path.join(tmp, "broken")
        shutil.copytree(model, broken)
        from safetensors.numpy import load_file, save_file
        st = os.path.join(broken, "model.safetensors")
        tensors = load_file(st)
        gone = [k for k in tensors if k.endswith("layers.2.fc2.weight")][0]
        del tensors[gone]
        save_file(tensors, st, metadata={"format": "pt"})
        out = os.path.join(tmp, "broken.h5")
        rc, so, se, codes = prune(4, broken, out, "sparsegpt", "2:4", text, 2)
        msgs = [ln for ln in se.splitlines() if "sds-mpi: error" in ln]
        report(codes == [3] * 4 and len(msgs) == 1 and gone in msgs[0] and "rank 2 of 4" in msgs[0]
               and not os.path.exists(out),
               "a tensor missing from the last stage's layers: exit %s, one message %s" % (codes, msgs[:1]))
        # failures injected on one rank of four (SDS_TEST_FAIL, src/sds_error.h): a Cholesky
        # factorisation that fails after the last damping retry, a failing write
        for inject, code, needle in [("cholesky:3", 4, "model.decoder.layers.1."),
                                     ("write:1", 5, "writing rows")]:
            out = os.path.join(tmp, "inject.h5")
            args = ["prune", "--model", model, "--calib", fx.WIKI, "--method", "sparsegpt",
                    "--sparsity", "2:4", "--nsamples", "7", "--seqlen", "64", "--out", out,
                    "--stages", "2"]
            rc, so, se, codes = sds_run.run(4, args, env={"SDS_TEST_FAIL": inject})
            r = inject.split(":")[1]
            # (the output's own agreement relays a write failure: "... (on rank R)")
            msgs = [ln for ln in se.splitlines() if "sds-mpi: error" in ln]
            left = [f for f in os.listdir(tmp) if f.startswith("inject.h5")]
            named = msgs and ("(rank %s of 4)" % r in msgs[0] or "(on rank %s)" % r in msgs[0])
            report(codes == [code] * 4 and len(msgs) == 1 and named and needle in msgs[0]
                   and not left,
                   "%s injected, 4 ranks, 2 stages: exit %s, one message %s, nothing left %s" %
                   (inject, codes, msgs[:1], left))
        parallel_order(tmp, text)
    print("FAILED %d" % failed if failed else "ALL OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
