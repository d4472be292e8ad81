"""The C safetensors reader against torch: files written by the `safetensors` library and a
sharded tiny OPT written by transformers' save_pretrained, every tensor dumped by
`test_safetensors dump` and compared bit for bit with torch's .float().

Bit-exact is the right bar: F16 and BF16 widen to F32 exactly, so any difference is a bug.

usage: test_safetensors.py PATH/TO/test_safetensors TMPDIR
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

failures = 0


def check(ok, label):
    global failures
    print(("OK   " if ok else "FAIL ") + label, flush=True)
    if not ok:
        failures += 1


def dump(binary, path, name, out):
    r = subprocess.run([binary, "dump", path, name, out], capture_output=True, text=True)
    if r.returncode != 0:
        print("     dump failed (rc %d): %s" % (r.returncode, r.stderr.strip()))
        return None
    return np.fromfile(out, dtype="<f4")


def compare(binary, path, name, tensor, out, label):
    got = dump(binary, path, name, out)
    want = tensor.float().contiguous().numpy().reshape(-1).astype("<f4")
    if got is None:
        check(False, label)
        return
    ok = got.shape == want.shape and np.array_equal(got.view("<u4"), want.view("<u4"))
    if not ok and got.shape == want.shape:
        bad = np.nonzero(got.view("<u4") != want.view("<u4"))[0]
        print("     %d values differ, first at %d: %r vs %r"
              % (len(bad), bad[0], got[bad[0]], want[bad[0]]))
    check(ok, label)


def finite_bits(bits16, exp_mask):
    """Random 16-bit patterns with the all-ones exponent (inf/NaN) zeroed."""
    bits16 = bits16.copy()
    bits16[(bits16 & exp_mask) == exp_mask] = 0
    return bits16


def as_16bit(bits, dtype):
    return torch.from_numpy(bits.astype(np.uint16).view(np.int16)).view(dtype)


def single_files(binary, tmp):
    rng = np.random.default_rng(1234)
    out = os.path.join(tmp, "dump.bin")
    # Every finite half and bfloat16 value, plus random ones in odd shapes.
    all_bits = np.arange(65536, dtype=np.uint32)
    f16_all = as_16bit(finite_bits(all_bits, 0x7C00), torch.float16)
    bf16_all = as_16bit(finite_bits(all_bits, 0x7F80), torch.bfloat16)
    f32_bits = rng.integers(0, 2**32, size=(37, 53), dtype=np.uint64).astype(np.uint32)
    f32_bits[(f32_bits & 0x7F800000) == 0x7F800000] = 0
    f32_rand = torch.from_numpy(f32_bits.view(np.float32).copy())
    f32_rand[0, :8] = torch.tensor([1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38, 0.0, -0.0, 1.0])
    scale = torch.from_numpy(10.0 ** rng.uniform(-9, 4.8, size=(3, 5, 7)).astype(np.float32))
    f16_rand = (torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(5)) * scale).half()
    bf_scale = torch.from_numpy(10.0 ** rng.uniform(-40, 38, size=(64, 9)).astype(np.float32))
    bf16_rand = (torch.randn(64, 9, generator=torch.Generator().manual_seed(6)) * bf_scale
                 ).bfloat16()
    tensors = {
        "f16.all": f16_all,
        "bf16.all": bf16_all,
        "f32.rand": f32_rand,
        "f16.rand": f16_rand,
        "bf16.rand": bf16_rand,
        "f32.scalar": torch.tensor(2.5, dtype=torch.float32),
        "f16.empty": torch.zeros(0, 4, dtype=torch.float16),
    }
    f16_bits = f16_all.view(torch.int16).numpy().view(np.uint16)
    check(len(np.unique(f16_bits[(f16_bits & 0x7C00) == 0])) == 2048,
          "f16.all holds all 2046 half subnormals and both zeros")
    tiny = (f16_rand != 0) & (f16_rand.abs() < 6.1e-5)
    check(bool((f16_rand.abs() > 1e4).any()) and bool(tiny.any()),
          "f16.rand holds large values and subnormals")
    check(bool(((bf16_rand != 0) & (bf16_rand.abs() < 1.1754944e-38)).any()),
          "bf16.rand holds subnormals")

    path = os.path.join(tmp, "torch.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    for name, t in tensors.items():
        compare(binary, path, name, t, out, "%s (%s, shape %s) bit-exact" %
                (name, str(t.dtype).replace("torch.", ""), list(t.shape)))

    # One dtype per file, as a checkpoint would be.
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        p = os.path.join(tmp, "only_%s.safetensors" % str(dtype).replace("torch.", ""))
        t = (torch.randn(129, 31, generator=torch.Generator().manual_seed(7)) * 100).to(dtype)
        save_file({"w": t}, p)
        compare(binary, p, "w", t, out, "file of %s bit-exact" % dtype)

    # An integer tensor is refused with its dtype named.
    p = os.path.join(tmp, "int.safetensors")
    save_file({"ids": torch.arange(6, dtype=torch.int64)}, p)
    r = subprocess.run([binary, "dump", p, "ids", out], capture_output=True, text=True)
    check(r.returncode == 3 and "I64" in r.stderr and "ids" in r.stderr and p in r.stderr,
          "I64 tensor written by safetensors is refused (%s)" % r.stderr.strip())


def sharded_opt(binary, tmp):
    from transformers import OPTConfig, OPTForCausalLM
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                    num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32,
                    torch_dtype="float16")
    model = OPTForCausalLM(cfg).half()
    with torch.no_grad():
        # Layer norms are ones and zeros at init; make them worth comparing.
        for p in model.parameters():
            p.add_(torch.randn_like(p.float()).half() * 0.01)
    d = os.path.join(tmp, "opt_sharded")
    model.save_pretrained(d, max_shard_size="20KB", safe_serialization=True)
    index_path = os.path.join(d, "model.safetensors.index.json")
    check(os.path.exists(index_path), "save_pretrained wrote model.safetensors.index.json")
    if not os.path.exists(index_path):
        return
    with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
    shards = sorted(set(weight_map.values()))
    check(len(shards) >= 3, "checkpoint has %d shards" % len(shards))
    out = os.path.join(tmp, "dump.bin")
    n = 0
    for shard in shards:
        for name, t in load_file(os.path.join(d, shard)).items():
            if weight_map.get(name) != shard:
                continue
            check(t.dtype == torch.float16, "%s is F16" % name)
            compare(binary, d, name, t, out, "sharded %s (%s) bit-exact" % (name, shard))
            n += 1
    check(n == len(weight_map), "all %d tensors in the weight map compared" % len(weight_map))


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary, tmp = sys.argv[1], sys.argv[2]
    os.makedirs(tmp, exist_ok=True)
    single_files(binary, tmp)
    sharded_opt(binary, tmp)
    print("FAILED: %d check(s)" % failures if failures else "PASSED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
