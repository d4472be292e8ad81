"""Pruning kernels: sds-mpi's C kernels against the same algorithms in PyTorch, side by side.

  .venv/bin/python bench/bench_prune_kernels.py [--tokens 32768] [--seqlen 2048] [--repeats 3]
                                                [--threads 2] [SHAPE ...]

SHAPE is ROWSxCOLS, opt125m (768x768 3072x768 768x3072) or opt1.3b (2048x2048 8192x2048
2048x8192); default both. Runs build/tests/bench_prune_kernels (or $SDS_BENCH_BIN) with
--json, then, in this process, PyTorch (fp32, torch.set_num_threads(threads)) on the same shapes:
  - Hessian: the reference's accumulation, sequence by sequence
    (H *= n/(n+1); x *= sqrt(2/(n+1)); H += x^T x), beside the C ssyrk and plain sgemm figures;
  - SparseGPT: an implementation of the reference algorithm (SPEC 2.5: dead inputs, 1% damping,
    Cholesky / cholesky_inverse / upper Cholesky, blocks of 128, per-block threshold or N:M,
    column updates, lazy update of the rest), timed as preparation and sweep, at 50% and 2:4.
Every figure is the median of --repeats runs. Calibration is --tokens tokens (default 16 x 2048,
scaled down from the papers' 128 x 2048: GFLOP/s do not depend on the count and Hessian times
scale linearly). Debian's torch uses the system OpenBLAS: it runs with the OPENBLAS_CORETYPE the
C program chose, so both sides use the same kernels.
Run it on an otherwise idle machine: with other processes on the cores, torch's OpenMP pool
stalls on each of the sweep's small operations (768x768 sweep: 12.9 s at 2 threads beside a
2-process job on 2 cores, 0.23 s at 1 thread), which measures the load, not the algorithm.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BLOCK = 128
PERCDAMP = 0.01
SETS = {"opt125m": [(768, 768), (3072, 768), (768, 3072)],
        "opt1.3b": [(2048, 2048), (8192, 2048), (2048, 8192)]}


def parse_shapes(args):
    shapes = []
    for a in args or ["opt125m", "opt1.3b"]:
        if a in SETS:
            shapes += SETS[a]
        else:
            r, c = a.lower().split("x")
            shapes.append((int(r), int(c)))
    return shapes


def run_c(binary, shapes, a):
    cmd = [binary, "--json", "--tokens", str(a.tokens), "--seqlen", str(a.seqlen),
           "--repeats", str(a.repeats), "--threads", str(a.threads)]
    cmd += ["%dx%d" % s for s in shapes]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def torch_hessian(torch, X, nseq, seqlen, cols):
    """The reference accumulation (running rescale), fp32; X holds a few sequences, cycled."""
    H = torch.zeros(cols, cols)
    n = 0
    for s in range(nseq):
        inp = X[s % X.shape[0]]
        H *= n / (n + 1)
        n += 1
        inp = math.sqrt(2 / n) * inp
        H += inp.t().matmul(inp)
    return H


def torch_prepare(torch, W, H):
    W = W.clone()
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    idx = torch.arange(H.shape[0])
    H[idx, idx] += PERCDAMP * torch.mean(torch.diag(H))
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    return W, torch.linalg.cholesky(Hinv, upper=True)


def torch_sweep(torch, W, U, sparsity, n, m):
    rows, cols = W.shape
    W = W.clone()
    for i1 in range(0, cols, BLOCK):
        i2 = min(i1 + BLOCK, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        d = torch.diag(U1)
        E = torch.zeros_like(W1)
        if n == 0:
            score = W1 ** 2 / d.reshape(1, -1) ** 2
            k = int(score.numel() * sparsity)
            thresh = torch.sort(score.flatten())[0][k]
            prune = score <= thresh
        else:
            prune = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            if n != 0 and i % m == 0:
                score = W1[:, i:i + m] ** 2 / d[i:i + m].reshape(1, -1) ** 2
                prune.scatter_(1, i + torch.topk(score, n, dim=1, largest=False)[1], True)
            w = W1[:, i]
            q = w.clone()
            q[prune[:, i]] = 0
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            W1[:, i] = q
            E[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= E.matmul(U[i1:i2, i2:])
    return W


def med(f, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shapes", nargs="*")
    ap.add_argument("--tokens", type=int, default=16 * 2048)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin", default=os.environ.get(
        "SDS_BENCH_BIN", os.path.join(ROOT, "build", "tests", "bench_prune_kernels")))
    a = ap.parse_args()
    shapes = parse_shapes(a.shapes)
    c = run_c(a.bin, shapes, a)
    setup = c[0]
    if "OPENBLAS_CORETYPE" not in os.environ and setup["blas_core"] != "Prescott":
        os.environ["OPENBLAS_CORETYPE"] = setup["blas_core"]
    import torch  # after OPENBLAS_CORETYPE: OpenBLAS picks its kernels when loaded
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    nseq = a.tokens // a.seqlen
    print("C: OpenBLAS %s, %d thread(s); torch %s fp32, %d thread(s), OPENBLAS_CORETYPE=%s; "
          "%d tokens (%d x %d); median of %d" % (
              setup["blas_core"], setup["blas_threads"], torch.__version__,
              torch.get_num_threads(), os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
              nseq * a.seqlen, nseq, a.seqlen, a.repeats))

    hess = {r["cols"]: r for r in c if r["kind"] == "hessian"}
    sgpt = {(r["rows"], r["cols"], r["pattern"]): r for r in c if r["kind"] == "sparsegpt"}
    print("\nHessian accumulation, %d tokens" % (nseq * a.seqlen))
    print("| cols | C ssyrk s | C ssyrk GFLOP/s | C sgemm s | C sgemm GFLOP/s | torch s | "
          "torch GFLOP/s (full X^T X) | C / torch time |")
    print("|---|---|---|---|---|---|---|---|")
    Hs = {}
    for cols in sorted({s[1] for s in shapes}):
        X = torch.rand(4, a.seqlen, cols) * 2 - 1
        t, H = med(lambda: torch_hessian(torch, X, nseq, a.seqlen, cols), a.repeats)
        Hs[cols] = H
        r = hess[cols]
        gf = 2.0 * nseq * a.seqlen * cols * cols / t * 1e-9
        print("| %d | %.3f | %.1f | %.3f | %.1f | %.3f | %.1f | %.2f |" % (
            cols, r["seconds"], r["gflops"], r["sgemm_seconds"], r["sgemm_gflops"], t, gf,
            r["seconds"] / t))
        sys.stdout.flush()

    print("\nSparseGPT (B = 128, percdamp 0.01), seconds")
    print("| rows x cols | pattern | C prepare | C sweep | C total | torch prepare | torch sweep "
          "| torch total | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rows, cols in shapes:
        W0 = torch.rand(rows, cols) * 2 - 1
        tp, (W, U) = med(lambda: torch_prepare(torch, W0, Hs[cols]), a.repeats)
        for pat, (sp, n, m) in (("0.5", (0.5, 0, 0)), ("2:4", (0.0, 2, 4))):
            ts, _ = med(lambda: torch_sweep(torch, W, U, sp, n, m), a.repeats)
            r = sgpt[(rows, cols, pat)]
            ct = r["prepare_seconds"] + r["sweep_seconds"]
            print("| %dx%d | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1fx |" % (
                rows, cols, pat, r["prepare_seconds"], r["sweep_seconds"], ct, tp, ts, tp + ts,
                (tp + ts) / ct))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
