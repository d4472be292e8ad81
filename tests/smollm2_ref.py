"""The reference side for the real GGUF model: transformers' LlamaForCausalLM holding the very
weights sds-mpi reads (dequantised by the gguf package, q/k rows put back into Hugging Face's
RoPE order), and a `tokenizers` tokenizer built from the GGUF's own vocabulary and merges."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))


def gguf_path():
    p = os.environ.get("SDS_SMOLLM2_GGUF", "")
    if not p or not os.path.isfile(p):
        raise SystemExit("SmolLM2 GGUF not found (SDS_SMOLLM2_GGUF=%r): run jobs/fetch_smollm2.sh" % p)
    return p


def _field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return v[0] if len(v) == 1 else v


def _unpermute(w, heads):
    # llama.cpp's converter: W.reshape(n, 2, hd/2, in).swapaxes(1, 2); undo it
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_hf(path=None):
    import gguf
    from gguf.quants import dequantize
    from transformers import LlamaConfig, LlamaForCausalLM
    r = gguf.GGUFReader(path or gguf_path())
    n_layers = int(_field(r, "llama.block_count"))
    heads = int(_field(r, "llama.attention.head_count"))
    kv = int(_field(r, "llama.attention.head_count_kv"))
    tensors = {t.name: t for t in r.tensors}
    cfg = LlamaConfig(vocab_size=int(tensors["token_embd.weight"].shape[1]),
                      hidden_size=int(_field(r, "llama.embedding_length")),
                      intermediate_size=int(_field(r, "llama.feed_forward_length")),
                      num_hidden_layers=n_layers, num_attention_heads=heads,
                      num_key_value_heads=kv,
                      max_position_embeddings=int(_field(r, "llama.context_length")),
                      rms_norm_eps=float(_field(r, "llama.attention.layer_norm_rms_epsilon")),
                      rope_theta=float(_field(r, "llama.rope.freq_base")),
                      tie_word_embeddings="output.weight" not in tensors)
    model = LlamaForCausalLM(cfg).eval()

    def get(name):
        t = tensors[name]
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(x) for x in reversed(t.shape))
        return a.reshape(shape)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for i in range(n_layers):
        for hf, gg in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                       ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                       ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                       ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
                       ("post_attention_layernorm", "ffn_norm")]:
            names["model.layers.%d.%s.weight" % (i, hf)] = "blk.%d.%s.weight" % (i, gg)
    sd = {}
    for hf, gg in names.items():
        w = get(gg)
        if ".q_proj." in hf:
            w = _unpermute(w, heads)
        elif ".k_proj." in hf:
            w = _unpermute(w, kv)
        sd[hf] = torch.from_numpy(np.ascontiguousarray(w))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "lm_head.weight" and "rotary_emb" not in m]
    assert not missing and not unexpected, (missing, unexpected)
    model.tie_weights()
    return model


def tokenizer(path=None):
    import gguf
    from test_gguf import gguf_vocab, hf_reference
    r = gguf.GGUFReader(path or gguf_path())
    return hf_reference(*gguf_vocab(r))


def encode(text, path=None):
    """Ids as the model's tokenizer gives them: tokenizer.ggml.add_bos_token is false."""
    return tokenizer(path).encode(text, add_special_tokens=False).ids
