"""Bad input at 2 ranks: one clear message naming the culprit, the same non-zero exit code on
every rank (and from mpirun), no hang, no crash, and no output file left behind."""
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import hf_fixtures as fx  # noqa: E402
import sds_run  # noqa: E402

USAGE, INPUT = 2, 3


def clone(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite(ckpt, fn):
    """Loads model.safetensors of ckpt, lets fn edit the dict, saves it back."""
    f = os.path.join(ckpt, "model.safetensors")
    t = load_file(f)
    fn(t)
    save_file(t, f, metadata={"format": "pt"})


def main():
    base = fx.make_opt("opt-preln")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "text.txt")
        with open(text, "w", encoding="utf-8") as f:
            f.write(open(fx.WIKI, encoding="utf-8").read()[:20000])
        cases = []

        def case(name, model, txt, code, needles, extra=()):
            cases.append((name, model, txt, code, needles, list(extra)))

        case("model path does not exist", os.path.join(tmp, "no-such-model"), text, INPUT,
             ["no-such-model"])

        d = clone(base, os.path.join(tmp, "truncated"))
        st = os.path.join(d, "model.safetensors")
        os.truncate(st, os.path.getsize(st) - 4096)
        case("truncated safetensors", d, text, INPUT, ["model.safetensors", "truncated"])

        d = clone(base, os.path.join(tmp, "badjson"))
        st = os.path.join(d, "model.safetensors")
        with open(st, "r+b") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(8)
            f.write(b"{not json" + b" " * (n - 9))
        case("header is not JSON", d, text, INPUT, ["model.safetensors", "JSON"])

        d = clone(base, os.path.join(tmp, "missing"))
        rewrite(d, lambda t: t.pop("model.decoder.layers.1.fc2.weight"))
        case("tensor missing", d, text, INPUT, ["model.decoder.layers.1.fc2.weight", "missing"])

        d = clone(base, os.path.join(tmp, "shape"))
        rewrite(d, lambda t: t.__setitem__("model.decoder.layers.0.fc1.weight",
                                           np.ascontiguousarray(t["model.decoder.layers.0.fc1.weight"].T)))
        case("tensor with the wrong shape", d, text, INPUT,
             ["model.decoder.layers.0.fc1.weight", "shape"])

        d = clone(base, os.path.join(tmp, "dtype"))
        rewrite(d, lambda t: t.__setitem__("model.decoder.layers.0.self_attn.k_proj.bias",
                                           t["model.decoder.layers.0.self_attn.k_proj.bias"].astype(np.int64)))
        case("tensor with the wrong dtype", d, text, INPUT,
             ["model.decoder.layers.0.self_attn.k_proj.bias", "I64"])

        def put_nan(t):
            w = t["model.decoder.layers.2.self_attn.v_proj.weight"].copy()
            w[3, 5] = np.nan
            t["model.decoder.layers.2.self_attn.v_proj.weight"] = w
        d = clone(base, os.path.join(tmp, "nan"))
        rewrite(d, put_nan)
        case("NaN in a weight", d, text, INPUT, ["model.decoder.layers.2.self_attn.v_proj.weight", "NaN"])

        llama = fx.make_llama("llama-gqa")
        d = clone(llama, os.path.join(tmp, "rope-dynamic"))
        cf = os.path.join(d, "config.json")
        c = json.load(open(cf))
        c["rope_scaling"] = {"rope_type": "dynamic", "factor": 2.0}
        json.dump(c, open(cf, "w"))
        case("unsupported rope_scaling type", d, text, INPUT,
             ["config.json", "rope_scaling", "dynamic"])

        d = clone(llama, os.path.join(tmp, "llama-missing"))
        rewrite(d, lambda t: t.pop("model.layers.1.mlp.gate_proj.weight"))
        case("Llama tensor missing", d, text, INPUT,
             ["model.layers.1.mlp.gate_proj.weight", "missing"])

        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").close()
        case("empty text file", base, empty, INPUT, ["empty.txt", "empty"])

        short = os.path.join(tmp, "short.txt")
        with open(short, "w") as f:
            f.write("Only a few words here.")
        case("text shorter than one window", base, short, INPUT, ["short.txt", "fewer than one window"])

        case("unknown option", base, text, USAGE, ["--bogus"], ["--bogus", "1"])
        case("bad option value", base, text, USAGE, ["--seqlen"], ["--seqlen", "abc"])
        case("seqlen beyond the model", base, text, USAGE, ["--seqlen"], ["--seqlen", "100000"])

        for name, model, txt, code, needles, extra in cases:
            out_json = os.path.join(tmp, "out.json")
            args = ["eval", "--model", model, "--text", txt, "--seqlen", "128", "--json", out_json]
            args += extra
            try:
                _, out, err, codes = sds_run.run(2, args, timeout=120)
                rc, _, _ = sds_run.run_plain(2, args, timeout=120)
            except Exception as e:  # a hang is a failure, not a stuck suite
                print("NOT OK %s: %s" % (name, e))
                failed += 1
                continue
            msgs = [ln for ln in err.splitlines() if ln.startswith("sds-mpi: error")]
            problems = []
            if codes != [code, code]:
                problems.append("rank exit codes %s, expected %d on both" % (codes, code))
            if rc != code:
                problems.append("mpirun exit %d, expected %d" % (rc, code))
            if len(msgs) != 1:
                problems.append("%d error lines, expected exactly 1" % len(msgs))
            for n in needles:
                if msgs and n not in msgs[0]:
                    problems.append("message lacks %r" % n)
            if any(k in err for k in ("Segmentation fault", "signal 11", "signal 6", "core dumped",
                                      "assertion failed", "Sanitizer")):
                problems.append("crash output")
            if os.path.exists(out_json):
                problems.append("output file left behind")
            failed += bool(problems)
            print("%s %s: %s%s" % ("NOT OK" if problems else "OK", name, msgs[0] if msgs else err[-300:],
                                   "" if not problems else "\n    " + "; ".join(problems)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
