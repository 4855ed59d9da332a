#!/usr/bin/env bash
# clformer test: the GEMM on half operands (cl_kernels/gemm_half.cl with MMA_EMULATE: the engine
# row nvidia-mma-sync emulated, its mma.sync and conversions in OpenCL C, the fragments read word
# by word where the hardware uses ldmatrix) under oclgrind, with out-of-bounds access, data-race,
# uninitialised-value and API checking on, in bf16:
#     CF_MATRIX_ENGINE=emulate:nvidia-mma-sync \
#         oclgrind --data-races --uninitialized --check-api test_cl_gemm_half --small
# (the packing of both operand layouts, the column sums, split-K and its reduce, the epilogue).
# Two bugs are planted first, each in its own run, and oclgrind must report both: the barrier
# after gh_gemm's first staged slice, and the one after gh_pack's transposing tile. Skips (exit 77)
# when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1. The steps are
# tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_gemm_half.sh <path-to-clformer> <source-dir>
set -u
export CF_MATRIX_ENGINE=emulate:nvidia-mma-sync
# gh_gemm's two copies of both tiles take 32 KiB, the emulated warps' registers 6 KiB more: above
# oclgrind's default 32 KiB of local memory, within NVIDIA's 48
export CF_OCLGRIND_LOCAL_MEM=49152
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_gemm_half test_cl_gemm_half gemm_half.cl \
    "copy 0 staged before anyone reads it" "--planted" \
    "the GEMM on half operands (emulated), bf16" "$1" "$2" \
    "^precision bf16 on emulate:nvidia-mma-sync" "--small" \
    gemm_half.cl "the tile complete before its columns are read" "--planted"
