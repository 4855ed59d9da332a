#!/bin/bash
# clformer test: gemm_half.cl's GH_NT 128 build variant (4 warps of 64 x 64 tiles, each work-item
# staging four rows a tile) through a copy of the kernels (CF_KERNEL_DIR), as the device calls run
# it: test_cl_gemm_half in bf16 on the emulated tensor cores (every transpose, partial blocks,
# split-K, the epilogues). The host takes the group size from the built kernel, so a host that
# launched 256 work-items for this build would fail here. Skipped (77) without test_cl_gemm_half
# or an OpenCL device.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
bin="$(dirname "$CLF")/test_cl_gemm_half"
if [ ! -x "$bin" ]; then
  echo "SKIP cli_gemm_half_nt128: $bin not built (this build has no OpenCL backend)"
  exit 77
fi
cp -r "$SRC/cl_kernels" "$W/k"
sed -i 's/^#define GH_NT 256 /#define GH_NT 128 /' "$W/k/gemm_half.cl"
if grep -q '^#define GH_NT 128 ' "$W/k/gemm_half.cl"; then
  ok "the copy of gemm_half.cl is the GH_NT 128 variant"
else
  bad "could not make the GH_NT 128 variant (the line '#define GH_NT 256 ' moved?)"
  exit 1
fi
out=$(CF_KERNEL_DIR="$W/k" CF_MATRIX_ENGINE=emulate:nvidia-mma-sync "$bin" --prec bf16 2>&1); rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP cli_gemm_half_nt128: $(printf '%s\n' "$out" | tail -1)"
  exit 77
fi
[ $rc -eq 0 ] && ok "test_cl_gemm_half passes on GH_NT 128: $(printf '%s\n' "$out" | tail -1)" \
  || bad "test_cl_gemm_half on GH_NT 128 (rc $rc): $(printf '%s\n' "$out" | grep -E '^FAIL|error' | head -5)"
[ $fail -eq 0 ] && echo "PASS cli_gemm_half_nt128" || echo "FAIL cli_gemm_half_nt128"
exit $fail
