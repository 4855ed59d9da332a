#!/usr/bin/env bash
# clformer test: every OpenCL kernel under oclgrind (the OpenCL device simulator) at small sizes,
# with out-of-bounds access, data-race, uninitialised-value and API checking on:
#     oclgrind --data-races --uninitialized --check-api test_cl_ops --small
# It fails if test_cl_ops fails (results against the CPU backend) or if oclgrind reports anything,
# and if attention's default path there was not the fused kernels (oclgrind's device is a GPU).
# First it plants a bug (a missing barrier in the work-group reductions of a copy of
# cl_kernels/common.cl, which reduce.cl uses) and requires oclgrind
# to report it, so a silent checker cannot pass for a clean run.
# Skips (exit 77) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
#     bash tests/cli_oclgrind.sh <path-to-clformer> <source-dir>
# The steps are tests/oclgrind_kernels.sh's; the shipped run must also show attention's default
# path under oclgrind (a GPU-like device) on the fused kernels.
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind test_cl_ops common.cl "red\[lid\] = v;" \
    "--small --only reduce" "every kernel" "$1" "$2" \
    "^ok .*mode auto: forward and backward ran on the fused path"
