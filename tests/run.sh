#!/usr/bin/env bash
# The test command: sets up (Debian packages, the Python reference environment), builds, and
# runs every test with ctest. Usage: tests/run.sh [--asan] [extra ctest arguments]
#   --asan   build and run the suite with AddressSanitizer + UndefinedBehaviorSanitizer too
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
asan=0
if [ "${1:-}" = "--asan" ]; then asan=1; shift; fi

scripts/setup.sh --tests
ctest --test-dir build --output-on-failure -j2 "$@"

if [ "$asan" = 1 ]; then
  SDS_BUILD_DIR=build-asan SDS_BUILD_TYPE=Debug SDS_CMAKE_ARGS="-DSDS_SANITIZE=ON" scripts/setup.sh --tests
  # Open MPI's own allocations are not ours to fix: report leaks in our code only.
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j2 "$@"
fi
