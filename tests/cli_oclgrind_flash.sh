#!/usr/bin/env bash
# clformer test: the flash attention kernels (cl_kernels/flash_attention.cl: flash_forward,
# flash_backward_dq, flash_backward_dkv) under oclgrind, the OpenCL device simulator, with
# out-of-bounds access, data-race, uninitialised-value and API checking on, at small sizes:
# causal GQA 4:2 at T = 19, a window of 3 with a document mask and GQA 4:1 at T = 21, and T = 1,
# each against the double-precision reference of tests/flash_ref.h:
#     oclgrind --data-races --uninitialized --check-api test_cl_flash_attention --small
# It fails if a result differs from the reference, if oclgrind reports anything, or if the test
# did not pass. First it plants a bug (the barrier between loading a key/value tile into local
# memory and reading it, removed from a copy of flash_attention.cl: rows then read the tile while
# other work-items still write it) and requires oclgrind to report it, so that a silent checker
# cannot pass for a clean run. Skips (exit 77) when oclgrind or the OpenCL tests are missing,
# unless CF_REQUIRE_OPENCL=1. The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_flash.sh <path-to-clformer> <source-dir>
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_flash test_cl_flash_attention \
    flash_attention.cl "the whole tile is in local memory before any row reads it" "--small" \
    "the flash attention kernels" "$1" "$2" "^PASS test_cl_flash_attention" "--small"
