"""Logits of sds-mpi's forward passes against transformers (OPTForCausalLM, LlamaForCausalLM).

Arguments: the model_logits binary, then fixture names or the families "opt" / "llama"
(default: every fixture).

Tolerance: max |ours - ref| <= 1e-5 * max |ref| per checkpoint. Both sides compute in fp32 with
different summation orders (OpenBLAS vs PyTorch kernels, double-accumulated norms here); with
K <= 256-term dot products through <= 3 layers the rounding differences are ~1e-6 relative, so
1e-5 is loose enough to be stable and tight enough that any wrong op (a missing bias, a wrong
norm placement, an off-by-one position, a missing projection, a RoPE schedule left out) fails by
orders of magnitude (dropping the llama3 or linear RoPE scaling gives rel ~0.5).
Measured (256 tokens, OPENBLAS_NUM_THREADS=1): opt-preln 5.8e-7, opt-postln-proj 5.2e-7,
opt-fp16-sharded 4.1e-7, llama-gqa 8.7e-7, llama-tied-bias 7.1e-7, llama3-rope 9.3e-7,
llama-bf16-sharded 8.0e-7.
Llama's RoPE angles are formed as transformers forms them (fp32 inv_freq, fp32 products): at
256 positions double-precision angles measure the same, but fp32 rounding of the angle grows with
the position, so matching it keeps long windows in agreement too.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_fixtures as fx  # noqa: E402

TOL = 1e-5


def main():
    exe = sys.argv[1]
    names = []
    for a in sys.argv[2:] or ["opt", "llama"]:
        names += {"opt": fx.OPT_CHECKPOINTS, "llama": fx.LLAMA_CHECKPOINTS}.get(a, [a])
    text = open(fx.WIKI, encoding="utf-8").read()[:3000]
    ids = fx.opt_encode(text)[:200]
    g = torch.Generator().manual_seed(7)
    ids = ids + torch.randint(0, 50265, (56,), generator=g).tolist()  # rare ids too
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        idf = os.path.join(tmp, "ids.bin")
        np.asarray(ids, dtype="<i4").tofile(idf)
        for name in names:
            path = fx.make(name)
            out = os.path.join(tmp, name + ".bin")
            subprocess.run([exe, path, idf, out], check=True)
            model = fx.load_fp32(name)
            with torch.no_grad():
                ref = model(torch.tensor([ids])).logits[0].numpy()
            ours = np.fromfile(out, dtype="<f4").reshape(ref.shape)
            err = np.abs(ours - ref).max()
            scale = np.abs(ref).max()
            ok = err <= TOL * scale
            failed += not ok
            print(f"{'OK' if ok else 'NOT OK'} {name}: max|diff| {err:.3e}, max|ref| {scale:.3e}, "
                  f"rel {err / scale:.3e} (tol {TOL:.0e}), {len(ids)} tokens")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
