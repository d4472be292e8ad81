"""Hugging Face checkpoints the tests generate (random weights, real layout via save_pretrained).

Run as a script to (re)create them all under $SDS_BUILD/fixtures; tests import the helpers.
"""
import copy
import json
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
    # sized so that activations, Grams and pruning buffers outweigh the process baseline
    # (test_plan.py) and the Hessians split over 2x2 grids of 64-wide blocks (test_stages.py):
    # OPT 512 wide (fc2's Gram and SparseGPT factor 16 MiB each), Llama with GQA
    "plan-opt": (dict(hidden_size=512, num_attention_heads=8, ffn_dim=2048, num_hidden_layers=2,
                      max_position_embeddings=512), torch.float32, None),
}

# name -> (LlamaConfig overrides, dtype, max_shard_size or None, tokenizer flavour).
# Tokenizer flavours, all the OPT BPE vocabulary (text encodes to ids < 50265 < vocab_size
# 50272), chosen so that each way transformers decides on a BOS is covered:
#   "gpt2":          GPT2TokenizerFast: no BOS (tokenizer.json's ByteLevel post-processor)
#   "llama":         LlamaTokenizerFast class, add_bos_token true: <s> (id 0) first
#   "llama-default": LlamaTokenizerFast class, add_bos_token absent (its default is true)
#   "llama3":        PreTrainedTokenizerFast whose TemplateProcessing adds <|begin_of_text|>, an
#                    added special token, as Llama 3 ships it; the OPT vocab.json holds 51200
#                    entries, so it gets id 51200 and that model's vocab_size is 51264
LLAMA_CONFIGS = {
    # grouped-query attention (2 kv heads for 4 query heads), untied head, 3 layers
    "llama-gqa": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=160, num_hidden_layers=3, max_position_embeddings=512,
                       tie_word_embeddings=False), torch.float32, None, "gpt2"),
    # plain multi-head, tied embeddings, biases on attention and MLP, rope_theta of Llama 3
    "llama-tied-bias": (dict(hidden_size=64, num_attention_heads=4, intermediate_size=128,
                             num_hidden_layers=2, max_position_embeddings=512,
                             tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                             rope_theta=500000.0), torch.float32, None, "llama"),
    # Llama 3.1 RoPE schedule: with original_max_position_embeddings 64 and head_dim 16 the
    # wavelengths 2 pi / inv_freq fall in all three bands (kept, smoothed, divided by factor);
    # GQA 6:2
    "llama3-rope": (dict(vocab_size=51264, hidden_size=96, num_attention_heads=6,
                         num_key_value_heads=2, intermediate_size=192, num_hidden_layers=2,
                         max_position_embeddings=512, tie_word_embeddings=False, rope_theta=500000.0,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 64}),
                    torch.float32, None, "llama3"),
    # bf16, sharded, linear RoPE scaling in the older {"type": ...} spelling
    "llama-bf16-sharded": (dict(hidden_size=64, num_attention_heads=2, intermediate_size=128,
                                num_hidden_layers=2, max_position_embeddings=512,
                                tie_word_embeddings=False,
                                rope_scaling={"type": "linear", "factor": 2.0}),
                           torch.bfloat16, "2MB", "llama-default"),
    "plan-llama": (dict(hidden_size=384, num_attention_heads=6, num_key_value_heads=2,
                        intermediate_size=1536, num_hidden_layers=2, max_position_embeddings=512,
                        tie_word_embeddings=True), torch.float32, None, "gpt2"),
}


# The checkpoints that cover the code paths (logits, eval, export): every fixture but the
# plan-* ones, which are wide (512-2048) only so that the plan test measures memory on
# realistic shapes; under the sanitizers they would cost minutes and cover nothing new.
OPT_CHECKPOINTS = [n for n in OPT_CONFIGS if not n.startswith("plan-")]
LLAMA_CHECKPOINTS = [n for n in LLAMA_CONFIGS if not n.startswith("plan-")]


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


def _save_llama_tokenizer(flavour, out):
    from transformers import LlamaTokenizerFast, PreTrainedTokenizerFast
    from tokenizers import processors
    base = opt_tokenizer()
    if flavour == "gpt2":
        base.save_pretrained(out)
        return
    if flavour in ("llama", "llama-default"):
        tok = LlamaTokenizerFast(tokenizer_object=base.backend_tokenizer, bos_token="<s>",
                                 eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                 add_bos_token=True, legacy=True)
        tok.save_pretrained(out)
        if flavour == "llama-default":
            f = os.path.join(out, "tokenizer_config.json")
            tc = json.load(open(f))
            tc.pop("add_bos_token")
            json.dump(tc, open(f, "w"), indent=2)
        return
    assert flavour == "llama3", flavour
    tok = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="</s>",
                                  pad_token="<pad>")
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>"})
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    tok.backend_tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    tok.save_pretrained(out)


def make_llama(name, out_dir=None):
    from transformers import LlamaConfig, LlamaForCausalLM
    over, dtype, shard, flavour = LLAMA_CONFIGS[name]
    out = out_dir or os.path.join(FIXTURES, name)
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    torch.manual_seed(0)
    over = copy.deepcopy(over)  # LlamaConfig edits rope_scaling in place
    vocab = over.pop("vocab_size", 50272)
    rs = copy.deepcopy(over.get("rope_scaling"))
    cfg = LlamaConfig(vocab_size=vocab, bos_token_id=0, eos_token_id=2, pad_token_id=1, **over)
    model = LlamaForCausalLM(cfg).eval()
    _perturb(model, 4321)
    model = model.to(dtype)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    kw = {"safe_serialization": True}
    if shard:
        kw["max_shard_size"] = shard
    model.save_pretrained(tmp, **kw)
    if rs and "type" in rs:
        # save_pretrained writes the new "rope_type" too: keep the old spelling alone
        f = os.path.join(tmp, "config.json")
        c = json.load(open(f))
        c["rope_scaling"] = rs
        json.dump(c, open(f, "w"), indent=2)
    _save_llama_tokenizer(flavour, tmp)
    os.replace(tmp, out) if not os.path.exists(out) else shutil.rmtree(tmp)
    return out


def load_llama_fp32(path):
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


def hf_encode(path, text):
    """Ids as transformers' AutoTokenizer for the checkpoint gives them (its BOS included)."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)(text)["input_ids"]


def load_opt_fp32(path):
    from transformers import OPTForCausalLM
    return OPTForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


def make(name):
    """The fixture `name` of either family."""
    return make_llama(name) if name in LLAMA_CONFIGS else make_opt(name)


def load_fp32(name):
    """The fixture `name` in transformers, fp32."""
    return load_llama_fp32(make(name)) if name in LLAMA_CONFIGS else load_opt_fp32(make(name))


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
    for name in LLAMA_CONFIGS:
        print("fixture", make_llama(name))
    sys.exit(0)
