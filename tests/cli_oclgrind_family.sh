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
# The inference ops run here too: kv_append, decode_attention, gemm_q8 (the row kernel and the
# dequantised tiles through the backend's GEMM, CLBlast's XgemmDirectTT on this device) and
# embed_q8. decode_attention and gemm_q8 were once reported ("uninitialized value") on what they
# wrote to their scratch and read back when they ran after the other ops in one process, clean
# alone, results matching the CPU backend's: an oclgrind artefact, not a read of unwritten data.
# Its uninitialised-value checker keeps a released buffer's shadow for the next buffer created at
# the same index, so a scratch created after the op tests had released many smaller buffers got a
# smaller shadow, and stores past it were dropped (tools/oclgrind_repro/recycled_buffer.c
# reproduces it in 80 lines). The inference scratch is now written in full from the host when
# created, which makes oclgrind re-create the shadow (cl_infer.c, grow): this run's arguments
# gave 834 reports on decode_attention without that write and none with it. A second planted bug, the
# barrier after decode_attention loads its query row into local memory, must be reported too.
# decode_attention runs with and without each row's first key (row "decode_attention lo": lo
# values below 0 and past the row's position among them); a third planted bug, the clamp of lo
# into [0, p] removed, must be reported (reads and writes before the cache and the score rows).
# Skips (exit 77) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
# The steps are tests/oclgrind_kernels.sh's.
#     bash tests/cli_oclgrind_family.sh <path-to-clformer> <source-dir>
set -u
exec bash "$2/tests/oclgrind_kernels.sh" cli_oclgrind_family test_backend_ops common.cl \
    "float r = red\[0\];" "--cross --small --only rmsnorm_backward opencl" \
    "the family's kernels" "$1" "$2" "^note: opencl attention: [1-9][0-9]* calls on the fused" \
    "--cross --small --only rmsnorm,rope,act_,swiglu,attention_forward,attention_backward,crossentropy,layernorm,encoder,kv_append,decode_attention,gemm_q8,embed_q8 opencl" \
    decode_attention.cl "q\[i\] = qkv\[qkv_off" "--cross --small --only decode_attention opencl" \
    decode_attention.cl "int lo = has_lo" "--cross --small --only decode_attention opencl"
