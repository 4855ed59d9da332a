#!/usr/bin/env bash
# clformer test: the kernels of cl_kernels/encoder.cl (the forward, the rank of every position by
# (token, position) with its counts split over the items of a work-group and added in local
# memory, the in-order sums of the runs of equal tokens, including a run longer than one batch of
# rows, C not a multiple of 4, and tokens outside the table) under oclgrind, the OpenCL device
# simulator, with out-of-bounds access, data-race, uninitialised-value and API checking on:
#     oclgrind --data-races --uninitialized --check-api test_cl_encoder --small
# It fails if the test fails (results against the CPU backend, bit for bit) or if oclgrind reports
# anything. First it plants a bug (the barrier between staging a tile of tokens in local memory
# and comparing with it, removed from a copy of encoder.cl) and requires oclgrind to report it,
# so a silent checker cannot pass for a clean run.
# Skips (exit 77) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
# The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_encoder.sh <path-to-clformer> <source-dir>
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_encoder test_cl_encoder encoder.cl \
    "share of the tile stored before any item reads it" --small "the encoder kernels" "$1" "$2"
