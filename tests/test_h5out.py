"""The HDF5 pruning output across rank counts, read by other tools, and its failures.

usage: test_h5out.py PATH/TO/test_h5out TMPDIR

1. `test_h5out write` at 1, 2 and 4 ranks (rows not divisible by the rank count, ranks with no
   rows, one sublayer stored in reversed rank order): every rank exits 0 and the three files are
   byte-identical. That is possible because nothing in them depends on the rank count: object
   modification times are off, every rank makes the same HDF5 calls in the same order (so
   allocation is identical), and every data byte lands at the same offset whoever writes it.
2. h5py reads every value and statistic and they equal an independent numpy computation of
   the same data (bit for bit: nothing converts on the way); `h5dump -H` and a full `h5dump`
   read the file.
3. Failures (every rank must exit with the same code 5, the message must name the file, no
   temporary file may be left, and an existing file at PATH must be untouched): a missing
   directory, a path under a regular file, an unwritable directory, a failure status injected on
   one rank of four, a real write failure on one rank of four (its file size limited, EFBIG),
   and a full file system (a small tmpfs, when this machine lets us mount one).
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sds_run  # noqa: E402

failures = 0


def check(ok, label):
    global failures
    print(("OK   " if ok else "FAIL ") + label, flush=True)
    if not ok:
        failures += 1


# The data test_h5out.c writes, computed again here.
SUBS = [
    ("model.decoder.layers.0.self_attn.q_proj", 7, 5),
    ("model.decoder.layers.0.fc1", 13, 3),
    ("model.decoder.layers.1.self_attn.k_proj", 3, 17),
    ("model.decoder.layers.1.fc2", 1, 9),
    ("model.layers.2.mlp.down_proj", 64, 48),
    ("model.layers.2.mlp.up_proj", 130, 257),
]
FINGERPRINT = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def mix(x):
    m = np.uint64(0xFFFFFFFF)
    x = x & m
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & m
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & m
    x ^= x >> np.uint64(16)
    return x


def expected(i, rows, cols):
    r = np.arange(rows, dtype=np.uint64)[:, None]
    c = np.arange(cols, dtype=np.uint64)[None, :]
    x = mix(np.uint64(i) * np.uint64(1000003) + r * np.uint64(7919) + c)
    mask = ((x >> np.uint64(24)) & np.uint64(1)).astype(np.uint8)
    w = ((x & np.uint64(0xFFFFFF)).astype(np.int64) - 0x800000).astype(np.float32) / np.float32(65536)
    w[mask == 1] = 0.0
    return w.astype(np.float32), mask


def expected_stats(i, mask):
    st = {
        "layer": i // 2,
        "method": "sds" if i % 2 else "sparsegpt",
        "pattern": "2:4" if i % 3 else "50%",
        "sparsity": float(mask.sum()) / float(mask.size),
        "rel_err_first": 0.1 * (i + 1),
        "rel_err_final": 0.05 * (i + 1) + 1e-17,
        "damping": 0.01 * 10.0 ** (i % 3),
        "seconds": 1.5 * i,
    }
    for k, name in enumerate(["rel_err_second", "sds_steps"][: i % 3]):
        st[name] = (k + 1) * 1000.0 + i + 0.25
    return st


def config_text():
    head = '{"method": "sds", "sparsity": "2:4", "note": "\u00fc\u00f1", "pad": "'
    return head + "".join(chr(ord("a") + k % 26) for k in range(100000)) + '"}'


def as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def check_contents(path, label):
    """Every value, statistic and root attribute of one file, through h5py."""
    with h5py.File(path, "r") as f:
        check(as_str(f.attrs["format"]) == "sds-mpi-prune" and int(f.attrs["format_version"]) == 1,
              "%s: format attributes" % label)
        check(as_str(f.attrs["fingerprint"]) == FINGERPRINT, "%s: fingerprint" % label)
        check(f["config"][()].decode("utf-8") == config_text(), "%s: configuration" % label)
        check(sorted(f["weights"].keys()) == sorted(s[0] for s in SUBS)
              and sorted(f["masks"].keys()) == sorted(s[0] for s in SUBS),
              "%s: sublayer names" % label)
        for i, (name, rows, cols) in enumerate(SUBS):
            w_want, m_want = expected(i, rows, cols)
            dw, dm = f["weights"][name], f["masks"][name]
            w, m = dw[()], dm[()]
            ok = (dw.dtype == np.dtype("<f4") and dm.dtype == np.dtype("u1")
                  and w.shape == (rows, cols) and m.shape == (rows, cols)
                  and np.array_equal(w.view("<u4"), w_want.view("<u4"))
                  and np.array_equal(m, m_want))
            check(ok, "%s: %s weights and mask [%d, %d] bit-exact" % (label, name, rows, cols))
            want = expected_stats(i, m_want)
            got = {k: dw.attrs[k] for k in dw.attrs}
            same = set(got) == set(want)
            for k, v in want.items():
                if not same:
                    break
                same = (as_str(got[k]) == v) if isinstance(v, str) else (got[k] == v)
            if not same:
                print("     got %r\n     want %r" % (got, want))
            check(same, "%s: %s statistics" % (label, name))


def leftovers(directory, keep):
    return sorted(n for n in os.listdir(directory) if n not in keep)


def rank_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("rank ") and ": code " in ln]


def expect_failure(np_, path, label, env=None, needles=(), existing=True):
    """Runs a write that must fail: code 5 on every rank, each rank's message naming the file,
    nothing new in the directory, an existing PATH untouched."""
    d = os.path.dirname(path)
    before = None
    if existing and os.path.isdir(d):
        with open(path, "wb") as f:
            f.write(b"an older result, not to be touched\n")
        os.utime(path, (1_000_000_000, 1_000_000_000))
        before = (open(path, "rb").read(), os.stat(path).st_mtime_ns)
    listing = sorted(os.listdir(d)) if os.path.isdir(d) else None
    rc, out, err, codes = sds_run.run(np_, ["write", path], env=env, timeout=300)
    lines = rank_lines(err)
    ok = codes == [5] * np_ and len(lines) == np_ and all(path in ln for ln in lines)
    for n in needles:
        ok = ok and all(n in ln for ln in lines)
    if not ok:
        print("     codes %r\n     %s" % (codes, "\n     ".join(lines or err.splitlines()[-5:])))
    check(ok, "%s: code 5 on all %d ranks, message names the file (%s)"
          % (label, np_, lines[0].split(": ", 2)[-1] if lines else "no message"))
    if listing is not None:
        now = sorted(os.listdir(d))
        check(now == listing, "%s: nothing left behind in %s %s" % (label, d, now if now != listing else ""))
    if before is not None:
        after = (open(path, "rb").read(), os.stat(path).st_mtime_ns)
        check(after == before, "%s: the existing %s is untouched" % (label, os.path.basename(path)))


def try_mount_tmpfs(where, kib):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk" % kib, "tmpfs", where],
                       capture_output=True, text=True)
    return r.returncode == 0


def main():
    binary, tmp = sys.argv[1], sys.argv[2]
    sds_run.BIN = binary
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)

    # 1. The same file at every rank count.
    files = {}
    for np_ in (1, 2, 4):
        path = os.path.join(tmp, "out_np%d.h5" % np_)
        rc, out, err, codes = sds_run.run(np_, ["write", path], timeout=300)
        ok = codes == [0] * np_ and "PASSED" in out
        if not ok:
            print(out[-2000:], err[-2000:])
        check(ok, "write and read back at %d ranks (test_h5out: %s)" % (np_, sds_run.last_line(out)))
        files[np_] = path
    data = {n: open(p, "rb").read() for n, p in files.items() if os.path.exists(p)}
    check(len(data) == 3 and data[1] == data[2] == data[4],
          "files byte-identical at 1, 2 and 4 ranks (%s bytes)" % sorted({len(v) for v in data.values()}))
    check(leftovers(tmp, {os.path.basename(p) for p in files.values()}) == [],
          "no temporary or reserve file left (%s)" % leftovers(tmp, {os.path.basename(p) for p in files.values()}))

    # 2. Other readers.
    for np_, path in files.items():
        if os.path.exists(path):
            check_contents(path, "h5py, %d ranks" % np_)
    path = files[4]
    r = subprocess.run(["h5dump", "-H", path], capture_output=True, text=True)
    ok = (r.returncode == 0 and all('DATASET "%s"' % s[0] in r.stdout for s in SUBS)
          and "H5T_IEEE_F32LE" in r.stdout and "H5T_STD_U8LE" in r.stdout
          and 'ATTRIBUTE "format_version"' in r.stdout and 'ATTRIBUTE "rel_err_final"' in r.stdout)
    check(ok, "h5dump -H reads the layout")
    r = subprocess.run(["h5dump", path], capture_output=True, text=True)
    check(r.returncode == 0 and '"sds-mpi-prune"' in r.stdout, "h5dump reads every value")

    # A successful run replaces an existing file.
    target = os.path.join(tmp, "replace.h5")
    with open(target, "wb") as f:
        f.write(b"old")
    rc, out, err, codes = sds_run.run(2, ["write", target], timeout=300)
    check(codes == [0, 0] and open(target, "rb").read() == data.get(4),
          "a successful run replaces an existing file with the new one")

    # 3. Failures.
    fail_dir = os.path.join(tmp, "fail")
    os.makedirs(fail_dir)
    expect_failure(4, os.path.join(tmp, "no-such-dir", "out.h5"), "missing directory",
                   needles=("No such file or directory",))
    check(not os.path.exists(os.path.join(tmp, "no-such-dir")), "missing directory: not created")
    plain = os.path.join(tmp, "a-file")
    with open(plain, "w") as f:
        f.write("x")
    expect_failure(4, os.path.join(plain, "out.h5"), "path under a regular file",
                   needles=("Not a directory",))

    if os.geteuid() != 0:
        ro = os.path.join(tmp, "read-only")
        os.makedirs(ro)
        with open(os.path.join(ro, "out.h5"), "wb") as f:
            f.write(b"an older result, not to be touched\n")
        os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
        expect_failure(4, os.path.join(ro, "out.h5"), "unwritable directory",
                       needles=("Permission denied",), existing=False)
        os.chmod(ro, stat.S_IRWXU)
    else:
        # root writes through permission bits; sysfs refuses new files even to root
        probe = "/sys/sds_h5out_probe"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.unlink(probe)
            print("SKIP unwritable directory: running as root and /sys accepts new files")
        except OSError:
            expect_failure(4, "/sys/sds_h5out_test.h5", "unwritable directory (/sys, as root)",
                           existing=False)

    target = os.path.join(fail_dir, "out.h5")
    for np_ in (1, 4):
        bad = np_ - 1 if np_ == 1 else 2
        expect_failure(np_, target, "failure status injected on rank %d of %d" % (bad, np_),
                       env={"SDS_TEST_FAIL_WRITE_RANK": str(bad)}, needles=("injected write failure",))
    for limit in ("0", "150000"):
        expect_failure(4, target, "rank 2 of 4 cannot write past %s bytes" % limit,
                       env={"SDS_TEST_FSIZE_LIMIT": limit + ":2"}, needles=("File too large",))

    # A full file system, at several sizes so the disk fills at different steps.
    mnt = tempfile.mkdtemp(prefix="h5out_full_")
    try:
        for kib in (64, 400, 570):
            if not try_mount_tmpfs(mnt, kib):
                print("SKIP full file system: cannot mount a tmpfs here (needs root and "
                      "CAP_SYS_ADMIN)")
                break
            try:
                expect_failure(4, os.path.join(mnt, "out.h5"), "full file system (%d KiB)" % kib,
                               needles=("No space left on device",))
            finally:
                r = subprocess.run(["umount", mnt], capture_output=True, text=True)
                check(r.returncode == 0, "unmount the small tmpfs %s" % r.stderr.strip())
    finally:
        try:
            os.rmdir(mnt)
        except OSError:
            pass

    print("%s (%d failures)" % ("PASSED" if failures == 0 else "FAILED", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
