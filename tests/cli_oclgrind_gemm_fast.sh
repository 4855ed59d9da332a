#!/usr/bin/env bash
# clformer test: the kernels of cl_kernels/gemm_fast.cl (every variant with up to 8x8 outputs per
# work-item that fits oclgrind's 32 KiB of local memory and 256x128/8 with 16x8, every transpose
# combination with element and float4 accesses, split-K and its second pass) under oclgrind, the
# OpenCL device simulator, with out-of-bounds access, data-race,
# uninitialised-value and API checking on:
#     oclgrind --data-races --uninitialized --check-api test_cl_gemm_fast --small
# It fails if the test fails (results against the CPU backend) or if oclgrind reports anything.
# First it plants a bug (the barrier between staging the first K slice in local memory and reading
# it, removed from a copy of gemm_fast.cl) and requires oclgrind to report it on one small product,
# so a silent checker cannot pass for a clean run.
# Skips (exit 77) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
# The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_gemm_fast.sh <path-to-clformer> <source-dir>
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_gemm_fast test_cl_gemm_fast gemm_fast.cl \
    "copy 0 complete before anyone reads it" --planted "the fast GEMM kernels" "$1" "$2"
