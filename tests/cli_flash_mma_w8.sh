#!/bin/bash
# clformer test: flash_mma.cl's FM_WARPS 8 build variant (groups of 8 warps over 128 query rows or
# keys) through a copy of the kernels (tests/kernel_variant.sh), as the device calls run it:
# test_cl_flash_attention --kernel mma (bf16, fp16 and TF32 on the emulated tensor cores, every
# head size, windows, documents, GQA, T across group edges). The host takes the group size from
# the built kernels and sizes the range, the reductions and the emulation's registers from it, so
# a host that assumed 4 warps would fail here (tried). Skipped (77) without
# test_cl_flash_attention or an OpenCL device.
exec bash "$(dirname "$0")/kernel_variant.sh" cli_flash_mma_w8 "$1" "$2" flash_mma.cl \
  's|^#define FM_WARPS 4 /\*|#define FM_WARPS 8 /*|' '^#define FM_WARPS 8 ' \
  test_cl_flash_attention --kernel mma
