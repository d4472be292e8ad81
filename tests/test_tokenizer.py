#!/usr/bin/env python3
"""Checks io/tokenizer.c through tests/tokenize_ids against Hugging Face `tokenizers`.

usage: test_tokenizer.py TOKENIZE_IDS SHARED_DIR [--checks ids|errors|all]

Every id must be identical (no tolerance: token ids are exact). Prints one OK / FAIL line per
check and exits non-zero when any check fails.
"""
import argparse
import warnings
import array
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

FAILURES = []


def report(name, ok, detail=""):
    print(f"{'OK  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILURES.append(name)


def run_c(exe, tok_dir, text_path, out_path):
    t0 = time.perf_counter()
    p = subprocess.run([exe, tok_dir, text_path, out_path], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return p, wall


def read_ids(path):
    a = array.array("i")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder == "big":
        a.byteswap()
    return a.tolist()


def first_mismatch(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return i
    return None if len(got) == len(want) else min(len(got), len(want))


def compare(name, exe, tok_dir, text_path, want, hf, tmp):
    out = os.path.join(tmp, "ids.bin")
    if os.path.exists(out):
        os.remove(out)
    p, wall = run_c(exe, tok_dir, text_path, out)
    if p.returncode != 0:
        report(name, False, f"tokenize_ids exited {p.returncode}: {p.stderr.strip()}")
        return
    got = read_ids(out)
    i = first_mismatch(got, want)
    timing = p.stderr.strip().split("tokenize_ids: ")[-1]
    if i is None:
        report(name, True, f"{len(got)} ids identical ({timing}; {wall:.2f} s with start-up)")
        return
    lo, hi = max(0, i - 5), i + 6
    detail = (f"{len(got)} ids vs {len(want)} from Hugging Face; first difference at {i}\n"
              f"    C : {got[lo:hi]} {hf.convert_ids_to_tokens(got[lo:hi])}\n"
              f"    HF: {want[lo:hi]} {hf.convert_ids_to_tokens(want[lo:hi])}\n"
              f"    HF text there: {hf.decode(want[lo:hi])!r}")
    report(name, False, detail)


# Strings where a pre-split or merge mistake shows: contractions, digits, runs of spaces, tabs and
# newlines, trailing spaces, accents, CJK, emoji (4-byte UTF-8), unusual Unicode white space.
TRICKY = [
    "don't I'll we're they've she'd I'm it's DON'T 'S 's 'll'd",
    "12345 3.14 1,000,000 2024-01-01 ½ ² ٣٤ 0x1F",
    "a  b\n\n\n c",
    "trailing spaces   ",
    "\ttabs\t\tand\t \tmixed \t\n \n",
    "   leading spaces",
    "naïve café résumé Ελληνικά русский Straße",
    "中文字符测试，日本語のテキスト、한국어 텍스트",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "punctuation!!! ??? ... --- ((( ))) ;;; \"quoted\" 'single' «guillemets» — –",
    "@@@ ### $$$ %%% ^^^ &&& *** ___ +++ === ~~~ ``` |||",
    "e\u0301 combining a\u0308 o\u0323\u0302",
    "nbsp\u00a0here ideographic\u3000space en\u2002space line\u2028sep para\u2029sep",
    "nel\u0085char mongolian\u180evs info\u001cseps\u001d\u001e\u001f zero\u200bwidth",
    "\r\nwindows\r\nlines\r\n",
    "x" * 3000,
    " " * 1000 + "after many spaces",
    "ab" * 500 + " " + "!?" * 700,
    "<s> <unk> a</s>b <pad> [CLS] <mask>",
    "\u0000 nul \u007f del \u00ad soft hyphen",
]
# Only tokenizers that know OPT's special tokens (tokenizer.json, special_tokens_map.json).
SPECIALS = "before</s>after <pad><pad> x <unk>y</s></s> <s> </ s> </s"


def write_text(path, text):
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path


def hf_ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def check_ids(exe, shared, tmp):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    from transformers import GPT2TokenizerFast

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    src = os.path.join(shared, "data", "opt-tokenizer")
    hf = GPT2TokenizerFast(vocab_file=os.path.join(src, "vocab.json"),
                           merges_file=os.path.join(src, "merges.txt"), unk_token="<unk>",
                           bos_token="</s>", eos_token="</s>", pad_token="<pad>")

    corpora = [("wikitext-2 test", os.path.join(shared, "data", "wikitext-2-raw", "wiki.test.raw")),
               ("austen", os.path.join(shared, "data", "calibration", "austen.txt"))]
    tricky_path = write_text(os.path.join(tmp, "tricky.txt"), "\n".join(TRICKY))
    specials_path = write_text(os.path.join(tmp, "specials.txt"), SPECIALS + "\n" + TRICKY[0])

    # Reference ids once per text; newline="" semantics: decode the bytes as they are.
    want = {}
    for label, path in corpora + [("tricky", tricky_path)]:
        with open(path, "rb") as f:
            want[path] = hf_ids(hf, f.read().decode("utf-8"))
    per_string = [(s, hf_ids(hf, s)) for s in TRICKY]
    want_specials = hf_ids(hf, SPECIALS + "\n" + TRICKY[0])

    # vocab.json + merges.txt: HF treats the constructor's special tokens as added tokens, which
    # our directory does not name, so the texts here carry none.
    for label, path in corpora:
        compare(f"vocab.json+merges.txt: {label}", exe, src, path, want[path], hf, tmp)
    plain = [(s, ids) for s, ids in per_string if "<" not in s]
    plain_path = write_text(os.path.join(tmp, "plain.txt"), "\n".join(s for s, _ in plain))
    compare("vocab.json+merges.txt: tricky strings", exe, src, plain_path,
            hf_ids(hf, "\n".join(s for s, _ in plain)), hf, tmp)
    # Each tricky string alone too, so that a failure names the string.
    bad = []
    for k, (s, ids) in enumerate(plain):
        out = os.path.join(tmp, "one.bin")
        p, _ = run_c(exe, src, write_text(os.path.join(tmp, "one.txt"), s), out)
        if p.returncode != 0 or read_ids(out) != ids:
            bad.append(k)
    detail = f"strings {bad}: first {plain[bad[0]][0][:60]!r}" if bad else f"{len(plain)} strings"
    report("vocab.json+merges.txt: each tricky string alone", not bad, detail)

    # tokenizer.json, as save_pretrained writes it (merges as "a b" strings with tokenizers 0.19).
    saved = os.path.join(tmp, "saved")
    hf.save_pretrained(saved)
    json_dir = os.path.join(tmp, "json_only")
    os.makedirs(json_dir)
    shutil.copy(os.path.join(saved, "tokenizer.json"), json_dir)
    for label, path in corpora[:1] + [("tricky", tricky_path)]:
        compare(f"tokenizer.json: {label}", exe, json_dir, path, want[path], hf, tmp)
    compare("tokenizer.json: special tokens in the text", exe, json_dir, specials_path,
            want_specials, hf, tmp)

    # tokenizer.json with merges as [left, right] pairs (the format of tokenizers >= 0.20, which
    # 0.19 cannot read: the reference is the same ids as from the string form).
    with open(os.path.join(json_dir, "tokenizer.json"), encoding="utf-8") as f:
        doc = json.load(f)
    doc["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m
                              for m in doc["model"]["merges"]]
    pairs_dir = os.path.join(tmp, "json_pairs")
    os.makedirs(pairs_dir)
    with open(os.path.join(pairs_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    compare("tokenizer.json (merge pairs): tricky", exe, pairs_dir, tricky_path, want[tricky_path],
            hf, tmp)

    # Added tokens with lstrip / rstrip / single_word / normalized, one already in the vocabulary
    # ("é" is byte 0xE9's token) and one written with an id Hugging Face does not give it;
    # reference: the `tokenizers` library on the same file.
    from tokenizers import Tokenizer

    def added(content, id, **flags):
        tok = {"id": id, "content": content, "single_word": False, "lstrip": False,
               "rstrip": False, "normalized": True, "special": False}
        tok.update(flags)
        return tok
    # From the string-merges file: tokenizers 0.19 cannot read merge pairs.
    with open(os.path.join(json_dir, "tokenizer.json"), encoding="utf-8") as f:
        doc = json.load(f)
    doc["added_tokens"] += [added("<mask>", 51200, lstrip=True, normalized=False, special=True),
                            added("<mask>x", 51201), added("[SW]", 51202, single_word=True),
                            added("<r>", 51203, rstrip=True),
                            added("é", 51204, single_word=True, lstrip=True, rstrip=True,
                                  normalized=False),
                            added("€uro", 51299)]
    flags_dir = os.path.join(tmp, "json_flags")
    os.makedirs(flags_dir)
    with open(os.path.join(flags_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    ref = Tokenizer.from_file(os.path.join(flags_dir, "tokenizer.json"))
    flags_text = "\n".join([
        "a <mask> b  <mask>c x[SW]y [SW] z <r>   w <nn><mask>x </s>", "  <mask>x <mask>  \t<mask>",
        "[SW]", "é[SW]é", "café é  é\u3000x", "x<r>\u00a0\u2003 y",
        "_[SW]_ 1[SW]2 ,[SW]. \u0301[SW]",
        "€uro €ur €uros", TRICKY[0]])
    flags_path = write_text(os.path.join(tmp, "flags.txt"), flags_text)
    compare("tokenizer.json: added tokens with flags", exe, flags_dir, flags_path,
            ref.encode(flags_text, add_special_tokens=False).ids, hf, tmp)

    # ByteLevel add_prefix_space: a space before every piece between added tokens.
    doc["pre_tokenizer"]["add_prefix_space"] = True
    aps_dir = os.path.join(tmp, "json_prefix_space")
    os.makedirs(aps_dir)
    with open(os.path.join(aps_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    ref = Tokenizer.from_file(os.path.join(aps_dir, "tokenizer.json"))
    compare("tokenizer.json: add_prefix_space", exe, aps_dir, flags_path,
            ref.encode(flags_text, add_special_tokens=False).ids, hf, tmp)

    # vocab.json + merges.txt + special_tokens_map.json (a Hugging Face repo without
    # tokenizer.json): the special tokens are matched in the text.
    map_dir = os.path.join(tmp, "with_map")
    os.makedirs(map_dir)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(saved, name), map_dir)
    compare("vocab.json+merges.txt+special_tokens_map.json: special tokens", exe, map_dir,
            specials_path, want_specials, hf, tmp)

    # In-memory lists (the GGUF path): token i on line i, merges in rank order.
    vocab = hf.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        report("sds_tokenizer_load_lists", False, "the reference vocabulary has holes")
    else:
        tokens_path = write_text(os.path.join(tmp, "tokens.txt"), "\n".join(t for t, _ in by_id))
        with open(os.path.join(src, "merges.txt"), encoding="utf-8") as f:
            merges = [m for m in f.read().split("\n") if m and not m.startswith("#version")]
        merges_path = write_text(os.path.join(tmp, "merges_only.txt"), "\n".join(merges))
        for label, path in corpora[:1] + [("tricky strings", plain_path)]:
            out = os.path.join(tmp, "lists.bin")
            p = subprocess.run([exe, "--lists", tokens_path, merges_path, path, out],
                               capture_output=True, text=True)
            ref_ids = want[path] if path in want else hf_ids(hf, open(path, "rb").read().decode())
            ok = p.returncode == 0 and read_ids(out) == ref_ids
            report(f"sds_tokenizer_load_lists: {label}", ok,
                   p.stderr.strip().split("tokenize_ids: ")[-1])

    # Empty text: zero ids, success.
    compare("empty text", exe, src, write_text(os.path.join(tmp, "empty.txt"), ""), [], hf, tmp)


def check_errors(exe, shared, tmp):
    src = os.path.join(shared, "data", "opt-tokenizer")
    cases = [("invalid UTF-8 (stray continuation byte)", b"good text \x80 bad", 10),
             ("invalid UTF-8 (truncated at the end)", b"ends in \xe2\x82", 8),
             ("invalid UTF-8 (overlong encoding)", b"slash \xc0\xaf", 6),
             ("invalid UTF-8 (surrogate)", b"ab \xed\xa0\x80", 3)]
    for name, data, offset in cases:
        path = os.path.join(tmp, "bad.txt")
        with open(path, "wb") as f:
            f.write(data)
        p, _ = run_c(exe, src, path, os.path.join(tmp, "bad.bin"))
        msg = p.stderr.strip()
        ok = p.returncode != 0 and path in msg and f"offset {offset}" in msg
        report(name, ok, f"exit {p.returncode}, {msg!r}")

    text = write_text(os.path.join(tmp, "ok.txt"), "hello")
    empty_dir = os.path.join(tmp, "no_tokenizer")
    os.makedirs(empty_dir)
    p, _ = run_c(exe, empty_dir, text, os.path.join(tmp, "x.bin"))
    msg = p.stderr.strip()
    ok = p.returncode != 0 and "vocab.json" in msg and empty_dir in msg
    report("missing tokenizer files", ok, f"exit {p.returncode}, {msg!r}")

    broken_dir = os.path.join(tmp, "broken_merges")
    os.makedirs(broken_dir)
    shutil.copy(os.path.join(src, "vocab.json"), broken_dir)
    with open(os.path.join(broken_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\nĠ t\nnot_a_token_anywhere x\n")
    p, _ = run_c(exe, broken_dir, text, os.path.join(tmp, "x.bin"))
    msg = p.stderr.strip()
    ok = p.returncode != 0 and "merges.txt" in msg and "line 3" in msg
    report("merge of an unknown token", ok, f"exit {p.returncode}, {msg!r}")

    bad_json_dir = os.path.join(tmp, "bad_json")
    os.makedirs(bad_json_dir)
    with open(os.path.join(bad_json_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [')
    p, _ = run_c(exe, bad_json_dir, text, os.path.join(tmp, "x.bin"))
    msg = p.stderr.strip()
    report("truncated tokenizer.json", p.returncode != 0 and "tokenizer.json" in msg,
           f"exit {p.returncode}, {msg!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("shared")
    ap.add_argument("--checks", choices=["ids", "errors", "all"], default="all")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sds_tok_") as tmp:
        if args.checks in ("ids", "all"):
            check_ids(args.exe, args.shared, tmp)
        if args.checks in ("errors", "all"):
            check_errors(args.exe, args.shared, tmp)
    total = time.perf_counter() - t0
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} check(s) in {total:.1f} s: {', '.join(FAILURES)}")
        return 1
    print(f"PASSED in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
