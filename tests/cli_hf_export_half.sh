#!/bin/bash
# clformer test: `clformer export --dtype f16|bf16` loads in Hugging Face transformers (as
# GPT2LMHeadModel, upcast to float32) and gives clformer's fp32 logits within the weights'
# rounding: 2e-3 relative for F16 (11-bit significand), 1.5e-2 for BF16 (8-bit). Needs python3
# with torch and transformers; skipped (exit 77) when they are absent. The values themselves are
# checked without them by cli_export_dtype.
set -u
CLF=$1
SRC=$2
python3 -c 'import torch, transformers' 2>/dev/null || { echo "skipped: python3 torch/transformers not installed"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$SRC" || exit 1
$CLF train configs/tiny.json d_model=48 num_heads=4 num_layers=2 d_ff=96 max_length=32 batch_size=4 \
  eval_interval=0 --device cpu --steps 5 --out "$W/run" --quiet || exit 1
TOKENS="72 101 108 108 111 44 32 119 111 114 108 100 33 10 84 104 101"
$CLF logits "$W/run" --tokens "$TOKENS" --out "$W/logits.bin" || exit 1
fail=0
for pair in f16:2e-3 bf16:1.5e-2; do
  d=${pair%%:*}
  $CLF export "$W/run" --format hf --dtype "$d" "$W/$d" --quiet || exit 1
  python3 tools/check_hf_export.py "$W/$d" --tokens "$TOKENS" --logits "$W/logits.bin" --rtol "${pair#*:}" || fail=1
done
exit $fail
