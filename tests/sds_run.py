"""Running sds-mpi under mpirun from the tests, with each rank's exit code recorded."""
import os
import shlex
import subprocess
import tempfile

BIN = os.environ.get("SDS_BIN", "sds-mpi")
# tests/run.sh's second pass (AddressSanitizer, UBSan, LeakSanitizer) sets SDS_SANITIZED=1. It
# is there to find memory errors and leaks, which do not depend on how many configurations
# repeat the same code paths, and every process costs ~10x there: the end-to-end tests run a
# subset of their configurations in it (pick), every code path still once; the plain pass
# runs them all.
SANITIZED = os.environ.get("SDS_SANITIZED") == "1"


def pick(full, sanitized):
    """full in the plain pass; the subset `sanitized` under the sanitizers (see SANITIZED)."""
    return sanitized if SANITIZED else full
MPIRUN = shlex.split(os.environ.get("SDS_MPIRUN", "mpirun --allow-run-as-root --oversubscribe"))


def run(np_, args, env=None, timeout=600):
    """Returns (mpirun exit code, stdout, stderr, [exit code of each rank]).

    mpirun is told not to abort the job on the first non-zero exit, so that every rank can
    record its code; in that mode mpirun's own code is 0 (see run_plain for it)."""
    with tempfile.TemporaryDirectory() as d:
        # every rank writes its own exit code, so "the same code on every rank" is checked
        wrapper = ('"$0" "$@"; rc=$?; echo $rc > "%s/rc.$OMPI_COMM_WORLD_RANK"; exit $rc' % d)
        # let every rank finish and record its code before mpirun acts on the first non-zero one
        cmd = MPIRUN + ["--mca", "orte_abort_on_non_zero_status", "0", "-np", str(np_),
                        "sh", "-c", wrapper, BIN] + list(args)
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
        codes = []
        for r in range(np_):
            f = os.path.join(d, "rc.%d" % r)
            codes.append(int(open(f).read()) if os.path.exists(f) else None)
        return p.returncode, p.stdout, p.stderr, codes


def last_line(stdout):
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_plain(np_, args, env=None, timeout=600):
    """mpirun as a user runs it: returns (mpirun exit code, stdout, stderr)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(MPIRUN + ["-np", str(np_), BIN] + list(args), capture_output=True,
                       text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr
