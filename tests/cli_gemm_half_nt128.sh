#!/bin/bash
# clformer test: gemm_half.cl's GH_NT 128 build variant (4 warps of 64 x 64 tiles, each work-item
# staging four rows a tile) through a copy of the kernels (tests/kernel_variant.sh), as the device
# calls run it: test_cl_gemm_half in bf16 on the emulated tensor cores (every transpose, partial
# blocks, split-K, the epilogues). The host takes the group size from the built kernel, so a host
# that launched 256 work-items for this build would fail here. Skipped (77) without
# test_cl_gemm_half or an OpenCL device.
CF_MATRIX_ENGINE=emulate:nvidia-mma-sync exec bash "$(dirname "$0")/kernel_variant.sh" \
  cli_gemm_half_nt128 "$1" "$2" gemm_half.cl 's/^#define GH_NT 256 /#define GH_NT 128 /' \
  '^#define GH_NT 128 ' test_cl_gemm_half --prec bf16
