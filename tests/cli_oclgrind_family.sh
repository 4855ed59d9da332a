#!/usr/bin/env bash
# clformer test: the model family's kernels under oclgrind, the OpenCL device simulator, with
# out-of-bounds access, data-race, uninitialised-value and API checking on, at small sizes:
# RMSNorm forward and backward (plain and grouped strided rows, assigned and accumulated), RoPE and
# its inverse, the activations (relu2, silu, GELU through the act slots), SwiGLU forward and
# backward, GQA and MHA attention forward and backward on the fused kernels (oclgrind's device
# takes the fused path), the soft-capped cross-entropy, LayerNorm forward and backward (with and
# without bias; the backward's partial sums go through reduce_colsum_partial) and the encoder
# forward and backward (with and without wpe):
#     oclgrind --data-races --uninitialized --check-api test_backend_ops --cross --small \
#         --only rmsnorm,rope,act_,swiglu,attention,crossentropy,layernorm,encoder opencl
# It fails if a result differs from the CPU backend's (test_backend_ops' tolerances), if oclgrind
# reports anything, or if the fused attention kernels did not run. First it plants a bug (the
# barrier after a work-group reduction's result is read, removed from a copy of common.cl: a
# work-group of rmsnorm_backward that walks several units then starts the next unit's reduction
# while other items still read the previous result) and requires oclgrind to report it on
# rmsnorm_backward alone, so a silent checker cannot pass for a clean run.
# (The uninitialised-value reports this run once had on rmsnorm_backward, layernorm_backward's
# column sums and encoder_backward_wte came from oclgrind losing track of re-created scratch
# buffers; see cf_cl_scratch in src/backend/opencl/cl_runtime.c.)
# Open finding: the inference ops are not in this run. decode_attention (cl_kernels/
# decode_attention.cl) gets "uninitialized value" reports on the score row it writes to and reads
# back from its global scratch when it runs after the other ops in one process, and gemm_q8's
# dequantised tiles then get them inside CLBlast's XgemmDirectTT; run alone
# (`--only decode_attention,kv_append,gemm_q8`) all three are clean and their results match the
# CPU backend's in every case, which points at oclgrind's tracking of buffers created at reused
# addresses (see cf_cl_scratch in cl_runtime.c) but is not proven. They are covered by
# test_backend_ops.
# Skips (exit 77) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
# The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_family.sh <path-to-clformer> <source-dir>
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_family test_backend_ops common.cl \
    "float r = red\[0\];" "--cross --small --only rmsnorm_backward opencl" \
    "the family's kernels" "$1" "$2" "^note: opencl attention: [1-9][0-9]* calls on the fused" \
    "--cross --small --only rmsnorm,rope,act_,swiglu,attention_forward,attention_backward,crossentropy,layernorm,encoder opencl"
