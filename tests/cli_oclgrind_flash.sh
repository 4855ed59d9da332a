#!/usr/bin/env bash
# clformer test: the flash attention kernels under oclgrind, the OpenCL device simulator, with
# out-of-bounds access, data-race, uninitialised-value and API checking on, at small sizes:
# causal GQA 4:2 at T = 19, a window of 3 with a document mask and GQA 4:1 at T = 21, T = 1 and
# two heads at T = 13,
# each against the double-precision reference of tests/flash_ref.h, for both sets of kernels:
# the register-tiled ones (cl_kernels/flash_tiled.cl: flash_tiled_forward, flash_tiled_delta,
# flash_tiled_dq, flash_tiled_dkv) and the rows ones (cl_kernels/flash_attention.cl:
# flash_forward, flash_backward_dq, flash_backward_dkv), and the matrix backward (the
# probabilities recomputed by the matrix attention ops, here cl_kernels/attention.cl's fused
# kernels, batch chunk by batch chunk) after the tiled forward (oclgrind's simulated device is a
# GPU), with a scratch budget of one byte (so the two-head case runs head by head, on the fused
# kernels' head ranges), and the matrix engine's kernels (cl_kernels/flash_mma.cl: flash_mma_forward,
# flash_mma_dq, flash_mma_dkv, with mma.sync emulated) in bf16 and TF32 on the two small cases of
# head size 16 (one planted bug per kernel, each run on its own, so each kernel's race is shown
# to be seen):
#     oclgrind --data-races --uninitialized --check-api test_cl_flash_attention --small --kernel K
# It fails if a result differs from the reference, if oclgrind reports anything, or if the test
# did not pass. Before each set it plants a bug (the barriers between loading a tile into local
# memory and reading it, removed from a copy of the kernel file: rows then read the tile while
# other work-items still write it; for the matrix set, in the tiled forward it runs first) and
# requires oclgrind to report it, so that a silent checker cannot pass for a clean run. Skips (exit 77) when oclgrind or the OpenCL tests are missing,
# unless CF_REQUIRE_OPENCL=1. The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_flash.sh <path-to-clformer> <source-dir>
set -u
marker="the whole tile is in local memory before any row reads it"
bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_flash test_cl_flash_attention \
    flash_tiled.cl "$marker" "--small --kernel tiled" "the tiled flash attention kernels" \
    "$1" "$2" "^PASS test_cl_flash_attention" "--small --kernel tiled" || exit $?
bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_flash test_cl_flash_attention \
    flash_attention.cl "$marker" "--small --kernel rows" "the rows flash attention kernels" \
    "$1" "$2" "^PASS test_cl_flash_attention" "--small --kernel rows" || exit $?
bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_flash \
    test_cl_flash_attention flash_tiled.cl "$marker" "--small --kernel matrix" \
    "the matrix flash backward" "$1" "$2" "^PASS test_cl_flash_attention" "--small --kernel matrix" || exit $?
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_flash test_cl_flash_attention \
    flash_mma.cl "$marker (forward)" "--small --kernel mma" \
    "the matrix engine's flash kernels (emulated)" "$1" "$2" "^PASS test_cl_flash_attention" \
    "--small --kernel mma" \
    flash_mma.cl "$marker (dq)" "--small --kernel mma" \
    flash_mma.cl "$marker (dkv)" "--small --kernel mma"
