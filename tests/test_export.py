"""sds-mpi export: pruned models written as Hugging Face directories (2 ranks).

test_export.py TOKENIZE_IDS [--smollm2]

Default checks, on every generated checkpoint (hf_fixtures.py) pruned with SparseGPT 2:4 and
Wanda 50%:
- every rank exits 0; the directory holds config.json and the tokenizer files byte for byte as
  the source has them, model.safetensors, and nothing else (no temporary directory left);
- transformers' AutoModelForCausalLM loads it with no missing, unexpected or mismatched keys;
  the exported tensor names are the source's, each in the source's dtype;
- tensors that pruning does not touch are bit-identical to the source's (fp32 -> F16/BF16 ->
  fp32 -> F16/BF16 is exact); every pruned weight's zeros are exactly the HDF5 mask and its other
  values are the HDF5 weights rounded to the dtype (round to nearest even, as torch's .to(); a
  non-zero weight that would round to zero is written as the smallest subnormal of its sign, so
  the zeros stay the mask; how often that happened is printed);
- perplexity of transformers on the exported directory (fp32) against `sds-mpi eval --weights`
  on the source: rel 1e-4 for fp32 checkpoints (both fp32 forward passes of the same weights;
  test_eval.py sees ~1e-7); for F16/BF16 checkpoints the export holds the rounded weights, so
  transformers is compared with `sds-mpi eval` on the export (1e-4) and `eval --weights` is
  only reported (rounding moves it by ~1e-3). For fp32 sources `sds-mpi eval` on the export
  prints exactly what `eval --weights` prints.
A GGUF checkpoint made here from the llama-gqa fixture (F32 tensors, q/k rows in llama.cpp's
order, the OPT vocabulary as tokenizer.ggml.* with pre-tokenizer "gpt-2"), pruned by magnitude
2:4: the export is F32 and equals the fixture's tensors (pruned ones times their mask), so q/k
are back in Hugging Face's layout; the generated config.json matches the fixture's; the generated
tokenizer gives the fixture tokenizer's ids in transformers and in tokenize_ids (our tokenizer),
with tokenizer.ggml.add_bos_token false and true; a GGUF whose pre-tokenizer cannot be written
fails with exit 3 and leaves nothing behind, and with --tokenizer it exports.
Errors: an existing non-empty --out or a file there (2, message naming it, left untouched), a
--weights file of another model (3), a missing parent directory (5), no --weights (2): the
same code on every rank, one message, no directory and no temporary left behind.

--smollm2: the real model (SDS_SMOLLM2_GGUF; exit 77 = skipped when absent), pruned by
magnitude 50% on 2 x 64 tokens: transformers loads the export with no missing or unexpected
keys; all F32; zeros == masks; AutoTokenizer on the export, tokenize_ids on the export and
`tokenizers` built from the GGUF (smollm2_ref.py) give identical ids on WikiText-2 text with
digits and chat tokens; transformers' perplexity on the export equals `sds-mpi eval --weights`
on the GGUF to 1e-4 (and `sds-mpi eval` on the export prints exactly the same).
"""
import filecmp
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_fixtures as fx  # noqa: E402
import sds_run  # noqa: E402

SEQLEN, WINDOWS = 64, 4
REL = 1e-4
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json"]
ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
failed = 0


def report(ok, what):
    global failed
    failed += not ok
    print("%s %s" % ("OK" if ok else "NOT OK", what), flush=True)


def read_st(d):
    """{name: (dtype string, tensor)} of every *.safetensors file in d."""
    from safetensors import safe_open
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
        with safe_open(p, framework="pt") as s:
            for k in s.keys():
                out[k] = (hdr[k]["dtype"], s.get_tensor(k))
    return out


def rounded(w32, dtype):
    """The exporter's rounding of fp32 weights to dtype; returns (tensor, values kept non-zero)."""
    src = torch.from_numpy(w32)
    t = src.to(dtype)
    under = (t == 0) & (src != 0)
    if under.any():
        tiny = torch.tensor(2.0 ** (-24 if dtype == torch.float16 else -133)).to(dtype)
        t[under] = torch.where(src[under] < 0, -tiny, tiny)
    return t, int(under.sum())


def leftovers(tmp):
    return [p for p in os.listdir(tmp) if ".tmp." in p]


def export(model, h5, out, extra=()):
    return sds_run.run(2, ["export", "--model", model, "--weights", h5, "--out", out] + list(extra))


def eval_ppl(model, text, extra=()):
    """(perplexity string, token count) of sds-mpi eval at 1 rank."""
    rc, so, se, codes = sds_run.run(1, ["eval", "--model", model, "--text", text, "--seqlen",
                                        str(SEQLEN), "--max-windows", str(WINDOWS)] + list(extra))
    if codes != [0]:
        print(se[-2000:])
        return "nan", -1
    tokens = [ln for ln in so.splitlines() if ln.startswith("text ")][0]
    return sds_run.last_line(so).split()[1], int(tokens.split(": ")[1].split()[0])


def load_hf(out):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(out, output_loading_info=True,
                                                torch_dtype=torch.float32)


def check_loading(tag, info):
    bad = {k: v for k, v in info.items() if v}
    report(not bad, "%s: transformers loads it with no missing, unexpected or mismatched keys%s"
           % (tag, "" if not bad else ": %s" % bad))


def check_pruned(tag, h5, exported, dtype_of, exact_src=None):
    """Zeros == masks and values == the HDF5 weights rounded, for every pruned sublayer.
    exact_src: {name: tensor} when the unpruned values must equal the source's (magnitude)."""
    bad, kept = [], 0
    with h5py.File(h5, "r") as f:
        for n in f["masks"]:
            key = n + ".weight"
            w = exported[key][1]
            mask = torch.from_numpy(f["masks"][n][()].astype(bool))
            want, k = rounded(f["weights"][n][()], ST_DTYPES[dtype_of[key]])
            kept += k
            if not torch.equal(w == 0, mask):
                bad.append("%s: %d zeros off the mask" % (n, int(((w == 0) != mask).sum())))
            elif not torch.equal(w, want):
                bad.append("%s: values differ from the HDF5 weights rounded" % n)
            elif exact_src is not None and not torch.equal(w, exact_src[key] * ~mask):
                bad.append("%s: unpruned values differ from the source" % n)
        names = set(n + ".weight" for n in f["masks"])
    report(not bad, "%s: zeros == masks and values == HDF5 weights on %d sublayers "
           "(%d tiny values kept non-zero)%s"
           % (tag, len(names), kept, "" if not bad else ": " + "; ".join(bad[:3])))
    return names


def check_fixture(name, tmp, text, text_file):
    src = fx.make(name)
    src_st = read_st(src)
    fp32 = all(d == "F32" for d, _ in src_st.values())
    ids = fx.hf_encode(src, text) if name in fx.LLAMA_CONFIGS else fx.opt_encode(text)
    for method, sparsity in (("sparsegpt", "2:4"), ("wanda", "0.5")):
        tag = "%s %s %s" % (name, method, sparsity)
        t0 = time.time()
        h5 = os.path.join(tmp, "%s-%s.h5" % (name, method))
        rc, so, se, codes = sds_run.run(2, ["prune", "--model", src, "--calib", fx.WIKI, "--method",
                                            method, "--sparsity", sparsity, "--nsamples", "4",
                                            "--seqlen", str(SEQLEN), "--out", h5])
        if codes != [0, 0]:
            report(False, "%s: prune exit codes %s\n%s" % (tag, codes, se[-2000:]))
            continue
        out = os.path.join(tmp, "%s-%s" % (name, method))
        rc, so, se, codes = export(src, h5, out)
        report(codes == [0, 0] and rc == 0, "%s: export exit codes %s%s" % (tag, codes, "" if codes == [0, 0] else "\n" + se[-2000:]))
        if codes != [0, 0]:
            continue
        copied = ["config.json", "generation_config.json"] + TOKENIZER_FILES
        copied = [f for f in copied if os.path.exists(os.path.join(src, f))]
        files = sorted(os.listdir(out))
        same = all(filecmp.cmp(os.path.join(src, f), os.path.join(out, f), shallow=False)
                   for f in copied)
        report(files == sorted(copied + ["model.safetensors"]) and same and not leftovers(tmp),
               "%s: files %s, copies byte-identical %s, no temporary left" % (tag, files, same))

        model, info = load_hf(out)
        check_loading(tag, info)
        got = read_st(out)
        names_ok = set(got) == set(src_st)
        dtype_bad = [k for k in got if k in src_st and got[k][0] != src_st[k][0]]
        report(names_ok and not dtype_bad, "%s: %d tensors, the source's names and dtypes (%s)%s"
               % (tag, len(got), ",".join(sorted(set(d for d, _ in got.values()))),
                  "" if names_ok else ": names differ %s" % sorted(set(got) ^ set(src_st))[:4]))
        pruned = check_pruned(tag, h5, got, {k: v[0] for k, v in got.items()})
        dense_bad = [k for k in got if k not in pruned and k in src_st
                     and not torch.equal(got[k][1], src_st[k][1])]
        report(not dense_bad, "%s: the %d tensors pruning leaves alone are bit-identical%s"
               % (tag, len(got) - len(pruned), "" if not dense_bad else ": %s" % dense_bad[:3]))

        ref = fx.hf_perplexity(model.eval(), ids, SEQLEN, WINDOWS)
        p_w, _ = eval_ppl(src, text_file, ["--weights", h5])
        p_out, n_out = eval_ppl(out, text_file)
        if fp32:
            rel = abs(float(p_w) - ref) / ref
            ok = rel <= REL and p_out == p_w and n_out == len(ids)
            report(ok, "%s: transformers on the export %.10g, sds-mpi eval --weights %s (rel %.2e, "
                   "tol %.0e), sds-mpi eval on the export %s (%.1fs)"
                   % (tag, ref, p_w, rel, REL, p_out, time.time() - t0))
        else:
            rel = abs(float(p_out) - ref) / ref
            ok = rel <= REL and n_out == len(ids)
            report(ok, "%s: transformers on the export %.10g, sds-mpi eval on the export %s (rel "
                   "%.2e, tol %.0e); eval --weights on the source (fp32 weights) %s, rel %.2e (%.1fs)"
                   % (tag, ref, p_out, rel, REL, p_w, abs(float(p_w) - ref) / ref, time.time() - t0))


# ---- GGUF made from the llama-gqa fixture ----

GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
GGUF_LAYER = [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
              ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
              ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
              ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")]


def llama_cpp_permute(w, heads):
    # llama.cpp's converter puts q/k rows of each head in interleaved RoPE order
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, src, add_bos=False, pre="gpt-2"):
    import gguf
    cfg = json.load(open(os.path.join(src, "config.json")))
    st = {k: t.float().numpy() for k, (d, t) in read_st(src).items()}
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    vocab = json.load(open(os.path.join(fx.OPT_TOKENIZER, "vocab.json")))
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [ln for ln in open(os.path.join(fx.OPT_TOKENIZER, "merges.txt"), encoding="utf-8").read().split("\n")
              if ln and not ln.startswith("#version")]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if i < 4 else 1 for i in range(len(tokens))])  # <s> <pad> </s> <unk>
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_pad_token_id(1)
    w.add_unk_token_id(3)
    w.add_add_bos_token(add_bos)
    names = dict(GGUF_NAMES)
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in GGUF_LAYER:
            names["model.layers.%d.%s.weight" % (i, hf)] = "blk.%d.%s.weight" % (i, gg)
    for hf, gg in names.items():
        a = st[hf]
        if ".q_proj." in hf:
            a = llama_cpp_permute(a, H)
        elif ".k_proj." in hf:
            a = llama_cpp_permute(a, KV)
        w.add_tensor(gg, np.ascontiguousarray(a, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def read_ids(path):
    data = open(path, "rb").read()
    return list(struct.unpack("<%di" % (len(data) // 4), data))


def our_ids(tokenize_ids, tok_dir, text_file, tmp):
    out = os.path.join(tmp, "ids.bin")
    p = subprocess.run([tokenize_ids, tok_dir, text_file, out], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr)
        return None
    return read_ids(out)


def check_gguf(tmp, text, text_file, tokenize_ids):
    from transformers import AutoTokenizer
    src = fx.make("llama-gqa")
    src_st = read_st(src)
    src_cfg = json.load(open(os.path.join(src, "config.json")))
    gg = write_gguf(os.path.join(tmp, "gqa.gguf"), src)
    h5 = os.path.join(tmp, "gqa-gguf.h5")
    rc, so, se, codes = sds_run.run(2, ["prune", "--model", gg, "--calib", fx.WIKI, "--method",
                                        "magnitude", "--sparsity", "2:4", "--nsamples", "4",
                                        "--seqlen", str(SEQLEN), "--out", h5])
    if codes != [0, 0]:
        report(False, "GGUF: prune exit codes %s\n%s" % (codes, se[-2000:]))
        return
    out = os.path.join(tmp, "gqa-gguf")
    rc, so, se, codes = export(gg, h5, out)
    report(codes == [0, 0], "GGUF: export exit codes %s%s" % (codes, "" if codes == [0, 0] else "\n" + se[-2000:]))
    if codes != [0, 0]:
        return
    files = sorted(os.listdir(out))
    report(files == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"],
           "GGUF: files %s" % files)
    cfg = json.load(open(os.path.join(out, "config.json")))
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
            "tie_word_embeddings", "rope_theta", "attention_bias", "mlp_bias", "hidden_act"]
    diff = {k: (cfg.get(k), src_cfg.get(k)) for k in keys if cfg.get(k) != src_cfg.get(k)}
    # the GGUF holds rms_norm_eps as float32: the shortest decimal of that float comes back
    eps_ok = cfg["rms_norm_eps"] == src_cfg["rms_norm_eps"]
    report(not diff and eps_ok and cfg["torch_dtype"] == "float32" and cfg["model_type"] == "llama",
           "GGUF: generated config.json agrees with the fixture's (rms_norm_eps %r)%s"
           % (cfg["rms_norm_eps"], "" if not diff else ": %s" % diff))
    model, info = load_hf(out)
    check_loading("GGUF", info)
    got = read_st(out)
    report(set(got) == set(src_st) and all(d == "F32" for d, _ in got.values()),
           "GGUF: %d tensors, the fixture's names, all F32" % len(got))
    pruned = check_pruned("GGUF", h5, got, {k: "F32" for k in got},
                          exact_src={k: t for k, (d, t) in src_st.items()})
    dense_bad = [k for k in got if k not in pruned and not torch.equal(got[k][1], src_st[k][1])]
    report(not dense_bad, "GGUF: the other %d tensors equal the fixture's (q/k back in Hugging "
           "Face's order)%s" % (len(got) - len(pruned), "" if not dense_bad else ": %s" % dense_bad))

    want = fx.hf_encode(src, text)  # the fixture's GPT-2 tokenizer: no BOS
    hf = AutoTokenizer.from_pretrained(out)(text)["input_ids"]
    ours = our_ids(tokenize_ids, out, text_file, tmp)
    report(hf == want and ours == want, "GGUF: generated tokenizer: transformers %d ids, "
           "tokenize_ids %s ids, identical to the fixture tokenizer's %d"
           % (len(hf), None if ours is None else len(ours), len(want)))
    ref = fx.hf_perplexity(model.eval(), want, SEQLEN, WINDOWS)
    p_w, n_w = eval_ppl(gg, text_file, ["--weights", h5])
    p_out, n_out = eval_ppl(out, text_file)
    rel = abs(float(p_w) - ref) / ref
    report(rel <= REL and p_w == p_out and n_w == n_out == len(want),
           "GGUF: transformers on the export %.10g, sds-mpi eval --weights on the GGUF %s (rel "
           "%.2e, tol %.0e), sds-mpi eval on the export %s" % (ref, p_w, rel, REL, p_out))

    # add_bos_token true: a TemplateProcessing post-processor puts <s> first
    gg_bos = write_gguf(os.path.join(tmp, "gqa-bos.gguf"), src, add_bos=True)
    out_bos = os.path.join(tmp, "gqa-gguf-bos")
    rc, so, se, codes = export(gg_bos, h5, out_bos)
    hf = AutoTokenizer.from_pretrained(out_bos)(text)["input_ids"] if codes == [0, 0] else None
    _, n_bos = eval_ppl(out_bos, text_file) if codes == [0, 0] else (None, -1)
    report(codes == [0, 0] and hf == [0] + want and n_bos == len(want) + 1,
           "GGUF add_bos_token: exit %s, transformers ids start %s, sds-mpi counts %d tokens (%d + BOS)"
           % (codes, None if hf is None else hf[:3], n_bos, len(want)))

    # a pre-tokenizer the export cannot express: refused after model.safetensors was written
    gg_bad = write_gguf(os.path.join(tmp, "gqa-bad.gguf"), src, pre="llama-bpe")
    out_bad = os.path.join(tmp, "gqa-gguf-bad")
    rc, so, se, codes = export(gg_bad, h5, out_bad)
    msgs = [ln for ln in se.splitlines() if ln.startswith("sds-mpi: error")]
    report(codes == [3, 3] and len(msgs) == 1 and "tokenizer.ggml.pre" in msgs[0]
           and not os.path.exists(out_bad) and not leftovers(tmp),
           "GGUF unknown pre-tokenizer: codes %s, %s, nothing left behind"
           % (codes, msgs[0] if msgs else se[-300:]))
    rc, so, se, codes = export(gg_bad, h5, out_bad, ["--tokenizer", src])
    copied = [f for f in TOKENIZER_FILES if os.path.exists(os.path.join(src, f))]
    same = codes == [0, 0] and all(filecmp.cmp(os.path.join(src, f), os.path.join(out_bad, f),
                                               shallow=False) for f in copied)
    report(same, "GGUF with --tokenizer: exit %s, the tokenizer files copied (%s)" % (codes, copied))


def rounding_candidates(dtype):
    """Every finite positive value of dtype, the fp32 midpoints between neighbours (ties) and
    their fp32 neighbours, and values below the smallest subnormal (tie included)."""
    if dtype == torch.float16:
        v = np.arange(1, 0x7c00, dtype=np.uint16).view(np.float16).astype(np.float32)
        tiny = [2.0 ** -25, 2.0 ** -26, 3e-8, 1e-30, 1e-45]
    else:
        v = (np.arange(1, 0x7f80, dtype=np.uint32) << 16).view(np.float32)
        tiny = [2.0 ** -134, 2.0 ** -135, 1e-45, 2.0 ** -133 * 0.75]
    mid = ((v[:-1].astype(np.float64) + v[1:]) / 2).astype(np.float32)  # exact in fp32
    c = np.concatenate([v, mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf)),
                        np.array(tiny, dtype=np.float32)])
    return c[np.isfinite(c) & (c > 0)]


def edit_weights(src_h5, dst_h5, fill):
    """Copies an sds-mpi prune output and replaces every sublayer's weights with fill(shape, i);
    the masks become the new zeros."""
    import shutil
    shutil.copyfile(src_h5, dst_h5)
    with h5py.File(dst_h5, "r+") as f:
        for i, n in enumerate(f["weights"]):
            w = fill(f["weights"][n].shape, i).astype(np.float32)
            f["weights"][n][...] = w
            f["masks"][n][...] = (w == 0).astype(np.uint8)


def check_rounding(tmp):
    """fp32 -> F16 / BF16 on every value class, against torch's rounding (plus the rule that keeps
    tiny non-zero values non-zero), through the whole export; and overflow refused (exit 4)."""
    for name, dtype, big in (("opt-fp16-sharded", torch.float16, 70000.0),
                             ("llama-bf16-sharded", torch.bfloat16, 3.4e38)):
        src = fx.make(name)
        h5 = os.path.join(tmp, "%s-sparsegpt.h5" % name)
        cand = rounding_candidates(dtype)
        rng = np.random.default_rng(11)

        def fill(shape, i):
            w = rng.choice(cand, size=shape) * rng.choice(np.array([-1, 1], np.float32), size=shape)
            w[rng.random(shape) < 0.1] = 0.0
            if i == 0:  # every tiny value at least once
                w.flat[:len(cand[-5:])] = cand[-5:]
            return w
        edited = os.path.join(tmp, "%s-edges.h5" % name)
        edit_weights(h5, edited, fill)
        out = os.path.join(tmp, "%s-edges" % name)
        rc, so, se, codes = export(src, edited, out)
        report(codes == [0, 0], "%s edge values: export exit codes %s%s" % (name, codes, "" if codes == [0, 0] else "\n" + se[-1000:]))
        if codes == [0, 0]:
            got = read_st(out)
            check_pruned("%s edge values (%d candidates)" % (name, len(cand)), edited, got,
                         {k: v[0] for k, v in got.items()})

        over = os.path.join(tmp, "%s-overflow.h5" % name)
        edit_weights(h5, over, lambda shape, i: np.where(np.arange(np.prod(shape)).reshape(shape) == 5,
                                                         np.float32(big), np.float32(0.5)))
        out = os.path.join(tmp, "%s-overflow" % name)
        rc, so, se, codes = export(src, over, out)
        msgs = [ln for ln in se.splitlines() if ln.startswith("sds-mpi: error")]
        report(codes == [4, 4] and len(msgs) == 1 and "index 5" in msgs[0] and not os.path.exists(out)
               and not leftovers(tmp), "%s: a weight of %g refused: codes %s, %s, nothing left behind"
               % (name, big, codes, msgs[0] if msgs else se[-300:]))


def check_errors(tmp):
    opt = fx.make("opt-preln")
    h5_opt = os.path.join(tmp, "opt-preln-sparsegpt.h5")
    h5_llama = os.path.join(tmp, "llama-gqa-sparsegpt.h5")
    h5_fp16 = os.path.join(tmp, "opt-fp16-sharded-sparsegpt.h5")
    busy = os.path.join(tmp, "busy")
    os.makedirs(busy, exist_ok=True)
    with open(os.path.join(busy, "keep"), "w") as fh:
        fh.write("keep me")
    afile = os.path.join(tmp, "afile")
    with open(afile, "w") as fh:
        fh.write("keep me")
    out = os.path.join(tmp, "err-out")
    cases = [("existing non-empty --out", ["--out", busy], 2, [busy]),
             ("an existing file as --out", ["--out", afile], 2, [afile]),
             ("--weights of another model (Llama on OPT)", ["--weights", h5_llama], 3,
              [h5_llama, "model.layers.0"]),
             ("--weights of another model (other shapes)", ["--weights", h5_fp16], 3, [h5_fp16]),
             ("missing parent directory", ["--out", os.path.join(tmp, "nodir", "x")], 5, ["nodir"]),
             ("no --weights", ["--weights", None], 2, ["--weights"])]
    for name, over, code, needles in cases:
        args = {"--model": opt, "--weights": h5_opt, "--out": out}
        args[over[0]] = over[1]
        argv = ["export"] + [x for kv in args.items() if kv[1] is not None for x in kv]
        rc, so, se, codes = sds_run.run(2, argv, timeout=120)
        msgs = [ln for ln in se.splitlines() if ln.startswith("sds-mpi: error")]
        ok = codes == [code, code] and len(msgs) == 1 and all(n in msgs[0] for n in needles)
        ok = ok and not os.path.exists(out) and not leftovers(tmp)
        ok = ok and open(os.path.join(busy, "keep")).read() == "keep me" and open(afile).read() == "keep me"
        report(ok, "%s: codes %s, %s" % (name, codes, msgs[0] if msgs else se[-300:]))
    # an empty directory is fine: it is replaced by the export
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    rc, so, se, codes = export(opt, h5_opt, empty + "/")
    report(codes == [0, 0] and "model.safetensors" in os.listdir(empty) and not leftovers(tmp),
           "an existing empty --out (given with a trailing slash): exit codes %s" % codes)


def check_smollm2(tmp, tokenize_ids):
    import smollm2_ref
    from transformers import AutoTokenizer
    path = os.environ.get("SDS_SMOLLM2_GGUF", "")
    if not os.path.isfile(path):
        print("SKIP SmolLM2 GGUF not found (SDS_SMOLLM2_GGUF=%r): run jobs/fetch_smollm2.sh" % path)
        sys.exit(77)
    t0 = time.time()
    text = open(fx.WIKI, encoding="utf-8").read()[:6000]
    text += "\n<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n"
    text_file = os.path.join(tmp, "text.txt")
    with open(text_file, "w", encoding="utf-8") as fh:
        fh.write(text)
    h5 = os.path.join(tmp, "smollm2.h5")
    rc, so, se, codes = sds_run.run(2, ["prune", "--model", path, "--calib", fx.WIKI, "--method",
                                        "magnitude", "--sparsity", "0.5", "--nsamples", "2",
                                        "--seqlen", "64", "--out", h5])
    if codes != [0, 0]:
        report(False, "SmolLM2: prune exit codes %s\n%s" % (codes, se[-2000:]))
        return
    out = os.path.join(tmp, "smollm2")
    rc, so, se, codes = export(path, h5, out)
    report(codes == [0, 0], "SmolLM2: export exit codes %s (%.0fs so far)%s"
           % (codes, time.time() - t0, "" if codes == [0, 0] else "\n" + se[-2000:]))
    if codes != [0, 0]:
        return
    cfg = json.load(open(os.path.join(out, "config.json")))
    report(cfg["rms_norm_eps"] == 1e-5 and cfg["rope_theta"] == 100000.0
           and cfg["tie_word_embeddings"] is True and cfg["vocab_size"] == 49152,
           "SmolLM2: config.json rms_norm_eps %r, rope_theta %r, tied %r, vocab %r"
           % (cfg["rms_norm_eps"], cfg["rope_theta"], cfg["tie_word_embeddings"], cfg["vocab_size"]))
    model, info = load_hf(out)
    check_loading("SmolLM2", info)
    got = read_st(out)
    want_names = set(k for k in model.state_dict() if k != "lm_head.weight")
    report(set(got) == want_names and all(d == "F32" for d, _ in got.values()),
           "SmolLM2: %d tensors, LlamaForCausalLM's (tied head), all F32" % len(got))
    check_pruned("SmolLM2", h5, got, {k: "F32" for k in got})
    del got

    want = smollm2_ref.encode(text, path)
    hf = AutoTokenizer.from_pretrained(out)(text)["input_ids"]
    ours = our_ids(tokenize_ids, out, text_file, tmp)
    first = next((i for i, (a, b) in enumerate(zip(hf, want)) if a != b), None)
    report(hf == want and ours == want, "SmolLM2: generated tokenizer: transformers %d ids, "
           "tokenize_ids %s, tokenizers from the GGUF %d: identical %s%s"
           % (len(hf), None if ours is None else len(ours), len(want), hf == want and ours == want,
              "" if first is None else " (first difference at %d)" % first))

    torch.set_num_threads(2)
    ref = fx.hf_perplexity(model.eval(), want, SEQLEN, WINDOWS)
    p_w, n_w = eval_ppl(path, text_file, ["--weights", h5])
    p_out, n_out = eval_ppl(out, text_file)
    rel = abs(float(p_w) - ref) / ref
    report(rel <= REL and p_w == p_out and n_w == n_out == len(want),
           "SmolLM2: transformers on the export %.10g, sds-mpi eval --weights on the GGUF %s (rel "
           "%.2e, tol %.0e), sds-mpi eval on the export %s (%.0fs)"
           % (ref, p_w, rel, REL, p_out, time.time() - t0))


def check_prune_export(tmp):
    """prune --export-hf DIR: the same directory export writes, from the prune itself; an
    existing non-empty DIR is refused before any work (exit 2, no HDF5 output)."""
    for name in ("opt-fp16-sharded", "llama-tied-bias"):
        src = fx.make(name)
        src_st = read_st(src)
        h5 = os.path.join(tmp, "pe-%s.h5" % name)
        out = os.path.join(tmp, "pe-%s" % name)
        rc, so, se, codes = sds_run.run(2, ["prune", "--model", src, "--calib", fx.WIKI, "--method",
                                            "sds", "--sparsity", "2:4", "--nsamples", "4",
                                            "--seqlen", str(SEQLEN), "--out", h5, "--export-hf", out])
        report(codes == [0, 0] and os.path.isdir(out) and os.path.exists(h5),
               "%s prune --export-hf: codes %s%s" % (name, codes, "" if codes == [0, 0] else se[-1500:]))
        if codes != [0, 0]:
            continue
        model, info = load_hf(out)
        check_loading(name + " prune --export-hf", info)
        got = read_st(out)
        dtype_bad = [k for k in got if k in src_st and got[k][0] != src_st[k][0]]
        report(set(got) == set(src_st) and not dtype_bad,
               "%s prune --export-hf: the source's tensor names and dtypes" % name)
        check_pruned(name + " prune --export-hf", h5, got, {k: v[0] for k, v in got.items()})
        h5b = os.path.join(tmp, "pe-again.h5")
        rc, so, se, codes = sds_run.run(2, ["prune", "--model", src, "--calib", fx.WIKI, "--method",
                                            "sparsegpt", "--sparsity", "2:4", "--nsamples", "4",
                                            "--seqlen", str(SEQLEN), "--out", h5b, "--export-hf", out])
        msgs = [ln for ln in se.splitlines() if ln.startswith("sds-mpi: error")]
        report(codes == [2, 2] and len(msgs) == 1 and out in msgs[0] and not os.path.exists(h5b)
               and "prune " not in so,
               "%s prune --export-hf into a non-empty directory: codes %s, %s" %
               (name, codes, msgs[0] if msgs else se[-300:]))


def main():
    tokenize_ids = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if "--smollm2" in sys.argv[2:]:
            check_smollm2(tmp, tokenize_ids)
            sys.exit(1 if failed else 0)
        text = open(fx.WIKI, encoding="utf-8").read()[:6000]
        text_file = os.path.join(tmp, "text.txt")
        with open(text_file, "w", encoding="utf-8") as fh:
            fh.write(text)
        for name in fx.OPT_CHECKPOINTS + fx.LLAMA_CHECKPOINTS:
            check_fixture(name, tmp, text, text_file)
        check_prune_export(tmp)
        check_rounding(tmp)
        check_gguf(tmp, text, text_file, tokenize_ids)
        check_errors(tmp)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
