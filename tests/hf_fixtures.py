"""Hugging Face checkpoints the tests generate (random weights, real layout via save_pretrained).

Run as a script to (re)create them all under $SDS_BUILD/fixtures; tests import the helpers.
"""
import os
import shutil
import sys

import torch

SHARED = os.environ.get("SDS_SHARED") or os.path.join(os.path.dirname(__file__), "..", "..", "shared")
BUILD = os.environ.get("SDS_BUILD", os.path.join(os.path.dirname(__file__), "..", "build"))
FIXTURES = os.path.join(BUILD, "fixtures")
OPT_TOKENIZER = os.path.join(SHARED, "data", "opt-tokenizer")
WIKI = os.path.join(SHARED, "data", "wikitext-2-raw", "wiki.test.raw")

# name -> (OPTConfig overrides, dtype, max_shard_size or None)
OPT_CONFIGS = {
    # pre-LN like OPT-125M and larger
    "opt-preln": (dict(hidden_size=64, num_attention_heads=4, ffn_dim=256, num_hidden_layers=3,
                       max_position_embeddings=512), torch.float32, None),
    # post-LN with project_in/out like OPT-350M (word_embed_proj_dim < hidden_size)
    "opt-postln-proj": (dict(hidden_size=96, num_attention_heads=3, ffn_dim=192, num_hidden_layers=2,
                             word_embed_proj_dim=48, do_layer_norm_before=False,
                             max_position_embeddings=512), torch.float32, None),
    # stored in fp16 and sharded (model.safetensors.index.json)
    "opt-fp16-sharded": (dict(hidden_size=64, num_attention_heads=2, ffn_dim=128, num_hidden_layers=2,
                              max_position_embeddings=512), torch.float16, "2MB"),
}


def opt_tokenizer():
    from transformers import GPT2TokenizerFast
    return GPT2TokenizerFast(vocab_file=os.path.join(OPT_TOKENIZER, "vocab.json"),
                             merges_file=os.path.join(OPT_TOKENIZER, "merges.txt"),
                             unk_token="<unk>", bos_token="</s>", eos_token="</s>", pad_token="<pad>")


def opt_encode(text):
    """Ids as Hugging Face's OPT tokenizer gives them: </s> (2) first, then the BPE ids."""
    return [2] + opt_tokenizer()(text, add_special_tokens=False)["input_ids"]


def _perturb(model, seed):
    # Random init leaves norms at 1/0 and biases at 0: perturb everything so no path is trivial.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "layer_norm" in name or "norm" in name.split(".")[-2]:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def make_opt(name, out_dir=None):
    from transformers import OPTConfig, OPTForCausalLM
    over, dtype, shard = OPT_CONFIGS[name]
    out = out_dir or os.path.join(FIXTURES, name)
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=50272, **over)
    model = OPTForCausalLM(cfg).eval()
    _perturb(model, 1234)
    model = model.to(dtype)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    kw = {"safe_serialization": True}
    if shard:
        kw["max_shard_size"] = shard
    model.save_pretrained(tmp, **kw)
    opt_tokenizer().save_pretrained(tmp)
    os.replace(tmp, out) if not os.path.exists(out) else shutil.rmtree(tmp)
    return out


def load_opt_fp32(path):
    from transformers import OPTForCausalLM
    return OPTForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


def hf_perplexity(model, ids, seqlen, max_windows=0):
    """SPEC 2.7 with the public SparseGPT/Wanda eval loop: non-overlapping windows."""
    ids = torch.tensor(ids, dtype=torch.long)
    n = ids.numel() // seqlen
    if max_windows:
        n = min(n, max_windows)
    nlls = []
    with torch.no_grad():
        for i in range(n):
            x = ids[i * seqlen:(i + 1) * seqlen].unsqueeze(0)
            logits = model(x).logits.double()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
            nlls.append(loss.item())
    return float(torch.exp(torch.tensor(sum(nlls) / (n * (seqlen - 1)), dtype=torch.float64)))


if __name__ == "__main__":
    os.makedirs(FIXTURES, exist_ok=True)
    for name in OPT_CONFIGS:
        print("fixture", make_opt(name))
    sys.exit(0)
