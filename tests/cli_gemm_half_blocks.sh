#!/bin/bash
# clformer test: gemm_half.cl's other blocks (build variants chosen by CF_GEMM_HALF_BLOCK: 128 x 64
# in groups of 4 warps; 128 x 192 with K slices of 32, three staging passes of B; 128 x 256 with
# slices of 16, 64 x 64 warp tiles) as the device calls run them: test_cl_gemm_half in bf16 on
# the emulated tensor cores (every transpose, partial blocks, split-K, the epilogues), each run
# required to say that it ran the variant; and a value it does not know (one warning, the
# default). Skipped (77) without test_cl_gemm_half or an OpenCL device.
set -u
CLF=$1
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
bin="$(dirname "$CLF")/test_cl_gemm_half"
if [ ! -x "$bin" ]; then
  echo "SKIP cli_gemm_half_blocks: $bin not built (this build has no OpenCL backend)"
  exit 77
fi
for b in 64x32 192x32 256x16; do
  out=$(CF_GEMM_HALF_BLOCK=$b CF_MATRIX_ENGINE=emulate:nvidia-mma-sync "$bin" --prec bf16 2>&1)
  rc=$?
  if [ $rc -eq 77 ]; then
    echo "SKIP cli_gemm_half_blocks: $(printf '%s\n' "$out" | tail -1)"
    exit 77
  fi
  want="blocks of 128 x ${b%x*}, K slices of ${b#*x}"
  printf '%s\n' "$out" | grep -q "$want" && ok "$b: the run says '$want'" \
    || bad "$b: the run does not say '$want': $(printf '%s\n' "$out" | grep precision)"
  [ $rc -eq 0 ] && ok "$b: $(printf '%s\n' "$out" | tail -1)" \
    || bad "$b (rc $rc): $(printf '%s\n' "$out" | grep -E '^FAIL|error' | head -5)"
done
out=$(CF_GEMM_HALF_BLOCK=100x7 CF_MATRIX_ENGINE=emulate:nvidia-mma-sync "$bin" --prec bf16 --small 2>&1)
printf '%s\n' "$out" | grep -q "CF_GEMM_HALF_BLOCK.*not understood" \
  && printf '%s\n' "$out" | grep -q "blocks of 128 x 128, K slices of 32" \
  && ok "a block it does not know: one warning, the default runs" \
  || bad "CF_GEMM_HALF_BLOCK=100x7: $(printf '%s\n' "$out" | head -5)"
[ $fail -eq 0 ] && echo "PASS cli_gemm_half_blocks" || echo "FAIL cli_gemm_half_blocks"
exit $fail
