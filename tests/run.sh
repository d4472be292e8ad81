#!/usr/bin/env bash
# The test command: sets up (Debian packages, the Python reference environment, the real
# SmolLM2 model), builds with -Werror, runs every test with ctest, then builds and runs the
# whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer.
#   tests/run.sh [--quick] [extra ctest arguments, e.g. -R tokenizer]
#   --quick  skip the sanitizer pass
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
sanitize=1
if [ "${1:-}" = "--quick" ]; then sanitize=0; shift; fi

SDS_CMAKE_ARGS="-DSDS_WERROR=ON" scripts/setup.sh --tests
jobs/fetch_smollm2.sh >/dev/null
ctest --test-dir build --output-on-failure -j2 "$@"

if [ "$sanitize" = 1 ]; then
  # Debug keeps the assertions; -O1 (ASan's usual level) runs the suite about twice as fast as
  # -O0 and still reports every error the sanitizers see.
  SDS_BUILD_DIR=build-asan SDS_BUILD_TYPE=Debug \
    SDS_CMAKE_ARGS="-DSDS_SANITIZE=ON -DSDS_WERROR=ON -DCMAKE_C_FLAGS=-g -DCMAKE_C_FLAGS_DEBUG=-O1" \
    scripts/setup.sh --tests
  # Slow unwinding gives leak reports whole stacks, so that what Open MPI, HDF5 and OpenBLAS
  # keep until exit is matched by tests/lsan.supp and only our leaks fail a test.
  SDS_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
    LSAN_OPTIONS="suppressions=$here/tests/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j2 "$@"
fi
