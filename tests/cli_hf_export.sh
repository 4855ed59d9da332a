#!/bin/bash
# clformer test: `clformer export --format hf` loads in Hugging Face transformers as
# GPT2LMHeadModel and gives clformer's logits (1e-4 relative). Needs python3 with torch and
# transformers; skipped (exit 77) when they are absent, since the test suite must not require them.
set -u
CLF=$1
SRC=$2
python3 -c 'import torch, transformers' 2>/dev/null || { echo "skipped: python3 torch/transformers not installed"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$SRC" || exit 1
# a small model with d_ff != 4*d_model, trained a few steps so the weights are not at init
$CLF train configs/tiny.json d_model=48 num_heads=4 num_layers=2 d_ff=96 max_length=32 batch_size=4 \
  eval_interval=0 --device cpu --steps 5 --out "$W/run" --quiet || exit 1
$CLF export "$W/run" --format hf "$W/hf" --quiet || exit 1
TOKENS="72 101 108 108 111 44 32 119 111 114 108 100 33 10 84 104 101"
$CLF logits "$W/run" --tokens "$TOKENS" --out "$W/logits.bin" || exit 1
python3 tools/check_hf_export.py "$W/hf" --tokens "$TOKENS" --logits "$W/logits.bin" --rtol 1e-4
