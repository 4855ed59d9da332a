#!/usr/bin/env bash
# clformer test: the register-blocked GEMM's tensor-core forms with packed tiles
# (cl_kernels/gemm_fast.cl built with MMA_PACKED_TILES and MMA_EMULATE: the engine row
# nvidia-mma-sync-packed-tiles emulated, its mma.sync and conversions in OpenCL C) under oclgrind, with
# out-of-bounds access, data-race, uninitialised-value and API checking on, in bf16 and in TF32:
#     CF_MATRIX_ENGINE=emulate:nvidia-mma-sync-packed-tiles \
#         oclgrind --data-races --uninitialized --check-api test_cl_gemm_fast --prec bf16 --small
# (and --tf32 --small): every tensor-core variant that fits oclgrind's local memory, the
# transposes, split-K, the epilogues. This checks that the packed tiles stay inside the local
# arrays the kernels declare and that the emulated warps' exchanges are separated by barriers.
# Before each precision the barrier after the first K slice's staging is removed from a copy of
# gemm_fast.cl, and oclgrind must report it. Skips (exit 77) when oclgrind or the OpenCL tests
# are missing, unless CF_REQUIRE_OPENCL=1. The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_gemm_mma.sh <path-to-clformer> <source-dir>
set -u
export CF_MATRIX_ENGINE=emulate:nvidia-mma-sync-packed-tiles
bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_gemm_mma test_cl_gemm_fast gemm_fast.cl \
    "copy 0 complete before anyone reads it" "--prec bf16 --planted" \
    "the packed-tile tensor-core GEMM (emulated), bf16" "$1" "$2" \
    "^precision bf16: matrix engine emulate:nvidia-mma-sync-packed-tiles" "--prec bf16 --small" || exit $?
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_gemm_mma test_cl_gemm_fast gemm_fast.cl \
    "copy 0 complete before anyone reads it" "--tf32 --planted" \
    "the packed-tile tensor-core GEMM (emulated), TF32" "$1" "$2" \
    "CF_MATRIX_ENGINE=emulate:nvidia-mma-sync-packed-tiles: that engine runs" "--tf32 --small"
