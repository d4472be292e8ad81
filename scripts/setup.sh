#!/usr/bin/env bash
# Sets up everything sds-mpi needs on a Debian 12 machine, then builds it.
#   scripts/setup.sh            Debian packages (if missing) + build in ./build
#   scripts/setup.sh --tests    also the Python test environment ./.venv (references only)
# Safe to run again: it installs only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

want_tests=0
build_dir=${SDS_BUILD_DIR:-build}
for a in "$@"; do
  case "$a" in
    --tests) want_tests=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

# Build and run-time packages of the product.
debs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libscalapack-openmpi-dev
      libhdf5-openmpi-dev hdf5-tools libopenblas-dev libjansson-dev libpcre2-dev)
# The test references: Debian's CPU-only PyTorch (PyPI's wheel pulls GBs of CUDA libraries).
if [ "$want_tests" = 1 ]; then
  debs+=(python3 python3-venv python3-pip python3-torch python3-numpy python3-h5py cppcheck
        clang-format)
fi
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_tests" = 1 ]; then
  # Debian's python (where python3-torch lives), with pinned PyPI packages on top.
  if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  if ! cmp -s tests/requirements.txt .venv/.requirements.done 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt .venv/.requirements.done
  fi
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${SDS_BUILD_TYPE:-RelWithDebInfo} ${SDS_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j "$(nproc)" >/dev/null
echo "setup: built $build_dir/sds-mpi"
