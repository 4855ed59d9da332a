#!/bin/bash
# clformer test: flash_mma.cl's FM_WARPS 8 build variant (groups of 8 warps over 128 query rows or
# keys) through a copy of the kernels (CF_KERNEL_DIR), as the device calls run it:
# test_cl_flash_attention --kernel mma (bf16, fp16 and TF32 on the emulated tensor cores, every
# head size, windows, documents, GQA, T across group edges). The host takes the group size from the
# built kernels and sizes the range, the reductions and the emulation's registers from it, so a
# host that assumed 4 warps would fail here. Skipped (77) without test_cl_flash_attention or an
# OpenCL device.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
bin="$(dirname "$CLF")/test_cl_flash_attention"
if [ ! -x "$bin" ]; then
  echo "SKIP cli_flash_mma_w8: $bin not built (this build has no OpenCL backend)"
  exit 77
fi
cp -r "$SRC/cl_kernels" "$W/k"
sed -i 's|^#define FM_WARPS 4 /\*|#define FM_WARPS 8 /*|' "$W/k/flash_mma.cl"
if grep -q '^#define FM_WARPS 8 ' "$W/k/flash_mma.cl"; then
  ok "the copy of flash_mma.cl is the FM_WARPS 8 variant"
else
  bad "could not make the FM_WARPS 8 variant (the line '#define FM_WARPS 4 /*' moved?)"
  exit 1
fi
out=$(CF_KERNEL_DIR="$W/k" "$bin" --kernel mma 2>&1); rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP cli_flash_mma_w8: $(printf '%s\n' "$out" | tail -1)"
  exit 77
fi
[ $rc -eq 0 ] && ok "test_cl_flash_attention --kernel mma passes on FM_WARPS 8: $(printf '%s\n' "$out" | tail -1)" \
  || bad "test_cl_flash_attention --kernel mma on FM_WARPS 8 (rc $rc): $(printf '%s\n' "$out" | grep -E '^FAIL|error' | head -5)"
[ $fail -eq 0 ] && echo "PASS cli_flash_mma_w8" || echo "FAIL cli_flash_mma_w8"
exit $fail
