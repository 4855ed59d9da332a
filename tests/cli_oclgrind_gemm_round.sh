#!/usr/bin/env bash
# clformer test: the register-blocked GEMM's bf16/fp16 portable form (cl_kernels/gemm_fast.cl
# built with ROUND_IN: inputs rounded as they are staged, the bias-gradient sums of unrounded
# values) under oclgrind, with out-of-bounds access, data-race, uninitialised-value and API
# checking on:
#     oclgrind --data-races --uninitialized --check-api test_cl_gemm_fast --prec fp16 --small
# (every variant that fits oclgrind's local memory, the transposes, split-K, the epilogues, the
# rounding of ties, overflow and subnormals). First the barrier after the first K slice's staging
# is removed from a copy of gemm_fast.cl, and oclgrind must report it on a bf16 product.
# Skips (exit 77) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
# The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_gemm_round.sh <path-to-clformer> <source-dir>
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_gemm_round test_cl_gemm_fast gemm_fast.cl \
    "copy 0 complete before anyone reads it" "--prec bf16 --planted" \
    "the fast GEMM kernels with fp16 inputs rounded in the kernel" "$1" "$2" \
    "^precision fp16: inputs rounded as they are staged" "--prec fp16 --small"
