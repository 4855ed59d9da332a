#!/bin/sh
# clformer: install the build and test dependencies from Debian 12's packages (needs root or sudo).
set -e
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
# clang, libclang-rt-14-dev (libFuzzer and the sanitizer runtimes of Debian 12's clang-14) and
# libomp-dev (clang's OpenMP) build the fuzz targets of tests/fuzz (ctest fuzz_targets).
# libopenmpi-dev and openmpi-bin: data-parallel training (CF_MPI, mpirun; ctest cli_mpi).
PKGS="build-essential cmake pkg-config libcjson-dev ocl-icd-opencl-dev opencl-headers \
libclblast-dev pocl-opencl-icd clinfo oclgrind libopenblas-dev python3 \
clang libclang-rt-14-dev libomp-dev libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
