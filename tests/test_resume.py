"""Checkpoint and resume of sds-mpi prune (SPEC 5) on generated OPT and Llama checkpoints, 2 ranks.

The claim: a run stopped after any layer and resumed with --resume writes the very output an
uninterrupted run writes. "The same" here is bitwise: the HDF5 weights and masks (every byte),
the sublayer order, every statistic but the seconds, the fingerprint and configuration, the JSON
summary's figures and the printed summary table. Bitwise is the right bar, not a tolerance: the
resumed run starts from the exact bytes the interrupted one had (weights, masks, activations),
and with the same rank count and BLAS threads every later operation is the same.

Checks:
(a) SDS_TEST_STOP_AFTER_LAYER=N (the test hook; as if a signal came during layer N): exit 75 on
    every rank, one message naming the checkpoint and --resume, the checkpoint present, no output
    file, no temporary HDF5 left; then --resume: exit 0, output identical to the uninterrupted
    run's, checkpoint removed. For magnitude, SparseGPT and SDS (over SparseGPT with the dense
    target, so the dense path's activations travel too) on OPT and Llama; stops after the first,
    middle and last layer; a resumed run stopped again and resumed again; --eval's perplexities.
(b) A real SIGUSR1 sent to mpirun mid-run (Open MPI forwards it to every rank): mpirun exits 75
    after the layer under way, then --resume: identical output.
    SIGTERM to one rank only (as Slurm signals srun's tasks): every rank stops at the same layer.
(c) --checkpoint-every-layer, then kill -9 of mpirun and both ranks during layer 1: --resume goes
    on from layer 0's checkpoint; identical output.
(d) --resume with another --sparsity, or at another rank count, and a rerun without --resume
    while a checkpoint exists: exit 2 on every rank, one message naming --resume (and what
    differs); the checkpoint untouched and still resumable.
(e) A truncated rank-1 activation file, a flipped byte in a layer file, a truncated meta.json:
    exit 3 on every rank, one message naming the file.
(f) --resume with no checkpoint: a line saying so, then a run from scratch with identical output.
(h) Pipeline stages: SparseGPT on 4 ranks in 2 stages stopped after layer 0 (a stage boundary)
    and layer 1 (inside the second stage), SDS (dense target) on 3 ranks in 3 stages resumed and
    stopped again, --checkpoint-every-layer with 2 stages: only the ranks of the stage that works
    on the next layer save activations, every layer file is there, the resumed output is bitwise
    the uninterrupted staged run's; --resume with another --stages: exit 2 naming it.
(g) The job scripts: both pass `bash -n`; jobs/slurm_prune.sbatch with stand-ins for srun (runs
    mpirun) and scontrol (records its arguments) and SLURM_JOB_ID set: USR1 to the batch script
    mid-run reaches the ranks, exit 75, `scontrol requeue JOBID`; the requeued run resumes to the
    uninterrupted run's output. jobs/pbs_prune.pbs outside PBS with PBS_JOBID set, a stand-in
    qsub and a walltime of 300 s plus a few: its own timer sends USR1 300 s early (a few seconds
    into the run), exit 75, the continuation submitted with `-W depend=afterany:JOBID`, which
    resumes and finishes.
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py

sys.path.insert(0, os.path.dirname(__file__))
import hf_fixtures as fx  # noqa: E402
import sds_run  # noqa: E402

failed = 0


def report(ok, what):
    global failed
    failed += not ok
    print("%s %s" % ("OK" if ok else "NOT OK", what), flush=True)


def prune_args(model, method, out, nsamples=6, seqlen=64, extra=()):
    return ["prune", "--model", model, "--calib", fx.WIKI, "--method", method, "--sparsity", "2:4",
            "--nsamples", str(nsamples), "--seqlen", str(seqlen), "--out", out,
            "--json", out + ".json"] + list(extra)


def messages(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("sds-mpi:")]


def summary_table(stdout):
    """The final table: from "summary (mean" up to the "wrote" line (which has the seconds)."""
    lines = stdout.splitlines()
    start = [i for i, ln in enumerate(lines) if ln.startswith("summary (mean")]
    if not start:
        return None
    out = []
    for ln in lines[start[0]:]:
        if ln.startswith("wrote "):
            break
        out.append(ln)
    return out


def no_seconds(d):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d.items() if k != "seconds"}


def same_output(a, b, b_json=None):
    """(ok, why): a and b (HDF5 outputs, with their .json summaries) hold the same result."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        na, nb = list(fa["weights"].keys()), list(fb["weights"].keys())
        if na != nb or list(fa["masks"].keys()) != list(fb["masks"].keys()):
            return False, "sublayer lists differ"
        # creation order, as written (the file tracks it)
        order = lambda f: [f["weights"][n].name for n in f["weights"]]  # noqa: E731
        if order(fa) != order(fb):
            return False, "sublayer order differs"
        for n in na:
            wa, wb = fa["weights"][n][()], fb["weights"][n][()]
            ma, mb = fa["masks"][n][()], fb["masks"][n][()]
            if wa.dtype != wb.dtype or wa.tobytes() != wb.tobytes():
                return False, "weights of %s differ" % n
            if ma.dtype != mb.dtype or ma.tobytes() != mb.tobytes():
                return False, "mask of %s differs" % n
            if no_seconds(dict(fa["weights"][n].attrs)) != no_seconds(dict(fb["weights"][n].attrs)):
                return False, "statistics of %s differ" % n
        if fa.attrs["fingerprint"] != fb.attrs["fingerprint"]:
            return False, "fingerprints differ"
        if fa["config"][()] != fb["config"][()]:
            return False, "configurations differ"
    ja, jb = json.load(open(a + ".json")), json.load(open(b_json or b + ".json"))
    if [no_seconds(s) for s in ja["sublayers"]] != [no_seconds(s) for s in jb["sublayers"]]:
        return False, "JSON summaries differ"
    if ja["options"] != jb["options"]:
        return False, "JSON options differ"
    for k in ("perplexity_dense", "perplexity_pruned"):
        if ja.get(k) != jb.get(k):
            return False, "JSON %s differs" % k
    return True, "%d sublayers bitwise equal" % len(na)


def tmp_leftovers(d):
    # (what kill -9 leaves of its temporary output, killed.h5.tmp.*, is no concern of the others)
    return [p for p in os.listdir(d) if ".tmp" in p and not p.startswith("killed.h5")]


def meta_of(out):
    p = out + ".ckpt/meta.json"
    return json.load(open(p)) if os.path.exists(p) else None


def stopped_run(tag, args, layer, tmp, out, np_=2):
    """Runs with the test hook stopping after `layer`; checks exit 75 everywhere and the state."""
    rc, so, se, codes = sds_run.run(np_, args, env={"SDS_TEST_STOP_AFTER_LAYER": str(layer)})
    msgs = messages(se)
    meta = meta_of(out)
    ok = codes == [75] * np_ and len(msgs) == 1
    ok = ok and "--resume" in msgs[0] and out + ".ckpt" in msgs[0] and "exit 75" in msgs[0]
    ok = ok and meta is not None and meta["last_completed_layer"] == layer
    ok = ok and not os.path.exists(out) and not os.path.exists(out + ".json")
    ok = ok and not tmp_leftovers(tmp)
    report(ok, "%s: stopped after layer %d: codes %s, checkpoint %s, no output, no temporary "
           "file; %s" % (tag, layer, codes, "present" if meta else "MISSING",
                         msgs[0] if len(msgs) == 1 else msgs or se[-400:]))
    return ok


def resumed_run(tag, args, full, out, stdout_full, expect_from, np_=2):
    rc, so, se, codes = sds_run.run(np_, args + ["--resume"])
    ok = codes == [0] * np_ and ("resumed from %s.ckpt: layers 0-%d" % (out, expect_from)) in so
    same, why = same_output(full, out) if ok else (False, se[-600:])
    table = summary_table(so) == summary_table(stdout_full)
    gone = not os.path.exists(out + ".ckpt")
    report(ok and same and table and gone,
           "%s: resumed after layer %d: codes %s, %s, summary table %s, checkpoint %s" %
           (tag, expect_from, codes, why, "equal" if table else "DIFFERS",
            "removed" if gone else "LEFT"))
    return so


def children_of(pid):
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % p).read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(p))
    return kids


def start_mpirun(args):
    """mpirun on sds-mpi directly, as a user runs it (no wrapper between it and the ranks)."""
    return subprocess.Popen(sds_run.MPIRUN + ["-np", "2", sds_run.BIN] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_line(p, prefix, timeout=300):
    """Reads p's stdout until a line starting with prefix; the lines read."""
    lines = []
    t0 = time.time()
    for ln in p.stdout:
        lines.append(ln)
        if ln.startswith(prefix) or time.time() - t0 > timeout:
            break
    return lines


def main():
    with tempfile.TemporaryDirectory() as tmp:
        evaltext = os.path.join(tmp, "eval.txt")
        with open(evaltext, "w", encoding="utf-8") as fh:
            fh.write(open(fx.WIKI, encoding="utf-8").read()[:20000])
        models = {"opt-preln": fx.make_opt("opt-preln"), "llama-gqa": fx.make_llama("llama-gqa")}
        full = {}
        kept = os.path.join(tmp, "kept.ckpt")

        # (a) the test hook, every method, both families
        for mname, model in models.items():
            # (under the sanitizers every method once, sds on both families: sds_run.pick)
            methods = sds_run.pick(("magnitude", "sparsegpt", "sds"),
                                   ("sparsegpt", "sds") if mname == "opt-preln" else ("magnitude", "sds"))
            for method in methods:
                tag = "%s %s" % (mname, method)
                extra = ["--eval", evaltext, "--eval-max-windows", "2"] if method == "sparsegpt" else []
                f = os.path.join(tmp, "full-%s-%s.h5" % (mname, method))
                rc, so_full, se, codes = sds_run.run(2, prune_args(model, method, f, extra=extra))
                report(codes == [0, 0] and not os.path.exists(f + ".ckpt"),
                       "%s: uninterrupted run, codes %s, no checkpoint left" % (tag, codes))
                full[(mname, method)] = (f, so_full)
                stops = [0]
                if mname == "opt-preln" and method == "sparsegpt":
                    stops = [0, 1, 2]  # the first, a middle and the last layer
                for layer in stops:
                    out = os.path.join(tmp, "res-%s-%s-%d.h5" % (mname, method, layer))
                    args = prune_args(model, method, out, extra=extra)
                    if not stopped_run(tag, args, layer, tmp, out):
                        continue
                    if (mname, method, layer) == ("opt-preln", "sparsegpt", 0):
                        shutil.copytree(out + ".ckpt", kept)  # for (d) and (e)
                    if (mname, method) == ("llama-gqa", "sds"):
                        # a resumed run stopped again (its files replace the first checkpoint's)
                        rc, so, se, codes = sds_run.run(2, args + ["--resume"],
                                                        env={"SDS_TEST_STOP_AFTER_LAYER": "1"})
                        meta = meta_of(out)
                        files = sorted(os.listdir(out + ".ckpt")) if meta else None
                        report(codes == [75, 75] and meta and meta["last_completed_layer"] == 1 and
                               files == ["layer-0000.bin", "layer-0001.bin", "meta.json",
                                         "rank-0.after-layer-0001.bin",
                                         "rank-1.after-layer-0001.bin"],
                               "%s: resumed, stopped again after layer 1: codes %s, files %s" %
                               (tag, codes, files))
                        layer = 1
                    so = resumed_run(tag, args, f, out, so_full, layer)
                    if extra:
                        pp = lambda s: [ln for ln in s.splitlines()  # noqa: E731
                                        if ln.startswith(("dense perplexity", "pruned perplexity"))]
                        report(pp(so) == pp(so_full) and len(pp(so)) == 2,
                               "%s: --eval after resuming: %s" % (tag, pp(so)))

        # (b) a real SIGUSR1 to mpirun while layer 0 runs; more work, so that layers take a while
        # (the signal goes out on layer 0's first progress line, and any stop before the output
        # is written is mid-run: the stop is checked after each layer, the last one included)
        model = models["opt-preln"]
        heavy = dict(nsamples=32, seqlen=128)
        f = os.path.join(tmp, "full-heavy.h5")
        t0 = time.time()
        rc, so_full, se, codes = sds_run.run(2, prune_args(model, "sds", f, **heavy))
        t_heavy = time.time() - t0
        full_heavy = (f, so_full)
        report(codes == [0, 0], "opt-preln sds %dx%d: uninterrupted run, codes %s" %
               (heavy["nsamples"], heavy["seqlen"], codes))
        out = os.path.join(tmp, "sigusr1.h5")
        args = prune_args(model, "sds", out, **heavy)
        p = start_mpirun(args)
        wait_for_line(p, "    0  ")  # layer 0's first sublayer is done: the run is mid-layer
        p.send_signal(signal.SIGUSR1)
        so, se = p.communicate(timeout=300)
        meta = meta_of(out)
        msgs = messages(se)
        ok = p.returncode == 75 and meta is not None and not os.path.exists(out)
        ok = ok and len(msgs) == 1 and msgs[0].startswith("sds-mpi: SIGUSR1: stopped after layer")
        report(ok, "SIGUSR1 to mpirun mid-run: mpirun exit %s, checkpoint after layer %s of 0-2, %s"
               % (p.returncode, meta["last_completed_layer"] if meta else None,
                  msgs[0] if len(msgs) == 1 else msgs or se[-400:]))
        if ok:
            resumed_run("SIGUSR1", args, f, out, so_full, meta["last_completed_layer"])

        # SIGTERM to one rank only (Slurm signals srun's tasks one by one): all stop together
        out = os.path.join(tmp, "sigterm.h5")
        args = prune_args(model, "sds", out, **heavy)
        p = start_mpirun(args)
        wait_for_line(p, "    0  ")
        ranks = sorted(children_of(p.pid))
        if len(ranks) == 2:
            os.kill(ranks[1], signal.SIGTERM)
        so, se = p.communicate(timeout=300)
        meta = meta_of(out)
        msgs = messages(se)
        ok = len(ranks) == 2 and p.returncode == 75 and meta is not None
        ok = ok and not os.path.exists(out) and len(msgs) == 1 and "SIGTERM" in msgs[0]
        report(ok, "SIGTERM to one of the %d ranks mid-run: mpirun exit %s, checkpoint after layer "
               "%s, %s" % (len(ranks), p.returncode, meta["last_completed_layer"] if meta else None,
                           msgs[0] if len(msgs) == 1 else msgs or se[-400:]))
        if ok:
            resumed_run("SIGTERM", args, f, out, so_full, meta["last_completed_layer"])

        # (c) --checkpoint-every-layer, then kill -9 of the whole job during layer 1
        out = os.path.join(tmp, "killed.h5")
        args = prune_args(model, "sds", out, **heavy, extra=["--checkpoint-every-layer"])
        p = start_mpirun(args)
        wait_for_line(p, "    1  ")  # layer 0 is checkpointed, layer 1 is under way
        ranks = children_of(p.pid)
        for pid in ranks + [p.pid]:
            os.kill(pid, signal.SIGKILL)
        p.communicate(timeout=60)
        for pid in ranks:  # reaped by init; wait until they are gone
            for _ in range(100):
                if not os.path.exists("/proc/%d" % pid):
                    break
                time.sleep(0.05)
        meta = meta_of(out)
        report(p.returncode == -signal.SIGKILL and len(ranks) == 2 and meta is not None and
               meta["last_completed_layer"] == 0 and not os.path.exists(out),
               "kill -9 of mpirun and its %d ranks during layer 1: checkpoint after layer %s, no "
               "output" % (len(ranks), meta["last_completed_layer"] if meta else None))
        if meta:
            resumed_run("after kill -9", args, f, out, so_full, 0)

        # (d) a checkpoint that does not match the run
        model = models["opt-preln"]
        f, so_full = full[("opt-preln", "sparsegpt")]
        out = os.path.join(tmp, "mismatch.h5")
        args = prune_args(model, "sparsegpt", out,
                          extra=["--eval", evaltext, "--eval-max-windows", "2"])
        if os.path.exists(kept):
            shutil.copytree(kept, out + ".ckpt")  # the checkpoint names no --out: it moves
            meta_bytes = open(out + ".ckpt/meta.json", "rb").read()
            sp = args.index("--sparsity") + 1
            cases = [("another --sparsity", 2, args[:sp] + ["0.5"] + args[sp + 1:] + ["--resume"],
                      ["--resume", "--sparsity 2:4 (now 0.5)"]),
                     ("another rank count", 1, args + ["--resume"], ["--resume", "2 ranks", "has 1"]),
                     ("a checkpoint there, no --resume", 2, args, ["--resume", out + ".ckpt"])]
            for name, np_, a, needles in cases:
                rc, so, se, codes = sds_run.run(np_, a, timeout=120)
                msgs = messages(se)
                ok = codes == [2] * np_ and len(msgs) == 1 and all(n in msgs[0] for n in needles)
                ok = ok and open(out + ".ckpt/meta.json", "rb").read() == meta_bytes
                ok = ok and not os.path.exists(out) and not tmp_leftovers(tmp)
                report(ok, "resume with %s: codes %s, checkpoint untouched, %s" %
                       (name, codes, msgs[0] if msgs else se[-300:]))
            resumed_run("after the refusals", args, f, out, so_full, 0)
            os.unlink(out)
            os.unlink(out + ".json")

            # (e) damaged checkpoint files (copies of the one above)

            def truncate(path):
                with open(path, "r+b") as fh:
                    fh.truncate(os.path.getsize(path) - 100)

            def flip(path):
                with open(path, "r+b") as fh:
                    fh.seek(1000)
                    b = fh.read(1)
                    fh.seek(1000)
                    fh.write(bytes([b[0] ^ 0x10]))

            cases = [("truncated rank-1 activations", "rank-1.after-layer-0000.bin", truncate,
                      "truncated"),
                     ("a flipped byte in a layer file", "layer-0000.bin", flip, "corrupted"),
                     ("truncated meta.json", "meta.json", truncate, "malformed")]
            for name, fname, damage, word in cases:
                shutil.rmtree(out + ".ckpt", ignore_errors=True)
                shutil.copytree(kept, out + ".ckpt")
                damage(os.path.join(out + ".ckpt", fname))
                rc, so, se, codes = sds_run.run(2, args + ["--resume"], timeout=120)
                msgs = messages(se)
                ok = codes == [3, 3] and len(msgs) == 1 and fname in msgs[0] and word in msgs[0]
                ok = ok and not os.path.exists(out) and not tmp_leftovers(tmp)
                report(ok, "%s: codes %s, %s" % (name, codes, msgs[0] if msgs else se[-300:]))

        # (f) --resume with nothing to resume
        out = os.path.join(tmp, "fresh.h5")
        args = prune_args(model, "sparsegpt", out,
                          extra=["--eval", evaltext, "--eval-max-windows", "2"])
        rc, so, se, codes = sds_run.run(2, args + ["--resume"])
        said = ("--resume: no checkpoint in %s.ckpt, starting from scratch" % out) in so
        same, why = same_output(f, out) if codes == [0, 0] else (False, se[-400:])
        report(codes == [0, 0] and said and same,
               "--resume without a checkpoint: codes %s, %s, %s" %
               (codes, "says so" if said else "SAYS NOTHING", why))

        # (h) pipeline stages: each stage's leader writes its layers' files, the stage that
        # works on the next layer its activations; resumed runs are bitwise the uninterrupted
        # staged run (SparseGPT on the stages' grids; SDS with the dense target on the owners)
        staged = sds_run.pick([("opt-preln", "sparsegpt", 4, 2, [0, 1]),
                               ("llama-gqa", "sds", 3, 3, [0])],
                              [("opt-preln", "sparsegpt", 4, 2, [1]),
                               ("llama-gqa", "sds", 3, 3, [0])])
        for mname, method, np_, S, stops in staged:
            tag = "%s %s, %d ranks, %d stages" % (mname, method, np_, S)
            stg = ["--stages", str(S)]
            f = os.path.join(tmp, "full-staged-%s-%s.h5" % (mname, method))
            rc, so_full, se, codes = sds_run.run(np_, prune_args(models[mname], method, f, extra=stg))
            report(codes == [0] * np_ and ("stage %d: ranks" % (S - 1)) in so_full,
                   "%s: uninterrupted run, codes %s" % (tag, codes))
            for layer in stops:
                out = os.path.join(tmp, "staged-%s-%s-%d.h5" % (mname, method, layer))
                args = prune_args(models[mname], method, out, extra=stg)
                if not stopped_run(tag, args, layer, tmp, out, np_):
                    continue
                # activations only from the stage that works on the next layer (header-only files
                # from the others), and every layer file so far
                d = out + ".ckpt"
                sizes = [os.path.getsize(os.path.join(d, "rank-%d.after-layer-%04d.bin" % (r, layer)))
                         for r in range(np_)]
                holders = [r for r in range(np_) if sizes[r] > min(sizes)]
                layers_ok = all(os.path.exists(os.path.join(d, "layer-%04d.bin" % k))
                                for k in range(layer + 1))
                report(0 < len(holders) < np_ and layers_ok,
                       "%s: after layer %d: activation bytes per rank %s, layer files 0-%d %s" %
                       (tag, layer, sizes, layer, "present" if layers_ok else "MISSING"))
                if mname == "llama-gqa":
                    # resumed (inside a later stage), stopped again, resumed again
                    rc, so, se, codes = sds_run.run(np_, args + ["--resume"],
                                                    env={"SDS_TEST_STOP_AFTER_LAYER": "1"})
                    meta = meta_of(out)
                    report(codes == [75] * np_ and meta and meta["last_completed_layer"] == 1,
                           "%s: resumed, stopped again after layer 1: codes %s" % (tag, codes))
                    layer = 1
                resumed_run(tag, args, f, out, so_full, layer, np_)
            # the staged checkpoint is refused by a run with other stages (naming --stages)
            if mname == "opt-preln":
                out = os.path.join(tmp, "staged-other.h5")
                args = prune_args(models[mname], method, out, extra=stg)
                if stopped_run(tag, args, 0, tmp, out, np_):
                    other = prune_args(models[mname], method, out, extra=["--stages", "1", "--resume"])
                    rc, so, se, codes = sds_run.run(np_, other, timeout=120)
                    msgs = messages(se)
                    report(codes == [2] * np_ and len(msgs) == 1 and "--stages" in msgs[0]
                           and "--resume" in msgs[0],
                           "%s: resumed with --stages 1: codes %s, %s" %
                           (tag, codes, msgs[0] if msgs else se[-300:]))
                    resumed_run(tag + ", after the refusal", args, f, out, so_full, 0, np_)
        # --checkpoint-every-layer with stages: a checkpoint after each layer, the last one kept
        model = models["opt-preln"]
        f = os.path.join(tmp, "full-staged-every.h5")
        stg = ["--stages", "2"]
        rc, so_full, se, codes = sds_run.run(2, prune_args(model, "sds", f, extra=stg))
        out = os.path.join(tmp, "staged-every.h5")
        args = prune_args(model, "sds", out, extra=stg + ["--checkpoint-every-layer"])
        if stopped_run("opt-preln sds, 2 stages, --checkpoint-every-layer", args, 1, tmp, out):
            files = sorted(os.listdir(out + ".ckpt"))
            report(files == ["layer-0000.bin", "layer-0001.bin", "meta.json",
                             "rank-0.after-layer-0001.bin", "rank-1.after-layer-0001.bin"],
                   "opt-preln sds, 2 stages, --checkpoint-every-layer: files %s" % files)
            resumed_run("opt-preln sds, 2 stages, --checkpoint-every-layer",
                        prune_args(model, "sds", out, extra=stg), f, out, so_full, 1)

        # (g) the job scripts, with stand-ins for the batch system's commands
        f, so_full = full_heavy
        jobs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jobs")
        slurm, pbs = os.path.join(jobs, "slurm_prune.sbatch"), os.path.join(jobs, "pbs_prune.pbs")
        for script in (slurm, pbs):
            r = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
            report(r.returncode == 0, "bash -n %s %s" % (os.path.basename(script), r.stderr.strip()))
        fake = os.path.join(tmp, "fakebin")
        os.mkdir(fake)
        stubs = {"srun": '#!/bin/sh\n# srun stand-in: drops its options, runs the program under mpirun\n'
                         'while [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done\n'
                         'exec $SDS_MPIRUN -np "$SLURM_NTASKS" "$@"\n',
                 "scontrol": '#!/bin/sh\necho "scontrol $*" >> "$FAKE_LOG"\n',
                 "qsub": '#!/bin/sh\necho "qsub $*" >> "$FAKE_LOG"\n',
                 "qstat": '#!/bin/sh\nexit 1\n'}
        for name, text in stubs.items():
            with open(os.path.join(fake, name), "w") as fh:
                fh.write(text)
            os.chmod(os.path.join(fake, name), 0o755)
        fake_log = os.path.join(tmp, "fake.log")
        base = dict(os.environ, PATH=fake + os.pathsep + os.environ["PATH"], FAKE_LOG=fake_log,
                    SDS_MODEL=models["opt-preln"], SDS_CALIB=fx.WIKI, SDS_METHOD="sds",
                    SDS_SPARSITY="2:4", SDS_NSAMPLES=str(heavy["nsamples"]),
                    SDS_SEQLEN=str(heavy["seqlen"]), SDS_BIN=sds_run.BIN,
                    SDS_MPIRUN=" ".join(sds_run.MPIRUN),
                    SDS_MPIRUN_FLAGS=" ".join(sds_run.MPIRUN[1:]))

        def job(script, env, signal_when=None):
            p = subprocess.Popen(["bash", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=env, start_new_session=True)
            lines = []
            if signal_when:
                lines = wait_for_line(p, signal_when)
                p.send_signal(signal.SIGUSR1)
            rest, _ = p.communicate(timeout=300)
            return p.returncode, "".join(lines) + rest

        out = os.path.join(tmp, "slurm.h5")
        env = dict(base, SDS_OUT=out, SLURM_JOB_ID="4242", SLURM_NTASKS="2", SLURM_CPUS_PER_TASK="1")
        rc, log = job(slurm, env, signal_when="    0  ")
        calls = open(fake_log).read().splitlines() if os.path.exists(fake_log) else []
        ok = rc == 75 and "+ srun --mpi=pmix" in log and "SIGUSR1: asking sds-mpi" in log
        ok = ok and "sds-mpi: SIGUSR1: stopped after layer" in log and calls == ["scontrol requeue 4242"]
        report(ok, "slurm_prune.sbatch: USR1 to the batch script mid-run: exit %s, calls %s" % (rc, calls))
        if not ok:
            print(log[-1500:])
        env["SLURM_RESTART_COUNT"] = "1"
        rc, log = job(slurm, env)
        same, why = same_output(f, out, b_json=out[:-3] + ".json") if rc == 0 else (False, log[-800:])
        report(rc == 0 and "resumed from" in log and same and not os.path.exists(out + ".ckpt"),
               "slurm_prune.sbatch: the requeued job resumes: exit %s, %s" % (rc, why))

        os.unlink(fake_log)
        out = os.path.join(tmp, "pbs.h5")
        # the timer counts whole seconds and fires 1 s after mpirun starts: enough calibration
        # windows for a run that lasts several seconds even when the machine gets twice as fast
        scale = max(1, int(math.ceil(5.0 / t_heavy)))
        delay = 1
        env = dict(base, SDS_OUT=out, PBS_JOBID="777.fake", SDS_NP="2",
                   SDS_NSAMPLES=str(heavy["nsamples"] * scale), SDS_WALLTIME=str(300 + delay))
        rc, log = job(pbs, env)
        calls = open(fake_log).read().splitlines() if os.path.exists(fake_log) else []
        ok = rc == 75 and "SIGUSR1: asking sds-mpi" in log and len(calls) == 1
        ok = ok and "-W depend=afterany:777.fake" in calls[0] and "SDS_RESUBMITS=1" in calls[0]
        report(ok, "pbs_prune.pbs: its timer 300 s before a %d s walltime (%d windows, about %.1f s "
               "of work): exit %s, calls %s" % (300 + delay, heavy["nsamples"] * scale,
                                                 t_heavy * scale, rc, calls))
        if not ok:
            print(log[-1500:])
        env.update(SDS_RESUBMITS="1", SDS_WALLTIME="")
        rc, log = job(pbs, env)
        if scale == 1:
            same, why = same_output(f, out, b_json=out[:-3] + ".json") if rc == 0 else (False, log[-800:])
        else:  # (other settings than the uninterrupted run's: bitwise equality is checked above)
            same, why = os.path.exists(out), "output written"
        report(rc == 0 and "continuation 1" in log and "resumed from" in log and same,
               "pbs_prune.pbs: the continuation resumes: exit %s, %s" % (rc, why))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
